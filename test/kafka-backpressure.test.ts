/**
 * Kafka slow: the Kafka log holds at most `maxPendingRecords` records waiting for a
 * transaction and refuses the rest at once with a retriable error (the endpoint's 503), so a
 * burst larger than Kafka can take stays with the senders instead of in this process's memory.
 */
import { randomBytes } from 'node:crypto';

import { afterEach, expect, it } from 'vitest';

import { KafkaLog } from '../cloud/kafka-log/index.js';
import { StoreUnavailableError, type LogRecord } from '../core/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

function batch(topic: string, count: number): LogRecord[] {
  return Array.from({ length: count }, (_unused, offset) => ({
    origin: 'AURORA',
    stream: 'containers',
    topic,
    offset,
    eventTimeMs: 1_763_769_600_000,
    ingestTimeMs: 1_763_769_600_000,
    headers: {},
    payload: Buffer.alloc(150, 0x20),
  }));
}

describeKafka('Kafka log under a burst larger than it may hold', () => {
  it('refuses what exceeds maxPendingRecords at once, retriably, and takes it on a later try', async () => {
    const run = randomBytes(3).toString('hex');
    const log = await KafkaLog.open({
      siteId: `BP${run}`,
      brokers: [kafkaBootstrap()!],
      topicPrefix: `bp${run}`,
      streams: ['containers'],
      partitions: 2,
      maxPendingRecords: 1_000,
    });
    cleanups.push(() => log.close());

    const topics = Array.from({ length: 20 }, (_unused, i) => `B${String(i).padStart(2, '0')}`);
    const outcomes = await Promise.allSettled(topics.map((topic) => log.replicate(batch(topic, 200))));
    const refused = outcomes.flatMap((outcome, i) => (outcome.status === 'rejected' ? [{ topic: topics[i]!, reason: outcome.reason as unknown }] : []));
    // 1,000 records fit while the first transaction is in flight: five calls of 200.
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(5);
    expect(refused).toHaveLength(15);
    for (const { reason } of refused) {
      expect(reason).toBeInstanceOf(StoreUnavailableError);
      expect(reason).toMatchObject({ retriable: true, message: expect.stringMatching(/Kafka is behind: \d+ records are waiting/) });
    }
    expect(log.health().details).toMatchObject({ refusedWhileBehind: 15, pendingRecords: 0 });

    // The senders try again, a few at a time, and everything is stored once.
    for (let i = 0; i < refused.length; i += 5) {
      const again = await Promise.all(refused.slice(i, i + 5).map(({ topic }) => log.replicate(batch(topic, 200))));
      expect(again.map((result) => result.stored)).toEqual([200, 200, 200, 200, 200]);
    }
    for (const topic of topics) expect(await log.highWater('containers', topic)).toBe(200);
    expect(log.health().status).toBe('ok');
  });
});
