import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

import { Kafka, logLevel, Partitioners, type Consumer, type KafkaMessage } from 'kafkajs';
import { afterEach, expect, it } from 'vitest';

import { BrokerClassArchive, ensureKafkaJars, requireJava, startKafkaBroker } from '../tools/kafka/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';

/** kafkajs logs retriable coordinator-loading errors at ERROR; real failures still throw. */
function client(bootstrap: string): Kafka {
  return new Kafka({ clientId: 'portcall-kafka-broker-test', brokers: [bootstrap], logLevel: logLevel.NOTHING });
}

/** Collects messages until `done` says stop, failing with what did arrive if that takes too long. */
async function consumeUntil(
  consumer: Consumer,
  topic: string,
  done: (messages: KafkaMessage[]) => boolean,
  timeoutMs: number,
): Promise<KafkaMessage[]> {
  const messages: KafkaMessage[] = [];
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolveDone, rejectDone) => {
    const timer = setTimeout(() => {
      rejectDone(new Error(`after ${timeoutMs} ms only got ${JSON.stringify(messages.map((m) => m.value?.toString()))}`));
    }, timeoutMs);
    consumer
      .run({
        eachMessage: async ({ message }) => {
          messages.push(message);
          if (done(messages)) {
            clearTimeout(timer);
            resolveDone();
          }
        },
      })
      .catch((err: unknown) => {
        clearTimeout(timer);
        rejectDone(err);
      });
  });
  return messages;
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

describeKafka('real Kafka broker', () => {
  it('delivers a committed transaction, and nothing of an aborted one, to a read_committed consumer', { timeout: 120_000 }, async () => {
    const bootstrap = kafkaBootstrap();
    if (bootstrap === null) throw new Error('describeKafka ran without a broker');
    const kafka = client(bootstrap);
    const runId = randomUUID();
    const topic = `portcall-test-tx-${runId}`;

    const admin = kafka.admin();
    await admin.connect();
    cleanups.push(() => admin.disconnect());
    const created = await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
    expect(created).toBe(true);

    const producer = kafka.producer({
      transactionalId: `portcall-test-${runId}`,
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    cleanups.push(() => producer.disconnect());

    const committed = await producer.transaction();
    await committed.send({
      topic,
      messages: [1, 2, 3].map((seq) => ({
        key: `container-${seq}`,
        value: JSON.stringify({ seq, tempC: 4 + seq }),
        headers: { 'portcall-seq': String(seq), 'portcall-origin': 'ship-a' },
      })),
    });
    await committed.commit();

    // The aborted write sits between the committed ones and the sentinel, so a consumer that
    // ignored transaction markers would deliver it before the sentinel arrives.
    const aborted = await producer.transaction();
    await aborted.send({ topic, messages: [{ key: 'aborted', value: 'must-not-be-read' }] });
    await aborted.abort();
    const sentinel = await producer.transaction();
    await sentinel.send({ topic, messages: [{ key: 'sentinel', value: 'end' }] });
    await sentinel.commit();

    const consumer = kafka.consumer({ groupId: `portcall-test-${runId}`, readUncommitted: false });
    await consumer.connect();
    cleanups.push(() => consumer.disconnect());
    const messages = await consumeUntil(consumer, topic, (got) => got.some((m) => m.key?.toString() === 'sentinel'), 60_000);

    expect(messages.map((m) => m.key?.toString())).toEqual(['container-1', 'container-2', 'container-3', 'sentinel']);
    const payloads = messages.slice(0, 3);
    expect(payloads.map((m) => JSON.parse(m.value?.toString() ?? 'null') as unknown)).toEqual([
      { seq: 1, tempC: 5 },
      { seq: 2, tempC: 6 },
      { seq: 3, tempC: 7 },
    ]);
    expect(payloads.map((m) => m.headers?.['portcall-seq']?.toString())).toEqual(['1', '2', '3']);
    expect(payloads.map((m) => m.headers?.['portcall-origin']?.toString())).toEqual(['ship-a', 'ship-a', 'ship-a']);
    // Offsets are contiguous within the transaction; its commit marker takes the next one.
    expect(payloads.map((m) => m.offset)).toEqual(['0', '1', '2']);
  });

  it('maps its classes from the archive a clean exit wrote', { timeout: 120_000 }, async () => {
    const archive = BrokerClassArchive.for(await ensureKafkaJars(), (await requireJava()).description);
    // Whether or not an archive was there before, a broker that stops cleanly leaves one.
    const first = await startKafkaBroker({ heapMb: 256, quickJit: true });
    cleanups.push(() => first.stop());
    await first.stop();
    expect(existsSync(archive.path)).toBe(true);

    const second = await startKafkaBroker({ heapMb: 256, quickJit: true });
    cleanups.push(() => second.stop());
    expect(readFileSync(`/proc/${second.pid}/cmdline`, 'utf8').split('\0')).toContain(`-XX:SharedArchiveFile=${archive.path}`);
    // The JVM warns when it cannot map an archive it was given (and then loads classes as usual).
    expect(readFileSync(second.logFile, 'utf8')).not.toMatch(/\[warning\]\[cds/);
    await second.stop();
  });

  it('keeps acknowledged records across kill -9 and restart of its own broker', { timeout: 120_000 }, async () => {
    const broker = await startKafkaBroker({ heapMb: 256, startTimeoutMs: 60_000, quickJit: true });
    cleanups.push(() => broker.stop());
    expect(broker.bootstrap).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(broker.bootstrap).not.toBe(kafkaBootstrap());
    const topic = `portcall-test-crash-${randomUUID()}`;

    const before = client(broker.bootstrap);
    const admin = before.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = before.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    // acks=-1: the broker has appended the record before it answers, which is what must survive.
    await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: 'written-before-crash' }] });
    await producer.disconnect();

    const crashedPid = broker.pid;
    broker.kill9();
    await broker.restart();
    expect(broker.pid).not.toBe(crashedPid);
    expect(() => process.kill(crashedPid, 0)).toThrow();

    const after = client(broker.bootstrap);
    const consumer = after.consumer({ groupId: `portcall-test-crash-${randomUUID()}`, readUncommitted: false });
    await consumer.connect();
    cleanups.push(() => consumer.disconnect());
    const messages = await consumeUntil(consumer, topic, (got) => got.length >= 1, 60_000);
    expect(messages.map((m) => m.value?.toString())).toEqual(['written-before-crash']);
    await consumer.disconnect();

    const { dataDir } = broker;
    const stoppedPid = broker.pid;
    await broker.stop();
    expect(existsSync(dataDir)).toBe(false);
    expect(() => process.kill(stoppedPid, 0)).toThrow();
  });
});
