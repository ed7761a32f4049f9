/**
 * The two SQLite files of a site log and their tables.
 *
 * `log.sqlite` (the records file) is the truth: every record, written with
 * `synchronous=FULL`. `index.sqlite` (the index file) is derived from it and can always be
 * rebuilt from it; it is written by the indexer thread only.
 *
 * Table names are built from integer stream ids (`records_7`), never from names.
 */
import type { Database } from 'better-sqlite3';

export const RECORDS_SCHEMA_VERSION = 2;
export const INDEX_SCHEMA_VERSION = 1;

export function recordsTable(streamId: number): string {
  if (!Number.isSafeInteger(streamId) || streamId <= 0) throw new Error(`invalid stream id ${streamId}`);
  return `records_${streamId}`;
}

export function indexTable(streamId: number): string {
  if (!Number.isSafeInteger(streamId) || streamId <= 0) throw new Error(`invalid stream id ${streamId}`);
  return `ix_${streamId}`;
}

export function createRecordsSchema(db: Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS sites (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE IF NOT EXISTS streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    -- first_offset and dropped_bytes change only when retention deletes a topic's oldest records,
    -- in the same transaction as the delete.
    CREATE TABLE IF NOT EXISTS topics (
      id INTEGER PRIMARY KEY,
      stream_id INTEGER NOT NULL,
      name TEXT NOT NULL,
      first_offset INTEGER NOT NULL DEFAULT 0,
      dropped_bytes INTEGER NOT NULL DEFAULT 0,
      retention_epoch INTEGER NOT NULL DEFAULT 0,
      UNIQUE (stream_id, name)
    );
    -- Lowest position retention has left in a stream, so positions are never reused even
    -- when retention empties a stream.
    CREATE TABLE IF NOT EXISTS stream_floor (stream_id INTEGER PRIMARY KEY, min_position INTEGER NOT NULL);
    -- Position reached at a wall-clock time, about once a second per stream, for TTL.
    CREATE TABLE IF NOT EXISTS time_marks (
      stream_id INTEGER NOT NULL,
      position INTEGER NOT NULL,
      at_ms INTEGER NOT NULL,
      PRIMARY KEY (stream_id, position)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
    -- Topics written by a sparse sender (a filtered feed to a customer's endpoint): their
    -- offsets increase but may skip, and a record below the last one may arrive later.
    -- Added in the same transaction as the first such record; read by the log and by verify.
    CREATE TABLE IF NOT EXISTS sparse_topics (topic_id INTEGER PRIMARY KEY);
  `);
}

export function createStreamRecordsTable(db: Database, streamId: number): void {
  // Append order is the rowid, so an append is a b-tree append and a stream scan a range
  // read. No secondary index: the topic index lives in the index file, built in bulk.
  db.exec(`
    CREATE TABLE IF NOT EXISTS ${recordsTable(streamId)} (
      position INTEGER PRIMARY KEY,
      topic_id INTEGER NOT NULL,
      topic_offset INTEGER NOT NULL,
      origin_id INTEGER NOT NULL,
      event_time_ms INTEGER NOT NULL,
      ingest_time_ms INTEGER NOT NULL,
      headers TEXT,
      payload BLOB NOT NULL
    )`);
}

export function createIndexSchema(db: Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    -- Every record of the stream at or below indexed_position is in ix_<stream>.
    CREATE TABLE IF NOT EXISTS progress (stream_id INTEGER PRIMARY KEY, indexed_position INTEGER NOT NULL);
    -- Per topic, over the indexed records: cumulative bytes appended, next offset, last times.
    CREATE TABLE IF NOT EXISTS topic_stats (
      topic_id INTEGER PRIMARY KEY,
      next_offset INTEGER NOT NULL,
      appended_bytes INTEGER NOT NULL,
      last_position INTEGER NOT NULL,
      last_ingest_ms INTEGER NOT NULL
    );
  `);
}

export function createStreamIndexTable(db: Database, streamId: number): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS ${indexTable(streamId)} (
      topic_id INTEGER NOT NULL,
      topic_offset INTEGER NOT NULL,
      position INTEGER NOT NULL,
      PRIMARY KEY (topic_id, topic_offset)
    ) WITHOUT ROWID`);
}

export function readMeta(db: Database, key: string): string | undefined {
  const row = db.prepare(`SELECT value FROM meta WHERE key = ?`).get(key) as { value: string } | undefined;
  return row?.value;
}

export function writeMeta(db: Database, key: string, value: string): void {
  db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(
    key,
    value,
  );
}
