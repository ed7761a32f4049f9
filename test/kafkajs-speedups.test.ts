/**
 * The Kafka log's replacements for kafkajs internals do exactly what kafkajs's own do: the
 * record encoder writes the same bytes for any record shape a producer can hand it (keys,
 * values and header values as strings, buffers or null, repeated headers, large offset and
 * timestamp deltas), the grouping makes the same groups, and the produce request written in
 * one piece from pre-encoded messages is byte for byte the one kafkajs encodes from the same
 * messages, uncompressed or compressed (gzip, LZ4), so installing them changes only speed.
 */
import { createRequire } from 'node:module';

import fc from 'fast-check';
import { afterEach, expect, it, vi } from 'vitest';

import { TailTemplate, encodeKeyValueTail, encodeRecord, encodeRecordTail, recordTailSize, writeRecordTail } from '../cloud/kafka-log/codec.js';
import { crc32c, crc32cImplementation, crc32cInJavaScript, createCoordinatorCache, createFraming, createRecordDecoder, createRecordEncoder, encodeCompressedProduceRequest, encodeProduceRequest, groupMessagesPerPartition, kafkajsOriginals, speedups } from '../cloud/kafka-log/kafkajs-speedups.js';

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

/** Offsets and times as the Kafka log writes them in headers: decimal digits at every length, and the edges of the 32-bit and 10^8 splits. */
const identityNumber = fc.oneof(
  fc.nat({ max: 2 ** 40 }),
  fc.maxSafeNat(),
  fc.constantFrom(0, 9, 10, 99_999_999, 100_000_000, 999_999_999, 1_000_000_000, 2 ** 31 - 1, 2 ** 31, 1_763_769_600_000, 10 ** 15 - 1, 10 ** 15, Number.MAX_SAFE_INTEGER),
);

it('writes a pre-encoded Kafka log record exactly as kafkajs writes the same record from its message', () => {
  const name = fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 70 }));
  fc.assert(
    fc.property(
      fc.record({
        origin: name,
        stream: fc.constantFrom('containers', 'alerts', 'telemetry'),
        topic: name,
        offset: identityNumber,
        eventTimeMs: fc.oneof(identityNumber, fc.integer({ min: -(2 ** 45), max: -1 })),
        ingestTimeMs: identityNumber,
        headers: fc.dictionary(fc.oneof(name, fc.constant('content-type'), fc.constant('__proto__')), fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 90 })), { maxKeys: 4 }),
        payload: fc.uint8Array({ maxLength: 400 }),
      }),
      fc.nat({ max: 5_000 }),
      (record, offsetDelta) => {
        const headers = Object.fromEntries(Object.entries(record.headers));
        const logRecord = { ...record, headers };
        const message = encodeRecord(logRecord, 'application/json', 0);
        const expected = original({ ...message, offsetDelta, timestampDelta: 0 } as Parameters<typeof original>[0]);
        const tail = encodeRecordTail(logRecord, 'application/json');
        const mine = fast({ portcallTail: tail, key: 'ignored', value: null, offsetDelta, timestampDelta: 0 });
        expect(bytesOf(mine).equals(bytesOf(expected))).toBe(true);
        // Written straight into a buffer, at an offset: the same bytes, exactly the size announced.
        expect(recordTailSize(logRecord, 'application/json')).toBe(tail.length);
        const into = Buffer.alloc(tail.length + 10, 0xee);
        expect(writeRecordTail(into, 3, logRecord, 'application/json')).toBe(3 + tail.length);
        expect(into.subarray(3, 3 + tail.length).equals(tail)).toBe(true);
        const portcallWriteTail = (_message: unknown, buf: Buffer, at: number) => writeRecordTail(buf, at, logRecord, 'application/json');
        const written = fast({ portcallTailSize: tail.length, portcallWriteTail, key: 'ignored', value: null, offsetDelta, timestampDelta: 0 });
        expect(bytesOf(written).equals(bytesOf(expected))).toBe(true);
      },
    ),
    { numRuns: 1_000 },
  );
});

it('writes the tails of a run of records from one TailTemplate exactly as writeRecordTail writes each', () => {
  const name = fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 70 }));
  const headers = fc.dictionary(fc.oneof(name, fc.constant('content-type'), fc.constant('__proto__')), fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 90 })), { maxKeys: 4 });
  const varying = fc.record({
    offset: identityNumber,
    eventTimeMs: fc.oneof(identityNumber, fc.integer({ min: -(2 ** 45), max: -1 })),
    ingestTimeMs: identityNumber,
    payload: fc.uint8Array({ maxLength: 400 }),
  });
  fc.assert(
    fc.property(
      fc.record({ origin: name, stream: fc.constantFrom('containers', 'alerts'), topic: name, headers }),
      fc.array(varying, { minLength: 1, maxLength: 5 }),
      headers,
      (shared, rest, otherHeaders) => {
        const records = rest.map((own) => ({ ...shared, headers: Object.fromEntries(Object.entries(shared.headers)), ...own }));
        const template = new TailTemplate(records[0]!, 'application/json');
        for (const record of records) {
          expect(template.matches(record, 'application/json')).toBe(true);
          const expected = encodeRecordTail(record, 'application/json');
          expect(template.size(record)).toBe(expected.length);
          const into = Buffer.alloc(expected.length + 6, 0xee);
          expect(template.write(into, 2, record)).toBe(2 + expected.length);
          expect(into.subarray(2, 2 + expected.length).equals(expected)).toBe(true);
        }
        // Anything else that the tail holds, changed, and the template no longer matches.
        const record = records[0]!;
        expect(template.matches(record, 'text/plain')).toBe(false);
        expect(template.matches({ ...record, topic: `${record.topic}x` }, 'application/json')).toBe(false);
        expect(template.matches({ ...record, origin: `${record.origin}x` }, 'application/json')).toBe(false);
        expect(template.matches({ ...record, stream: record.stream === 'alerts' ? 'containers' : 'alerts' }, 'application/json')).toBe(false);
        const sameHeaders = JSON.stringify(Object.entries(otherHeaders)) === JSON.stringify(Object.entries(shared.headers));
        expect(template.matches({ ...record, headers: Object.fromEntries(Object.entries(otherHeaders)) }, 'application/json')).toBe(sameHeaders);
      },
    ),
    { numRuns: 1_000 },
  );
});

it('decodes every record as kafkajs does (key, value, timestamp and headers decoded when read, folded in order, repeated names as arrays, __proto__ and inherited names alike)', () => {
  const requireFromHere = createRequire(import.meta.url);
  const Decoder = requireFromHere('kafkajs/src/protocol/decoder.js') as new (buffer: Buffer) => { readVarIntBytes(): Buffer };
  const { decodeRecord: kafkajsDecode } = kafkajsOriginals();
  const decode = createRecordDecoder();
  const headerName = fc.oneof(text, fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'pc-origin', 'h-mqtt-topic'));
  // What each decoder makes of the record: every field kafkajs's record has, read by name (ours
  // are partly accessors on a prototype), the headers as own entries in order and their prototype.
  const seen = (decoded: unknown, fields: readonly string[]) => {
    const record = decoded as Record<string, unknown> & { headers: Record<string, unknown> };
    const headers = record.headers;
    return {
      fields: fields.filter((name) => name !== 'headers').map((name) => [name, record[name]]),
      headers: Object.getOwnPropertyNames(headers).map((name) => [name, headers[name]]),
      prototype: Object.getPrototypeOf(headers) as unknown,
    };
  };
  fc.assert(
    fc.property(
      fc.record({
        offsetDelta: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        timestampDelta: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        key: fc.oneof(text, bytes, fc.constant(null)),
        value: fc.oneof(text, bytes, fc.constant(null)),
        headers: fc.array(fc.tuple(headerName, fc.oneof(headerValue, fc.array(headerValue, { minLength: 1, maxLength: 3 }))), { maxLength: 12 }),
      }),
      fc.record({
        // Both sides of 2^53, where the decoder's offset arithmetic leaves doubles for Longs.
        firstOffset: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 62n }), fc.bigInt({ min: 2n ** 53n - 2n ** 32n, max: 2n ** 53n + 2n })).map(String),
        firstTimestamp: fc.bigInt({ min: 0n, max: 2n ** 50n }).map(String),
        magicByte: fc.constant(2),
        isControlBatch: fc.boolean(),
        timestampType: fc.constantFrom(0, 1),
        maxTimestamp: fc.bigInt({ min: 0n, max: 2n ** 50n }).map(String),
      }),
      (record, batchContext) => {
        // Built with defineProperty: a header named __proto__ must reach the encoder as a name.
        const headers: Record<string, unknown> = {};
        for (const [name, value] of record.headers) Object.defineProperty(headers, name, { value, enumerable: true, writable: true, configurable: true });
        const encoded = bytesOf(original({ ...record, headers } as Parameters<typeof original>[0]));
        const theirs = kafkajsDecode(new Decoder(new Decoder(encoded).readVarIntBytes()) as never, batchContext);
        const ours = decode(new Decoder(new Decoder(encoded).readVarIntBytes()) as never, batchContext);
        const fields = Object.keys(theirs as object);
        expect(fields).toEqual(['magicByte', 'attributes', 'timestamp', 'offset', 'key', 'value', 'headers', 'isControlRecord', 'batchContext']);
        expect(seen(ours, fields)).toEqual(seen(theirs, fields));
        // Assignable, as kafkajs's plain fields are, whether read before or not.
        const replaced = { 'pc-offset': Buffer.from('7') };
        Object.assign(ours as object, { headers: replaced, timestamp: '5', key: null, value: Buffer.from('v') });
        expect(ours).toMatchObject({ headers: replaced, timestamp: '5', key: null, value: Buffer.from('v') });
        const unread = decode(new Decoder(new Decoder(encoded).readVarIntBytes()) as never, batchContext) as Record<string, unknown>;
        Object.assign(unread, { headers: replaced, timestamp: '5', key: null, value: null });
        expect([unread.headers, unread.timestamp, unread.key, unread.value]).toEqual([replaced, '5', null, null]);
      },
    ),
    { numRuns: 1_000 },
  );
  // Installed in place of kafkajs's, so fetches (reads of the Kafka log) decode with it.
  expect(speedups.recordDecoder).toBe('installed');
});

afterEach(() => {
  vi.restoreAllMocks();
});

it('computes CRC-32C natively and eight bytes at a time in JavaScript, as kafkajs does one at a time', async () => {
  const { createRequire } = await import('node:module');
  const kafkajsCrc = createRequire(import.meta.url)('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (buffer: Buffer) => number;
  // The prebuilt native binary exists for this platform; elsewhere the JavaScript one is used.
  if (process.platform === 'linux' && process.arch === 'x64') expect(crc32cImplementation).toBe('native');
  for (const crc of [crc32c, crc32cInJavaScript]) {
    expect(crc(Buffer.from('123456789'))).toBe(0xe3069283); // the standard check value
    expect(crc(Buffer.alloc(0))).toBe(0);
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 20 }), fc.nat({ max: 20 }), fc.nat({ max: 7 }), (array, cut, endCut, shift) => {
      // At every alignment of the buffer's memory: the words are read from the aligned part.
      const buffer = Buffer.concat([Buffer.alloc(shift), Buffer.from(array)]).subarray(shift);
      const start = Math.min(cut, buffer.length);
      const end = Math.max(start, buffer.length - endCut);
      for (const crc of [crc32c, crc32cInJavaScript]) {
        expect(crc(buffer, start, buffer.length)).toBe(kafkajsCrc(buffer.subarray(start)));
        expect(crc(buffer, start, end)).toBe(kafkajsCrc(buffer.subarray(start, end)));
      }
      // A plain Uint8Array (not a Buffer) goes to the JavaScript one, with the same answer.
      expect(crc32c(new Uint8Array(buffer), start, end)).toBe(kafkajsCrc(buffer.subarray(start, end)));
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
    // none, gzip (kafkajs's own codec), LZ4 (ours, registered with kafkajs: compression.ts)
    compression: fc.constantFrom(0, 1, 3),
    topicData: fc.array(fc.record({ topic: fc.string({ minLength: 1, maxLength: 30 }), partitions: fc.array(partition, { minLength: 1, maxLength: 4 }) }), { minLength: 1, maxLength: 3 }),
  });
  await fc.assert(
    fc.asyncProperty(args, async (generated) => {
      // 'tail': pre-encoded tails; 'writer': data records written straight into the request.
      type Form = 'plain' | 'tail' | 'writer';
      const messagesOf = (items: typeof generated.topicData[number]['partitions'][number]['records'], form: Form) =>
        items.map((item) => {
          if ('entry' in item) {
            const message = { key: item.entry.key, value: item.entry.value };
            return form !== 'plain' ? { ...message, portcallTail: encodeKeyValueTail(message.key, message.value) } : message;
          }
          const logRecord = { ...item.record, headers: Object.fromEntries(Object.entries(item.record.headers)) };
          const message = encodeRecord(logRecord, 'application/json', 0);
          if (form === 'tail') return { ...message, portcallTail: encodeRecordTail(logRecord, 'application/json') };
          if (form === 'writer') {
            const portcallWriteTail = (_message: unknown, buf: Buffer, at: number) => writeRecordTail(buf, at, logRecord, 'application/json');
            return { ...message, portcallTailSize: recordTailSize(logRecord, 'application/json'), portcallWriteTail };
          }
          return message;
        });
      const build = (form: Form) => ({
        acks: generated.acks,
        timeout: generated.timeout,
        transactionalId: generated.transactionalId,
        producerId: { value: generated.producerId },
        producerEpoch: generated.producerEpoch,
        compression: generated.compression,
        topicData: generated.topicData.map(({ topic, partitions }) => ({
          topic,
          partitions: partitions.map((p) => ({ partition: p.partition, firstSequence: p.firstSequence, messages: messagesOf(p.records, form) })),
        })),
      });
      const expected = await kafkajsProduce!(build('plain') as never).encode();
      for (const form of ['tail', 'writer'] as const) {
        const mine =
          generated.compression === 0
            ? encodeProduceRequest(build(form) as never, encoderPrototype, now)
            : await encodeCompressedProduceRequest(build(form) as never, encoderPrototype, now);
        expect(mine).toBeDefined();
        expect(bytesOf(mine!).equals(bytesOf(expected))).toBe(true);
      }
    }),
    { numRuns: 300 },
  );
});

it('leaves to kafkajs a produce request with a message that is not pre-encoded, or a codec it lacks', async () => {
  const { prototype: encoderPrototype } = kafkajsOriginals();
  const args = {
    acks: -1,
    timeout: 30_000,
    topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [{ portcallTail: encodeKeyValueTail('k', 'v') }, { key: 'k', value: 'v' }] }] }],
  };
  expect(encodeProduceRequest(args as never, encoderPrototype)).toBeUndefined();
  expect(encodeProduceRequest({ ...args, compression: 1 } as never, encoderPrototype)).toBeUndefined();
  expect(await encodeCompressedProduceRequest({ ...args, compression: 3 } as never, encoderPrototype)).toBeUndefined();
  // Snappy: kafkajs has no codec for it (nor do we), so kafkajs's own encode refuses it.
  const tailed = { ...args, topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [{ portcallTail: encodeKeyValueTail('k', 'v') }] }] }] };
  expect(await encodeCompressedProduceRequest({ ...tailed, compression: 2 } as never, encoderPrototype)).toBeUndefined();
  expect(await encodeCompressedProduceRequest({ ...tailed, compression: 3 } as never, encoderPrototype)).toBeDefined();
});

it('frames a produce request written with room in front in place, as kafkajs frames it', async () => {
  const { framing: kafkajsFraming, prototype: encoderPrototype } = kafkajsOriginals();
  const framing = createFraming(encoderPrototype);
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        correlationId: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        // Up to and past what fits in the room in front (then the body is copied, as before).
        clientId: fc.option(fc.string({ maxLength: 300 }), { nil: null }),
        tails: fc.array(fc.uint8Array({ maxLength: 50 }), { minLength: 1, maxLength: 20 }),
      }),
      async ({ correlationId, clientId, tails }) => {
        const args = {
          acks: -1,
          timeout: 30_000,
          transactionalId: 'tx',
          producerId: { value: 7n },
          producerEpoch: 1,
          topicData: [{ topic: 't', partitions: [{ partition: 0, firstSequence: 0, messages: tails.map((tail) => ({ portcallTail: Buffer.from(tail) })) }] }],
        };
        const encode = () => encodeProduceRequest(args as never, encoderPrototype, 1_763_769_600_123)!;
        const request = { apiKey: 0, apiVersion: 3, encode };
        expect(bytesOf(await framing({ correlationId, clientId, request })).equals(bytesOf(await kafkajsFraming({ correlationId, clientId, request })))).toBe(true);
      },
    ),
    { numRuns: 300 },
  );
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

it('remembers the transaction coordinator per cluster for 10 s while it is connected, and asks for group coordinators every time', async () => {
  let clock = 0;
  let asked = 0;
  const brokers = [1, 2].map((id) => ({
    id,
    connected: true,
    isConnected(): boolean {
      return this.connected;
    },
  }));
  const original = async function (this: object, _args: { groupId: string; coordinatorType?: number }) {
    asked += 1;
    return brokers[(asked - 1) % brokers.length]!;
  };
  const find = createCoordinatorCache(original, () => clock);
  const cluster = {};
  const other = {};
  const transaction = { groupId: 'portcall-X-ingest-from-A', coordinatorType: 1 };
  const first = await find.call(cluster, transaction);
  expect(await find.call(cluster, transaction)).toBe(first);
  expect(asked).toBe(1);
  // Another cluster object (another producer) and another id ask for themselves.
  await find.call(other, transaction);
  await find.call(cluster, { ...transaction, groupId: 'portcall-X-ingest-from-B' });
  expect(asked).toBe(3);
  // Consumer group coordinators are not remembered.
  await find.call(cluster, { groupId: 'g', coordinatorType: 0 });
  await find.call(cluster, { groupId: 'g' });
  expect(asked).toBe(5);
  // 10 s later, or once the broker it found is disconnected, it asks again.
  clock = 10_000;
  const later = await find.call(cluster, transaction);
  expect(asked).toBe(6);
  expect(await find.call(cluster, transaction)).toBe(later);
  (later as (typeof brokers)[number]).connected = false;
  const afterDisconnect = await find.call(cluster, transaction);
  expect(asked).toBe(7);
  expect(afterDisconnect).not.toBe(later);
});
