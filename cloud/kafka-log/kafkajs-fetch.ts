/**
 * Reading one partition of one Kafka topic from a given offset, read_committed, with no
 * consumer group: what a topic read ("container X from offset N") and the topic index's
 * rebuild need. kafkajs offers reads only through consumer groups, whose join costs a round
 * of group protocol (and `group.initial.rebalance.delay.ms`, 3 s on a default broker) per
 * read, and whose seek-while-paused behaviour is unreliable. Kafka's own Fetch request is
 * what every consumer sends underneath; this sends it directly.
 *
 * It reaches into kafkajs's internals: the client's private cluster factory and a broker's
 * `fetch`; `committedMessages` then drops aborted transactions and control records exactly
 * as a kafkajs consumer's `Batch` does. kafkajs 2.2.4 is the last release and is no longer
 * maintained, so these internals no longer move; they are used here and nowhere else, and
 * `connect()` checks they are what this expects, so a change of client (or of kafkajs)
 * touches this file and fails loudly rather than quietly.
 */
import type { IHeaders, Kafka } from 'kafkajs';

/** A message as kafkajs decodes it from a record batch. */
export interface FetchedMessage {
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers?: IHeaders;
  readonly isControlRecord?: boolean;
  /** The record batch the message came in: whose transaction it belongs to. */
  readonly batchContext?: { readonly producerId?: string; readonly inTransaction?: boolean };
}

/** A transaction the broker reports aborted in a fetched range (Fetch response, read_committed). */
export interface AbortedTransaction {
  readonly producerId: string;
  readonly firstOffset: string;
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
        abortedTransactions?: AbortedTransaction[];
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
  private readonly knownTopics = new Set<string>();

  constructor(kafka: Kafka) {
    const factorySymbol = Object.getOwnPropertySymbols(kafka).find((symbol) => symbol.description === CREATE_CLUSTER);
    const factory = factorySymbol === undefined ? undefined : (kafka as unknown as Record<symbol, unknown>)[factorySymbol];
    if (typeof factory !== 'function') {
      throw new Error(`kafkajs internals changed: the client has no ${CREATE_CLUSTER}; cloud/kafka-log/kafkajs-fetch.ts needs updating`);
    }
    this.cluster = (factory as (options: object) => InternalCluster)({ allowAutoTopicCreation: false, isolationLevel: READ_COMMITTED });
    if (typeof this.cluster.findLeaderForPartitions !== 'function') {
      throw new Error('kafkajs internals changed: Cluster differs; cloud/kafka-log/kafkajs-fetch.ts needs updating');
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
    const { withinOffset, committed } = committedMessages(offset, data.messages, data.abortedTransactions);
    const last = withinOffset.length === 0 ? undefined : withinOffset[withinOffset.length - 1];
    return {
      messages: committed,
      nextOffset: last === undefined ? offset : BigInt(last.offset) + 1n,
      lastStableOffset: BigInt(data.lastStableOffset ?? data.highWatermark),
      highWatermark: BigInt(data.highWatermark),
      logStartOffset: BigInt(data.lastStartOffset ?? '0'),
    };
  }
}

/** An offset as kafkajs decodes it (a decimal string), as a number when exact, else a bigint. */
function offsetValue(offset: string): number | bigint {
  // Up to 15 digits is below 2^53 whatever the digits: Number is exact there and far cheaper.
  return offset.length <= 15 ? Number(offset) : BigInt(offset);
}

/** The key of an ABORT control record: version 0, type 0 (COMMIT is type 1). */
function isAbortMarker(message: FetchedMessage): boolean {
  const key = message.key;
  return key != null && key.length === 4 && key[0] === 0 && key[1] === 0 && key[2] === 0 && key[3] === 0;
}

/**
 * What a read_committed consumer keeps of a fetch's messages, as kafkajs's consumer `Batch`
 * keeps them (its `messagesWithinOffset` and `messages`): the messages at or after the
 * fetched offset (a fetch returns whole record batches, so it can start before), then of
 * those the ones outside the aborted transactions the broker listed, control records left
 * out. kafkajs parsed every message's offset into a Long twice to do it (about 6% of a
 * Kafka-backed site's CPU serving reads); this compares numbers. test/kafkajs-fetch.test.ts
 * checks it keeps exactly what kafkajs's Batch keeps.
 */
export function committedMessages(
  fetchedOffset: bigint,
  messages: readonly FetchedMessage[],
  abortedTransactions: readonly AbortedTransaction[] = [],
): { withinOffset: FetchedMessage[]; committed: FetchedMessage[] } {
  const from = fetchedOffset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(fetchedOffset) : fetchedOffset;
  const withinOffset = messages.filter((message) => offsetValue(message.offset) >= from);
  // The usual case: nothing aborted in the range, only the markers to drop.
  if (abortedTransactions.length === 0) return { withinOffset, committed: withinOffset.filter((message) => !message.isControlRecord) };
  const remaining = abortedTransactions.map((transaction) => ({ producerId: transaction.producerId, firstOffset: offsetValue(transaction.firstOffset) }));
  // Producers whose aborted transaction the messages have stepped into and not yet left (by its ABORT marker).
  const inAborted = new Set<string | undefined>();
  let next = 0;
  const committed = withinOffset.filter((message) => {
    if (next < remaining.length && offsetValue(message.offset) >= remaining[next]!.firstOffset) {
      inAborted.add(remaining[next]!.producerId);
      next += 1;
    }
    const producerId = message.batchContext?.producerId;
    if (isAbortMarker(message)) inAborted.delete(producerId);
    else if (message.batchContext?.inTransaction && inAborted.has(producerId)) return false;
    return true;
  });
  return { withinOffset, committed: committed.filter((message) => !message.isControlRecord) };
}
