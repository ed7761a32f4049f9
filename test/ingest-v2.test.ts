/**
 * The receiving endpoint with wire format version 2, through fastify's inject on a real
 * SQLite log: compact acknowledgements, bad batches refused and counted with nothing
 * applied, and the per-sender positions a reconnecting sender asks for.
 */
import { brotliCompressSync, crc32 } from 'node:zlib';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerIngestRoutes } from '../cloud/ingest/index.js';
import { BATCH_CONTENT_TYPE, encodeBatchV2 } from '../edge/link/index.js';
import { SqliteLog } from '../edge/log/index.js';
import type { LogRecord } from '../core/index.js';
import { fleetRecords, take } from '../bench/uplink-fleet.js';

const TOKEN = 'aurora-token-0123456789';
const OTHER_TOKEN = 'singapore-token-0123456789';

describe('ingest endpoint, wire format v2', () => {
  let dir: string;
  let log: SqliteLog;
  let app: ReturnType<typeof Fastify>;
  let registry: Registry;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcall-ingest-v2-'));
    log = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'log.sqlite') });
    registry = new Registry();
    app = Fastify();
    registerIngestRoutes(app, {
      sink: log,
      peers: [
        { site: 'AURORA', token: TOKEN },
        { site: 'SINGAPORE', token: OTHER_TOKEN },
      ],
      limits: { maxBatchBytes: 256 * 1024, maxDecompressedBytes: 4 * 1024 * 1024, maxRecordsPerBatch: 5000 },
      registry,
    });
    await app.ready();
  });
  afterEach(async () => {
    await app.close();
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (body: Buffer, token = TOKEN, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/v1/batches',
      headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${token}`, ...headers },
      payload: body,
    });

  const fleet = (count: number, containers = 50): LogRecord[] => take(fleetRecords({ containers }), count);

  it('stores a batch and acknowledges compactly: only topics that do not stand where the batch implies', async () => {
    const records = fleet(1000);
    const first = await post(encodeBatchV2({ sender: 'AURORA', records: records.slice(0, 600) }));
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ stored: 600, duplicates: 0, highWater: [] });
    // Resending a part of it: every record a duplicate, and the topics stand further than this batch implies.
    const again = await post(encodeBatchV2({ sender: 'AURORA', records: records.slice(0, 100) }));
    expect(again.json()).toMatchObject({ stored: 0, duplicates: 100 });
    expect((again.json() as { highWater: unknown[] }).highWater).toHaveLength(50);
    expect(await log.highWater('containers', 'C00001')).toBe(12);
  });

  it('refuses bad batches with a specific reason, counts them, and applies nothing', async () => {
    const good = encodeBatchV2({ sender: 'AURORA', records: fleet(200) });
    const flipped = Buffer.from(good);
    flipped[flipped.length - 3]! ^= 0x01;
    const lying = Buffer.from(good);
    lying.writeUInt32BE(good.length, 9);
    const bombBody = brotliCompressSync(Buffer.alloc(32 * 1024 * 1024));
    const bomb = Buffer.alloc(21 + bombBody.length);
    Buffer.from('PCB2').copy(bomb);
    bomb.writeUInt8(2, 4);
    bomb.writeUInt32BE(crc32(bombBody), 5);
    bomb.writeUInt32BE(bombBody.length, 9);
    bomb.writeUInt32BE(1, 13);
    bomb.writeUInt32BE(1000, 17);
    bombBody.copy(bomb, 21);
    const gap = encodeBatchV2({ sender: 'AURORA', records: fleet(200).filter((record) => record.offset > 0) });
    const cases: [string, Promise<{ statusCode: number; json(): unknown }>, number, string][] = [
      ['no token', post(good, ''), 401, 'unauthenticated'],
      ['wrong token', post(good, 'nope-nope-nope-nope'), 401, 'unauthenticated'],
      ['replay of AURORA’s batch under SINGAPORE’s token', post(good, OTHER_TOKEN), 403, 'wrong-sender'],
      ['truncated', post(good.subarray(0, good.length - 10)), 400, 'bad-length'],
      ['bit-flipped', post(flipped), 400, 'bad-checksum'],
      ['lying length', post(lying), 400, 'bad-length'],
      ['decompression bomb', post(bomb), 413, 'too-large'],
      ['too many records', post(encodeBatchV2({ sender: 'AURORA', records: fleet(5001, 2000) })), 400, 'too-many-records'],
      ['offset gap', post(gap), 409, 'offset-gap'],
    ];
    for (const [name, pending, status, reason] of cases) {
      const response = await pending;
      expect(response.statusCode, name).toBe(status);
      expect(response.json(), name).toMatchObject({ reason });
    }
    expect(log.listTopics()).toEqual([]);
    const metrics = await registry.getSingleMetricAsString('portcall_ingest_refused_batches_total');
    for (const reason of ['unauthenticated', 'wrong-sender', 'bad-length', 'bad-checksum', 'too-large', 'too-many-records', 'offset-gap']) {
      expect(metrics).toMatch(new RegExp(`reason="${reason}"\\} [1-9]`));
    }
  });

  it('remembers how far each sender’s stream arrived without a gap, per sender log incarnation', async () => {
    const records = fleet(300);
    const batches = [records.slice(0, 100), records.slice(100, 200), records.slice(200, 300)];
    const placement = (from: number, to: number, acked: number, incarnation = 'abc') => ({
      'pc-stream': 'containers',
      'pc-from': String(from),
      'pc-to': String(to),
      'pc-acked': String(acked),
      'pc-incarnation': incarnation,
    });
    const positions = async (token = TOKEN, incarnation = 'abc') =>
      (await app.inject({ method: 'GET', url: `/v1/positions?incarnation=${incarnation}`, headers: { authorization: `Bearer ${token}` } })).json() as { positions: Record<string, number> };

    expect(await positions()).toEqual({ positions: {} });
    expect((await post(encodeBatchV2({ sender: 'AURORA', records: batches[0]! }), TOKEN, placement(0, 100, 0))).statusCode).toBe(200);
    // Batch 3 arrives before batch 2 would have: it does not move the position past the hole.
    expect((await post(encodeBatchV2({ sender: 'AURORA', records: batches[2]!.filter((record) => record.topic === 'nothing') }), TOKEN, placement(200, 300, 0))).statusCode).toBe(200);
    expect(await positions()).toEqual({ positions: { containers: 100 } });
    expect((await post(encodeBatchV2({ sender: 'AURORA', records: batches[1]! }), TOKEN, placement(100, 200, 0))).statusCode).toBe(200);
    expect(await positions()).toEqual({ positions: { containers: 200 } });
    // Another incarnation of AURORA's log, and another site, know nothing of it.
    expect(await positions(TOKEN, 'other')).toEqual({ positions: {} });
    expect(await positions(OTHER_TOKEN)).toEqual({ positions: {} });
    expect((await app.inject({ method: 'GET', url: '/v1/positions?incarnation=abc' })).statusCode).toBe(401);
  });
});
