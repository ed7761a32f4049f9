/**
 * Replication to a customer's own endpoint under access control (docs/ACCESS.md): Tokyo's
 * link to ToyCo names ToyCo's service principal (`links[].filter.principal`), and ToyCo's
 * endpoint takes Tokyo as a sparse sender (`ingest.peers[].sparse`). Real `portcall shore`
 * processes, real logs, the access admin API over HTTP; records reach Tokyo from a ship
 * (AURORA) as batches over HTTP.
 *
 * - The endpoint holds exactly what ToyCo's principal may see, at the origin's offsets
 *   (sparse: Y01 from its booking on), nothing of RedCo's container or ToyCo's outside its
 *   windows.
 * - Custody widened to an earlier period delivers the older records, once.
 * - kill -9 of the endpoint, then of Tokyo, mid-transfer, and of Tokyo mid-rescan: nothing
 *   lost, nothing twice.
 * - Disabling the principal stops further records; enabling it again sends what was left out.
 * - A withdrawn custody window stops further records of that container.
 */
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { LogRecord } from '../core/index.js';
import { BATCH_CONTENT_TYPE, Compression, encodeBatch } from '../edge/link/index.js';
import { verifyLog } from '../edge/log/index.js';
import { parseSiteConfig } from '../site/config.js';
import { SiteNet, identityLine, linkToken, links, metricSamples, recordSet, storedCount } from './support/sites.js';
import { eventually, tempDir } from './support/uplink.js';
import { PORTCALL_BIN } from './support/portcall-process.js';

const run = promisify(execFile);

const T0 = Date.parse('2026-03-01T00:00:00Z');
const MINUTE = 60_000;
const AURORA_TOKEN = 'aurora-to-tokyo-token-0123456789';
const ADMIN = 'bootstrap-admin-token-0123456789abcdef';
const STREAMS = ['alerts', 'manifests', 'containers'];

/** A reading (or alert) of a container, event time = T0 + offset minutes. */
function reading(topic: string, offset: number, stream = 'containers'): LogRecord {
  return {
    origin: 'AURORA',
    stream,
    topic,
    offset,
    eventTimeMs: T0 + offset * MINUTE,
    ingestTimeMs: T0 + offset * MINUTE + 150,
    headers: { 'mqtt-topic': `bigblue/${stream}/${topic}` },
    payload: Buffer.from(JSON.stringify({ container: topic, tempC: -18 + (offset % 7) / 10, n: offset })),
  };
}

function range(topic: string, from: number, to: number, stream = 'containers'): LogRecord[] {
  const records: LogRecord[] = [];
  for (let offset = from; offset < to; offset += 1) records.push(reading(topic, offset, stream));
  return records;
}

describe('replication to a customer endpoint under access control', () => {
  it('is configured: principal or tokenFile, not both; needs access:; a sparse peer needs the embedded log', () => {
    const link = { name: 'TOYCO', url: 'http://127.0.0.1:9', token: 'tokyo-to-toyco-token' };
    const access = { keyFile: '/k' };
    expect(parseSiteConfig({ site: 'TOKYO', access, links: [{ ...link, filter: { principal: 'toyco-endpoint' } }] }).links[0]!.filter).toEqual({ principal: 'toyco-endpoint' });
    expect(() => parseSiteConfig({ site: 'TOKYO', links: [{ ...link, filter: { principal: 'toyco-endpoint' } }] })).toThrow(/links\.0\.filter: principal and tokenFile need an access: section/);
    expect(() => parseSiteConfig({ site: 'TOKYO', access, links: [{ ...link, filter: { principal: 'a', tokenFile: '/t' } }] })).toThrow(/links\.0\.filter\.tokenFile: give principal or tokenFile, not both/);
    expect(() => parseSiteConfig({ site: 'TOKYO', access, links: [{ ...link, filter: {} }] })).toThrow(/links\.0\.filter: give topics, principal or tokenFile/);
    expect(parseSiteConfig({ site: 'TOYCO', ingest: { peers: [{ site: 'TOKYO', token: 'tokyo-to-toyco-token' }] } }).ingest!.peers[0]!.sparse).toBe(false);
    expect(() =>
      parseSiteConfig({
        site: 'TOYCO',
        log: { backend: 'kafka', kafka: { brokers: ['127.0.0.1:9092'] } },
        ingest: { peers: [{ site: 'TOKYO', token: 'tokyo-to-toyco-token', sparse: true }] },
      }),
    ).toThrow(/ingest\.peers: a sparse peer \(a filtered feed\) needs the embedded log/);
  });

  const dirs: string[] = [];
  const nets: SiteNet[] = [];
  afterEach(async () => {
    for (const net of nets.splice(0)) await net.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('carries exactly ToyCo\u2019s records at the origin\u2019s offsets; widening, kill -9s and revocation', { timeout: 300_000 }, async () => {
    const dir = tempDir('customer-link');
    dirs.push(dir);
    writeFileSync(join(dir, 'access.key'), 'a-key-shared-by-the-carrier-sites-0123456789\n');
    writeFileSync(join(dir, 'admin.token'), `${ADMIN}\n`);
    const net = await SiteNet.create(
      dir,
      [
        {
          name: 'TOKYO',
          extra: {
            ingest: { peers: [{ site: 'AURORA', token: AURORA_TOKEN }] },
            access: { keyFile: join(dir, 'access.key'), bootstrapTokenFile: join(dir, 'admin.token') },
          },
          // Small batches, so that a kill -9 lands mid-transfer.
          linkExtra: { TOYCO: { filter: { principal: 'toyco-endpoint' }, streams: STREAMS, maxBatchRecords: 250, maxInFlightBatches: 2 } },
        },
        { name: 'TOYCO', extra: { ingest: { peers: [{ site: 'TOKYO', token: linkToken('TOKYO', 'TOYCO'), sparse: true }] } } },
      ],
      [['TOKYO', 'TOYCO']],
      { proxies: false },
    );
    nets.push(net);
    await net.startAll();
    const tokyo = net.url('TOKYO');
    const toyco = net.url('TOYCO');

    const admin = async (method: 'POST' | 'DELETE', path: string, body?: unknown) => {
      const response = await fetch(`${tokyo}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      expect(response.status, `${method} ${path}: ${await response.clone().text()}`).toBe(200);
    };
    const posted: LogRecord[] = [];
    const ship = async (records: LogRecord[]) => {
      for (let at = 0; at < records.length; at += 20_000) {
        const chunk = records.slice(at, at + 20_000);
        const response = await fetch(`${tokyo}/v1/batches`, {
          method: 'POST',
          headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${AURORA_TOKEN}` },
          body: encodeBatch({ sender: 'AURORA', records: chunk }, Compression.None),
        });
        expect(response.status, await response.clone().text()).toBe(200);
        posted.push(...chunk);
      }
    };
    /** Offsets a site holds of a topic, through its (open) read API. */
    const offsetsAt = async (url: string, topic: string, stream = 'containers'): Promise<number[]> => {
      const offsets: number[] = [];
      let from = 0;
      for (let pages = 0; pages < 10_000; pages += 1) {
        const response = await fetch(`${url}/v1/streams/${stream}/topics/${topic}/records?from=${from}&maxRecords=500`);
        if (response.status === 404) return offsets;
        const page = (await response.json()) as { records: { offset: number }[]; nextOffset: number };
        if (page.records.length === 0) return offsets;
        offsets.push(...page.records.map((record) => record.offset));
        from = page.nextOffset;
      }
      return offsets;
    };
    const caughtUp = async () => (await links(tokyo)).every((link) => link.lag.every((entry) => entry.records === 0));
    const seq = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

    // The ship's first records reach Tokyo before anyone set up ToyCo: nothing goes.
    await ship([...range('Y01', 0, 40), ...range('Y02', 0, 40), ...range('R01', 0, 40), ...range('Y01', 0, 3, 'alerts'), ...range('R01', 0, 3, 'alerts')]);
    await eventually(caughtUp, 30_000, async () => JSON.stringify(await links(tokyo)), 200);
    expect(await offsetsAt(toyco, 'Y01')).toEqual([]);

    // ToyCo's booking of Y01 from minute 10 on, of Y02 for minutes 20-30; RedCo holds R01.
    await admin('POST', '/v1/access/orgs', { id: 'toyco', kind: 'customer', name: 'ToyCo' });
    await admin('POST', '/v1/access/orgs', { id: 'redco', kind: 'customer' });
    await admin('POST', '/v1/access/principals', { id: 'toyco-endpoint', org: 'toyco', kind: 'service', roles: ['customer'] });
    await admin('POST', '/v1/access/custody', { container: 'Y01', org: 'toyco', from: new Date(T0 + 10 * MINUTE).toISOString(), id: 'y01-voyage' });
    await admin('POST', '/v1/access/custody', { container: 'Y02', org: 'toyco', from: new Date(T0 + 20 * MINUTE).toISOString(), to: new Date(T0 + 30 * MINUTE).toISOString() });
    await admin('POST', '/v1/access/custody', { container: 'R01', org: 'redco', from: new Date(T0).toISOString() });
    // Records passed before the principal existed arrive by the rescan its record starts.
    await eventually(async () => (await offsetsAt(toyco, 'Y01')).length === 30 && (await offsetsAt(toyco, 'Y02')).length === 10, 30_000, async () => `Y01 ${JSON.stringify(await offsetsAt(toyco, 'Y01'))}`);
    expect(await offsetsAt(toyco, 'Y01')).toEqual(seq(10, 40));
    expect(await offsetsAt(toyco, 'Y02')).toEqual(seq(20, 30));
    expect(await offsetsAt(toyco, 'R01')).toEqual([]);
    // Y01's alerts 0-2 are before its window.
    expect(await offsetsAt(toyco, 'Y01', 'alerts')).toEqual([]);

    // Live records go as they arrive, at the origin's offsets.
    await ship([...range('Y01', 40, 50), ...range('Y02', 40, 50), ...range('R01', 40, 50), ...range('Y01', 3, 5, 'alerts')]);
    await eventually(async () => (await offsetsAt(toyco, 'Y01')).length === 40, 30_000, async () => JSON.stringify(await offsetsAt(toyco, 'Y01')));
    expect(await offsetsAt(toyco, 'Y01')).toEqual(seq(10, 50));
    expect(await offsetsAt(toyco, 'Y01', 'alerts')).toEqual([]);
    expect(await offsetsAt(toyco, 'Y02')).toEqual(seq(20, 30));

    // Widened: ToyCo also booked Y01 for minutes 0-10 (the loading). The older records come, once.
    await admin('POST', '/v1/access/custody', { container: 'Y01', org: 'toyco', from: new Date(T0).toISOString(), to: new Date(T0 + 10 * MINUTE).toISOString(), id: 'y01-loading' });
    await eventually(async () => (await offsetsAt(toyco, 'Y01')).length === 50 && (await offsetsAt(toyco, 'Y01', 'alerts')).length === 5, 30_000, async () => JSON.stringify(await offsetsAt(toyco, 'Y01')));
    expect(await offsetsAt(toyco, 'Y01')).toEqual(seq(0, 50));
    expect(await offsetsAt(toyco, 'Y01', 'alerts')).toEqual(seq(0, 5));
    const rescanned = await metricSamples(tokyo, 'portcall_link_rescanned_records_total');
    const storedByRescans = [...rescanned].filter(([labels]) => labels.includes('outcome="stored"')).reduce((sum, [, value]) => sum + value, 0);
    // The first rescan (the principal appeared) sent Y01 10-39 and Y02 20-29; this one Y01 0-9 and its alerts 0-4.
    expect(storedByRescans, JSON.stringify([...rescanned])).toBeGreaterThanOrEqual(30 + 10 + 10 + 5);

    // What ToyCo's token reads at Tokyo is what its endpoint holds, topic by topic, byte for
    // byte (portcall verify --sites over both, the endpoint's topics sparse), so a consumer's
    // position (a next offset) means the same at both.
    const issued = await fetch(`${tokyo}/v1/access/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ principal: 'toyco-endpoint' }),
    });
    const toycoToken = ((await issued.json()) as { token: string }).token;
    const verified = await run(process.execPath, [PORTCALL_BIN, 'verify', '--sites', `${tokyo},${toyco}`, '--stream', 'containers', 'alerts', '--token', toycoToken], { timeout: 60_000 });
    expect(verified.stdout).toMatch(/^identical: 2 streams, 3 topics compared across 2 sites/m);
    const pageAt = async (url: string, from: number) =>
      (await (await fetch(`${url}/v1/streams/containers/topics/Y01/records?from=${from}&maxRecords=7`, { headers: { authorization: `Bearer ${toycoToken}` } })).json()) as { records: unknown[]; nextOffset: number };
    const first = await pageAt(tokyo, 0);
    const continued = await pageAt(toyco, first.nextOffset);
    expect(continued).toEqual(await pageAt(tokyo, first.nextOffset));
    expect(first.nextOffset).toBe(7);

    // A large backlog, ToyCo's and RedCo's interleaved; kill -9 of the endpoint, then of Tokyo, mid-transfer.
    const BIG = 12_000;
    const bigAt = performance.now();
    await ship([...range('Y01', 50, 50 + BIG), ...range('R01', 50, 50 + BIG), ...range('Y02', 50, 50 + BIG)].sort((a, b) => a.offset - b.offset));
    const heldY01 = async () => (await offsetsAt(toyco, 'Y01')).length;
    await eventually(async () => (await heldY01()) > 50 + BIG / 4, 60_000, async () => `ToyCo holds ${await heldY01()} of Y01`, 50);
    await net.kill9('TOYCO');
    await net.start('TOYCO');
    await eventually(async () => (await heldY01()) > 50 + BIG / 2, 60_000, async () => `ToyCo holds ${await heldY01()} of Y01`, 50);
    const beforeKill = await heldY01();
    await net.kill9('TOKYO');
    await net.start('TOKYO');
    await eventually(async () => (await heldY01()) === 50 + BIG && (await caughtUp()), 120_000, async () => `ToyCo holds ${await heldY01()} of Y01; ${JSON.stringify(await links(tokyo))}`, 200);
    expect(beforeKill).toBeLessThan(50 + BIG);
    const bigMs = performance.now() - bigAt;
    expect(await offsetsAt(toyco, 'Y02')).toEqual(seq(20, 30));

    // Widened again, for Y02's whole backlog from minute 30 on: a rescan of 12,000 records,
    // and Tokyo killed in the middle of it. The rescan runs again from the start; each once.
    const widenAt = performance.now();
    await admin('POST', '/v1/access/custody', { container: 'Y02', org: 'toyco', from: new Date(T0 + 30 * MINUTE).toISOString() });
    const heldY02 = async () => (await offsetsAt(toyco, 'Y02')).length;
    await eventually(async () => (await heldY02()) > 10 + 1000, 60_000, async () => `ToyCo holds ${await heldY02()} of Y02`, 50);
    const midRescan = await heldY02();
    await net.kill9('TOKYO');
    await net.start('TOKYO');
    await eventually(async () => (await heldY02()) === 30 + BIG, 120_000, async () => `ToyCo holds ${await heldY02()} of Y02`, 200);
    expect(midRescan).toBeLessThan(30 + BIG);
    const widenMs = performance.now() - widenAt;
    const duplicates = await metricSamples(toyco, 'portcall_ingest_records_total');
    console.info(
      `customer link: ${3 * BIG} records shipped to Tokyo, ${BIG} of them ToyCo's, at the endpoint in ${Math.round(bigMs)} ms across kill -9 of each side; ` +
        `Y02's ${BIG} earlier records after widening in ${Math.round(widenMs)} ms across a kill -9 of Tokyo mid-rescan (held ${midRescan} then); ` +
        `endpoint counters since its restart: ${JSON.stringify(Object.fromEntries(duplicates))}`,
    );
    expect(await offsetsAt(toyco, 'Y02')).toEqual(seq(20, 50 + BIG));

    // The principal disabled: nothing more goes, from the next record on.
    await admin('DELETE', '/v1/access/principals/toyco-endpoint');
    await ship(range('Y01', 50 + BIG, 60 + BIG));
    await eventually(caughtUp, 30_000, async () => JSON.stringify(await links(tokyo)), 200);
    expect(await heldY01()).toBe(50 + BIG);

    // Enabled again (a principal.set): what was left out meanwhile is sent too.
    await admin('POST', '/v1/access/principals', { id: 'toyco-endpoint', org: 'toyco', kind: 'service', roles: ['customer'] });
    await eventually(async () => (await heldY01()) === 60 + BIG, 30_000, async () => `ToyCo holds ${await heldY01()} of Y01`);

    // The voyage's window withdrawn: Y01's later readings stay at Tokyo, for good.
    await admin('DELETE', '/v1/access/custody/y01-voyage');
    await ship(range('Y01', 60 + BIG, 70 + BIG));
    await eventually(caughtUp, 30_000, async () => JSON.stringify(await links(tokyo)), 200);
    await new Promise((resolve) => setTimeout(resolve, 2500)); // a rescan would have started by now (the mark is polled every second)
    expect(await heldY01()).toBe(60 + BIG);

    await net.stopAll();
    // Exactly ToyCo's records, each once, at the origin's identities, byte for byte.
    const admitted = (record: LogRecord) =>
      (record.topic === 'Y01' && record.eventTimeMs >= T0 && record.offset < 60 + BIG) || (record.topic === 'Y02' && record.eventTimeMs >= T0 + 20 * MINUTE);
    const expected = new Set(posted.filter(admitted).map(identityLine));
    const atToyco = await recordSet(net.logPath('TOYCO'), 'TOYCO');
    expect(atToyco.size).toBe(expected.size);
    expect([...atToyco].filter((line) => !expected.has(line))).toEqual([]);
    expect(await storedCount(net.logPath('TOYCO'), 'TOYCO')).toBe(expected.size);
    // Tokyo holds every record the ship sent, and the endpoint's log verifies (sparse topics: Y02).
    expect((await recordSet(net.logPath('TOKYO'), 'TOKYO')).size).toBeGreaterThanOrEqual(posted.length);
    const report = verifyLog(net.logPath('TOYCO'));
    expect(report.problems).toEqual([]);
    expect(report.sparseTopics).toBeGreaterThanOrEqual(1);
  });
});
