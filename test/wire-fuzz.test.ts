/**
 * Bounded fuzzing of the batch decoders as the receiving endpoint calls them (edge/link
 * `decodeBatch`, versions 1 and 2), beyond what wire.test.ts and wire-v2.test.ts cover (v2
 * bodies corrupted without compression): random frames, version 1 bodies mutated as bytes and
 * as JSON documents under a valid checksum (plain and gzip), and brotli-compressed version 2
 * bodies mutated under a valid checksum. Every input either decodes within the limits or is
 * refused with an InvalidInputError; never another exception, and memory stays bounded.
 */
import { crc32, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidInputError, type LogRecord } from '../core/index.js';
import { Compression, decodeBatch, encodeBatch, encodeBatchV2 } from '../edge/link/index.js';
import { fleetRecords, take } from '../bench/uplink-fleet.js';

const limits = { maxDecompressedBytes: 4 * 1024 * 1024, maxRecords: 10_000 };

/** Decodes; a refusal must be typed, a success within the limits. */
const outcomes = { decoded: 0, refused: new Map<string, number>() };

function decodeOrRefuse(frame: Buffer): void {
  let decoded: ReturnType<typeof decodeBatch>;
  try {
    decoded = decodeBatch(frame, limits);
  } catch (error) {
    expect(error, String((error as Error)?.stack ?? error)).toBeInstanceOf(InvalidInputError);
    const reason = (error as InvalidInputError).reason;
    outcomes.refused.set(reason, (outcomes.refused.get(reason) ?? 0) + 1);
    return;
  }
  outcomes.decoded += 1;
  expect(Array.isArray(decoded.records)).toBe(true);
  expect(decoded.records.length).toBeLessThanOrEqual(limits.maxRecords);
  for (const record of decoded.records) {
    expect(Number.isSafeInteger(record.offset) && record.offset >= 0, `offset ${record.offset}`).toBe(true);
    expect(typeof record.topic).toBe('string');
  }
}

function frameV1(body: Buffer, compression: 0 | 1): Buffer {
  const header = Buffer.alloc(13);
  Buffer.from('PCB1').copy(header);
  header.writeUInt8(compression, 4);
  header.writeUInt32BE(crc32(body), 5);
  header.writeUInt32BE(body.length, 9);
  return Buffer.concat([header, body]);
}

/** A version 2 frame with its checksum and length recomputed for the mutated body. */
function refitV2(good: Buffer, body: Buffer): Buffer {
  const header = Buffer.from(good.subarray(0, 21));
  header.writeUInt32BE(crc32(body), 5);
  header.writeUInt32BE(body.length, 9);
  return Buffer.concat([header, body]);
}

const records: LogRecord[] = [
  ...take(fleetRecords({ containers: 5 }), 30),
  ...take(fleetRecords({ containers: 2, seed: 3 }), 3).map((record) => ({ ...record, payload: Buffer.from([0, 1, 2]) })),
];
const v1Plain = encodeBatch({ sender: 'AURORA', records }, Compression.None);
const v1Gzip = encodeBatch({ sender: 'AURORA', records });
const v2 = encodeBatchV2({ sender: 'AURORA', records });

const edits = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 });

describe('batch decoders under fuzzing (bounded)', () => {
  const rssBefore = process.memoryUsage().rss;

  it('random frames, with and without a valid magic and version, are refused with a reason', { timeout: 15_000 }, () => {
    fc.assert(
      fc.property(fc.constantFrom('', 'PCB1', 'PCB2', 'PCB9'), fc.uint8Array({ maxLength: 300 }), (magic, bytes) => {
        decodeOrRefuse(Buffer.concat([Buffer.from(magic), Buffer.from(bytes)]));
      }),
      { numRuns: 3000 },
    );
  });

  it('version 1: bodies mutated as bytes under a valid checksum, plain and gzip', { timeout: 15_000 }, () => {
    const decompressed = v1Plain.subarray(13);
    fc.assert(
      fc.property(edits, fc.nat(decompressed.length), fc.boolean(), (changes, cut, gzip) => {
        const mutated = Buffer.from(decompressed.subarray(0, Math.max(1, cut)));
        for (const [at, byte] of changes) mutated[at % mutated.length] = byte;
        decodeOrRefuse(gzip ? frameV1(gzipSync(mutated), 1) : frameV1(mutated, 0));
      }),
      { numRuns: 1500 },
    );
    // And the gzip stream itself mutated (a corrupt or truncated stream).
    const gzBody = v1Gzip.subarray(13);
    fc.assert(
      fc.property(edits, fc.nat(gzBody.length), (changes, cut) => {
        const mutated = Buffer.from(gzBody.subarray(0, Math.max(1, cut)));
        for (const [at, byte] of changes) mutated[at % mutated.length] = byte;
        decodeOrRefuse(frameV1(mutated, v1Gzip.readUInt8(4) as 0 | 1));
      }),
      { numRuns: 1000 },
    );
  });

  it('version 1: JSON documents with any values where the batch has its fields', { timeout: 15_000 }, () => {
    const document = JSON.parse(v1Plain.subarray(13).toString('utf8')) as { sender: unknown; records: Record<string, unknown>[] };
    const keys = Object.keys(document.records[0]!);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ at: fc.nat(document.records.length - 1), key: fc.constantFrom(...keys, '__proto__', 'constructor', 'extra'), value: fc.jsonValue() }),
          fc.record({ top: fc.constantFrom('sender', 'records', 'version', '__proto__'), value: fc.jsonValue() }),
        ),
        (change) => {
          const copy = structuredClone(document) as Record<string, unknown>;
          if ('top' in change) copy[change.top] = change.value;
          else (copy.records as Record<string, unknown>[])[change.at]![change.key] = change.value;
          decodeOrRefuse(frameV1(Buffer.from(JSON.stringify(copy)), 0));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('version 2: brotli-compressed bodies mutated under a valid checksum', { timeout: 15_000 }, () => {
    const body = v2.subarray(21);
    fc.assert(
      fc.property(edits, fc.nat(body.length), (changes, cut) => {
        const mutated = Buffer.from(body.subarray(0, Math.max(1, cut)));
        for (const [at, byte] of changes) mutated[at % mutated.length] = byte;
        decodeOrRefuse(refitV2(v2, mutated));
      }),
      { numRuns: 3000 },
    );
  });

  it('reached the decoders\' checks past the frame (some decoded, refusals of the body itself), with memory bounded', () => {
    expect(outcomes.decoded).toBeGreaterThan(0);
    expect(outcomes.refused.get('bad-body') ?? 0).toBeGreaterThan(0);
    expect(outcomes.refused.get('bad-compression') ?? 0).toBeGreaterThan(0);
    global.gc?.();
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(512 * 1024 * 1024);
  });
});
