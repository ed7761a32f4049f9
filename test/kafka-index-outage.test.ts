/**
 * The Kafka log's topic index after an outage: a catch-up that failed while Kafka was down
 * waits before trying again, longer after each failure (up to 30 s by default). When Kafka
 * answers again it tries at once, whatever that wait has grown to; and closing the log does
 * not wait it out. A broker of its own, since the test kills it.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, expect, it } from 'vitest';

import { KafkaLog } from '../cloud/kafka-log/index.js';
import { startKafkaBroker } from '../tools/kafka/index.js';
import { containerRecord, describeKafka } from './support/kafka.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

/** Far longer than the test may take: only the wake-up can end it in time. */
const RETRY_WAIT_MS = 600_000;

const rec = containerRecord;

async function until(what: string, done: () => boolean, timeoutMs: number, describe: () => unknown): Promise<number> {
  const startedAt = Date.now();
  while (!done()) {
    if (Date.now() - startedAt > timeoutMs) throw new Error(`${what}: not after ${timeoutMs} ms; ${JSON.stringify(describe())}`);
    await sleep(100);
  }
  return Date.now() - startedAt;
}

/** What an ambiguous commit does in the middle of an outage: the index must be read again from Kafka. */
function sendIndexToKafka(log: KafkaLog): void {
  (log as unknown as { markIndexDirty(): void }).markIndexDirty();
}

describeKafka('the Kafka topic index after an outage', () => {
  it('catches up as soon as Kafka answers again, however long its wait had grown, and a close does not wait it out', { timeout: 240_000 }, async () => {
    const broker = await startKafkaBroker({ heapMb: 384, startTimeoutMs: 60_000, quickJit: true });
    cleanups.push(() => broker.stop());
    const run = randomBytes(3).toString('hex');
    const log = await KafkaLog.open({
      siteId: `IXOUT${run}`,
      brokers: [broker.bootstrap],
      topicPrefix: `ixout${run}`,
      streams: ['containers'],
      partitions: 2,
      recoveryTimeoutMs: 20_000,
      connectTimeoutMs: 1_000,
      healthProbeIntervalMs: 200,
      catchUpRetryInitialMs: RETRY_WAIT_MS,
      catchUpRetryMaxMs: RETRY_WAIT_MS,
    });
    let closed = false;
    cleanups.push(() => (closed ? Promise.resolve() : log.close()));
    await log.replicate([rec('C1', 0), rec('C1', 1), rec('C2', 0)]);
    expect(log.health().status).toBe('ok');

    broker.kill9();
    await until('unavailable once the broker is gone', () => log.health().status === 'unavailable', 30_000, () => log.health());
    sendIndexToKafka(log);
    // Health names Kafka while it is away; why the index waits shows once it is back.
    await until('the catch-up failing', () => indexErrorOf(log) !== undefined, 90_000, () => log.health());

    await broker.restart();
    const recoveredMs = await until('health ok again, the index caught up', () => log.health().status === 'ok', 60_000, () => log.health());
    expect(await log.readTopic('containers', 'C1', 0)).toHaveLength(2);
    expect(await log.readTopic('containers', 'C2', 0)).toHaveLength(1);

    // Down again, a catch-up waiting to try again: closing the log must not wait for it.
    broker.kill9();
    await until('unavailable again', () => log.health().status === 'unavailable', 30_000, () => log.health());
    sendIndexToKafka(log);
    await until('the catch-up failing again', () => indexErrorOf(log) !== undefined, 90_000, () => log.health());
    const closeStartedAt = Date.now();
    await log.close();
    closed = true;
    const closeMs = Date.now() - closeStartedAt;
    process.stderr.write(`[kafka-index-outage] healthy ${recoveredMs} ms after the broker's restart; closed in ${closeMs} ms with a catch-up waiting\n`);
    expect(closeMs).toBeLessThan(60_000);
  });
});

/** Why the index cannot catch up, if it cannot (what health reports once Kafka is back). */
function indexErrorOf(log: KafkaLog): string | undefined {
  return (log as unknown as { indexError: string | undefined }).indexError;
}
