/**
 * The Kafka side of per-customer topics (docs/ACCESS.md, "Per-customer Kafka topics"): writes
 * records a customer may see to that customer's Kafka topic (`customer.<id>`), in the main
 * layout (key = logical topic, identity in `pc-` headers: codec.ts), and moves the positions
 * of the stage that chose them in the SAME Kafka transaction (DESIGN.md decision 4).
 *
 * Invariants, and why they hold:
 * 1. Exactly once. Every commit holds the output records and the new positions, as entries of
 *    the compacted `<prefix>.customer-cursors` topic (key `<customer> NUL <stream>`, value
 *    `{"position": n}`). A read_committed reader sees both or neither, so positions read back
 *    always describe exactly what the customer topics hold.
 * 2. An ambiguous commit cannot duplicate. After any failure the producer is dropped; `open()`
 *    registers the transactional id again (the coordinator then aborts, or completes, what the
 *    previous holder left open, including a process killed with SIGKILL) and only then reads
 *    the positions back, up to the cursor topic's last stable offset. The stage continues from
 *    those, never from what it believed before the failure.
 * 3. One writer. One transactional id per site (`<prefix>.<site>-customer-topics`) covers
 *    every customer, so no other transaction of ours can hold the cursor topic's last stable
 *    offset back while positions are read, and a second instance of the site fences the first.
 *    (Several ids sharing the cursor topic would have to be registered all before any read.)
 *
 * kafkajs stays in this folder; the stage (cloud/customer-topics) sees only the interface it
 * declares, which this class satisfies structurally.
 */
import kafkajs, { type Admin, type Kafka, type Message, type Producer } from 'kafkajs';
import type { Logger } from 'pino';

import { ClosedError, ConfigError, PortcallError, StoreUnavailableError, type LogRecord } from '../../core/index.js';
import { decodeConsumerCursor, encodeRecord, transactionalIdName } from './codec.js';
import { readCompacted } from './highwater-reader.js';
import { connectTransactionalProducer } from './transactional-producer.js';
import type { PartitionFetcher } from './kafkajs-fetch.js';

// Node's CommonJS named-export detection misses this one (as in kafka-log.ts).
const { ConfigResourceTypes } = kafkajs;

/** Kafka's own rule for topic names. */
const KAFKA_TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;
/**
 * kafkajs puts every message for one partition of one send into one record batch, and the
 * broker refuses a batch above `message.max.bytes` (1 MiB by default; measured: a send of
 * 10,000 readings for three partitions was refused and the stage retried it forever). The
 * producer picks partitions here, so a send holds at most this much in all, and a
 * transaction makes as many sends as it needs (as the Kafka log's SEND_PARTITION_BYTES).
 */
const SEND_BYTES = 768 * 1024;
/** Key, attributes, deltas and header framing per record, as an upper bound. */
const RECORD_OVERHEAD_BYTES = 64;

function messageBytes(message: Message): number {
  let bytes = RECORD_OVERHEAD_BYTES + (message.value === null || message.value === undefined ? 0 : Buffer.byteLength(message.value as Buffer | string));
  bytes += message.key === null || message.key === undefined ? 0 : Buffer.byteLength(message.key as Buffer | string);
  for (const [name, value] of Object.entries(message.headers ?? {})) bytes += name.length + (typeof value === 'string' ? Buffer.byteLength(value) : 16);
  return bytes;
}

export function customerCursorTopicName(prefix: string): string {
  return `${prefix}.customer-cursors`;
}

export interface CustomerTopicWriterOptions {
  readonly siteId: string;
  readonly kafka: Kafka;
  readonly admin: Admin;
  readonly fetcher: PartitionFetcher;
  readonly prefix: string;
  /** Kafka topic per customer id. */
  readonly topics: ReadonlyMap<string, string>;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly minInsyncReplicas: number;
  /** `retention.ms` of the customer topics; -1 keeps records forever. */
  readonly retentionMs: number;
  readonly contentTypeOf: (stream: string) => string;
  readonly recoveryTimeoutMs: number;
  /** kafkajs's codec number for the record batches written (the Kafka log's `compression`). */
  readonly compressionCodec: number;
  readonly logger?: Logger;
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function asStoreError(what: string, error: unknown): PortcallError {
  if (error instanceof PortcallError) return error;
  return new StoreUnavailableError(`${what}: ${describeError(error)}`, error);
}

export class KafkaCustomerTopicWriter {
  readonly transactionalId: string;
  readonly cursorTopic: string;
  private producer: Producer | undefined;
  private topicsReady = false;
  private closed = false;

  constructor(private readonly options: CustomerTopicWriterOptions) {
    this.transactionalId = transactionalIdName(options.prefix, options.siteId, 'customer-topics');
    this.cursorTopic = customerCursorTopicName(options.prefix);
    for (const [customer, topic] of options.topics) {
      if (!KAFKA_TOPIC_NAME.test(topic)) throw new ConfigError(`customer topic of ${customer}: ${JSON.stringify(topic)} is not a valid Kafka topic name`);
      if (topic === options.prefix || topic.startsWith(`${options.prefix}.`)) {
        // The site's own topics are never handed to customers (ACLs are set by prefix).
        throw new ConfigError(`customer topic of ${customer}: ${topic} must not start with the site's topic prefix ${options.prefix}.`);
      }
    }
  }

  /**
   * Creates missing topics, registers the transactional id (fencing an older holder and
   * settling what it left open) and reads the committed positions (keys as the stage wrote them).
   * Called at start and after every failed commit.
   */
  async open(): Promise<Map<string, number>> {
    if (this.closed) throw new ClosedError('customer topic writer');
    try {
      if (!this.topicsReady) await this.ensureTopics();
      await this.dropProducer();
      this.producer = await this.connectProducer();
      const positions = new Map<string, number>();
      await readCompacted(
        { admin: this.options.admin, fetcher: this.options.fetcher, timeoutMs: this.options.recoveryTimeoutMs, topic: this.cursorTopic, what: 'customer cursor' },
        (message) => {
          const { name, position } = decodeConsumerCursor(message);
          if (position === undefined) positions.delete(name);
          else positions.set(name, position);
        },
      );
      return positions;
    } catch (error) {
      await this.dropProducer();
      throw asStoreError('cannot open the customer topics', error);
    }
  }

  /**
   * One Kafka transaction: the records, each to its customer's topic in the main layout, and
   * the positions. Rejects (retriable) when it may not have committed; call `open()` then.
   */
  async commit(records: readonly { customer: string; record: LogRecord }[], positions: ReadonlyMap<string, number>): Promise<void> {
    if (this.closed) throw new ClosedError('customer topic writer');
    const producer = this.producer;
    if (producer === undefined) throw new StoreUnavailableError('customer topic writer is not open (a previous commit failed)');
    // Sends of at most SEND_BYTES, in order; the positions go with the last.
    const sends: Map<string, Message[]>[] = [new Map()];
    let sendBytes = 0;
    const add = (topic: string, message: Message) => {
      const bytes = messageBytes(message);
      if (sendBytes > 0 && sendBytes + bytes > SEND_BYTES) {
        sends.push(new Map());
        sendBytes = 0;
      }
      const send = sends.at(-1)!;
      let list = send.get(topic);
      if (list === undefined) send.set(topic, (list = []));
      list.push(message);
      sendBytes += bytes;
    };
    for (const { customer, record } of records) {
      const topic = this.options.topics.get(customer);
      if (topic === undefined) throw new Error(`no customer topic for ${customer}`);
      // The producer places it (murmur2 of the key, as the main layout and Kafka's Java producer do).
      const { partition: _placedByProducer, ...message } = encodeRecord(record, this.options.contentTypeOf(record.stream), 0);
      add(topic, message);
    }
    for (const [key, position] of positions) add(this.cursorTopic, { key, value: JSON.stringify({ position }) });
    if (sendBytes === 0 && sends.length === 1) return;
    let transaction;
    try {
      transaction = await producer.transaction();
      for (const send of sends) {
        await transaction.sendBatch({
          topicMessages: [...send].map(([topic, messages]) => ({ topic, messages })),
          acks: -1,
          compression: this.options.compressionCodec,
        });
      }
      await transaction.commit();
    } catch (error) {
      if (transaction !== undefined) await transaction.abort().catch(() => undefined);
      // Whatever happened, the next write starts from positions read back after re-registering.
      await this.dropProducer();
      throw asStoreError('customer topic transaction not committed', error);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.dropProducer();
  }

  private async dropProducer(): Promise<void> {
    const producer = this.producer;
    this.producer = undefined;
    if (producer !== undefined) await producer.disconnect().catch(() => undefined);
  }

  private connectProducer(): Promise<Producer> {
    return connectTransactionalProducer(this.options.kafka, this.transactionalId);
  }

  private async ensureTopics(): Promise<void> {
    const { admin } = this.options;
    const existing = new Set(await admin.listTopics());
    const common = [{ name: 'min.insync.replicas', value: String(this.options.minInsyncReplicas) }];
    const wanted = [
      ...[...new Set(this.options.topics.values())].map((topic) => ({
        topic,
        numPartitions: this.options.partitions,
        configEntries: [...common, { name: 'retention.ms', value: String(this.options.retentionMs) }],
      })),
      // Compacted: a customer quiet for a month still resumes where it was.
      { topic: this.cursorTopic, numPartitions: 1, configEntries: [...common, { name: 'cleanup.policy', value: 'compact' }] },
    ].filter(({ topic }) => !existing.has(topic));
    if (existing.has(this.cursorTopic)) {
      // Deleted entries would send quiet customers' topics back to the start: duplicates.
      const described = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: this.cursorTopic, configNames: ['cleanup.policy'] }],
      });
      const policy = described.resources[0]?.configEntries.find((entry) => entry.configName === 'cleanup.policy')?.configValue;
      if (policy === undefined || !policy.split(',').includes('compact')) {
        throw new ConfigError(
          `Kafka topic ${this.cursorTopic} exists with cleanup.policy=${String(policy)}; it must be 'compact', ` +
            `or quiet customers' positions are deleted and their topics would be written again from the start`,
        );
      }
    }
    if (wanted.length > 0) {
      try {
        await admin.createTopics({
          waitForLeaders: true,
          topics: wanted.map((topic) => ({ ...topic, replicationFactor: this.options.replicationFactor })),
        });
      } catch (error) {
        // Another process may have created them first, which is just as good.
        if (!/already exists/i.test(describeError(error))) throw error;
      }
      this.options.logger?.info({ topics: wanted.map(({ topic }) => topic) }, 'created customer Kafka topics');
    }
    this.topicsReady = true;
  }
}
