/**
 * The WAL of a log under steady appends is copied into the database file by the indexer
 * thread completely enough that the writer's next commit restarts it. If it were not, the
 * WAL would grow to the writer's own `wal_autocheckpoint` limit (64 MiB) and that checkpoint
 * would run inside a commit, stalling every waiting PUBACK (60-90 ms, measured).
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import type { NewRecord } from '../core/index.js';
import { SqliteLog } from '../edge/log/index.js';

const BATCH_RECORDS = 50;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The WAL header's checkpoint sequence number: SQLite increments it each time the WAL restarts. */
function walCheckpointSequence(walPath: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(walPath, 'r');
  } catch {
    return undefined;
  }
  try {
    const header = Buffer.alloc(16);
    return readSync(fd, header, 0, 16, 0) === 16 ? header.readUInt32BE(12) : undefined;
  } finally {
    closeSync(fd);
  }
}

it('restarts the WAL again and again under a steady stream of commits, so it never grows to the writer\'s checkpoint limit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-wal-'));
  dirs.push(dir);
  const path = join(dir, 'log.sqlite');
  const walPath = `${path}-wal`;
  const log = SqliteLog.open({ siteId: 'AURORA', path });
  const payload = Buffer.alloc(150, 0x61);
  const batch = (n: number): NewRecord[] => Array.from({ length: BATCH_RECORDS }, (_u, i) => ({ stream: 'containers', topic: `C${(n * BATCH_RECORDS + i) % 1000}`, payload }));

  const restarts = new Set<number>();
  let maxWalBytes = 0;
  const sampler = setInterval(() => {
    const sequence = walCheckpointSequence(walPath);
    if (sequence !== undefined) restarts.add(sequence);
    try {
      maxWalBytes = Math.max(maxWalBytes, statSync(walPath).size);
    } catch {
      // Not created yet.
    }
  }, 10);

  // Paced like a gateway at a steady rate: a commit every 2 ms or so, never a pause long
  // enough for one checkpoint pass to catch up by luck.
  const runForMs = 8000;
  const recordsPerSecond = 10_000;
  const startedAt = Date.now();
  let appended = 0;
  let next = 0;
  while (Date.now() - startedAt < runForMs) {
    const due = Math.floor(((Date.now() - startedAt) / 1000) * recordsPerSecond) - appended;
    if (due < BATCH_RECORDS) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    appended += (await log.append(batch(next++))).length;
  }
  clearInterval(sampler);
  await log.close();

  const walMiB = maxWalBytes / 2 ** 20;
  const appendedMiB = (appended * 150) / 2 ** 20;
  // Enough appended that a WAL restarted only by the writer's safety net would have passed 32 MiB.
  expect(appendedMiB, `appended ${appended} records in ${runForMs} ms`).toBeGreaterThan(8);
  expect(restarts.size, `WAL restarts seen while ${appended} records were appended`).toBeGreaterThanOrEqual(4);
  expect(walMiB, `largest WAL ${walMiB.toFixed(1)} MiB`).toBeLessThan(24);
}, 30_000);
