/**
 * The portal's API on a real site (in-process startSite, real HTTP, the real access policy):
 * each audience gets what docs/ACCESS.md gives it and nothing else: a consignee coarse
 * status, a port authority the movements at its port, carrier operations everything plus
 * health and links; denials answer as a container that does not exist; live updates (SSE)
 * carry only admitted records, within 2 s, and stop when the token is revoked.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogRecord } from '../core/index.js';
import { BATCH_CONTENT_TYPE, Compression, encodeBatch } from '../edge/link/index.js';
import { parseSiteConfig, startSite, type RunningSite } from '../site/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';

const T0 = Date.parse('2026-03-02T00:00:00Z');
const PEER = 'aurora-ingest-token-0123456789';
const ADMIN = 'a'.repeat(40);

const next = new Map<string, number>();
function record(stream: string, topic: string, atMs: number, body: Record<string, unknown>): LogRecord {
  const key = `${stream}/${topic}`;
  const offset = next.get(key) ?? 0;
  next.set(key, offset + 1);
  return { origin: 'AURORA', stream, topic, offset, eventTimeMs: atMs, ingestTimeMs: atMs, headers: {}, payload: Buffer.from(JSON.stringify({ ts: atMs, ...body })) };
}

// The same portal, API and access rules on both logs: the embedded one, and Kafka (the
// projector reads the Kafka log's stream journals; access records are appended to Kafka).
for (const backend of ['sqlite', 'kafka'] as const) (backend === 'kafka' ? describeKafka : describe)(`portal API under access control (${backend} log)`, () => {
  let dir: string;
  let site: RunningSite;
  let url: string;
  const tokens: Record<string, string> = {};

  const post = async (records: LogRecord[]) => {
    const response = await fetch(new URL('/v1/batches', url), {
      method: 'POST',
      headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${PEER}` },
      body: encodeBatch({ sender: 'AURORA', records }, Compression.None),
    });
    expect(response.status).toBe(200);
  };
  const admin = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(new URL(path, url), {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    expect(response.status, `${path}: ${text}`).toBeLessThan(300);
    return JSON.parse(text) as Record<string, unknown>;
  };
  const get = async (path: string, token?: string) => {
    const response = await fetch(new URL(`/portal/api/${path}`, url), token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    const text = await response.text();
    return { status: response.status, body: text, json: () => JSON.parse(text) as Record<string, unknown> };
  };
  /** Polls until the portal's read model has caught up (it follows the log asynchronously). */
  const until = async (check: () => Promise<boolean>) => {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (await check()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('timed out');
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcall-portal-api-'));
    next.clear();
    writeFileSync(join(dir, 'key'), 'k'.repeat(40));
    writeFileSync(join(dir, 'admin'), ADMIN);
    site = await startSite(
      parseSiteConfig({
        site: 'HQ',
        dataDir: dir,
        http: { port: 0 },
        ...(backend === 'kafka'
          ? { log: { backend: 'kafka', kafka: { brokers: [kafkaBootstrap()!], topicPrefix: `portal${Date.now().toString(36)}`, partitions: 2 } }, portal: { enabled: true } }
          : {}),
        ingest: { peers: [{ site: 'AURORA', token: PEER }] },
        access: { keyFile: join(dir, 'key'), bootstrapTokenFile: join(dir, 'admin') },
        // A link to a site that is not there: its lag is what the operations page shows.
        links: [{ name: 'SYDNEY', url: 'http://127.0.0.1:9', token: 'hq-to-sydney-token-0123', streams: ['manifests'] }],
      }),
      { logger: pino({ level: 'silent' }) },
    );
    url = site.httpUrl!;
    await admin('POST', '/v1/access/orgs', { id: 'bigblue', kind: 'carrier' });
    await admin('POST', '/v1/access/orgs', { id: 'toyco', kind: 'customer', name: 'ToyCo' });
    await admin('POST', '/v1/access/orgs', { id: 'duckshop', kind: 'consignee', name: 'Duck Shop Sydney' });
    await admin('POST', '/v1/access/orgs', { id: 'sydport', kind: 'port-authority', port: 'AUSYD' });
    await admin('POST', '/v1/access/principals', { id: 'ops', org: 'bigblue', roles: ['carrier-ops'] });
    await admin('POST', '/v1/access/principals', { id: 'alice', org: 'toyco', roles: ['customer'] });
    await admin('POST', '/v1/access/principals', { id: 'dora', org: 'duckshop', roles: ['consignee'] });
    await admin('POST', '/v1/access/principals', { id: 'pat', org: 'sydport', roles: ['port-authority'] });
    await admin('POST', '/v1/access/custody', { container: 'Y01', org: 'toyco', from: '2026-03-01T00:00:00Z' });
    await admin('POST', '/v1/access/custody', { container: 'Y01', org: 'duckshop', as: 'consignee', from: '2026-03-01T00:00:00Z' });
    // carrier-ops held in an organisation that is no longer a carrier counts for nothing (the policy's rule).
    await admin('POST', '/v1/access/orgs', { id: 'shifty', kind: 'carrier' });
    await admin('POST', '/v1/access/principals', { id: 'mallory', org: 'shifty', roles: ['carrier-ops'] });
    await admin('POST', '/v1/access/orgs', { id: 'shifty', kind: 'customer' });
    for (const principal of ['ops', 'alice', 'dora', 'pat', 'mallory']) tokens[principal] = (await admin('POST', '/v1/access/tokens', { principal })).token as string;

    const manifest = { container: 'Y01', owner: 'ToyCo', kind: 'dry', cargo: 'plastic toy ducks', ship: 'AURORA' };
    await post([
      record('manifests', 'Y01', T0, { ...manifest, event: 'booked', from: 'JPTYO', to: 'AUSYD' }),
      record('manifests', 'Y01', T0 + 3_600_000, { ...manifest, event: 'loaded', port: 'JPTYO' }),
      record('manifests', 'R01', T0 + 3_600_000, { container: 'R01', owner: 'RedCo', event: 'unloaded', port: 'AUSYD', ship: 'AURORA' }),
      ...Array.from({ length: 20 }, (_, index) => record('containers', 'Y01', T0 + index * 600_000, { container: 'Y01', tempC: 20 + index / 10, humidityPct: 60, door: 'closed', shockG: 0.1, lat: 35, lon: 139 + index / 10 })),
      ...Array.from({ length: 20 }, (_, index) => record('containers', 'R01', T0 + index * 600_000, { container: 'R01', tempC: 4, lat: 1.2, lon: 103.8 })),
      ...Array.from({ length: 5 }, (_, index) => record('ships', 'AURORA', T0 + index * 600_000, { lat: 35, lon: 139 + index / 10, status: 'at-sea' })),
      record('manifests', 'Y01', T0 + 10 * 86_400_000, { ...manifest, event: 'unloaded', port: 'AUSYD' }),
    ]);
    // Every stream of the batch folded in (the projector reads the streams one after another).
    await until(async () => (await get('movements', tokens.ops!)).body.includes('unloaded'));
    await until(async () => {
      const fleet = (await get('fleet', tokens.ops!)).json() as { ships: unknown[]; containers: unknown[] };
      return fleet.ships.length === 1 && fleet.containers.length === 2;
    });
  }, 60_000);

  afterAll(async () => {
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a consignee sees coarse status of its consignment only: no readings, owner or cargo', async () => {
    const list = (await get('containers', tokens.dora!)).json().containers as { id: string; status: string }[];
    expect(list.map((c) => [c.id, c.status])).toEqual([['Y01', 'arrived']]);
    const detail = await get('containers/Y01', tokens.dora!);
    expect(detail.status).toBe(200);
    expect(detail.json()).toMatchObject({ id: 'Y01', status: 'arrived', series: [], alertList: [] });
    for (const secret of ['ToyCo', 'ducks', 'tempC', 'lat', 'AURORA']) expect(detail.body).not.toContain(secret);
    expect((await get('movements', tokens.dora!)).json().movements).toEqual([
      { container: 'Y01', at: '2026-03-12T00:00:00.000Z', offset: 2, status: 'arrived', port: 'AUSYD' },
      { container: 'Y01', at: '2026-03-02T01:00:00.000Z', offset: 1, status: 'in-transit', port: 'JPTYO' },
    ]);
    expect((await get('fleet', tokens.dora!)).json()).toEqual({ ships: [], containers: [] });
    expect((await get('containers/R01', tokens.dora!)).status).toBe(404);
  });

  it('a port authority sees the movements at its port, of anyone, as movements only', async () => {
    const movements = (await get('movements', tokens.pat!)).json().movements as Record<string, unknown>[];
    expect(movements.map((m) => [m.container, m.step, m.port]).sort()).toEqual([
      ['R01', 'unloaded', 'AUSYD'],
      ['Y01', 'unloaded', 'AUSYD'],
    ]);
    const body = JSON.stringify(movements);
    for (const secret of ['ToyCo', 'RedCo', 'ducks']) expect(body).not.toContain(secret);
    expect((await get('alerts', tokens.pat!)).json().alerts).toEqual([]);
    expect((await get('operations', tokens.pat!)).status).toBe(404);
  });

  it('carrier operations see everything, with site health and links; a customer does not', async () => {
    const fleet = (await get('fleet', tokens.ops!)).json() as { ships: { id: string }[]; containers: { id: string }[] };
    expect(fleet.ships.map((s) => s.id)).toEqual(['AURORA']);
    expect(fleet.containers.map((c) => c.id)).toEqual(['R01', 'Y01']);
    // A Kafka link's lag is counted from the stream journal in the background: wait for the first count.
    await until(async () => (((await get('operations', tokens.ops!)).json() as { links: { lag: unknown[] }[] }).links[0]?.lag.length ?? 0) > 0);
    const ops = (await get('operations', tokens.ops!)).json() as { health: { site: string; status: string }; links: unknown[] };
    expect(ops.health).toMatchObject({ site: 'HQ', status: 'ok' });
    // manifests: Y01's three records, R01's one and the two custody windows, none acknowledged by SYDNEY.
    expect(ops.links).toEqual([expect.objectContaining({ name: 'SYDNEY', lag: [expect.objectContaining({ stream: 'manifests', records: 6 })], recordsForwarded: 0 })]);
    expect((await get('me', tokens.ops!)).json()).toMatchObject({ principal: 'ops', operations: true });
    expect((await get('me', tokens.alice!)).json()).toMatchObject({ principal: 'alice', orgName: 'ToyCo', operations: false });
    const alice = await get('operations', tokens.alice!);
    expect(alice.status).toBe(404);
    expect((await get('me', tokens.mallory!)).json()).toMatchObject({ principal: 'mallory', roles: [], operations: false });
    expect((await get('operations', tokens.mallory!)).status).toBe(404);
    expect((await get('fleet', tokens.mallory!)).json()).toMatchObject({ ships: [] });
    expect((await get('fleet', tokens.alice!)).json()).toMatchObject({ ships: [], containers: [{ id: 'Y01' }] });
  });

  it('signs in by password over HTTP and reads the containers with the session; every failure is the same 401', async () => {
    await admin('PUT', '/v1/access/principals/alice/password', { password: 'alice likes toy ducks' });
    await admin('POST', '/v1/access/principals', { id: 'zed', org: 'toyco', roles: ['customer'] });
    await admin('PUT', '/v1/access/principals/zed/password', { password: 'zed was here once' });
    await admin('DELETE', '/v1/access/principals/zed');
    await admin('POST', '/v1/access/principals', { id: 'nopw', org: 'toyco', roles: ['customer'] });
    const signIn = async (body: unknown) => {
      const response = await fetch(new URL('/portal/api/sign-in', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const { date: _date, ...headers } = Object.fromEntries(response.headers);
      return { status: response.status, headers, body: await response.text() };
    };
    const ok = await signIn({ principal: 'alice', password: 'alice likes toy ducks' });
    expect(ok.status, ok.body).toBe(200);
    const session = JSON.parse(ok.body) as { token: string; expiresAt: string };
    expect(session.token).toMatch(/^pcs_/);
    expect(Date.parse(session.expiresAt) - Date.now()).toBeGreaterThan(7.9 * 3_600_000);
    const containers = await get('containers', session.token);
    expect(containers.status).toBe(200);
    expect((containers.json().containers as { id: string }[]).map((c) => c.id)).toEqual(['Y01']);
    expect((await get('me', session.token)).json()).toMatchObject({ principal: 'alice', orgName: 'ToyCo' });

    const refusals = await Promise.all([
      signIn({ principal: 'alice', password: 'alice likes toy ducks!' }),
      signIn({ principal: 'nobody', password: 'alice likes toy ducks' }),
      signIn({ principal: 'zed', password: 'zed was here once' }),
      signIn({ principal: 'nopw', password: 'alice likes toy ducks' }),
    ]);
    expect(refusals[0]!.status).toBe(401);
    expect(JSON.parse(refusals[0]!.body)).toEqual({ code: 'SIGN_IN_FAILED', message: 'wrong name or password' });
    for (const refusal of refusals) expect(refusal).toEqual(refusals[0]);
    expect((await signIn({ principal: 'alice' })).status).toBe(400);
    // Past access.signInRateLimit (10 a minute per address by default; 5 used above): 429, said plainly.
    const attempts = [];
    for (let i = 0; i < 6; i += 1) attempts.push(await signIn({ principal: `guess${i}`, password: 'a guessed password' }));
    expect(attempts.map((attempt) => attempt.status)).toEqual([401, 401, 401, 401, 401, 429]);
    expect(attempts[5]!.headers['retry-after']).toMatch(/^\d+$/);
    expect(JSON.parse(attempts[5]!.body)).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringContaining('too many sign-in attempts') });
  });

  it('denials answer exactly as a container that does not exist', async () => {
    const missing = await get('containers/Z99', tokens.alice!);
    expect(missing.status).toBe(404);
    for (const [path, token] of [
      ['containers/R01', tokens.alice],
      ['containers/Y01', undefined],
      ['containers/Y01', 'pct_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
      ['containers', undefined],
      ['alerts', 'nonsense'],
    ] as const) {
      const answer = await get(path, token);
      expect({ status: answer.status, body: answer.body }, `${path} ${String(token)}`).toEqual({ status: missing.status, body: missing.body });
    }
    // Signing in is where a bad token is told so.
    expect((await get('me')).status).toBe(401);
  });

  it('live: a customer gets its own new records within 2 s and nothing else; revoking the token ends the stream', async () => {
    const abort = new AbortController();
    const response = await fetch(new URL('/portal/api/events', url), { headers: { authorization: `Bearer ${tokens.alice!}` }, signal: abort.signal });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const readUntil = async (done: () => boolean, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (!done() && Date.now() < deadline) {
        const chunk = await Promise.race([reader.read(), new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), Math.max(1, deadline - Date.now())))]);
        if (chunk === undefined) break;
        if (chunk.done) return false;
        text += decoder.decode(chunk.value, { stream: true });
      }
      return true;
    };
    await readUntil(() => text.includes('portal live'), 2000);
    const sentAt = Date.now();
    await post([
      record('containers', 'R01', T0 + 30 * 600_000, { container: 'R01', tempC: 4.4 }),
      record('containers', 'Y01', T0 + 30 * 600_000, { container: 'Y01', tempC: 23.45, lat: 36, lon: 140 }),
    ]);
    await readUntil(() => text.includes('23.45'), 2000);
    expect(Date.now() - sentAt).toBeLessThan(2000);
    const events = text
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6)) as { type: string; container: string; tempC: number });
    expect(events).toEqual([expect.objectContaining({ type: 'reading', container: 'Y01', tempC: 23.45 })]);

    const tokenId = tokens.alice!.split('_')[1]!;
    await admin('DELETE', `/v1/access/tokens/${tokenId}`);
    await post([record('containers', 'Y01', T0 + 31 * 600_000, { container: 'Y01', tempC: 99.9 })]);
    const open = await readUntil(() => false, 3000);
    expect(open, 'the stream ended after the revocation').toBe(false);
    expect(text).not.toContain('99.9');
    expect((await get('containers/Y01', tokens.alice!)).status).toBe(404);
    abort.abort();
  }, 30_000);

  it('is on by default where there is ingest on the embedded log, off with portal.enabled: false or without ingest', async () => {
    expect((await fetch(new URL('/portal/', url))).status).toBe(200);
    expect((await fetch(new URL('/portal/vendor/countries-110m.json', url))).headers.get('content-type')).toBe('application/json');
    const off = mkdtempSync(join(tmpdir(), 'portcall-portal-off-'));
    try {
      for (const extra of [{ ingest: { peers: [{ site: 'AURORA', token: PEER }] }, portal: { enabled: false } }, {}]) {
        const other = await startSite(parseSiteConfig({ site: 'SHIP', dataDir: off, http: { port: 0 }, ...extra }), { logger: pino({ level: 'silent' }) });
        try {
          expect((await fetch(new URL('/portal/', other.httpUrl))).status).toBe(404);
          expect((await fetch(new URL('/portal/api/containers', other.httpUrl))).status).toBe(404);
        } finally {
          await other.close();
        }
      }
      expect(() => parseSiteConfig({ site: 'X', dataDir: off, portal: { enabled: true, colour: 'blue' } })).toThrow(/portal/);
    } finally {
      rmSync(off, { recursive: true, force: true });
    }
  });
});
