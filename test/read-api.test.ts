import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { registerReadRoutes } from '../cloud/read-api/index.js';
import { StoreUnavailableError, type LogRecord, type TopicReader } from '../core/index.js';
import { SqliteLog } from '../edge/log/index.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function siteWithHistory(readings: number): Promise<{ app: FastifyInstance; log: SqliteLog; registry: Registry }> {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-read-api-'));
  const log = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'log.sqlite') });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => log.close());
  for (let i = 0; i < readings; i += 1) {
    await log.append([
      { stream: 'containers', topic: 'Y01', eventTimeMs: 1_700_000_000_000 + i, payload: Buffer.from(JSON.stringify({ temp: i / 10 })) },
      { stream: 'containers', topic: 'Y02', payload: Uint8Array.of(0, 1, 2, i & 0xff) },
    ]);
  }
  const registry = new Registry();
  const app = Fastify({ logger: false });
  registerReadRoutes(app, { reader: log, registry, maxPageRecords: 50 });
  cleanups.push(() => app.close());
  return { app, log, registry };
}

interface Page {
  nextOffset: number;
  records: { origin: string; offset: number; payloadEncoding: string; payload: unknown; eventTime: string }[];
}

describe('read API', () => {
  it("pages through a container's whole history by offset, each page continuing exactly where the last one ended", async () => {
    const { app } = await siteWithHistory(120);
    const offsets: number[] = [];
    let from = 0;
    for (let page = 0; page < 10; page += 1) {
      const response = await app.inject({ url: `/v1/streams/containers/topics/Y01/records?from=${from}&maxRecords=50` });
      expect(response.statusCode).toBe(200);
      const body = response.json<Page>();
      offsets.push(...body.records.map((record) => record.offset));
      if (body.records.length === 0) {
        expect(body.nextOffset).toBe(from);
        break;
      }
      expect(body.records[0]!.offset).toBe(from);
      from = body.nextOffset;
    }
    expect(offsets).toEqual(Array.from({ length: 120 }, (_u, i) => i));

    const first = (await app.inject({ url: '/v1/streams/containers/topics/Y01/records?maxRecords=1' })).json<Page>();
    expect(first.records[0]).toMatchObject({ origin: 'TOKYO', offset: 0, payloadEncoding: 'json', payload: { temp: 0 }, eventTime: new Date(1_700_000_000_000).toISOString() });
    const binary = (await app.inject({ url: '/v1/streams/containers/topics/Y02/records?from=119' })).json<Page>();
    expect(binary.records).toHaveLength(1);
    expect(binary.records[0]).toMatchObject({ offset: 119, payloadEncoding: 'base64', payload: Buffer.from([0, 1, 2, 119]).toString('base64') });
  });

  it('bounds a page by bytes, returning at least one record', async () => {
    const { app } = await siteWithHistory(20);
    const page = (await app.inject({ url: '/v1/streams/containers/topics/Y02/records?from=3&maxBytes=1' })).json<Page>();
    expect(page.records.map((record) => record.offset)).toEqual([3]);
    expect(page.nextOffset).toBe(4);
  });

  it('refuses bad requests with a specific error and counts them; an unknown topic is 404', async () => {
    const { app, registry } = await siteWithHistory(3);
    for (const url of [
      '/v1/streams/containers/topics/Y01/records?from=-1',
      '/v1/streams/containers/topics/Y01/records?from=abc',
      '/v1/streams/containers/topics/Y01/records?maxRecords=51',
      '/v1/streams/containers/topics/Y01/records?maxRecords=0',
      '/v1/streams/containers/topics/..%2FY02/records',
      '/v1/streams/containers/topics/Y%2B/latest',
    ]) {
      const response = await app.inject({ url });
      expect(response.statusCode, url).toBe(400);
      expect(response.json<{ message: string }>().message, url).toMatch(/querystring|params/);
    }
    expect((await app.inject({ url: '/v1/streams/containers/topics/Z99/records' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/v1/streams/containers/topics/Z99/latest' })).statusCode).toBe(404);
    // Past the end of a held topic: an empty page, not an error; the reader waits there.
    const past = (await app.inject({ url: '/v1/streams/containers/topics/Y01/records?from=3' })).json<Page>();
    expect(past).toMatchObject({ nextOffset: 3, records: [] });
    const metrics = await registry.getSingleMetricAsString('portcall_read_requests_total');
    expect(metrics).toContain('route="records",outcome="bad_request"} 5');
    expect(metrics).toContain('route="latest",outcome="bad_request"} 1');
    expect(metrics).toContain('route="records",outcome="not_found"} 1');
  });

  it('answers 503 with Retry-After while the store cannot read the range (e.g. a Kafka topic index catching up)', async () => {
    // A reader that fails as the Kafka log does while its index rebuilds: this tests the route's
    // mapping of a retriable store error, not a store.
    const catchingUp: TopicReader = {
      latest: () => Promise.reject(new StoreUnavailableError('the topic index is catching up with Kafka')),
      readTopic: (): Promise<LogRecord[]> => Promise.reject(new StoreUnavailableError('the topic index is catching up with Kafka')),
    };
    const app = Fastify({ logger: false });
    registerReadRoutes(app, { reader: catchingUp });
    cleanups.push(() => app.close());
    for (const url of ['/v1/streams/containers/topics/Y01/records', '/v1/streams/containers/topics/Y01/latest']) {
      const response = await app.inject({ url });
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBe('1');
      expect(response.json()).toMatchObject({ code: 'STORE_UNAVAILABLE', message: /catching up/ });
    }
  });
});
