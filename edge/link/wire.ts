/**
 * Batch wire format. Documented in docs/WIRE.md. A batch starts with a magic whose digit is
 * its version; `decodeBatch` takes either. Version 2 (wire-v2.ts) is the telemetry-aware
 * columnar encoding links send by default; version 1, here, is the generic JSON path:
 *
 *   offset  size  field
 *   0       4     magic "PCB1" (ASCII; the digit is the format version)
 *   4       1     compression: 0 none, 1 gzip
 *   5       4     CRC-32 of the body as sent (big-endian)
 *   9       4     body length in bytes (big-endian)
 *   13      n     body: compressed UTF-8 JSON {sender, records: [...]}
 *
 * The receiver checks magic, length and checksum before it decompresses, and decompresses
 * with an output limit, so a truncated, corrupted or lying batch is refused before any of
 * it is applied, and a decompression bomb costs at most the limit.
 */
import { crc32, gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { InvalidInputError } from '../../core/index.js';
import type { Batch, DecodedBatch, DecodeLimits } from './batch.js';
import { decodeBatchV2, MAGIC_V2 } from './wire-v2.js';

export { BATCH_CONTENT_TYPE, type Batch, type DecodedBatch, type DecodeLimits } from './batch.js';

const MAGIC = Buffer.from('PCB1', 'ascii');
const HEADER_BYTES = 13;

export enum Compression {
  None = 0,
  Gzip = 1,
}

const wireRecord = z.object({
  o: z.string().min(1),
  s: z.string().min(1),
  t: z.string().min(1),
  n: z.number().int().nonnegative(),
  e: z.number().int(),
  i: z.number().int(),
  h: z.record(z.string(), z.string()).optional(),
  p: z.string(),
});
const wireBody = z.object({ sender: z.string().min(1), records: z.array(wireRecord) });

export function encodeBatch(batch: Batch, compression: Compression = Compression.Gzip): Buffer {
  const body = {
    sender: batch.sender,
    records: batch.records.map((r) => ({
      o: r.origin,
      s: r.stream,
      t: r.topic,
      n: r.offset,
      e: r.eventTimeMs,
      i: r.ingestTimeMs,
      ...(Object.keys(r.headers).length > 0 ? { h: r.headers } : {}),
      p: Buffer.from(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength).toString('base64'),
    })),
  };
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  const payload = compression === Compression.Gzip ? gzipSync(json) : json;
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt8(compression, 4);
  header.writeUInt32BE(crc32(payload), 5);
  header.writeUInt32BE(payload.length, 9);
  return Buffer.concat([header, payload]);
}

/** Checks, decompresses within the limits and decodes a batch of either version; throws InvalidInputError. */
export function decodeBatch(bytes: Buffer, limits: DecodeLimits): DecodedBatch {
  if (bytes.length >= 4 && bytes.subarray(0, 4).equals(MAGIC_V2)) return { ...decodeBatchV2(bytes, limits), version: 2 };
  return { ...decodeBatchV1(bytes, limits), version: 1 };
}

function decodeBatchV1(bytes: Buffer, limits: DecodeLimits): Batch {
  if (bytes.length < HEADER_BYTES || !bytes.subarray(0, 4).equals(MAGIC)) {
    throw new InvalidInputError('bad-magic', 'not a portcall batch (PCB1 or PCB2): bad magic or truncated header');
  }
  const compression = bytes.readUInt8(4);
  const expectedCrc = bytes.readUInt32BE(5);
  const bodyBytes = bytes.readUInt32BE(9);
  if (bodyBytes !== bytes.length - HEADER_BYTES) {
    throw new InvalidInputError(
      'bad-length',
      `batch header says ${bodyBytes} body bytes but ${bytes.length - HEADER_BYTES} arrived`,
    );
  }
  const body = bytes.subarray(HEADER_BYTES);
  if (crc32(body) !== expectedCrc) {
    throw new InvalidInputError('bad-checksum', 'batch checksum does not match its body');
  }
  let json: Buffer;
  if (compression === Compression.Gzip) {
    try {
      json = gunzipSync(body, { maxOutputLength: limits.maxDecompressedBytes });
    } catch (error) {
      const tooLarge = (error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
      throw new InvalidInputError(
        tooLarge ? 'too-large' : 'bad-compression',
        tooLarge
          ? `batch decompresses to more than ${limits.maxDecompressedBytes} bytes`
          : `batch body is not valid gzip: ${(error as Error).message}`,
      );
    }
  } else if (compression === Compression.None) {
    if (body.length > limits.maxDecompressedBytes) {
      throw new InvalidInputError('too-large', `batch body exceeds ${limits.maxDecompressedBytes} bytes`);
    }
    json = body;
  } else {
    throw new InvalidInputError('bad-compression', `unknown compression code ${compression}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json.toString('utf8'));
  } catch {
    throw new InvalidInputError('bad-body', 'batch body is not valid JSON');
  }
  const result = wireBody.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new InvalidInputError('bad-body', `batch body invalid at ${issue?.path.join('.') ?? '?'}: ${issue?.message ?? ''}`);
  }
  if (result.data.records.length > limits.maxRecords) {
    throw new InvalidInputError(
      'too-many-records',
      `batch holds ${result.data.records.length} records, the limit is ${limits.maxRecords}`,
    );
  }
  // Headers come from the parsed JSON, not the validator's copy: the copy drops a header
  // named "__proto__", and a record must arrive exactly as it was sent.
  const rawRecords = (parsed as { records: { h?: Record<string, string> }[] }).records;
  return {
    sender: result.data.sender,
    records: result.data.records.map((r, index) => ({
      origin: r.o,
      stream: r.s,
      topic: r.t,
      offset: r.n,
      eventTimeMs: r.e,
      ingestTimeMs: r.i,
      headers: rawRecords[index]!.h ?? {},
      payload: Buffer.from(r.p, 'base64'),
    })),
  };
}
