/**
 * The Kafka log's replacements for kafkajs internals do exactly what kafkajs's own do: the
 * record encoder writes the same bytes for any record shape a producer can hand it (keys,
 * values and header values as strings, buffers or null, repeated headers, large offset and
 * timestamp deltas), and the grouping makes the same groups, so installing them changes only
 * speed.
 */
import fc from 'fast-check';
import { expect, it } from 'vitest';

import { encodeRecord, encodeRecordTail } from '../cloud/kafka-log/codec.js';
import { createRecordEncoder, groupMessagesPerPartition, kafkajsOriginals } from '../cloud/kafka-log/kafkajs-speedups.js';

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
