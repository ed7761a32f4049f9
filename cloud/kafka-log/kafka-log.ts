/**
 * A shore site's log on Apache Kafka: the ReplicaSink and TopicReader roles of the embedded
 * SQLite log, with the same semantics, on a bounded set of Kafka topics (DESIGN.md decision 5).
 *
 * Invariants, and why they hold:
 * 1. Exactly once (decision 4). A record is stored only at its topic's next offset, and the
 *    records and the topics' new high water are written in ONE Kafka transaction, so a
 *    read_committed reader sees both or neither. The in-memory high-water map changes only
 *    after the commit succeeded; a failed transaction leaves it as it was.
 * 2. An ambiguous commit cannot duplicate. When EndTxn(commit) fails, Kafka may or may not
 *    have committed. The producer is then replaced (registering the transactional id again
 *    makes the coordinator settle that transaction) and the map is rebuilt from the
 *    high-water topic before the next write is validated against it.
 * 3. One writer per sending site. Each sender's batches go through its own transactional
 *    producer, `<prefix>.<site>-ingest-from-<sender>` (calls without a sender share
 *    `<prefix>.<site>-ingest`; codec.ts `transactionalIdName`). Another instance that starts
 *    serving the sender registers the same id, which fences this one: its writes for that
 *    sender then fail (503) instead of forking. Every registration is followed by reading
 *    what was committed to the high-water and cursor topics since this instance last read
 *    them, so a sender coming back from another instance is checked against what that
 *    instance wrote.
 * 4. Group commit, per sender. Calls of one sender that arrive while its transaction is in
 *    flight are validated one by one against the state the earlier ones leave, and the
 *    accepted ones share its next transaction; a refused call (gap, fork, bad input) fails
 *    alone. Different senders' transactions overlap, except on a logical topic: a transaction
 *    claims the topics it touches, and a transaction of another sender touching one of them
 *    (two senders relaying the same origin) waits for it and is then checked against what it
 *    committed, so the high water stays exact and a record relayed twice is stored once.
 * 6. The sender's cursor. A batch that says where it sits in its sender's stream (from, to,
 *    acked, the sender's log incarnation) moves that sender's cursor in the compacted cursor
 *    topic, in the same transaction as its records; `senderPositions` reads it back from
 *    Kafka, so a sender resumes from it after any crash, here or at another instance.
 * 5. Bounded waiting. Calls queue while a transaction is in flight, up to `maxPendingRecords`;
 *    past that, and whenever Kafka fails, a call is refused with a retriable
 *    StoreUnavailableError, so the sender keeps its backlog instead of this process keeping
 *    it in memory. `health()` says why.
 *
 * Fork check: only the origin of each topic's last offset is kept (in the high-water entry),
 * so a duplicate AT the last held offset with another origin is a TopicForkError, while a
 * duplicate of an older offset is dropped without comparing origins. Reading the data topic
 * back to compare older offsets would cost a fetch per duplicate on every resend.
 *
 * 7. The stream order (`StreamSource`). Every transaction that stores records of a stream
 *    also writes, before its commit, a journal entry listing the Kafka ranges those records
 *    took, to the stream's one-partition journal topic; positions are journal offsets and
 *    indexes within entries (stream-journal.ts says why this is exactly the committed records,
 *    in order, durable and resumable). `onDurable` fires after this instance's commits, and
 *    within about a second of other instances' (a watch on the journals' stable ends).
 * 8. Named cursors (`CursorStore`, a forwarding link's position) live in the compacted
 *    `<prefix>.consumers` topic, written with acks=all by an idempotent producer and read back
 *    at open: durable when `commitCursor` resolves. One instance of a site runs its links.
 * 9. Own writes (`RecordAppender`, e.g. handoff records) go through the lane without a sender:
 *    offsets are assigned at planning time against the committed state plus what the group
 *    staged, so they are dense, and the records commit like replicated ones.
 *
 * Reads (`readTopic`, `latest`) go through the topic index (topic-index.ts): this instance's
 * own commits feed it with the exact Kafka positions the broker assigned, and at open it
 * catches up from Kafka on whatever it does not know yet (all of it, when the file is new).
 */
import kafkajs, {
  Kafka,
  type Admin,
  type Message,
  type Producer,
  type RecordMetadata,
  type TopicMessages,
  type Transaction,
} from 'kafkajs';
import type { Logger } from 'pino';

// Node's CommonJS named-export detection misses this one (the test runner's transform does
// not), so it comes from the default export.
const { ConfigResourceTypes } = kafkajs;

import {
  ClosedError,
  ConfigError,
  InvalidInputError,
  OffsetGapError,
  PortcallError,
  StoreUnavailableError,
  TopicForkError,
  advanceSenderPosition,
  topicKey,
  type HealthReport,
  type HealthSource,
  type HealthStatus,
  type LogRecord,
  type NewRecord,
  type ReadLimits,
  type ReplicateContext,
  type ReplicateResult,
  type SiteLog,
  type StreamPage,
  type TopicHighWater,
} from '../../core/index.js';
import {
  cursorKey,
  decodeConsumerCursor,
  decodeCursor,
  decodeHighWater,
  decodeRecord,
  encodeCursor,
  encodeHighWater,
  encodeKeyValueTail,
  encodeRecord,
  encodedSizeBytes,
  peekIdentity,
  recordTailSize,
  TailTemplate,
  transactionalIdName,
  writeRecordTail,
  type HeldTopic,
} from './codec.js';
import { COMPRESSION_CODEC_IDS, DEFAULT_KAFKA_COMPRESSION, KAFKA_COMPRESSIONS, lz4Unavailable, type KafkaCompression } from './compression.js';
import { openTransactionEnds, readCompacted, waitUntilStable } from './highwater-reader.js';
import { KafkaCustomerTopicWriter } from './customer-topics.js';
import { OffsetOutOfRangeError, PartitionFetcher, type FetchedMessage, type FetchedPartition } from './kafkajs-fetch.js';
import { kafkajsLogCreator, kafkajsLogLevel } from './kafkajs-logging.js';
import { speedups } from './kafkajs-speedups.js';
import { connectTransactionalProducer, PRODUCER_RETRY } from './transactional-producer.js';
import { TopicLayout, topicConfigEntries, type StreamSettings, type TopicSettings } from './layout.js';
import { RunBuilder, TopicIndex, type Run, type Span } from './topic-index.js';
import {
  PageFill,
  decodeJournalEntry,
  encodeJournalEntry,
  journalEntries,
  positionOf,
  splitPosition,
  type JournalEntry,
  type JournalRange,
} from './stream-journal.js';

/** Per-stream overrides of how the site creates a stream's Kafka topic. */
export interface StreamTopicOptions {
  readonly partitions?: number;
  readonly replicationFactor?: number;
  readonly minInsyncReplicas?: number;
  readonly retentionMs?: number;
  readonly retentionBytes?: number;
  readonly contentType?: string;
}

export interface KafkaLogOptions {
  /** This site's name; part of the transactional id, so one running instance per site. */
  readonly siteId: string;
  readonly brokers: string[];
  /** Prefix of every Kafka topic this log uses; default 'portcall'. */
  readonly topicPrefix?: string;
  /** Streams this site stores; each gets its data topic. Records of other streams are refused. */
  readonly streams: string[];
  /** Partitions of topics this log creates; default 6. Existing topics are left as they are. */
  readonly partitions?: number;
  /** Replication factor of topics this log creates; default 1. */
  readonly replicationFactor?: number;
  /** `min.insync.replicas` of topics this log creates; default replicationFactor - 1 (at least 1). */
  readonly minInsyncReplicas?: number;
  /** `retention.ms` of data topics this log creates; default -1 (keep forever). */
  readonly retentionMs?: number;
  /** `retention.bytes` (per partition) of data topics this log creates; default -1 (no limit). */
  readonly retentionBytes?: number;
  /** Overrides per stream. */
  readonly streamTopics?: Readonly<Record<string, StreamTopicOptions>>;
  /**
   * The topic index file (SQLite); ':memory:' (the default) rebuilds it from Kafka at every
   * open, which is fine for tests and small sites.
   */
  readonly indexPath?: string;
  /** How long open() waits for the index to catch up with Kafka before going on in the background; default 30000. */
  readonly indexWaitMs?: number;
  /** Largest Kafka offset range one index span covers, i.e. the most a read scans to find its first record; default 2000. */
  readonly maxSpanKafkaOffsets?: number;
  /** Records waiting for a transaction beyond which calls are refused (Kafka slow); default 200000. */
  readonly maxPendingRecords?: number;
  /** A commit slower than this marks the log degraded; default 5000. */
  readonly slowCommitMs?: number;
  /** How often an idle log checks that Kafka answers; default 2000. */
  readonly healthProbeIntervalMs?: number;
  /**
   * A failed catch-up of the topic index is tried again after this long, doubling up to
   * `catchUpRetryMaxMs` (defaults 500 and 30000); when Kafka answers again after an outage, at once.
   */
  readonly catchUpRetryInitialMs?: number;
  readonly catchUpRetryMaxMs?: number;
  readonly clientId?: string;
  /** kafkajs's own WARN and ERROR lines go here at warn; without a logger they are dropped. */
  readonly logger?: Logger;
  /** TCP connect timeout to a broker; default 3000. */
  readonly connectTimeoutMs?: number;
  /** Bound on reading the high-water topic at open (and after an ambiguous commit); default 60000. */
  readonly recoveryTimeoutMs?: number;
  /**
   * Largest record accepted, as encoded; default 1000000, under the broker's default
   * `message.max.bytes` (1 MiB) with room for the batch header.
   */
  readonly maxRecordBytes?: number;
  /**
   * How the record batches this log writes are compressed: 'lz4' (the default), 'gzip' or
   * 'none'. Compressed batches cost the broker far less CPU per record (compression.ts says
   * why). Java and librdkafka clients read all three; kafkajs needs an LZ4 codec registered
   * (`registerLz4Codec`).
   */
  readonly compression?: KafkaCompression;
}

const DEFAULT_TOPIC_PREFIX = 'portcall';
const DEFAULT_PARTITIONS = 6;
const DEFAULT_REPLICATION_FACTOR = 1;
const DEFAULT_CONNECT_TIMEOUT_MS = 3_000;
const DEFAULT_RECOVERY_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_RECORD_BYTES = 1_000_000;
const DEFAULT_INDEX_WAIT_MS = 30_000;
/**
 * Small, because a read scans a whole span's Kafka range to find its records: 2,000 offsets
 * are about 300 KB of 150-byte readings, one or two fetches. A larger limit saves index rows
 * (about 60 bytes each) at the cost of scanning other containers' records.
 */
const DEFAULT_MAX_SPAN_KAFKA_OFFSETS = 2_000;
const DEFAULT_MAX_PENDING_RECORDS = 200_000;
const DEFAULT_SLOW_COMMIT_MS = 5_000;
const DEFAULT_HEALTH_PROBE_INTERVAL_MS = 2_000;
/**
 * Tail templates kept across transactions, one per logical topic (a container's next records
 * carry the same origin, stream and headers as its last). Past this many, the map starts over.
 */
const MAX_TAIL_TEMPLATES = 20_000;
/** Streams the product knows carry JSON (the gateway validates it); anything else is opaque bytes. */
const JSON_STREAMS = new Set(['containers', 'ships', 'alerts', 'manifests']);
/**
 * kafkajs puts every message for one partition of one send into a single record batch, and
 * the broker refuses a batch above `message.max.bytes` (1 MiB by default). A send holds at
 * most this much per partition, so each batch stays under it...
 */
const SEND_PARTITION_BYTES = 768 * 1024;
/**
 * ...and at most this much in all: one produce request per send, and a transaction's sends
 * go one after another, so fewer, larger sends mean fewer round trips (well under the
 * broker's `socket.request.max.bytes`, 100 MiB by default).
 */
const SEND_REQUEST_BYTES = 8 * 1024 * 1024;
/** A record's length, attributes and deltas around its pre-encoded tail, as an upper bound. */
const RECORD_FRAMING_BYTES = 24;
/** A registration still waiting for an open transaction after this long is logged at warn (see register). */
const SLOW_REGISTRATION_WARN_MS = 2_000;
/** Record framing plus the JSON around nextOffset and origin, as an upper bound. */
const HIGH_WATER_ENTRY_OVERHEAD_BYTES = 128;
/** Payload bytes gathered into one transaction at most (unless a single call is larger). */
const MAX_TRANSACTION_BYTES = 16 * 1024 * 1024;
/** How long an abort after a failed send may take before the producer is dropped anyway. */
const ABORT_TIMEOUT_MS = 5_000;
/** A health probe that takes longer than this counts as Kafka not answering. */
const PROBE_TIMEOUT_MS = 3_000;
/** Most bytes asked for per fetch by reads (see stretchFetchBytes), and by the index's catch-up. */
const READ_FETCH_BYTES = 1024 * 1024;
const CATCH_UP_FETCH_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_READ_RECORDS = 1_000;
const DEFAULT_MAX_READ_BYTES = 4 * 1024 * 1024;
const CATCH_UP_RETRY_INITIAL_MS = 500;
const CATCH_UP_RETRY_MAX_MS = 30_000;
/** Enough for a fetch that only asks whether an offset exists. */
const PROBE_FETCH_BYTES = 1024;
/** How long a read waits for a just-committed transaction's markers to make it readable. */
const COMMIT_MARKER_WAIT_MS = 5_000;
/**
 * A read of a known stretch of a partition (a journal range, a topic's span) asks for about
 * this much per Kafka offset it still needs, at most READ_FETCH_BYTES: asking for the
 * partition's next megabyte decoded thousands of other records to use a few (a live site
 * commits small ranges; a topic's span of one record, for latest(), fetched a megabyte).
 * Kafka returns at least one whole record batch whatever the limit, so a stretch larger than
 * the guess only takes another fetch, while a guess too large decodes the batches after the
 * stretch for nothing. The guess is the size of a record on disk as this log writes it: about
 * 380 bytes uncompressed for a 150-byte reading with its key and nine headers, and 23 bytes
 * with LZ4 in the bench's readings (measured 2026-11-24, 300,000 records in 7.0 MB of
 * segments; real readings vary more, so compressed batches get a guess of 128). A span still
 * holds other topics' records between its own (docs/KAFKA.md, "Reading a container").
 */
const FETCH_BYTES_PER_OFFSET = { compressed: 128, uncompressed: 512 } as const;
const MIN_STRETCH_FETCH_BYTES = 16 * 1024;

function stretchFetchBytes(offsets: bigint, bytesPerOffset: number): number {
  return Math.min(READ_FETCH_BYTES, Math.max(MIN_STRETCH_FETCH_BYTES, Number(offsets) * bytesPerOffset));
}
/** Bytes asked for per fetch of a stream journal (entries are a few hundred bytes). */
const JOURNAL_FETCH_BYTES = 256 * 1024;

/**
 * Fetched messages of journal ranges that stream pages left unread, kept for the pages after
 * them (readEntry), at most this many slots in all (counting whole fetched arrays, read part
 * included, since that is what they hold in memory): a fetch returns whole record batches, and
 * without them a large transaction read in pages of 1,000 fetched and decoded its batches
 * again for every page (measured, bench shore-kafka `read`: 1,399 records/s).
 */
const MAX_LEFTOVER_SLOTS = 50_000;

/** Most spans a topic read fetches together (spansReadTogether); the page's size bounds it first. */
const MAX_SPANS_READ_TOGETHER = 1_000;

const leftoverKey = (range: JournalRange, from: bigint): string => `${range.kafkaTopic}#${range.partition}@${from}`;

/** A link's lag at one position is counted again at most this often. */
const LAG_RECOUNT_MS = 1_000;
/** How often, while someone listens, the journals' ends are checked for other instances' commits. */
const JOURNAL_WATCH_INTERVAL_MS = 1_000;

interface PendingReplicate {
  readonly records: readonly LogRecord[];
  /** Set for this site's own writes (`append`): offsets are assigned when the call is planned. */
  readonly newRecords?: readonly NewRecord[];
  readonly context: ReplicateContext | undefined;
  readonly resolve: (result: ReplicateResult, stored: readonly LogRecord[]) => void;
  readonly reject: (error: unknown) => void;
}

interface StagedTopic {
  readonly stream: string;
  readonly topic: string;
  readonly held: HeldTopic;
}

/** Where a logical topic stands while a call is planned: committed, plus staged, plus the call's records so far. */
interface PlannedTopic {
  readonly stream: string;
  readonly topic: string;
  nextOffset: number;
  /** Origin of the record at nextOffset - 1; undefined when the topic holds nothing. */
  origin: string | undefined;
  /** Whether the call stores any record of the topic. */
  stores: boolean;
}

/** A journal range while a transaction's placements are counted. */
type OpenRange = { -readonly [K in keyof JournalRange]: JournalRange[K] };

interface AcceptedCall {
  readonly call: PendingReplicate;
  readonly stored: readonly LogRecord[];
  readonly result: ReplicateResult;
}

/** A sending site's way into Kafka: its own transactional producer and queue. */
interface SenderLane {
  readonly sender: string;
  readonly transactionalId: string;
  producer: Producer | undefined;
  /**
   * Whether the maps were read, after this lane's id was registered, past every transaction
   * open at the time (see register). Reset whenever the producer is.
   */
  registered: boolean;
  queue: PendingReplicate[];
  draining: Promise<void> | undefined;
  /** Transactions of this lane that failed because another instance registered its id. */
  fenced: number;
}

type PartitionEnd = { kafkaTopic: string; partition: number; end: bigint };
type IndexProgress = { kafkaTopic: string; partition: number; indexedTo: bigint };
/** An own commit's spans and progress, waiting to be written to the index; `ends` for a failure. */
type IndexWrite = { runs: readonly Run[]; progress: readonly IndexProgress[]; ends: ReadonlyMap<string, PartitionEnd> };

interface ResolvedOptions {
  readonly siteId: string;
  readonly brokers: string[];
  readonly layout: TopicLayout;
  readonly streams: readonly string[];
  readonly clientId: string;
  readonly logger: Logger | undefined;
  readonly connectTimeoutMs: number;
  readonly recoveryTimeoutMs: number;
  readonly maxRecordBytes: number;
  /** kafkajs's codec number for `compression`. */
  readonly compressionCodec: number;
  readonly indexPath: string;
  readonly indexWaitMs: number;
  readonly maxSpanKafkaOffsets: number;
  readonly maxPendingRecords: number;
  readonly slowCommitMs: number;
  readonly healthProbeIntervalMs: number;
  readonly catchUpRetryInitialMs: number;
  readonly catchUpRetryMaxMs: number;
}

function resolveOptions(options: KafkaLogOptions): ResolvedOptions {
  const topicPrefix = options.topicPrefix ?? DEFAULT_TOPIC_PREFIX;
  if (typeof options.siteId !== 'string' || options.siteId.trim() === '') {
    throw new ConfigError('KafkaLog: siteId must be a non-empty string');
  }
  if (!Array.isArray(options.brokers) || options.brokers.length === 0) {
    throw new ConfigError('KafkaLog: brokers must list at least one host:port');
  }
  if (!Array.isArray(options.streams) || options.streams.length === 0) {
    throw new ConfigError('KafkaLog: streams must list at least one stream');
  }
  if (new Set(options.streams).size !== options.streams.length) {
    throw new ConfigError(`KafkaLog: streams has duplicates: ${options.streams.join(', ')}`);
  }
  const integer = (name: string, value: number | undefined, fallback: number, min: number): number => {
    const resolved = value ?? fallback;
    if (!Number.isSafeInteger(resolved) || resolved < min) {
      throw new ConfigError(`KafkaLog: ${name} must be an integer >= ${min}, got ${String(value)}`);
    }
    return resolved;
  };
  const retention = (name: string, value: number | undefined, fallback: number): number => {
    const resolved = value ?? fallback;
    if (!Number.isSafeInteger(resolved) || (resolved < 1 && resolved !== -1)) {
      throw new ConfigError(`KafkaLog: ${name} must be a positive integer or -1 (no limit), got ${String(value)}`);
    }
    return resolved;
  };
  const base: TopicSettings = (() => {
    const replicationFactor = integer('replicationFactor', options.replicationFactor, DEFAULT_REPLICATION_FACTOR, 1);
    return {
      partitions: integer('partitions', options.partitions, DEFAULT_PARTITIONS, 1),
      replicationFactor,
      minInsyncReplicas: integer('minInsyncReplicas', options.minInsyncReplicas, Math.max(1, replicationFactor - 1), 1),
      retentionMs: retention('retentionMs', options.retentionMs, -1),
      retentionBytes: retention('retentionBytes', options.retentionBytes, -1),
    };
  })();
  const unknownOverrides = Object.keys(options.streamTopics ?? {}).filter((stream) => !options.streams.includes(stream));
  if (unknownOverrides.length > 0) {
    throw new ConfigError(`KafkaLog: streamTopics names streams this site does not store: ${unknownOverrides.join(', ')}`);
  }
  const streams = new Map<string, StreamSettings>();
  for (const stream of options.streams) {
    const own = options.streamTopics?.[stream] ?? {};
    const replicationFactor = integer(`${stream}.replicationFactor`, own.replicationFactor, base.replicationFactor, 1);
    const settings: StreamSettings = {
      partitions: integer(`${stream}.partitions`, own.partitions, base.partitions, 1),
      replicationFactor,
      minInsyncReplicas: integer(
        `${stream}.minInsyncReplicas`,
        own.minInsyncReplicas,
        options.minInsyncReplicas ?? Math.max(1, replicationFactor - 1),
        1,
      ),
      retentionMs: retention(`${stream}.retentionMs`, own.retentionMs, base.retentionMs),
      retentionBytes: retention(`${stream}.retentionBytes`, own.retentionBytes, base.retentionBytes),
      contentType: own.contentType ?? (JSON_STREAMS.has(stream) ? 'application/json' : 'application/octet-stream'),
    };
    if (settings.minInsyncReplicas > settings.replicationFactor) {
      throw new ConfigError(
        `KafkaLog: stream ${stream}: minInsyncReplicas (${settings.minInsyncReplicas}) above replicationFactor (${settings.replicationFactor}) makes every write fail`,
      );
    }
    streams.set(stream, settings);
  }
  if (base.minInsyncReplicas > base.replicationFactor) {
    throw new ConfigError(
      `KafkaLog: minInsyncReplicas (${base.minInsyncReplicas}) above replicationFactor (${base.replicationFactor}) makes every write fail`,
    );
  }
  const compression = options.compression ?? DEFAULT_KAFKA_COMPRESSION;
  if (!KAFKA_COMPRESSIONS.includes(compression)) {
    throw new ConfigError(`KafkaLog: compression must be one of ${KAFKA_COMPRESSIONS.join(', ')}, got ${String(options.compression)}`);
  }
  if (compression === 'lz4' && lz4Unavailable !== undefined) {
    throw new ConfigError(`KafkaLog: compression lz4 needs lz4-napi, which did not load here (${lz4Unavailable}); set compression to gzip or none`);
  }
  // The high-water topic is compacted, so retention does not apply to it.
  const layout = new TopicLayout(topicPrefix, streams, { ...base, retentionMs: -1, retentionBytes: -1 });
  return {
    siteId: options.siteId,
    brokers: options.brokers,
    layout,
    streams: [...options.streams],
    clientId: options.clientId ?? `portcall-${options.siteId}`,
    logger: options.logger,
    connectTimeoutMs: integer('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 1),
    recoveryTimeoutMs: integer('recoveryTimeoutMs', options.recoveryTimeoutMs, DEFAULT_RECOVERY_TIMEOUT_MS, 1),
    maxRecordBytes: integer('maxRecordBytes', options.maxRecordBytes, DEFAULT_MAX_RECORD_BYTES, 1),
    compressionCodec: COMPRESSION_CODEC_IDS[compression],
    indexPath: options.indexPath ?? ':memory:',
    indexWaitMs: integer('indexWaitMs', options.indexWaitMs, DEFAULT_INDEX_WAIT_MS, 0),
    maxSpanKafkaOffsets: integer('maxSpanKafkaOffsets', options.maxSpanKafkaOffsets, DEFAULT_MAX_SPAN_KAFKA_OFFSETS, 1),
    maxPendingRecords: integer('maxPendingRecords', options.maxPendingRecords, DEFAULT_MAX_PENDING_RECORDS, 1),
    slowCommitMs: integer('slowCommitMs', options.slowCommitMs, DEFAULT_SLOW_COMMIT_MS, 1),
    healthProbeIntervalMs: integer('healthProbeIntervalMs', options.healthProbeIntervalMs, DEFAULT_HEALTH_PROBE_INTERVAL_MS, 1),
    catchUpRetryInitialMs: integer('catchUpRetryInitialMs', options.catchUpRetryInitialMs, CATCH_UP_RETRY_INITIAL_MS, 1),
    catchUpRetryMaxMs: integer('catchUpRetryMaxMs', options.catchUpRetryMaxMs, CATCH_UP_RETRY_MAX_MS, 1),
  };
}

/** A record as an error names it; built only when refusing, since `validate` runs for every record. */
function whereOf(record: LogRecord): string {
  return `record ${JSON.stringify(record.stream)}/${JSON.stringify(record.topic)}@${String(record.offset)}`;
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Typed errors pass through; anything from kafkajs or the network means "not now". */
function asStoreError(what: string, error: unknown): PortcallError {
  if (error instanceof PortcallError) return error;
  return new StoreUnavailableError(`${what}: ${describeError(error)}`, error);
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A message bound for Kafka, with what the index needs to know about it. */
interface OutgoingItem {
  readonly topic: string;
  /** `partitionKey(topic, partition)`, or the topic for messages the producer places. */
  readonly partitionKey: string;
  readonly message: Message;
  readonly sizeBytes: number;
  /** Set for data records: the index learns their Kafka offset from the produce response. */
  readonly record?: LogRecord;
}

/** Cuts a transaction's messages into sends that keep every partition's batch under the broker's limit. */
function chunkItems(items: readonly OutgoingItem[]): OutgoingItem[][] {
  const chunks: OutgoingItem[][] = [];
  let current: OutgoingItem[] = [];
  let currentBytes = 0;
  let partitionBytes = new Map<string, number>();
  for (const item of items) {
    // High-water entries carry no partition: the producer picks it, so they count as one.
    const key = item.partitionKey;
    const inPartition = partitionBytes.get(key) ?? 0;
    if (currentBytes > 0 && (inPartition + item.sizeBytes > SEND_PARTITION_BYTES || currentBytes + item.sizeBytes > SEND_REQUEST_BYTES)) {
      chunks.push(current);
      current = [];
      currentBytes = 0;
      partitionBytes = new Map();
    }
    current.push(item);
    currentBytes += item.sizeBytes;
    partitionBytes.set(key, (partitionBytes.get(key) ?? 0) + item.sizeBytes);
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

function toTopicMessages(chunk: readonly OutgoingItem[]): TopicMessages[] {
  const byTopic = new Map<string, Message[]>();
  for (const item of chunk) {
    let messages = byTopic.get(item.topic);
    if (messages === undefined) {
      messages = [];
      byTopic.set(item.topic, messages);
    }
    messages.push(item.message);
  }
  return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
}

const partitionKey = (kafkaTopic: string, partition: number): string => `${kafkaTopic}#${partition}`;

/** A data record's message as writeTransaction makes it when the produce request speedup is installed. */
interface RecordMessage {
  readonly portcallRecord: LogRecord;
  readonly portcallContentType: string;
}

/** `portcallWriteTail` of a data record's message: one function, no closure per record. */
function writeMessageTail(message: object, buf: Buffer, at: number): number {
  const { portcallRecord, portcallContentType } = message as RecordMessage;
  return writeRecordTail(buf, at, portcallRecord, portcallContentType);
}

/** `portcallWriteTail` of a data record's message in a run that shares a TailTemplate. */
function writeTemplateTail(message: object, buf: Buffer, at: number): number {
  const { portcallRecord, portcallTemplate } = message as { portcallRecord: LogRecord; portcallTemplate: TailTemplate };
  return portcallTemplate.write(buf, at, portcallRecord);
}

function keepLatest(ends: Map<string, PartitionEnd>, key: string, entry: PartitionEnd): void {
  const known = ends.get(key);
  if (known === undefined || known.end < entry.end) ends.set(key, entry);
}

/** Kafka's answer when another producer registered the same transactional id since. */
function isFencing(error: unknown): boolean {
  for (let cause = error as { type?: unknown; name?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; cause !== undefined && cause !== null && depth < 5; depth++) {
    const text = `${String(cause.type)} ${String(cause.name)} ${String(cause.message)}`;
    if (/PRODUCER_FENCED|INVALID_PRODUCER_EPOCH|error code 90\b|fenc(ed|es)/i.test(text)) return true;
    cause = cause.cause as typeof cause;
  }
  return false;
}


/**
 * The catch-up cannot finish yet because Kafka has not settled what it must read (commit
 * markers on their way, a transaction still open): usual for a moment, so retried quietly.
 */
class CatchUpNotReadyError extends Error {
  override readonly name = 'CatchUpNotReadyError';
}

interface CatchUpTarget {
  readonly kafkaTopic: string;
  readonly partition: number;
  readonly target: bigint;
}

export class KafkaLog implements SiteLog, HealthSource {
  readonly siteId: string;
  private readonly options: ResolvedOptions;
  private readonly layout: TopicLayout;
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  /** Committed state: what Kafka holds, per topicKey. */
  private held = new Map<string, HeldTopic>();
  /** Senders' cursors as committed, per sender NUL incarnation, then per stream. */
  private readonly cursors = new Map<string, Map<string, number>>();
  /** How far the high-water and cursor topics have been read, per partition. */
  private highWaterReadTo = new Map<number, bigint>();
  private cursorsReadTo = new Map<number, bigint>();
  private cursorRead: Promise<void> | undefined;
  /** High-water entries of transactions whose outcome is unknown, until the next read. */
  private readonly uncertain = new Map<string, HeldTopic>();
  /** Lanes whose last transaction ended with an unknown outcome; nothing is checked until settled. */
  private readonly unsettled = new Set<SenderLane>();
  /**
   * Set when a transaction with an unknown outcome was fenced: the instance that registered
   * the id settled it already, so the maps need only be re-read, without taking the id back.
   */
  private rereadNeeded = false;
  /** Counts transactions that ended with an unknown outcome or left open; see register. */
  private uncertainEndings = 0;
  /** Set when the index must be discarded and rebuilt (done by the catch-up, between runs). */
  private rebuildIndex = false;
  private readonly lanes = new Map<string, SenderLane>();
  private readonly partitionKeyCache = new Map<string, string[]>();
  /** By topicKey: what `writeTransaction` last encoded a topic's records with (MAX_TAIL_TEMPLATES). */
  private readonly tailTemplates = new Map<string, TailTemplate>();
  private readonly retiring = new Set<Promise<void>>();
  private pendingRecords = 0;
  /** Logical topics claimed by a transaction in flight, and by which lane. */
  private readonly claims = new Map<string, SenderLane>();
  private inFlight = 0;
  /** Transactions in flight per data partition, and own commits' ends waiting for them. */
  private readonly partitionInFlight = new Map<string, number>();
  private readonly stashedEnds = new Map<string, PartitionEnd>();
  /** A state re-read (after a registration) runs alone: no transaction in flight meanwhile. */
  private exclusiveWaiting = 0;
  private exclusiveActive = false;
  private waiters: (() => void)[] = [];
  private closed = false;
  private closing: Promise<void> | undefined;

  private index: TopicIndex | undefined;
  /**
   * Index writes of own commits not made yet, in order (see indexOwnCommit). Every other use
   * of the index makes them first (`indexUpToDate`), so nothing reads or writes past them.
   */
  private readonly indexWrites: IndexWrite[] = [];
  private indexWriteTimer: NodeJS.Immediate | undefined;
  private fetcher: PartitionFetcher | undefined;
  /** Listeners of `onDurable`. */
  private readonly durableListeners = new Set<(stream: string) => void>();
  /** Per stream, one past the last journal entry known committed (own commits, and the watch). */
  private readonly journalEnds = new Map<string, bigint>();
  private journalWatchTimer: NodeJS.Timeout | undefined;
  private journalWatching = false;
  /** Named cursors (`CursorStore`) as read at open and committed since. */
  private readonly consumerCursors = new Map<string, number>();
  private cursorProducer: Promise<Producer> | undefined;
  /** Per stream, the last count of records after a position (links' lag), and where it was counted. */
  private readonly lagCache = new Map<string, { end: bigint; records: number; countedAtMs: number }>();
  /** What stream pages left of their journal ranges' fetches (from `head` on), for the next page (readEntry). */
  private readonly rangeLeftovers = new Map<string, { readonly slots: (FetchedMessage | undefined)[]; readonly head: number }>();
  private leftoverSlots = 0;
  private readonly lagCounting = new Set<string>();
  /** Partitions the index is catching up on, with the Kafka offset it must reach. */
  private readonly catchUpPending = new Map<string, CatchUpTarget>();
  /**
   * Set while Kafka may hold committed records the index does not know (at open, after a
   * commit with unknown outcome, after a failed index write) until a catch-up has read them.
   * Meanwhile this instance's own commits add spans but do not move the index's progress
   * (they note where they ended in `ownEnd`), and a read that finds no span waits rather
   * than taking the gap for records deleted by retention.
   */
  private indexDirty = true;
  private indexDirtyEpoch = 0;
  private readonly ownEnd = new Map<string, PartitionEnd>();
  /**
   * Ends of own commits that could not be indexed, and of own transactions whose outcome is
   * unknown: a catch-up must read at least this far. EndTxn returns before the commit markers
   * make records readable, and an unknown outcome may turn out committed only later, so until
   * the partition's last stable offset passes them the catch-up tries again rather than
   * stopping short and taking a later own commit's end as the index's progress.
   */
  private readonly unindexedEnds = new Map<string, PartitionEnd>();
  private catchingUp: Promise<void> | undefined;
  private catchUpAgain = false;
  private indexError: string | undefined;
  /** Ends the index catch-up's wait before its next try (set while it waits). */
  private wakeCatchUp: (() => void) | undefined;

  private kafkaState: { status: 'ok' | 'unavailable'; reason?: string; sinceMs: number } = { status: 'ok', sinceMs: Date.now() };
  private lastHealth: { status: HealthStatus; reason: string | undefined; sinceMs: number } = {
    status: 'ok',
    reason: undefined,
    sinceMs: Date.now(),
  };
  private lastCommitAtMs: number | undefined;
  private lastCommitDurationMs: number | undefined;
  private lastKafkaContactMs = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private commitsTotal = 0;
  private refusedBusyTotal = 0;
  private fencedTotal = 0;
  private claimWaitsTotal = 0;

  private constructor(options: ResolvedOptions) {
    this.options = options;
    this.layout = options.layout;
    this.siteId = options.siteId;
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: options.brokers,
      connectionTimeout: options.connectTimeoutMs,
      retry: PRODUCER_RETRY,
      logLevel: kafkajsLogLevel(options.logger),
      logCreator: kafkajsLogCreator(options.logger),
    });
    this.admin = this.kafka.admin();
  }

  /**
   * Connects, creates missing topics, registers this site's transactional id, recovers the
   * high water from Kafka and brings the topic index up to date (waiting up to `indexWaitMs`,
   * then going on in the background). Rejects with a ConfigError for bad options or a
   * misconfigured existing topic, and a StoreUnavailableError when Kafka cannot be reached or
   * recovery does not finish within `recoveryTimeoutMs`.
   */
  static async open(options: KafkaLogOptions): Promise<KafkaLog> {
    const log = new KafkaLog(resolveOptions(options));
    try {
      await log.start();
    } catch (error) {
      await log.shutdown();
      throw asStoreError(`cannot open the Kafka log at ${options.brokers.join(',')}`, error);
    }
    return log;
  }

  private async start(): Promise<void> {
    await this.admin.connect();
    await this.ensureTopics();
    this.fetcher = new PartitionFetcher(this.kafka);
    await this.fetcher.connect();
    // The high water is read after a transactional id is registered. Registering it makes
    // the coordinator settle a transaction a crashed predecessor left open under that id:
    // abort it, or, if the predecessor had already asked to commit, complete the commit. Read
    // before that, the last stable offset would stop short of entries committed a moment
    // later; so every sender's id is registered, and the topics read again from where this
    // read stopped, before that sender's first transaction here.
    if (speedups.recordEncoder !== 'installed' || speedups.grouping !== 'installed' || speedups.recordDecoder !== 'installed') {
      this.options.logger?.info({ speedups }, 'kafkajs was loaded before the Kafka log; some of its own (slower) produce or read code stays in use');
    }
    // Registers the id of calls without a sender (and fences an older instance's), then reads
    // both compacted topics; each sender's id is registered before its first transaction.
    const lane = this.laneFor('');
    // A broker started moments ago is still creating its transaction-state topic and answers
    // "coordinator not available" for a while (longer than kafkajs's retries on a loaded
    // machine): keep trying within the recovery bound rather than failing the start.
    for (let attempt = 1, deadlineMs = Date.now() + this.options.recoveryTimeoutMs; ; attempt++) {
      try {
        lane.producer = await this.connectProducer(lane.transactionalId);
        break;
      } catch (error) {
        if (!/coordinator/i.test(describeError(error)) || Date.now() > deadlineMs) throw error;
        this.options.logger?.info({ err: describeError(error), attempt }, 'Kafka transaction coordinator not ready yet; retrying');
        await new Promise((resolve) => setTimeout(resolve, Math.min(500 * attempt, 3_000)));
      }
    }
    await this.readState();
    await this.readConsumerCursors();
    // Where each journal stands now, so the watch wakes listeners only for what comes later.
    // Journal topics created moments ago may still be electing a leader ("not the leader for
    // that topic-partition", retriable): keep asking within the recovery bound (seen in CI).
    for (const { topic, stream } of this.layout.journalTopicList()) {
      for (let attempt = 1, deadlineMs = Date.now() + this.options.recoveryTimeoutMs; ; attempt++) {
        try {
          this.journalEnds.set(stream, await this.journalStableEnd(topic, 0n));
          break;
        } catch (error) {
          if ((error as { retriable?: unknown }).retriable !== true || Date.now() > deadlineMs) throw error;
          await new Promise((resolve) => setTimeout(resolve, Math.min(200 * attempt, 2_000)));
        }
      }
    }
    const { clusterId } = await this.admin.describeCluster();
    this.index = new TopicIndex({
      path: this.options.indexPath,
      identity: `${clusterId}/${this.layout.prefix}`,
      maxSpanKafkaOffsets: this.options.maxSpanKafkaOffsets,
    });
    this.lastKafkaContactMs = Date.now();
    const caughtUp = this.startCatchUp();
    if (this.options.indexWaitMs > 0) {
      await Promise.race([caughtUp, new Promise((resolve) => setTimeout(resolve, this.options.indexWaitMs).unref())]);
    }
    this.probeTimer = setInterval(() => void this.probe(), this.options.healthProbeIntervalMs);
    this.probeTimer.unref();
    this.journalWatchTimer = setInterval(() => void this.watchJournals(), JOURNAL_WATCH_INTERVAL_MS);
    this.journalWatchTimer.unref();
  }

  private async ensureTopics(): Promise<void> {
    const existing = new Set(await this.admin.listTopics());
    const wanted: { topic: string; settings: TopicSettings; configEntries: { name: string; value: string }[] }[] = [
      ...this.layout.dataTopics().map(({ topic, settings }) => ({ topic, settings, configEntries: topicConfigEntries(settings) })),
      {
        topic: this.layout.highWaterTopic,
        settings: this.layout.highWaterSettings,
        // Compaction keeps the last entry per logical topic forever; time-based deletion would
        // silently forget a quiet topic's offsets and let its old records in again.
        configEntries: [
          { name: 'cleanup.policy', value: 'compact' },
          { name: 'min.insync.replicas', value: String(this.layout.highWaterSettings.minInsyncReplicas) },
        ],
      },
      {
        topic: this.layout.cursorTopic,
        settings: this.layout.highWaterSettings,
        // Compacted for the same reason: a sender quiet for a month still resumes where it was.
        configEntries: [
          { name: 'cleanup.policy', value: 'compact' },
          { name: 'min.insync.replicas', value: String(this.layout.highWaterSettings.minInsyncReplicas) },
        ],
      },
      {
        topic: this.layout.consumerCursorTopic,
        settings: this.layout.highWaterSettings,
        // A link quiet for a month still resumes where it was.
        configEntries: [
          { name: 'cleanup.policy', value: 'compact' },
          { name: 'min.insync.replicas', value: String(this.layout.highWaterSettings.minInsyncReplicas) },
        ],
      },
      // One partition each: the order of the stream's transactions (stream-journal.ts); deleted
      // with the same retention as the stream's records.
      ...this.layout.journalTopicList().map(({ topic, settings }) => ({ topic, settings, configEntries: topicConfigEntries(settings) })),
    ];
    const missing = wanted.filter(({ topic }) => !existing.has(topic));
    if (missing.length > 0) {
      // Returns false when another process created them first, which is just as good.
      try {
        await this.admin.createTopics({
          waitForLeaders: true,
          topics: missing.map(({ topic, settings, configEntries }) => ({
            topic,
            numPartitions: settings.partitions,
            replicationFactor: settings.replicationFactor,
            configEntries,
          })),
        });
      } catch (error) {
        // Its wait for leaders gives up on UNKNOWN_TOPIC_OR_PARTITION, which a busy broker
        // answers for a moment after creating a topic; the metadata read below waits instead.
        if ((error as { retriable?: unknown }).retriable !== true) throw error;
        this.options.logger?.info({ err: error }, 'topics created; waiting for their leaders');
      }
    }
    for (const topic of [this.layout.highWaterTopic, this.layout.cursorTopic, this.layout.consumerCursorTopic]) {
      if (existing.has(topic)) await this.checkCompacted(topic);
    }
    const metadata = await this.topicMetadata(wanted.map(({ topic }) => topic));
    for (const { name, partitions } of metadata.topics) this.layout.setPartitionCount(name, partitions.length);
    for (const { topic } of this.layout.journalTopicList()) {
      if (this.layout.partitionCount(topic) !== 1) {
        throw new ConfigError(
          `Kafka topic ${topic} has ${this.layout.partitionCount(topic)} partitions; a stream journal must have exactly 1 (its order is the stream's order)`,
        );
      }
    }
    await this.warnAboutDifferences(wanted.filter(({ topic }) => existing.has(topic)), metadata.topics);
  }

  /**
   * A topic created a moment ago can still be unknown to the broker that answers metadata
   * (UNKNOWN_TOPIC_OR_PARTITION, retriable), which kafkajs's admin does not retry.
   */
  private async topicMetadata(topics: string[]): ReturnType<Admin['fetchTopicMetadata']> {
    const deadlineMs = Date.now() + this.options.recoveryTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const metadata = await this.admin.fetchTopicMetadata({ topics });
        const leaderless = metadata.topics.filter(({ partitions }) => partitions.length === 0 || partitions.some(({ leader }) => leader < 0));
        if (leaderless.length === 0) return metadata;
        throw Object.assign(new Error(`no leader yet for ${leaderless.map(({ name }) => name).join(', ')}`), { retriable: true });
      } catch (error) {
        if ((error as { retriable?: unknown }).retriable !== true || Date.now() + 100 * attempt > deadlineMs) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * attempt, 1_000)));
      }
    }
  }

  /**
   * Existing topics are never altered: AlterConfigs replaces a topic's whole configuration,
   * and more partitions would move containers to other partitions and break their order. A
   * difference from the configuration is logged so an operator can decide.
   */
  private async warnAboutDifferences(
    topics: readonly { topic: string; settings: TopicSettings }[],
    metadata: readonly { name: string; partitions: readonly { replicas: readonly number[] }[] }[],
  ): Promise<void> {
    if (topics.length === 0 || this.options.logger === undefined) return;
    const described = await this.admin
      .describeConfigs({
        includeSynonyms: false,
        resources: topics.map(({ topic }) => ({
          type: ConfigResourceTypes.TOPIC,
          name: topic,
          configNames: ['min.insync.replicas', 'retention.ms', 'retention.bytes'],
        })),
      })
      .catch(() => undefined);
    for (const { topic, settings } of topics) {
      const partitions = metadata.find((entry) => entry.name === topic)?.partitions ?? [];
      const actual: Record<string, string | number | undefined> = {
        partitions: partitions.length,
        replicationFactor: partitions[0]?.replicas.length,
      };
      const configs = described?.resources.find((resource) => resource.resourceName === topic)?.configEntries ?? [];
      for (const entry of configs) actual[entry.configName] = entry.configValue;
      const expected: Record<string, string | number> = {
        partitions: settings.partitions,
        replicationFactor: settings.replicationFactor,
        'min.insync.replicas': String(settings.minInsyncReplicas),
      };
      if (topic !== this.layout.highWaterTopic && topic !== this.layout.cursorTopic && topic !== this.layout.consumerCursorTopic) {
        expected['retention.ms'] = String(settings.retentionMs);
        expected['retention.bytes'] = String(settings.retentionBytes);
      }
      const differences = Object.entries(expected)
        .filter(([name, value]) => actual[name] !== undefined && String(actual[name]) !== String(value))
        .map(([name, value]) => `${name}: configured ${value}, topic has ${String(actual[name])}`);
      if (differences.length > 0) {
        this.options.logger.warn({ topic, differences }, 'existing Kafka topic differs from the configuration; left as it is');
      }
    }
  }

  private async checkCompacted(topic: string): Promise<void> {
    const described = await this.admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['cleanup.policy'] }],
    });
    const policy = described.resources[0]?.configEntries.find((entry) => entry.configName === 'cleanup.policy')?.configValue;
    if (policy === undefined || !policy.split(',').includes('compact')) {
      throw new ConfigError(
        topic === this.layout.highWaterTopic
          ? `Kafka topic ${topic} exists with cleanup.policy=${String(policy)}; it must be 'compact', ` +
              `or offsets of quiet topics are deleted and their records would be stored again`
          : topic === this.layout.consumerCursorTopic
            ? `Kafka topic ${topic} exists with cleanup.policy=${String(policy)}; it must be 'compact', ` +
                `or quiet links' cursors are deleted and they would forward everything again`
            : `Kafka topic ${topic} exists with cleanup.policy=${String(policy)}; it must be 'compact', ` +
                `or quiet senders' cursors are deleted and they would resend everything`,
      );
    }
  }

  private connectProducer(transactionalId: string): Promise<Producer> {
    return connectTransactionalProducer(this.kafka, transactionalId);
  }

  private laneFor(sender: string): SenderLane {
    let lane = this.lanes.get(sender);
    if (lane === undefined) {
      lane = {
        sender,
        transactionalId: transactionalIdName(this.layout.prefix, this.siteId, sender === '' ? 'ingest' : `ingest-from-${sender}`),
        producer: undefined,
        registered: false,
        queue: [],
        draining: undefined,
        fenced: 0,
      };
      this.lanes.set(sender, lane);
    }
    return lane;
  }

  /**
   * Reads what was committed to the high-water and cursor topics since the last read (all of
   * it the first time), so the maps include what other instances and earlier incarnations of
   * this one wrote. Runs with no transaction of this instance in flight (at open, or inside
   * `exclusive`). It reads to the last stable offset, which may stop short of this instance's
   * latest commits (their markers still on their way) or of a transaction open in front of
   * them: the map never moves back for that, and `register` waits for what must be read.
   */
  private async readState(): Promise<number> {
    const fetcher = this.fetcher;
    if (fetcher === undefined) throw new Error('the fetcher is connected before the high water is read');
    const startedAtMs = Date.now();
    const common = { admin: this.admin, fetcher, timeoutMs: this.options.recoveryTimeoutMs, logger: this.options.logger };
    const held = this.held;
    let foreign = 0;
    const highWater = await readCompacted(
      { ...common, topic: this.layout.highWaterTopic, from: this.highWaterReadTo, what: 'high-water' },
      (message) => {
        const { key, held: entry } = decodeHighWater(message);
        if (entry === undefined) {
          held.delete(key);
          return;
        }
        // A topic's high water only ever grows. An entry at or below what this instance knows is
        // one of its own commits read back, or an older one: the read may end between this
        // instance's commits, since Kafka writes a transaction's commit markers after it has
        // answered the commit, and the last stable offset waits for the markers. Applied, such an
        // entry would move the high water back, and a resend of what lies between would be
        // stored twice.
        const known = held.get(key);
        if (known !== undefined && entry.nextOffset <= known.nextOffset) return;
        // Beyond it: a commit of this instance whose outcome it did not learn (the index catches
        // up on those anyway), or anything another writer committed.
        const uncertain = this.uncertain.get(key);
        if (uncertain?.nextOffset !== entry.nextOffset || uncertain.origin !== entry.origin) foreign += 1;
        held.set(key, entry);
      },
    );
    this.highWaterReadTo = highWater.reached;
    this.uncertain.clear();
    await this.readCursors();
    const level = highWater.entries > 0 || this.highWaterReadTo.size === 0 ? 'info' : 'debug';
    this.options.logger?.[level](
      { topic: this.layout.highWaterTopic, entries: highWater.entries, topics: held.size, fetches: highWater.fetches, durationMs: Date.now() - startedAtMs },
      'high water read from Kafka',
    );
    return foreign;
  }

  /**
   * Reads the cursor topic from where the last read stopped. A cursor only moves forward, so
   * an entry read late never moves one back: this may run beside this instance's commits.
   */
  private readCursors(): Promise<void> {
    this.cursorRead ??= (async () => {
      const fetcher = this.fetcher;
      if (fetcher === undefined) throw new Error('the fetcher is connected before the cursors are read');
      const result = await readCompacted(
        {
          admin: this.admin,
          fetcher,
          timeoutMs: this.options.recoveryTimeoutMs,
          topic: this.layout.cursorTopic,
          from: this.cursorsReadTo,
          what: 'cursor',
        },
        (message) => {
          const { key, position } = decodeCursor(message);
          if (position === undefined) return;
          const cut = key.lastIndexOf('\u0000');
          this.moveCursor(key.slice(0, cut), key.slice(cut + 1), position);
        },
      );
      for (const [partition, offset] of result.reached) {
        if (offset > (this.cursorsReadTo.get(partition) ?? -1n)) this.cursorsReadTo.set(partition, offset);
      }
    })().finally(() => {
      this.cursorRead = undefined;
    });
    return this.cursorRead;
  }

  private moveCursor(log: string, stream: string, position: number): void {
    let streams = this.cursors.get(log);
    if (streams === undefined) {
      streams = new Map();
      this.cursors.set(log, streams);
    }
    if (position > (streams.get(stream) ?? -1)) streams.set(stream, position);
  }

  /**
   * How far each stream of the sender's log arrived without a gap, from the cursor topic:
   * read again from Kafka first, so it includes what other instances committed for the sender.
   */
  async senderPositions(sender: string, incarnation: string): Promise<Record<string, number>> {
    if (this.closed) throw new ClosedError('Kafka log');
    try {
      await withTimeout(this.readCursors(), PROBE_TIMEOUT_MS * 2, 'the cursor topic did not answer in time');
    } catch (error) {
      throw asStoreError('cannot read the senders\' cursors from Kafka', error);
    }
    return Object.fromEntries(this.cursors.get(`${sender}\u0000${incarnation}`) ?? []);
  }

  replicate(records: readonly LogRecord[], context?: ReplicateContext): Promise<ReplicateResult> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new ClosedError('Kafka log'));
        return;
      }
      if (this.pendingRecords > 0 && this.pendingRecords + records.length > this.options.maxPendingRecords) {
        this.refusedBusyTotal += 1;
        reject(
          new StoreUnavailableError(
            `Kafka is behind: ${this.pendingRecords} records are waiting for a transaction (limit ${this.options.maxPendingRecords}); try again later`,
          ),
        );
        return;
      }
      this.pendingRecords += records.length;
      const lane = this.laneFor(context?.sender ?? '');
      lane.queue.push({
        records,
        context,
        resolve: (result) => {
          this.pendingRecords -= records.length;
          resolve(result);
        },
        reject: (error) => {
          this.pendingRecords -= records.length;
          reject(error);
        },
      });
      this.drain(lane);
    });
  }

  /**
   * Appends records as this site's own (origin = siteId), at the next offsets of their topics,
   * through the lane without a sender; resolves once their transaction committed. One writer
   * per topic is the caller's business (site/writer-guard.ts), as with the embedded log.
   */
  append(records: readonly NewRecord[]): Promise<LogRecord[]> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new ClosedError('Kafka log'));
        return;
      }
      if (records.length === 0) {
        resolve([]);
        return;
      }
      if (this.pendingRecords > 0 && this.pendingRecords + records.length > this.options.maxPendingRecords) {
        this.refusedBusyTotal += 1;
        reject(new StoreUnavailableError(`Kafka is behind: ${this.pendingRecords} records are waiting for a transaction (limit ${this.options.maxPendingRecords}); try again later`));
        return;
      }
      this.pendingRecords += records.length;
      const lane = this.laneFor('');
      lane.queue.push({
        records: [],
        newRecords: records,
        context: undefined,
        resolve: (_result, stored) => {
          this.pendingRecords -= records.length;
          resolve([...stored]);
        },
        reject: (error) => {
          this.pendingRecords -= records.length;
          reject(error);
        },
      });
      this.drain(lane);
    });
  }

  /** One transaction at a time per sender; whatever queued up meanwhile goes into the next one. */
  private drain(lane: SenderLane): void {
    if (lane.draining !== undefined) return;
    lane.draining = (async () => {
      // Lets every call made in this turn of the event loop join the first transaction.
      await new Promise((resolve) => setImmediate(resolve));
      while (lane.queue.length > 0) {
        const calls = this.takeGroup(lane);
        // commitGroup settles every call itself; this only guards against a bug leaving one hanging.
        await this.commitGroup(lane, calls).catch((error: unknown) => {
          for (const call of calls) call.reject(error);
        });
      }
    })().finally(() => {
      lane.draining = undefined;
      // A call may have queued after the loop saw an empty queue but before this ran.
      if (lane.queue.length > 0) this.drain(lane);
    });
  }

  /**
   * The calls for the next transaction: all that are queued, up to a size that keeps one
   * transaction well inside its timeout; a backlog larger than that goes in several.
   */
  private takeGroup(lane: SenderLane): PendingReplicate[] {
    let bytes = 0;
    let count = 0;
    for (const call of lane.queue) {
      let callBytes = 0;
      for (const record of call.records) callBytes += record.payload?.byteLength ?? 0;
      for (const record of call.newRecords ?? []) callBytes += record.payload?.byteLength ?? 0;
      if (count > 0 && bytes + callBytes > MAX_TRANSACTION_BYTES) break;
      bytes += callBytes;
      count += 1;
    }
    return lane.queue.splice(0, count);
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Runs `work` with no transaction in flight and none starting. */
  private async exclusive<T>(work: () => Promise<T>): Promise<T> {
    this.exclusiveWaiting += 1;
    try {
      while (this.inFlight > 0 || this.exclusiveActive) await this.changed();
      this.exclusiveActive = true;
      try {
        return await work();
      } finally {
        this.exclusiveActive = false;
      }
    } finally {
      this.exclusiveWaiting -= 1;
      this.notify();
    }
  }

  /**
   * Waits until no other lane's transaction holds one of `keys`, then holds them all; false
   * (holding nothing) when a transaction ended with an unknown outcome meanwhile, since the
   * maps must then be re-read before anything is checked against them.
   */
  private async claim(lane: SenderLane, keys: ReadonlySet<string>): Promise<boolean> {
    let waited = false;
    for (;;) {
      if (this.unsettled.size > 0 || this.rereadNeeded) return false;
      let free = this.exclusiveWaiting === 0 && !this.exclusiveActive;
      if (free) {
        for (const key of keys) {
          const holder = this.claims.get(key);
          if (holder !== undefined && holder !== lane) {
            free = false;
            break;
          }
        }
      }
      if (free) break;
      if (!waited) this.claimWaitsTotal += 1;
      waited = true;
      await this.changed();
    }
    for (const key of keys) this.claims.set(key, lane);
    this.inFlight += 1;
    return true;
  }

  private release(lane: SenderLane, keys: ReadonlySet<string>): void {
    for (const key of keys) if (this.claims.get(key) === lane) this.claims.delete(key);
    this.inFlight -= 1;
    this.notify();
  }

  /**
   * Registers the lane's transactional id (fencing another instance that held it and settling
   * what it left open), then reads what was committed meanwhile, before anything of the lane
   * is checked against the maps.
   *
   * The read goes to the last stable offset, which stops at the first transaction still open
   * in a partition, whoever's it is. Behind such a transaction may lie entries this instance
   * (or its crashed predecessor) committed without learning so: left unread, a resend of their
   * records would be taken for new ones and stored twice. So the read waits, outside the
   * exclusive section so that other lanes can register meanwhile (which settles what their
   * crashed predecessors left open), until every transaction open when the ids were
   * registered has ended. It starts over if a transaction of this instance ended uncertain
   * meanwhile, since that one's entries may lie beyond the ends waited for.
   */
  private async register(lane: SenderLane): Promise<void> {
    const deadlineMs = Date.now() + this.options.recoveryTimeoutMs;
    const fetcher = this.fetcher;
    if (fetcher === undefined) throw new Error('the fetcher is connected before a lane registers');
    const highWaterTopic = { admin: this.admin, fetcher, topic: this.layout.highWaterTopic, timeoutMs: this.options.recoveryTimeoutMs, what: 'high-water' };
    const partitions = this.layout.partitionCount(this.layout.highWaterTopic);
    for (;;) {
      const waitFor = await this.exclusive(async () => {
        // Registering again the id of a transaction with an unknown outcome makes the coordinator
        // finish it one way or the other; only then does reading the topics tell which.
        for (const other of this.unsettled) other.producer ??= await this.connectProducer(other.transactionalId);
        lane.producer ??= await this.connectProducer(lane.transactionalId);
        // No transaction of this instance is in flight now: what is open is another's, or its
        // own last commit's markers, still being written.
        const open = await openTransactionEnds(highWaterTopic, partitions, this.highWaterReadTo);
        if (open.size > 0) return { ends: open, uncertainEndings: this.uncertainEndings };
        await this.finishRegistration(lane); // the usual case: nothing in the way
        return undefined;
      });
      if (waitFor === undefined) return;
      const waiting = { sender: lane.sender, partitions: Object.fromEntries(waitFor.ends) };
      this.options.logger?.info(waiting, 'waiting for a transaction open in the high-water topic before reading it');
      // Usually this instance's own last commit, whose markers Kafka is still writing
      // (milliseconds). Longer, it is a transaction another instance left open, maybe a
      // crashed one: sites log at warn, and the operator should know why a sender waits.
      const slow = setTimeout(() => {
        this.options.logger?.warn(
          { ...waiting, waitedMs: SLOW_REGISTRATION_WARN_MS, recoveryTimeoutMs: this.options.recoveryTimeoutMs },
          `${lane.sender === '' ? "this site's own writes wait" : `sender ${lane.sender}'s batches wait`} for a transaction another ingest instance left open in the high-water topic (a crashed one's, maybe): its sender coming back settles it, or Kafka aborts it at its transaction timeout`,
        );
      }, SLOW_REGISTRATION_WARN_MS);
      try {
        await waitUntilStable(highWaterTopic, waitFor.ends, deadlineMs);
      } finally {
        clearTimeout(slow);
      }
      const done = await this.exclusive(async () => {
        if (this.uncertainEndings !== waitFor.uncertainEndings || lane.producer === undefined) return false;
        await this.finishRegistration(lane);
        return true;
      });
      if (done) return;
    }
  }

  /** The end of a registration: the maps read, inside `exclusive`. */
  private async finishRegistration(lane: SenderLane): Promise<void> {
    const foreign = await this.readState();
    // A registration and a read of the maps are an answer from Kafka: a sender whose first
    // call after an outage is a resend (no transaction) must not find the site unavailable.
    this.lastKafkaContactMs = Date.now();
    this.markKafka('ok');
    this.unsettled.clear();
    this.rereadNeeded = false;
    lane.registered = true;
    if (foreign > 0 && this.index !== undefined) {
      // Another instance (that served this sender meanwhile) committed records this index
      // never saw, maybe below positions it already counts as complete: rebuilt from Kafka.
      this.options.logger?.info({ sender: lane.sender, entries: foreign }, 'high water moved under this instance; rebuilding the topic index from Kafka');
      this.rebuildIndex = true;
      this.markIndexDirty();
    }
  }

  private async commitGroup(lane: SenderLane, group: readonly PendingReplicate[]): Promise<void> {
    let calls = group;
    if (lane.producer === undefined || !lane.registered || this.unsettled.size > 0 || this.rereadNeeded) {
      // A resend of records already held is answered from memory, even while Kafka is away.
      calls = calls.filter((call) => !this.answerFromMemory(call));
      if (calls.length === 0) return;
    }
    const keys = new Set<string>();
    for (const call of calls) {
      // A batch arrives grouped by topic (wire format 2): one key per run of a topic, not per record.
      let lastStream: string | undefined;
      let lastTopic: string | undefined;
      for (const record of call.records) {
        if (record.topic === lastTopic && record.stream === lastStream) continue;
        lastStream = record.stream;
        lastTopic = record.topic;
        keys.add(topicKey(record.stream, record.topic));
      }
      for (const record of call.newRecords ?? []) if (record !== null && typeof record === 'object') keys.add(topicKey(record.stream, record.topic));
    }
    for (;;) {
      if (lane.producer === undefined || !lane.registered || this.unsettled.size > 0 || this.rereadNeeded) {
        try {
          await this.register(lane);
        } catch (error) {
          const failure = asStoreError(`cannot register the transactional id ${lane.transactionalId} and re-read the high water from Kafka`, error);
          this.markKafka('unavailable', failure.message);
          this.retireProducer(lane);
          for (const call of calls) call.reject(failure);
          return;
        }
      }
      if (await this.claim(lane, keys)) break;
    }
    const partitions = new Set<string>();
    let outcome: 'none' | 'ok' | 'failed' | 'unknown' = 'none';
    let fencedOutcome = false;
    let leftOpen = false;
    const staged = new Map<string, StagedTopic>();
    const stagedForUncertainty = staged;
    try {
      const stagedCursors = new Map<string, { log: string; stream: string; position: number }>();
      const accepted: AcceptedCall[] = [];
      for (const call of calls) {
        try {
          accepted.push(this.plan(call, staged));
        } catch (error) {
          call.reject(error);
          continue;
        }
        const placement = call.context?.placement;
        if (placement !== undefined) {
          const log = `${lane.sender}\u0000${placement.incarnation}`;
          const key = cursorKey(lane.sender, placement.incarnation, placement.stream);
          const current = stagedCursors.get(key)?.position ?? this.cursors.get(log)?.get(placement.stream);
          const position = advanceSenderPosition(current, placement);
          if (position !== current) stagedCursors.set(key, { log, stream: placement.stream, position });
        }
      }
      // A loop, not flatMap: V8's generic flatMap cost a visible share of a group's planning.
      const stored: LogRecord[] = [];
      for (const entry of accepted) for (const record of entry.stored) stored.push(record);
      const durableStreams: string[] = [];
      // A resend of records already held needs a transaction only to move its sender's cursor.
      if (stored.length > 0 || stagedCursors.size > 0) {
        const startedAtMs = Date.now();
        let runs: { runs: Run[]; ends: Map<string, PartitionEnd>; journalEnds: Map<string, bigint> };
        try {
          // Marks the data partitions it writes in flight (in `partitions`) before it first waits.
          runs = await this.writeTransaction(lane, stored, staged, stagedCursors, partitions);
        } catch (error) {
          outcome = (error as { commitSent?: boolean }).commitSent === true ? 'unknown' : 'failed';
          if (outcome === 'unknown') {
            // Kafka may have committed it; its markers, or the commit itself, may come after
            // other transactions' further on in the same partitions. Until the partitions' last
            // stable offset passes its records, the catch-up may not count them indexed.
            const sentEnds = (error as { sentEnds?: ReadonlyMap<string, PartitionEnd> }).sentEnds;
            for (const [key, entry] of sentEnds ?? []) keepLatest(this.unindexedEnds, key, entry);
          }
          const fenced = isFencing(error);
          fencedOutcome = fenced;
          leftOpen = (error as { leftOpen?: boolean }).leftOpen === true && !fenced;
          if (fenced) {
            lane.fenced += 1;
            this.fencedTotal += 1;
          }
          this.options.logger?.warn(
            { err: error, records: stored.length, sender: lane.sender, fenced },
            fenced
              ? 'Kafka transaction fenced: another instance registered this sender\'s transactional id; nothing of it was acknowledged'
              : 'Kafka transaction failed; nothing of it was acknowledged',
          );
          const failure = new StoreUnavailableError(
            fenced
              ? `another ingest instance now serves ${lane.sender === '' ? 'this site' : `sender ${lane.sender}`} (transactional id ${lane.transactionalId} fenced this one): ${describeError(error)}`
              : `Kafka transaction failed: ${describeError(error)}`,
            error,
          );
          if (!fenced) this.markKafka('unavailable', failure.message);
          for (const entry of accepted) entry.call.reject(failure);
          return;
        }
        outcome = 'ok';
        for (const [key, entry] of staged) this.held.set(key, entry.held);
        for (const { log, stream, position } of stagedCursors.values()) this.moveCursor(log, stream, position);
        this.lastCommitAtMs = Date.now();
        this.lastCommitDurationMs = this.lastCommitAtMs - startedAtMs;
        this.lastKafkaContactMs = this.lastCommitAtMs;
        this.commitsTotal += 1;
        this.markKafka('ok');
        for (const key of partitions) this.partitionInFlight.set(key, this.partitionInFlight.get(key)! - 1);
        partitions.clear();
        this.indexOwnCommit(runs.runs, runs.ends);
        for (const [stream, end] of runs.journalEnds) {
          if (end > (this.journalEnds.get(stream) ?? 0n)) this.journalEnds.set(stream, end);
          durableStreams.push(stream);
        }
      }
      for (const entry of accepted) entry.call.resolve(entry.result, entry.stored);
      for (const stream of durableStreams) this.notifyDurable(stream);
    } finally {
      if (outcome === 'unknown' || leftOpen) this.uncertainEndings += 1;
      if (outcome === 'unknown') {
        // Kafka may hold this transaction: the index catches up from before it, and the maps
        // are re-read when the lane registers its id again (see register).
        for (const [key, entry] of stagedForUncertainty) this.uncertain.set(key, entry.held);
        // A fenced lane's id now belongs to another instance, which settled the transaction when
        // it registered; registering it again here would take the sender back from it.
        if (fencedOutcome) this.rereadNeeded = true;
        else this.unsettled.add(lane);
        this.markIndexDirty();
      } else if (leftOpen) {
        // The abort did not go through: the transaction stays open, holding back every read
        // of its partitions, until its id is registered again (the next registration does it).
        this.unsettled.add(lane);
      }
      for (const key of partitions) this.partitionInFlight.set(key, this.partitionInFlight.get(key)! - 1);
      this.settleStashedEnds();
      this.release(lane, keys);
    }
  }

  /**
   * Answers a call whose every record is below its topic's committed high water (a resend):
   * all duplicates. The map may lag behind Kafka, never run ahead of it, so this is right even
   * before it is re-read; anything else waits for the re-read. True if answered.
   */
  private answerFromMemory(call: PendingReplicate): boolean {
    if (call.newRecords !== undefined) return false;
    const highWater = new Map<string, TopicHighWater>();
    for (const record of call.records) {
      if (record === null || typeof record !== 'object' || typeof record.stream !== 'string' || typeof record.topic !== 'string') return false;
      const key = topicKey(record.stream, record.topic);
      const held = this.held.get(key);
      if (held === undefined || !(record.offset < held.nextOffset)) return false;
      if (record.offset === held.nextOffset - 1 && held.origin !== record.origin) return false;
      highWater.set(key, { stream: record.stream, topic: record.topic, nextOffset: held.nextOffset });
    }
    try {
      for (const record of call.records) this.validate(record);
    } catch {
      return false;
    }
    call.resolve({ stored: 0, duplicates: call.records.length, highWater: [...highWater.values()] }, []);
    return true;
  }

  /**
   * Decides what one call stores, against the committed state plus what earlier calls of the
   * same group staged. Throws (and stages nothing) when the call is refused.
   */
  private plan(call: PendingReplicate, staged: Map<string, StagedTopic>): AcceptedCall {
    if (call.newRecords !== undefined) return this.planAppend(call, call.newRecords, staged);
    for (const record of call.records) this.validate(record);
    // Per logical topic this call touches: where it stands as committed plus staged plus this
    // call's records so far. One mutable entry per topic, not an object per record.
    const own = new Map<string, PlannedTopic>();
    const stored: LogRecord[] = [];
    let duplicates = 0;
    let entry: PlannedTopic | undefined;
    for (const record of call.records) {
      // Records of one topic come in runs (wire format 2 groups them): looked up once per run.
      if (entry === undefined || record.topic !== entry.topic || record.stream !== entry.stream) {
        const key = topicKey(record.stream, record.topic);
        entry = own.get(key);
        if (entry === undefined) {
          const held = staged.get(key)?.held ?? this.held.get(key);
          entry = { stream: record.stream, topic: record.topic, nextOffset: held?.nextOffset ?? 0, origin: held?.origin, stores: false };
          own.set(key, entry);
        }
      }
      const nextOffset = entry.nextOffset;
      if (record.offset < nextOffset) {
        if (entry.origin !== undefined && record.offset === nextOffset - 1 && entry.origin !== record.origin) {
          throw new TopicForkError(record.stream, record.topic, record.offset, entry.origin, record.origin);
        }
        duplicates += 1;
        continue;
      }
      if (record.offset > nextOffset) {
        throw new OffsetGapError(record.stream, record.topic, nextOffset, record.offset);
      }
      entry.nextOffset = record.offset + 1;
      entry.origin = record.origin;
      entry.stores = true;
      stored.push(record);
    }
    const highWater: TopicHighWater[] = [];
    for (const [key, { stream, topic, nextOffset, origin, stores }] of own) {
      if (stores) staged.set(key, { stream, topic, held: { nextOffset, origin: origin! } });
      highWater.push({ stream, topic, nextOffset });
    }
    return { call, stored, result: { stored: stored.length, duplicates, highWater } };
  }

  /** This site's own records: each at its topic's next offset, as committed plus staged. */
  private planAppend(call: PendingReplicate, newRecords: readonly NewRecord[], staged: Map<string, StagedTopic>): AcceptedCall {
    const own = new Map<string, StagedTopic>();
    const stored: LogRecord[] = [];
    const now = Date.now();
    for (const newRecord of newRecords) {
      if (newRecord === null || typeof newRecord !== 'object') throw new InvalidInputError('bad-record', 'append: each record must be an object');
      const key = topicKey(newRecord.stream, newRecord.topic);
      const held = own.get(key)?.held ?? staged.get(key)?.held ?? this.held.get(key);
      const record: LogRecord = {
        origin: this.siteId,
        stream: newRecord.stream,
        topic: newRecord.topic,
        offset: held?.nextOffset ?? 0,
        eventTimeMs: newRecord.eventTimeMs ?? now,
        ingestTimeMs: now,
        headers: newRecord.headers ?? {},
        payload: newRecord.payload,
      };
      this.validate(record);
      own.set(key, { stream: record.stream, topic: record.topic, held: { nextOffset: record.offset + 1, origin: record.origin } });
      stored.push(record);
    }
    for (const [key, entry] of own) staged.set(key, entry);
    const highWater: TopicHighWater[] = [...own.values()].map(({ stream, topic, held }) => ({ stream, topic, nextOffset: held.nextOffset }));
    return { call, stored, result: { stored: stored.length, duplicates: 0, highWater } };
  }

  private validate(record: LogRecord): void {
    if (!this.layout.storesStream(record.stream)) {
      throw new InvalidInputError(
        'unknown-stream',
        `${whereOf(record)}: stream is not stored by this site (configured: ${this.options.streams.join(', ')})`,
      );
    }
    if (typeof record.topic !== 'string' || record.topic === '') {
      throw new InvalidInputError('bad-topic', `${whereOf(record)}: topic must be a non-empty string`);
    }
    if (!Number.isSafeInteger(record.offset) || record.offset < 0) {
      throw new InvalidInputError('bad-offset', `${whereOf(record)}: offset must be a non-negative integer`);
    }
    if (typeof record.origin !== 'string' || record.origin === '') {
      throw new InvalidInputError('bad-origin', `${whereOf(record)}: origin must be a non-empty string`);
    }
    if (!Number.isSafeInteger(record.eventTimeMs) || !Number.isSafeInteger(record.ingestTimeMs)) {
      throw new InvalidInputError('bad-time', `${whereOf(record)}: eventTimeMs and ingestTimeMs must be integers`);
    }
    if (typeof record.headers !== 'object' || record.headers === null) {
      throw new InvalidInputError('bad-headers', `${whereOf(record)}: headers must map names to strings`);
    }
    // One pass, and no array of names per record (`Object.keys` was a visible share of the
    // shore's allocations): records' headers are plain objects, as the codec reads them.
    let headerBound = 0;
    for (const name in record.headers) {
      const value = record.headers[name];
      if (typeof value !== 'string') throw new InvalidInputError('bad-headers', `${whereOf(record)}: headers must map names to strings`);
      headerBound += 16 + 3 * (name.length + value.length);
    }
    if (!(record.payload instanceof Uint8Array)) {
      throw new InvalidInputError('bad-payload', `${whereOf(record)}: payload must be bytes`);
    }
    // UTF-8 takes at most 3 bytes per UTF-16 unit: when even that bound fits, no exact count.
    const bound = record.payload.byteLength + 3 * (record.origin.length + record.stream.length + 2 * record.topic.length) + 512 + headerBound;
    const sizeBytes = bound <= this.options.maxRecordBytes ? bound : encodedSizeBytes(record);
    if (sizeBytes > this.options.maxRecordBytes) {
      throw new InvalidInputError(
        'record-too-large',
        `${whereOf(record)}: ${sizeBytes} bytes encoded, above the limit of ${this.options.maxRecordBytes}`,
      );
    }
  }

  /** `partitionKey(kafkaTopic, p)` for every partition p, made once per topic. */
  private partitionKeysOf(kafkaTopic: string): string[] {
    let keys = this.partitionKeyCache.get(kafkaTopic);
    if (keys === undefined) {
      keys = Array.from({ length: this.layout.partitionCount(kafkaTopic) }, (_unused, partition) => partitionKey(kafkaTopic, partition));
      this.partitionKeyCache.set(kafkaTopic, keys);
    }
    return keys;
  }

  /**
   * Writes one transaction and returns, per logical topic, the Kafka positions its records
   * got, from the broker's produce responses (base offset per partition per request; kafkajs
   * keeps a partition's messages of one request in order).
   */
  private async writeTransaction(
    lane: SenderLane,
    records: readonly LogRecord[],
    staged: ReadonlyMap<string, StagedTopic>,
    cursors: ReadonlyMap<string, { position: number }>,
    partitions: Set<string>,
  ): Promise<{ runs: Run[]; ends: Map<string, PartitionEnd>; journalEnds: Map<string, bigint> }> {
    const producer = lane.producer;
    if (producer === undefined) throw new Error('no producer');
    const items: OutgoingItem[] = new Array<OutgoingItem>(records.length);
    const preEncode = speedups.recordEncoder === 'installed';
    let stream: string | undefined;
    let topic = '';
    let contentType = '';
    let keys: string[] = [];
    let logicalTopic: string | undefined;
    let partition = 0;
    let template: TailTemplate | undefined;
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      if (record.stream !== stream) {
        stream = record.stream;
        topic = this.layout.dataTopicFor(record);
        contentType = this.layout.contentTypeOf(stream);
        keys = this.partitionKeysOf(topic);
        logicalTopic = undefined;
      }
      // Hashed once per run of a container's records (wire format 2 sends them grouped).
      if (record.topic !== logicalTopic) {
        logicalTopic = record.topic;
        partition = this.layout.partitionFor(topic, record.topic);
      }
      const partitionKey = keys[partition]!;
      if (!partitions.has(partitionKey)) {
        // Counted at once, so the caller's cleanup (which decrements `partitions`) always matches.
        partitions.add(partitionKey);
        this.partitionInFlight.set(partitionKey, (this.partitionInFlight.get(partitionKey) ?? 0) + 1);
      }
      if (preEncode) {
        // Key, value and headers are written straight into the produce request
        // (kafkajs-speedups.ts): sized now, written when kafkajs encodes the request. A run of
        // a container's records (wire format 2 sends them so) shares one TailTemplate, kept for
        // its next runs too: what the records' tails have in common is encoded once, and copied.
        // `key` and `value` stay set because kafkajs checks them; `value` only for being set.
        if (template === undefined || !template.matches(record, contentType)) {
          template = this.tailTemplateFor(record, contentType, records[i + 1]?.topic === record.topic);
        }
        let message: Message;
        let portcallTailSize: number;
        if (template !== undefined) {
          portcallTailSize = template.size(record);
          message = { key: record.topic, value: null, partition, portcallTailSize, portcallWriteTail: writeTemplateTail, portcallRecord: record, portcallTemplate: template } as Message;
        } else {
          portcallTailSize = recordTailSize(record, contentType);
          message = { key: record.topic, value: null, partition, portcallTailSize, portcallWriteTail: writeMessageTail, portcallRecord: record, portcallContentType: contentType } as Message;
        }
        items[i] = { topic, partitionKey, message, sizeBytes: portcallTailSize + RECORD_FRAMING_BYTES, record };
      } else {
        items[i] = { topic, partitionKey, message: encodeRecord(record, contentType, partition), sizeBytes: encodedSizeBytes(record), record };
      }
    }
    // Pre-encoded too, so that a request's messages all are and it is written in one piece.
    const withTail = (message: Message): Message =>
      preEncode ? ({ ...message, portcallTail: encodeKeyValueTail(String(message.key), String(message.value)) } as Message) : message;
    // The high-water and cursor entries go first, into the transaction's first send: a
    // transaction too large for one send then adds all its partitions but the journal's in
    // one AddPartitionsToTxn, instead of another round trip before its last send.
    // Their partitions are chosen here, by the producer's own partitioner through the layout's
    // memory of each key's partition: left to the producer, every entry's key was hashed again
    // (kafkajs's murmur2 on 64-bit Long objects), one entry per topic per transaction, which
    // with a few records per container and batch was a visible share of the shore's CPU.
    const entries: OutgoingItem[] = [];
    const highWaterTopic = this.layout.highWaterTopic;
    for (const { stream: entryStream, topic: entryTopic, held } of staged.values()) {
      const message = withTail(encodeHighWater(entryStream, entryTopic, held));
      message.partition = this.layout.partitionFor(highWaterTopic, String(message.key));
      entries.push({
        topic: highWaterTopic,
        partitionKey: highWaterTopic,
        message,
        sizeBytes: HIGH_WATER_ENTRY_OVERHEAD_BYTES + Buffer.byteLength(entryStream) + Buffer.byteLength(entryTopic) + Buffer.byteLength(held.origin),
      });
    }
    const cursorTopic = this.layout.cursorTopic;
    for (const [key, { position }] of cursors) {
      const message = withTail(encodeCursor(key, position));
      message.partition = this.layout.partitionFor(cursorTopic, key);
      entries.push({ topic: cursorTopic, partitionKey: cursorTopic, message, sizeBytes: HIGH_WATER_ENTRY_OVERHEAD_BYTES + Buffer.byteLength(key) });
    }
    const chunks = chunkItems(entries.length === 0 ? items : entries.concat(items));
    const responses: RecordMetadata[][] = [];
    let transaction: Transaction | undefined;
    let commitSent = false;
    const journalEnds = new Map<string, bigint>();
    let placed: ReturnType<KafkaLog['placements']> | undefined;
    try {
      transaction = await producer.transaction();
      for (const chunk of chunks) responses.push(await transaction.sendBatch({ acks: -1, compression: this.options.compressionCodec, topicMessages: toTopicMessages(chunk) }));
      // The stream order: where this transaction's records went, known from the responses,
      // written in the same transaction just before its commit (stream-journal.ts).
      placed = this.placements(chunks, responses);
      const journal = this.journalMessages(placed.journal, withTail);
      if (journal.length > 0) {
        const written = await transaction.sendBatch({ acks: -1, compression: this.options.compressionCodec, topicMessages: journal.map(({ topic, messages }) => ({ topic, messages })) });
        for (const { stream, topic, messages } of journal) {
          const meta = written.find((entry) => entry.topicName === topic);
          if (meta?.baseOffset === undefined) throw new Error(`no base offset for the journal ${topic} in the produce response`);
          journalEnds.set(stream, BigInt(meta.baseOffset) + BigInt(messages.length));
        }
      }
      commitSent = true;
      await transaction.commit();
    } catch (error) {
      if (transaction !== undefined && !commitSent) {
        // Frees readers held back by the open transaction now rather than at its timeout; if
        // it fails, registering the id again on the next producer aborts it just the same.
        const aborted = await withTimeout(transaction.abort(), ABORT_TIMEOUT_MS, 'abort timed out').then(
          () => true,
          () => false,
        );
        if (!aborted && error !== null && typeof error === 'object') Object.assign(error, { leftOpen: true });
      }
      // Always a new producer: kafkajs leaves its transaction state machine stuck in
      // COMMITTING/ABORTING when EndTxn fails, and rolls back sequence numbers of a produce
      // request that may in fact have been written. A new InitProducerId resets both, and the
      // lane's next transaction registers again and re-reads the maps first.
      this.retireProducer(lane);
      // Where its records lie, for the index's catch-up, which must not count these partitions
      // complete past a transaction that may yet turn out committed (see commitGroup).
      const sentEnds = placed?.ends;
      if (commitSent && error !== null && typeof error === 'object') Object.assign(error, { commitSent: true, sentEnds });
      else if (commitSent) throw Object.assign(new Error(String(error)), { commitSent: true, sentEnds });
      throw error;
    }
    if (placed === undefined) throw new Error('a committed transaction has its placements');
    return { runs: placed.runs, ends: placed.ends, journalEnds };
  }

  /**
   * The topic's kept template if `record` matches it; else, where a run of the topic's records
   * follows (`runFollows`), a new one, kept in its place; else none (the record is written alone).
   */
  private tailTemplateFor(record: LogRecord, contentType: string, runFollows: boolean): TailTemplate | undefined {
    const key = topicKey(record.stream, record.topic);
    const kept = this.tailTemplates.get(key);
    if (kept !== undefined && kept.matches(record, contentType)) return kept;
    if (!runFollows) return undefined;
    const template = new TailTemplate(record, contentType);
    if (kept === undefined && this.tailTemplates.size >= MAX_TAIL_TEMPLATES) this.tailTemplates.clear();
    this.tailTemplates.set(key, template);
    return template;
  }

  /**
   * Where a transaction's records went, from the produce responses, in one pass: per stream
   * the journal's ranges and each record's range in order (chunk by chunk; within a chunk, a
   * partition's records are one record batch at consecutive offsets from the response's base
   * offset), the index's runs, and each partition's end.
   */
  private placements(
    chunks: readonly (readonly OutgoingItem[])[],
    responses: readonly RecordMetadata[][],
  ): { journal: Map<string, { ranges: OpenRange[]; order: number[] }>; runs: Run[]; ends: Map<string, PartitionEnd> } {
    const journal = new Map<string, { ranges: OpenRange[]; order: number[] }>();
    const builder = new RunBuilder(BigInt(this.options.maxSpanKafkaOffsets));
    const ends = new Map<string, PartitionEnd>();
    chunks.forEach((chunk, index) => {
      // Per partition this chunk wrote: its base offset, how many of its records were seen so
      // far, and its range in its stream's list (a data topic holds one stream).
      const written = new Map<string, { kafkaTopic: string; partition: number; base: bigint; first: number; count: number; range: number }>();
      for (const meta of responses[index] ?? []) {
        const base = BigInt(meta.baseOffset ?? '-1');
        written.set(partitionKey(meta.topicName, meta.partition), { kafkaTopic: meta.topicName, partition: meta.partition, base, first: Number(base), count: 0, range: -1 });
      }
      let streamName: string | undefined;
      let stream: { ranges: OpenRange[]; order: number[] } | undefined;
      for (const item of chunk) {
        const record = item.record;
        const partition = item.message.partition;
        if (record === undefined || partition === undefined) continue;
        const at = written.get(item.partitionKey);
        if (at === undefined || at.base < 0n) throw new Error(`no base offset for ${item.partitionKey} in the produce response`);
        if (record.stream !== streamName || stream === undefined) {
          streamName = record.stream;
          stream = journal.get(streamName);
          if (stream === undefined) {
            stream = { ranges: [], order: [] };
            journal.set(streamName, stream);
          }
        }
        if (at.range < 0) {
          at.range = stream.ranges.length;
          stream.ranges.push({ kafkaTopic: item.topic, partition, firstKafkaOffset: at.base, count: 0 });
        }
        stream.ranges[at.range]!.count += 1;
        stream.order.push(at.range);
        builder.add(record.stream, record.topic, record.offset, item.topic, partition, at.first + at.count);
        at.count += 1;
      }
      for (const [key, at] of written) {
        if (at.count > 0) ends.set(key, { kafkaTopic: at.kafkaTopic, partition: at.partition, end: at.base + BigInt(at.count) });
      }
    });
    return { journal, runs: builder.take(), ends };
  }

  /** The journal entries of a transaction's streams, from `placements`. */
  private journalMessages(
    journal: ReadonlyMap<string, { ranges: OpenRange[]; order: number[] }>,
    withTail: (message: Message) => Message,
  ): { stream: string; topic: string; messages: Message[] }[] {
    const result: { stream: string; topic: string; messages: Message[] }[] = [];
    for (const [stream, { ranges, order }] of journal) {
      const topic = this.layout.journalTopicFor(stream);
      if (topic === undefined) throw new Error(`no journal topic for stream ${stream}`);
      const messages = journalEntries(ranges, order).map((entry) => ({ ...withTail({ key: stream, value: encodeJournalEntry(entry) }), partition: 0 }));
      result.push({ stream, topic, messages });
    }
    return result;
  }

  /**
   * Decides at once how far the commit lets the index count its partitions complete, and
   * leaves the SQLite write (about 10 ms for a 10,000-record transaction over 1,000
   * containers) to after the lane has moved on: made synchronously here it held up the
   * answers and the sender's next transaction, with the broker idle (KAFKA.md, "thirteenth
   * machine"). Reads and the catch-up make pending writes first (`indexUpToDate`), so a read
   * right after the answer still finds the commit.
   *
   * The commit is durable in Kafka whatever happens to the write; a failure (a full disk
   * under the index file) only means reads need a catch-up from Kafka, which is started.
   */
  private indexOwnCommit(runs: readonly Run[], ends: ReadonlyMap<string, PartitionEnd>): void {
    if (this.index === undefined) return;
    const progress: IndexProgress[] = [];
    for (const [key, entry] of ends) {
      if (this.indexDirty) {
        keepLatest(this.ownEnd, key, entry);
      } else if ((this.partitionInFlight.get(key) ?? 0) > 0) {
        // Another transaction of this instance may hold records below this end and still end
        // with an unknown outcome; the index counts the partition complete only once none is out.
        keepLatest(this.stashedEnds, key, entry);
      } else {
        const stashed = this.stashedEnds.get(key);
        this.stashedEnds.delete(key);
        const end = stashed !== undefined && stashed.end > entry.end ? stashed.end : entry.end;
        progress.push({ kafkaTopic: entry.kafkaTopic, partition: entry.partition, indexedTo: end });
      }
    }
    this.queueIndexWrite({ runs, progress, ends });
  }

  /** Records the stashed ends of partitions no transaction is writing any more. */
  private settleStashedEnds(): void {
    if (this.index === undefined || this.stashedEnds.size === 0) return;
    const progress: IndexProgress[] = [];
    for (const [key, entry] of this.stashedEnds) {
      if ((this.partitionInFlight.get(key) ?? 0) > 0) continue;
      this.stashedEnds.delete(key);
      if (this.indexDirty) keepLatest(this.ownEnd, key, entry);
      else progress.push({ kafkaTopic: entry.kafkaTopic, partition: entry.partition, indexedTo: entry.end });
    }
    // Queued behind the commits whose ends these are, like every index write.
    if (progress.length > 0) this.queueIndexWrite({ runs: [], progress, ends: new Map() });
  }

  private queueIndexWrite(write: IndexWrite): void {
    this.indexWrites.push(write);
    this.indexWriteTimer ??= setImmediate(() => this.writePendingIndex());
  }

  /** Makes the pending index writes, in order. */
  private writePendingIndex(): void {
    if (this.indexWriteTimer !== undefined) {
      clearImmediate(this.indexWriteTimer);
      this.indexWriteTimer = undefined;
    }
    const index = this.index;
    if (index === undefined || this.indexWrites.length === 0) return;
    let failed = false;
    for (const write of this.indexWrites.splice(0)) {
      try {
        if (!failed) {
          index.record(write.runs, write.progress);
          continue;
        }
        // An earlier write failed: its records are in no span, so this one's progress may not
        // count the partitions complete past them. It waits for the catch-up, as the ends of
        // commits made while the index is dirty do.
        for (const entry of write.progress) {
          keepLatest(this.ownEnd, partitionKey(entry.kafkaTopic, entry.partition), { kafkaTopic: entry.kafkaTopic, partition: entry.partition, end: entry.indexedTo });
        }
        index.record(write.runs, []);
      } catch (error) {
        for (const [key, entry] of write.ends) keepLatest(this.unindexedEnds, key, entry);
        if (!failed) {
          this.indexError = `cannot write the topic index: ${describeError(error)}`;
          this.options.logger?.error({ err: error }, 'topic index write failed; it will catch up from Kafka');
        }
        failed = true;
      }
    }
    // After the loop: the catch-up it starts uses the index at once, which would make writes
    // of this loop not made yet out of order.
    if (failed) this.markIndexDirty();
  }

  /** The index with every pending write made: what any read of it, or other write, goes through. */
  private indexUpToDate(): TopicIndex | undefined {
    if (this.indexWrites.length > 0 || this.indexWriteTimer !== undefined) this.writePendingIndex();
    return this.index;
  }

  private markIndexDirty(): void {
    this.indexDirty = true;
    this.indexDirtyEpoch += 1;
    // What waited for other transactions now waits for the catch-up instead.
    for (const [key, entry] of this.stashedEnds) keepLatest(this.ownEnd, key, entry);
    this.stashedEnds.clear();
    void this.startCatchUp();
  }

  private retireProducer(lane: SenderLane): void {
    const producer = lane.producer;
    lane.producer = undefined;
    lane.registered = false;
    if (producer === undefined) return;
    const done = producer
      .disconnect()
      .catch(() => {})
      .finally(() => this.retiring.delete(done));
    this.retiring.add(done);
  }

  /**
   * Brings the index up to the last stable offset of every data partition, reading from
   * Kafka what it does not know. One run at a time; a request during a run runs again after.
   */
  private startCatchUp(): Promise<void> {
    if (this.catchingUp !== undefined) {
      this.catchUpAgain = true;
      return this.catchingUp;
    }
    this.catchingUp = (async () => {
      let retryDelayMs = this.options.catchUpRetryInitialMs;
      do {
        this.catchUpAgain = false;
        if (this.rebuildIndex) {
          this.rebuildIndex = false;
          this.indexUpToDate()?.clear();
          this.ownEnd.clear();
          this.indexDirtyEpoch += 1;
        }
        try {
          await this.catchUpOnce();
          this.indexError = undefined;
        } catch (error) {
          if (this.closed) return;
          this.indexError = `topic index cannot catch up with Kafka: ${describeError(error)}`;
          if (error instanceof CatchUpNotReadyError) this.options.logger?.info({ reason: error.message, retryInMs: retryDelayMs }, 'topic index catch-up waits for Kafka to settle');
          else this.options.logger?.warn({ err: error, retryInMs: retryDelayMs }, 'topic index catch-up failed; retrying');
          // Backs off so a long Kafka outage does not log a warning every second, but tries
          // again at once when Kafka answers again (markKafka): after a long outage the wait
          // had grown to 30 s, and for that long reads waited and health said degraded.
          const woken = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), retryDelayMs).unref();
            this.wakeCatchUp = () => {
              clearTimeout(timer);
              resolve(true);
            };
          });
          this.wakeCatchUp = undefined;
          retryDelayMs = woken ? this.options.catchUpRetryInitialMs : Math.min(retryDelayMs * 2, this.options.catchUpRetryMaxMs);
          this.catchUpAgain = true;
        }
      } while (this.catchUpAgain && !this.closed);
    })().finally(() => {
      this.catchingUp = undefined;
    });
    return this.catchingUp;
  }

  private async catchUpOnce(): Promise<void> {
    // Own commits' index writes can queue up during every await below; each use of the index
    // here goes through indexUpToDate so that they are made before it, in order.
    const index = this.indexUpToDate();
    const fetcher = this.fetcher;
    if (index === undefined || fetcher === undefined) return;
    const startedAtMs = Date.now();
    const epoch = this.indexDirtyEpoch;
    const targets: (CatchUpTarget & { from: bigint })[] = [];
    for (const { topic } of this.layout.dataTopics()) {
      for (const { partition, high, low } of await this.admin.fetchTopicOffsets(topic)) {
        const target = BigInt(high);
        let from = this.indexUpToDate()!.indexedTo(topic, partition);
        if (from > target && (await this.partitionReaches(fetcher, topic, partition, from))) {
          // Past the last stable offset but not past what Kafka holds: own commits count their
          // partitions complete at once, and their markers (or another transaction open before
          // them) hold the last stable offset back for a moment. Not a reason to rebuild.
          throw new CatchUpNotReadyError(`${topic}/${partition}: indexed to ${from}, past the last stable offset ${target} for now`);
        }
        if (from > target) {
          // The index knows offsets Kafka does not have: the topic was deleted and re-created.
          this.options.logger?.warn({ topic, partition, indexedTo: String(from), end: high }, 'topic index is ahead of Kafka; rebuilding it');
          this.indexUpToDate()!.clear();
          this.ownEnd.clear();
          this.indexDirtyEpoch += 1;
          this.catchUpAgain = true;
          return;
        }
        if (from < BigInt(low)) from = BigInt(low);
        const unindexed = this.unindexedEnds.get(partitionKey(topic, partition));
        if (unindexed !== undefined && unindexed.end > target) {
          throw new CatchUpNotReadyError(
            `${topic}/${partition}: records this instance wrote up to ${unindexed.end} are not settled yet ` +
              `(their transaction's outcome or its markers are still to come; last stable offset ${target})`,
          );
        }
        if (from < target) {
          this.catchUpPending.set(partitionKey(topic, partition), { kafkaTopic: topic, partition, target });
          targets.push({ kafkaTopic: topic, partition, target, from });
        }
      }
    }
    let records = 0;
    for (const { kafkaTopic, partition, target, from } of targets) {
      let offset = from;
      const builder = new RunBuilder(BigInt(this.options.maxSpanKafkaOffsets));
      while (offset < target) {
        if (this.closed) return;
        const fetched = await fetcher.fetch(kafkaTopic, partition, offset, CATCH_UP_FETCH_BYTES);
        for (const message of fetched.messages) {
          const kafkaOffset = BigInt(message.offset);
          if (kafkaOffset >= target) break;
          const identity = peekIdentity(message);
          // Someone else's message in our topic: not a record, nothing to index.
          if (identity === undefined) continue;
          builder.add(identity.stream, identity.topic, identity.offset, kafkaTopic, partition, kafkaOffset);
          records += 1;
        }
        if (fetched.nextOffset <= offset) {
          throw new Error(`${kafkaTopic}/${partition}: no progress at offset ${offset} (last stable offset ${fetched.lastStableOffset})`);
        }
        offset = fetched.nextOffset < target ? fetched.nextOffset : target;
        // Everything committed below `offset` is indexed now, own commits included.
        this.indexUpToDate()!.record(builder.take(), [{ kafkaTopic, partition, indexedTo: offset }]);
      }
      this.catchUpPending.delete(partitionKey(kafkaTopic, partition));
    }
    if (epoch === this.indexDirtyEpoch) {
      // Nothing new became uncertain during the run: everything committed up to each target is
      // indexed, and past it only this instance's own commits, which indexed themselves.
      this.indexUpToDate();
      const progress: IndexProgress[] = [];
      for (const [key, entry] of this.ownEnd) {
        // A transaction still out on the partition may end with an unknown outcome: wait for it.
        if ((this.partitionInFlight.get(key) ?? 0) > 0) keepLatest(this.stashedEnds, key, entry);
        else if (entry.end > index.indexedTo(entry.kafkaTopic, entry.partition)) {
          progress.push({ kafkaTopic: entry.kafkaTopic, partition: entry.partition, indexedTo: entry.end });
        }
      }
      index.record([], progress);
      this.ownEnd.clear();
      this.unindexedEnds.clear();
      this.indexDirty = false;
    }
    if (targets.length > 0) {
      this.options.logger?.info(
        { partitions: targets.length, records, spans: index.spanCount(), durationMs: Date.now() - startedAtMs },
        'topic index caught up with Kafka',
      );
    }
  }

  /** Whether Kafka holds a partition up to `offset` at least (its high watermark, open transactions included). */
  private async partitionReaches(fetcher: PartitionFetcher, topic: string, partition: number, offset: bigint): Promise<boolean> {
    try {
      // A fetch at the high watermark itself is answered, empty; beyond it, OFFSET_OUT_OF_RANGE.
      await fetcher.fetch(topic, partition, offset, PROBE_FETCH_BYTES, 'read_uncommitted');
      return true;
    } catch (error) {
      if (error instanceof OffsetOutOfRangeError) return false;
      throw error;
    }
  }

  /**
   * Records of one logical topic from `fromOffset` on, in offset order, at most
   * `limits.maxRecords` (default 1000) and about `limits.maxBytes` of payload (at least one
   * record). Starts at `fromOffset` or, if Kafka's retention deleted it, at the first record
   * still held. Each index span costs one or a few fetches of its Kafka range; no read scans
   * a whole Kafka topic.
   */
  async readTopic(stream: string, topic: string, fromOffset: number, limits?: ReadLimits): Promise<LogRecord[]> {
    if (this.closed) throw new ClosedError('Kafka log');
    // Every commit below `end` has queued its index write by now: made here, before the index is read.
    const index = this.indexUpToDate();
    const fetcher = this.fetcher;
    if (index === undefined || fetcher === undefined) throw new StoreUnavailableError('Kafka log is not open');
    const end = this.held.get(topicKey(stream, topic))?.nextOffset ?? 0;
    const maxRecords = limits?.maxRecords ?? DEFAULT_MAX_READ_RECORDS;
    const maxBytes = limits?.maxBytes ?? DEFAULT_MAX_READ_BYTES;
    const records: LogRecord[] = [];
    let bytes = 0;
    let next = Math.max(0, Math.floor(fromOffset));
    while (next < end && records.length < maxRecords) {
      let span = this.indexUpToDate()!.spanContaining(stream, topic, next);
      if (span === undefined) {
        if (this.indexDirty) {
          throw new StoreUnavailableError(
            `the topic index is catching up with Kafka; ${stream}/${topic} from offset ${next} cannot be read yet`,
          );
        }
        // Not in the index although the index is complete: Kafka's retention deleted it.
        span = index.spanAfter(stream, topic, next);
        if (span === undefined) break;
        next = span.firstOffset;
      }
      const spans = this.spansReadTogether(index, span, next, maxRecords - records.length);
      const full = await this.readSpans(fetcher, spans, next, (record) => {
        if (records.length > 0 && bytes + record.payload.byteLength > maxBytes) return false;
        records.push(record);
        bytes += record.payload.byteLength;
        next = record.offset + 1;
        return records.length < maxRecords;
      });
      if (!full) break;
      const last = spans[spans.length - 1]!;
      if (next <= last.lastOffset) {
        // The spans did not hold what the index said (records deleted by retention under them).
        next = last.lastOffset + 1;
      }
    }
    return records;
  }

  /**
   * The span, and the spans after it that one read takes with it: the topic's next records
   * (as many as the page may still take), in the same partition, each starting at most
   * `maxSpanKafkaOffsets` after the one before ends. A container that reports in every
   * transaction has a span in every transaction's batch of its partition, a batch apart;
   * fetching them together reads the same batches as fetching each (a fetch returns whole
   * batches) in a fraction of the fetches. Between them lie other containers' records, as
   * within a span, and the same bound holds: a read scans at most that many records of
   * others between two of its own.
   */
  private spansReadTogether(index: TopicIndex, first: Span, from: number, maxRecords: number): Span[] {
    const spans = [first];
    let records = first.lastOffset - Math.max(from, first.firstOffset) + 1;
    const maxGap = BigInt(this.options.maxSpanKafkaOffsets);
    while (records < maxRecords && spans.length < MAX_SPANS_READ_TOGETHER) {
      const previous = spans[spans.length - 1]!;
      const following = index.spanAfter(first.stream, first.topic, previous.lastOffset);
      if (
        following === undefined ||
        following.firstOffset !== previous.lastOffset + 1 ||
        following.kafkaTopic !== previous.kafkaTopic ||
        following.partition !== previous.partition ||
        following.firstKafkaOffset <= previous.lastKafkaOffset ||
        following.firstKafkaOffset - previous.lastKafkaOffset > maxGap
      ) {
        break;
      }
      spans.push(following);
      records += following.lastOffset - following.firstOffset + 1;
    }
    return spans;
  }

  /**
   * Feeds `take` the records of consecutive spans of one partition (spansReadTogether) from
   * logical offset `from` on, fetching from the first span's start to the last one's end and
   * stepping over a gap between two spans that a fetch ends in; false once `take` wants no more.
   */
  private async readSpans(fetcher: PartitionFetcher, spans: readonly Span[], from: number, take: (record: LogRecord) => boolean): Promise<boolean> {
    const first = spans[0]!;
    const lastKafkaOffset = spans[spans.length - 1]!.lastKafkaOffset;
    // The span's endpoints are exact positions: its last record (what latest() wants) is one fetch.
    let kafkaOffset = from === first.lastOffset ? first.lastKafkaOffset : first.firstKafkaOffset;
    let markersDeadlineMs: number | undefined;
    const topicBytes = Buffer.from(first.topic, 'utf8');
    /** The span the reader is in, and the next logical offset it takes (an overlap never yields a record twice). */
    let current = 0;
    let wanted = from;
    const enterSpanAt = (offset: bigint): void => {
      while (current < spans.length - 1 && offset > spans[current]!.lastKafkaOffset) current += 1;
    };
    while (kafkaOffset <= lastKafkaOffset) {
      let fetched;
      try {
        fetched = await fetcher.fetch(first.kafkaTopic, first.partition, kafkaOffset, stretchFetchBytes(lastKafkaOffset + 1n - kafkaOffset, this.fetchBytesPerOffset));
      } catch (error) {
        if (error instanceof OffsetOutOfRangeError) {
          const low = await this.logStartOffset(first.kafkaTopic, first.partition);
          if (low <= kafkaOffset || low > lastKafkaOffset) return true;
          kafkaOffset = low;
          continue;
        }
        throw asStoreError(`cannot read ${first.stream}/${first.topic} from Kafka`, error);
      }
      for (const message of fetched.messages) {
        const offset = BigInt(message.offset);
        if (offset > lastKafkaOffset) return true;
        enterSpanAt(offset);
        // Between two spans: other containers' records only.
        if (offset < spans[current]!.firstKafkaOffset) continue;
        // The key is the logical topic (codec.ts): other containers' records sharing the
        // partition are skipped without decoding the rest of them (the decoder is lazy).
        if (message.key === null || !message.key.equals(topicBytes)) continue;
        const identity = peekIdentity(message);
        if (identity === undefined || identity.stream !== first.stream || identity.topic !== first.topic || identity.offset < wanted) continue;
        const record = decodeRecord(message);
        if (record === undefined) continue;
        wanted = record.offset + 1;
        if (!take(record)) return false;
      }
      if (fetched.nextOffset <= kafkaOffset) {
        // Nothing readable yet at a position the index knows is committed: EndTxn returns
        // before the coordinator has written the commit markers into the data partitions, so
        // right after a commit the last stable offset can still be behind it for a moment.
        if (fetched.lastStableOffset > kafkaOffset) return true;
        if (Date.now() > (markersDeadlineMs ??= Date.now() + COMMIT_MARKER_WAIT_MS)) {
          throw new StoreUnavailableError(
            `${first.stream}/${first.topic}: committed records at ${first.kafkaTopic}/${first.partition}@${kafkaOffset} are not readable after ${COMMIT_MARKER_WAIT_MS} ms`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
        continue;
      }
      kafkaOffset = fetched.nextOffset;
      enterSpanAt(kafkaOffset);
      if (kafkaOffset < spans[current]!.firstKafkaOffset) kafkaOffset = spans[current]!.firstKafkaOffset;
    }
    return true;
  }

  /** How many bytes a read asks for per Kafka offset of a stretch it needs (FETCH_BYTES_PER_OFFSET). */
  private get fetchBytesPerOffset(): number {
    return this.options.compressionCodec === COMPRESSION_CODEC_IDS.none ? FETCH_BYTES_PER_OFFSET.uncompressed : FETCH_BYTES_PER_OFFSET.compressed;
  }

  private async logStartOffset(kafkaTopic: string, partition: number): Promise<bigint> {
    const offsets = await this.admin.fetchTopicOffsets(kafkaTopic);
    return BigInt(offsets.find((entry) => entry.partition === partition)?.low ?? '0');
  }


  /** The latest record of a logical topic: one fetch at the position the index holds for it. */
  async latest(stream: string, topic: string): Promise<LogRecord | undefined> {
    if (this.closed) throw new ClosedError('Kafka log');
    const end = this.held.get(topicKey(stream, topic))?.nextOffset ?? 0;
    if (end === 0) return undefined;
    const [record] = await this.readTopic(stream, topic, end - 1, { maxRecords: 1 });
    return record;
  }

  /**
   * The stream in this site's commit order, after `afterPosition` (stream-journal.ts): reads
   * the journal from the position's entry, read_committed, then exactly the Kafka ranges the
   * entries name. Stops at the journal's last stable offset; right after one of this
   * instance's own commits it waits (briefly) for the commit markers, so a listener woken by
   * `onDurable` always finds the records.
   */
  async readStream(stream: string, afterPosition: number, limits?: ReadLimits): Promise<StreamPage> {
    if (this.closed) throw new ClosedError('Kafka log');
    const fetcher = this.fetcher;
    if (fetcher === undefined) throw new StoreUnavailableError('Kafka log is not open');
    const journalTopic = this.layout.journalTopicFor(stream);
    if (journalTopic === undefined) return { records: [], nextPosition: afterPosition };
    const page = new PageFill(limits?.maxRecords ?? DEFAULT_MAX_READ_RECORDS, limits?.maxBytes ?? DEFAULT_MAX_READ_BYTES);
    const start = splitPosition(afterPosition);
    let journalOffset = start.journalOffset;
    let nextPosition = afterPosition;
    let markersDeadlineMs: number | undefined;
    try {
      while (!page.full()) {
        const read = await this.fetchJournal(fetcher, journalTopic, journalOffset);
        const fetched = read.fetched;
        journalOffset = read.from;
        if (fetched.messages.length === 0) {
          if (fetched.nextOffset > journalOffset) {
            // Only aborted entries and commit markers: step over them.
            journalOffset = fetched.nextOffset;
            continue;
          }
          // Nothing committed at or after here that a read_committed reader may see yet. If this
          // instance committed an entry here, its markers are on their way: wait for them.
          if (page.records.length === 0 && (this.journalEnds.get(stream) ?? 0n) > journalOffset) {
            if (Date.now() > (markersDeadlineMs ??= Date.now() + COMMIT_MARKER_WAIT_MS)) {
              throw new StoreUnavailableError(`${journalTopic}@${journalOffset}: committed entries are not readable after ${COMMIT_MARKER_WAIT_MS} ms`);
            }
            await new Promise((resolve) => setTimeout(resolve, 10));
            continue;
          }
          break;
        }
        let stopped = false;
        for (const message of fetched.messages) {
          const offset = BigInt(message.offset);
          if (offset < journalOffset) continue;
          const skip = offset === start.journalOffset ? start.taken : 0;
          const entry = decodeJournalEntry(message.value, `${journalTopic}@${offset}`);
          const complete = await this.readEntry(fetcher, entry, skip, page, (taken) => {
            nextPosition = positionOf(offset, taken);
          });
          if (!complete) {
            stopped = true;
            break;
          }
          nextPosition = Math.max(nextPosition, positionOf(offset, entry.records));
          journalOffset = offset + 1n;
          if (page.full()) {
            stopped = true;
            break;
          }
        }
        if (stopped) break;
        if (fetched.nextOffset > journalOffset) journalOffset = fetched.nextOffset;
      }
    } catch (error) {
      // What was read so far is a correct page; the error shows again at the next call.
      if (page.records.length > 0) return { records: page.records, nextPosition };
      throw asStoreError(`cannot read stream ${stream} from Kafka`, error);
    }
    return { records: page.records, nextPosition };
  }

  /** One fetch of a journal from `from`, or from its first entry left when retention deleted `from`. */
  private async fetchJournal(fetcher: PartitionFetcher, journalTopic: string, from: bigint): Promise<{ fetched: FetchedPartition; from: bigint }> {
    try {
      return { fetched: await fetcher.fetch(journalTopic, 0, from, JOURNAL_FETCH_BYTES), from };
    } catch (error) {
      if (!(error instanceof OffsetOutOfRangeError)) throw error;
      const low = await this.logStartOffset(journalTopic, 0);
      if (low <= from) throw error;
      return { fetched: await fetcher.fetch(journalTopic, 0, low, JOURNAL_FETCH_BYTES), from: low };
    }
  }

  /**
   * Feeds the page the entry's records from index `skip` on, in the entry's order, fetching
   * each range from where it is needed; `taken(n)` says the first n of the entry are consumed.
   * False when the page filled before the entry's end.
   *
   * A fetch returns whole record batches, so a range's fetch brings more of it than one page
   * takes when the entry is larger than the page; what the page leaves is kept (see
   * `keepLeftovers`) for the next page, which starts exactly there. Records are decoded only
   * when the page takes them.
   */
  private async readEntry(fetcher: PartitionFetcher, entry: JournalEntry, skip: number, page: PageFill, taken: (count: number) => void): Promise<boolean> {
    const { ranges, order } = entry;
    const used = new Array<number>(ranges.length).fill(0);
    for (let k = 0; k < skip && k < order.length; k += 1) used[order[k]!]! += 1;
    /** Per range, messages fetched and not yet taken (undefined: not a message, or deleted by retention). */
    const buffered: (FetchedMessage | undefined)[][] = ranges.map(() => []);
    const heads = new Array<number>(ranges.length).fill(0);
    try {
      for (let k = skip; k < order.length; k += 1) {
        const r = order[k]!;
        const range = ranges[r]!;
        if (heads[r]! >= buffered[r]!.length) {
          const from = range.firstKafkaOffset + BigInt(used[r]!);
          const left = this.takeLeftovers(range, from);
          buffered[r] = left?.slots ?? (await this.fetchRange(fetcher, range, from));
          heads[r] = left?.head ?? 0;
        }
        const message = buffered[r]![heads[r]!];
        const record = message === undefined ? undefined : decodeRecord(message);
        if (record !== undefined && !page.take(record)) return false;
        heads[r]! += 1;
        used[r]! += 1;
        taken(k + 1);
        if (page.full()) return k + 1 === order.length;
      }
      return true;
    } finally {
      this.keepLeftovers(ranges, used, buffered, heads);
    }
  }

  /** Keeps what a page left of each range's fetched messages, under the key the next page asks by. */
  private keepLeftovers(ranges: readonly JournalRange[], used: readonly number[], buffered: readonly (FetchedMessage | undefined)[][], heads: readonly number[]): void {
    for (let r = 0; r < ranges.length; r += 1) {
      const left = buffered[r]!.length - heads[r]!;
      if (left <= 0) continue;
      const range = ranges[r]!;
      const key = leftoverKey(range, range.firstKafkaOffset + BigInt(used[r]!));
      const previous = this.rangeLeftovers.get(key);
      if (previous !== undefined) this.leftoverSlots -= previous.slots.length;
      this.rangeLeftovers.delete(key);
      // The fetched array itself, from where the page stopped: a copy of the rest per page made
      // reading a large range in small pages quadratic.
      this.rangeLeftovers.set(key, { slots: buffered[r]!, head: heads[r]! });
      this.leftoverSlots += buffered[r]!.length;
    }
    // Oldest first: a reader that went away leaves its pages' leftovers behind.
    for (const [key, left] of this.rangeLeftovers) {
      if (this.leftoverSlots <= MAX_LEFTOVER_SLOTS) break;
      this.rangeLeftovers.delete(key);
      this.leftoverSlots -= left.slots.length;
    }
  }

  private takeLeftovers(range: JournalRange, from: bigint): { readonly slots: (FetchedMessage | undefined)[]; readonly head: number } | undefined {
    const key = leftoverKey(range, from);
    const left = this.rangeLeftovers.get(key);
    if (left === undefined) return undefined;
    this.rangeLeftovers.delete(key);
    this.leftoverSlots -= left.slots.length;
    return left;
  }

  /**
   * The messages of a committed range from `from` on, as far as one fetch goes (at least one),
   * one slot per Kafka offset. Read uncommitted: the range is committed (its journal entry is),
   * and this way a reader does not wait for other transactions still open on the partition.
   */
  private async fetchRange(fetcher: PartitionFetcher, range: JournalRange, from: bigint): Promise<(FetchedMessage | undefined)[]> {
    const end = range.firstKafkaOffset + BigInt(range.count);
    let fetched;
    try {
      fetched = await fetcher.fetch(range.kafkaTopic, range.partition, from, stretchFetchBytes(end - from, this.fetchBytesPerOffset), 'read_uncommitted');
    } catch (error) {
      if (!(error instanceof OffsetOutOfRangeError)) throw error;
      // Retention deleted records of the range: they count as read.
      const low = await this.logStartOffset(range.kafkaTopic, range.partition);
      if (low <= from) throw error;
      return new Array<undefined>(Number((low < end ? low : end) - from)).fill(undefined);
    }
    const slots: (FetchedMessage | undefined)[] = [];
    for (const message of fetched.messages) {
      const offset = BigInt(message.offset);
      if (offset < from) continue;
      if (offset >= end) break;
      while (from + BigInt(slots.length) < offset) slots.push(undefined);
      slots.push(message);
    }
    if (slots.length === 0) {
      if (fetched.nextOffset > from) return new Array<undefined>(Number((fetched.nextOffset < end ? fetched.nextOffset : end) - from)).fill(undefined);
      throw new StoreUnavailableError(`${range.kafkaTopic}/${range.partition}@${from}: records of a committed transaction are not readable`);
    }
    return slots;
  }

  /**
   * How many records of the stream lie after `afterPosition` (a link's lag), summed from the
   * journal entries, without reading data. Answers from a cache refreshed in the background
   * (at most one read per stream at a time), so it is synchronous and may lag a moment behind;
   * undefined until the first count for the stream.
   */
  recordsAfter(stream: string, afterPosition: number): number | undefined {
    const key = `${stream}\u0000${afterPosition}`;
    const cached = this.lagCache.get(key);
    const end = this.journalEnds.get(stream) ?? 0n;
    // At most one count per position a second: under load the journal's end moves with every commit.
    const due = cached === undefined || (cached.end !== end && Date.now() - cached.countedAtMs >= LAG_RECOUNT_MS);
    if (due && !this.lagCounting.has(key) && !this.closed) {
      this.lagCounting.add(key);
      void this.countAfter(stream, afterPosition)
        .then((records) => {
          this.lagCache.delete(key);
          this.lagCache.set(key, { end, records, countedAtMs: Date.now() });
          // Links ask at the positions they stand at: keep the few most recent.
          for (const oldest of this.lagCache.keys()) {
            if (this.lagCache.size <= 64) break;
            this.lagCache.delete(oldest);
          }
        })
        .catch(() => undefined)
        .finally(() => this.lagCounting.delete(key));
    }
    return cached?.records;
  }

  private async countAfter(stream: string, afterPosition: number): Promise<number> {
    const fetcher = this.fetcher;
    const journalTopic = this.layout.journalTopicFor(stream);
    if (fetcher === undefined || journalTopic === undefined) return 0;
    const start = splitPosition(afterPosition);
    let journalOffset = start.journalOffset;
    let records = 0;
    // Bounded: a backlog beyond this many fetches (about 250 MB of journal) counts as what was read.
    for (let fetches = 0; fetches < 1_000; fetches += 1) {
      const read = await this.fetchJournal(fetcher, journalTopic, journalOffset);
      const fetched = read.fetched;
      journalOffset = read.from;
      for (const message of fetched.messages) {
        const offset = BigInt(message.offset);
        if (offset < journalOffset) continue;
        const entry = decodeJournalEntry(message.value, `${journalTopic}@${offset}`);
        records += Math.max(0, entry.records - (offset === start.journalOffset ? start.taken : 0));
      }
      if (fetched.nextOffset <= journalOffset) break;
      journalOffset = fetched.nextOffset;
    }
    return records;
  }

  onDurable(listener: (stream: string) => void): () => void {
    this.durableListeners.add(listener);
    return () => this.durableListeners.delete(listener);
  }

  private notifyDurable(stream: string): void {
    for (const listener of this.durableListeners) {
      try {
        listener(stream);
      } catch (error) {
        this.options.logger?.warn({ err: error, stream }, 'onDurable listener failed');
      }
    }
  }

  /**
   * Other ingest instances of the site commit to the same journals: while someone listens,
   * their stable ends are checked every second and a move wakes the listeners.
   */
  private async watchJournals(): Promise<void> {
    if (this.durableListeners.size === 0 || this.journalWatching || this.closed || this.kafkaState.status !== 'ok') return;
    this.journalWatching = true;
    try {
      for (const { topic, stream } of this.layout.journalTopicList()) {
        const end = await withTimeout(this.journalStableEnd(topic, this.journalEnds.get(stream) ?? 0n), PROBE_TIMEOUT_MS, 'journal end not answered in time');
        if (end > (this.journalEnds.get(stream) ?? 0n)) {
          this.journalEnds.set(stream, end);
          this.notifyDurable(stream);
        }
      }
    } catch {
      // The probe reports Kafka's state; the next tick tries again.
    } finally {
      this.journalWatching = false;
    }
  }

  /**
   * A journal's last stable offset, from a read_committed fetch (kafkajs's admin asks
   * ListOffsets without an isolation level, which the broker answers with the high watermark:
   * past entries of transactions still open, which a reader would wait for in vain).
   */
  private async journalStableEnd(journalTopic: string, from: bigint): Promise<bigint> {
    const fetcher = this.fetcher;
    if (fetcher === undefined) throw new Error('the fetcher is connected before the journals are read');
    const { fetched } = await this.fetchJournal(fetcher, journalTopic, from);
    return fetched.lastStableOffset;
  }

  private async readConsumerCursors(): Promise<void> {
    const fetcher = this.fetcher;
    if (fetcher === undefined) throw new Error('the fetcher is connected before the cursors are read');
    await readCompacted(
      { admin: this.admin, fetcher, timeoutMs: this.options.recoveryTimeoutMs, topic: this.layout.consumerCursorTopic, what: 'consumer cursor' },
      (message) => {
        const { name, position } = decodeConsumerCursor(message);
        if (position === undefined) this.consumerCursors.delete(name);
        else this.consumerCursors.set(name, position);
      },
    );
  }

  /** A named cursor as read at open or committed since (one instance of a site runs its links). */
  async getCursor(name: string): Promise<number | undefined> {
    if (this.closed) throw new ClosedError('Kafka log');
    return this.consumerCursors.get(name);
  }

  /** Durable (acks=all to the compacted consumer-cursor topic) when it resolves. */
  async commitCursor(name: string, position: number): Promise<void> {
    if (this.closed) throw new ClosedError('Kafka log');
    if (!Number.isSafeInteger(position) || position < 0) throw new InvalidInputError('bad-position', `cursor ${name}: position must be a non-negative integer`);
    try {
      this.cursorProducer ??= (async () => {
        const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: PRODUCER_RETRY });
        await producer.connect();
        return producer;
      })().catch((error: unknown) => {
        this.cursorProducer = undefined;
        throw error;
      });
      const producer = await this.cursorProducer;
      await producer.send({ topic: this.layout.consumerCursorTopic, acks: -1, messages: [{ key: name, value: JSON.stringify({ position }) }] });
    } catch (error) {
      throw asStoreError(`cursor ${name} not committed to Kafka`, error);
    }
    this.consumerCursors.set(name, position);
  }

  /**
   * The writer of per-customer topics (customer-topics.ts): its own transactional id, this
   * log's client, and the partitions, replication and content types of the site's topics
   * unless given. Call its `open()` before writing.
   */
  customerTopicWriter(options: { readonly topics: ReadonlyMap<string, string>; readonly partitions?: number; readonly retentionMs?: number }): KafkaCustomerTopicWriter {
    if (this.closed) throw new ClosedError('Kafka log');
    const fetcher = this.fetcher;
    if (fetcher === undefined) throw new Error('the Kafka log is opened before its customer topics');
    const [first] = this.layout.dataTopics();
    return new KafkaCustomerTopicWriter({
      siteId: this.siteId,
      kafka: this.kafka,
      admin: this.admin,
      fetcher,
      prefix: this.layout.prefix,
      topics: options.topics,
      partitions: options.partitions ?? first?.settings.partitions ?? 1,
      replicationFactor: this.layout.highWaterSettings.replicationFactor,
      minInsyncReplicas: this.layout.highWaterSettings.minInsyncReplicas,
      retentionMs: options.retentionMs ?? -1,
      contentTypeOf: (stream) => this.layout.contentTypeOf(stream),
      recoveryTimeoutMs: this.options.recoveryTimeoutMs,
      compressionCodec: this.options.compressionCodec,
      ...(this.options.logger === undefined ? {} : { logger: this.options.logger.child({ component: 'customer-topics' }) }),
    });
  }

  /** The streams this site stores. */
  listStreams(): string[] {
    return [...this.options.streams];
  }

  /** Every logical topic of the stream with its next offset, from the committed high water (memory). */
  listTopics(stream: string): TopicHighWater[] {
    const prefix = `${stream}\u0000`;
    const result: TopicHighWater[] = [];
    for (const [key, held] of this.held) {
      if (key.startsWith(prefix)) result.push({ stream, topic: key.slice(prefix.length), nextOffset: held.nextOffset });
    }
    return result;
  }

  /** Where a logical topic stands (the next offset), or undefined for one never seen. */
  topicHighWater(stream: string, topic: string): { readonly nextOffset: number } | undefined {
    const held = this.held.get(topicKey(stream, topic));
    return held === undefined ? undefined : { nextOffset: held.nextOffset };
  }

  /** The next offset this site will accept for a topic; 0 for a topic it has never seen. */
  async highWater(stream: string, topic: string): Promise<number> {
    if (this.closed) throw new ClosedError('Kafka log');
    return this.held.get(topicKey(stream, topic))?.nextOffset ?? 0;
  }

  private markKafka(status: 'ok' | 'unavailable', reason?: string): void {
    if (this.kafkaState.status === status && this.kafkaState.reason === reason) return;
    if (status === 'ok' && this.kafkaState.status === 'unavailable') {
      this.options.logger?.info({ after: this.kafkaState.reason }, 'Kafka answers again');
      this.wakeCatchUp?.();
    } else if (status === 'unavailable' && this.kafkaState.status === 'ok') {
      this.options.logger?.warn({ reason }, 'Kafka unavailable; batches are refused (503) until it answers');
    }
    this.kafkaState = { status, ...(reason === undefined ? {} : { reason }), sinceMs: this.kafkaState.status === status ? this.kafkaState.sinceMs : Date.now() };
  }

  /**
   * While no transaction has talked to Kafka lately, asks it for the high-water topic's
   * metadata, so an outage (and the end of one) shows in health() even when nobody sends.
   */
  private async probe(): Promise<void> {
    if (this.probing || this.closed) return;
    if (this.inFlight > 0 && this.kafkaState.status === 'ok') return;
    if (this.kafkaState.status === 'ok' && Date.now() - this.lastKafkaContactMs < this.options.healthProbeIntervalMs) return;
    this.probing = true;
    try {
      await withTimeout(
        this.admin.fetchTopicMetadata({ topics: [this.layout.highWaterTopic] }),
        PROBE_TIMEOUT_MS,
        `no answer within ${PROBE_TIMEOUT_MS} ms`,
      );
      this.lastKafkaContactMs = Date.now();
      this.markKafka('ok');
      if (this.indexError !== undefined) void this.startCatchUp();
    } catch (error) {
      if (!this.closed) this.markKafka('unavailable', `Kafka at ${this.options.brokers.join(',')} does not answer: ${describeError(error)}`);
    } finally {
      this.probing = false;
    }
  }

  /** Whether ingest can take batches now, and if not, why; plus the figures behind it. */
  health(): HealthReport {
    let status: HealthStatus = 'ok';
    let reason: string | undefined;
    const full = this.pendingRecords >= this.options.maxPendingRecords;
    if (this.closed) {
      status = 'unavailable';
      reason = 'closed';
    } else if (this.kafkaState.status === 'unavailable') {
      status = 'unavailable';
      reason = this.kafkaState.reason;
    } else if (full) {
      status = 'unavailable';
      reason = `Kafka is behind: ${this.pendingRecords} records waiting (limit ${this.options.maxPendingRecords})`;
    } else if (this.lastCommitDurationMs !== undefined && this.lastCommitDurationMs > this.options.slowCommitMs) {
      status = 'degraded';
      reason = `Kafka is slow: the last transaction took ${this.lastCommitDurationMs} ms`;
    } else if (this.indexError !== undefined) {
      status = 'degraded';
      reason = this.indexError;
    } else if (this.indexDirty) {
      status = 'degraded';
      reason = `topic index catching up with Kafka (${this.catchUpPending.size} partitions to read); some reads wait`;
    }
    if (status !== this.lastHealth.status || reason !== this.lastHealth.reason) {
      this.lastHealth = { status, reason, sinceMs: status === this.lastHealth.status ? this.lastHealth.sinceMs : Date.now() };
    }
    return {
      component: 'kafka-log',
      status,
      ...(reason === undefined ? {} : { reason }),
      sinceMs: this.lastHealth.sinceMs,
      details: {
        brokers: this.options.brokers,
        topicPrefix: this.layout.prefix,
        pendingRecords: this.pendingRecords,
        maxPendingRecords: this.options.maxPendingRecords,
        commits: this.commitsTotal,
        refusedWhileBehind: this.refusedBusyTotal,
        senders: [...this.lanes.keys()].filter((sender) => sender !== ''),
        fencedTransactions: this.fencedTotal,
        waitsForAnotherSendersTopics: this.claimWaitsTotal,
        lastCommitAt: this.lastCommitAtMs === undefined ? null : new Date(this.lastCommitAtMs).toISOString(),
        lastCommitDurationMs: this.lastCommitDurationMs ?? null,
        topics: this.held.size,
        indexPartitionsCatchingUp: this.catchUpPending.size,
        // Which of kafkajs's produce internals this process replaced (kafkajs-speedups.ts);
        // 'too-late' parts run kafkajs's own code: slower, never different.
        kafkajsSpeedups: speedups,
      },
    };
  }

  /** Lets calls already accepted finish, then disconnects everything. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (let busy = [...this.lanes.values()].filter((lane) => lane.draining !== undefined); busy.length > 0; busy = [...this.lanes.values()].filter((lane) => lane.draining !== undefined)) {
        await Promise.allSettled(busy.map((lane) => lane.draining));
      }
      await this.shutdown();
    })();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.rangeLeftovers.clear();
    this.leftoverSlots = 0;
    if (this.probeTimer !== undefined) clearInterval(this.probeTimer);
    if (this.journalWatchTimer !== undefined) clearInterval(this.journalWatchTimer);
    const cursorProducer = this.cursorProducer;
    this.cursorProducer = undefined;
    if (cursorProducer !== undefined) await cursorProducer.then((producer) => producer.disconnect()).catch(() => {});
    const producers = [...this.lanes.values()].flatMap((lane) => {
      const producer = lane.producer;
      lane.producer = undefined;
      return producer === undefined ? [] : [producer];
    });
    await Promise.allSettled([...producers.map((producer) => producer.disconnect()), ...this.retiring]);
    // A catch-up waiting to try again would hold the close for up to catchUpRetryMaxMs.
    this.wakeCatchUp?.();
    await this.catchingUp?.catch(() => {});
    await this.fetcher?.disconnect().catch(() => {});
    this.indexUpToDate()?.close();
    await this.admin.disconnect().catch(() => {});
  }
}
