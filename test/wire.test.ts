import { crc32, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InvalidInputError, type LogRecord } from '../core/index.js';
import { Compression, decodeBatch, encodeBatch } from '../edge/link/index.js';

const limits = { maxDecompressedBytes: 1024 * 1024, maxRecords: 1000 };

const record = (offset: number, payload = `{"tempC":-18.${offset}}`): LogRecord => ({
  origin: 'AURORA',
  stream: 'containers',
  topic: 'Y01',
  offset,
  eventTimeMs: 1_760_000_000_000 + offset,
  ingestTimeMs: 1_760_000_000_500 + offset,
  headers: offset % 2 === 0 ? { 'mqtt-topic': 'bigblue/containers/Y01/reefer' } : {},
  payload: Buffer.from(payload),
});

function reasonOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return (error as InvalidInputError).reason;
  }
  throw new Error('expected the batch to be refused');
}

const normalise = (records: readonly LogRecord[]) => records.map((r) => ({ ...r, payload: Buffer.from(r.payload).toString('hex') }));

describe('batch wire format v1', () => {
  it('round-trips records, compressed or not', () => {
    const records = [record(0), record(1), record(2, '\u0000binary\uffff')];
    for (const compression of [Compression.Gzip, Compression.None]) {
      const decoded = decodeBatch(encodeBatch({ sender: 'AURORA', records }, compression), limits);
      expect(decoded.sender).toBe('AURORA');
      expect(normalise(decoded.records)).toEqual(normalise(records));
    }
  });

  it('round-trips arbitrary records (property)', () => {
    const arbitraryRecord = fc.record({
      origin: fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/),
      stream: fc.constantFrom('containers', 'ships', 'alerts', 'manifests'),
      topic: fc.string({ minLength: 1, maxLength: 40, unit: 'binary' }),
      offset: fc.nat(),
      eventTimeMs: fc.integer({ min: -8.64e15, max: 8.64e15 }),
      ingestTimeMs: fc.integer({ min: 0, max: 8.64e15 }),
      headers: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }), fc.string({ unit: 'binary' })),
      payload: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
    });
    fc.assert(
      fc.property(fc.array(arbitraryRecord, { maxLength: 30 }), (records) => {
        const decoded = decodeBatch(encodeBatch({ sender: 'S', records }), { maxDecompressedBytes: 10 * 1024 * 1024, maxRecords: 1000 });
        expect(normalise(decoded.records)).toEqual(normalise(records));
      }),
      { numRuns: 200 },
    );
  });

  it('refuses truncated, corrupted and lying batches', () => {
    const good = encodeBatch({ sender: 'AURORA', records: [record(0), record(1)] });
    expect(reasonOf(() => decodeBatch(good.subarray(0, 8), limits))).toBe('bad-magic');
    expect(reasonOf(() => decodeBatch(good.subarray(0, good.length - 1), limits))).toBe('bad-length');
    const flipped = Buffer.from(good);
    flipped[flipped.length - 5]! ^= 0x10;
    expect(reasonOf(() => decodeBatch(flipped, limits))).toBe('bad-checksum');
    const lying = Buffer.from(good);
    lying.writeUInt32BE(good.length * 2, 9);
    expect(reasonOf(() => decodeBatch(lying, limits))).toBe('bad-length');
    expect(reasonOf(() => decodeBatch(Buffer.from('GET / HTTP/1.1\r\n\r\n'), limits))).toBe('bad-magic');
  });

  it('stops a decompression bomb at the limit', () => {
    const bombBody = gzipSync(Buffer.alloc(50 * 1024 * 1024, 0x20));
    const header = Buffer.alloc(13);
    Buffer.from('PCB1').copy(header);
    header.writeUInt8(1, 4);
    header.writeUInt32BE(crc32(bombBody), 5);
    header.writeUInt32BE(bombBody.length, 9);
    expect(reasonOf(() => decodeBatch(Buffer.concat([header, bombBody]), limits))).toBe('too-large');
  });

  it('refuses too many records and malformed bodies', () => {
    const many = encodeBatch({ sender: 'AURORA', records: Array.from({ length: 11 }, (_u, i) => record(i)) });
    expect(reasonOf(() => decodeBatch(many, { ...limits, maxRecords: 10 }))).toBe('too-many-records');
    const header = Buffer.alloc(13);
    Buffer.from('PCB1').copy(header);
    const body = Buffer.from(JSON.stringify({ sender: 'AURORA', records: [{ o: 'A', s: 'x', t: 'y', n: -1 }] }));
    header.writeUInt8(0, 4);
    header.writeUInt32BE(crc32(body), 5);
    header.writeUInt32BE(body.length, 9);
    expect(reasonOf(() => decodeBatch(Buffer.concat([header, body]), limits))).toBe('bad-body');
  });
});
