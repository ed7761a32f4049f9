/**
 * Wire format version 2: the telemetry-aware columnar codec. Lossless for every record,
 * compact for readings, and every malformed or lying batch is refused with a specific
 * reason (never another kind of exception).
 */
import { brotliCompressSync, crc32, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InvalidInputError, type LogRecord } from '../core/index.js';
import { CompressionV2, decodeBatch, encodeBatch, encodeBatchV2 } from '../edge/link/index.js';
import { ByteReader, ByteWriter } from '../edge/link/byte-buffer.js';
import { readInts, readNumbers, writeInts, writeNumbers } from '../edge/link/columns.js';
import { buildFlatJson, shredFlatJson } from '../edge/link/flat-json.js';
import { fleetRecords, take } from '../bench/uplink-fleet.js';

const limits = { maxDecompressedBytes: 16 * 1024 * 1024, maxRecords: 100_000 };

/** Records in a canonical order (the codec groups by topic), payloads as hex. */
function canonical(records: readonly LogRecord[]) {
  const withIndex = records.map((record, index) => ({ record, index }));
  withIndex.sort((left, right) => {
    const byStream = left.record.stream < right.record.stream ? -1 : left.record.stream > right.record.stream ? 1 : 0;
    const byTopic = left.record.topic < right.record.topic ? -1 : left.record.topic > right.record.topic ? 1 : 0;
    return byStream || byTopic || left.index - right.index;
  });
  return withIndex.map(({ record }) => ({ ...record, headers: { ...record.headers }, payload: Buffer.from(record.payload).toString('hex') }));
}

function reasonOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    expect(error, String(error)).toBeInstanceOf(InvalidInputError);
    return (error as InvalidInputError).reason;
  }
  throw new Error('expected the batch to be refused');
}

/** A version 2 frame around any body, with a correct checksum unless told otherwise. */
function frame(body: Buffer, options: { compression?: number; records: number; rawBytes: number }): Buffer {
  const header = Buffer.alloc(21);
  Buffer.from('PCB2').copy(header);
  header.writeUInt8(options.compression ?? CompressionV2.Brotli, 4);
  header.writeUInt32BE(crc32(body), 5);
  header.writeUInt32BE(body.length, 9);
  header.writeUInt32BE(options.records, 13);
  header.writeUInt32BE(options.rawBytes, 17);
  return Buffer.concat([header, body]);
}

/** `count` records of container Y01 at offsets 0.., each with these headers and payload. */
function recordsOfY01(count: number, headers: Record<string, string>, payload: Buffer): LogRecord[] {
  return Array.from({ length: count }, (_unused, offset) => ({ origin: 'AURORA', stream: 'containers', topic: 'Y01', offset, eventTimeMs: 1, ingestTimeMs: 1, headers, payload }));
}

const anyNumber = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 1e308, -1e308, 5e-324, 1e-7, 1e21, 2 ** 53, -(2 ** 53) - 2, 0.1, -18.13),
  fc.integer({ min: -100_000, max: 100_000 }).map((value) => value / 100),
);
const scalar = fc.oneof(anyNumber, fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), fc.boolean(), fc.constant(null));
const readingKeys = ['ts', 'container', 'tempC', 'setpointC', 'humidityPct', 'door'];
const flatPayload = fc
  .tuple(fc.subarray(readingKeys), fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), scalar, { maxKeys: 3 }), fc.array(scalar, { minLength: 6, maxLength: 6 }))
  .map(([keys, extra, values]) => {
    const document: Record<string, unknown> = {};
    keys.forEach((key, index) => (document[key] = values[index]));
    Object.assign(document, extra);
    return Buffer.from(JSON.stringify(document));
  });
const payload = fc.oneof(
  flatPayload,
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
  fc.constantFrom('{"t":-0}', '{"t":1.0}', '{"t": 1}', '{"a":{"b":[1,2]}}', '{}', '', 'null', '{"1":1,"b":2}', '{"t":1e400}', '\u00ff{').map((text) => Buffer.from(text)),
  fc.jsonValue().map((value) => Buffer.from(JSON.stringify(value) ?? 'null')),
);
const topicName = fc.oneof(fc.constantFrom('Y01', 'Y02', 'C00042'), fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }));
const arbitraryRecord = fc.record({
  origin: fc.oneof(fc.constant('AURORA'), fc.string({ unit: 'binary', minLength: 1, maxLength: 10 })),
  stream: fc.constantFrom('containers', 'ships', 'alerts', 'manifests'),
  topic: topicName,
  offset: fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)),
  eventTimeMs: fc.oneof(fc.integer({ min: -8.64e15, max: 8.64e15 }), fc.constant(1_763_769_600_000)),
  ingestTimeMs: fc.oneof(fc.integer({ min: 0, max: 8.64e15 }), fc.constant(1_763_769_600_005)),
  headers: fc.oneof(
    fc.constant({}),
    topicName.map((topic) => ({ 'mqtt-topic': `bigblue/containers/${topic}/reefer` })),
    fc.dictionary(fc.string({ unit: 'binary', minLength: 1, maxLength: 10 }), fc.string({ unit: 'binary' }), { maxKeys: 3 }),
  ),
  payload,
});

describe('batch wire format v2', () => {
  it('round-trips arbitrary records: NaN, -0, huge and tiny numbers, missing fields, unicode, binary, empty batches (property)', () => {
    fc.assert(
      fc.property(fc.array(arbitraryRecord, { maxLength: 40 }), fc.constantFrom(CompressionV2.Brotli, CompressionV2.None), (records, compression) => {
        const decoded = decodeBatch(encodeBatchV2({ sender: 'AURORA', records }, { compression, quality: 1 }), limits);
        expect(decoded.version).toBe(2);
        expect(decoded.sender).toBe('AURORA');
        expect(canonical(decoded.records)).toEqual(canonical(records));
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips the standard fleet byte for byte and keeps each topic in order', () => {
    const records = take(fleetRecords({ containers: 300 }), 3000);
    const decoded = decodeBatch(encodeBatchV2({ sender: 'AURORA', records }), limits);
    expect(canonical(decoded.records)).toEqual(canonical(records));
    const offsetsOf = (topic: string) => decoded.records.filter((record) => record.topic === topic).map((record) => record.offset);
    expect(offsetsOf('C00007')).toEqual(Array.from({ length: 10 }, (_unused, index) => index));
  });

  it('gives decoded payloads memory of their own: a kept record holds a piece of at most 64 KiB alive, never the body', () => {
    // 3 containers x 1,000 binary 200-byte payloads: each container's payloads lie one after
    // another in the body (200 KB a container), copied out in pieces of at most 64 KiB.
    const records: LogRecord[] = Array.from({ length: 3000 }, (_unused, index) => ({
      origin: 'AURORA',
      stream: 'containers',
      topic: `C0000${index % 3}`,
      offset: Math.floor(index / 3),
      eventTimeMs: 1_763_769_600_000 + index,
      ingestTimeMs: 1_763_769_600_000 + index,
      headers: {},
      payload: Buffer.from(Array.from({ length: 200 }, (_byte, at) => (index * 7 + at * 13) & 0xff)),
    }));
    const body = encodeBatchV2({ sender: 'AURORA', records }, { compression: CompressionV2.None });
    const decoded = decodeBatch(body, limits);
    body.fill(0xaa);
    expect(canonical(decoded.records)).toEqual(canonical(records));
    for (const record of decoded.records) {
      expect(record.payload.buffer).not.toBe(body.buffer);
      expect(record.payload.buffer.byteLength).toBeLessThanOrEqual(64 * 1024);
    }
  });

  it('carries the standard fleet in at most 4 bytes a reading on a satellite link, 10,000-reading batches, at least 4 times smaller than gzip of JSON lines', () => {
    const source = fleetRecords({ containers: 2000 });
    take(source, 2000); // the first minute: every container's first reading
    const wire = { satellite: 0, fast: 0 };
    let gzipped = 0;
    let readings = 0;
    for (let batch = 0; batch < 3; batch += 1) {
      const records = take(source, 10_000);
      readings += records.length;
      // What compression 'auto' picks on a link capped at ≤ 1 Mbit/s, and on a faster one.
      wire.satellite += encodeBatchV2({ sender: 'AURORA', records }, { quality: 11 }).length;
      wire.fast += encodeBatchV2({ sender: 'AURORA', records }, { quality: 5 }).length;
      gzipped += gzipSync(Buffer.from(records.map((record) => `${Buffer.from(record.payload).toString()}\n`).join(''))).length;
    }
    expect(readings).toBe(30_000);
    expect(wire.satellite / readings).toBeLessThan(4);
    expect(gzipped / wire.satellite).toBeGreaterThan(4);
    expect(wire.fast / readings).toBeLessThan(4.5);
    expect(gzipped / wire.fast).toBeGreaterThan(3.5);
  });

  it('stores numbers exactly: any double through a number column, integers through an integer column (property)', () => {
    fc.assert(
      fc.property(fc.array(anyNumber, { maxLength: 60 }), fc.boolean(), (values, withReference) => {
        const reference = withReference ? values.map((value, index) => (Number.isSafeInteger(value) ? value - (index % 3) : index)) : undefined;
        const writer = new ByteWriter(16);
        writeNumbers(writer, values, reference === undefined ? {} : { reference });
        const back = readNumbers(new ByteReader(Buffer.from(writer.finish())), values.length, reference === undefined ? {} : { reference });
        expect(back.length).toBe(values.length);
        back.forEach((value, index) => expect(Object.is(value, values[index]), `${value} vs ${values[index]}`).toBe(true));
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -(2 ** 52), max: 2 ** 52 }), { maxLength: 60 }), (values) => {
        const writer = new ByteWriter(16);
        writeInts(writer, values);
        expect(readInts(new ByteReader(Buffer.from(writer.finish())), values.length)).toEqual(values);
      }),
      { numRuns: 500 },
    );
  });

  it('takes a payload apart only when it rebuilds to the same bytes (property)', () => {
    // Anything JSON.stringify writes for a flat object is taken apart and rebuilt exactly.
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), scalar, { maxKeys: 6 }), (document) => {
        const bytes = Buffer.from(JSON.stringify(document));
        const flat = shredFlatJson(bytes);
        expect(flat).toBeDefined();
        expect(Buffer.from(buildFlatJson(flat!.keys, flat!.values)).equals(bytes)).toBe(true);
      }),
      { numRuns: 1000 },
    );
    // Anything else is either refused or, if taken apart, rebuilt exactly: mutate bytes at random.
    const texts = fc.oneof(
      fc.dictionary(fc.string({ maxLength: 4 }), scalar, { maxKeys: 4 }).map((document) => JSON.stringify(document)),
      fc.constantFrom('{"a":1.0}', '{"a":-0}', '{"a":01}', '{"a":1e5}', '{"a":0.0000001}', '{"a":1.50}', '{"a":"\\u0041"}', '{"a":100000000000000000000}', '{"a":1234567890123456}'),
    );
    fc.assert(
      fc.property(texts, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean(), (text, at, byte, mutate) => {
        const bytes = Buffer.from(text);
        if (mutate && bytes.length > 0) bytes[at % bytes.length] = byte;
        const flat = shredFlatJson(bytes);
        if (flat !== undefined) expect(Buffer.from(buildFlatJson(flat.keys, flat.values)).equals(bytes)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('refuses truncated, bit-flipped and lying batches with a specific reason', () => {
    const records = take(fleetRecords({ containers: 20 }), 100);
    const good = encodeBatchV2({ sender: 'AURORA', records });
    expect(reasonOf(() => decodeBatch(good.subarray(0, 10), limits))).toBe('bad-magic');
    expect(reasonOf(() => decodeBatch(good.subarray(0, good.length - 1), limits))).toBe('bad-length');
    const flipped = Buffer.from(good);
    flipped[good.length - 7]! ^= 0x04;
    expect(reasonOf(() => decodeBatch(flipped, limits))).toBe('bad-checksum');
    const lyingLength = Buffer.from(good);
    lyingLength.writeUInt32BE(good.length, 9);
    expect(reasonOf(() => decodeBatch(lyingLength, limits))).toBe('bad-length');
    const body = good.subarray(21);
    const rawBytes = good.readUInt32BE(17);
    expect(reasonOf(() => decodeBatch(frame(body, { records: 101, rawBytes }), limits))).toBe('bad-body');
    expect(reasonOf(() => decodeBatch(frame(body, { records: 100, rawBytes: rawBytes - 1 }), limits))).toBe('too-large');
    expect(reasonOf(() => decodeBatch(frame(body, { records: 100, rawBytes: rawBytes + 1 }), limits))).toBe('bad-length');
    expect(reasonOf(() => decodeBatch(frame(body, { records: 100, rawBytes, compression: 7 }), limits))).toBe('bad-compression');
    expect(reasonOf(() => decodeBatch(frame(Buffer.from('not brotli at all'), { records: 1, rawBytes: 100 }), limits))).toBe('bad-compression');
    expect(reasonOf(() => decodeBatch(good, { ...limits, maxRecords: 99 }))).toBe('too-many-records');
    expect(reasonOf(() => decodeBatch(good, { ...limits, maxDecompressedBytes: 100 }))).toBe('too-large');
  });

  it('stops a decompression bomb before it expands: by the declared size, and by the actual one', () => {
    const bomb = brotliCompressSync(Buffer.alloc(64 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(1024);
    expect(reasonOf(() => decodeBatch(frame(bomb, { records: 1, rawBytes: 64 * 1024 * 1024 }), limits))).toBe('too-large');
    // Lying about its size only gets it cut off at the size it declared.
    expect(reasonOf(() => decodeBatch(frame(bomb, { records: 1, rawBytes: 1000 }), limits))).toBe('too-large');
  });

  it('refuses a body whose columns expand past the limit (one long string referenced by every record)', () => {
    const long = 'x'.repeat(100_000);
    const records = recordsOfY01(200, {}, Buffer.from(JSON.stringify({ note: long })));
    const batch = encodeBatchV2({ sender: 'AURORA', records });
    expect(batch.length).toBeLessThan(10_000);
    expect(reasonOf(() => decodeBatch(batch, limits))).toBe('too-large');
  });

  it('refuses a body whose headers expand past the limit (one long header value on every record)', () => {
    const long = 'h'.repeat(100_000);
    const records = recordsOfY01(200, { note: long }, Buffer.from('{}'));
    const batch = encodeBatchV2({ sender: 'AURORA', records });
    expect(batch.length).toBeLessThan(10_000);
    expect(reasonOf(() => decodeBatch(batch, limits))).toBe('too-large');
    // The same batch under a limit it fits is decoded whole, each record with its headers.
    const decoded = decodeBatch(batch, { ...limits, maxDecompressedBytes: 64 * 1024 * 1024 });
    expect(decoded.records.map((record) => record.headers.note?.length)).toEqual(records.map(() => long.length));
  });

  it('never fails any other way on a corrupted body, whatever the bytes (property)', () => {
    const records = [...take(fleetRecords({ containers: 5 }), 20), ...take(fleetRecords({ containers: 2, seed: 3 }), 3).map((record) => ({ ...record, payload: Buffer.from([0, 1, 2]) }))];
    const plain = encodeBatchV2({ sender: 'AURORA', records }, { compression: CompressionV2.None });
    const body = plain.subarray(21);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(body.length), (edits, cut) => {
        const mutated = Buffer.from(body.subarray(0, Math.max(1, cut)));
        for (const [at, byte] of edits) mutated[at % mutated.length] = byte;
        try {
          decodeBatch(frame(mutated, { compression: CompressionV2.None, records: records.length, rawBytes: mutated.length }), limits);
        } catch (error) {
          expect(error, String(error)).toBeInstanceOf(InvalidInputError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('leaves version 1 working beside it', () => {
    const records = take(fleetRecords({ containers: 3 }), 9);
    const decoded = decodeBatch(encodeBatch({ sender: 'AURORA', records }), limits);
    expect(decoded.version).toBe(1);
    expect(canonical(decoded.records)).toEqual(canonical(records));
  });
});
