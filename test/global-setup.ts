import type { TestProject } from 'vitest/node';

import type {} from './support/kafka.js';
import { ensureKafkaJars, KafkaUnavailableError, startKafkaBroker, type KafkaBroker } from '../tools/kafka/index.js';

/**
 * One Kafka broker for the whole run, shared by every test file through
 * `inject('kafkaBootstrap')`; tests isolate themselves with unique topic and group names.
 * In CI a missing broker fails the run, because silently skipped tests would read as passing.
 * On a developer machine without Java or Maven the Kafka tests skip with one loud line.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.PORTCALL_KAFKA_BOOTSTRAP?.trim();
  if (external) {
    project.provide('kafkaBootstrap', external);
    process.stderr.write(`[kafka] using the external broker at ${external} (PORTCALL_KAFKA_BOOTSTRAP)\n`);
    return async () => {};
  }

  // A developer iterating on tests that need no Kafka can skip the broker start; CI never does.
  if (process.env.PORTCALL_KAFKA === 'off' && process.env.CI !== 'true') {
    process.stderr.write('\n*** Kafka tests SKIPPED: PORTCALL_KAFKA=off ***\n\n');
    project.provide('kafkaBootstrap', null);
    return async () => {};
  }

  let broker: KafkaBroker;
  try {
    // Only the one-time jar fetch is worth narrating; a normal start prints one line.
    await ensureKafkaJars({ onProgress: (line) => process.stderr.write(`[kafka] ${line}\n`) });
    const startedAtMs = Date.now();
    broker = await startKafkaBroker();
    process.stderr.write(
      `[kafka] broker up at ${broker.bootstrap} in ${((Date.now() - startedAtMs) / 1000).toFixed(1)} s (pid ${broker.pid}, log ${broker.logFile})\n`,
    );
  } catch (err) {
    if (process.env.CI === 'true') throw err;
    const message = err instanceof Error ? err.message : String(err);
    const reason = err instanceof KafkaUnavailableError ? `[${err.reason}] ${message}` : message;
    process.stderr.write(`\n*** Kafka tests SKIPPED: ${reason.split('\n')[0] ?? reason} ***\n\n`);
    project.provide('kafkaBootstrap', null);
    return async () => {};
  }

  project.provide('kafkaBootstrap', broker.bootstrap);
  return async () => {
    await broker.stop();
  };
}
