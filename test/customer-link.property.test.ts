/**
 * A link to a customer's endpoint against random custody histories (fast-check): a real
 * SqliteLog at Tokyo with the real access policy over it, the real Forwarder with the
 * policy's LinkFilter, and a real SqliteLog as the endpoint taking the link's batches as a
 * sparse replica (in process: the HTTP leg is test/replication-customer.test.ts).
 *
 * Whatever the order of readings, custody assignments and withdrawals:
 * - every record the final state admits is at the endpoint (widening reached back);
 * - nothing is there that no window ever assigned admitted;
 * - each record once, at the origin's identity; with assignments only, exactly the final set.
 * And a consignee's endpoint receives manifests in the consignee's projection.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { LogRecord } from '../core/index.js';
import { newToken, signedRecord, startAccess, type RunningAccess } from '../cloud/access/index.js';
import { Forwarder, type BatchSender } from '../edge/forwarder/index.js';
import { SqliteLog } from '../edge/log/index.js';
import { eventually, tempDir } from './support/uplink.js';

const KEY = Buffer.from('k'.repeat(48));
const T0 = Date.parse('2026-03-01T00:00:00Z');
const MINUTE = 60_000;
const CONTAINERS = ['Y01', 'Y02', 'R01'];

type Step =
  | { kind: 'readings'; container: string; minutes: number[] }
  | { kind: 'assign'; container: string; org: 'toyco' | 'redco'; from: number; to: number | undefined }
  | { kind: 'withdraw'; pick: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('readings' as const), container: fc.constantFrom(...CONTAINERS), minutes: fc.array(fc.nat(100), { minLength: 1, maxLength: 6 }) }),
  fc.record({
    kind: fc.constant('assign' as const),
    container: fc.constantFrom(...CONTAINERS),
    org: fc.constantFrom('toyco' as const, 'redco' as const),
    from: fc.nat(90),
    to: fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }),
  }),
  fc.record({ kind: fc.constant('withdraw' as const), pick: fc.nat(20) }),
);

interface Window {
  readonly id: string;
  readonly container: string;
  readonly org: string;
  readonly fromMs: number;
  readonly toMs: number | undefined;
}

const admittedBy = (windows: readonly Window[], record: LogRecord) =>
  windows.some((w) => w.org === 'toyco' && w.container === record.topic && record.eventTimeMs >= w.fromMs && (w.toMs === undefined || record.eventTimeMs < w.toMs));

const identity = (record: LogRecord) => `${record.origin}|${record.stream}|${record.topic}|${record.offset}|${Buffer.from(record.payload).toString('utf8')}`;

async function everything(log: SqliteLog, stream: string): Promise<LogRecord[]> {
  const records: LogRecord[] = [];
  let position = 0;
  for (let pages = 0; pages < 10_000; pages += 1) {
    const page = await log.readStream(stream, position, { maxRecords: 10_000 });
    if (page.records.length === 0) break;
    records.push(...page.records);
    position = page.nextPosition;
  }
  return records;
}

/** The link's leg in process: the endpoint's log takes each batch as from a sparse peer. */
function endpointSender(endpoint: SqliteLog): BatchSender {
  return { destination: 'TOYCO', send: (records) => endpoint.replicate(records, { sender: 'TOKYO', sparse: true }) };
}

describe('customer endpoint link (property)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('holds every record the final custody admits, nothing never admitted, each once', { timeout: 240_000 }, async () => {
    const dir = tempDir('customer-link-prop');
    dirs.push(dir);
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), fc.boolean(), fc.boolean(), async (steps, restartMidway, byTopic) => {
        run += 1;
        const tokyo = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, `t${run}.sqlite`), indexer: 'inline', retentionIntervalMs: 0 });
        const endpoint = SqliteLog.open({ siteId: 'TOYCO', path: join(dir, `e${run}.sqlite`), indexer: 'inline', retentionIntervalMs: 0 });
        let access: RunningAccess | undefined;
        let forwarder: Forwarder | undefined;
        const start = async () => {
          access = await startAccess({ key: KEY, reader: tokyo, appender: tokyo, source: tokyo, readRateLimit: { requests: 1e6, windowMs: 60_000 }, adminRateLimit: { requests: 1e6, windowMs: 60_000 }, pollIntervalMs: 50 });
          forwarder = new Forwarder({
            linkName: 'TOYCO',
            source: tokyo,
            sender: endpointSender(endpoint),
            streams: ['containers'],
            maxBatchAgeMs: 0,
            maxBatchRecords: 7,
            audience: access.linkFilter({ principal: 'toyco-endpoint' }),
            audiencePollMs: 20,
            // Rescans for named containers read their topics, or scan the stream.
            ...(byTopic ? { topicReader: tokyo } : {}),
          });
          await forwarder.start();
        };
        const stop = async () => {
          await forwarder?.stop();
          access?.close();
        };
        const write = async (record: Parameters<typeof signedRecord>[1]) => {
          await tokyo.append([signedRecord(KEY, record)]);
          await access?.projector.catchUp();
        };
        try {
          const audit = { by: 'test', atMs: T0 };
          await write({ type: 'org.set', id: 'toyco', kind: 'customer', ...audit });
          await write({ type: 'org.set', id: 'redco', kind: 'customer', ...audit });
          await write({ type: 'principal.set', id: 'toyco-endpoint', org: 'toyco', kind: 'service', roles: ['customer'], ...audit });
          await start();
          const windows: Window[] = [];
          const live: Window[] = [];
          for (let i = 0; i < steps.length; i += 1) {
            const s = steps[i]!;
            if (s.kind === 'readings') {
              await tokyo.append(s.minutes.map((minute) => ({ stream: 'containers', topic: s.container, eventTimeMs: T0 + minute * MINUTE, payload: Buffer.from(`{"m":${minute},"i":${i}}`) })));
            } else if (s.kind === 'assign') {
              const window: Window = { id: `w${i}`, container: s.container, org: s.org, fromMs: T0 + s.from * MINUTE, toMs: s.to === undefined ? undefined : T0 + (s.from + s.to) * MINUTE };
              windows.push(window);
              live.push(window);
              await write({ type: 'custody.assigned', id: window.id, container: window.container, org: window.org, as: 'owner', fromMs: window.fromMs, ...(window.toMs === undefined ? {} : { toMs: window.toMs }), ...audit });
            } else if (live.length > 0) {
              const [gone] = live.splice(s.pick % live.length, 1);
              await write({ type: 'custody.withdrawn', id: gone!.id, ...audit });
            }
            // Let the link run a little between steps sometimes, so changes land mid-transfer.
            if (i % 3 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
            if (restartMidway && i === Math.floor(steps.length / 2)) {
              await stop();
              await start();
            }
          }
          const source = await everything(tokyo, 'containers');
          const mustHave = new Set(source.filter((record) => admittedBy(live, record)).map(identity));
          const mayHave = new Set(source.filter((record) => admittedBy(windows, record)).map(identity));
          await eventually(
            async () => {
              const held = new Set((await everything(endpoint, 'containers')).map(identity));
              return [...mustHave].every((line) => held.has(line));
            },
            20_000,
            async () => {
              const held = new Set((await everything(endpoint, 'containers')).map(identity));
              return `missing: ${[...mustHave].filter((line) => !held.has(line)).slice(0, 5).join(', ')}`;
            },
            20,
          );
          // A rescan may still be under way: let the link settle before judging what else arrived.
          await new Promise((resolve) => setTimeout(resolve, 100));
          await stop();
          const held = (await everything(endpoint, 'containers')).map(identity);
          expect(new Set(held).size).toBe(held.length);
          expect(held.filter((line) => !mayHave.has(line))).toEqual([]);
          if (steps.every((s) => s.kind !== 'withdraw')) expect(new Set(held)).toEqual(mustHave);
        } finally {
          await stop();
          await tokyo.close();
          await endpoint.close();
        }
      }),
      { numRuns: 30 },
    );
  });

  it('follows a token (links[].filter.tokenFile): nothing before it is issued, everything once it is, nothing after its revocation', { timeout: 30_000 }, async () => {
    const dir = tempDir('token-link');
    dirs.push(dir);
    const tokyo = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 't.sqlite'), indexer: 'inline', retentionIntervalMs: 0 });
    const endpoint = SqliteLog.open({ siteId: 'TOYCO', path: join(dir, 'e.sqlite'), indexer: 'inline', retentionIntervalMs: 0 });
    const access = await startAccess({ key: KEY, reader: tokyo, appender: tokyo, source: tokyo, readRateLimit: { requests: 1e6, windowMs: 60_000 }, adminRateLimit: { requests: 1e6, windowMs: 60_000 }, pollIntervalMs: 50 });
    const audit = { by: 'test', atMs: T0 };
    const write = async (record: Parameters<typeof signedRecord>[1]) => {
      await tokyo.append([signedRecord(KEY, record)]);
      await access.projector.catchUp();
    };
    const token = newToken();
    const readings = (from: number, to: number) =>
      tokyo.append(Array.from({ length: to - from }, (_, i) => ({ stream: 'containers', topic: 'Y01', eventTimeMs: T0 + (from + i) * MINUTE, payload: Buffer.from(`{"m":${from + i}}`) })));
    await write({ type: 'org.set', id: 'toyco', kind: 'customer', ...audit });
    await write({ type: 'principal.set', id: 'toyco-endpoint', org: 'toyco', kind: 'service', roles: ['customer'], ...audit });
    await write({ type: 'custody.assigned', id: 'y01', container: 'Y01', org: 'toyco', as: 'owner', fromMs: T0, ...audit });
    await readings(0, 20);
    const forwarder = new Forwarder({
      linkName: 'TOYCO',
      source: tokyo,
      sender: endpointSender(endpoint),
      streams: ['containers'],
      maxBatchAgeMs: 0,
      audience: access.linkFilter({ token: token.token }),
      audiencePollMs: 20,
    });
    await forwarder.start();
    try {
      // The token file is there, its record is not yet (on its way from headquarters): nothing goes.
      await eventually(() => forwarder.lag().every((entry) => entry.records === 0), 10_000, () => JSON.stringify(forwarder.lag()));
      expect(await everything(endpoint, 'containers')).toEqual([]);
      await write({ type: 'token.issued', tokenId: token.tokenId, principal: 'toyco-endpoint', sha256: token.sha256, ...audit });
      await readings(20, 30);
      await eventually(async () => (await everything(endpoint, 'containers')).length === 30, 10_000, async () => `${(await everything(endpoint, 'containers')).length} held`);
      await write({ type: 'token.revoked', tokenId: token.tokenId, ...audit });
      await readings(30, 40);
      await eventually(() => forwarder.lag().every((entry) => entry.records === 0), 10_000, () => JSON.stringify(forwarder.lag()));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const held = (await everything(endpoint, 'containers')).map((record) => record.offset).sort((a, b) => a - b);
      expect(held).toEqual(Array.from({ length: 30 }, (_, i) => i));
    } finally {
      await forwarder.stop();
      access.close();
      await tokyo.close();
      await endpoint.close();
    }
  });

  it('sends a consignee\u2019s endpoint the consignee\u2019s projection of manifests', { timeout: 30_000 }, async () => {
    const dir = tempDir('consignee-link');
    dirs.push(dir);
    const tokyo = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 't.sqlite'), indexer: 'inline', retentionIntervalMs: 0 });
    const endpoint = SqliteLog.open({ siteId: 'SYDCO', path: join(dir, 'e.sqlite'), indexer: 'inline', retentionIntervalMs: 0 });
    const access = await startAccess({ key: KEY, reader: tokyo, appender: tokyo, source: tokyo, readRateLimit: { requests: 1e6, windowMs: 60_000 }, adminRateLimit: { requests: 1e6, windowMs: 60_000 }, pollIntervalMs: 50 });
    const audit = { by: 'test', atMs: T0 };
    for (const record of [
      { type: 'org.set', id: 'sydco', kind: 'consignee', ...audit },
      { type: 'principal.set', id: 'sydco-endpoint', org: 'sydco', kind: 'service', roles: ['consignee'], ...audit },
      { type: 'custody.assigned', id: 'y01', container: 'Y01', org: 'sydco', as: 'consignee', fromMs: T0, ...audit },
    ] as const) {
      await tokyo.append([signedRecord(KEY, record as Parameters<typeof signedRecord>[1])]);
    }
    await access.projector.catchUp();
    await tokyo.append([
      { stream: 'manifests', topic: 'Y01', eventTimeMs: T0 + MINUTE, headers: { cargo: 'ducks' }, payload: Buffer.from('{"event":"loaded","port":"JPTYO","cargo":"ducks"}') },
      { stream: 'manifests', topic: 'Y01', eventTimeMs: T0 + 2 * MINUTE, payload: Buffer.from('{"event":"booked","port":"JPTYO"}') },
      { stream: 'manifests', topic: 'Y01', eventTimeMs: T0 + 3 * MINUTE, payload: Buffer.from('{"event":"unloaded","port":"AUSYD"}') },
      { stream: 'manifests', topic: 'Y02', eventTimeMs: T0 + 3 * MINUTE, payload: Buffer.from('{"event":"unloaded","port":"AUSYD"}') },
      { stream: 'containers', topic: 'Y01', eventTimeMs: T0 + 3 * MINUTE, payload: Buffer.from('{"tempC":-18}') },
    ]);
    const forwarder = new Forwarder({
      linkName: 'SYDCO',
      source: tokyo,
      sender: { destination: 'SYDCO', send: (records) => endpoint.replicate(records, { sender: 'TOKYO', sparse: true }) },
      streams: ['manifests', 'containers'],
      maxBatchAgeMs: 0,
      audience: access.linkFilter({ principal: 'sydco-endpoint' }),
    });
    await forwarder.start();
    try {
      await eventually(async () => (await everything(endpoint, 'manifests')).length === 2, 10_000, async () => JSON.stringify(await everything(endpoint, 'manifests')));
      const held = await everything(endpoint, 'manifests');
      expect(held.map((record) => [record.topic, record.offset, record.origin, record.eventTimeMs, record.headers, JSON.parse(Buffer.from(record.payload).toString('utf8'))])).toEqual([
        ['Y01', 0, 'TOKYO', T0 + MINUTE, {}, { status: 'in-transit', port: 'JPTYO', at: new Date(T0 + MINUTE).toISOString() }],
        ['Y01', 2, 'TOKYO', T0 + 3 * MINUTE, {}, { status: 'arrived', port: 'AUSYD', at: new Date(T0 + 3 * MINUTE).toISOString() }],
      ]);
      expect(await everything(endpoint, 'containers')).toEqual([]);
    } finally {
      await forwarder.stop();
      access.close();
      await tokyo.close();
      await endpoint.close();
    }
  });
});
