/**
 * A third-party consumer reads what a Kafka-backed site wrote: Debian's `kcat` (librdkafka,
 * no code of ours) consumes the data and high-water topics as docs/KAFKA.md tells operators
 * to, and finds the layout the document promises. It also shows why the document insists on
 * read_committed: records of an aborted transaction are in the topic, and only a
 * read_committed consumer skips them.
 */
import { randomBytes } from 'node:crypto';

import { Kafka, logLevel } from 'kafkajs';
import { afterAll, expect, it } from 'vitest';

import { KafkaLog } from '../cloud/kafka-log/index.js';
import type { LogRecord } from '../core/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';
import { headerMap, kcatAvailable, kcatConsume, type KcatMessage } from './support/kcat.js';

if (!kcatAvailable) {
  const message = 'kcat is not installed (apt-get install -y kcat); the third-party consumer test cannot run';
  if (process.env.CI === 'true' && kafkaBootstrap() !== null) throw new Error(message);
  process.stderr.write(`\n*** ${message}: SKIPPED ***\n\n`);
}

function rec(topic: string, offset: number, stream = 'containers'): LogRecord {
  return {
    origin: 'AURORA',
    stream,
    topic,
    offset,
    eventTimeMs: 1_763_769_600_000 + offset * 60_000,
    ingestTimeMs: 1_763_769_600_500 + offset * 60_000,
    headers: { 'mqtt-topic': `bigblue/${stream}/${topic}/reefer` },
    payload: Buffer.from(JSON.stringify({ topic, offset, tempC: 4.5 })),
  };
}

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

describeKafka('third-party consumer (kcat) on a Kafka-backed site', () => {
  it.skipIf(!kcatAvailable)('reads records, keys and identity headers read_committed; the high-water topic holds each topic’s next offset', async () => {
    const bootstrap = kafkaBootstrap()!;
    const run = randomBytes(3).toString('hex');
    const topicPrefix = `kcat${run}`;
    const log = await KafkaLog.open({ siteId: `KCAT${run}`, brokers: [bootstrap], topicPrefix, streams: ['containers', 'alerts'], partitions: 3 });
    cleanups.push(() => log.close());

    const written = [
      ...[0, 1, 2, 3].map((offset) => rec('Y01', offset)),
      ...[0, 1].map((offset) => rec('Y02', offset)),
      ...[0, 1, 2].map((offset) => rec('R01', offset)),
    ];
    await log.replicate(written.slice(0, 5));
    await log.replicate(written.slice(5));
    await log.replicate([{ ...rec('Y07', 0, 'alerts'), headers: { 'alert-kind': 'overboard', 'content-type': 'application/vnd.portcall.alert+json' } }]);

    // Another writer's transaction that never commits: in the topic, but not committed data.
    const kafka = new Kafka({ clientId: 'kcat-test', brokers: [bootstrap], logLevel: logLevel.NOTHING });
    const zombie = kafka.producer({ transactionalId: `kcat-test-zombie-${run}`, idempotent: true, maxInFlightRequests: 1 });
    await zombie.connect();
    cleanups.push(() => zombie.disconnect());
    const aborted = await zombie.transaction();
    await aborted.send({
      topic: `${topicPrefix}.containers`,
      messages: [{ key: 'Y01', value: 'never committed', headers: { 'pc-origin': 'ZOMBIE', 'pc-stream': 'containers', 'pc-topic': 'Y01', 'pc-offset': '4' } }],
    });
    await aborted.abort();

    const committed = kcatConsume(bootstrap, `${topicPrefix}.containers`, 'read_committed');
    expect(committed).toHaveLength(written.length);
    const byKey = new Map<string, KcatMessage[]>();
    for (const message of committed) byKey.set(message.key ?? '', [...(byKey.get(message.key ?? '') ?? []), message]);
    expect([...byKey.keys()].sort()).toEqual(['R01', 'Y01', 'Y02']);
    for (const [key, messages] of byKey) {
      // One partition per container, and its records in offset order within it.
      expect(new Set(messages.map((m) => m.partition)).size).toBe(1);
      expect(messages.map((m) => Number(headerMap(m).get('pc-offset')))).toEqual([...messages.keys()]);
      for (const message of messages) {
        const headers = headerMap(message);
        const original = written.find((r) => r.topic === key && r.offset === Number(headers.get('pc-offset')))!;
        expect(Object.fromEntries(headers)).toEqual({
          'pc-origin': 'AURORA',
          'pc-stream': 'containers',
          'pc-topic': key,
          'pc-offset': String(original.offset),
          'pc-event-time-ms': String(original.eventTimeMs),
          'pc-ingest-time-ms': String(original.ingestTimeMs),
          'pc-content-type': 'application/json',
          'pc-schema': '1',
          'h-mqtt-topic': original.headers['mqtt-topic'],
        });
        expect(message.payload).toBe(Buffer.from(original.payload).toString());
      }
    }
    // A read_uncommitted consumer also gets the aborted record: why docs/KAFKA.md requires read_committed.
    const uncommitted = kcatConsume(bootstrap, `${topicPrefix}.containers`, 'read_uncommitted');
    expect(uncommitted.filter((m) => headerMap(m).get('pc-origin') === 'ZOMBIE')).toHaveLength(1);

    // A record's own content-type header wins over its stream's.
    const [alert] = kcatConsume(bootstrap, `${topicPrefix}.alerts`, 'read_committed');
    expect(headerMap(alert!).get('pc-content-type')).toBe('application/vnd.portcall.alert+json');
    expect(headerMap(alert!).get('h-alert-kind')).toBe('overboard');

    // The high-water topic: key "<stream>\0<topic>", the last value per key is where the topic stands.
    const highWater = new Map<string, unknown>();
    for (const message of kcatConsume(bootstrap, `${topicPrefix}.highwater`, 'read_committed')) {
      highWater.set(message.key ?? '', JSON.parse(message.payload ?? 'null'));
    }
    expect(Object.fromEntries(highWater)).toEqual({
      'containers\u0000Y01': { nextOffset: 4, origin: 'AURORA' },
      'containers\u0000Y02': { nextOffset: 2, origin: 'AURORA' },
      'containers\u0000R01': { nextOffset: 3, origin: 'AURORA' },
      'alerts\u0000Y07': { nextOffset: 1, origin: 'AURORA' },
    });
  });
});
