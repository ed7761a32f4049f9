/**
 * The topic index is written without fsyncs (edge/log/topic-indexer.ts), so it survives a
 * crash of the process but not of the machine. These tests hold the log's rule for telling
 * the two apart (edge/log/sqlite-log.ts, invariant 9): an index that was being written when
 * the log last stopped is kept when the machine is still in the same boot (kill -9 of the
 * process), and deleted and rebuilt from the records when the machine has restarted since;
 * a cleanly closed index is kept across a restart of the machine.
 *
 * A restart of the machine is acted out with the log's `bootId` option; the crash of the
 * process is a real kill -9 of a child that writes with the compiled log (dist/). Only the
 * indexer thread writes unsynced and marks the file; a log opened with the inline indexer (as
 * `portcall log` opens a running site's) must leave the marks alone.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { indexPathFor, SqliteLog, verifyLog } from '../edge/log/index.js';

const COMPILED_LOG = fileURLToPath(new URL('../dist/edge/log/index.js', import.meta.url));
const RECORDS = 20_000;
const TOPICS = 200;
const REBUILD_WARNING = 'topic index was being written when the machine stopped; rebuilding it from the records';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function logPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-index-crash-'));
  dirs.push(dir);
  return join(dir, 'log.sqlite');
}

function warnings(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line).msg as string) });
  return { logger, lines };
}

function recordsMeta(path: string, key: string): string | undefined {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare(`SELECT value FROM meta WHERE key = ?`).get(key) as { value: string } | undefined)?.value;
  } finally {
    db.close();
  }
}

/** How far the index file says it has indexed, summed over streams; 0 when there is no file. */
function indexedPositions(path: string): number {
  if (!existsSync(indexPathFor(path))) return 0;
  const db = new Database(indexPathFor(path), { readonly: true });
  try {
    const hasProgress = db.prepare(`SELECT 1 FROM sqlite_master WHERE name = 'progress'`).get() !== undefined;
    if (!hasProgress) return 0;
    return (db.prepare(`SELECT coalesce(sum(indexed_position), 0) FROM progress`).pluck().get() as number) ?? 0;
  } finally {
    db.close();
  }
}

function appendAll(log: SqliteLog, from: number, count: number): Promise<unknown> {
  const records = Array.from({ length: count }, (_u, i) => ({
    stream: 'containers',
    topic: `C${String((from + i) % TOPICS).padStart(3, '0')}`,
    payload: Buffer.from(JSON.stringify({ n: from + i })),
  }));
  return log.append(records);
}

/**
 * A child appends RECORDS records with the indexer on its thread (bootId "A"), waits until
 * the indexer has written them into the index file, says so, and is killed with SIGKILL
 * while the log is still open.
 */
async function writeThenKill(path: string, whileRunning: () => Promise<void> = async () => undefined): Promise<void> {
  const script = `
    const { SqliteLog } = await import(${JSON.stringify(COMPILED_LOG)});
    const log = SqliteLog.open({ siteId: 'AURORA', path: ${JSON.stringify(path)}, bootId: 'A', retentionIntervalMs: 0 });
    const records = Array.from({ length: ${RECORDS} }, (_u, i) => ({
      stream: 'containers', topic: 'C' + String(i % ${TOPICS}).padStart(3, '0'), payload: Buffer.from(JSON.stringify({ n: i })),
    }));
    for (let i = 0; i < records.length; i += 1000) await log.append(records.slice(i, i + 1000));
    process.stdout.write('appended\\n');
    setInterval(() => {}, 1000);
  `;
  // A file, not `node -e`: worker threads inherit the parent's execArgv, and `-e` would
  // start the indexer's thread on this script instead of its own.
  const scriptPath = join(dirname(path), 'writer.mjs');
  writeFileSync(scriptPath, script);
  const child = spawn(process.execPath, [scriptPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('appended') && resolve());
      child.once('exit', () => reject(new Error(`child ended before appending: ${stderr}`)));
    });
    // The indexer thread picks the records up (woken per 16,384) and writes them unsynced.
    const deadline = Date.now() + 15_000;
    while (indexedPositions(path) < RECORDS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(indexedPositions(path)).toBe(RECORDS);
    await whileRunning();
  } finally {
    child.kill('SIGKILL');
  }
  expect(await exited).toBe('SIGKILL');
}

describe('the topic index after a crash', () => {
  it('a cleanly closed log marks its index whole, and keeps it across a restart of the machine', async () => {
    const path = logPath();
    const first = SqliteLog.open({ siteId: 'AURORA', path, bootId: 'A', retentionIntervalMs: 0 });
    await appendAll(first, 0, 5_000);
    first.indexNow();
    expect(recordsMeta(path, 'index_synced')).toBe('0');
    await first.close();
    expect(recordsMeta(path, 'index_synced')).toBe('1');

    const { logger, lines } = warnings();
    const reopened = SqliteLog.open({ siteId: 'AURORA', path, bootId: 'B', retentionIntervalMs: 0, logger });
    try {
      expect(lines).not.toContain(REBUILD_WARNING);
      expect(indexedPositions(path)).toBe(5_000);
      expect(recordsMeta(path, 'index_synced')).toBe('0');
      expect(recordsMeta(path, 'index_boot')).toBe('B');
    } finally {
      await reopened.close();
    }
    expect(recordsMeta(path, 'index_synced')).toBe('1');

    // An inline indexer writes synced and leaves the marks as they are.
    const inline = SqliteLog.open({ siteId: 'AURORA', path, bootId: 'C', indexer: 'inline', retentionIntervalMs: 0 });
    expect(recordsMeta(path, 'index_boot')).toBe('B');
    await appendAll(inline, 5_000, 1_000);
    expect(inline.indexNow()).toBe(1_000);
    await inline.close();
    expect(recordsMeta(path, 'index_synced')).toBe('1');
    expect(recordsMeta(path, 'index_boot')).toBe('B');
  });

  it('a log opened inline beside a running site (as `portcall log` does) does not declare the site\'s index whole', async () => {
    const path = logPath();
    await writeThenKill(path, async () => {
      const reader = SqliteLog.open({ siteId: 'inspect', path, bootId: 'A', indexer: 'inline', retentionIntervalMs: 0 });
      expect(reader.listTopics('containers')).toHaveLength(TOPICS);
      await reader.close();
      expect(recordsMeta(path, 'index_synced')).toBe('0');
    });
    const { logger, lines } = warnings();
    const log = SqliteLog.open({ siteId: 'AURORA', path, bootId: 'B', indexer: 'inline', retentionIntervalMs: 0, logger });
    try {
      expect(lines).toContain(REBUILD_WARNING);
      expect(indexedPositions(path)).toBe(0);
      // Rebuilt by an inline indexer, which writes synced: nothing is left to distrust.
      expect(recordsMeta(path, 'index_synced')).toBe('1');
    } finally {
      await log.close();
    }
  });

  it('keeps an index that was being written when the process alone was killed (same boot)', async () => {
    const path = logPath();
    await writeThenKill(path);
    expect(recordsMeta(path, 'index_synced')).toBe('0');

    const { logger, lines } = warnings();
    const log = SqliteLog.open({ siteId: 'AURORA', path, bootId: 'A', indexer: 'inline', retentionIntervalMs: 0, logger });
    try {
      expect(lines).not.toContain(REBUILD_WARNING);
      expect(indexedPositions(path)).toBe(RECORDS);
      expect(log.listTopics('containers').reduce((sum, topic) => sum + topic.nextOffset, 0)).toBe(RECORDS);
    } finally {
      await log.close();
    }
    expect(verifyLog(path).problems).toEqual([]);
  });

  it('rebuilds an index that was being written when the machine stopped (another boot), and loses nothing', async () => {
    const path = logPath();
    await writeThenKill(path);

    const { logger, lines } = warnings();
    const log = SqliteLog.open({ siteId: 'AURORA', path, bootId: 'B', indexer: 'inline', retentionIntervalMs: 0, logger });
    try {
      expect(lines).toContain(REBUILD_WARNING);
      expect(indexedPositions(path)).toBe(0);
      // Everything is still read, from the records (the unindexed tail) ...
      const highWater = log.listTopics('containers');
      expect(highWater).toHaveLength(TOPICS);
      expect(highWater.reduce((sum, topic) => sum + topic.nextOffset, 0)).toBe(RECORDS);
      const records = await log.readTopic('containers', 'C007', 0, { maxRecords: 1000 });
      expect(records.map((record) => JSON.parse(record.payload.toString()).n)).toEqual(
        Array.from({ length: RECORDS / TOPICS }, (_u, i) => 7 + i * TOPICS),
      );
      // ... the next offsets continue densely ...
      await appendAll(log, RECORDS, TOPICS);
      expect(log.listTopics('containers').every((topic) => topic.nextOffset === RECORDS / TOPICS + 1)).toBe(true);
      // ... and the index is built again from the records.
      expect(log.indexNow()).toBe(RECORDS + TOPICS);
    } finally {
      await log.close();
    }
    expect(indexedPositions(path)).toBe(RECORDS + TOPICS);
    expect(verifyLog(path).problems).toEqual([]);
  });
});
