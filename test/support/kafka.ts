import { describe, inject } from 'vitest';
import type { KafkaLog } from '../../cloud/kafka-log/index.js';
import type { LogRecord } from '../../core/index.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by test/global-setup.ts; null when no broker could be started outside CI. */
    kafkaBootstrap: string | null;
  }
}

/** The shared broker's `host:port`, or null when Kafka tests are to be skipped. */
export function kafkaBootstrap(): string | null {
  // Undefined when a config forgot the globalSetup: skipping beats failing on a missing broker.
  return inject('kafkaBootstrap') ?? null;
}

/** `describe` that skips its suite when no broker is available, so Kafka tests read like any other. */
export const describeKafka = describe.skipIf(kafkaBootstrap() === null);

/** A container's record from the ship AURORA, its JSON payload padded to `payloadBytes`, for the Kafka log's tests. */
export function containerRecord(topic: string, offset: number, payloadBytes = 64): LogRecord {
  const body = JSON.stringify({ topic, offset });
  return {
    origin: 'AURORA',
    stream: 'containers',
    topic,
    offset,
    eventTimeMs: 1_763_769_600_000 + offset,
    ingestTimeMs: 1_763_769_600_500 + offset,
    headers: { seq: String(offset) },
    payload: new Uint8Array(Buffer.from(body.padEnd(payloadBytes, '.'))),
  };
}

/**
 * Counts the Kafka fetches a log makes from here on, and the messages they returned: how a
 * test tells how much of Kafka a read touched (the only private state such a test touches).
 */
export function countFetches(log: KafkaLog): { fetches: number; messages: number } {
  const counter = { fetches: 0, messages: 0 };
  const fetcher = (log as unknown as { fetcher: { fetch: (...args: unknown[]) => Promise<{ messages: unknown[] }> } }).fetcher;
  const original = fetcher.fetch.bind(fetcher);
  fetcher.fetch = async (...args: unknown[]) => {
    const result = await original(...args);
    counter.fetches += 1;
    counter.messages += result.messages.length;
    return result;
  };
  return counter;
}
