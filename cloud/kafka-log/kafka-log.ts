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
 * 3. One writer per site. The transactional id is `portcall-${siteId}-ingest`: a second
 *    instance for the same site fences the first, whose writes then fail instead of forking.
 * 4. Group commit. Calls that arrive while a transaction is in flight are validated one by
 *    one against the state the earlier ones leave, and the accepted ones share the next
 *    transaction; a refused call (gap, fork, bad input) fails alone.
 *
 * Fork check: only the origin of each topic's last offset is kept (in the high-water entry),
 * so a duplicate AT the last held offset with another origin is a TopicForkError, while a
 * duplicate of an older offset is dropped without comparing origins. Reading the data topic
 * back to compare older offsets would cost a fetch per duplicate on every resend.
 *
 * `latest()` is an in-memory read model, rebuilt on every start by a background consumer that
 * reads the data topics from their beginning (and fed directly by this instance's own
 * commits). After a restart it lags until that consumer has caught up.
 */
import { randomUUID } from 'node:crypto';

import kafkajs, {
  Kafka,
  Partitioners,
  type Admin,
  type Consumer,
  type Message,
  type Producer,
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
  topicKey,
  type LogRecord,
  type ReplicaSink,
  type ReplicateResult,
  type TopicHighWater,
  type TopicReader,
} from '../../core/index.js';
import {
  dataTopicName,
  decodeRecord,
  encodeHighWater,
  encodeRecord,
  encodedSizeBytes,
  highWaterTopicName,
  type HeldTopic,
} from './codec.js';
import { readHighWater } from './highwater-reader.js';
import { kafkajsLogCreator, kafkajsLogLevel } from './kafkajs-logging.js';

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
}

const DEFAULT_TOPIC_PREFIX = 'portcall';
const DEFAULT_PARTITIONS = 6;
const DEFAULT_REPLICATION_FACTOR = 1;
const DEFAULT_CONNECT_TIMEOUT_MS = 3_000;
const DEFAULT_RECOVERY_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_RECORD_BYTES = 1_000_000;
/**
 * kafkajs puts every message for one partition of one send into a single record batch, and
 * the broker refuses a batch above `message.max.bytes` (1 MiB by default). Sending a large
 * group commit in pieces of this size keeps each batch under it.
 */
const SEND_CHUNK_BYTES = 512 * 1024;
/** Record framing plus the JSON around nextOffset and origin, as an upper bound. */
const HIGH_WATER_ENTRY_OVERHEAD_BYTES = 128;
/** Payload bytes gathered into one transaction at most (unless a single call is larger). */
const MAX_TRANSACTION_BYTES = 16 * 1024 * 1024;
/** The coordinator aborts a transaction of ours left open this long (a crashed process). */
const TRANSACTION_TIMEOUT_MS = 60_000;
/**
 * Bounded, so a replicate() against a dead broker fails in seconds with a retriable error
 * rather than hanging; kafkajs's default for idempotent producers is to retry forever.
 */
const RETRY = { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 };
/** How long an abort after a failed send may take before the producer is dropped anyway. */
const ABORT_TIMEOUT_MS = 5_000;
/** Kept short so closing, which waits for a pending fetch, is quick. */
const LATEST_FETCH_MAX_WAIT_MS = 500;
/**
 * After a broker restart the group still lists the reader's previous member until its session
 * expires, and the reader's JoinGroup waits for that. The reader commits nothing, so a short
 * session costs nothing but shortens that wait (the broker's minimum is 6 s by default).
 */
const LATEST_SESSION_TIMEOUT_MS = 10_000;
/**
 * kafkajs's disconnect waits for in-flight requests, including such a JoinGroup; close() stops
 * waiting after this and lets the disconnect finish in the background.
 */
const CLOSE_WAIT_MS = 5_000;
/** Kafka's own rule for topic names. */
const KAFKA_TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

interface PendingReplicate {
  readonly records: readonly LogRecord[];
  readonly resolve: (result: ReplicateResult) => void;
  readonly reject: (error: unknown) => void;
}

interface StagedTopic {
  readonly stream: string;
  readonly topic: string;
  readonly held: HeldTopic;
}

interface AcceptedCall {
  readonly call: PendingReplicate;
  readonly stored: readonly LogRecord[];
  readonly result: ReplicateResult;
}

interface ResolvedOptions {
  readonly siteId: string;
  readonly brokers: string[];
  readonly topicPrefix: string;
  readonly streams: readonly string[];
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly clientId: string;
  readonly logger: Logger | undefined;
  readonly connectTimeoutMs: number;
  readonly recoveryTimeoutMs: number;
  readonly maxRecordBytes: number;
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
  for (const name of [highWaterTopicName(topicPrefix), ...options.streams.map((s) => dataTopicName(topicPrefix, s))]) {
    if (!KAFKA_TOPIC_NAME.test(name)) {
      throw new ConfigError(
        `KafkaLog: ${JSON.stringify(name)} is not a valid Kafka topic name (letters, digits, '.', '_', '-', at most 249); check topicPrefix and streams`,
      );
    }
  }
  if (options.streams.includes('highwater')) {
    throw new ConfigError(`KafkaLog: a stream cannot be named 'highwater'; its data topic would be the high-water topic`);
  }
  const positiveInteger = (name: string, value: number | undefined, fallback: number): number => {
    const resolved = value ?? fallback;
    if (!Number.isSafeInteger(resolved) || resolved < 1) {
      throw new ConfigError(`KafkaLog: ${name} must be a positive integer, got ${String(value)}`);
    }
    return resolved;
  };
  return {
    siteId: options.siteId,
    brokers: options.brokers,
    topicPrefix,
    streams: [...options.streams],
    partitions: positiveInteger('partitions', options.partitions, DEFAULT_PARTITIONS),
    replicationFactor: positiveInteger('replicationFactor', options.replicationFactor, DEFAULT_REPLICATION_FACTOR),
    clientId: options.clientId ?? `portcall-${options.siteId}`,
    logger: options.logger,
    connectTimeoutMs: positiveInteger('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
    recoveryTimeoutMs: positiveInteger('recoveryTimeoutMs', options.recoveryTimeoutMs, DEFAULT_RECOVERY_TIMEOUT_MS),
    maxRecordBytes: positiveInteger('maxRecordBytes', options.maxRecordBytes, DEFAULT_MAX_RECORD_BYTES),
  };
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

/** Cuts a transaction's messages into sends that stay under the broker's batch size limit. */
function chunkMessages(items: readonly { topic: string; message: Message; sizeBytes: number }[]): TopicMessages[][] {
  const chunks: TopicMessages[][] = [];
  let current = new Map<string, Message[]>();
  let currentBytes = 0;
  const flush = (): void => {
    if (current.size === 0) return;
    chunks.push([...current].map(([topic, messages]) => ({ topic, messages })));
    current = new Map();
    currentBytes = 0;
  };
  for (const item of items) {
    if (currentBytes > 0 && currentBytes + item.sizeBytes > SEND_CHUNK_BYTES) flush();
    let messages = current.get(item.topic);
    if (messages === undefined) {
      messages = [];
      current.set(item.topic, messages);
    }
    messages.push(item.message);
    currentBytes += item.sizeBytes;
  }
  flush();
  return chunks;
}

export class KafkaLog implements ReplicaSink, TopicReader {
  readonly siteId: string;
  private readonly options: ResolvedOptions;
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly transactionalId: string;
  private readonly dataTopics: ReadonlyMap<string, string>;
  private readonly highWaterTopic: string;
  /** Committed state: what Kafka holds, per topicKey. */
  private held = new Map<string, HeldTopic>();
  private readonly latestRecords = new Map<string, LogRecord>();
  private producer: Producer | undefined;
  /** Set when a commit's outcome is unknown; the map must be re-read before it is trusted. */
  private resyncNeeded = false;
  private readonly retiring = new Set<Promise<void>>();
  private latestConsumer: Consumer | undefined;
  private latestGroupId: string | undefined;
  private queue: PendingReplicate[] = [];
  private draining: Promise<void> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(options: ResolvedOptions) {
    this.options = options;
    this.siteId = options.siteId;
    this.transactionalId = `portcall-${options.siteId}-ingest`;
    this.dataTopics = new Map(options.streams.map((stream) => [stream, dataTopicName(options.topicPrefix, stream)]));
    this.highWaterTopic = highWaterTopicName(options.topicPrefix);
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: options.brokers,
      connectionTimeout: options.connectTimeoutMs,
      retry: RETRY,
      logLevel: kafkajsLogLevel(options.logger),
      logCreator: kafkajsLogCreator(options.logger),
    });
    this.admin = this.kafka.admin();
  }

  /**
   * Connects, creates missing topics, registers this site's transactional id, recovers the
   * high water from Kafka and starts the `latest()` read model. Rejects with a ConfigError for
   * bad options or a misconfigured existing topic, and a StoreUnavailableError when Kafka
   * cannot be reached or recovery does not finish within `recoveryTimeoutMs`.
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
    // The high water is read after the transactional id is registered. Registering it makes
    // the coordinator settle a transaction a crashed predecessor left open: abort it, or, if
    // the predecessor had already asked to commit, complete the commit. Read before that, the
    // last stable offset would stop short of entries that are committed a moment later.
    this.producer = await this.connectProducer();
    this.held = await this.recoverHighWater();
    await this.startLatestReader();
  }

  private async ensureTopics(): Promise<void> {
    const existing = new Set(await this.admin.listTopics());
    const wanted = [
      ...[...this.dataTopics.values()].map((topic) => ({ topic, configEntries: [] as { name: string; value: string }[] })),
      {
        topic: this.highWaterTopic,
        // Compaction keeps the last entry per logical topic forever; time-based deletion would
        // silently forget a quiet topic's offsets and let its old records in again.
        configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
      },
    ];
    const missing = wanted.filter(({ topic }) => !existing.has(topic));
    if (missing.length > 0) {
      // Returns false when another process created them first, which is just as good.
      await this.admin.createTopics({
        waitForLeaders: true,
        topics: missing.map(({ topic, configEntries }) => ({
          topic,
          numPartitions: this.options.partitions,
          replicationFactor: this.options.replicationFactor,
          configEntries,
        })),
      });
    }
    if (existing.has(this.highWaterTopic)) await this.checkHighWaterTopicConfig();
  }

  private async checkHighWaterTopicConfig(): Promise<void> {
    const described = await this.admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: this.highWaterTopic, configNames: ['cleanup.policy'] }],
    });
    const policy = described.resources[0]?.configEntries.find((entry) => entry.configName === 'cleanup.policy')?.configValue;
    if (policy === undefined || !policy.split(',').includes('compact')) {
      throw new ConfigError(
        `Kafka topic ${this.highWaterTopic} exists with cleanup.policy=${String(policy)}; it must be 'compact', ` +
          `or offsets of quiet topics are deleted and their records would be stored again`,
      );
    }
  }

  private async connectProducer(): Promise<Producer> {
    const producer = this.kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      transactionalId: this.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: TRANSACTION_TIMEOUT_MS,
      allowAutoTopicCreation: false,
      retry: RETRY,
    });
    try {
      await producer.connect();
      // kafkajs's connect() only fetches an idempotent producer id; the transactional id is
      // registered (InitProducerId) lazily, by the first transaction(). Doing it now fences an
      // older instance of this site and makes the coordinator settle any transaction it left
      // open. Aborting a transaction with no partitions sends nothing to the broker.
      const registration = await producer.transaction();
      await registration.abort();
    } catch (error) {
      await producer.disconnect().catch(() => {});
      throw error;
    }
    return producer;
  }

  private recoverHighWater(): Promise<Map<string, HeldTopic>> {
    return readHighWater({
      kafka: this.kafka,
      admin: this.admin,
      topic: this.highWaterTopic,
      groupIdPrefix: `portcall-${this.siteId}-recover`,
      timeoutMs: this.options.recoveryTimeoutMs,
      logger: this.options.logger,
    });
  }

  private async startLatestReader(): Promise<void> {
    this.latestGroupId = `portcall-${this.siteId}-latest-${randomUUID()}`;
    const consumer = this.kafka.consumer({
      groupId: this.latestGroupId,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: LATEST_FETCH_MAX_WAIT_MS,
      sessionTimeout: LATEST_SESSION_TIMEOUT_MS,
    });
    this.latestConsumer = consumer;
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      // kafkajs restarts it by itself, every second or so while a broker is away: warn, not error.
      if (payload.restart) this.options.logger?.warn({ err: payload.error }, 'latest-record reader crashed; kafkajs restarts it');
      else this.options.logger?.error({ err: payload.error }, 'latest-record reader stopped; latest() no longer follows Kafka');
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [...this.dataTopics.values()], fromBeginning: true });
    // The group only gives this consumer all partitions; it commits nothing, because the
    // read model is in memory and is rebuilt from the beginning on every start.
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) {
          const record = decodeRecord(message);
          if (record === undefined) {
            this.options.logger?.warn(
              { topic: batch.topic, partition: batch.partition, offset: message.offset },
              'message without record identity headers in a data topic; ignored by latest()',
            );
            continue;
          }
          this.noteLatest(record);
        }
      },
    });
  }

  private noteLatest(record: LogRecord): void {
    const key = topicKey(record.stream, record.topic);
    const known = this.latestRecords.get(key);
    if (known === undefined || record.offset > known.offset) this.latestRecords.set(key, record);
  }

  replicate(records: readonly LogRecord[]): Promise<ReplicateResult> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new ClosedError('Kafka log'));
        return;
      }
      this.queue.push({ records, resolve, reject });
      this.drain();
    });
  }

  /** One transaction at a time; whatever queued up meanwhile goes into the next one. */
  private drain(): void {
    if (this.draining !== undefined) return;
    this.draining = (async () => {
      // Lets every call made in this turn of the event loop join the first transaction.
      await new Promise((resolve) => setImmediate(resolve));
      while (this.queue.length > 0) {
        const calls = this.takeGroup();
        // commitGroup settles every call itself; this only guards against a bug leaving one hanging.
        await this.commitGroup(calls).catch((error: unknown) => {
          for (const call of calls) call.reject(error);
        });
      }
    })().finally(() => {
      this.draining = undefined;
      // A call may have queued after the loop saw an empty queue but before this ran.
      if (this.queue.length > 0) this.drain();
    });
  }

  /**
   * The calls for the next transaction: all that are queued, up to a size that keeps one
   * transaction well inside its timeout; a backlog larger than that goes in several.
   */
  private takeGroup(): PendingReplicate[] {
    let bytes = 0;
    let count = 0;
    for (const call of this.queue) {
      const callBytes = call.records.reduce((sum, record) => sum + (record.payload?.byteLength ?? 0), 0);
      if (count > 0 && bytes + callBytes > MAX_TRANSACTION_BYTES) break;
      bytes += callBytes;
      count += 1;
    }
    return this.queue.splice(0, count);
  }

  private async commitGroup(calls: readonly PendingReplicate[]): Promise<void> {
    if (this.resyncNeeded) {
      try {
        await this.resync();
      } catch (error) {
        const failure = asStoreError('cannot re-read the high water from Kafka', error);
        for (const call of calls) call.reject(failure);
        return;
      }
    }

    const staged = new Map<string, StagedTopic>();
    const accepted: AcceptedCall[] = [];
    for (const call of calls) {
      try {
        accepted.push(this.plan(call, staged));
      } catch (error) {
        call.reject(error);
      }
    }
    const stored = accepted.flatMap((entry) => entry.stored);
    // A resend of records already held is answered from memory, even while Kafka is away.
    if (stored.length > 0) {
      try {
        this.producer ??= await this.connectProducer();
        await this.writeTransaction(stored, staged);
      } catch (error) {
        this.options.logger?.warn({ err: error, records: stored.length }, 'Kafka transaction failed; nothing of it was acknowledged');
        const failure = new StoreUnavailableError(`Kafka transaction failed: ${describeError(error)}`, error);
        for (const entry of accepted) entry.call.reject(failure);
        return;
      }
      for (const [key, entry] of staged) this.held.set(key, entry.held);
      for (const record of stored) this.noteLatest({ ...record, payload: record.payload.slice() });
    }
    for (const entry of accepted) entry.call.resolve(entry.result);
  }

  /**
   * Decides what one call stores, against the committed state plus what earlier calls of the
   * same group staged. Throws (and stages nothing) when the call is refused.
   */
  private plan(call: PendingReplicate, staged: Map<string, StagedTopic>): AcceptedCall {
    for (const record of call.records) this.validate(record);
    const own = new Map<string, StagedTopic>();
    const touched = new Map<string, { stream: string; topic: string }>();
    const stored: LogRecord[] = [];
    let duplicates = 0;
    const current = (key: string): HeldTopic | undefined => own.get(key)?.held ?? staged.get(key)?.held ?? this.held.get(key);
    for (const record of call.records) {
      const key = topicKey(record.stream, record.topic);
      if (!touched.has(key)) touched.set(key, { stream: record.stream, topic: record.topic });
      const held = current(key);
      const nextOffset = held?.nextOffset ?? 0;
      if (record.offset < nextOffset) {
        if (held !== undefined && record.offset === nextOffset - 1 && held.origin !== record.origin) {
          throw new TopicForkError(record.stream, record.topic, record.offset, held.origin, record.origin);
        }
        duplicates += 1;
        continue;
      }
      if (record.offset > nextOffset) {
        throw new OffsetGapError(record.stream, record.topic, nextOffset, record.offset);
      }
      own.set(key, { stream: record.stream, topic: record.topic, held: { nextOffset: record.offset + 1, origin: record.origin } });
      stored.push(record);
    }
    for (const [key, entry] of own) staged.set(key, entry);
    const highWater: TopicHighWater[] = [...touched].map(([key, { stream, topic }]) => ({
      stream,
      topic,
      nextOffset: current(key)?.nextOffset ?? 0,
    }));
    return { call, stored, result: { stored: stored.length, duplicates, highWater } };
  }

  private validate(record: LogRecord): void {
    const where = `record ${JSON.stringify(record.stream)}/${JSON.stringify(record.topic)}@${String(record.offset)}`;
    if (!this.dataTopics.has(record.stream)) {
      throw new InvalidInputError(
        'unknown-stream',
        `${where}: stream is not stored by this site (configured: ${this.options.streams.join(', ')})`,
      );
    }
    if (typeof record.topic !== 'string' || record.topic === '') {
      throw new InvalidInputError('bad-topic', `${where}: topic must be a non-empty string`);
    }
    if (!Number.isSafeInteger(record.offset) || record.offset < 0) {
      throw new InvalidInputError('bad-offset', `${where}: offset must be a non-negative integer`);
    }
    if (typeof record.origin !== 'string' || record.origin === '') {
      throw new InvalidInputError('bad-origin', `${where}: origin must be a non-empty string`);
    }
    if (!Number.isSafeInteger(record.eventTimeMs) || !Number.isSafeInteger(record.ingestTimeMs)) {
      throw new InvalidInputError('bad-time', `${where}: eventTimeMs and ingestTimeMs must be integers`);
    }
    if (
      typeof record.headers !== 'object' ||
      record.headers === null ||
      Object.values(record.headers).some((value) => typeof value !== 'string')
    ) {
      throw new InvalidInputError('bad-headers', `${where}: headers must map names to strings`);
    }
    if (!(record.payload instanceof Uint8Array)) {
      throw new InvalidInputError('bad-payload', `${where}: payload must be bytes`);
    }
    const sizeBytes = encodedSizeBytes(record);
    if (sizeBytes > this.options.maxRecordBytes) {
      throw new InvalidInputError(
        'record-too-large',
        `${where}: ${sizeBytes} bytes encoded, above the limit of ${this.options.maxRecordBytes}`,
      );
    }
  }

  /**
   * After a commit with an unknown outcome: a new producer registers the transactional id,
   * which makes the coordinator finish that transaction one way or the other, and then the map
   * is rebuilt from what Kafka actually holds.
   */
  private async resync(): Promise<void> {
    this.producer ??= await this.connectProducer();
    this.held = await this.recoverHighWater();
    this.resyncNeeded = false;
    this.options.logger?.info({ topics: this.held.size }, 'high water re-read from Kafka after a commit with unknown outcome');
  }

  private async writeTransaction(records: readonly LogRecord[], staged: ReadonlyMap<string, StagedTopic>): Promise<void> {
    const producer = this.producer;
    if (producer === undefined) throw new Error('no producer');
    const items = records.map((record) => ({
      topic: this.dataTopics.get(record.stream) ?? '',
      message: encodeRecord(record),
      sizeBytes: encodedSizeBytes(record),
    }));
    for (const { stream, topic, held } of staged.values()) {
      items.push({
        topic: this.highWaterTopic,
        message: encodeHighWater(stream, topic, held),
        sizeBytes: HIGH_WATER_ENTRY_OVERHEAD_BYTES + Buffer.byteLength(stream) + Buffer.byteLength(topic) + Buffer.byteLength(held.origin),
      });
    }
    let transaction: Transaction | undefined;
    let commitSent = false;
    try {
      transaction = await producer.transaction();
      for (const topicMessages of chunkMessages(items)) await transaction.sendBatch({ acks: -1, topicMessages });
      commitSent = true;
      await transaction.commit();
    } catch (error) {
      if (transaction !== undefined && !commitSent) {
        // Frees readers held back by the open transaction now rather than at its timeout; if
        // it fails, registering the id again on the next producer aborts it just the same.
        await withTimeout(transaction.abort(), ABORT_TIMEOUT_MS, 'abort timed out').catch(() => {});
      }
      // Always a new producer: kafkajs leaves its transaction state machine stuck in
      // COMMITTING/ABORTING when EndTxn fails, and rolls back sequence numbers of a produce
      // request that may in fact have been written. A new InitProducerId resets both.
      this.retireProducer();
      if (commitSent) this.resyncNeeded = true;
      throw error;
    }
  }

  private retireProducer(): void {
    const producer = this.producer;
    this.producer = undefined;
    if (producer === undefined) return;
    const done = producer
      .disconnect()
      .catch(() => {})
      .finally(() => this.retiring.delete(done));
    this.retiring.add(done);
  }

  /** The latest record of a logical topic known to the read model; may lag a moment after a restart. */
  async latest(stream: string, topic: string): Promise<LogRecord | undefined> {
    if (this.closed) throw new ClosedError('Kafka log');
    return this.latestRecords.get(topicKey(stream, topic));
  }

  /** The next offset this site will accept for a topic; 0 for a topic it has never seen. */
  async highWater(stream: string, topic: string): Promise<number> {
    if (this.closed) throw new ClosedError('Kafka log');
    return this.held.get(topicKey(stream, topic))?.nextOffset ?? 0;
  }

  /** Lets calls already accepted finish, then disconnects everything. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      while (this.draining !== undefined) await this.draining;
      await this.shutdown();
    })();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    const producer = this.producer;
    this.producer = undefined;
    const consumer = this.latestConsumer;
    await Promise.allSettled([
      producer?.disconnect(),
      consumer === undefined
        ? undefined
        : withTimeout(consumer.disconnect(), CLOSE_WAIT_MS, 'disconnect timed out').catch((error: unknown) => {
            this.options.logger?.warn({ err: error }, 'latest-record reader is still disconnecting; close() goes on without it');
          }),
      ...this.retiring,
    ]);
    if (this.latestGroupId !== undefined) await this.admin.deleteGroups([this.latestGroupId]).catch(() => {});
    await this.admin.disconnect().catch(() => {});
  }
}
