/**
 * kafkajs logs to the console by default, at INFO, including routine chatter (group joins,
 * retries it will recover from on its own). The site's logs go through pino, and failures
 * that matter surface as typed errors from KafkaLog, so kafkajs gets the given logger at
 * `warn` for everything it reports at WARN or ERROR, and nothing at all without a logger.
 */
import { logLevel, type logCreator } from 'kafkajs';
import type { Logger } from 'pino';

/**
 * kafkajs warns about this whenever an idempotent producer has bounded retries. It protects
 * a non-transactional producer that gives up halfway; every failure here aborts the
 * transaction and replaces the producer, so the warning would only be noise on each start.
 */
const EXPECTED_WARNINGS = ['Limiting retries for the idempotent producer may invalidate EoS guarantees'];

/**
 * Broker answers that kafkajs logs as errors and then retries by itself, and that are routine
 * here. CONCURRENT_TRANSACTIONS answers every registration of a transactional id while the
 * coordinator is still completing that id's last transaction, which after a Kafka restart,
 * a crash or a commit with an unknown outcome is every lane's first registration, for as long
 * as the markers take: one chaos run logged 115 of them at warn. They go out at debug; if the
 * retries run out, the failure reaches the site as KafkaLog's typed error, logged there.
 */
const RETRIED_ANSWERS = ['another concurrent operation on the same transaction was ongoing'];

function isRetriedAnswer(extra: Record<string, unknown>): boolean {
  const error = extra.error;
  return typeof error === 'string' && RETRIED_ANSWERS.some((text) => error.includes(text));
}

/** kafkajs's runtime `logLevel` object has no reverse mapping, unlike a TypeScript enum. */
const LEVEL_NAMES: Record<number, string> = { 1: 'ERROR', 2: 'WARN', 4: 'INFO', 5: 'DEBUG' };

export function kafkajsLogLevel(logger: Logger | undefined): logLevel {
  return logger === undefined ? logLevel.NOTHING : logLevel.WARN;
}

export function kafkajsLogCreator(logger: Logger | undefined): logCreator {
  return () =>
    ({ namespace, level, log }) => {
      if (logger === undefined) return;
      const { message, timestamp: _timestamp, ...extra } = log;
      if (EXPECTED_WARNINGS.includes(message)) return;
      const fields = { component: 'kafkajs', namespace, kafkajsLevel: LEVEL_NAMES[level] ?? String(level), ...extra };
      if (isRetriedAnswer(extra)) logger.debug(fields, message);
      else logger.warn(fields, message);
    };
}
