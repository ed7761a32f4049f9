/**
 * Builds the topic index (index file) from the records file, in bulk, off the append path.
 *
 * Why deferred: a per-record (topic, offset) index written at append time costs a random
 * b-tree insert per record, and with 100,000 topics every commit dirties a page per record
 * (measured here over 1M rows: 34k appends/s with the index vs 238k without). Built in
 * batches of tens of thousands of records sorted by (topic, offset), each index page is
 * written once per batch instead of once per record, on the other core.
 *
 * Invariants:
 * - `progress.indexed_position` of a stream and the index entries up to it are committed in
 *   one transaction, so the index file is always a consistent prefix of the records file.
 * - The index file is never the only copy of anything: deleting it loses nothing.
 * - The site's indexer thread writes it `unsynced` (`synchronous=OFF`): nothing is fsync'd
 *   while it runs. That is safe against a crash of the process (the operating system still
 *   holds every write, in order), not against a crash of the machine, which may leave the
 *   file torn between transactions. So `close` makes the file whole on disk (a synced
 *   checkpoint) and says so, and the log rebuilds an index that was open when the machine went
 *   down (sqlite-log.ts, invariant 9). Why: the index's own fsyncs, 3-18 ms each on this
 *   project's virtual disks, held up the records file's commit fsyncs behind them
 *   (docs/LOG.md). Every other indexer (inline, tools) writes `synced`, which survives both.
 */
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import {
  createIndexSchema,
  createStreamIndexTable,
  indexTable,
  INDEX_SCHEMA_VERSION,
  readMeta,
  recordsTable,
  writeMeta,
} from './schema.js';


/** Per stream: the statements that index one batch (see runOnce). */
interface StreamBatchStatements {
  /** How many unindexed records the batch takes, and its last position. */
  readonly end: Statement;
  readonly insert: Statement;
  readonly stats: Statement;
}

export interface IndexerOptions {
  readonly recordsPath: string;
  readonly indexPath: string;
  /** Most records indexed per transaction. */
  readonly maxBatchRecords?: number;
  /** `unsynced`: no fsyncs until `close` (the site's indexer thread only; see the top). Default `synced`. */
  readonly durability?: 'synced' | 'unsynced';
}

/**
 * Opens (and if needed recreates) the index file; returns the open database. `unsynced`: the
 * indexer's own connection, which fsyncs nothing until `TopicIndexer.close` (see the top).
 */
export function openIndexFile(indexPath: string, durability: 'synced' | 'unsynced' = 'synced'): SqliteDatabase {
  const db = new Database(indexPath);
  db.pragma('journal_mode = WAL');
  // Derived data. Synced (NORMAL): a crash of the machine may lose the last index
  // transactions but never tears the file, and what is lost is indexed again from the records
  // file. Unsynced (OFF): only a crash of the process is survived; see the top.
  db.pragma(durability === 'unsynced' ? 'synchronous = OFF' : 'synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  createIndexSchema(db);
  const version = readMeta(db, 'schema_version');
  if (version === undefined) writeMeta(db, 'schema_version', String(INDEX_SCHEMA_VERSION));
  return db;
}

export class TopicIndexer {
  private readonly records: SqliteDatabase;
  private readonly index: SqliteDatabase;
  private readonly maxBatchRecords: number;
  private readonly durability: 'synced' | 'unsynced';
  private readonly knownStreams = new Set<number>();
  private readonly batchByStream = new Map<number, StreamBatchStatements>();
  private readonly progressGet: Statement;
  private readonly progressPut: Statement;
  private retentionEpochDone: number;

  constructor(options: IndexerOptions) {
    this.records = new Database(options.recordsPath, { fileMustExist: true });
    this.records.pragma('busy_timeout = 5000');
    this.durability = options.durability ?? 'synced';
    this.index = openIndexFile(options.indexPath, this.durability);
    // The index connection reads the records file itself, so a batch goes from one file's
    // b-tree into the other's inside SQLite: no row crosses into JavaScript (see runOnce).
    this.index.prepare(`ATTACH DATABASE ? AS rec`).run(options.recordsPath);
    this.maxBatchRecords = options.maxBatchRecords ?? 50_000;
    this.progressGet = this.index.prepare(`SELECT indexed_position FROM progress WHERE stream_id = ?`).pluck();
    this.progressPut = this.index.prepare(
      `INSERT INTO progress (stream_id, indexed_position) VALUES (?, ?)
       ON CONFLICT (stream_id) DO UPDATE SET indexed_position = excluded.indexed_position`,
    );
    this.retentionEpochDone = Number(readMeta(this.index, 'retention_epoch_done') ?? '0');
  }

  private streams(): number[] {
    const ids = this.records.prepare(`SELECT id FROM streams ORDER BY id`).pluck().all() as number[];
    for (const id of ids) {
      if (!this.knownStreams.has(id)) {
        // Asked through the index connection: the query also brings its view of the attached
        // records file's schema up to date, so the statements below see the new table.
        const exists = this.index
          .prepare(`SELECT 1 FROM rec.sqlite_master WHERE type = 'table' AND name = ?`)
          .get(recordsTable(id));
        if (exists === undefined) continue;
        createStreamIndexTable(this.index, id);
        const records = `rec.${recordsTable(id)}`;
        this.batchByStream.set(id, {
          end: this.index
            .prepare(`SELECT count(*), max(position) FROM (SELECT position FROM ${records} WHERE position > ? ORDER BY position LIMIT ?)`)
            .raw(),
          insert: this.index.prepare(
            `INSERT OR REPLACE INTO ${indexTable(id)} (topic_id, topic_offset, position)
             SELECT topic_id, topic_offset, position FROM ${records}
             WHERE position > @from AND position <= @to ORDER BY topic_id, topic_offset`,
          ),
          stats: this.index.prepare(
            `INSERT INTO topic_stats (topic_id, next_offset, appended_bytes, last_position, last_ingest_ms)
             SELECT topic_id, max(topic_offset) + 1, sum(length(payload)), max(position), max(ingest_time_ms)
             FROM ${records} WHERE position > @from AND position <= @to GROUP BY topic_id ORDER BY topic_id
             ON CONFLICT (topic_id) DO UPDATE SET
               next_offset = max(next_offset, excluded.next_offset),
               appended_bytes = appended_bytes + excluded.appended_bytes,
               last_position = max(last_position, excluded.last_position),
               last_ingest_ms = max(last_ingest_ms, excluded.last_ingest_ms)`,
          ),
        });
        this.knownStreams.add(id);
      }
    }
    return [...this.knownStreams];
  }

  /** Most records indexed per stream and transaction. */
  get batchRecords(): number {
    return this.maxBatchRecords;
  }

  /**
   * Indexes up to one batch per stream; returns how many records it indexed.
   *
   * Each batch is three statements over one range of positions, run by SQLite alone: the
   * range's end, the index entries in (topic, offset) order (so each index page is written
   * once per batch), and per-topic statistics. Measured at 57,000 msg/s from the gateway, the
   * earlier version, which read every row into a JavaScript object, sorted them with a
   * comparator and inserted them one `run` at a time, used 29-34% of a core; this one 20-22%.
   */
  runOnce(): number {
    let indexed = 0;
    for (const streamId of this.streams()) {
      const from = (this.progressGet.get(streamId) as number | undefined) ?? 0;
      const batch = this.batchByStream.get(streamId)!;
      // Deferred, not IMMEDIATE: BEGIN IMMEDIATE takes the write lock of every attached file,
      // the records file included, and the log's appends would wait for the whole batch
      // (measured: PUBACK p99 75-148 ms against 22-46 ms).
      const count = this.index.transaction(() => {
        // Inside the transaction: the range and the copies read one snapshot of the records file.
        const [rows, lastPosition] = batch.end.get(from, this.maxBatchRecords) as [number, number | null];
        if (rows === 0 || lastPosition === null) return 0;
        const range = { from, to: lastPosition };
        batch.insert.run(range);
        batch.stats.run(range);
        this.progressPut.run(streamId, lastPosition);
        return rows;
      })();
      indexed += count;
    }
    return indexed;
  }

  /** Drops index entries of records retention deleted. */
  reconcileRetention(): number {
    const epoch = Number(
      (this.records.prepare(`SELECT value FROM meta WHERE key = 'retention_epoch'`).pluck().get() as string | undefined) ??
        '0',
    );
    if (epoch <= this.retentionEpochDone) return 0;
    const topics = this.records
      .prepare(`SELECT id, stream_id, first_offset FROM topics WHERE retention_epoch > ?`)
      .all(this.retentionEpochDone) as { id: number; stream_id: number; first_offset: number }[];
    const streams = new Set(this.streams());
    this.index.transaction(() => {
      for (const topic of topics) {
        if (!streams.has(topic.stream_id)) continue;
        this.index
          .prepare(`DELETE FROM ${indexTable(topic.stream_id)} WHERE topic_id = ? AND topic_offset < ?`)
          .run(topic.id, topic.first_offset);
      }
      writeMeta(this.index, 'retention_epoch_done', String(epoch));
    })();
    this.retentionEpochDone = epoch;
    return topics.length;
  }

  /**
   * Closes both connections; true when the index file is then safe from a crash of the
   * machine. An `unsynced` index is, once its WAL is copied into the file by a checkpoint with
   * fsyncs and emptied; false when a reader held that back or it failed, and the log then
   * treats the file as still being written (sqlite-log.ts, invariant 9).
   */
  close(): boolean {
    let synced = this.durability === 'synced';
    if (!synced) {
      try {
        this.index.pragma('synchronous = FULL');
        const [result] = this.index.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
        synced = result !== undefined && result.busy === 0 && result.checkpointed === result.log;
      } catch {
        synced = false;
      }
    }
    this.records.close();
    this.index.close();
    return synced;
  }
}
