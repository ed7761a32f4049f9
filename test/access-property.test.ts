/**
 * Property: for random custody histories (windows assigned, some withdrawn, containers
 * changing hands) over random readings (event times in any order) and random queries by
 * random principals, the read API returns exactly what a simple reference model allows —
 * nothing more, nothing missing — at identity offsets, with the 404 of a nonexistent
 * container whenever the principal may see nothing of the topic. Real SqliteLog, real
 * projector, read API through fastify inject.
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

interface Window {
  container: string;
  org: string;
  as: 'owner' | 'consignee';
  fromMs: number;
  toMs?: number;
  withdrawn: boolean;
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

const queryArb = fc.record({
  who: fc.constantFrom('o1', 'o2', 'o3', 'ops', 'nobody', 'revoked'),
  topic: fc.constantFrom(...TOPICS, 'C9'),
  endpoint: fc.constantFrom('records' as const, 'latest' as const, 'all' as const),
  from: fc.integer({ min: 0, max: 35 }),
  maxRecords: fc.integer({ min: 1, max: 40 }),
});

const scenarioArb = fc.record({
  // Per topic, the event times of its readings in offset order (not sorted: devices' clocks jump).
  readings: fc.tuple(...TOPICS.map(() => fc.array(fc.integer({ min: 0, max: 45 }), { maxLength: 30 }))),
  windows: fc.array(windowArb, { maxLength: 8 }),
  queries: fc.array(queryArb, { minLength: 1, maxLength: 12 }),
});

describe('access control, property', () => {
  it('returns exactly the records the reference model allows', async () => {
    // How many customer queries had something to see: the property must not pass on empty views.
    let customerViews = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ readings, windows, queries }) => {
        const dir = mkdtempSync(join(tmpdir(), 'portcall-access-prop-'));
        const log = SqliteLog.open({ siteId: 'HQ', path: join(dir, 'log.sqlite') });
        const app = Fastify({ logger: false });
        let access: Awaited<ReturnType<typeof startAccess>> | undefined;
        try {
          for (const [t, times] of readings.entries()) {
            if (times.length > 0) await log.append(times.map((eventTimeMs, i) => ({ stream: 'containers', topic: TOPICS[t]!, eventTimeMs, payload: Buffer.from(JSON.stringify({ i })) })));
          }
          const audit = { by: 'test', atMs: 1 };
          const changes: (AccessRecord | CustodyRecord)[] = [
            { type: 'org.set', id: 'carrier', kind: 'carrier', ...audit },
            ...ORGS.map((id): AccessRecord => ({ type: 'org.set', id, kind: 'customer', ...audit })),
            ...ORGS.map((org): AccessRecord => ({ type: 'principal.set', id: `p-${org}`, org, kind: 'person', roles: ['customer'], ...audit })),
            { type: 'principal.set', id: 'p-ops', org: 'carrier', kind: 'person', roles: ['carrier-ops'], ...audit },
          ];
          const tokens: Record<string, string> = {};
          for (const who of [...ORGS, 'ops', 'revoked']) {
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

          /** The reference model: offsets of the topic the principal may see. */
          const allowed = (who: string, topic: string): number[] => {
            const times = readings[TOPICS.indexOf(topic as (typeof TOPICS)[number])] ?? [];
            return times.flatMap((eventTimeMs, offset) => {
              if (who === 'ops') return [offset];
              if (!(ORGS as readonly string[]).includes(who)) return [];
              const granted = windows.some(
                (w) => !w.withdrawn && w.container === topic && w.org === who && w.as === 'owner' && eventTimeMs >= w.fromMs && eventTimeMs < (w.toMs ?? Infinity),
              );
              return granted ? [offset] : [];
            });
          };

          // Random queries, and every principal's whole view of every topic (so no window goes unchecked).
          const everything = ['o1', 'o2', 'o3', 'ops', 'revoked'].flatMap((who) =>
            TOPICS.flatMap((topic) => [
              { who, topic, endpoint: 'all' as const, from: 0, maxRecords: 7 },
              { who, topic, endpoint: 'latest' as const, from: 0, maxRecords: 1 },
            ]),
          );
          let nonEmpty = 0;
          for (const query of [...queries, ...everything]) {
            const headers = tokens[query.who] === undefined ? {} : { authorization: `Bearer ${tokens[query.who]}` };
            const expected = allowed(query.who, query.topic);
            if (query.who !== 'ops' && expected.length > 0) nonEmpty += 1;
            const base = `/v1/streams/containers/topics/${query.topic}`;
            if (query.endpoint === 'latest') {
              const response = await app.inject({ url: `${base}/latest`, headers });
              if (expected.length === 0) expect(response.statusCode).toBe(404);
              else expect(response.json<{ offset: number }>().offset).toBe(expected.at(-1));
            } else if (query.endpoint === 'records') {
              const response = await app.inject({ url: `${base}/records?from=${query.from}&maxRecords=${query.maxRecords}`, headers });
              const page = expected.filter((offset) => offset >= query.from).slice(0, query.maxRecords);
              if (expected.length === 0) {
                expect(response.statusCode).toBe(404);
              } else {
                const body = response.json<{ nextOffset: number; records: { offset: number }[] }>();
                expect(body.records.map((r) => r.offset)).toEqual(page);
                expect(body.nextOffset).toBe(page.length === 0 ? query.from : page.at(-1)! + 1);
              }
            } else {
              // Follow nextOffset from 0 to the end: every allowed record once, in order.
              const seen: number[] = [];
              let from = 0;
              for (let pages = 0; pages < 100; pages += 1) {
                const response = await app.inject({ url: `${base}/records?from=${from}&maxRecords=${query.maxRecords}`, headers });
                if (response.statusCode === 404) break;
                const body = response.json<{ nextOffset: number; records: { offset: number }[] }>();
                seen.push(...body.records.map((r) => r.offset));
                if (body.records.length === 0) break;
                from = body.nextOffset;
              }
              expect(seen).toEqual(expected);
            }
          }
          customerViews += nonEmpty;
        } finally {
          await app.close();
          access?.close();
          await log.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 30 },
    );
    expect(customerViews).toBeGreaterThan(30);
  }, 120_000);
});
