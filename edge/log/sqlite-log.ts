/**
 * The embedded site log: streams of topics in SQLite.
 *
 * Layout (chosen by measurement; see docs/LOG.md):
 * - `log.sqlite` holds the records, one table per stream (`records_<id>`), rowid = the
 *   stream's position (this site's append order). An append is a b-tree append; a stream
 *   scan is a range read. Written with `journal_mode=WAL` and `synchronous=FULL`.
 * - `index.sqlite` holds the (topic, offset) → position index and per-topic statistics,
 *   built in bulk by a worker thread (topic-indexer.ts). It is derived, never the only copy.
 *   Records newer than the index are found by scanning the short unindexed tail.
 *
 * Invariants, and why they hold:
 * 1. Acknowledged means durable. `append` and `replicate` resolve only after the
 *    transaction holding the records has committed with `synchronous=FULL`, which fsyncs
 *    the WAL on commit.
 * 2. Offsets are dense per topic. A topic's next offset is kept in memory, advanced only by
 *    records inserted in the current transaction, and put back whenever that transaction
 *    rolls back: the first time a flush touches a topic (or stream) it saves the values it
 *    had in its own fields (`stamp` names the flush), and a rollback restores every topic
 *    and stream the flush touched. Rows are bound 32 at a time in multi-row INSERTs; the
 *    rows still buffered are inserted before COMMIT, so every acknowledged record was in the
 *    committed transaction. At open it is rebuilt from the index's per-topic statistics
 *    plus the unindexed tail, both of which derive from committed records only.
 * 3. An identity is stored once. `replicate` drops a record below the topic's next offset
 *    as a duplicate after checking its origin and refuses one above it (a gap), so a copy
 *    never skips or repeats an offset. The origin check costs no read for the records this
 *    process wrote since the topic's origin last changed (the topic's `tailOriginId`: a
 *    dense topic's offsets from `tailOriginFrom` on are all held, with that origin; a site
 *    fed by several peers gets most records more than once, moments apart); any other
 *    duplicate is looked up with the batch's others (`heldOrigins`). `verify` checks it on
 *    disk. A sparse sender (a filtered
 *    feed to a customer's endpoint, `ReplicateContext.sparse`) is the one exception: its
 *    topics are marked sparse (table `sparse_topics`, in the same transaction) and take any
 *    identity not yet held, checked one by one (the index, then the unindexed tail through
 *    the writer connection, which also sees this flush's rows), so offsets increase but may
 *    skip, and a record below a topic's last offset may arrive later (custody widened).
 * 4. Group commit. Calls arriving in the same turn of the event loop are written in one
 *    transaction. A replicated batch is validated in full before any of it is written, so
 *    one caller's refused batch never fails the others and needs nothing undone. Each
 *    caller's outcome is kept in its own `PendingWrite` and settled only after COMMIT
 *    returned (or every caller of the flush is rejected), so no caller hears of a record
 *    before it is durable. `append` hands its records to one shared Promise executor
 *    through a field: a Promise runs its executor synchronously inside its constructor, so
 *    nothing can run between setting the field and reading it. The indexer thread is woken
 *    per 16k committed records (or 200 ms after the first), so it indexes in large batches;
 *    until then reads scan the unindexed tail. It runs at normal OS priority: lowered (nice
 *    5) it fell 6-7 s behind under load, and retention deletes only indexed records, so a
 *    starved indexer would hold back the deletes a filling disk needs (docs/LOG.md).
 * 5. Retention deletes only a prefix of a stream (lowest positions first), and therefore
 *    only a prefix of each topic: what remains of a topic is always dense from its first
 *    offset. TTL never deletes a record a required forwarding cursor has not yet passed;
 *    only disk pressure may, and every such drop is counted and logged.
 * 6. Positions are never reused: the lowest position retention left is kept per stream.
 * 7. SQL never contains a topic or stream name: names are bound parameters mapped to ids.
 *    In memory a topic is found by its stream, then by name in the stream's TopicTable,
 *    which confirms every hit by comparing the whole name (so no two topics are confused).
 *    The stream found last is remembered (compared by name before use) and forgotten on
 *    every rollback, since a rollback may remove a stream the flush created.
 * 8. Headers are stored as the caller gave them. A frozen headers object cannot change, so
 *    its JSON text is made once and kept in a WeakMap keyed by the object (the gateway
 *    shares one frozen object per MQTT topic); any other object is serialised per record.
 * 9. An index torn by a machine crash is never used. The site's indexer thread writes the
 *    index file without fsyncs (topic-indexer.ts), which survives a crash of this process but
 *    not of the machine. So the records file (fsync'd) says whether such an indexer is
 *    writing it, and in which boot of the machine (`index_synced`, `index_boot` in its meta):
 *    "being written" at open, before the thread starts; "synced" at close, only once the
 *    thread reports the file wholly on disk. At open, an index that was being written in an
 *    earlier boot (or one this machine cannot name) is deleted and rebuilt from the records,
 *    as a lost one is; within one boot (kill -9, a crashed process) the kernel still held
 *    every write, so the file is whole and is kept. A log opened with the inline indexer
 *    (`portcall log`, beside a running site) writes the index synced and leaves both marks
 *    alone: closing it must not declare whole a file the site's thread is still writing.
 */
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import { mkdirSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import {
  ClosedError,
  NO_HEADERS,
  OffsetGapError,
  StoreUnavailableError,
  TopicForkError,
  topicKey,
  type LogRecord,
  type NewRecord,
  type ReadLimits,
  type RecordHeaders,
  type ReplicateContext,
  type ReplicateResult,
  type SiteLog,
  type StreamPage,
  type TopicHighWater,
} from '../../core/index.js';
import {
  createRecordsSchema,
  createStreamRecordsTable,
  indexTable,
  readMeta,
  recordsTable,
  RECORDS_SCHEMA_VERSION,
  writeMeta,
} from './schema.js';
import { openIndexFile, TopicIndexer } from './topic-indexer.js';
import { TopicTable } from './topic-table.js';
import type { CheckpointerReply, CheckpointerWorkerData } from './checkpointer-worker.js';
import type { IndexerReply, IndexerWorkerData } from './indexer-worker.js';

const DEFAULT_MAX_RECORDS = 1000;
const DEFAULT_MAX_BYTES = 4 * 1024 * 1024;
const TIME_MARK_INTERVAL_MS = 1000;
const RETENTION_CHUNK_RECORDS = 5000;
/**
 * Rows per multi-row INSERT statement. Binding 32 rows in one statement instead of running
 * a one-row statement 32 times cut the cost of a row by about a fifth (measured, docs/LOG.md).
 */
const ROWS_PER_INSERT = 32;
const COLUMNS = 8;
/** The indexer thread's nice value unless `indexerNice` says otherwise (indexer-worker.ts). */
const DEFAULT_INDEXER_NICE = 10;
/** The indexer is woken once this many records have been committed since it last was... */
const INDEXER_WAKE_RECORDS = 16_384;
/** ...or this long after the first of them, whichever comes first. */
const INDEXER_WAKE_MS = 200;
/**
 * A group commit whose synchronous part (validation, inserts, COMMIT) takes longer than this
 * holds the site's event loop long enough for its peers' links to notice: it is logged with
 * what it did, so a stall seen from outside can be traced to it.
 */
const DEFAULT_SLOW_COMMIT_MS = 1000;

export interface StreamPolicy {
  /** Records older than this (time stored at this site) may be deleted. */
  readonly ttlMs?: number;
  /** The stream's records are trimmed, oldest first, to stay under this many payload bytes. */
  readonly maxBytes?: number;
  /** Under disk pressure, streams with lower priority lose records first (alerts highest). */
  readonly priority?: number;
  /** Cursor names (e.g. `forward/TOKYO/containers`) that must pass a record before TTL may expire it. */
  readonly requireCursors?: readonly string[];
}

export interface SqliteLogOptions {
  /** This site's name: the origin of every record appended here. */
  readonly siteId: string;
  /** Path of the records file; the index file sits beside it (`<name>.index.sqlite`). */
  readonly path: string;
  readonly streams?: Readonly<Record<string, StreamPolicy>>;
  /** Hard limit on the bytes the log uses; above it the log drops by priority. */
  readonly maxLogBytes?: number;
  /** When the disk has less free space than this, the log drops by priority. */
  readonly minFreeDiskBytes?: number;
  /** How often retention runs. 0 disables the timer (tests call `runRetention`). */
  readonly retentionIntervalMs?: number;
  /** `thread` (default) builds the topic index on a worker thread; `inline` on this one. */
  readonly indexer?: 'thread' | 'inline';
  /**
   * Linux nice value (0-19) of the indexer thread; default 10, so that the threads a PUBACK
   * waits for run first (indexer-worker.ts). 0 runs it at the process's own priority.
   */
  readonly indexerNice?: number;
  /**
   * Names this boot of the machine (invariant 9). Default: Linux's
   * `/proc/sys/kernel/random/boot_id`; where there is none, every unclean stop counts as a
   * machine crash. Tests set it to act out a restart of the machine.
   */
  readonly bootId?: string;
  /** A group commit that holds the event loop longer than this is logged (warn). Default 1000 ms. */
  readonly slowCommitMs?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

/** This boot of the machine, or undefined where the system does not name it. */
function machineBootId(): string | undefined {
  try {
    const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return id === '' ? undefined : id;
  } catch {
    return undefined;
  }
}

export interface TopicStats {
  readonly stream: string;
  readonly topic: string;
  /** Lowest offset still held (retention may have removed earlier ones). */
  readonly firstOffset: number;
  /** One past the last offset held. */
  readonly nextOffset: number;
  readonly count: number;
  readonly bytes: number;
  /** Ingest time of the last record, epoch ms; undefined for an empty topic. */
  readonly lastAppendMs: number | undefined;
}

export interface RetentionReport {
  readonly stream: string;
  readonly reason: 'ttl' | 'size' | 'pressure';
  readonly records: number;
  readonly bytes: number;
  /** Records dropped before every required cursor had passed them (pressure only). */
  readonly unforwarded: number;
}

interface TopicState {
  readonly id: number;
  readonly stream: StreamState;
  readonly name: string;
  nextOffset: number;
  firstOffset: number;
  appendedBytes: number;
  droppedBytes: number;
  lastPosition: number;
  lastAppendMs: number;
  /** Written by a sparse sender: offsets may skip and fill in later (sparse_topics). */
  sparse: boolean;
  /**
   * The origin (site id) of every record from `tailOriginFrom` to the topic's end, as this
   * process wrote them; 0 when unknown (after open). Lets a duplicate of a recent record be
   * checked for a fork without reading it back (invariant 3).
   */
  tailOriginId: number;
  tailOriginFrom: number;
  /** The flush that last saved the values below, so a rollback can put them back. */
  stamp: number;
  savedNextOffset: number;
  savedAppendedBytes: number;
  savedLastPosition: number;
  savedLastAppendMs: number;
  savedTailOriginId: number;
  savedTailOriginFrom: number;
}

interface StreamState {
  readonly id: number;
  readonly name: string;
  readonly insert: Statement;
  /** Inserts ROWS_PER_INSERT rows at once. */
  readonly insertMany: Statement;
  /** The stream's topics by name (per stream: no key string is built per record). */
  readonly topics: TopicTable<TopicState>;
  /** Bound values of rows not yet inserted in the current flush, COLUMNS per row. */
  readonly rows: unknown[];
  rowCount: number;
  nextPosition: number;
  lastMarkMs: number;
  liveBytes: number;
  stamp: number;
  savedNextPosition: number;
  savedLiveBytes: number;
  savedLastMarkMs: number;
}

/**
 * One caller's write, waiting for the next flush. One shape for both kinds (a class, so the
 * flush loop sees one hidden class), and the outcome is kept in the object itself rather
 * than in a closure per caller (measured: docs/LOG.md, one call per record).
 */
class PendingWrite {
  /** What the flush decided: the result to resolve with, or the refusal to reject with. */
  result: LogRecord[] | ReplicateResult | undefined = undefined;
  refusal: unknown = undefined;
  constructor(
    readonly kind: 'append' | 'replicate' | 'sparse',
    readonly records: readonly NewRecord[] | readonly LogRecord[],
    readonly resolve: (result: never) => void,
    readonly reject: (error: unknown) => void,
  ) {}
}

interface RecordRow {
  position: number;
  topic_id: number;
  topic_offset: number;
  origin_id: number;
  event_time_ms: number;
  ingest_time_ms: number;
  headers: string | null;
  payload: Buffer;
}

/**
 * What one flush changed in memory, so a rollback can undo exactly that. A topic or stream
 * saves its values in its own fields the first time a flush touches it (its `stamp` tells),
 * so the bookkeeping costs no allocation per record.
 */
class FlushChanges {
  readonly topics: TopicState[] = [];
  readonly streams: StreamState[] = [];
  readonly createdTopics: TopicState[] = [];
  readonly createdStreams: StreamState[] = [];
  readonly createdSites: string[] = [];
  /** Topics this flush marked sparse (unmarked again on a rollback). */
  readonly sparsified: TopicState[] = [];
  constructor(readonly stamp: number) {}
}

/** Disk full, I/O error and the like: the caller must not acknowledge, and may retry later. */
function isStorageFailure(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^SQLITE_(FULL|IOERR|CANTOPEN|BUSY|READONLY|NOMEM|CORRUPT)/.test(code);
}

/** The headers as stored: JSON, or null when there are none. */
function headersJson(headers: RecordHeaders): string | null {
  for (const _key in headers) return JSON.stringify(headers);
  return null;
}

function newTopicState(id: number, stream: StreamState, name: string, firstOffset: number, droppedBytes: number): TopicState {
  return {
    id,
    stream,
    name,
    nextOffset: firstOffset,
    firstOffset,
    appendedBytes: 0,
    droppedBytes,
    lastPosition: 0,
    lastAppendMs: 0,
    sparse: false,
    tailOriginId: 0,
    tailOriginFrom: 0,
    stamp: 0,
    savedNextOffset: 0,
    savedAppendedBytes: 0,
    savedLastPosition: 0,
    savedLastAppendMs: 0,
    savedTailOriginId: 0,
    savedTailOriginFrom: 0,
  };
}

export function indexPathFor(recordsPath: string): string {
  return `${recordsPath.replace(/\.sqlite$/, '')}.index.sqlite`;
}

function workerScript(name: 'indexer-worker' | 'checkpointer-worker'): URL {
  // Under the test runner this module runs from TypeScript source; worker threads need the
  // compiled JavaScript, which `npm test` builds first.
  return import.meta.url.endsWith('.ts')
    ? new URL(`../../dist/edge/log/${name}.js`, import.meta.url)
    : new URL(`./${name}.js`, import.meta.url);
}

/**
 * Asks one of the log's threads to stop and waits until it says it has (`stopped` true for
 * its reply), or exits, or 5 s pass; then ends it.
 */
async function stopThread<Reply>(worker: Worker, stopped: (message: Reply) => boolean): Promise<void> {
  const done = new Promise<void>((resolve) => {
    worker.on('message', (message: Reply) => stopped(message) && resolve());
    worker.once('exit', () => resolve());
  });
  worker.postMessage({ type: 'stop' });
  // The bound must not outlive the wait: a pending 5 s timer kept every process that closed
  // its log alive for up to 5 s after it was done.
  let bound: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise((resolve) => (bound = setTimeout(resolve, 5000)))]);
  clearTimeout(bound);
  await worker.terminate();
}

export class SqliteLog implements SiteLog {
  readonly siteId: string;
  readonly path: string;
  readonly indexPath: string;
  private readonly db: SqliteDatabase;
  private readonly reader: SqliteDatabase;
  private readonly topicsById = new Map<number, TopicState>();
  private readonly streams = new Map<string, StreamState>();
  private readonly streamsById = new Map<number, StreamState>();
  private readonly siteIds = new Map<string, number>();
  private readonly siteNames = new Map<number, string>();
  private readonly otherTopicNames = new Map<number, string>();
  private readonly listeners = new Set<(stream: string) => void>();
  private readonly policies: Readonly<Record<string, StreamPolicy>>;
  private readonly options: SqliteLogOptions;
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  private closed = false;
  private worker: Worker | undefined;
  private inlineIndexer: TopicIndexer | undefined;
  private indexerPoked = false;
  private unindexedRecords = 0;
  private indexerTimer: NodeJS.Timeout | undefined;
  private flushStamp = 0;
  /** Rows of unindexed tails read by heldOrigins during the current flush (for the slow-flush log). */
  private flushTailRowsRead = 0;
  private retentionTimer: NodeJS.Timeout | undefined;
  private retentionRunning: Promise<RetentionReport[]> | undefined;
  private readonly readerStatements = new Map<string, Statement>();
  /** The thread that checkpoints the records file's WAL (with the indexer thread; none inline). */
  private checkpointer: Worker | undefined;
  /** The indexer thread's nice value, once it has reported it (undefined inline or before). */
  private indexerNice: number | undefined;
  /** Streams whose index table the indexer has made (see indexExists). */
  private readonly indexedStreams = new Set<number>();
  /** The stored text of frozen headers objects (shared per MQTT topic by the gateway). */
  private readonly frozenHeadersText = new WeakMap<object, string | null>();
  /** The stream `topicOf` found last: records of one call nearly always share it. */
  private lastStream: StreamState | undefined;
  private readonly sql;
  private readonly metrics;

  private constructor(options: SqliteLogOptions) {
    this.options = options;
    this.siteId = options.siteId;
    this.path = options.path;
    this.indexPath = indexPathFor(options.path);
    this.policies = options.streams ?? {};
    mkdirSync(dirname(options.path), { recursive: true });
    this.db = new Database(options.path);
    try {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 5000');
      // The checkpointer thread checkpoints (checkpointer-worker.ts); this is only the
      // safety net for when appends outpace it, at full speed. It runs inside a commit and
      // stalls every caller waiting on it, 60-90 ms at 64 MiB.
      this.db.pragma('wal_autocheckpoint = 16384');
      // After a checkpoint the WAL file is cut back to this size, so a burst does not leave
      // a large file behind that a full disk would need again to checkpoint.
      this.db.pragma('journal_size_limit = 67108864');
      this.migrate();
      this.sql = {
        insertSite: this.db.prepare(`INSERT INTO sites (name) VALUES (?)`),
        insertStream: this.db.prepare(`INSERT INTO streams (name) VALUES (?)`),
        insertTopic: this.db.prepare(`INSERT INTO topics (stream_id, name) VALUES (?, ?)`),
        markSparse: this.db.prepare(`INSERT OR IGNORE INTO sparse_topics (topic_id) VALUES (?)`),
        insertMark: this.db.prepare(`INSERT OR REPLACE INTO time_marks (stream_id, position, at_ms) VALUES (?, ?, ?)`),
        getCursor: this.db.prepare(`SELECT position FROM cursors WHERE name = ?`).pluck(),
        putCursor: this.db.prepare(
          `INSERT INTO cursors (name, position) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position`,
        ),
      };
      this.loadState();
    } catch (error) {
      this.db.close();
      throw error;
    }
    this.reader = new Database(options.path, { readonly: true });
    this.reader.pragma('busy_timeout = 5000');
    this.reader.prepare(`ATTACH DATABASE ? AS ix`).run(this.indexPath);

    const registers = options.registry === undefined ? [] : [options.registry];
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- prom-client calls collect() with the gauge as `this`
    const self = this;
    this.metrics = {
      dropped: new Counter({
        name: 'portcall_log_dropped_records_total',
        help: 'Records deleted by retention, by stream and reason (ttl, size, pressure)',
        labelNames: ['stream', 'reason'],
        registers,
      }),
      droppedUnforwarded: new Counter({
        name: 'portcall_log_dropped_unforwarded_records_total',
        help: 'Records dropped under disk pressure before every required cursor had passed them',
        labelNames: ['stream'],
        registers,
      }),
      appendFailures: new Counter({
        name: 'portcall_log_append_failures_total',
        help: 'Commits that failed (disk full, I/O error); their callers were not acknowledged',
        labelNames: ['code'],
        registers,
      }),
      unindexed: new Gauge({
        name: 'portcall_log_unindexed_records',
        help: 'Records committed past the topic index, by stream: reads and duplicate checks scan them; the indexer thread (low priority) catches up when the CPU allows',
        labelNames: ['stream'],
        registers,
        collect() {
          if (self.closed) return;
          for (const stream of self.streams.values()) this.set({ stream: stream.name }, Math.max(0, stream.nextPosition - 1 - self.indexedPosition(stream.id)));
        },
      }),
      indexerNice: new Gauge({
        name: 'portcall_log_indexer_nice',
        help: 'Linux nice value the topic indexer thread runs at (default 10; 19 is the lowest priority); NaN until the thread has said',
        registers,
        collect() {
          this.set(self.indexerNice ?? Number.NaN);
        },
      }),
      bytes: new Gauge({
        name: 'portcall_log_used_bytes',
        help: 'Bytes of the records file in use (excluding free pages)',
        registers,
        collect() {
          if (!self.closed) this.set(self.usedBytes());
        },
      }),
    };

    if ((options.indexer ?? 'thread') === 'thread') {
      this.startWorker();
      this.startCheckpointer();
    } else this.inlineIndexer = new TopicIndexer({ recordsPath: this.path, indexPath: this.indexPath });
    const intervalMs = options.retentionIntervalMs ?? 1000;
    if (intervalMs > 0) {
      this.retentionTimer = setInterval(() => void this.runRetention().catch(() => undefined), intervalMs);
      this.retentionTimer.unref();
    }
  }

  static open(options: SqliteLogOptions): SqliteLog {
    return new SqliteLog(options);
  }

  private migrate(): void {
    const legacy = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'`).get();
    if (legacy !== undefined) {
      throw new StoreUnavailableError(
        `${this.path} is a log from an earlier development build (format 1), which this build cannot read; move it away`,
      );
    }
    createRecordsSchema(this.db);
    const version = readMeta(this.db, 'schema_version');
    if (version === undefined) writeMeta(this.db, 'schema_version', String(RECORDS_SCHEMA_VERSION));
    else if (Number(version) !== RECORDS_SCHEMA_VERSION) {
      throw new StoreUnavailableError(
        `${this.path}: log format ${version} is not supported by this build (expects ${RECORDS_SCHEMA_VERSION})`,
      );
    }
  }

  private streamState(id: number, name: string): StreamState {
    createStreamRecordsTable(this.db, id);
    const table = recordsTable(id);
    const insertSql = `INSERT INTO ${table} (position, topic_id, topic_offset, origin_id, event_time_ms, ingest_time_ms, headers, payload) VALUES `;
    const row = `(${new Array(COLUMNS).fill('?').join(', ')})`;
    return {
      id,
      name,
      insert: this.db.prepare(insertSql + row),
      insertMany: this.db.prepare(insertSql + new Array(ROWS_PER_INSERT).fill(row).join(', ')),
      topics: new TopicTable<TopicState>(),
      rows: new Array(ROWS_PER_INSERT * COLUMNS).fill(null),
      rowCount: 0,
      nextPosition: 1,
      lastMarkMs: 0,
      liveBytes: 0,
      stamp: 0,
      savedNextPosition: 0,
      savedLiveBytes: 0,
      savedLastMarkMs: 0,
    };
  }

  /** Rebuilds the in-memory state from committed data: invariant 2. */
  private loadState(): void {
    for (const row of this.db.prepare(`SELECT id, name FROM sites`).all() as { id: number; name: string }[]) {
      this.siteIds.set(row.name, row.id);
      this.siteNames.set(row.id, row.name);
    }
    for (const row of this.db.prepare(`SELECT id, name FROM streams`).all() as { id: number; name: string }[]) {
      const state = this.streamState(row.id, row.name);
      const maxPosition = (this.db.prepare(`SELECT max(position) FROM ${recordsTable(row.id)}`).pluck().get() as number | null) ?? 0;
      const floor = (this.db.prepare(`SELECT min_position FROM stream_floor WHERE stream_id = ?`).pluck().get(row.id) as number | undefined) ?? 1;
      state.nextPosition = Math.max(maxPosition + 1, floor);
      this.streams.set(row.name, state);
      this.streamsById.set(row.id, state);
    }
    // Raw rows and one pass: a site with 100,000 topics opens in the time of this loop.
    const topicRows = this.db
      .prepare(`SELECT id, stream_id, name, first_offset, dropped_bytes FROM topics`)
      .raw()
      .iterate() as IterableIterator<[number, number, string, number, number]>;
    for (const [id, streamId, name, firstOffset, droppedBytes] of topicRows) {
      const stream = this.streamsById.get(streamId);
      if (stream === undefined) continue;
      const state = newTopicState(id, stream, name, firstOffset, droppedBytes);
      stream.topics.add(state);
      this.topicsById.set(id, state);
    }
    for (const topicId of this.db.prepare(`SELECT topic_id FROM sparse_topics`).pluck().all() as number[]) {
      const topic = this.topicsById.get(topicId);
      if (topic !== undefined) topic.sparse = true;
    }

    // Statistics over the indexed prefix, then the unindexed tail on top.
    const floors = new Map(
      (this.db.prepare(`SELECT stream_id, min_position FROM stream_floor`).all() as { stream_id: number; min_position: number }[]).map(
        (row) => [row.stream_id, row.min_position],
      ),
    );
    const discardIndex = () => {
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${this.indexPath}${suffix}`, { force: true });
    };
    let index: SqliteDatabase;
    let rebuilding = false;
    // Invariant 9: the index file was being written, without fsyncs, when the machine stopped.
    const bootId = this.options.bootId ?? machineBootId();
    if (readMeta(this.db, 'index_synced') === '0' && (bootId === undefined || readMeta(this.db, 'index_boot') !== bootId)) {
      this.options.logger?.warn('topic index was being written when the machine stopped; rebuilding it from the records');
      discardIndex();
      rebuilding = true;
    }
    if ((this.options.indexer ?? 'thread') === 'thread') {
      // Before the thread writes: from here until a clean close the file is not known whole.
      this.db.transaction(() => {
        writeMeta(this.db, 'index_synced', '0');
        writeMeta(this.db, 'index_boot', bootId ?? '');
      })();
    } else if (rebuilding) {
      // The torn file is gone and nothing unsynced will write the new one.
      writeMeta(this.db, 'index_synced', '1');
    }
    try {
      index = openIndexFile(this.indexPath);
      index.prepare(`SELECT count(*) FROM progress`).get();
    } catch (error) {
      this.options.logger?.warn({ err: (error as Error).message }, 'topic index unreadable; rebuilding it from the records');
      discardIndex();
      index = openIndexFile(this.indexPath);
      rebuilding = true;
    }
    let progress = new Map(
      (index.prepare(`SELECT stream_id, indexed_position FROM progress`).all() as { stream_id: number; indexed_position: number }[]).map(
        (row) => [row.stream_id, row.indexed_position],
      ),
    );
    const behindRetention = [...this.streams.values()].some((stream) => (progress.get(stream.id) ?? 0) < (floors.get(stream.id) ?? 1) - 1);
    if (rebuilding || behindRetention) {
      // The index does not cover records retention has deleted (file lost, torn or rolled
      // back by a machine crash): its byte counts and the dropped-byte counts no longer describe the
      // same records. Start both afresh: a new index counts only the records that remain.
      if (!rebuilding) {
        this.options.logger?.warn('topic index is behind retention; rebuilding it from the records');
        index.close();
        discardIndex();
        index = openIndexFile(this.indexPath);
      }
      this.db.exec(`UPDATE topics SET dropped_bytes = 0`);
      for (const topic of this.topicsById.values()) topic.droppedBytes = 0;
      progress = new Map();
    }
    try {
      const stats = index
        .prepare(`SELECT topic_id, next_offset, appended_bytes, last_position, last_ingest_ms FROM topic_stats`)
        .raw()
        .iterate() as IterableIterator<[number, number, number, number, number]>;
      for (const [topicId, nextOffset, appendedBytes, lastPosition, lastIngestMs] of stats) {
        const topic = this.topicsById.get(topicId);
        if (topic === undefined) continue;
        topic.nextOffset = Math.max(topic.nextOffset, nextOffset);
        topic.appendedBytes = appendedBytes;
        topic.lastPosition = lastPosition;
        topic.lastAppendMs = lastIngestMs;
      }
      for (const stream of this.streams.values()) {
        const tail = this.db
          .prepare(
            `SELECT topic_id, max(topic_offset) AS last_offset, sum(length(payload)) AS bytes,
                    max(position) AS last_position, max(ingest_time_ms) AS last_ingest_ms
             FROM ${recordsTable(stream.id)} WHERE position > ? GROUP BY topic_id`,
          )
          .all(progress.get(stream.id) ?? 0) as {
          topic_id: number;
          last_offset: number;
          bytes: number;
          last_position: number;
          last_ingest_ms: number;
        }[];
        for (const row of tail) {
          const topic = this.topicsById.get(row.topic_id);
          if (topic === undefined) continue;
          topic.nextOffset = Math.max(topic.nextOffset, row.last_offset + 1);
          topic.appendedBytes += row.bytes;
          topic.lastPosition = Math.max(topic.lastPosition, row.last_position);
          topic.lastAppendMs = Math.max(topic.lastAppendMs, row.last_ingest_ms);
        }
      }
    } finally {
      index.close();
    }
    for (const topic of this.topicsById.values()) {
      topic.stream.liveBytes += Math.max(0, topic.appendedBytes - topic.droppedBytes);
    }
  }

  private startWorker(): void {
    const worker = new Worker(workerScript('indexer-worker'), {
      workerData: {
        recordsPath: this.path,
        indexPath: this.indexPath,
        durability: 'unsynced',
        threadNice: this.options.indexerNice ?? DEFAULT_INDEXER_NICE,
      } satisfies IndexerWorkerData,
    });
    worker.unref();
    worker.on('message', (message: IndexerReply) => {
      if (message.type === 'error') this.options.logger?.warn({ err: message.message }, 'topic indexer failed a pass; retrying');
      if (message.type === 'priority') {
        this.indexerNice = message.nice;
        if (message.problem !== undefined) {
          this.options.logger?.warn({ nice: message.nice, problem: message.problem }, 'topic indexer thread left at its priority; it competes with the gateway for the CPU');
        }
      }
    });
    worker.on('error', (error) => {
      this.options.logger?.error({ err: error.message }, 'topic indexer thread died; restarting it');
      if (!this.closed) setTimeout(() => !this.closed && this.startWorker(), 1000).unref();
    });
    this.worker = worker;
  }

  private startCheckpointer(): void {
    const checkpointer = new Worker(workerScript('checkpointer-worker'), {
      workerData: { recordsPath: this.path } satisfies CheckpointerWorkerData,
    });
    checkpointer.unref();
    checkpointer.on('message', (message: CheckpointerReply) => {
      if (message.type === 'error') this.options.logger?.warn({ err: message.message }, 'WAL checkpoint failed; retrying');
    });
    checkpointer.on('error', (error) => {
      this.options.logger?.error({ err: error.message }, 'WAL checkpointer thread died; restarting it');
      if (!this.closed) setTimeout(() => !this.closed && this.startCheckpointer(), 1000).unref();
    });
    this.checkpointer = checkpointer;
  }

  /**
   * Wakes the indexer thread once enough records have been committed since the last wake-up,
   * or a moment after the first of them. Indexing a few thousand records at a time over
   * 100,000 topics rewrote an index page per record and took the second core from the
   * appends; in batches of INDEXER_WAKE_RECORDS each page is written once per batch.
   */
  private pokeIndexer(committedRecords: number): void {
    if (this.worker === undefined) return;
    this.unindexedRecords += committedRecords;
    if (this.unindexedRecords >= INDEXER_WAKE_RECORDS) {
      if (this.indexerTimer !== undefined) clearTimeout(this.indexerTimer);
      this.indexerTimer = undefined;
      this.wakeIndexer();
    } else if (this.indexerTimer === undefined) {
      this.indexerTimer = setTimeout(() => {
        this.indexerTimer = undefined;
        this.wakeIndexer();
      }, INDEXER_WAKE_MS);
      this.indexerTimer.unref();
    }
  }

  private wakeIndexer(): void {
    this.unindexedRecords = 0;
    if (this.indexerPoked) return;
    this.indexerPoked = true;
    // One poke per turn is enough: the worker indexes everything committed when it runs.
    setImmediate(() => {
      this.indexerPoked = false;
      this.worker?.postMessage({ type: 'poke' });
    });
  }

  /** Builds the topic index now, on this thread (inline mode, tools and tests). */
  indexNow(): number {
    const indexer = this.inlineIndexer ?? new TopicIndexer({ recordsPath: this.path, indexPath: this.indexPath });
    try {
      let total = 0;
      for (let indexed = indexer.runOnce(); indexed > 0; indexed = indexer.runOnce()) total += indexed;
      indexer.reconcileRetention();
      return total;
    } finally {
      if (indexer !== this.inlineIndexer) indexer.close();
    }
  }

  // ----- writing -------------------------------------------------------------------------

  append(records: readonly NewRecord[]): Promise<LogRecord[]> {
    // The executor is one function made once, handed the records through a field (a Promise
    // runs its executor synchronously), so a call allocates no closure of its own.
    this.executorRecords = records;
    return new Promise<LogRecord[]>(this.appendExecutor);
  }

  private executorRecords: readonly NewRecord[] = [];
  private readonly appendExecutor = (resolve: (result: LogRecord[]) => void, reject: (error: unknown) => void): void => {
    const records = this.executorRecords;
    this.executorRecords = [];
    this.enqueue(new PendingWrite('append', records, resolve, reject));
  };

  replicate(records: readonly LogRecord[], context?: ReplicateContext): Promise<ReplicateResult> {
    const kind = context?.sparse === true ? 'sparse' : 'replicate';
    return new Promise((resolve, reject) => this.enqueue(new PendingWrite(kind, records, resolve, reject)));
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

    // One set of changes for the whole flush: a write is either valid and applied in full,
    // or refused before it touches anything (replicate validates first), so only a failed
    // commit has anything to undo, and then it undoes everything. No savepoints: they cost
    // two statements per caller, which dominated single-record appends.
    this.flushStamp += 1;
    const changes = new FlushChanges(this.flushStamp);
    const nowMs = Date.now();
    const startedAt = performance.now();
    this.flushTailRowsRead = 0;
    let written = 0;
    try {
      this.db.exec('BEGIN IMMEDIATE');
      for (let w = 0; w < writes.length; w += 1) {
        const write = writes[w]!;
        if (write.kind === 'append') {
          const stored = this.applyAppend(write.records as readonly NewRecord[], nowMs, changes);
          written += stored.length;
          write.result = stored;
        } else if (write.kind === 'sparse') {
          let result: ReplicateResult;
          try {
            result = this.applySparse(write.records as readonly LogRecord[], changes);
          } catch (error) {
            if (!(error instanceof TopicForkError)) throw error;
            write.refusal = error;
            continue;
          }
          written += result.stored;
          write.result = result;
        } else {
          const records = write.records as readonly LogRecord[];
          try {
            this.validateReplicate(records);
          } catch (error) {
            write.refusal = error ?? new Error('refused');
            continue;
          }
          const result = this.applyReplicate(records, changes);
          written += result.stored;
          write.result = result;
        }
      }
      for (const stream of changes.streams) {
        this.insertBuffered(stream);
        if (nowMs - stream.lastMarkMs >= TIME_MARK_INTERVAL_MS) {
          this.sql.insertMark.run(stream.id, stream.nextPosition - 1, nowMs);
          stream.lastMarkMs = nowMs;
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
      this.restore(changes);
      const code = (error as { code?: string }).code ?? 'UNKNOWN';
      this.metrics.appendFailures.inc({ code });
      const failure = isStorageFailure(error)
        ? new StoreUnavailableError(`log write failed (${code}): ${(error as Error).message}`, error)
        : error;
      this.options.logger?.warn({ code, err: (error as Error).message, callers: writes.length }, 'log commit failed; callers not acknowledged');
      for (const write of writes) write.reject(failure);
      this.noteSlowFlush(startedAt, writes, 0);
      if (code === 'SQLITE_FULL') void this.runRetention().catch(() => undefined);
      return;
    }
    this.noteSlowFlush(startedAt, writes, written);
    for (let w = 0; w < writes.length; w += 1) {
      const write = writes[w]!;
      if (write.refusal !== undefined) write.reject(write.refusal);
      else (write.resolve as (result: unknown) => void)(write.result);
    }
    this.pokeIndexer(written);
    for (const stream of changes.streams) {
      for (const listener of this.listeners) listener(stream.name);
    }
  }

  private noteSlowFlush(startedAt: number, writes: readonly PendingWrite[], written: number): void {
    const tookMs = performance.now() - startedAt;
    if (tookMs < (this.options.slowCommitMs ?? DEFAULT_SLOW_COMMIT_MS)) return;
    const kinds: Record<string, number> = {};
    let offered = 0;
    for (const write of writes) {
      kinds[write.kind] = (kinds[write.kind] ?? 0) + 1;
      offered += write.records.length;
    }
    this.options.logger?.warn(
      { tookMs: Math.round(tookMs), callers: kinds, recordsOffered: offered, recordsWritten: written, unindexedRowsRead: this.flushTailRowsRead },
      'slow group commit: the event loop was held this long',
    );
  }

  /**
   * Checks a replicated batch against the topics as they stand (including earlier writes of
   * this flush) without changing anything: throws the first gap or fork.
   */
  private validateReplicate(records: readonly LogRecord[]): void {
    const expected = new Map<string, number>();
    // Duplicates whose held origin is not known in memory, looked up together (in batch
    // order) before the first gap is reported and at the end, so the first problem is thrown.
    const lookups = new Map<TopicState, number[]>();
    const looked: LogRecord[] = [];
    for (const record of records) {
      const key = topicKey(record.stream, record.topic);
      const topic = this.topicState(record.stream, record.topic);
      const next = expected.get(key) ?? topic?.nextOffset ?? 0;
      if (record.offset < next) {
        // Below what retention kept: it was accepted once, so the copy is a duplicate.
        if (topic !== undefined && record.offset < topic.nextOffset && record.offset >= topic.firstOffset) {
          if (!topic.sparse && topic.tailOriginId !== 0 && record.offset >= topic.tailOriginFrom) {
            if (this.siteIds.get(record.origin) !== topic.tailOriginId) {
              this.checkHeldOrigins(lookups, looked);
              throw new TopicForkError(record.stream, record.topic, record.offset, this.siteNames.get(topic.tailOriginId)!, record.origin);
            }
          } else {
            let offsets = lookups.get(topic);
            if (offsets === undefined) lookups.set(topic, (offsets = []));
            offsets.push(record.offset);
            looked.push(record);
          }
        }
        continue;
      }
      if (record.offset > next) {
        this.checkHeldOrigins(lookups, looked);
        throw new OffsetGapError(record.stream, record.topic, next, record.offset);
      }
      expected.set(key, next + 1);
    }
    this.checkHeldOrigins(lookups, looked);
  }

  /** Throws a fork for the first of these duplicates held with another origin. */
  private checkHeldOrigins(lookups: ReadonlyMap<TopicState, readonly number[]>, looked: readonly LogRecord[]): void {
    if (looked.length === 0) return;
    const held = this.heldOriginsOf(lookups);
    for (const record of looked) {
      const originId = held.get(this.topicState(record.stream, record.topic)!)?.get(record.offset);
      if (originId !== undefined && this.siteIds.get(record.origin) !== originId) {
        throw new TopicForkError(record.stream, record.topic, record.offset, this.siteNames.get(originId) ?? this.readSiteName(originId), record.origin);
      }
    }
  }

  /** Puts the in-memory caches back to what the file holds after a rollback. */
  private restore(changes: FlushChanges): void {
    for (const topic of changes.sparsified) topic.sparse = false;
    for (const state of changes.topics) {
      state.nextOffset = state.savedNextOffset;
      state.appendedBytes = state.savedAppendedBytes;
      state.lastPosition = state.savedLastPosition;
      state.lastAppendMs = state.savedLastAppendMs;
      state.tailOriginId = state.savedTailOriginId;
      state.tailOriginFrom = state.savedTailOriginFrom;
    }
    for (const state of changes.streams) {
      state.nextPosition = state.savedNextPosition;
      state.liveBytes = state.savedLiveBytes;
      state.lastMarkMs = state.savedLastMarkMs;
      state.rowCount = 0;
    }
    if (changes.createdTopics.length > 0) {
      const created = new Set(changes.createdTopics);
      for (const stream of new Set(changes.createdTopics.map((topic) => topic.stream))) stream.topics.remove(created);
      for (const topic of changes.createdTopics) this.topicsById.delete(topic.id);
    }
    this.lastStream = undefined;
    for (const stream of changes.createdStreams) {
      this.streams.delete(stream.name);
      this.streamsById.delete(stream.id);
    }
    for (const name of changes.createdSites) {
      const id = this.siteIds.get(name);
      this.siteIds.delete(name);
      if (id !== undefined) this.siteNames.delete(id);
    }
  }

  private siteIdOf(name: string, changes: FlushChanges): number {
    let id = this.siteIds.get(name);
    if (id === undefined) {
      id = Number(this.sql.insertSite.run(name).lastInsertRowid);
      this.siteIds.set(name, id);
      this.siteNames.set(id, name);
      changes.createdSites.push(name);
    }
    return id;
  }

  private topicState(stream: string, topic: string): TopicState | undefined {
    return this.streams.get(stream)?.topics.get(topic);
  }

  /** The topic's state, created (with its stream) on first sight; saved for a rollback on the flush's first touch. */
  private topicOf(streamName: string, name: string, changes: FlushChanges): TopicState {
    let stream = this.lastStream?.name === streamName ? this.lastStream : this.streams.get(streamName);
    if (stream === undefined) {
      const streamId = Number(this.sql.insertStream.run(streamName).lastInsertRowid);
      stream = this.streamState(streamId, streamName);
      this.streams.set(streamName, stream);
      this.streamsById.set(streamId, stream);
      changes.createdStreams.push(stream);
    }
    this.lastStream = stream;
    let state = stream.topics.get(name);
    if (state === undefined) {
      const id = Number(this.sql.insertTopic.run(stream.id, name).lastInsertRowid);
      state = newTopicState(id, stream, name, 0, 0);
      stream.topics.add(state);
      this.topicsById.set(id, state);
      changes.createdTopics.push(state);
    }
    if (state.stamp !== changes.stamp) {
      state.stamp = changes.stamp;
      state.savedNextOffset = state.nextOffset;
      state.savedAppendedBytes = state.appendedBytes;
      state.savedLastPosition = state.lastPosition;
      state.savedLastAppendMs = state.lastAppendMs;
      state.savedTailOriginId = state.tailOriginId;
      state.savedTailOriginFrom = state.tailOriginFrom;
      changes.topics.push(state);
      if (stream.stamp !== changes.stamp) {
        stream.stamp = changes.stamp;
        stream.savedNextPosition = stream.nextPosition;
        stream.savedLiveBytes = stream.liveBytes;
        stream.savedLastMarkMs = stream.lastMarkMs;
        changes.streams.push(stream);
      }
    }
    return state;
  }

  /**
   * Queues one row of the current flush; rows go to SQLite ROWS_PER_INSERT at a time, the
   * rest by `insertBuffered` before the commit.
   */
  private insert(
    topic: TopicState,
    offset: number,
    originId: number,
    eventTimeMs: number,
    ingestTimeMs: number,
    headers: RecordHeaders | undefined,
    payload: Uint8Array,
  ): void {
    const stream = topic.stream;
    const position = stream.nextPosition;
    let headersText: string | null = null;
    if (headers !== undefined && headers !== NO_HEADERS) {
      // A frozen headers object cannot change, so its text is made once: the gateway shares
      // one frozen object per MQTT topic across all of that topic's records.
      if (Object.isFrozen(headers)) {
        const cached = this.frozenHeadersText.get(headers);
        if (cached !== undefined) headersText = cached;
        else {
          headersText = headersJson(headers);
          this.frozenHeadersText.set(headers, headersText);
        }
      } else headersText = headersJson(headers);
    }
    const rows = stream.rows;
    const at = stream.rowCount * COLUMNS;
    rows[at] = position;
    rows[at + 1] = topic.id;
    rows[at + 2] = offset;
    rows[at + 3] = originId;
    rows[at + 4] = eventTimeMs;
    rows[at + 5] = ingestTimeMs;
    rows[at + 6] = headersText;
    rows[at + 7] = payload;
    stream.rowCount += 1;
    if (stream.rowCount === ROWS_PER_INSERT) {
      stream.rowCount = 0;
      stream.insertMany.run(rows);
    }
    stream.nextPosition = position + 1;
    stream.liveBytes += payload.byteLength;
    // Only a sparse topic's late record (custody widened) lands below the next offset: the
    // topic's end and its last record stay where they are.
    if (offset >= topic.nextOffset) {
      if (offset !== topic.nextOffset || originId !== topic.tailOriginId) {
        topic.tailOriginId = originId;
        topic.tailOriginFrom = offset;
      }
      topic.nextOffset = offset + 1;
      topic.lastPosition = position;
    } else if (offset >= topic.tailOriginFrom && originId !== topic.tailOriginId) {
      // A sparse topic's late record inside the run, from elsewhere: the run no longer holds.
      topic.tailOriginId = 0;
    }
    topic.appendedBytes += payload.byteLength;
    topic.lastAppendMs = ingestTimeMs;
  }

  /** Inserts the rows `insert` still holds for a stream (fewer than ROWS_PER_INSERT). */
  private insertBuffered(stream: StreamState): void {
    const rows = stream.rows;
    const count = stream.rowCount;
    stream.rowCount = 0;
    for (let row = 0; row < count; row += 1) {
      const at = row * COLUMNS;
      stream.insert.run(rows[at], rows[at + 1], rows[at + 2], rows[at + 3], rows[at + 4], rows[at + 5], rows[at + 6], rows[at + 7]);
    }
    // Drop the references to this flush's payloads.
    rows.fill(null);
  }

  private applyAppend(records: readonly NewRecord[], ingestTimeMs: number, changes: FlushChanges): LogRecord[] {
    const originId = this.siteIdOf(this.siteId, changes);
    const origin = this.siteId;
    const stored: LogRecord[] = new Array(records.length);
    for (let i = 0; i < records.length; i += 1) {
      const newRecord = records[i]!;
      const topic = this.topicOf(newRecord.stream, newRecord.topic, changes);
      const offset = topic.nextOffset;
      const eventTimeMs = newRecord.eventTimeMs ?? ingestTimeMs;
      const headers = newRecord.headers ?? NO_HEADERS;
      this.insert(topic, offset, originId, eventTimeMs, ingestTimeMs, headers, newRecord.payload);
      stored[i] = {
        origin,
        stream: newRecord.stream,
        topic: newRecord.topic,
        offset,
        eventTimeMs,
        ingestTimeMs,
        headers,
        payload: newRecord.payload,
      };
    }
    return stored;
  }

  /** Stores a batch `validateReplicate` accepted: new records inserted, the rest counted. */
  private applyReplicate(records: readonly LogRecord[], changes: FlushChanges): ReplicateResult {
    let stored = 0;
    let duplicates = 0;
    const touched = new Set<TopicState>();
    for (const record of records) {
      const topic = this.topicOf(record.stream, record.topic, changes);
      touched.add(topic);
      if (record.offset < topic.nextOffset) {
        duplicates += 1;
        continue;
      }
      const originId = this.siteIdOf(record.origin, changes);
      this.insert(topic, record.offset, originId, record.eventTimeMs, record.ingestTimeMs, record.headers, record.payload);
      stored += 1;
    }
    const highWater: TopicHighWater[] = [];
    for (const topic of touched) highWater.push({ stream: topic.stream.name, topic: topic.name, nextOffset: topic.nextOffset });
    return { stored, duplicates, highWater };
  }

  /**
   * A sparse sender's batch: each identity not held yet is stored wherever it falls, each one
   * held is dropped (a different origin there is a fork: the whole batch is refused before
   * anything of it is written). Offsets at or past a topic's next offset cannot be held, so
   * live records cost no lookup; one below it is looked up (`heldOrigins`).
   */
  private applySparse(records: readonly LogRecord[], changes: FlushChanges): ReplicateResult {
    const insert: boolean[] = new Array<boolean>(records.length).fill(false);
    const seen = new Map<string, Set<number>>();
    const lookups = new Map<TopicState, number[]>();
    const looked: number[] = [];
    for (let i = 0; i < records.length; i += 1) {
      const record = records[i]!;
      const key = topicKey(record.stream, record.topic);
      let offsets = seen.get(key);
      if (offsets === undefined) seen.set(key, (offsets = new Set()));
      if (offsets.has(record.offset)) continue; // twice in one batch: the first counts
      offsets.add(record.offset);
      const topic = this.topicState(record.stream, record.topic);
      if (topic === undefined || record.offset >= topic.nextOffset) {
        insert[i] = true;
        continue;
      }
      // Below what retention kept: it was held once (or expired unseen); never stored again.
      if (record.offset < topic.firstOffset) continue;
      let wanted = lookups.get(topic);
      if (wanted === undefined) lookups.set(topic, (wanted = []));
      wanted.push(record.offset);
      looked.push(i);
    }
    const held = this.heldOriginsOf(lookups);
    for (const i of looked) {
      const record = records[i]!;
      const originId = held.get(this.topicState(record.stream, record.topic)!)?.get(record.offset);
      if (originId === undefined) {
        insert[i] = true;
        continue;
      }
      if (this.siteIds.get(record.origin) !== originId) {
        throw new TopicForkError(record.stream, record.topic, record.offset, this.siteNames.get(originId) ?? this.readSiteName(originId), record.origin);
      }
    }
    let stored = 0;
    let duplicates = 0;
    const touched = new Set<TopicState>();
    for (let i = 0; i < records.length; i += 1) {
      const record = records[i]!;
      const topic = this.topicOf(record.stream, record.topic, changes);
      touched.add(topic);
      if (!insert[i]) {
        duplicates += 1;
        continue;
      }
      if (!topic.sparse) {
        topic.sparse = true;
        this.sql.markSparse.run(topic.id);
        changes.sparsified.push(topic);
      }
      this.insert(topic, record.offset, this.siteIdOf(record.origin, changes), record.eventTimeMs, record.ingestTimeMs, record.headers, record.payload);
      stored += 1;
    }
    const highWater: TopicHighWater[] = [];
    for (const topic of touched) highWater.push({ stream: topic.stream.name, topic: topic.name, nextOffset: topic.nextOffset });
    return { stored, duplicates, highWater };
  }

  /** `heldOrigins` for topics of any streams: one pass per stream. */
  private heldOriginsOf(lookups: ReadonlyMap<TopicState, readonly number[]>): Map<TopicState, Map<number, number>> {
    const byStream = new Map<StreamState, Map<TopicState, readonly number[]>>();
    for (const [topic, offsets] of lookups) {
      let topics = byStream.get(topic.stream);
      if (topics === undefined) byStream.set(topic.stream, (topics = new Map()));
      topics.set(topic, offsets);
    }
    const held = new Map<TopicState, Map<number, number>>();
    for (const [stream, topics] of byStream) for (const [topic, found] of this.heldOrigins(stream, topics)) held.set(topic, found);
    return held;
  }

  /**
   * Which of these offsets (each below its topic's next offset) the log holds, and their
   * origin ids: the index (committed, through the reader), then everything past the indexed
   * position through the writer connection, which sees this flush's rows once the buffered
   * ones are inserted. One scan of that tail per stream and batch, whatever the topics.
   */
  private heldOrigins(stream: StreamState, wanted: ReadonlyMap<TopicState, readonly number[]>): Map<TopicState, Map<number, number>> {
    const streamId = stream.id;
    if (stream.rowCount > 0) this.insertBuffered(stream);
    const found = new Map<TopicState, Map<number, number>>();
    for (const topic of wanted.keys()) found.set(topic, new Map());
    let indexedPosition = 0;
    if (this.indexExists(streamId)) {
      this.reader.exec('BEGIN');
      try {
        indexedPosition = this.indexedPosition(streamId);
        const lookup = this.readerStatement(
          `ixo:${streamId}`,
          () => `SELECT r.origin_id FROM ix.${indexTable(streamId)} i JOIN main.${recordsTable(streamId)} r ON r.position = i.position
                 WHERE i.topic_id = ? AND i.topic_offset = ?`,
        );
        for (const [topic, offsets] of wanted) {
          for (const offset of offsets) {
            const origin = lookup.pluck().get(topic.id, offset) as number | undefined;
            if (origin !== undefined) found.get(topic)!.set(offset, origin);
          }
        }
      } finally {
        this.reader.exec('COMMIT');
      }
    }
    const byId = new Map<number, { topic: TopicState; offsets: Set<number> }>();
    for (const [topic, offsets] of wanted) byId.set(topic.id, { topic, offsets: new Set(offsets) });
    const tail = this.db
      .prepare(`SELECT topic_id, topic_offset, origin_id FROM ${recordsTable(streamId)} WHERE position > ?`)
      .raw()
      .iterate(indexedPosition) as IterableIterator<[number, number, number]>;
    for (const [topicId, offset, origin] of tail) {
      this.flushTailRowsRead += 1;
      const entry = byId.get(topicId);
      if (entry !== undefined && entry.offsets.has(offset)) found.get(entry.topic)!.set(offset, origin);
    }
    return found;
  }

  // ----- reading -------------------------------------------------------------------------

  private toRecord(row: RecordRow, stream: string): LogRecord {
    return {
      origin: this.siteNames.get(row.origin_id) ?? this.readSiteName(row.origin_id),
      stream,
      topic: this.topicsById.get(row.topic_id)?.name ?? this.readTopicName(row.topic_id),
      offset: row.topic_offset,
      eventTimeMs: row.event_time_ms,
      ingestTimeMs: row.ingest_time_ms,
      headers: row.headers === null ? {} : (JSON.parse(row.headers) as Record<string, string>),
      payload: row.payload,
    };
  }

  /**
   * The name of a topic another process created after this one opened the file (a reader
   * such as `portcall log tail` beside a running site); a writer knows all of its topics.
   */
  private readTopicName(id: number): string {
    let name = this.otherTopicNames.get(id);
    if (name === undefined) {
      name = this.db.prepare(`SELECT name FROM topics WHERE id = ?`).pluck().get(id) as string | undefined;
      if (name === undefined) return `#${id}`;
      this.otherTopicNames.set(id, name);
    }
    return name;
  }

  private readSiteName(id: number): string {
    const name = this.db.prepare(`SELECT name FROM sites WHERE id = ?`).pluck().get(id) as string | undefined;
    if (name !== undefined) {
      this.siteNames.set(id, name);
      this.siteIds.set(name, id);
    }
    return name ?? `#${id}`;
  }

  private readerStatement(key: string, sql: () => string): Statement {
    let statement = this.readerStatements.get(key);
    if (statement === undefined) {
      statement = this.reader.prepare(sql());
      this.readerStatements.set(key, statement);
    }
    return statement;
  }

  /**
   * Whether the indexer has made the stream's index table yet. Once it has, the table stays
   * for the life of this log (the index file is only ever discarded while opening), so a yes
   * is remembered: asking cost a statement prepared per read, a fifth of a one-record
   * `readTopic` at 10 M records, which the portal makes hundreds of per page.
   */
  private indexExists(streamId: number): boolean {
    if (this.indexedStreams.has(streamId)) return true;
    const exists =
      this.readerStatement('index-exists', () => `SELECT 1 FROM ix.sqlite_master WHERE type = 'table' AND name = ?`).get(indexTable(streamId)) !==
      undefined;
    if (exists) this.indexedStreams.add(streamId);
    return exists;
  }

  /** One consistent snapshot: indexed records first, then the unindexed tail. */
  private readTopicRows(topic: TopicState, fromOffset: number, maxRecords: number, maxBytes: number): RecordRow[] {
    // Records written in this process but not yet visible to the reader connection cannot
    // exist: commits are synchronous and the reader starts its snapshot after them.
    const streamId = topic.stream.id;
    const rows: RecordRow[] = [];
    let bytes = 0;
    const take = (row: RecordRow): boolean => {
      if (rows.length > 0 && bytes + row.payload.length > maxBytes) return false;
      rows.push(row);
      bytes += row.payload.length;
      return rows.length < maxRecords;
    };
    const start = Math.max(fromOffset, topic.firstOffset);
    if (start >= topic.nextOffset) return rows;
    // Fast path: the topic's last record, by its known position.
    if (start === topic.nextOffset - 1 && topic.lastPosition > 0) {
      const row = this.readerStatement(`at:${streamId}`, () => `SELECT * FROM main.${recordsTable(streamId)} WHERE position = ?`).get(
        topic.lastPosition,
      ) as RecordRow | undefined;
      if (row !== undefined && row.topic_offset === start) return [row];
    }
    if (topic.sparse) {
      this.readSparseTopicRows(topic, start, maxRecords, take);
      return rows;
    }
    const hasIndex = this.indexExists(streamId);
    this.reader.exec('BEGIN');
    try {
      let indexedPosition = 0;
      let lastOffset = start - 1;
      let more = true;
      if (hasIndex) {
        indexedPosition = this.indexedPosition(streamId);
        const indexed = this.readerStatement(
          `ix:${streamId}`,
          () => `SELECT r.* FROM ix.${indexTable(streamId)} i JOIN main.${recordsTable(streamId)} r ON r.position = i.position
                 WHERE i.topic_id = ? AND i.topic_offset >= ? ORDER BY i.topic_offset LIMIT ?`,
        );
        for (const row of indexed.iterate(topic.id, start, maxRecords) as IterableIterator<RecordRow>) {
          if (row.topic_id !== topic.id) continue;
          if (!(more = take(row))) break;
          lastOffset = row.topic_offset;
        }
        if (rows.length > 0 && bytes >= maxBytes) more = false;
      }
      if (more && lastOffset + 1 < topic.nextOffset) {
        const tail = this.readerStatement(
          `tail:${streamId}`,
          () => `SELECT * FROM main.${recordsTable(streamId)} WHERE position > ? AND topic_id = ? AND topic_offset > ?
                 ORDER BY position LIMIT ?`,
        );
        for (const row of tail.iterate(indexedPosition, topic.id, lastOffset, maxRecords - rows.length) as IterableIterator<RecordRow>) {
          if (!take(row)) break;
        }
      }
    } finally {
      this.reader.exec('COMMIT');
    }
    return rows;
  }

  /**
   * A sparse topic's records from `start` in offset order: a late record (custody widened)
   * may sit in the unindexed tail below offsets already indexed, so both are read from
   * `start` and merged instead of the tail continuing after the index.
   */
  private readSparseTopicRows(topic: TopicState, start: number, maxRecords: number, take: (row: RecordRow) => boolean): void {
    const streamId = topic.stream.id;
    const candidates: RecordRow[] = [];
    const hasIndex = this.indexExists(streamId);
    this.reader.exec('BEGIN');
    try {
      let indexedPosition = 0;
      if (hasIndex) {
        indexedPosition = this.indexedPosition(streamId);
        const indexed = this.readerStatement(
          `ix:${streamId}`,
          () => `SELECT r.* FROM ix.${indexTable(streamId)} i JOIN main.${recordsTable(streamId)} r ON r.position = i.position
                 WHERE i.topic_id = ? AND i.topic_offset >= ? ORDER BY i.topic_offset LIMIT ?`,
        );
        for (const row of indexed.iterate(topic.id, start, maxRecords) as IterableIterator<RecordRow>) if (row.topic_id === topic.id) candidates.push(row);
      }
      const tail = this.readerStatement(
        `stail:${streamId}`,
        () => `SELECT * FROM main.${recordsTable(streamId)} WHERE position > ? AND topic_id = ? AND topic_offset >= ?
               ORDER BY topic_offset LIMIT ?`,
      );
      for (const row of tail.iterate(indexedPosition, topic.id, start, maxRecords) as IterableIterator<RecordRow>) candidates.push(row);
    } finally {
      this.reader.exec('COMMIT');
    }
    candidates.sort((a, b) => a.topic_offset - b.topic_offset);
    for (const row of candidates) if (!take(row)) break;
  }

  /**
   * Records a topic holds. A dense topic holds every offset from its first to its next; a
   * sparse one (a filtered feed's) skips offsets, so its records are counted: the index
   * from the first offset on, plus the unindexed tail, in one snapshot.
   */
  private recordCount(topic: TopicState): number {
    if (!topic.sparse) return topic.nextOffset - topic.firstOffset;
    const streamId = topic.stream.id;
    const hasIndex = this.indexExists(streamId);
    this.reader.exec('BEGIN');
    try {
      const indexedPosition = this.indexedPosition(streamId);
      const indexed = hasIndex
        ? (this.readerStatement(`ixcount:${streamId}`, () => `SELECT count(*) FROM ix.${indexTable(streamId)} WHERE topic_id = ? AND topic_offset >= ?`)
            .pluck()
            .get(topic.id, topic.firstOffset) as number)
        : 0;
      const tail = this.readerStatement(`tailcount:${streamId}`, () => `SELECT count(*) FROM main.${recordsTable(streamId)} WHERE position > ? AND topic_id = ?`)
        .pluck()
        .get(indexedPosition, topic.id) as number;
      return indexed + tail;
    } finally {
      this.reader.exec('COMMIT');
    }
  }

  async readTopic(stream: string, topic: string, fromOffset: number, limits?: ReadLimits): Promise<LogRecord[]> {
    this.assertOpen();
    const state = this.topicState(stream, topic);
    if (state === undefined) return [];
    const rows = this.readTopicRows(state, fromOffset, limits?.maxRecords ?? DEFAULT_MAX_RECORDS, limits?.maxBytes ?? DEFAULT_MAX_BYTES);
    return rows.map((row) => this.toRecord(row, stream));
  }

  async latest(stream: string, topic: string): Promise<LogRecord | undefined> {
    const state = this.topicState(stream, topic);
    if (state === undefined || state.nextOffset === state.firstOffset) return undefined;
    const [record] = await this.readTopic(stream, topic, state.nextOffset - 1, { maxRecords: 1 });
    return record;
  }

  async highWater(stream: string, topic: string): Promise<number> {
    return this.topicState(stream, topic)?.nextOffset ?? 0;
  }

  async readStream(stream: string, afterPosition: number, limits?: ReadLimits): Promise<StreamPage> {
    this.assertOpen();
    const state = this.streams.get(stream);
    if (state === undefined) return { records: [], nextPosition: afterPosition };
    const maxRecords = limits?.maxRecords ?? DEFAULT_MAX_RECORDS;
    const maxBytes = limits?.maxBytes ?? DEFAULT_MAX_BYTES;
    const statement = this.readerStatement(
      `scan:${state.id}`,
      () => `SELECT * FROM main.${recordsTable(state.id)} WHERE position > ? ORDER BY position LIMIT ?`,
    );
    const records: LogRecord[] = [];
    let bytes = 0;
    let nextPosition = afterPosition;
    for (const row of statement.iterate(afterPosition, maxRecords) as IterableIterator<RecordRow>) {
      // Always return at least one record, so one larger than maxBytes cannot stall a reader.
      if (records.length > 0 && bytes + row.payload.length > maxBytes) break;
      records.push(this.toRecord(row, stream));
      bytes += row.payload.length;
      nextPosition = row.position;
    }
    return { records, nextPosition };
  }

  /** Resolves true as soon as the stream holds a record after `afterPosition`, false on timeout. */
  waitForRecords(stream: string, afterPosition: number, timeoutMs: number): Promise<boolean> {
    const has = () => (this.streams.get(stream)?.nextPosition ?? 1) - 1 > afterPosition;
    if (has()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const unsubscribe = this.onDurable((name) => {
        if (name === stream && has()) {
          clearTimeout(timer);
          unsubscribe();
          resolve(true);
        }
      });
      const timer = setTimeout(() => {
        unsubscribe();
        resolve(false);
      }, timeoutMs);
    });
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
    // A single-row upsert; under synchronous=FULL it is durable on return.
    try {
      this.sql.putCursor.run(name, position);
    } catch (error) {
      if (isStorageFailure(error)) {
        throw new StoreUnavailableError(`cursor ${name} not committed: ${(error as Error).message}`, error);
      }
      throw error;
    }
  }

  // ----- stats ---------------------------------------------------------------------------

  listStreams(): string[] {
    return [...this.streams.keys()].sort();
  }

  /** Every topic of a stream (or of all) with its next offset. */
  listTopics(stream?: string): TopicHighWater[] {
    const result: TopicHighWater[] = [];
    for (const streamState of this.streams.values()) {
      if (stream !== undefined && streamState.name !== stream) continue;
      for (const state of streamState.topics.values()) {
        result.push({ stream: streamState.name, topic: state.name, nextOffset: state.nextOffset });
      }
    }
    return result;
  }

  topicStats(stream: string, topic: string): TopicStats | undefined {
    const state = this.topicState(stream, topic);
    if (state === undefined) return undefined;
    return {
      stream,
      topic,
      firstOffset: state.firstOffset,
      nextOffset: state.nextOffset,
      count: this.recordCount(state),
      bytes: Math.max(0, state.appendedBytes - state.droppedBytes),
      lastAppendMs: state.nextOffset > 0 ? state.lastAppendMs : undefined,
    };
  }

  streamStats(stream: string): { topics: number; records: number; bytes: number; lastPosition: number } | undefined {
    const state = this.streams.get(stream);
    if (state === undefined) return undefined;
    let topics = 0;
    let records = 0;
    for (const topic of state.topics.values()) {
      topics += 1;
      records += this.recordCount(topic);
    }
    return { topics, records, bytes: state.liveBytes, lastPosition: state.nextPosition - 1 };
  }

  /** Bytes of the records file in use: pages minus free pages. */
  usedBytes(): number {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return (pages - free) * pageSize;
  }

  // ----- retention -----------------------------------------------------------------------

  private cursorPosition(name: string): number {
    return (this.sql.getCursor.get(name) as number | undefined) ?? 0;
  }

  private underPressure(): boolean {
    if (this.options.maxLogBytes !== undefined && this.usedBytes() > this.options.maxLogBytes) return true;
    if (this.options.minFreeDiskBytes !== undefined) {
      try {
        const fs = statfsSync(dirname(this.path));
        const freeBytes = fs.bavail * fs.bsize;
        const reusable = (this.db.pragma('freelist_count', { simple: true }) as number) * (this.db.pragma('page_size', { simple: true }) as number);
        // Free pages inside the file are space appends can use without the disk.
        if (freeBytes + reusable < this.options.minFreeDiskBytes) return true;
      } catch {
        return false;
      }
    }
    return false;
  }

  /** Highest position of the stream the topic index holds. */
  private indexedPosition(streamId: number): number {
    if (!this.indexExists(streamId)) return 0;
    return (
      (this.readerStatement('progress', () => `SELECT indexed_position FROM ix.progress WHERE stream_id = ?`)
        .pluck()
        .get(streamId) as number | undefined) ?? 0
    );
  }

  /** The position below which TTL and size policy allow deleting, or 0. */
  private policyBoundary(stream: StreamState, nowMs: number): { below: number; reason: 'ttl' | 'size' } | undefined {
    const policy = this.policies[stream.name];
    if (policy === undefined) return undefined;
    let ttlBelow = 0;
    if (policy.ttlMs !== undefined) {
      const mark = this.db
        .prepare(`SELECT max(position) FROM time_marks WHERE stream_id = ? AND at_ms <= ?`)
        .pluck()
        .get(stream.id, nowMs - policy.ttlMs) as number | null;
      if (mark !== null) ttlBelow = mark + 1;
      for (const cursor of policy.requireCursors ?? []) ttlBelow = Math.min(ttlBelow, this.cursorPosition(cursor) + 1);
    }
    let sizeBelow = 0;
    if (policy.maxBytes !== undefined && stream.liveBytes > policy.maxBytes) {
      // Walk from the oldest record until enough bytes are covered, one chunk at a time.
      let excess = stream.liveBytes - policy.maxBytes;
      const rows = this.db
        .prepare(`SELECT position, length(payload) AS bytes FROM ${recordsTable(stream.id)} ORDER BY position LIMIT ?`)
        .all(RETENTION_CHUNK_RECORDS) as { position: number; bytes: number }[];
      for (const row of rows) {
        excess -= row.bytes;
        sizeBelow = row.position + 1;
        if (excess <= 0) break;
      }
    }
    // Neither TTL nor the size cap removes what a required cursor has not passed (invariant
    // 5): only disk pressure may, and it counts those drops as unforwarded.
    for (const cursor of policy.requireCursors ?? []) sizeBelow = Math.min(sizeBelow, this.cursorPosition(cursor) + 1);
    if (ttlBelow === 0 && sizeBelow === 0) return undefined;
    const boundary = sizeBelow > ttlBelow ? { below: sizeBelow, reason: 'size' as const } : { below: ttlBelow, reason: 'ttl' as const };
    return { ...boundary, below: Math.min(boundary.below, this.indexedPosition(stream.id) + 1) };
  }

  /** Deletes at most one chunk of a stream's oldest records below `below`. */
  private deleteChunk(stream: StreamState, requestedBelow: number, reason: RetentionReport['reason']): RetentionReport | undefined {
    // Only records the index has seen are deleted, so the index's per-topic byte counts
    // always include every record retention counts as dropped (the indexer is at most a
    // batch behind, so this delays deletion by moments).
    const below = Math.min(requestedBelow, this.indexedPosition(stream.id) + 1);
    const table = recordsTable(stream.id);
    const chunkEnd = this.db
      .prepare(`SELECT position FROM ${table} WHERE position < ? ORDER BY position LIMIT 1 OFFSET ?`)
      .pluck()
      .get(below, RETENTION_CHUNK_RECORDS - 1) as number | undefined;
    const upTo = chunkEnd ?? below - 1;
    const perTopic = this.db
      .prepare(
        `SELECT topic_id, max(topic_offset) AS last_offset, count(*) AS records, sum(length(payload)) AS bytes, max(position) AS last_position
         FROM ${table} WHERE position <= ? GROUP BY topic_id`,
      )
      .all(upTo) as { topic_id: number; last_offset: number; records: number; bytes: number; last_position: number }[];
    if (perTopic.length === 0) return undefined;
    const policy = this.policies[stream.name];
    let unforwarded = 0;
    if (reason === 'pressure') {
      const forwardedTo = Math.min(...(policy?.requireCursors ?? []).map((cursor) => this.cursorPosition(cursor)), Number.MAX_SAFE_INTEGER);
      if (forwardedTo < upTo) {
        unforwarded = this.db.prepare(`SELECT count(*) FROM ${table} WHERE position > ? AND position <= ?`).pluck().get(forwardedTo, upTo) as number;
      }
    }
    const epoch = Number(readMeta(this.db, 'retention_epoch') ?? '0') + 1;
    const updateTopic = this.db.prepare(
      `UPDATE topics SET first_offset = ?, dropped_bytes = dropped_bytes + ?, retention_epoch = ? WHERE id = ?`,
    );
    let records = 0;
    let bytes = 0;
    this.db.transaction(() => {
      for (const row of perTopic) {
        updateTopic.run(row.last_offset + 1, row.bytes, epoch, row.topic_id);
        records += row.records;
        bytes += row.bytes;
      }
      this.db.prepare(`DELETE FROM ${table} WHERE position <= ?`).run(upTo);
      this.db.prepare(`DELETE FROM time_marks WHERE stream_id = ? AND position <= ?`).run(stream.id, upTo);
      this.db
        .prepare(`INSERT INTO stream_floor (stream_id, min_position) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET min_position = excluded.min_position`)
        .run(stream.id, upTo + 1);
      writeMeta(this.db, 'retention_epoch', String(epoch));
    }).immediate();
    for (const row of perTopic) {
      const topic = this.topicsById.get(row.topic_id);
      if (topic === undefined) continue;
      topic.firstOffset = Math.max(topic.firstOffset, row.last_offset + 1);
      topic.droppedBytes += row.bytes;
    }
    stream.liveBytes = Math.max(0, stream.liveBytes - bytes);
    this.metrics.dropped.inc({ stream: stream.name, reason }, records);
    if (unforwarded > 0) {
      this.metrics.droppedUnforwarded.inc({ stream: stream.name }, unforwarded);
      this.options.logger?.error(
        { stream: stream.name, records, unforwarded },
        'disk pressure: dropped records that were not yet forwarded',
      );
    } else {
      this.options.logger?.info({ stream: stream.name, reason, records, bytes }, 'retention deleted records');
    }
    return { stream: stream.name, reason, records, bytes, unforwarded };
  }

  /**
   * One retention pass: TTL and size caps per stream, then, while the disk is under
   * pressure, the oldest records of the lowest-priority stream. Deletes in chunks and yields
   * between them, so appends keep committing.
   */
  runRetention(): Promise<RetentionReport[]> {
    if (this.retentionRunning !== undefined) return this.retentionRunning;
    const run = async (): Promise<RetentionReport[]> => {
      const reports: RetentionReport[] = [];
      const yieldToAppends = () => new Promise((resolve) => setImmediate(resolve));
      for (const stream of this.streams.values()) {
        for (;;) {
          if (this.closed) return reports;
          const boundary = this.policyBoundary(stream, Date.now());
          if (boundary === undefined) break;
          const report = this.deleteChunk(stream, boundary.below, boundary.reason);
          if (report === undefined) break;
          reports.push(report);
          await yieldToAppends();
        }
      }
      const byPriority = [...this.streams.values()].sort(
        (a, b) => (this.policies[a.name]?.priority ?? 0) - (this.policies[b.name]?.priority ?? 0),
      );
      while (!this.closed && this.underPressure()) {
        // Any topic whose next offset is above its first holds a record (a sparse topic's last
        // record sits at next - 1), which is all this asks, without counting sparse topics.
        const victim = byPriority.find((stream) => stream.nextPosition > 1 && stream.topics.values().some((topic) => topic.nextOffset > topic.firstOffset));
        if (victim === undefined) break;
        const report = this.deleteChunk(victim, victim.nextPosition, 'pressure');
        if (report === undefined) break;
        reports.push(report);
        await yieldToAppends();
      }
      return reports;
    };
    this.retentionRunning = run()
      .catch((error: unknown) => {
        this.options.logger?.warn({ err: (error as Error).message }, 'retention pass failed; will retry');
        return [] as RetentionReport[];
      })
      .finally(() => {
        this.retentionRunning = undefined;
      });
    return this.retentionRunning;
  }

  // ----- lifecycle -----------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('log');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Let writes already accepted reach the disk before closing.
    while (this.pending.length > 0 || this.flushScheduled) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    await this.retentionRunning;
    this.closed = true;
    this.listeners.clear();
    if (this.checkpointer !== undefined) {
      const checkpointer = this.checkpointer;
      this.checkpointer = undefined;
      await stopThread(checkpointer, (message: CheckpointerReply) => message.type === 'stopped');
    }
    let indexSynced = false;
    if (this.worker !== undefined) {
      const worker = this.worker;
      this.worker = undefined;
      await stopThread(worker, (message: IndexerReply) => {
        if (message.type !== 'stopped') return false;
        indexSynced = message.synced;
        return true;
      });
    }
    // Only the owner of the indexer thread marks the file; an inline indexer wrote it synced.
    this.inlineIndexer?.close();
    if (indexSynced) {
      try {
        writeMeta(this.db, 'index_synced', '1');
      } catch (error) {
        // Left "being written": the next open in another boot rebuilds an index that was whole.
        this.options.logger?.warn({ err: (error as Error).message }, 'could not record the topic index as synced');
      }
    }
    this.reader.close();
    this.db.close();
  }
}
