/**
 * Access control (issue 8) over a real SqliteLog, the admin API and the read API (fastify
 * inject). The adversarial part: customer A probing B's containers, with every trick, gets
 * exactly the answer a container that does not exist gets (status, headers, body).
 */
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import Fastify, { type LightMyRequestResponse } from 'fastify';
import { registerSummaryRoutes } from '../cloud/read-api/index.js';
import { AccessProjector, applyRecord, AccessState, parseAce, evaluateAce, formatAce, signedRecord, ACCESS_STREAM, ACCESS_TOPIC, CUSTODY_STREAM, CUSTODY_TOPIC } from '../cloud/access/index.js';
import { StoreUnavailableError, type LogRecord } from '../core/index.js';
import { ACCESS_KEY, BOOTSTRAP, accessSite, type AccessSite } from './support/access-site.js';

const T0 = Date.parse('2025-06-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

/** The voyage's cast: ToyCo and RedCo (customers), DuckMart (ToyCo's consignee), Singapore's port authority, Big Blue ops. */
async function voyage(site: AccessSite) {
  await site.admin('POST', '/v1/access/orgs', { id: 'bigblue', kind: 'carrier' });
  await site.admin('POST', '/v1/access/orgs', { id: 'toyco', kind: 'customer', name: 'ToyCo' });
  await site.admin('POST', '/v1/access/orgs', { id: 'redco', kind: 'customer', name: 'RedCo' });
  await site.admin('POST', '/v1/access/orgs', { id: 'duckmart', kind: 'consignee' });
  await site.admin('POST', '/v1/access/orgs', { id: 'mpa', kind: 'port-authority', port: 'SGSIN' });
  await site.admin('POST', '/v1/access/principals', { id: 'ops', org: 'bigblue', roles: ['carrier-ops'] });
  await site.admin('POST', '/v1/access/principals', { id: 'alice', org: 'toyco', roles: ['customer'] });
  await site.admin('POST', '/v1/access/principals', { id: 'bob', org: 'redco', roles: ['customer'] });
  await site.admin('POST', '/v1/access/principals', { id: 'cara', org: 'duckmart', roles: ['consignee'] });
  await site.admin('POST', '/v1/access/principals', { id: 'pa', org: 'mpa', kind: 'service', roles: ['port-authority'] });
  // Y01 is ToyCo's for the first voyage (event times T0..T0+99), then RedCo's.
  await site.admin('POST', '/v1/access/custody', { id: 'y01-toyco', container: 'Y01', org: 'toyco', from: iso(T0), to: iso(T0 + 100) });
  await site.admin('POST', '/v1/access/custody', { id: 'y01-redco', container: 'Y01', org: 'redco', from: iso(T0 + 100) });
  await site.admin('POST', '/v1/access/custody', { id: 'r01-redco', container: 'R01', org: 'redco', from: iso(T0) });
  await site.admin('POST', '/v1/access/custody', { id: 'y02-toyco', container: 'Y02', org: 'toyco', from: iso(T0) });
  await site.admin('POST', '/v1/access/custody', { id: 'y02-duckmart', container: 'Y02', org: 'duckmart', as: 'consignee', from: iso(T0) });
  // Y03 is booked by ToyCo from a later date: the readings held are before it.
  await site.admin('POST', '/v1/access/custody', { id: 'y03-toyco', container: 'Y03', org: 'toyco', from: iso(T0 + 1_000_000) });
  const tokens = {
    ops: await site.token('ops'),
    alice: await site.token('alice'),
    bob: await site.token('bob'),
    cara: await site.token('cara'),
    pa: await site.token('pa'),
  };
  return tokens;
}

async function readings(site: AccessSite, topic: string, count: number, firstEventMs = T0) {
  for (let i = 0; i < count; i += 1) {
    await site.log.append([{ stream: 'containers', topic, eventTimeMs: firstEventMs + i, payload: json({ temp: i }) }]);
  }
}

async function movements(site: AccessSite) {
  const events = [
    { topic: 'Y02', at: T0 + 1, body: { type: 'loaded', port: 'JPTYO', ship: 'AURORA', voyage: 'V1', cargo: 'toy ducks', consignee: 'duckmart' } },
    { topic: 'Y02', at: T0 + 2, body: { type: 'departed', port: 'JPTYO', ship: 'AURORA', voyage: 'V1' } },
    { topic: 'Y02', at: T0 + 3, body: { type: 'arrived', port: 'SGSIN', ship: 'AURORA', voyage: 'V1' } },
    { topic: 'Y02', at: T0 + 4, body: { type: 'unloaded', port: 'SGSIN', ship: 'AURORA', voyage: 'V1', pieces: 4000 } },
    { topic: 'R01', at: T0 + 5, body: { type: 'arrived', port: 'SGSIN', ship: 'AURORA', voyage: 'V1' } },
    { topic: 'R01', at: T0 + 6, body: { type: 'inspection', port: 'SGSIN', note: 'secret' } },
  ];
  for (const event of events) {
    await site.log.append([{ stream: 'manifests', topic: event.topic, eventTimeMs: event.at, payload: json(event.body) }]);
  }
}

const get = (site: AccessSite, url: string, token?: string) =>
  site.app.inject({ url, ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }) });

/** Everything a client can see of a response: status, headers (no Date) and body. */
function whole(response: LightMyRequestResponse) {
  const { date: _date, ...headers } = response.headers;
  return { status: response.statusCode, headers, body: response.body };
}

interface Page {
  nextOffset: number;
  records: { offset: number; payload: unknown; headers: Record<string, string>; eventTime: string }[];
}

describe('access control over the read API', () => {
  let site: AccessSite;
  let tokens: Awaited<ReturnType<typeof voyage>>;
  beforeAll(async () => {
    site = await accessSite({ maxPageRecords: 500 });
    tokens = await voyage(site);
    await readings(site, 'Y01', 200);
    await readings(site, 'R01', 20);
    await readings(site, 'Y02', 10);
    await readings(site, 'Y03', 10);
    await movements(site);
  });
  afterAll(async () => site.close());

  it("a customer reads its container's records within its custody window only, at identity offsets", async () => {
    const alice = (await get(site, '/v1/streams/containers/topics/Y01/records?maxRecords=500', tokens.alice)).json<Page>();
    expect(alice.records.map((r) => r.offset)).toEqual(Array.from({ length: 100 }, (_u, i) => i));
    expect(alice.nextOffset).toBe(100);
    const bob = (await get(site, '/v1/streams/containers/topics/Y01/records?maxRecords=10', tokens.bob)).json<Page>();
    // RedCo's window starts at offset 100: its first page starts there, and continues from there.
    expect(bob.records.map((r) => r.offset)).toEqual(Array.from({ length: 10 }, (_u, i) => 100 + i));
    expect(bob.nextOffset).toBe(110);
    expect((await get(site, '/v1/streams/containers/topics/Y01/latest', tokens.alice)).json()).toMatchObject({ offset: 99 });
    expect((await get(site, '/v1/streams/containers/topics/Y01/latest', tokens.bob)).json()).toMatchObject({ offset: 199 });
    const ops = (await get(site, '/v1/streams/containers/topics/Y01/records?maxRecords=500', tokens.ops)).json<Page>();
    expect(ops.records).toHaveLength(200);
  });

  it("past the end of its window a customer's answer does not depend on the next owner's records", async () => {
    const fresh = await accessSite();
    try {
      const own = await voyage(fresh);
      await readings(fresh, 'Y01', 100);
      const urls = [
        '/v1/streams/containers/topics/Y01/latest',
        '/v1/streams/containers/topics/Y01/records?from=100',
        '/v1/streams/containers/topics/Y01/records?from=150&maxRecords=5',
        '/v1/streams/containers/topics/Y01/records?from=90',
      ];
      const before = await Promise.all(urls.map(async (url) => whole(await get(fresh, url, own.alice))));
      await readings(fresh, 'Y01', 100, T0 + 100); // RedCo's voyage
      const after = await Promise.all(urls.map(async (url) => whole(await get(fresh, url, own.alice))));
      expect(after).toEqual(before);
      expect(JSON.parse(before[1]!.body)).toMatchObject({ nextOffset: 100, records: [] });
    } finally {
      await fresh.close();
    }
  });

  it('customer A probing B: known and guessed ids, case and encoding tricks, traversal, wildcards — the answer of a container that does not exist', async () => {
    const topics = (id: string) => [
      id,
      id.toLowerCase(),
      encodeURIComponent(id).replace(/./g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
      `${id}%00`,
      `..%2F${id}`,
      `${id}%2F..%2F${id}`,
      `.%2E%2F${id}`,
      `${id}.`,
      `%20${id}`,
      `${id}*`,
      '%2A',
      '%23',
      '%2B',
      `${id}%3Ffrom%3D0`,
      `${id.slice(0, 2)}%25`,
    ];
    const queries = ['', '?from=0', '?from=0&maxRecords=500', '?from=100&maxRecords=1', '?from=9007199254740991', '?maxBytes=1', '?from=-1', '?from=1e3', '?from=0x10', '?foo=bar'];
    const streams = ['containers', 'manifests', 'alerts', 'ships', 'access', 'Containers', 'containers%2F..', '*'];
    let compared = 0;
    for (const stream of streams) {
      for (const [probe, nonexistent] of [
        ['R01', 'Z99'],
        ['Y01', 'Z98'],
      ] as const) {
        const probeTopics = topics(probe);
        const missingTopics = topics(nonexistent);
        for (let t = 0; t < probeTopics.length; t += 1) {
          const endpoints = [`latest`, ...queries.map((q) => `records${q}`)];
          for (const endpoint of endpoints) {
            const url = (topic: string) => `/v1/streams/${stream}/topics/${topic}/${endpoint}`;
            // Y01 is Alice's too (offsets 0..99), so only probe it where its answer must be "nothing": as Carol, the consignee of other goods.
            const who = probe === 'Y01' ? tokens.cara : tokens.alice;
            const probed = whole(await get(site, url(probeTopics[t]!), who));
            const missing = whole(await get(site, url(missingTopics[t]!), who));
            const anonymous = whole(await get(site, url(missingTopics[t]!)));
            expect(probed, url(probeTopics[t]!)).toEqual(missing);
            expect(anonymous, url(missingTopics[t]!)).toEqual(missing);
            expect(probed.body).not.toMatch(/temp|offset/);
            compared += 1;
          }
        }
      }
    }
    expect(compared).toBe(streams.length * 2 * 15 * 11);
  });

  it("per-topic summaries show a customer its own records only, and nothing of the next owner's (not even how many)", async () => {
    const fresh = await accessSite();
    const summaries = Fastify({ logger: false });
    try {
      registerSummaryRoutes(summaries, { site: 'HQ', reader: fresh.log, listing: fresh.log, access: fresh.access.readAccess });
      const own = await voyage(fresh);
      await readings(fresh, 'Y01', 100);
      await readings(fresh, 'R01', 5);
      const summary = async () =>
        (await summaries.inject({ url: '/v1/summaries/containers', headers: { authorization: `Bearer ${own.alice}` } })).body;
      const before = await summary();
      await readings(fresh, 'Y01', 100, T0 + 100); // RedCo's voyage
      expect(await summary()).toEqual(before);
      expect(JSON.parse(before)).toMatchObject({ topics: [{ topic: 'Y01', firstOffset: 0, nextOffset: 100, records: 100 }], after: null });
      const anonymous = await summaries.inject({ url: '/v1/summaries/containers' });
      expect(anonymous.json()).toEqual({ stream: 'containers', topics: [], after: null });
    } finally {
      await summaries.close();
      await fresh.close();
    }
  });

  it('a missing, malformed, unknown, revoked or expired token reads nothing: the answer of a container that does not exist', async () => {
    const urls = ['/v1/streams/containers/topics/R01/latest', '/v1/streams/containers/topics/R01/records?from=0', '/v1/streams/manifests/topics/R01/records'];
    const expiring = await site.token('bob', iso(site.clock.nowMs + 3_600_000));
    const revoked = await site.token('bob');
    for (const url of urls) {
      expect((await get(site, url, expiring)).statusCode).toBe(200);
      expect((await get(site, url, revoked)).statusCode).toBe(200);
    }
    const tokenId = revoked.split('_')[1]!;
    await site.admin('DELETE', `/v1/access/tokens/${tokenId}`);
    site.clock.nowMs += 3_600_000;
    try {
      const forged = `pct_${tokenId}_${'A'.repeat(43)}`;
      const authorizations = [
        undefined,
        '',
        'Bearer',
        'Bearer ',
        `Basic ${Buffer.from('bob:pw').toString('base64')}`,
        `Bearer ${revoked}`,
        `Bearer ${expiring}`,
        `Bearer ${forged}`,
        `Bearer ${tokens.bob.slice(0, -1)}`,
        `Bearer ${tokens.bob}x`,
        `bearer ${BOOTSTRAP}`, // the bootstrap admin reads nothing
        `Bearer ${'x'.repeat(600)}`,
      ];
      for (const url of urls) {
        const missing = whole(await get(site, url.replace('R01', 'Z99'), tokens.bob));
        expect(missing.status).toBe(404);
        for (const authorization of authorizations) {
          const response = await site.app.inject({ url, ...(authorization === undefined ? {} : { headers: { authorization } }) });
          expect(whole(response), `${url} ${authorization}`).toEqual(missing);
        }
        // Bob's good token still reads it.
        expect((await get(site, url, tokens.bob)).statusCode).toBe(200);
      }
    } finally {
      site.clock.nowMs -= 3_600_000;
    }
  });

  it('a custody window with no records in it, or a container never booked, reads as nonexistent', async () => {
    for (const url of ['/v1/streams/containers/topics/Y03/latest', '/v1/streams/containers/topics/Y03/records?from=0']) {
      expect(whole(await get(site, url, tokens.alice))).toEqual(whole(await get(site, url.replace('Y03', 'Z97'), tokens.alice)));
      expect((await get(site, url, tokens.ops)).statusCode).toBe(200);
    }
  });

  it('a consignee sees coarse status of its consignments only, never raw readings or cargo details', async () => {
    const page = (await get(site, '/v1/streams/manifests/topics/Y02/records', tokens.cara)).json<Page>();
    expect(page.records.map((r) => r.payload)).toEqual([
      { status: 'in-transit', port: 'JPTYO', at: iso(T0 + 1) },
      { status: 'in-transit', port: 'JPTYO', at: iso(T0 + 2) },
      { status: 'arrived', port: 'SGSIN', at: iso(T0 + 3) },
      { status: 'arrived', port: 'SGSIN', at: iso(T0 + 4) },
    ]);
    expect(page.records.every((r) => Object.keys(r.headers).length === 0)).toBe(true);
    expect((await get(site, '/v1/streams/manifests/topics/Y02/latest', tokens.cara)).json()).toMatchObject({ payload: { status: 'arrived', port: 'SGSIN' } });
    const raw = whole(await get(site, '/v1/streams/containers/topics/Y02/records', tokens.cara));
    expect(raw).toEqual(whole(await get(site, '/v1/streams/containers/topics/Z99/records', tokens.cara)));
    // ToyCo, the owner, sees the whole manifest.
    const owner = (await get(site, '/v1/streams/manifests/topics/Y02/records', tokens.alice)).json<Page>();
    expect(owner.records[0]!.payload).toMatchObject({ cargo: 'toy ducks' });
  });

  it("a port authority sees arrivals, departures and unloads at its port, of anyone's containers, and nothing else", async () => {
    const y02 = (await get(site, '/v1/streams/manifests/topics/Y02/records', tokens.pa)).json<Page>();
    expect(y02.records.map((r) => [r.offset, r.payload])).toEqual([
      [2, { type: 'arrived', port: 'SGSIN', container: 'Y02', ship: 'AURORA', voyage: 'V1' }],
      [3, { type: 'unloaded', port: 'SGSIN', container: 'Y02', ship: 'AURORA', voyage: 'V1' }],
    ]);
    const r01 = (await get(site, '/v1/streams/manifests/topics/R01/records', tokens.pa)).json<Page>();
    expect(r01.records.map((r) => r.offset)).toEqual([0]);
    expect(whole(await get(site, '/v1/streams/containers/topics/R01/latest', tokens.pa))).toEqual(
      whole(await get(site, '/v1/streams/containers/topics/Z99/latest', tokens.pa)),
    );
  });

  it("a principal's RecordFilter (for replication, live and Kafka paths) admits exactly what the read API serves it, in the same form", async () => {
    const streams = ['containers', 'manifests', 'alerts', 'ships'];
    const everything = (
      await Promise.all(streams.map(async (stream) => (await site.log.readStream(stream, 0, { maxRecords: 100_000 })).records))
    ).flat();
    expect(everything.length).toBeGreaterThan(200);
    for (const [name, token] of Object.entries(tokens)) {
      const filter = site.access.filterForToken(token)!;
      const admitted = everything
        .map((record) => filter.admit(record))
        .filter((record) => record !== undefined)
        .map((record) => `${record.stream}/${record.topic}/${record.offset}/${Buffer.from(record.payload).toString()}`)
        .sort();
      const served: string[] = [];
      const topics = new Set(everything.map((record) => `${record.stream}/${record.topic}`));
      for (const key of topics) {
        const [stream, topic] = key.split('/') as [string, string];
        const response = await get(site, `/v1/streams/${stream}/topics/${topic}/records?maxRecords=500`, token);
        if (response.statusCode === 404) continue;
        for (const record of response.json<Page>().records) served.push(`${stream}/${topic}/${record.offset}/${JSON.stringify(record.payload)}`);
      }
      expect(served.sort(), name).toEqual(admitted);
    }
    expect(site.access.filterForToken('pct_0000000000000000_nonsense')).toBeUndefined();
  });

  it('the access stream never leaves through the read API, and custody records only to carrier ops', async () => {
    for (const token of [tokens.ops, tokens.alice, BOOTSTRAP]) {
      expect((await get(site, `/v1/streams/${ACCESS_STREAM}/topics/${ACCESS_TOPIC}/records`, token)).statusCode).toBe(404);
      expect((await get(site, `/v1/streams/${ACCESS_STREAM}/topics/${ACCESS_TOPIC}/latest`, token)).statusCode).toBe(404);
    }
    expect((await get(site, `/v1/streams/${CUSTODY_STREAM}/topics/${CUSTODY_TOPIC}/latest`, tokens.alice)).statusCode).toBe(404);
    expect((await get(site, `/v1/streams/${CUSTODY_STREAM}/topics/${CUSTODY_TOPIC}/latest`, tokens.ops)).statusCode).toBe(200);
  });

  it('a stream expression narrows who may read it, and takes effect at once', async () => {
    const url = '/v1/streams/containers/topics/R01/latest';
    expect((await get(site, url, tokens.bob)).statusCode).toBe(200);
    await site.admin('PUT', '/v1/access/streams/containers/ace', { expression: 'role:carrier-ops | (role:customer & !org:redco)' });
    try {
      expect(whole(await get(site, url, tokens.bob))).toEqual(whole(await get(site, url.replace('R01', 'Z99'), tokens.bob)));
      expect((await get(site, '/v1/streams/containers/topics/Y01/latest', tokens.alice)).statusCode).toBe(200);
    } finally {
      await site.admin('PUT', '/v1/access/streams/containers/ace', { expression: null });
    }
    expect((await get(site, url, tokens.bob)).statusCode).toBe(200);
  });

  it('a custody record a device or a peer wrote (unsigned, or signed with another key) grants nothing', async () => {
    const forged = { type: 'custody.assigned', id: 'forged', container: 'R01', org: 'toyco', as: 'owner', fromMs: 0, by: 'alice', atMs: T0 };
    await site.log.append([{ stream: CUSTODY_STREAM, topic: CUSTODY_TOPIC, payload: json(forged) }]);
    await site.log.append([signedRecord(Buffer.from('x'.repeat(48)), forged as never)]);
    await site.access.projector.catchUp();
    expect(site.access.projector.state.custody.has('forged')).toBe(false);
    expect((await get(site, '/v1/streams/containers/topics/R01/latest', tokens.alice)).statusCode).toBe(404);
    expect(await site.registry.getSingleMetricAsString('portcall_access_records_ignored_total')).toContain('reason="bad-signature"} 2');
  });

  it('the admin API wants an access-admin token, validates strictly, and audits who changed what', async () => {
    for (const token of [undefined, tokens.ops, tokens.alice, 'nonsense']) {
      const response = await site.app.inject({
        method: 'POST',
        url: '/v1/access/orgs',
        payload: { id: 'evil', kind: 'carrier' },
        ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
      });
      expect(response.statusCode).toBe(401);
    }
    expect(site.access.projector.state.orgs.has('evil')).toBe(false);
    expect(await site.registry.getSingleMetricAsString('portcall_access_admin_refusals_total')).toContain('reason="unauthorized"} 4');
    const bad = async (method: 'POST' | 'PUT', url: string, payload: object) =>
      (await site.app.inject({ method, url, payload, headers: { authorization: `Bearer ${BOOTSTRAP}` } })).statusCode;
    expect(await bad('PUT', '/v1/access/streams/containers/ace', { expression: 'role:customer &' })).toBe(400);
    expect(await bad('PUT', '/v1/access/streams/containers/ace', { expression: 'team:x' })).toBe(400);
    expect(await bad('POST', '/v1/access/principals', { id: 'x', org: 'nope', roles: ['customer'] })).toBe(400);
    expect(await bad('POST', '/v1/access/principals', { id: 'x', org: 'toyco', roles: ['port-authority'] })).toBe(400);
    expect(await bad('POST', '/v1/access/custody', { container: 'Y09', org: 'toyco', from: iso(T0), to: iso(T0) })).toBe(400);
    expect(await bad('POST', '/v1/access/orgs', { id: '../x', kind: 'customer' })).toBe(400);
    expect(await bad('POST', '/v1/access/tokens', { principal: 'alice', expiresAt: iso(site.clock.nowMs - 1) })).toBe(400);
    const admin = await site.token('ops');
    expect(admin).toMatch(/^pct_[0-9a-f]{16}_/);
    const snapshot = site.access.projector.state.snapshot() as { orgs: { id: string; changedBy: string; changedAtMs: number }[]; tokens: Record<string, unknown>[] };
    expect(snapshot.orgs.find((org) => org.id === 'toyco')).toMatchObject({ changedBy: 'bootstrap', changedAtMs: site.clock.nowMs });
    // The token is never stored: neither in the state shown nor in the log.
    const state = await site.app.inject({ url: '/v1/access/state', headers: { authorization: `Bearer ${BOOTSTRAP}` } });
    // The secret is everything after `pct_<16 hex>_` (base64url, which may itself contain "_").
    const secret = admin.slice('pct_'.length + 16 + 1);
    expect(secret).toHaveLength(43);
    expect(state.body).not.toContain(admin);
    expect(state.body).not.toContain(secret);
    const logged = await site.log.readTopic(ACCESS_STREAM, ACCESS_TOPIC, 0, { maxRecords: 10_000 });
    expect(logged.some((record) => Buffer.from(record.payload).toString().includes(secret))).toBe(false);
    expect(logged.every((record) => JSON.parse(Buffer.from(record.payload).toString()).by === 'bootstrap')).toBe(true);
  });

  it('the projector is a pure fold: replaying from offset 0 gives the same state, and a record applied twice changes nothing', async () => {
    const replay = new AccessProjector({ reader: site.log, key: ACCESS_KEY });
    await replay.catchUp();
    expect(replay.state.snapshot()).toEqual(site.access.projector.state.snapshot());
    const twice = new AccessState();
    const records: LogRecord[] = [
      ...(await site.log.readTopic(ACCESS_STREAM, ACCESS_TOPIC, 0, { maxRecords: 10_000 })),
      ...(await site.log.readTopic(CUSTODY_STREAM, CUSTODY_TOPIC, 0, { maxRecords: 10_000 })),
    ];
    for (const record of records) {
      applyRecord(twice, ACCESS_KEY, record);
      applyRecord(twice, ACCESS_KEY, record);
    }
    expect(twice.snapshot()).toEqual(site.access.projector.state.snapshot());
  });
});

describe('access control: roles, organisations and long topics', () => {
  let site: AccessSite;
  afterEach(async () => site.close());

  it("a role its organisation's kind does not allow counts for nothing (a customer's principal is never carrier ops)", async () => {
    site = await accessSite();
    const tokens = await voyage(site);
    await readings(site, 'R01', 3);
    const refused = await site.app.inject({
      method: 'POST',
      url: '/v1/access/principals',
      payload: { id: 'mallory', org: 'toyco', roles: ['carrier-ops'] },
      headers: { authorization: `Bearer ${BOOTSTRAP}` },
    });
    expect(refused.statusCode).toBe(400);
    expect(refused.json<{ message: string }>().message).toMatch(/carrier-ops is for carrier organisations/);
    // Written into the log past the admin API (signed, so the projector applies it): still nothing.
    await site.log.append([signedRecord(ACCESS_KEY, { type: 'principal.set', id: 'mallory', org: 'toyco', kind: 'person', roles: ['carrier-ops', 'access-admin'], by: 'x', atMs: 1 })]);
    await site.access.projector.catchUp();
    const mallory = await site.token('mallory');
    const url = '/v1/streams/containers/topics/R01/latest';
    expect((await get(site, url, tokens.ops)).statusCode).toBe(200);
    expect(whole(await get(site, url, mallory))).toEqual(whole(await get(site, url.replace('R01', 'Z99'), mallory)));
    const admin = await site.app.inject({ url: '/v1/access/state', headers: { authorization: `Bearer ${mallory}` } });
    expect(admin.statusCode).toBe(401);
  });

  it('a long-lived RecordFilter (a replication link, a live connection) stops admitting at revocation, expiry or disablement', async () => {
    site = await accessSite();
    await voyage(site);
    await readings(site, 'R01', 1);
    const [record] = await site.log.readTopic('containers', 'R01', 0);
    const revoked = await site.token('bob');
    const expiring = await site.token('bob', iso(site.clock.nowMs + 60_000));
    const disabled = await site.token('bob');
    const filters = [revoked, expiring, disabled].map((token) => site.access.filterForToken(token)!);
    expect(filters.map((filter) => filter.admit(record!) !== undefined)).toEqual([true, true, true]);
    await site.admin('DELETE', `/v1/access/tokens/${revoked.split('_')[1]}`);
    expect(filters.map((filter) => filter.admit(record!) !== undefined)).toEqual([false, true, true]);
    site.clock.nowMs += 60_000;
    expect(filters.map((filter) => filter.admit(record!) !== undefined)).toEqual([false, false, true]);
    expect(filters[2]!.mayHold('containers', 'R01')).toBe(true);
    await site.admin('DELETE', '/v1/access/principals/bob');
    expect(filters.map((filter) => filter.admit(record!) !== undefined)).toEqual([false, false, false]);
    expect(filters[2]!.mayHold('containers', 'R01')).toBe(false);
    // The bootstrap token's principal name is reserved.
    const bootstrapName = await site.app.inject({
      method: 'POST',
      url: '/v1/access/principals',
      payload: { id: 'bootstrap', org: 'bigblue', roles: ['carrier-ops'] },
      headers: { authorization: `Bearer ${BOOTSTRAP}` },
    });
    expect(bootstrapName.statusCode).toBe(400);
  });

  it('latest and pages find a window far back in a long topic of large records', async () => {
    site = await accessSite();
    const tokens = await voyage(site);
    // Y01: ToyCo's window is event times T0..T0+99. 2,500 records: the first 10 are ToyCo's, then RedCo's.
    await site.log.append(Array.from({ length: 10 }, (_u, i) => ({ stream: 'containers', topic: 'Y01', eventTimeMs: T0 + i, payload: json({ i }) })));
    for (let batch = 0; batch < 5; batch += 1) {
      await site.log.append(Array.from({ length: 498 }, (_u, i) => ({ stream: 'containers', topic: 'Y01', eventTimeMs: T0 + 100 + batch * 498 + i, payload: json({ i }) })));
    }
    expect((await get(site, '/v1/streams/containers/topics/Y01/latest', tokens.alice)).json()).toMatchObject({ offset: 9 });
    expect((await get(site, '/v1/streams/containers/topics/Y01/latest', tokens.bob)).json()).toMatchObject({ offset: 2499 });
    // Y04: 60 records of 200 KB (more than one 4 MiB scan step); ToyCo's window covers offsets 50-54 only.
    const big = Buffer.alloc(200 * 1024, 120);
    await site.admin('POST', '/v1/access/custody', { id: 'y04-toyco', container: 'Y04', org: 'toyco', from: iso(T0 + 50), to: iso(T0 + 55) });
    for (let i = 0; i < 60; i += 1) await site.log.append([{ stream: 'containers', topic: 'Y04', eventTimeMs: T0 + i, payload: big }]);
    expect((await get(site, '/v1/streams/containers/topics/Y04/latest', tokens.alice)).json()).toMatchObject({ offset: 54 });
    const page = (await get(site, '/v1/streams/containers/topics/Y04/records?from=3&maxRecords=100', tokens.alice)).json<Page>();
    expect(page.records.map((r) => r.offset)).toEqual([50, 51, 52, 53, 54]);
    expect(page.nextOffset).toBe(55);
  });
});

describe('access projector under read failures', () => {
  it('applies a catch-up whole or not at all, and starts denying everything while the log cannot be read', async () => {
    const site = await accessSite();
    try {
      const tokens = await voyage(site);
      const tokenId = tokens.bob.split('_')[1]!;
      // Push the revocation past the first page of the projector's reads.
      const filler = Array.from({ length: 1200 }, (_u, i) => signedRecord(ACCESS_KEY, { type: 'group.set', id: `g${i}`, members: [], by: 'test', atMs: 1 }));
      await site.log.append(filler);
      await site.log.append([signedRecord(ACCESS_KEY, { type: 'token.revoked', tokenId, by: 'test', atMs: 2 })]);
      let failFrom: number | undefined = 1000;
      const flaky = {
        latest: (stream: string, topic: string) => site.log.latest(stream, topic),
        readTopic: async (stream: string, topic: string, from: number, limits?: { maxRecords?: number }) => {
          if (failFrom !== undefined && stream === ACCESS_STREAM && from >= failFrom) throw new StoreUnavailableError('index catching up');
          return site.log.readTopic(stream, topic, from, limits);
        },
      };
      const projector = new AccessProjector({ reader: flaky, key: ACCESS_KEY });
      await expect(projector.catchUp()).rejects.toThrow(/catching up/);
      // Nothing of the first page was applied: Bob's token is not half-known (issued, revocation unread).
      expect(projector.state.tokens.size).toBe(0);
      failFrom = undefined;
      await projector.catchUp();
      expect(projector.state.tokens.get(tokenId)?.revoked).toBe(true);

      // A projector that cannot read at start starts anyway, knowing nobody, and catches up by polling.
      failFrom = 0;
      const late = new AccessProjector({ reader: flaky, key: ACCESS_KEY, pollIntervalMs: 20 });
      await late.start();
      try {
        expect(late.state.tokens.size).toBe(0);
        failFrom = undefined;
        for (let i = 0; i < 100 && late.state.tokens.size === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
        expect(late.state.snapshot()).toEqual(projector.state.snapshot());
      } finally {
        late.stop();
      }
    } finally {
      await site.close();
    }
  });
});

describe('rate limits', () => {
  let site: AccessSite;
  afterEach(async () => site.close());

  it('a fixed window per client on reads (every request, good token or not) and on the admin API', async () => {
    site = await accessSite({ readRequests: 5, adminRequests: 1000 });
    const tokens = await voyage(site);
    for (let i = 0; i < 5; i += 1) expect((await get(site, '/v1/streams/containers/topics/Z99/latest', i % 2 === 0 ? tokens.bob : undefined)).statusCode).toBe(404);
    const limited = await get(site, '/v1/streams/containers/topics/R01/latest', tokens.bob);
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    site.clock.nowMs += 60_000;
    expect((await get(site, '/v1/streams/containers/topics/Z99/latest', tokens.bob)).statusCode).toBe(404);
    await site.close();

    site = await accessSite({ adminRequests: 3 });
    const calls = [];
    for (let i = 0; i < 4; i += 1) {
      calls.push((await site.app.inject({ url: '/v1/access/state', headers: { authorization: `Bearer ${BOOTSTRAP}` } })).statusCode);
    }
    expect(calls).toEqual([200, 200, 200, 429]);
  });
});

describe('access control expressions', () => {
  const subject = { user: 'alice', org: 'toyco', roles: new Set(['customer']), groups: new Set(['reefer-watch']) };
  it.each([
    ['role:customer', true],
    ['user:alice', true],
    ['user:bob', false],
    ['org:toyco & role:customer', true],
    ['org:toyco and not role:customer', false],
    ['role:carrier-ops | group:reefer-watch', true],
    ['!(role:carrier-ops | org:redco)', true],
    ['role:carrier-ops | role:customer & org:redco', false],
    ['(role:carrier-ops | role:customer) & !org:redco', true],
    ['not not user:alice', true],
  ])('%s → %s', (text, expected) => {
    expect(evaluateAce(parseAce(text), subject)).toBe(expected);
    // The canonical form means the same.
    expect(evaluateAce(parseAce(formatAce(parseAce(text))), subject)).toBe(expected);
  });

  it.each([
    '',
    ' ',
    'alice',
    'u:alice',
    'team:x',
    'user:',
    'user:*',
    'user:al ice',
    'role:customer &',
    '& role:customer',
    'role:customer role:carrier-ops',
    '(role:customer',
    'role:customer)',
    '()',
    'role:customer && org:toyco',
    'user:a:b',
    'USER:alice',
    'role:customer; drop',
    `${'('.repeat(40)}user:a${')'.repeat(40)}`,
    `user:${'a'.repeat(2000)}`,
  ])('refuses %j', (text) => {
    expect(() => parseAce(text)).toThrow(/access control expression/);
  });
});
