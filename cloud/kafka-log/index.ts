/**
 * A shore site's log on Apache Kafka: the ReplicaSink and TopicReader roles on a bounded set
 * of Kafka topics (one per stream plus a compacted high-water topic), exactly once through
 * kafkajs transactions. See kafka-log.ts for the invariants and codec.ts for the layout.
 */
export { KafkaLog, type KafkaLogOptions } from './kafka-log.js';
