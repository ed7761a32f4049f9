/**
 * Per-customer Kafka topics (`customer.<id>`, docs/ACCESS.md and docs/KAFKA.md): a stage that
 * reads a Kafka-backed site's streams, keeps what each customer's `RecordFilter` admits, in the
 * form it admits it, and hands it to a transactional sink with its positions (exactly once).
 * The sink is cloud/kafka-log's `KafkaCustomerTopicWriter`; the filters come from access
 * control through the composition root (this stage never imports cloud/access).
 */
export { CustomerTopicStage, positionKey, type CustomerTopicSink, type CustomerTopicSpec, type CustomerTopicStageOptions } from './stage.js';
