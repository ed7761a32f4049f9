/**
 * Where a logical topic's records are in Kafka: the index that lets a Kafka-backed site
 * answer "container X from offset N" by fetching from a known position instead of scanning
 * a whole Kafka topic.
 *
 * Entries are *spans*: a run of consecutive logical offsets of one logical topic and the
 * Kafka (partition, first offset, last offset) that holds them. The endpoints are exact
 * record positions; between them lie other containers' records of the same partition (and
 * control or aborted records), which a read skips by key. A span grows while the topic's
 * next records arrive contiguously and the Kafka range stays under `maxSpanKafkaOffsets`, so
 * a read never scans more than that many Kafka records to find its first one, and a topic
 * that writes rarely costs one span per transaction it appears in, not a scan of everything
 * written in between.
 *
 * The index is derived data in a local SQLite file beside the site. It says how far into each
 * partition it is complete (`progress.indexed_to`); spans and progress change in the same
 * SQLite transaction, so after any crash the file is consistent with itself, and whatever
 * Kafka committed past `indexed_to` is indexed again from Kafka at the next open. A missing,
 * foreign (another cluster or prefix) or impossible (ahead of Kafka: a topic was deleted and
 * re-created) file is discarded and rebuilt from Kafka. Overlapping spans can appear after a
 * crash in the middle of a rebuild; reads pick any span that contains the offset they need,
 * so an overlap costs a few rows, never a wrong answer.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import Database, { type Database as SqliteDatabase, type Statement } from 'better-sqlite3';

import { topicKey } from '../../core/index.js';

/** Bumped when the schema changes; an older file is rebuilt. */
const FORMAT = '1';

export interface Span {
  readonly stream: string;
  readonly topic: string;
  readonly firstOffset: number;
  readonly lastOffset: number;
  readonly kafkaTopic: string;
  readonly partition: number;
  readonly firstKafkaOffset: bigint;
  readonly lastKafkaOffset: bigint;
}

/** Records of one logical topic written contiguously (one transaction, or one rebuild chunk). */
export type Run = Span;

interface SpanRow {
  stream: string;
  topic: string;
  first_offset: number;
  last_offset: number;
  kafka_topic: string;
  partition: number;
  first_kafka_offset: bigint;
  last_kafka_offset: bigint;
}

function toSpan(row: SpanRow): Span {
  return {
    stream: row.stream,
    topic: row.topic,
    firstOffset: row.first_offset,
    lastOffset: row.last_offset,
    kafkaTopic: row.kafka_topic,
    partition: row.partition,
    firstKafkaOffset: BigInt(row.first_kafka_offset),
    lastKafkaOffset: BigInt(row.last_kafka_offset),
  };
}

/** Past this many topics remembered, the memory of last spans starts again (about 150 bytes each). */
const MAX_REMEMBERED_LAST_SPANS = 200_000;

export interface TopicIndexOptions {
  /** A file path, or ':memory:' for an index rebuilt from Kafka on every open. */
  readonly path: string;
  /** Identifies the Kafka topics indexed: cluster id and topic prefix. A different one discards the file. */
  readonly identity: string;
  readonly maxSpanKafkaOffsets: number;
}

export class TopicIndex {
  private readonly db: SqliteDatabase;
  private readonly maxSpan: bigint;
  private readonly statements: {
    containing: Statement;
    after: Statement;
    last: Statement;
    insert: Statement;
    extend: Statement;
    progress: Statement;
    setProgress: Statement;
    count: Statement;
  };
  /** True when the file was new, foreign or outdated and is being rebuilt from nothing. */
  readonly rebuilt: boolean;
  /**
   * Each topic's last span as the file holds it, so that extending it (every transaction,
   * for every topic it wrote) costs one UPDATE and not also a SELECT: with runs of a few records
   * (many containers per batch) that SELECT was 6 of the 10 µs a run took (2026-11-23).
   * Changed only after a `record` committed, so it never runs ahead of the file.
   */
  private readonly lastSpans = new Map<string, Span>();

  constructor(options: TopicIndexOptions) {
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    this.db = new Database(options.path);
    // Derived data: a commit lost to a power cut is indexed again from Kafka, so the index
    // need not fsync on every write (NORMAL in WAL mode still never corrupts the file).
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.defaultSafeIntegers(false);
    this.maxSpan = BigInt(options.maxSpanKafkaOffsets);
    this.db.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    const meta = new Map(
      (this.db.prepare(`SELECT key, value FROM meta`).all() as { key: string; value: string }[]).map((row) => [row.key, row.value]),
    );
    const matches = meta.get('format') === FORMAT && meta.get('identity') === options.identity;
    this.rebuilt = !matches;
    if (!matches) {
      this.db.exec(`DROP TABLE IF EXISTS spans; DROP TABLE IF EXISTS progress; DELETE FROM meta;`);
      this.db.prepare(`INSERT INTO meta (key, value) VALUES ('format', ?), ('identity', ?)`).run(FORMAT, options.identity);
    }
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS spans (
        stream TEXT NOT NULL,
        topic TEXT NOT NULL,
        first_offset INTEGER NOT NULL,
        last_offset INTEGER NOT NULL,
        kafka_topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        first_kafka_offset INTEGER NOT NULL,
        last_kafka_offset INTEGER NOT NULL,
        PRIMARY KEY (stream, topic, first_offset)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS progress (
        kafka_topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        indexed_to INTEGER NOT NULL,
        PRIMARY KEY (kafka_topic, partition)
      ) WITHOUT ROWID;
    `);
    this.statements = {
      containing: this.db.prepare(
        `SELECT * FROM spans WHERE stream = ? AND topic = ? AND first_offset <= ? AND last_offset >= ? ORDER BY first_offset DESC LIMIT 1`,
      ),
      after: this.db.prepare(`SELECT * FROM spans WHERE stream = ? AND topic = ? AND first_offset > ? ORDER BY first_offset LIMIT 1`),
      last: this.db.prepare(`SELECT * FROM spans WHERE stream = ? AND topic = ? ORDER BY first_offset DESC LIMIT 1`),
      insert: this.db.prepare(
        `INSERT OR REPLACE INTO spans (stream, topic, first_offset, last_offset, kafka_topic, partition, first_kafka_offset, last_kafka_offset)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      extend: this.db.prepare(`UPDATE spans SET last_offset = ?, last_kafka_offset = ? WHERE stream = ? AND topic = ? AND first_offset = ?`),
      progress: this.db.prepare(`SELECT indexed_to FROM progress WHERE kafka_topic = ? AND partition = ?`),
      setProgress: this.db.prepare(
        `INSERT INTO progress (kafka_topic, partition, indexed_to) VALUES (?, ?, ?)
         ON CONFLICT (kafka_topic, partition) DO UPDATE SET indexed_to = excluded.indexed_to`,
      ),
      count: this.db.prepare(`SELECT count(*) FROM spans`),
    };
  }

  /** The span holding `offset` of a logical topic, if the index knows one. */
  spanContaining(stream: string, topic: string, offset: number): Span | undefined {
    const row = this.statements.containing.get(stream, topic, offset, offset) as SpanRow | undefined;
    return row === undefined ? undefined : toSpan(row);
  }

  /** The first span starting after `offset` (records before it are gone, or not indexed yet). */
  spanAfter(stream: string, topic: string, offset: number): Span | undefined {
    const row = this.statements.after.get(stream, topic, offset) as SpanRow | undefined;
    return row === undefined ? undefined : toSpan(row);
  }

  /** How far into a partition everything committed is indexed; 0 for a partition never seen. */
  indexedTo(kafkaTopic: string, partition: number): bigint {
    const value = this.statements.progress.pluck().get(kafkaTopic, partition) as number | bigint | undefined;
    return value === undefined ? 0n : BigInt(value);
  }

  spanCount(): number {
    return this.statements.count.pluck().get() as number;
  }

  /**
   * Adds runs (merging each into its topic's last span when it continues it within the span
   * limit) and moves progress, in one SQLite transaction.
   */
  record(runs: readonly Run[], progress: readonly { kafkaTopic: string; partition: number; indexedTo: bigint }[]): void {
    // Each topic's last span after this transaction, kept here until SQLite has committed it.
    const touched = new Map<string, Span>();
    this.db.transaction(() => {
      for (const run of runs) {
        const key = topicKey(run.stream, run.topic);
        const last = touched.get(key) ?? this.lastSpan(key, run.stream, run.topic);
        if (
          last !== undefined &&
          last.lastOffset + 1 === run.firstOffset &&
          last.kafkaTopic === run.kafkaTopic &&
          last.partition === run.partition &&
          last.lastKafkaOffset < run.firstKafkaOffset &&
          run.lastKafkaOffset - last.firstKafkaOffset < this.maxSpan
        ) {
          this.statements.extend.run(run.lastOffset, run.lastKafkaOffset, run.stream, run.topic, last.firstOffset);
          touched.set(key, { ...last, lastOffset: run.lastOffset, lastKafkaOffset: run.lastKafkaOffset });
        } else {
          this.statements.insert.run(
            run.stream,
            run.topic,
            run.firstOffset,
            run.lastOffset,
            run.kafkaTopic,
            run.partition,
            run.firstKafkaOffset,
            run.lastKafkaOffset,
          );
          // A run indexed again from Kafka after a crash may start below the last span: the
          // last span is still the one starting highest, as the SQL that reads it would say.
          if (last === undefined || run.firstOffset >= last.firstOffset) touched.set(key, run);
          else touched.set(key, last);
        }
      }
      for (const entry of progress) this.statements.setProgress.run(entry.kafkaTopic, entry.partition, entry.indexedTo);
    })();
    if (this.lastSpans.size + touched.size > MAX_REMEMBERED_LAST_SPANS) this.lastSpans.clear();
    for (const [key, span] of touched) this.lastSpans.set(key, span);
  }

  /** A topic's last span: remembered, or read from the file (and then remembered by `record`). */
  private lastSpan(key: string, stream: string, topic: string): Span | undefined {
    const remembered = this.lastSpans.get(key);
    if (remembered !== undefined) return remembered;
    const row = this.statements.last.get(stream, topic) as SpanRow | undefined;
    return row === undefined ? undefined : toSpan(row);
  }

  /** Forgets everything: the next open (or the caller) rebuilds from Kafka. */
  clear(): void {
    this.lastSpans.clear();
    this.db.exec(`DELETE FROM spans; DELETE FROM progress;`);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/**
 * Builds runs from records seen in Kafka order: consecutive offsets of one logical topic in
 * one partition extend a run while its Kafka range stays within the limit.
 */
export class RunBuilder {
  /**
   * Kafka offsets as numbers while building (a transaction adds one per record, and bigint
   * arithmetic allocates); exact below 2^53, which no partition reaches.
   */
  private readonly open = new Map<string, { -readonly [K in keyof Run]: K extends 'firstKafkaOffset' | 'lastKafkaOffset' ? number : Run[K] }>();
  private readonly closed: Run[] = [];
  private readonly maxSpan: number;
  /** The last record's topic and its key: a transaction's records of a container come in runs. */
  private lastStream: string | undefined;
  private lastTopic: string | undefined;
  private lastKey = '';

  constructor(maxSpan: bigint) {
    this.maxSpan = Number(maxSpan);
  }

  add(stream: string, topic: string, offset: number, kafkaTopic: string, partition: number, kafkaOffset: bigint | number): void {
    const at = typeof kafkaOffset === 'bigint' ? Number(kafkaOffset) : kafkaOffset;
    if (!Number.isSafeInteger(at)) throw new Error(`Kafka offset ${String(kafkaOffset)} of ${kafkaTopic}/${partition} is beyond what the index builds runs of`);
    if (stream !== this.lastStream || topic !== this.lastTopic) {
      this.lastStream = stream;
      this.lastTopic = topic;
      this.lastKey = `${stream}\u0000${topic}`;
    }
    const key = this.lastKey;
    const run = this.open.get(key);
    if (
      run !== undefined &&
      run.lastOffset + 1 === offset &&
      run.partition === partition &&
      run.kafkaTopic === kafkaTopic &&
      at - run.firstKafkaOffset < this.maxSpan
    ) {
      run.lastOffset = offset;
      run.lastKafkaOffset = at;
      return;
    }
    if (run !== undefined) this.closed.push(toRun(run));
    this.open.set(key, {
      stream,
      topic,
      firstOffset: offset,
      lastOffset: offset,
      kafkaTopic,
      partition,
      firstKafkaOffset: at,
      lastKafkaOffset: at,
    });
  }

  /** Every run so far, open ones included; the builder starts empty again. */
  take(): Run[] {
    const runs = [...this.closed, ...[...this.open.values()].map(toRun)];
    this.closed.length = 0;
    this.open.clear();
    return runs;
  }
}

function toRun(run: Omit<Run, 'firstKafkaOffset' | 'lastKafkaOffset'> & { readonly firstKafkaOffset: number; readonly lastKafkaOffset: number }): Run {
  return { ...run, firstKafkaOffset: BigInt(run.firstKafkaOffset), lastKafkaOffset: BigInt(run.lastKafkaOffset) };
}
