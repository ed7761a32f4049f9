/**
 * log: the embedded site log against the raw better-sqlite3 ceiling measured in the same run
 * (a plain INSERT loop in 1,000-row transactions into one table, WAL, synchronous=FULL).
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteLog } from '../../edge/log/index.js';
import type { NewRecord } from '../../core/index.js';
import type { BenchContext, Figure, Scenario } from '../harness.js';

const PAYLOAD_BYTES = 150;

function payloadFor(sequence: number): Buffer {
  const body = Buffer.alloc(PAYLOAD_BYTES, 0x20);
  body.write(`{"seq":${sequence},"tempC":-18.25,"setpointC":-18,"humidityPct":81.5,"door":"closed"}`);
  return body;
}

function rawCeiling(dir: string, rows: number): number {
  const db = new Database(join(dir, 'raw.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, topic INTEGER NOT NULL, off INTEGER NOT NULL, ts INTEGER NOT NULL, payload BLOB NOT NULL)');
  const insert = db.prepare('INSERT INTO t (topic, off, ts, payload) VALUES (?, ?, ?, ?)');
  const payload = payloadFor(0);
  const startedAt = performance.now();
  for (let i = 0; i < rows; i += 1000) {
    db.exec('BEGIN');
    for (let j = i; j < Math.min(rows, i + 1000); j += 1) insert.run(j % 100, j, Date.now(), payload);
    db.exec('COMMIT');
  }
  const rate = rows / ((performance.now() - startedAt) / 1000);
  db.close();
  return rate;
}

/** Creates every topic once (its first record), as a fleet does on first sight. */
async function createTopics(log: SqliteLog, topics: number): Promise<number> {
  const startedAt = performance.now();
  for (let first = 0; first < topics; first += 5000) {
    const batch: NewRecord[] = [];
    for (let t = first; t < Math.min(topics, first + 5000); t += 1) {
      batch.push({ stream: 'containers', topic: `C${String(t).padStart(6, '0')}`, payload: payloadFor(t) });
    }
    await log.append(batch);
  }
  return topics / ((performance.now() - startedAt) / 1000);
}

/** Single-record appends from many concurrent callers, as the gateway makes them. */
async function durableAppend(log: SqliteLog, rows: number, topics: number): Promise<number> {
  const records: NewRecord[] = Array.from({ length: rows }, (_u, i) => ({
    stream: 'containers',
    topic: `C${String((i * 7919) % topics).padStart(6, '0')}`,
    payload: payloadFor(i),
  }));
  const windowRecords = 4000;
  const startedAt = performance.now();
  let inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < rows; i += windowRecords / 2) {
    const chunk = records.slice(i, i + windowRecords / 2).map((record) => log.append([record]));
    inFlight.push(Promise.all(chunk));
    if (inFlight.length >= 2) {
      await inFlight.shift();
    }
  }
  await Promise.all(inFlight);
  inFlight = [];
  return rows / ((performance.now() - startedAt) / 1000);
}

async function waitForIndex(log: SqliteLog, stream: string, topic: string, timeoutMs: number): Promise<number> {
  const startedAt = performance.now();
  const index = new Database(log.indexPath, { readonly: true });
  try {
    const target = log.streamStats(stream)!.lastPosition;
    while (performance.now() - startedAt < timeoutMs) {
      const indexed = (index.prepare('SELECT max(indexed_position) FROM progress').pluck().get() as number | null) ?? 0;
      if (indexed >= target) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    index.close();
  }
  void topic;
  return (performance.now() - startedAt) / 1000;
}

function rssWithTopics(logPath: string): number {
  const module = fileURLToPath(new URL('../../edge/log/index.js', import.meta.url));
  const script = `
    const { SqliteLog } = await import(${JSON.stringify(module)});
    const log = SqliteLog.open({ siteId: 'BENCH', path: ${JSON.stringify(logPath)}, retentionIntervalMs: 0 });
    await log.readTopic('containers', 'C000001', 0, { maxRecords: 100 });
    globalThis.gc?.();
    process.stdout.write(String(process.memoryUsage().rss));
    await log.close();`;
  const result = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
  return Number(result.stdout) / 1024 / 1024;
}

function openTime(logPath: string): number {
  const module = fileURLToPath(new URL('../../edge/log/index.js', import.meta.url));
  const script = `
    const { SqliteLog } = await import(${JSON.stringify(module)});
    const startedAt = performance.now();
    const log = SqliteLog.open({ siteId: 'BENCH', path: ${JSON.stringify(logPath)}, retentionIntervalMs: 0 });
    const elapsed = performance.now() - startedAt;
    process.stdout.write(String(elapsed / 1000));
    await log.close();`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(result.stderr);
  return Number(result.stdout);
}

/** Fills a log to `targetBytes` quickly (bulk, not durable appends) to measure open time. */
async function fillLarge(dir: string, targetBytes: number, topics: number, progress: (line: string) => void): Promise<string> {
  const path = join(dir, 'large', 'log.sqlite');
  const log = SqliteLog.open({ siteId: 'BENCH', path, retentionIntervalMs: 0, indexer: 'inline' });
  const recordBytes = 4096;
  const payload = Buffer.alloc(recordBytes, 0x61);
  const total = Math.ceil(targetBytes / recordBytes);
  const perCall = 2000;
  for (let i = 0; i < total; i += perCall) {
    const batch: NewRecord[] = [];
    for (let j = i; j < Math.min(total, i + perCall); j += 1) {
      batch.push({ stream: 'containers', topic: `C${String(j % topics).padStart(6, '0')}`, payload });
    }
    await log.append(batch);
    if (i % (perCall * 100) === 0) progress(`log: filling large log ${Math.round((i * recordBytes) / 1e9 * 10) / 10} / ${targetBytes / 1e9} GB…`);
  }
  log.indexNow();
  await log.close();
  return path;
}

export const logScenario: Scenario = {
  name: 'log',
  description: 'Durable appends, scans, memory and open time of the embedded log vs raw better-sqlite3',
  async run(context: BenchContext): Promise<Figure[]> {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-bench-log-'));
    const figures: Figure[] = [];
    try {
      const rows = Math.round(300_000 * context.scale);
      context.progress(`log: raw better-sqlite3 ceiling, ${rows} rows…`);
      const ceiling = rawCeiling(dir, rows);
      for (const topics of [100, 100_000]) {
        const path = join(dir, `t${topics}`, 'log.sqlite');
        const log = SqliteLog.open({ siteId: 'BENCH', path, retentionIntervalMs: 0 });
        context.progress(`log: creating ${topics} topics…`);
        const creationRate = await createTopics(log, topics);
        if (topics === 100_000) {
          figures.push({ scenario: 'log', metric: 'topic creation (first record of a new topic)', value: creationRate, unit: 'topics/s' });
        }
        context.progress(`log: ${rows} durable appends over ${topics} existing topics…`);
        const rate = await durableAppend(log, rows, topics);
        figures.push({
          scenario: 'log',
          metric: `durable append, ${PAYLOAD_BYTES} B, ${topics.toLocaleString('en-US')} topics`,
          value: rate,
          unit: 'records/s',
          baseline: 'raw better-sqlite3 INSERT, 1,000-row txns',
          baselineValue: ceiling,
        });
        figures.push({
          scenario: 'log',
          metric: `topic index catch-up after the appends, ${topics.toLocaleString('en-US')} topics`,
          value: await waitForIndex(log, 'containers', 'C000001', 120_000),
          unit: 's',
        });
        if (topics === 100) {
          const startedAt = performance.now();
          let read = 0;
          for (let t = 0; t < 10; t += 1) {
            let from = 0;
            for (;;) {
              const page = await log.readTopic('containers', `C${String(t).padStart(6, '0')}`, from, { maxRecords: 1000 });
              if (page.length === 0) break;
              read += page.length;
              from = page[page.length - 1]!.offset + 1;
            }
          }
          figures.push({ scenario: 'log', metric: 'topic scan (read a topic from offset 0)', value: read / ((performance.now() - startedAt) / 1000), unit: 'records/s' });
          const streamStartedAt = performance.now();
          let position = 0;
          let scanned = 0;
          for (;;) {
            const page = await log.readStream('containers', position, { maxRecords: 5000 });
            if (page.records.length === 0) break;
            scanned += page.records.length;
            position = page.nextPosition;
          }
          figures.push({ scenario: 'log', metric: 'stream scan (all topics, append order)', value: scanned / ((performance.now() - streamStartedAt) / 1000), unit: 'records/s' });
        }
        await log.close();
        if (topics === 100_000) {
          figures.push({ scenario: 'log', metric: 'RSS of a process holding a 100,000-topic log open', value: rssWithTopics(path), unit: 'MB' });
        }
      }
      const largeBytes = Math.round(5e9 * Math.min(1, context.scale));
      context.progress(`log: building a ${(largeBytes / 1e9).toFixed(1)} GB log over 100,000 topics for the open-time figure…`);
      const largePath = await fillLarge(dir, largeBytes, 100_000, context.progress);
      const sizeGb = statSync(largePath).size / 1e9;
      figures.push({ scenario: 'log', metric: `time to open a ${sizeGb.toFixed(1)} GB log (100,000 topics)`, value: openTime(largePath), unit: 's' });
      return figures;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
