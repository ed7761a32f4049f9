import { describe, inject } from 'vitest';

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
