/**
 * The receiving endpoint, through fastify's inject (no socket) on a real SQLite log.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerIngestRoutes } from '../cloud/ingest/index.js';
import { BATCH_CONTENT_TYPE, encodeBatch } from '../edge/link/index.js';
import { SqliteLog } from '../edge/log/index.js';
import type { LogRecord } from '../core/index.js';

const TOKEN = 'aurora-token-0123456789';
const OTHER_TOKEN = 'singapore-token-0123456789';

const record = (offset: number, topic = 'Y01'): LogRecord => ({
  origin: 'AURORA',
  stream: 'containers',
  topic,
  offset,
  eventTimeMs: 1,
  ingestTimeMs: 2,
  headers: {},
  payload: Buffer.from(`{"o":${offset}}`),
});

describe('ingest endpoint', () => {
  let dir: string;
  let log: SqliteLog;
  let app: ReturnType<typeof Fastify>;
  let registry: Registry;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcall-ingest-'));
    log = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'log.sqlite') });
    registry = new Registry();
    app = Fastify();
    registerIngestRoutes(app, {
      sink: log,
      peers: [
        { site: 'AURORA', token: TOKEN },
        { site: 'SINGAPORE', token: OTHER_TOKEN },
      ],
      limits: { maxBatchBytes: 64 * 1024, maxRecordsPerBatch: 100 },
      registry,
    });
    await app.ready();
  });
  afterEach(async () => {
    await app.close();
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (body: Buffer, token = TOKEN) =>
    app.inject({
      method: 'POST',
      url: '/v1/batches',
      headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${token}` },
      payload: body,
    });

  it('stores a batch, acknowledges with high water, and drops a resent batch as duplicates', async () => {
    const batch = encodeBatch({ sender: 'AURORA', records: [record(0), record(1)] });
    const first = await post(batch);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ stored: 2, duplicates: 0, highWater: [{ stream: 'containers', topic: 'Y01', nextOffset: 2 }] });
    const again = await post(batch);
    expect(again.json()).toMatchObject({ stored: 0, duplicates: 2 });
    expect((await log.readTopic('containers', 'Y01', 0)).length).toBe(2);
  });

  it('refuses bad batches with a specific code, counts them, and stores nothing', async () => {
    const good = encodeBatch({ sender: 'AURORA', records: [record(0)] });
    const cases: [string, Promise<{ statusCode: number; json(): unknown }>, number, string][] = [
      ['no token', post(good, ''), 401, 'unauthenticated'],
      ['wrong token', post(good, 'nope-nope-nope-nope'), 401, 'unauthenticated'],
      ['replay under another site', post(good, OTHER_TOKEN), 403, 'wrong-sender'],
      ['truncated', post(good.subarray(0, good.length - 3)), 400, 'bad-length'],
      ['gap', post(encodeBatch({ sender: 'AURORA', records: [record(3)] })), 409, 'offset-gap'],
      ['too large', post(Buffer.alloc(70 * 1024)), 413, ''],
    ];
    for (const [name, pending, status, reason] of cases) {
      const response = await pending;
      expect(response.statusCode, name).toBe(status);
      if (reason !== '') expect(response.json(), name).toMatchObject({ reason });
    }
    expect(await log.highWater('containers', 'Y01')).toBe(0);
    const metrics = await registry.getSingleMetricAsString('portcall_ingest_refused_batches_total');
    expect(metrics).toContain('reason="wrong-sender"} 1');
    expect(metrics).toContain('reason="offset-gap"} 1');
  });
});
