/**
 * Property: for random custody histories (windows assigned, some withdrawn, containers
 * changing hands) over random readings and manifests (event times in any order) and random
 * queries by random principals (customers, a consignee, a port authority, carrier ops, no
 * token, a revoked token), the read API returns exactly what a simple reference model allows
 * — nothing more, nothing missing, in the form the role sees — at identity offsets, with the
 * 404 of a nonexistent container whenever the principal may see nothing of the topic. Real
 * SqliteLog, real projector, read API through fastify inject.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { registerReadRoutes } from '../cloud/read-api/index.js';
import { newToken, signedRecord, startAccess, type AccessRecord, type CustodyRecord } from '../cloud/access/index.js';
import { SqliteLog } from '../edge/log/index.js';

const KEY = Buffer.from('p'.repeat(40));
const ORGS = ['o1', 'o2', 'o3'] as const;
const TOPICS = ['C0', 'C1', 'C2'] as const;
const STREAMS = ['containers', 'manifests'] as const;
const MOVEMENTS = ['loaded', 'departed', 'arrived', 'unloaded', 'lost', 'inspected'] as const;
const PORTS = ['SGSIN', 'JPTYO'] as const;
const STATUS: Record<string, string> = { loaded: 'in-transit', departed: 'in-transit', arrived: 'arrived', unloaded: 'arrived', lost: 'lost' };
/** Principals: a customer per organisation, a consignee in o2, Singapore's port authority, carrier ops. */
const WHO = ['o1', 'o2', 'o3', 'cons', 'pa', 'ops', 'nobody', 'revoked'] as const;

interface Window {
  container: string;
  org: string;
  as: 'owner' | 'consignee';
  fromMs: number;
  toMs?: number;
  withdrawn: boolean;
}

interface Entry {
  eventTimeMs: number;
  body: Record<string, unknown>;
}

const windowArb = fc
  .record({
    container: fc.constantFrom(...TOPICS),
    org: fc.constantFrom(...ORGS),
    as: fc.constantFrom('owner' as const, 'consignee' as const),
    fromMs: fc.integer({ min: 0, max: 40 }),
    length: fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
    withdrawn: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
  })
  .map(({ length, ...window }): Window => ({ ...window, ...(length === undefined ? {} : { toMs: window.fromMs + length }) }));

const readingArb = fc.integer({ min: 0, max: 45 }).map((eventTimeMs): Entry => ({ eventTimeMs, body: { t: eventTimeMs } }));
const manifestArb = fc
  .record({ eventTimeMs: fc.integer({ min: 0, max: 45 }), type: fc.constantFrom(...MOVEMENTS), port: fc.constantFrom(...PORTS), named: fc.boolean() })
  .map(({ eventTimeMs, type, port, named }): Entry => ({ eventTimeMs, body: { [named ? 'type' : 'event']: type, port, cargo: 'ducks', owner: 'o1' } }));

const queryArb = fc.record({
  who: fc.constantFrom(...WHO),
  stream: fc.constantFrom(...STREAMS),
  topic: fc.constantFrom(...TOPICS, 'C9'),
  endpoint: fc.constantFrom('records' as const, 'latest' as const, 'all' as const),
  from: fc.integer({ min: 0, max: 25 }),
  maxRecords: fc.integer({ min: 1, max: 30 }),
});

const scenarioArb = fc.record({
  // Per topic, its readings and its manifests in offset order (event times not sorted: devices' clocks jump).
  readings: fc.tuple(...TOPICS.map(() => fc.array(readingArb, { maxLength: 20 }))),
  manifests: fc.tuple(...TOPICS.map(() => fc.array(manifestArb, { maxLength: 12 }))),
  windows: fc.array(windowArb, { maxLength: 8 }),
  queries: fc.array(queryArb, { minLength: 1, maxLength: 10 }),
});

interface Shown {
  offset: number;
  payload: unknown;
}

describe('access control, property', () => {
  it('returns exactly the records the reference model allows, in the form each role sees', async () => {
    // How many non-ops queries had something to see, per kind: the property must not pass on empty views.
    const views = { customer: 0, consignee: 0, port: 0 };
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ readings, manifests, windows, queries }) => {
        const dir = mkdtempSync(join(tmpdir(), 'portcall-access-prop-'));
        const log = SqliteLog.open({ siteId: 'HQ', path: join(dir, 'log.sqlite') });
        const app = Fastify({ logger: false });
        let access: Awaited<ReturnType<typeof startAccess>> | undefined;
        const held = { containers: readings, manifests };
        try {
          for (const stream of STREAMS) {
            for (const [t, entries] of held[stream].entries()) {
              if (entries.length > 0) {
                await log.append(entries.map(({ eventTimeMs, body }) => ({ stream, topic: TOPICS[t]!, eventTimeMs, payload: Buffer.from(JSON.stringify(body)) })));
              }
            }
          }
          const audit = { by: 'test', atMs: 1 };
          const changes: (AccessRecord | CustodyRecord)[] = [
            { type: 'org.set', id: 'carrier', kind: 'carrier', ...audit },
            { type: 'org.set', id: 'mpa', kind: 'port-authority', port: 'SGSIN', ...audit },
            ...ORGS.map((id): AccessRecord => ({ type: 'org.set', id, kind: 'customer', ...audit })),
            ...ORGS.map((org): AccessRecord => ({ type: 'principal.set', id: `p-${org}`, org, kind: 'person', roles: ['customer'], ...audit })),
            { type: 'principal.set', id: 'p-cons', org: 'o2', kind: 'person', roles: ['consignee'], ...audit },
            { type: 'principal.set', id: 'p-pa', org: 'mpa', kind: 'service', roles: ['port-authority'], ...audit },
            { type: 'principal.set', id: 'p-ops', org: 'carrier', kind: 'person', roles: ['carrier-ops'], ...audit },
          ];
          const tokens: Record<string, string> = {};
          for (const who of ['o1', 'o2', 'o3', 'cons', 'pa', 'ops', 'revoked']) {
            const token = newToken();
            tokens[who] = token.token;
            changes.push({ type: 'token.issued', tokenId: token.tokenId, principal: who === 'revoked' ? 'p-o1' : `p-${who}`, sha256: token.sha256, ...audit });
            if (who === 'revoked') changes.push({ type: 'token.revoked', tokenId: token.tokenId, ...audit });
          }
          windows.forEach((window, i) => {
            changes.push({
              type: 'custody.assigned',
              id: `w${i}`,
              container: window.container,
              org: window.org,
              as: window.as,
              fromMs: window.fromMs,
              ...(window.toMs === undefined ? {} : { toMs: window.toMs }),
              ...audit,
            });
          });
          windows.forEach((window, i) => {
            if (window.withdrawn) changes.push({ type: 'custody.withdrawn', id: `w${i}`, ...audit });
          });
          await log.append(changes.map((change) => signedRecord(KEY, change)));
          access = await startAccess({
            key: KEY,
            reader: log,
            appender: log,
            source: log,
            readRateLimit: { requests: 1_000_000, windowMs: 60_000 },
            adminRateLimit: { requests: 1_000_000, windowMs: 60_000 },
          });
          registerReadRoutes(app, { reader: log, access: access.readAccess, maxPageRecords: 40 });

          const inWindow = (org: string, topic: string, eventTimeMs: number, ownerOnly: boolean) =>
            windows.some(
              (w) =>
                !w.withdrawn && w.container === topic && w.org === org && (!ownerOnly || w.as === 'owner') && eventTimeMs >= w.fromMs && eventTimeMs < (w.toMs ?? Infinity),
            );

          /** The reference model: what the principal sees of the topic, in offset order. */
          const allowed = (who: string, stream: (typeof STREAMS)[number], topic: string): Shown[] => {
            const entries = held[stream][TOPICS.indexOf(topic as (typeof TOPICS)[number])] ?? [];
            return entries.flatMap(({ eventTimeMs, body }, offset): Shown[] => {
              if (who === 'ops') return [{ offset, payload: body }];
              if ((ORGS as readonly string[]).includes(who)) return inWindow(who, topic, eventTimeMs, true) ? [{ offset, payload: body }] : [];
              if (stream !== 'manifests') return [];
              const type = (body.type ?? body.event) as string;
              if (who === 'pa') {
                return ['arrived', 'departed', 'unloaded'].includes(type) && body.port === 'SGSIN' ? [{ offset, payload: { type, port: 'SGSIN', container: topic } }] : [];
              }
              if (who === 'cons') {
                const status = STATUS[type];
                return status !== undefined && inWindow('o2', topic, eventTimeMs, false)
                  ? [{ offset, payload: { status, port: body.port, at: new Date(eventTimeMs).toISOString() } }]
                  : [];
              }
              return [];
            });
          };

          // Random queries, and every principal's whole view of every topic (so no window goes unchecked).
          const everything = WHO.flatMap((who) =>
            STREAMS.flatMap((stream) =>
              TOPICS.flatMap((topic) => [
                { who, stream, topic, endpoint: 'all' as const, from: 0, maxRecords: 7 },
                { who, stream, topic, endpoint: 'latest' as const, from: 0, maxRecords: 1 },
              ]),
            ),
          );
          for (const query of [...queries, ...everything]) {
            const headers = tokens[query.who] === undefined ? {} : { authorization: `Bearer ${tokens[query.who]}` };
            const expected = allowed(query.who, query.stream, query.topic);
            if (expected.length > 0 && query.endpoint === 'all') {
              if ((ORGS as readonly string[]).includes(query.who)) views.customer += 1;
              if (query.who === 'cons') views.consignee += 1;
              if (query.who === 'pa') views.port += 1;
            }
            const base = `/v1/streams/${query.stream}/topics/${query.topic}`;
            const shown = (records: { offset: number; payload: unknown }[]) => records.map(({ offset, payload }) => ({ offset, payload }));
            if (query.endpoint === 'latest') {
              const response = await app.inject({ url: `${base}/latest`, headers });
              if (expected.length === 0) expect(response.statusCode).toBe(404);
              else expect(shown([response.json<Shown>()])).toEqual([expected.at(-1)]);
            } else if (query.endpoint === 'records') {
              const response = await app.inject({ url: `${base}/records?from=${query.from}&maxRecords=${query.maxRecords}`, headers });
              const page = expected.filter((entry) => entry.offset >= query.from).slice(0, query.maxRecords);
              if (expected.length === 0) {
                expect(response.statusCode).toBe(404);
              } else {
                const body = response.json<{ nextOffset: number; records: Shown[] }>();
                expect(shown(body.records)).toEqual(page);
                expect(body.nextOffset).toBe(page.length === 0 ? query.from : page.at(-1)!.offset + 1);
              }
            } else {
              // Follow nextOffset from 0 to the end: every allowed record once, in order.
              const seen: Shown[] = [];
              let from = 0;
              for (let pages = 0; pages < 100; pages += 1) {
                const response = await app.inject({ url: `${base}/records?from=${from}&maxRecords=${query.maxRecords}`, headers });
                if (response.statusCode === 404) break;
                const body = response.json<{ nextOffset: number; records: Shown[] }>();
                seen.push(...shown(body.records));
                if (body.records.length === 0) break;
                from = body.nextOffset;
              }
              expect(seen).toEqual(expected);
            }
          }
        } finally {
          await app.close();
          access?.close();
          await log.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 30 },
    );
    expect(views.customer).toBeGreaterThan(20);
    expect(views.consignee).toBeGreaterThan(5);
    expect(views.port).toBeGreaterThan(5);
  }, 180_000);
});
