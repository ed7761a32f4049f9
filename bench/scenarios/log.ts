/**
 * log: the embedded site log against the raw better-sqlite3 ceiling measured in the same run
 * (a plain INSERT loop in 1,000-row transactions into one table, WAL, synchronous=FULL).
 *
 * Each append figure is measured in ROUNDS slices, each slice of the log's appends right after
 * a slice of the ceiling's loop (same table, continuing), and both rates are taken over their
 * slices together. On a shared 2-core machine the load moved the ceiling by 2x within a minute;
 * interleaved, both sides see the same load. Each figure's own ceiling is its baseline.
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { indexPathFor, SqliteLog } from '../../edge/log/index.js';
import { compiledModule } from '../../tools/build-layout/index.js';
import type { LogRecord, NewRecord } from '../../core/index.js';
import type { BenchContext, Figure, Scenario } from '../harness.js';

const PAYLOAD_BYTES = 150;

function payloadFor(sequence: number): Buffer {
  const body = Buffer.alloc(PAYLOAD_BYTES, 0x20);
  body.write(`{"seq":${sequence},"tempC":-18.25,"setpointC":-18,"humidityPct":81.5,"door":"closed"}`);
  return body;
}

const ROUNDS = 6;

/** The raw ceiling: a plain INSERT loop in 1,000-row transactions into one table, WAL, synchronous=FULL. */
class RawCeiling {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly payload = payloadFor(0);
  private rows = 0;
  private seconds = 0;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, topic INTEGER NOT NULL, off INTEGER NOT NULL, ts INTEGER NOT NULL, payload BLOB NOT NULL)');
    this.insert = this.db.prepare('INSERT INTO t (topic, off, ts, payload) VALUES (?, ?, ?, ?)');
  }

  /** Inserts `rows` more rows (a multiple of 1,000) and adds them to the rate. */
  run(rows: number): void {
    const startedAt = performance.now();
    for (let i = this.rows; i < this.rows + rows; i += 1000) {
      this.db.exec('BEGIN');
      for (let j = i; j < i + 1000; j += 1) this.insert.run(j % 100, j, Date.now(), this.payload);
      this.db.exec('COMMIT');
    }
    this.rows += rows;
    this.seconds += (performance.now() - startedAt) / 1000;
  }

  rate(): number {
    return this.rows / this.seconds;
  }

  close(): void {
    this.db.close();
  }
}

/**
 * Runs `measure` over `records` in ROUNDS slices, each after a slice of the raw ceiling of
 * the same size; returns both rates over all slices.
 */
async function interleaved(
  dir: string,
  name: string,
  records: readonly NewRecord[],
  measure: (slice: readonly NewRecord[]) => Promise<number>,
): Promise<{ value: number; ceiling: number }> {
  const ceiling = new RawCeiling(join(dir, `raw-${name}.sqlite`));
  const slice = Math.ceil(records.length / ROUNDS / 4000) * 4000;
  let seconds = 0;
  try {
    for (let from = 0; from < records.length; from += slice) {
      const part = records.slice(from, from + slice);
      ceiling.run(Math.ceil(part.length / 1000) * 1000);
      seconds += part.length / (await measure(part));
    }
    return { value: records.length / seconds, ceiling: ceiling.rate() };
  } finally {
    ceiling.close();
  }
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

type Appender = Pick<SqliteLog, 'append'>;

function appendWorkload(rows: number, topics: number): NewRecord[] {
  return Array.from({ length: rows }, (_u, i) => ({
    stream: 'containers',
    topic: `C${String((i * 7919) % topics).padStart(6, '0')}`,
    payload: payloadFor(i),
  }));
}

/**
 * Appends as the gateway makes them (edge/gateway/commit-batcher.ts): every record has its
 * own completion callback, and the records that arrive in one turn of the event loop go to
 * the log in one `append` call (at most 4,096), each callback settled once it is durable.
 * 4,000 records in flight, added 2,000 at a time.
 */
async function gatewayStyleAppend(log: Appender, records: readonly NewRecord[]): Promise<number> {
  let batch: NewRecord[] = [];
  let callbacks: ((error?: unknown) => void)[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (batch.length === 0) return;
    const settle = callbacks;
    log.append(batch).then(
      () => {
        for (const callback of settle) callback();
      },
      (error: unknown) => {
        for (const callback of settle) callback(error);
      },
    );
    batch = [];
    callbacks = [];
  };
  const add = (record: NewRecord, callback: (error?: unknown) => void): void => {
    batch.push(record);
    callbacks.push(callback);
    if (batch.length >= 4096) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  const windowRecords = 4000;
  const startedAt = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < records.length; i += windowRecords / 2) {
    const chunk = records.slice(i, i + windowRecords / 2);
    inFlight.push(
      new Promise<void>((resolve, reject) => {
        let left = chunk.length;
        const done = (error?: unknown) => {
          if (error !== undefined) reject(error);
          else if (--left === 0) resolve();
        };
        for (const record of chunk) add(record, done);
      }),
    );
    if (inFlight.length >= 2) await inFlight.shift();
  }
  await Promise.all(inFlight);
  return records.length / ((performance.now() - startedAt) / 1000);
}

/**
 * A log that stores nothing: resolves each call in the next turn with a result per record.
 * What `singleRecordAppend` costs the caller and the promise machinery alone.
 */
class NullAppender implements Appender {
  private pending: { records: readonly NewRecord[]; resolve: (records: LogRecord[]) => void }[] = [];
  private readonly next = new Map<string, number>();
  append(records: readonly NewRecord[]): Promise<LogRecord[]> {
    return new Promise((resolve) => {
      if (this.pending.length === 0) setImmediate(() => this.flush());
      this.pending.push({ records, resolve });
    });
  }
  private flush(): void {
    const writes = this.pending;
    this.pending = [];
    const now = Date.now();
    for (const write of writes) {
      write.resolve(
        write.records.map((record) => {
          const offset = this.next.get(record.topic) ?? 0;
          this.next.set(record.topic, offset + 1);
          return { origin: 'BENCH', stream: record.stream, topic: record.topic, offset, eventTimeMs: now, ingestTimeMs: now, headers: {}, payload: record.payload };
        }),
      );
    }
  }
}

/** One `append` call and one promise per record, from many concurrent callers. */
async function singleRecordAppend(log: Appender, records: readonly NewRecord[]): Promise<number> {
  const rows = records.length;
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
  const module = compiledModule('edge/log/index.js');
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

/**
 * Drops the log's files from the page cache (GNU dd's `iflag=nocache`, which advises the
 * kernel per file, so nothing else on the machine loses its cache), so the open is measured
 * as after a reboot. Returns false where that is not available.
 */
function dropFromPageCache(logPath: string): boolean {
  const files = [logPath, `${logPath}-wal`, indexPathFor(logPath), `${indexPathFor(logPath)}-wal`].filter((file) => existsSync(file));
  return files.every((file) => spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']).status === 0);
}

function openTime(logPath: string): number {
  const module = compiledModule('edge/log/index.js');
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
      const baseline = 'raw better-sqlite3 INSERT, 1,000-row txns, interleaved';
      for (const topics of [100, 100_000]) {
        const path = join(dir, `t${topics}`, 'log.sqlite');
        const log = SqliteLog.open({ siteId: 'BENCH', path, retentionIntervalMs: 0 });
        context.progress(`log: creating ${topics} topics…`);
        const creationRate = await createTopics(log, topics);
        if (topics === 100_000) {
          figures.push({ scenario: 'log', metric: 'topic creation (first record of a new topic)', value: creationRate, unit: 'topics/s' });
        }
        context.progress(`log: ${rows} durable appends over ${topics} existing topics, gateway-style batches…`);
        const batched = await interleaved(dir, `batched${topics}`, appendWorkload(rows, topics), (part) => gatewayStyleAppend(log, part));
        context.progress(`log: ${rows} durable appends over ${topics} existing topics, one call per record…`);
        const single = await interleaved(dir, `single${topics}`, appendWorkload(rows, topics), (part) => singleRecordAppend(log, part));
        for (const [metric, result] of [
          [`durable append, ${PAYLOAD_BYTES} B, ${topics.toLocaleString('en-US')} topics (gateway-style: one call per event-loop turn; target >= 0.7x)`, batched],
          [
            `durable append, ${PAYLOAD_BYTES} B, ${topics.toLocaleString('en-US')} topics (one record per call: 4,000 concurrent callers, each its own append and promise, group-committed; target >= 0.7x)`,
            single,
          ],
        ] as const) {
          figures.push({ scenario: 'log', metric, value: result.value, unit: 'records/s', baseline, baselineValue: result.ceiling });
        }
        if (topics === 100_000) {
          const floor = await interleaved(dir, 'null', appendWorkload(rows, topics), (part) => singleRecordAppend(new NullAppender(), part));
          figures.push({
            scenario: 'log',
            metric: 'caller overhead alone: one call and one promise per record into a log that stores nothing, 100,000 topics',
            value: floor.value,
            unit: 'records/s',
            baseline,
            baselineValue: floor.ceiling,
          });
        }
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
      const cold = dropFromPageCache(largePath);
      figures.push({
        scenario: 'log',
        metric: `time to open a ${sizeGb.toFixed(1)} GB log (100,000 topics, ${cold ? 'files dropped from the page cache first' : 'page cache warm'})`,
        value: openTime(largePath),
        unit: 's',
      });
      return figures;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
