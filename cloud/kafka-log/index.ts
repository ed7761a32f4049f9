/**
 * A shore site's log on Apache Kafka: the ReplicaSink and TopicReader roles on a bounded set
 * of Kafka topics (one per stream plus a compacted high-water topic), exactly once through
 * kafkajs transactions, with a local index from logical offsets to Kafka positions for reads.
 * See kafka-log.ts for the invariants, codec.ts and layout.ts for the layout, topic-index.ts
 * for the index. kafkajs is imported only inside this folder (checked by `npm run boundaries`).
 */
// First, so its replacements are in place before kafkajs loads the modules they replace.
import './kafkajs-speedups.js';

export { KafkaLog, type KafkaLogOptions, type StreamTopicOptions } from './kafka-log.js';
export { KafkaCustomerTopicWriter, customerCursorTopicName } from './customer-topics.js';
export { DEFAULT_KAFKA_COMPRESSION, KAFKA_COMPRESSIONS, lz4Unavailable, registerLz4Codec, type KafkaCompression } from './compression.js';
