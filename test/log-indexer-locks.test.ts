/**
 * The topic indexer reads the records file inside its index transaction (the file is attached
 * to the index connection) and must never hold the records file's write lock while it does:
 * `BEGIN IMMEDIATE` would take the write lock of every attached file, and the log's commits
 * (every PUBACK) would wait for each batch, 60-150 ms at the gateway's rates (measured:
 * PUBACK p99 75-148 ms against 22-46 ms). A second thread keeps asking for the write lock,
 * without waiting, for as long as a large batch is indexed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, expect, it } from 'vitest';
import type { NewRecord } from '../core/index.js';
import { indexPathFor, SqliteLog } from '../edge/log/index.js';
import { TopicIndexer } from '../edge/log/topic-indexer.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Asks for the records file's write lock (busy_timeout 0) every millisecond until told to stop. */
const LOCK_PROBE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require('better-sqlite3');
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const stop = new Int32Array(workerData.stop);
let attempts = 0;
let busy = 0;
parentPort.postMessage({ type: 'ready' });
while (Atomics.load(stop, 0) === 0) {
  attempts += 1;
  try {
    db.exec('BEGIN IMMEDIATE');
    db.exec('COMMIT');
  } catch (error) {
    if (error.code !== 'SQLITE_BUSY') throw error;
    busy += 1;
  }
  Atomics.wait(stop, 0, 0, 1);
}
db.close();
parentPort.postMessage({ type: 'done', attempts, busy });
`;

it('indexes a large batch without holding the records file\'s write lock', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-indexer-locks-'));
  dirs.push(dir);
  const path = join(dir, 'log.sqlite');
  const log = SqliteLog.open({ siteId: 'AURORA', path, indexer: 'inline', retentionIntervalMs: 0 });
  const payload = Buffer.alloc(150, 0x61);
  for (let batch = 0; batch < 20; batch += 1) {
    const records: NewRecord[] = [];
    for (let i = 0; i < 10_000; i += 1) records.push({ stream: 'containers', topic: `C${String(i % 1000).padStart(4, '0')}`, payload });
    await log.append(records);
  }
  await log.close();

  const stop = new SharedArrayBuffer(4);
  const probe = new Worker(LOCK_PROBE, { eval: true, workerData: { path, stop } });
  const outcome = new Promise<{ attempts: number; busy: number }>((resolve, reject) => {
    probe.on('message', (message: { type: string; attempts: number; busy: number }) => {
      if (message.type === 'done') resolve(message);
    });
    probe.once('error', reject);
  });
  await new Promise<void>((resolve) => probe.once('message', () => resolve()));

  const indexer = new TopicIndexer({ recordsPath: path, indexPath: indexPathFor(path), maxBatchRecords: 200_000 });
  const startedAt = performance.now();
  const indexed = indexer.runOnce();
  const tookMs = performance.now() - startedAt;
  indexer.close();
  Atomics.store(new Int32Array(stop), 0, 1);
  Atomics.notify(new Int32Array(stop), 0);
  const { attempts, busy } = await outcome;
  await probe.terminate();

  expect(indexed).toBe(200_000);
  // The probe must have asked many times while the batch ran, or the test proves nothing.
  expect(tookMs, `one batch of 200,000 records took ${tookMs.toFixed(0)} ms`).toBeGreaterThan(50);
  expect(attempts, `lock requests during ${tookMs.toFixed(0)} ms of indexing`).toBeGreaterThan(20);
  expect(busy, `of ${attempts} write-lock requests, refused while the indexer ran`).toBe(0);
});
