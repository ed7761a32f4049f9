/**
 * The Kafka log's replacements for kafkajs internals do exactly what kafkajs's own do: the
 * record encoder writes the same bytes for any record shape a producer can hand it (keys,
 * values and header values as strings, buffers or null, repeated headers, large offset and
 * timestamp deltas), the grouping makes the same groups, and the produce request written in
 * one piece from pre-encoded messages is byte for byte the one kafkajs encodes from the same
 * messages, so installing them changes only speed.
 */
import fc from 'fast-check';
import { afterEach, expect, it, vi } from 'vitest';

import { encodeKeyValueTail, encodeRecord, encodeRecordTail } from '../cloud/kafka-log/codec.js';
import { crc32c, createFraming, createRecordEncoder, encodeProduceRequest, groupMessagesPerPartition, kafkajsOriginals, speedups } from '../cloud/kafka-log/kafkajs-speedups.js';

const { encode: original, prototype } = kafkajsOriginals();
const fast = createRecordEncoder(original, prototype);
const bytesOf = (encoder: { buf: Buffer; offset: number }) => Buffer.from(encoder.buf.subarray(0, encoder.offset));

const text = fc.string({ unit: 'binary', maxLength: 40 });
const bytes = fc.uint8Array({ maxLength: 300 }).map((array) => Buffer.from(array));
const headerValue = fc.oneof(text, bytes);

it('encodes every record byte for byte as kafkajs does', () => {
  fc.assert(
    fc.property(
      fc.record({
        offsetDelta: fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 2 ** 31 - 1 })),
        timestampDelta: fc.oneof(fc.constant(0), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.integer({ min: 2 ** 31, max: 2 ** 40 })),
        key: fc.oneof(text, bytes, fc.constant(null)),
        value: fc.oneof(text, bytes, fc.constant(null), fc.constant(Buffer.alloc(5_000, 7))),
        headers: fc.dictionary(text, fc.oneof(headerValue, fc.array(headerValue, { maxLength: 3 })), { maxKeys: 12 }),
      }),
      (record) => {
        const mine = fast(record);
        expect(Object.getPrototypeOf(mine)).toBe(prototype);
        expect(bytesOf(mine).equals(bytesOf(original(record)))).toBe(true);
      },
    ),
    { numRuns: 2_000 },
  );
});

it('encodes a Kafka log record (identity headers, 150-byte JSON value) as kafkajs does', () => {
  const record = {
    offsetDelta: 17,
    timestampDelta: 0,
    key: 'C0042',
    value: Buffer.from('{"seq":1,"tempC":-18.25}'.padEnd(150, ' ')),
    headers: {
      'pc-origin': 'AURORA',
      'pc-stream': 'containers',
      'pc-topic': 'C0042',
      'pc-offset': '123456',
      'pc-event-time-ms': '1763769600000',
      'pc-ingest-time-ms': '1763769600250',
      'pc-content-type': 'application/json',
      'pc-schema': '1',
      'h-mqtt-topic': 'bigblue/containers/C0042/reefer',
    },
  };
  expect(bytesOf(fast(record)).equals(bytesOf(original(record)))).toBe(true);
});

it('groups messages per partition as kafkajs does, in order', () => {
  const { grouping } = kafkajsOriginals();
  fc.assert(
    fc.property(fc.array(fc.record({ key: text, partition: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }) }), { maxLength: 200 }), fc.integer({ min: 0, max: 6 }), (messages, partitions) => {
      const partitionMetadata = Array.from({ length: partitions }, (_unused, partitionId) => ({ partitionId, leader: 0 }));
      const partitioner = ({ message }: { message: unknown }) => (message as { partition?: number; key: string }).partition ?? (message as { key: string }).key.length % Math.max(1, partitions);
      const args = { topic: 't', partitionMetadata, messages, partitioner };
      expect(groupMessagesPerPartition(args)).toEqual(grouping(args));
    }),
    { numRuns: 500 },
  );
});

it('puts a pre-encoded message with a partition in that partition without asking the partitioner', () => {
  const partitionMetadata = Array.from({ length: 6 }, (_unused, partitionId) => ({ partitionId, leader: 0 }));
  const asked: unknown[] = [];
  const partitioner = ({ message }: { message: unknown }) => {
    asked.push(message);
    return 5;
  };
  const tail = encodeKeyValueTail('k', 'v');
  const mine = [{ portcallTail: tail, key: 'C1', value: null, partition: 2 }, { portcallTail: tail, key: 'C2', value: null, partition: 0 }];
  const entry = { portcallTail: tail, key: 'k', value: 'v' };
  const plain = { key: 'x', value: 'y', partition: 1 };
  const groups = groupMessagesPerPartition({ topic: 't', partitionMetadata, messages: [...mine, entry, plain], partitioner });
  expect(groups).toEqual({ 2: [mine[0]], 0: [mine[1]], 5: [entry, plain] });
  expect(asked).toEqual([entry, plain]);
});

it('writes a pre-encoded Kafka log record exactly as kafkajs writes the same record from its message', () => {
  const name = fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 70 }));
  fc.assert(
    fc.property(
      fc.record({
        origin: name,
        stream: fc.constantFrom('containers', 'alerts', 'telemetry'),
        topic: name,
        offset: fc.nat({ max: 2 ** 40 }),
        eventTimeMs: fc.integer({ min: 0, max: 2 ** 45 }),
        ingestTimeMs: fc.integer({ min: 0, max: 2 ** 45 }),
        headers: fc.dictionary(fc.oneof(name, fc.constant('content-type'), fc.constant('__proto__')), fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 90 })), { maxKeys: 4 }),
        payload: fc.uint8Array({ maxLength: 400 }),
      }),
      fc.nat({ max: 5_000 }),
      (record, offsetDelta) => {
        const headers = Object.fromEntries(Object.entries(record.headers));
        const logRecord = { ...record, headers };
        const message = encodeRecord(logRecord, 'application/json', 0);
        const expected = original({ ...message, offsetDelta, timestampDelta: 0 } as Parameters<typeof original>[0]);
        const mine = fast({ portcallTail: encodeRecordTail(logRecord, 'application/json'), key: 'ignored', value: null, offsetDelta, timestampDelta: 0 });
        expect(bytesOf(mine).equals(bytesOf(expected))).toBe(true);
      },
    ),
    { numRuns: 1_000 },
  );
});

afterEach(() => {
  vi.restoreAllMocks();
});

it('computes CRC-32C eight bytes at a time as kafkajs does one at a time', async () => {
  const { createRequire } = await import('node:module');
  const kafkajsCrc = createRequire(import.meta.url)('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (buffer: Buffer) => number;
  expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283); // the standard check value
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 20 }), (array, cut) => {
      const buffer = Buffer.from(array);
      const start = Math.min(cut, buffer.length);
      expect(crc32c(buffer, start, buffer.length)).toBe(kafkajsCrc(buffer.subarray(start)));
    }),
    { numRuns: 2_000 },
  );
});

it('writes a produce request of pre-encoded messages exactly as kafkajs encodes it from the messages', async () => {
  const { produceRequest: kafkajsProduce, prototype: encoderPrototype } = kafkajsOriginals();
  expect(speedups.produceRequest).toBe('installed');
  expect(kafkajsProduce).toBeDefined();
  const now = 1_763_769_600_123;
  vi.spyOn(Date, 'now').mockReturnValue(now);
  const name = fc.string({ minLength: 1, maxLength: 12 });
  const record = fc.record({
    origin: name,
    stream: fc.constantFrom('containers', 'alerts'),
    topic: name,
    offset: fc.nat({ max: 2 ** 40 }),
    eventTimeMs: fc.integer({ min: 0, max: 2 ** 45 }),
    ingestTimeMs: fc.integer({ min: 0, max: 2 ** 45 }),
    headers: fc.dictionary(name, fc.string({ maxLength: 30 }), { maxKeys: 2 }),
    payload: fc.uint8Array({ maxLength: 200 }),
  });
  const entry = fc.record({ key: fc.string({ maxLength: 30 }), value: fc.string({ maxLength: 60 }) });
  const partition = fc.record({
    partition: fc.nat({ max: 11 }),
    firstSequence: fc.nat({ max: 2 ** 31 - 1 }),
    records: fc.array(fc.oneof(record.map((r) => ({ record: r })), entry.map((e) => ({ entry: e }))), { minLength: 1, maxLength: 40 }),
  });
  const args = fc.record({
    acks: fc.constantFrom(-1, 1),
    timeout: fc.nat({ max: 60_000 }),
    transactionalId: fc.option(fc.string({ maxLength: 40 }), { nil: null }),
    producerId: fc.bigInt({ min: 0n, max: 2n ** 62n }),
    producerEpoch: fc.nat({ max: 32_000 }),
    topicData: fc.array(fc.record({ topic: fc.string({ minLength: 1, maxLength: 30 }), partitions: fc.array(partition, { minLength: 1, maxLength: 4 }) }), { minLength: 1, maxLength: 3 }),
  });
  await fc.assert(
    fc.asyncProperty(args, async (generated) => {
      const messagesOf = (items: typeof generated.topicData[number]['partitions'][number]['records'], pre: boolean) =>
        items.map((item) => {
          if ('entry' in item) {
            const message = { key: item.entry.key, value: item.entry.value };
            return pre ? { ...message, portcallTail: encodeKeyValueTail(message.key, message.value) } : message;
          }
          const logRecord = { ...item.record, headers: Object.fromEntries(Object.entries(item.record.headers)) };
          const message = encodeRecord(logRecord, 'application/json', 0);
          return pre ? { ...message, portcallTail: encodeRecordTail(logRecord, 'application/json') } : message;
        });
      const build = (pre: boolean) => ({
        acks: generated.acks,
        timeout: generated.timeout,
        transactionalId: generated.transactionalId,
        producerId: { value: generated.producerId },
        producerEpoch: generated.producerEpoch,
        compression: 0,
        topicData: generated.topicData.map(({ topic, partitions }) => ({
          topic,
          partitions: partitions.map((p) => ({ partition: p.partition, firstSequence: p.firstSequence, messages: messagesOf(p.records, pre) })),
        })),
      });
      const expected = await kafkajsProduce!(build(false) as never).encode();
      const mine = encodeProduceRequest(build(true) as never, encoderPrototype, now);
      expect(mine).toBeDefined();
      expect(bytesOf(mine!).equals(bytesOf(expected))).toBe(true);
    }),
    { numRuns: 300 },
  );
});

it('leaves to kafkajs a produce request with a message that is not pre-encoded', () => {
  const { prototype: encoderPrototype } = kafkajsOriginals();
  const args = {
    acks: -1,
    timeout: 30_000,
    topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [{ portcallTail: encodeKeyValueTail('k', 'v') }, { key: 'k', value: 'v' }] }] }],
  };
  expect(encodeProduceRequest(args as never, encoderPrototype)).toBeUndefined();
  expect(encodeProduceRequest({ ...args, compression: 1 } as never, encoderPrototype)).toBeUndefined();
});

it('frames a request (size, api key, version, correlation id, client id, body) as kafkajs does', async () => {
  const { framing: kafkajsFraming, prototype: encoderPrototype } = kafkajsOriginals();
  expect(speedups.framing).toBe('installed');
  const framing = createFraming(encoderPrototype);
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        correlationId: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        clientId: fc.option(fc.string({ maxLength: 40 }), { nil: null }),
        apiKey: fc.nat({ max: 70 }),
        apiVersion: fc.nat({ max: 12 }),
        body: fc.uint8Array({ maxLength: 3_000 }),
      }),
      async ({ correlationId, clientId, apiKey, apiVersion, body }) => {
        const encode = () => {
          // An encoder with spare room after its content, as kafkajs's grow.
          const encoder = Object.create(encoderPrototype) as { buf: Buffer; offset: number };
          encoder.buf = Buffer.concat([Buffer.from(body), Buffer.alloc(17, 0xee)]);
          encoder.offset = body.length;
          return encoder;
        };
        const args = { correlationId, clientId, request: { apiKey, apiVersion, encode } };
        expect(bytesOf(await framing(args)).equals(bytesOf(await kafkajsFraming(args)))).toBe(true);
      },
    ),
    { numRuns: 500 },
  );
});
