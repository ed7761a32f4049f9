/**
 * Reading one partition of one Kafka topic from a given offset, read_committed, with no
 * consumer group: what a topic read ("container X from offset N") and the topic index's
 * rebuild need. kafkajs offers reads only through consumer groups, whose join costs a round
 * of group protocol (and `group.initial.rebalance.delay.ms`, 3 s on a default broker) per
 * read, and whose seek-while-paused behaviour is unreliable. Kafka's own Fetch request is
 * what every consumer sends underneath; this sends it directly.
 *
 * It reaches into kafkajs's internals: the client's private cluster factory, a broker's
 * `fetch`, and the consumer's `Batch`, which drops aborted transactions and control records
 * exactly as a kafkajs consumer does. kafkajs 2.2.4 is the last release and is no longer
 * maintained, so these internals no longer move; they are used here and nowhere else, and
 * `connect()` checks they are what this expects, so a change of client (or of kafkajs)
 * touches this file and fails loudly rather than quietly.
 */
import { createRequire } from 'node:module';

import type { IHeaders, Kafka } from 'kafkajs';

const require = createRequire(import.meta.url);

/** A message as kafkajs decodes it from a record batch. */
export interface FetchedMessage {
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers?: IHeaders;
  readonly isControlRecord?: boolean;
}

export interface FetchedPartition {
  /** Committed user records at or after the requested offset, in offset order. */
  readonly messages: readonly FetchedMessage[];
  /**
   * Where the next fetch starts: one past the last offset the response covered, control
   * records and aborted records included; the requested offset when it covered nothing.
   */
  readonly nextOffset: bigint;
  /** The last stable offset: a read_committed reader can get no further for now. */
  readonly lastStableOffset: bigint;
  /**
   * The high watermark: the end of what is written and replicated, open transactions
   * included. Above the last stable offset while a transaction is open in the partition.
   */
  readonly highWatermark: bigint;
  readonly logStartOffset: bigint;
}

/** kafkajs error types a fetch retries once after refreshing metadata. */
const STALE_METADATA_ERRORS = new Set(['NOT_LEADER_FOR_PARTITION', 'LEADER_NOT_AVAILABLE', 'UNKNOWN_TOPIC_OR_PARTITION', 'FENCED_LEADER_EPOCH']);

/** Thrown when a requested offset is below the partition's log start (deleted by retention). */
export class OffsetOutOfRangeError extends Error {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly offset: bigint,
  ) {
    super(`offset ${offset} of ${topic}/${partition} is out of range`);
  }
}

interface InternalBroker {
  fetch(request: {
    replicaId?: number;
    isolationLevel: number;
    maxWaitTime: number;
    minBytes: number;
    maxBytes: number;
    topics: { topic: string; partitions: { partition: number; fetchOffset: string; maxBytes: number }[] }[];
  }): Promise<{
    responses: {
      topicName: string;
      partitions: {
        partition: number;
        highWatermark: string;
        lastStableOffset?: string;
        lastStartOffset?: string;
        abortedTransactions?: unknown[];
        messages: FetchedMessage[];
      }[];
    }[];
  }>;
}

interface InternalCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addMultipleTargetTopics(topics: string[]): Promise<void>;
  refreshMetadata(): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(args: { nodeId: string }): Promise<InternalBroker>;
}

type BatchConstructor = new (
  topic: string,
  fetchedOffset: string,
  partitionData: unknown,
) => { messages: FetchedMessage[]; messagesWithinOffset: FetchedMessage[]; rawMessages: FetchedMessage[] };

const READ_COMMITTED = 1;
/**
 * Only for ranges known to be committed (a stream journal's entry names them): there it
 * returns the same records as read_committed, without waiting for other transactions still
 * open on the partition.
 */
const READ_UNCOMMITTED = 0;
const CREATE_CLUSTER = 'private:Kafka:createCluster';

export class PartitionFetcher {
  private readonly cluster: InternalCluster;
  private readonly Batch: BatchConstructor;
  private readonly knownTopics = new Set<string>();

  constructor(kafka: Kafka) {
    const factorySymbol = Object.getOwnPropertySymbols(kafka).find((symbol) => symbol.description === CREATE_CLUSTER);
    const factory = factorySymbol === undefined ? undefined : (kafka as unknown as Record<symbol, unknown>)[factorySymbol];
    if (typeof factory !== 'function') {
      throw new Error(`kafkajs internals changed: the client has no ${CREATE_CLUSTER}; cloud/kafka-log/kafkajs-fetch.ts needs updating`);
    }
    this.cluster = (factory as (options: object) => InternalCluster)({ allowAutoTopicCreation: false, isolationLevel: READ_COMMITTED });
    this.Batch = require('kafkajs/src/consumer/batch.js') as BatchConstructor;
    if (typeof this.Batch !== 'function' || typeof this.cluster.findLeaderForPartitions !== 'function') {
      throw new Error('kafkajs internals changed: consumer/batch.js or Cluster differ; cloud/kafka-log/kafkajs-fetch.ts needs updating');
    }
  }

  async connect(): Promise<void> {
    await this.cluster.connect();
  }

  async disconnect(): Promise<void> {
    await this.cluster.disconnect();
  }

  /**
   * One Fetch of one partition from `offset`. The broker returns whole record batches, at
   * least one even when it is larger than `maxBytes`, so a read always makes progress.
   */
  async fetch(topic: string, partition: number, offset: bigint, maxBytes: number, isolation: 'read_committed' | 'read_uncommitted' = 'read_committed'): Promise<FetchedPartition> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.fetchOnce(topic, partition, offset, maxBytes, isolation === 'read_committed' ? READ_COMMITTED : READ_UNCOMMITTED);
      } catch (error) {
        const type = (error as { type?: unknown }).type;
        if (type === 'OFFSET_OUT_OF_RANGE' || (error as { name?: unknown }).name === 'KafkaJSOffsetOutOfRange') {
          throw new OffsetOutOfRangeError(topic, partition, offset);
        }
        const stale = typeof type === 'string' && STALE_METADATA_ERRORS.has(type);
        const connection = (error as { name?: unknown }).name === 'KafkaJSConnectionError';
        if (attempt >= 1 || !(stale || connection)) throw error;
        await this.cluster.refreshMetadata();
      }
    }
  }

  private async fetchOnce(topic: string, partition: number, offset: bigint, maxBytes: number, isolationLevel: number): Promise<FetchedPartition> {
    if (!this.knownTopics.has(topic)) {
      await this.cluster.addMultipleTargetTopics([topic]);
      this.knownTopics.add(topic);
    }
    const leaders = this.cluster.findLeaderForPartitions(topic, [partition]);
    const nodeId = Object.keys(leaders)[0];
    if (nodeId === undefined) throw Object.assign(new Error(`no leader known for ${topic}/${partition}`), { type: 'LEADER_NOT_AVAILABLE' });
    const broker = await this.cluster.findBroker({ nodeId });
    const fetchOffset = offset.toString();
    const response = await broker.fetch({
      isolationLevel,
      // Answer at once with what there is: a read never waits for new records.
      maxWaitTime: 0,
      minBytes: 1,
      maxBytes,
      topics: [{ topic, partitions: [{ partition, fetchOffset, maxBytes }] }],
    });
    const data = response.responses.find((entry) => entry.topicName === topic)?.partitions.find((entry) => entry.partition === partition);
    if (data === undefined) throw new Error(`fetch of ${topic}/${partition} returned no data for it`);
    const batch = new this.Batch(topic, fetchOffset, data);
    const raw = batch.messagesWithinOffset;
    const last = raw.length === 0 ? undefined : raw[raw.length - 1];
    return {
      messages: batch.messages,
      nextOffset: last === undefined ? offset : BigInt(last.offset) + 1n,
      lastStableOffset: BigInt(data.lastStableOffset ?? data.highWatermark),
      highWatermark: BigInt(data.highWatermark),
      logStartOffset: BigInt(data.lastStartOffset ?? '0'),
    };
  }
}
