/**
 * A real single-node Apache Kafka (KRaft, no ZooKeeper) for tests, benchmarks and
 * `portcall kafka`. Kafka is not on npm, so its jars come from Maven Central through `mvn`
 * once per machine and are cached outside the repository.
 */
export { KAFKA_VERSION } from './version.js';
export { KafkaUnavailableError, type KafkaUnavailableReason } from './errors.js';
export { kafkaCacheDir, ensureKafkaJars } from './jars.js';
export { javaAndMavenAvailable, requireJava, type JavaRuntime } from './process.js';
export { BrokerClassArchive, type ClassArchiveUse } from './class-archive.js';
export { startKafkaBroker, type KafkaBroker, type StartKafkaBrokerOptions } from './broker.js';
export { header, readBackCommitted, type ReadMessage } from './readback.js';
