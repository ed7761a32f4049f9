/**
 * Reading back what a Kafka topic holds, the way a third-party consumer would: a plain
 * kafkajs consumer group, read_committed, from the beginning. It knows it has read everything
 * when it sees a sentinel it wrote itself to every partition after the writes under test, so
 * it does not depend on how the code under test finds the end of a topic. Used by tests and
 * by the chaos run (tools/chaos); the sentinels carry the header `test-sentinel`.
 */
import { randomUUID } from 'node:crypto';

import { Kafka, logLevel, Partitioners, type KafkaMessage } from 'kafkajs';

import { lz4Unavailable, registerLz4Codec } from '../../cloud/kafka-log/index.js';

export interface ReadMessage {
  readonly partition: number;
  readonly message: KafkaMessage;
}

export function header(message: KafkaMessage, name: string): string | undefined {
  const value = message.headers?.[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? String(value[0]) : value.toString();
}

export async function readBackCommitted(brokers: string, topic: string, timeoutMs = 30_000): Promise<ReadMessage[]> {
  // The Kafka log writes LZ4 batches by default, and kafkajs has no LZ4 codec of its own: a
  // third party's kafkajs consumer adds one (a codec package), and so does this one. Checked
  // here, not on import, so a process that only starts a broker never needs LZ4.
  if (!registerLz4Codec()) throw new Error(`reading back needs the LZ4 codec: ${lz4Unavailable ?? 'not registered'}`);
  const kafka = new Kafka({ clientId: 'portcall-readback', brokers: [brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const partitions = (await admin.fetchTopicOffsets(topic)).map(({ partition }) => partition);
  await admin.disconnect();

  const marker = randomUUID();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  await producer.send({
    topic,
    messages: partitions.map((partition) => ({ partition, key: 'sentinel', value: marker, headers: { 'test-sentinel': marker } })),
  });
  await producer.disconnect();

  const groupId = `readback-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 200 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    const read: ReadMessage[] = [];
    const waiting = new Set(partitions);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read back of ${topic}: no sentinel on partitions ${[...waiting].join(',')}`)), timeoutMs);
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            const sentinel = header(message, 'test-sentinel');
            if (sentinel === marker) {
              waiting.delete(partition);
              if (waiting.size === 0) {
                clearTimeout(timer);
                resolve();
              }
            } else if (sentinel === undefined) {
              read.push({ partition, message });
            }
          },
        })
        .catch(reject);
    });
    return read;
  } finally {
    await consumer.disconnect();
  }
}
