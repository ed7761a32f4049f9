/**
 * Which Kafka topic and partition a record goes to, and how the site creates those topics
 * (DESIGN.md decision 5: a bounded set of Kafka topics, never one per container).
 *
 * There is one data topic per stream, `<prefix>.<stream>`. `dataTopicFor` is the one place
 * that decides it; the write and read paths carry the Kafka topic of every record and index
 * entry with it. Per-customer topics (`customer.<id>`, issue 8) are not chosen here: they are
 * filtered, possibly projected copies written by another stage (customer-topics.ts), a record
 * going to several of them, while the site's own topics stay the whole log.
 *
 * The partition is computed here, with the same murmur2 hash as Kafka's Java producer
 * (kafkajs's DefaultPartitioner is a port of it), instead of being left to the producer: the
 * topic index must know where each record went, and a consumer in any language that hashes
 * the key the Java way finds a container in the same partition.
 */
import { Partitioners, type Message } from 'kafkajs';

import { ConfigError } from '../../core/index.js';
import { consumerCursorTopicName, cursorTopicName, dataTopicName, highWaterTopicName } from './codec.js';
import { journalTopicName } from './stream-journal.js';

/** How the site creates one Kafka topic. Existing topics are checked against it, never altered. */
export interface TopicSettings {
  readonly partitions: number;
  readonly replicationFactor: number;
  /** `min.insync.replicas`: with `acks=all`, a write fails rather than land on fewer replicas. */
  readonly minInsyncReplicas: number;
  /** `retention.ms`; -1 keeps records forever. */
  readonly retentionMs: number;
  /** `retention.bytes` per partition; -1 for no size limit. */
  readonly retentionBytes: number;
}

export interface StreamSettings extends TopicSettings {
  /** Written as the `pc-content-type` header unless a record carries its own `content-type`. */
  readonly contentType: string;
}

/** Kafka's own rule for topic names. */
const KAFKA_TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

type Partitioner = (args: { topic: string; partitionMetadata: { partitionId: number; leader: number }[]; message: Message }) => number;

export class TopicLayout {
  readonly highWaterTopic: string;
  /** Compacted: each sending site's cursor (how far each of its streams arrived), per log incarnation. */
  readonly cursorTopic: string;
  /** Compacted: named consumer cursors of this site (`CursorStore`: forwarding links, consumers). */
  readonly consumerCursorTopic: string;
  /** One partition each: the stream's append order (stream-journal.ts). */
  private readonly journalTopics: ReadonlyMap<string, string>;
  private readonly streamTopics: ReadonlyMap<string, string>;
  private readonly partitioner: Partitioner;
  /** Partition count per Kafka topic as it is on the cluster (which wins over the configuration). */
  private readonly partitionCounts = new Map<string, number>();
  private readonly fakeMetadata = new Map<number, { partitionId: number; leader: number }[]>();
  /** Hashing is per record on the write path; a fleet's containers are a bounded set. */
  private readonly partitionOfKey = new Map<string, Map<string, number>>();

  constructor(
    readonly prefix: string,
    readonly streams: ReadonlyMap<string, StreamSettings>,
    readonly highWaterSettings: TopicSettings,
  ) {
    this.highWaterTopic = highWaterTopicName(prefix);
    this.cursorTopic = cursorTopicName(prefix);
    this.consumerCursorTopic = consumerCursorTopicName(prefix);
    this.streamTopics = new Map([...streams.keys()].map((stream) => [stream, dataTopicName(prefix, stream)]));
    this.journalTopics = new Map([...streams.keys()].map((stream) => [stream, journalTopicName(prefix, stream)]));
    for (const name of [this.highWaterTopic, this.cursorTopic, this.consumerCursorTopic, ...this.streamTopics.values(), ...this.journalTopics.values()]) {
      if (!KAFKA_TOPIC_NAME.test(name)) {
        throw new ConfigError(
          `KafkaLog: ${JSON.stringify(name)} is not a valid Kafka topic name (letters, digits, '.', '_', '-', at most 249); check topicPrefix and streams`,
        );
      }
    }
    if (streams.has('highwater') || streams.has('cursors') || streams.has('consumers')) {
      throw new ConfigError(`KafkaLog: a stream cannot be named 'highwater', 'cursors' or 'consumers'; its data topic would be one of the site's own compacted topics`);
    }
    this.partitioner = Partitioners.DefaultPartitioner() as unknown as Partitioner;
  }

  /** Every data topic this site writes, with the settings it creates it with. */
  dataTopics(): { topic: string; stream: string; settings: StreamSettings }[] {
    return [...this.streams].map(([stream, settings]) => ({ topic: this.streamTopics.get(stream)!, stream, settings }));
  }

  /** The stream's journal topic (one partition): its append order at this site. */
  journalTopicFor(stream: string): string | undefined {
    return this.journalTopics.get(stream);
  }

  /** Every journal topic, with the settings of its stream (but always one partition). */
  journalTopicList(): { topic: string; stream: string; settings: StreamSettings }[] {
    return [...this.streams].map(([stream, settings]) => ({ topic: this.journalTopics.get(stream)!, stream, settings: { ...settings, partitions: 1 } }));
  }

  storesStream(stream: string): boolean {
    return this.streamTopics.has(stream);
  }

  /** The seam for per-customer topics (issue 8): everything else asks this. */
  dataTopicFor(record: { readonly stream: string; readonly topic: string }): string {
    const topic = this.streamTopics.get(record.stream);
    if (topic === undefined) throw new Error(`no data topic for stream ${record.stream}`);
    return topic;
  }

  contentTypeOf(stream: string): string {
    return this.streams.get(stream)?.contentType ?? 'application/octet-stream';
  }

  /** Called at open with the partition counts the cluster reports. */
  setPartitionCount(kafkaTopic: string, partitions: number): void {
    this.partitionCounts.set(kafkaTopic, partitions);
    this.partitionOfKey.delete(kafkaTopic);
  }

  partitionCount(kafkaTopic: string): number {
    const count = this.partitionCounts.get(kafkaTopic);
    if (count === undefined) throw new Error(`partition count of ${kafkaTopic} is not known yet`);
    return count;
  }

  /** The partition of a logical topic's records: murmur2 of the key, as Kafka's Java producer does. */
  partitionFor(kafkaTopic: string, key: string): number {
    let known = this.partitionOfKey.get(kafkaTopic);
    if (known === undefined) {
      known = new Map();
      this.partitionOfKey.set(kafkaTopic, known);
    }
    const cached = known.get(key);
    if (cached !== undefined) return cached;
    const partition = this.hashPartition(kafkaTopic, key);
    known.set(key, partition);
    return partition;
  }

  private hashPartition(kafkaTopic: string, key: string): number {
    const count = this.partitionCount(kafkaTopic);
    let metadata = this.fakeMetadata.get(count);
    if (metadata === undefined) {
      metadata = Array.from({ length: count }, (_unused, partitionId) => ({ partitionId, leader: 0 }));
      this.fakeMetadata.set(count, metadata);
    }
    return this.partitioner({ topic: kafkaTopic, partitionMetadata: metadata, message: { key, value: null } });
  }
}

/** Topic-level configuration entries for creating a topic with these settings. */
export function topicConfigEntries(settings: TopicSettings): { name: string; value: string }[] {
  return [
    { name: 'min.insync.replicas', value: String(settings.minInsyncReplicas) },
    { name: 'retention.ms', value: String(settings.retentionMs) },
    { name: 'retention.bytes', value: String(settings.retentionBytes) },
  ];
}
