/**
 * The embedded site log: streams of topics in one SQLite file.
 *
 * Invariants, and why they hold:
 * 1. Acknowledged means durable. `append` and `replicate` resolve only after the SQLite
 *    transaction holding the records has committed with `journal_mode=WAL` and
 *    `synchronous=FULL`, which fsyncs the WAL on every commit.
 * 2. Offsets are dense per topic. A topic's next offset lives in `topics.next_offset` and is
 *    only changed in the same transaction that inserts the records; the in-memory copy is
 *    restored whenever that transaction (or one caller's savepoint in it) rolls back.
 * 3. An identity is stored once. `(topic_id, topic_offset)` is UNIQUE; `replicate` drops a
 *    record below the topic's next offset as a duplicate after checking its origin, and
 *    refuses one above it (a gap), so a copy can never skip or repeat an offset.
 * 4. Group commit. Calls arriving while a commit is pending are gathered and written in one
 *    transaction; each caller has its own savepoint, so one caller's refused batch does not
 *    fail the others.
 * 5. SQL never contains a topic or stream name: names are bound parameters and map to ids.
 */
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  ClosedError,
  OffsetGapError,
  StoreUnavailableError,
  TopicForkError,
  topicKey,
  type LogRecord,
  type NewRecord,
  type ReadLimits,
  type ReplicateResult,
  type SiteLog,
  type StreamPage,
  type TopicHighWater,
} from '../../core/index.js';

const SCHEMA_VERSION = 1;
const DEFAULT_MAX_RECORDS = 1000;
const DEFAULT_MAX_BYTES = 4 * 1024 * 1024;

export interface SqliteLogOptions {
  /** This site's name: the origin of every record appended here. */
  readonly siteId: string;
  /** Path of the SQLite file; created with its directory if missing. */
  readonly path: string;
}

interface TopicState {
  readonly id: number;
  readonly streamId: number;
  readonly stream: string;
  readonly name: string;
  nextOffset: number;
}

type PendingWrite =
  | { kind: 'append'; records: readonly NewRecord[]; resolve: (r: LogRecord[]) => void; reject: (e: unknown) => void }
  | {
      kind: 'replicate';
      records: readonly LogRecord[];
      resolve: (r: ReplicateResult) => void;
      reject: (e: unknown) => void;
    };

interface RecordRow {
  seq: number;
  topic_offset: number;
  origin: string;
  event_time_ms: number;
  ingest_time_ms: number;
  headers: string | null;
  payload: Buffer;
  topic: string;
  stream: string;
}

/** Disk full, I/O error and the like: the caller must not acknowledge, and may retry later. */
function isStorageFailure(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^SQLITE_(FULL|IOERR|CANTOPEN|BUSY|READONLY|NOMEM)/.test(code);
}

/** What one write changed in the in-memory caches, so a rollback can undo exactly that. */
class CacheChanges {
  readonly offsetsBefore = new Map<TopicState, number>();
  readonly createdTopics: string[] = [];
  readonly createdStreams: string[] = [];
  readonly createdSites: string[] = [];

  absorb(other: CacheChanges): void {
    for (const [state, before] of other.offsetsBefore) {
      if (!this.offsetsBefore.has(state)) this.offsetsBefore.set(state, before);
    }
    this.createdTopics.push(...other.createdTopics);
    this.createdStreams.push(...other.createdStreams);
    this.createdSites.push(...other.createdSites);
  }
}

export class SqliteLog implements SiteLog {
  readonly siteId: string;
  private readonly db: SqliteDatabase;
  private readonly topics = new Map<string, TopicState>();
  private readonly streamIds = new Map<string, number>();
  private readonly siteIds = new Map<string, number>();
  private readonly siteNames = new Map<number, string>();
  private readonly listeners = new Set<(stream: string) => void>();
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  private closed = false;
  private readonly sql: ReturnType<SqliteLog['prepareStatements']>;

  private constructor(options: SqliteLogOptions) {
    this.siteId = options.siteId;
    mkdirSync(dirname(options.path), { recursive: true });
    this.db = new Database(options.path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = OFF');
    this.migrate();
    this.sql = this.prepareStatements();
    this.loadCaches();
  }

  static open(options: SqliteLogOptions): SqliteLog {
    return new SqliteLog(options);
  }

  private migrate(): void {
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS sites (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE IF NOT EXISTS streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE IF NOT EXISTS topics (
        id INTEGER PRIMARY KEY,
        stream_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        next_offset INTEGER NOT NULL,
        UNIQUE (stream_id, name)
      );
      CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY,
        stream_id INTEGER NOT NULL,
        topic_id INTEGER NOT NULL,
        topic_offset INTEGER NOT NULL,
        origin_id INTEGER NOT NULL,
        event_time_ms INTEGER NOT NULL,
        ingest_time_ms INTEGER NOT NULL,
        headers TEXT,
        payload BLOB NOT NULL,
        UNIQUE (topic_id, topic_offset)
      );
      CREATE INDEX IF NOT EXISTS records_by_stream ON records (stream_id, seq);
      CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
    `);
    const row = this.db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as
      | { value: string }
      | undefined;
    if (row === undefined) {
      this.db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', ?)`).run(String(SCHEMA_VERSION));
    } else if (Number(row.value) !== SCHEMA_VERSION) {
      throw new StoreUnavailableError(
        `log schema version ${row.value} is not supported by this build (expects ${SCHEMA_VERSION})`,
      );
    }
  }

  private prepareStatements() {
    const db = this.db;
    const recordColumns = `r.seq, r.topic_offset, s.name AS origin, r.event_time_ms, r.ingest_time_ms,
      r.headers, r.payload, t.name AS topic, st.name AS stream`;
    const recordJoins = `JOIN topics t ON t.id = r.topic_id JOIN streams st ON st.id = r.stream_id
      JOIN sites s ON s.id = r.origin_id`;
    return {
      insertSite: db.prepare(`INSERT INTO sites (name) VALUES (?)`),
      insertStream: db.prepare(`INSERT INTO streams (name) VALUES (?)`),
      insertTopic: db.prepare(`INSERT INTO topics (stream_id, name, next_offset) VALUES (?, ?, 0)`),
      updateTopicNext: db.prepare(`UPDATE topics SET next_offset = ? WHERE id = ?`),
      insertRecord: db.prepare(
        `INSERT INTO records (stream_id, topic_id, topic_offset, origin_id, event_time_ms, ingest_time_ms, headers, payload)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      originAt: db.prepare(`SELECT origin_id FROM records WHERE topic_id = ? AND topic_offset = ?`).pluck(),
      readTopic: db.prepare(
        `SELECT ${recordColumns} FROM records r ${recordJoins}
         WHERE r.topic_id = ? AND r.topic_offset >= ? ORDER BY r.topic_offset LIMIT ?`,
      ),
      readStream: db.prepare(
        `SELECT ${recordColumns} FROM records r ${recordJoins}
         WHERE r.stream_id = ? AND r.seq > ? ORDER BY r.seq LIMIT ?`,
      ),
      getCursor: db.prepare(`SELECT position FROM cursors WHERE name = ?`).pluck(),
      putCursor: db.prepare(
        `INSERT INTO cursors (name, position) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position`,
      ),
    };
  }

  private loadCaches(): void {
    for (const row of this.db.prepare(`SELECT id, name FROM sites`).all() as { id: number; name: string }[]) {
      this.siteIds.set(row.name, row.id);
      this.siteNames.set(row.id, row.name);
    }
    for (const row of this.db.prepare(`SELECT id, name FROM streams`).all() as { id: number; name: string }[]) {
      this.streamIds.set(row.name, row.id);
    }
    const streamNames = new Map([...this.streamIds].map(([name, id]) => [id, name]));
    const topicRows = this.db.prepare(`SELECT id, stream_id, name, next_offset FROM topics`).all() as {
      id: number;
      stream_id: number;
      name: string;
      next_offset: number;
    }[];
    for (const row of topicRows) {
      const stream = streamNames.get(row.stream_id) ?? '';
      this.topics.set(topicKey(stream, row.name), {
        id: row.id,
        streamId: row.stream_id,
        stream,
        name: row.name,
        nextOffset: row.next_offset,
      });
    }
  }

  append(records: readonly NewRecord[]): Promise<LogRecord[]> {
    return new Promise((resolve, reject) => this.enqueue({ kind: 'append', records, resolve, reject }));
  }

  replicate(records: readonly LogRecord[]): Promise<ReplicateResult> {
    return new Promise((resolve, reject) => this.enqueue({ kind: 'replicate', records, resolve, reject }));
  }

  private enqueue(write: PendingWrite): void {
    if (this.closed) {
      write.reject(new ClosedError('log'));
      return;
    }
    this.pending.push(write);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // setImmediate lets every write that arrives in this turn of the event loop (a whole
      // socket read of MQTT packets, say) join the same commit.
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const writes = this.pending;
    this.pending = [];
    if (writes.length === 0) return;

    const flushChanges = new CacheChanges();
    const outcomes: (() => void)[] = [];
    const touchedStreams = new Set<string>();
    const ingestTimeMs = Date.now();

    // Nested better-sqlite3 transaction = SAVEPOINT: a refused caller rolls back alone.
    const applyOne = this.db.transaction((write: PendingWrite, changes: CacheChanges): (() => void) => {
      if (write.kind === 'append') {
        const stored = this.applyAppend(write.records, ingestTimeMs, changes);
        return () => write.resolve(stored);
      }
      const result = this.applyReplicate(write.records, changes);
      return () => write.resolve(result);
    });

    try {
      this.db.exec('BEGIN IMMEDIATE');
      for (const write of writes) {
        const changes = new CacheChanges();
        try {
          outcomes.push(applyOne(write, changes));
          flushChanges.absorb(changes);
          for (const record of write.records) touchedStreams.add(record.stream);
        } catch (error) {
          this.restore(changes);
          if (isStorageFailure(error)) throw error;
          outcomes.push(() => write.reject(error));
        }
      }
      this.db.exec('COMMIT');
    } catch (error) {
      if (this.db.inTransaction) {
        try {
          this.db.exec('ROLLBACK');
        } catch {
          // The rollback of a failed commit can itself fail on a full disk; SQLite then
          // rolls back from the WAL on the next open. The in-memory state is restored below.
        }
      }
      this.restore(flushChanges);
      const failure = isStorageFailure(error)
        ? new StoreUnavailableError(`log write failed: ${(error as Error).message}`, error)
        : error;
      for (const write of writes) write.reject(failure);
      return;
    }
    for (const settle of outcomes) settle();
    for (const stream of touchedStreams) {
      for (const listener of this.listeners) listener(stream);
    }
  }

  /** Puts the in-memory caches back to what the file holds after a rollback. */
  private restore(changes: CacheChanges): void {
    for (const [state, nextOffset] of changes.offsetsBefore) state.nextOffset = nextOffset;
    for (const key of changes.createdTopics) this.topics.delete(key);
    for (const name of changes.createdStreams) this.streamIds.delete(name);
    for (const name of changes.createdSites) {
      const id = this.siteIds.get(name);
      this.siteIds.delete(name);
      if (id !== undefined) this.siteNames.delete(id);
    }
  }

  private siteIdOf(name: string, changes: CacheChanges): number {
    let id = this.siteIds.get(name);
    if (id === undefined) {
      id = Number(this.sql.insertSite.run(name).lastInsertRowid);
      this.siteIds.set(name, id);
      this.siteNames.set(id, name);
      changes.createdSites.push(name);
    }
    return id;
  }

  private topicOf(stream: string, name: string, changes: CacheChanges): TopicState {
    const key = topicKey(stream, name);
    let state = this.topics.get(key);
    if (state === undefined) {
      let streamId = this.streamIds.get(stream);
      if (streamId === undefined) {
        streamId = Number(this.sql.insertStream.run(stream).lastInsertRowid);
        this.streamIds.set(stream, streamId);
        changes.createdStreams.push(stream);
      }
      const id = Number(this.sql.insertTopic.run(streamId, name).lastInsertRowid);
      state = { id, streamId, stream, name, nextOffset: 0 };
      this.topics.set(key, state);
      changes.createdTopics.push(key);
    }
    if (!changes.offsetsBefore.has(state)) changes.offsetsBefore.set(state, state.nextOffset);
    return state;
  }

  private insert(state: TopicState, offset: number, originId: number, record: Omit<LogRecord, 'offset' | 'origin' | 'stream' | 'topic'>): void {
    const headers = record.headers;
    this.sql.insertRecord.run(
      state.streamId,
      state.id,
      offset,
      originId,
      record.eventTimeMs,
      record.ingestTimeMs,
      Object.keys(headers).length === 0 ? null : JSON.stringify(headers),
      record.payload,
    );
    state.nextOffset = offset + 1;
  }

  private applyAppend(records: readonly NewRecord[], ingestTimeMs: number, changes: CacheChanges): LogRecord[] {
    const originId = this.siteIdOf(this.siteId, changes);
    const stored: LogRecord[] = [];
    for (const newRecord of records) {
      const state = this.topicOf(newRecord.stream, newRecord.topic, changes);
      const record: LogRecord = {
        origin: this.siteId,
        stream: newRecord.stream,
        topic: newRecord.topic,
        offset: state.nextOffset,
        eventTimeMs: newRecord.eventTimeMs ?? ingestTimeMs,
        ingestTimeMs,
        headers: newRecord.headers ?? {},
        payload: newRecord.payload,
      };
      this.insert(state, record.offset, originId, record);
      stored.push(record);
    }
    for (const state of changes.offsetsBefore.keys()) this.sql.updateTopicNext.run(state.nextOffset, state.id);
    return stored;
  }

  private applyReplicate(records: readonly LogRecord[], changes: CacheChanges): ReplicateResult {
    let stored = 0;
    let duplicates = 0;
    for (const record of records) {
      const state = this.topicOf(record.stream, record.topic, changes);
      if (record.offset < state.nextOffset) {
        const heldOriginId = this.sql.originAt.get(state.id, record.offset) as number | undefined;
        const heldOrigin = heldOriginId === undefined ? undefined : this.siteNames.get(heldOriginId);
        // A held offset whose row retention already removed cannot be compared; it was
        // accepted once, so the copy is a duplicate.
        if (heldOrigin !== undefined && heldOrigin !== record.origin) {
          throw new TopicForkError(record.stream, record.topic, record.offset, heldOrigin, record.origin);
        }
        duplicates += 1;
        continue;
      }
      if (record.offset > state.nextOffset) {
        throw new OffsetGapError(record.stream, record.topic, state.nextOffset, record.offset);
      }
      this.insert(state, record.offset, this.siteIdOf(record.origin, changes), record);
      stored += 1;
    }
    const highWater: TopicHighWater[] = [];
    for (const state of changes.offsetsBefore.keys()) {
      this.sql.updateTopicNext.run(state.nextOffset, state.id);
      highWater.push({ stream: state.stream, topic: state.name, nextOffset: state.nextOffset });
    }
    return { stored, duplicates, highWater };
  }

  private toRecord(row: RecordRow): LogRecord {
    return {
      origin: row.origin,
      stream: row.stream,
      topic: row.topic,
      offset: row.topic_offset,
      eventTimeMs: row.event_time_ms,
      ingestTimeMs: row.ingest_time_ms,
      headers: row.headers === null ? {} : (JSON.parse(row.headers) as Record<string, string>),
      payload: row.payload,
    };
  }

  private readRows(statement: Statement, params: unknown[], limits: ReadLimits | undefined): RecordRow[] {
    this.assertOpen();
    const maxRecords = limits?.maxRecords ?? DEFAULT_MAX_RECORDS;
    const maxBytes = limits?.maxBytes ?? DEFAULT_MAX_BYTES;
    const rows: RecordRow[] = [];
    let bytes = 0;
    for (const row of statement.iterate(...params, maxRecords) as IterableIterator<RecordRow>) {
      // Always return at least one record, so a record larger than maxBytes cannot stall a reader.
      if (rows.length > 0 && bytes + row.payload.length > maxBytes) break;
      rows.push(row);
      bytes += row.payload.length;
    }
    return rows;
  }

  async readTopic(stream: string, topic: string, fromOffset: number, limits?: ReadLimits): Promise<LogRecord[]> {
    const state = this.topics.get(topicKey(stream, topic));
    if (state === undefined) return [];
    return this.readRows(this.sql.readTopic, [state.id, fromOffset], limits).map((row) => this.toRecord(row));
  }

  async latest(stream: string, topic: string): Promise<LogRecord | undefined> {
    const state = this.topics.get(topicKey(stream, topic));
    if (state === undefined || state.nextOffset === 0) return undefined;
    const [record] = await this.readTopic(stream, topic, state.nextOffset - 1, { maxRecords: 1 });
    return record;
  }

  async highWater(stream: string, topic: string): Promise<number> {
    return this.topics.get(topicKey(stream, topic))?.nextOffset ?? 0;
  }

  async readStream(stream: string, afterPosition: number, limits?: ReadLimits): Promise<StreamPage> {
    const streamId = this.streamIds.get(stream);
    if (streamId === undefined) return { records: [], nextPosition: afterPosition };
    const rows = this.readRows(this.sql.readStream, [streamId, afterPosition], limits);
    const last = rows.at(-1);
    return {
      records: rows.map((row) => this.toRecord(row)),
      nextPosition: last === undefined ? afterPosition : last.seq,
    };
  }

  onDurable(listener: (stream: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async getCursor(name: string): Promise<number | undefined> {
    this.assertOpen();
    return this.sql.getCursor.get(name) as number | undefined;
  }

  async commitCursor(name: string, position: number): Promise<void> {
    this.assertOpen();
    // A cursor is a single-row upsert; under synchronous=FULL it is durable on return.
    this.sql.putCursor.run(name, position);
  }

  /** Every topic of a stream with its next offset, for stats and verification. */
  listTopics(stream?: string): TopicHighWater[] {
    const result: TopicHighWater[] = [];
    for (const state of this.topics.values()) {
      if (stream === undefined || state.stream === stream) {
        result.push({ stream: state.stream, topic: state.name, nextOffset: state.nextOffset });
      }
    }
    return result;
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('log');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Let writes already accepted reach the disk before closing.
    while (this.pending.length > 0 || this.flushScheduled) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.closed = true;
    this.listeners.clear();
    this.db.close();
  }
}
