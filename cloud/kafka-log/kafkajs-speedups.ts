/**
 * Drop-in replacements for kafkajs internals, four on the produce path (found by profiling
 * `KafkaLog.replicate`, bench shore-kafka) and one on the read path; each writes, or decodes,
 * exactly what kafkajs's own does.
 *
 * 1. The record encoder (protocol/recordBatch/record/v0). kafkajs encodes each record into a
 *    fresh `Encoder` (a zero-filled 512-byte `Buffer.alloc`), each header into another one,
 *    and each varint into a `Buffer.from([...])` of its own: with our eight identity headers,
 *    ten 512-byte buffers and some thirty small ones per record. Buffer allocation and the
 *    garbage collector took about a quarter of the CPU. This one computes the record's exact
 *    size and writes it into one `allocUnsafe` buffer. test/kafkajs-speedups.test.ts compares
 *    the bytes with kafkajs's on generated records.
 * 2. `groupMessagesPerPartition` (producer), which builds each partition's list with
 *    `[...current, message]`: quadratic in the messages per partition of one send, which for
 *    a large group commit is thousands. This one appends.
 * 3. The produce request (protocol/requests/produce/v3, which v4 to v7 wrap). kafkajs builds a
 *    record object per message (an object spread), an encoder per record, concatenates them
 *    into the batch, copies the batch three more times on its way into the request, and
 *    computes the batch's CRC-32C a byte at a time. When every message of a request carries
 *    its tail (`TailedMessage`: all of the Kafka log's do), this one writes the whole
 *    request into one buffer, each data record's tail written straight into it (no buffer of
 *    its own), and computes the CRC-32C natively (below). A compressed request's records
 *    sections are written one buffer each and compressed with kafkajs's own codec, all at
 *    once. Any other request is kafkajs's own.
 * 4. The request framing (protocol/request): kafkajs copies every encoded request twice, into
 *    growing encoders, to put its header and size in front; this one writes header and body
 *    into one buffer of the exact size (one copy of the request instead of two and the
 *    reallocations), and a produce request written by 3 has room left in front for the
 *    header, so it is not copied at all.
 *
 * 5. The record decoder (protocol/recordBatch/record/v0/decoder), on the read path. kafkajs
 *    folds a record's headers into an object by copying the object once per header
 *    (`{...obj, [key]: value}`): with our nine headers, nine growing copies per record read.
 *    Reading one container from Kafka decodes whole record batches, every record of them, and
 *    this fold was the largest single cost of a Kafka-backed site serving reads (profiled
 *    during the voyage's verification, 2026-11-24). This one decodes a record's key, value,
 *    timestamp and headers only when they are read (a reader drops most records of a fetch
 *    unread: before the fetched offset, or another container's by its key), and folds the
 *    headers into one object, with the same result (repeated names become arrays; a header
 *    named `__proto__` stays a property).
 * How they are installed: by replacing the modules' entries in Node's require cache before
 * the kafkajs modules that `require` them are loaded. The grouping is required when kafkajs
 * itself is first loaded, so this module is imported first by cloud/kafka-log/index.ts; the
 * record encoder is required by the produce request modules, which kafkajs loads on the
 * first produce. Whatever was loaded earlier (kafkajs imported by other code first, say in a
 * test) keeps kafkajs's own version: slower, never different. kafkajs 2.2.4 is its last
 * release, so the modules replaced here no longer change under them.
 */
import { createRequire } from 'node:module';

import { codecFor } from './compression.js';

const require = createRequire(import.meta.url);

type HeaderValue = string | Buffer | null | undefined;
/**
 * A message whose key, value and headers are written by the Kafka log itself, in Kafka's
 * record wire format from the key on: either already encoded (`portcallTail`), or written on
 * demand straight into the request (`portcallWriteTail`, `portcallTailSize` bytes exactly),
 * which spares a buffer and a copy per record. Either wins over the key, value and headers.
 */
export interface TailedMessage {
  readonly portcallTail?: Buffer;
  readonly portcallTailSize?: number;
  /** Writes the message's tail at `at` and returns where it ended: `at + portcallTailSize`. */
  readonly portcallWriteTail?: (message: TailedMessage, buf: Buffer, at: number) => number;
}

function hasTail(message: TailedMessage): boolean {
  return message.portcallTail !== undefined || message.portcallWriteTail !== undefined;
}

function tailSize(message: TailedMessage): number {
  return message.portcallTail !== undefined ? message.portcallTail.length : message.portcallTailSize!;
}

function writeTail(message: TailedMessage, buf: Buffer, at: number): number {
  const tail = message.portcallTail;
  if (tail !== undefined) return at + tail.copy(buf, at);
  const end = message.portcallWriteTail!(message, buf, at);
  if (end !== at + message.portcallTailSize!) throw new Error(`record tail: wrote ${end - at} bytes, announced ${String(message.portcallTailSize)}`);
  return end;
}

interface RecordInput extends TailedMessage {
  readonly offsetDelta?: number;
  readonly timestampDelta?: number | { toNumber(): number };
  readonly key?: string | Buffer | null;
  readonly value?: string | Buffer | null;
  readonly headers?: Record<string, HeaderValue | HeaderValue[]>;
}
type EncoderLike = { buf: Buffer; offset: number };
type RecordEncoder = (record: RecordInput) => EncoderLike;

const RECORD_MODULE = 'kafkajs/src/protocol/recordBatch/record/v0/index.js';
const GROUPING_MODULE = 'kafkajs/src/producer/groupMessagesPerPartition.js';
const GROUPING_USERS = ['kafkajs/src/producer/sendMessages.js'];
const ENCODER_MODULE = 'kafkajs/src/protocol/encoder.js';
const PRODUCE_REQUEST_MODULES = [3, 4, 5, 6, 7].map((version) => `kafkajs/src/protocol/requests/produce/v${version}/request.js`);
const PRODUCE_V3_MODULE = PRODUCE_REQUEST_MODULES[0]!;
const PRODUCE_V3_USERS = PRODUCE_REQUEST_MODULES.slice(1);
const FRAMING_MODULE = 'kafkajs/src/protocol/request.js';
const RECORD_DECODER_MODULE = 'kafkajs/src/protocol/recordBatch/record/v0/decoder.js';
const RECORD_DECODER_USERS = ['kafkajs/src/protocol/recordBatch/v0/decoder.js'];
const LONG_MODULE = 'kafkajs/src/utils/long.js';
const DECODER_MODULE = 'kafkajs/src/protocol/decoder.js';
const HEADER_DECODER_MODULE = 'kafkajs/src/protocol/recordBatch/header/v0/decoder.js';
const TIMESTAMP_TYPES_MODULE = 'kafkajs/src/protocol/timestampTypes.js';
const FRAMING_USERS = ['kafkajs/src/network/connection.js'];

function sizeOfUVarInt(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    bytes += 1;
    value = Math.floor(value / 128);
  }
  return bytes;
}

/** Zig-zag of a 32-bit signed integer, as an unsigned number. */
function zigZag(value: number): number {
  return ((value << 1) ^ (value >> 31)) >>> 0;
}

function writeUVarInt(buf: Buffer, offset: number, value: number): number {
  while (value >= 0x80) {
    buf[offset++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[offset++] = value;
  return offset;
}

interface Bytes {
  /** -1 for null. */
  readonly length: number;
  readonly buffer?: Buffer;
  readonly text?: string;
}

function bytesOf(value: string | Buffer | null | undefined): Bytes {
  if (value === null || value === undefined) return { length: -1 };
  if (Buffer.isBuffer(value)) return { length: value.length, buffer: value };
  const text = String(value);
  return { length: Buffer.byteLength(text, 'utf8'), text };
}

function sizeOfBytes(bytes: Bytes): number {
  return bytes.length < 0 ? 1 : sizeOfUVarInt(zigZag(bytes.length)) + bytes.length;
}

function writeBytes(buf: Buffer, offset: number, bytes: Bytes): number {
  offset = writeUVarInt(buf, offset, zigZag(bytes.length));
  if (bytes.buffer !== undefined) {
    bytes.buffer.copy(buf, offset);
    return offset + bytes.length;
  }
  if (bytes.text !== undefined) return offset + buf.write(bytes.text, offset, bytes.length, 'utf8');
  return offset;
}

function isSmallInteger(value: number): boolean {
  return Number.isInteger(value) && value >= -0x80000000 && value <= 0x7fffffff;
}

/** Builds the encoder; `original` handles the shapes this one does not (huge timestamp deltas). */
export function createRecordEncoder(original: RecordEncoder, encoderPrototype: object): RecordEncoder {
  return (record) => {
    const offsetDelta = record.offsetDelta ?? 0;
    const rawDelta = record.timestampDelta ?? 0;
    const timestampDelta = typeof rawDelta === 'number' ? rawDelta : Number.NaN;
    if (!isSmallInteger(timestampDelta) || !isSmallInteger(offsetDelta)) return original(record);
    if (hasTail(record)) {
      const body = 1 + sizeOfUVarInt(zigZag(timestampDelta)) + sizeOfUVarInt(zigZag(offsetDelta)) + tailSize(record);
      const length = sizeOfUVarInt(zigZag(body)) + body;
      const out = Buffer.allocUnsafe(length);
      let at = writeUVarInt(out, 0, zigZag(body));
      out[at++] = 0; // attributes
      at = writeUVarInt(out, at, zigZag(timestampDelta));
      at = writeUVarInt(out, at, zigZag(offsetDelta));
      writeTail(record, out, at);
      const encoder = Object.create(encoderPrototype) as EncoderLike;
      encoder.buf = out;
      encoder.offset = length;
      return encoder;
    }
    const key = bytesOf(record.key);
    const value = bytesOf(record.value);
    const headers: { key: Bytes; value: Bytes }[] = [];
    const source = record.headers ?? {};
    for (const name of Object.keys(source)) {
      const entry = source[name];
      if (Array.isArray(entry)) for (const item of entry) headers.push({ key: bytesOf(name), value: bytesOf(item) });
      else headers.push({ key: bytesOf(name), value: bytesOf(entry) });
    }
    let bodyBytes = 1 + sizeOfUVarInt(zigZag(timestampDelta)) + sizeOfUVarInt(zigZag(offsetDelta)) + sizeOfBytes(key) + sizeOfBytes(value);
    bodyBytes += sizeOfUVarInt(zigZag(headers.length));
    for (const header of headers) bodyBytes += sizeOfBytes(header.key) + sizeOfBytes(header.value);
    const total = sizeOfUVarInt(zigZag(bodyBytes)) + bodyBytes;
    const buf = Buffer.allocUnsafe(total);
    let offset = writeUVarInt(buf, 0, zigZag(bodyBytes));
    buf[offset++] = 0; // attributes
    offset = writeUVarInt(buf, offset, zigZag(timestampDelta));
    offset = writeUVarInt(buf, offset, zigZag(offsetDelta));
    offset = writeBytes(buf, offset, key);
    offset = writeBytes(buf, offset, value);
    offset = writeUVarInt(buf, offset, zigZag(headers.length));
    for (const header of headers) {
      offset = writeBytes(buf, offset, header.key);
      offset = writeBytes(buf, offset, header.value);
    }
    if (offset !== total) throw new Error(`record encoder wrote ${offset} bytes, expected ${total}`);
    // An Encoder in all but its constructor, so the record batch encoder takes it as one.
    const encoder = Object.create(encoderPrototype) as EncoderLike;
    encoder.buf = buf;
    encoder.offset = total;
    return encoder;
  };
}

/** CRC-32C (Castagnoli) tables for slicing by 8: table k is the CRC of a byte followed by k zero bytes. */
const CRC_TABLES: Int32Array[] = (() => {
  const tables = Array.from({ length: 8 }, () => new Int32Array(256));
  for (let n = 0; n < 256; n++) {
    let crc = n;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    tables[0]![n] = crc;
  }
  for (let n = 0; n < 256; n++) {
    let crc = tables[0]![n]!;
    for (let k = 1; k < 8; k++) {
      crc = tables[0]![crc & 0xff]! ^ (crc >>> 8);
      tables[k]![n] = crc;
    }
  }
  return tables;
})();

/** Whether an Int32Array reads memory little-endian (the words below are read so). */
const LITTLE_ENDIAN = new Uint8Array(new Int32Array([1]).buffer)[0] === 1;

/**
 * @node-rs/crc32's CRC-32C (hardware instructions where the CPU has them): 6.0 GB/s against
 * 0.93 for the JavaScript one below, on a 740 KiB batch (2026-11-23), where CRC-32C had been
 * about 7% of the shore's CPU per record. Its prebuilt binaries cover the usual platforms;
 * where none loads, the JavaScript one computes the same numbers.
 */
const nativeCrc32c = ((): ((input: Buffer) => number) | undefined => {
  try {
    return (require('@node-rs/crc32') as { crc32c(input: Buffer): number }).crc32c;
  } catch {
    return undefined;
  }
})();

/** Which CRC-32C the produce requests written here use. */
export const crc32cImplementation: 'native' | 'javascript' = nativeCrc32c === undefined ? 'javascript' : 'native';

/** CRC-32C of `buf[start, end)`, as an unsigned 32-bit number. */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length): number {
  if (nativeCrc32c !== undefined && Buffer.isBuffer(buf)) return nativeCrc32c(start === 0 && end === buf.length ? buf : buf.subarray(start, end)) >>> 0;
  return crc32cInJavaScript(buf, start, end);
}

/**
 * CRC-32C of `buf[start, end)`, eight bytes per step (what kafkajs computes a byte at a
 * time). The eight bytes are read as two 32-bit words through an Int32Array on the aligned
 * part of the buffer, which ran 1.4x as fast as eight byte reads (0.82-0.84 GB/s against
 * 0.60, a 700 KiB batch, 2026-11-22).
 */
export function crc32cInJavaScript(buf: Uint8Array, start = 0, end = buf.length): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array];
  let crc = -1;
  let i = start;
  if (LITTLE_ENDIAN) {
    for (; i < end && ((buf.byteOffset + i) & 3) !== 0; i++) crc = t0[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
    const steps = (end - i) >>> 3;
    if (steps > 0) {
      const words = new Int32Array(buf.buffer, buf.byteOffset + i, steps * 2);
      for (let k = 0; k < words.length; k += 2) {
        const low = crc ^ words[k]!;
        const high = words[k + 1]!;
        crc =
          t7[low & 0xff]! ^
          t6[(low >>> 8) & 0xff]! ^
          t5[(low >>> 16) & 0xff]! ^
          t4[low >>> 24]! ^
          t3[high & 0xff]! ^
          t2[(high >>> 8) & 0xff]! ^
          t1[(high >>> 16) & 0xff]! ^
          t0[high >>> 24]!;
      }
      i += steps * 8;
    }
  }
  for (; i + 8 <= end; i += 8) {
    const low = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      t7[low & 0xff]! ^
      t6[(low >>> 8) & 0xff]! ^
      t5[(low >>> 16) & 0xff]! ^
      t4[low >>> 24]! ^
      t3[buf[i + 4]!]! ^
      t2[buf[i + 5]!]! ^
      t1[buf[i + 6]!]! ^
      t0[buf[i + 7]!]!;
  }
  for (; i < end; i++) crc = t0[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

interface ProduceMessage extends TailedMessage {
  readonly timestamp?: unknown;
}
interface ProduceArgs {
  readonly acks: number;
  readonly timeout: number;
  readonly transactionalId?: string | null;
  readonly producerId?: { readonly value: bigint } | number | string;
  readonly producerEpoch?: number;
  readonly compression?: number;
  readonly topicData: readonly {
    readonly topic: string;
    readonly partitions: readonly { readonly partition: number; readonly firstSequence?: number; readonly messages: readonly ProduceMessage[] }[];
  }[];
}
interface ProduceRequest {
  encode(): Promise<EncoderLike>;
  [other: string]: unknown;
}
type ProduceRequestFactory = (args: ProduceArgs) => ProduceRequest;

function bigIntOf(value: ProduceArgs['producerId']): bigint {
  if (value === undefined) return -1n;
  if (typeof value === 'object') return value.value;
  return BigInt(value);
}

/** Record batch header bytes from the batch length field on (kafkajs recordBatch/v0). */
const BATCH_HEADER_BYTES = 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;

/**
 * Bytes left free in front of a produce request written here, for the framing (size, api
 * key, version, correlation id, client id: 14 bytes plus the client id) to be written into
 * rather than the request copied behind it.
 */
const FRAMING_HEADROOM = 256;

/** An encoder whose `buf` is a view starting `FRAMING_HEADROOM` bytes into `portcallHeadroom`. */
type HeadroomEncoder = EncoderLike & { portcallHeadroom?: Buffer };

/** Bytes of a partition's records (a batch's records section as kafkajs writes it), or undefined when one cannot be written here. */
function recordsSize(messages: readonly ProduceMessage[]): number | undefined {
  let size = 0;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!;
    if (!hasTail(message) || message.timestamp != null) return undefined;
    const body = 1 + 1 + sizeOfUVarInt(zigZag(i)) + tailSize(message);
    size += sizeOfUVarInt(zigZag(body)) + body;
  }
  return size;
}

function writeRecords(buf: Buffer, at: number, messages: readonly ProduceMessage[]): number {
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!;
    at = writeUVarInt(buf, at, zigZag(1 + 1 + sizeOfUVarInt(zigZag(i)) + tailSize(message)));
    buf[at++] = 0; // attributes
    buf[at++] = 0; // timestamp delta: every record of the batch has the batch's time
    at = writeUVarInt(buf, at, zigZag(i));
    at = writeTail(message, buf, at);
  }
  return at;
}

/**
 * The produce request kafkajs would encode for these arguments, written directly: one
 * buffer, each record's tail written (or its pre-encoded tail copied) once. Undefined when it
 * cannot (a message without a tail of ours, a timestamp of its own, compression: see
 * `encodeCompressedProduceRequest`), and kafkajs's own encode is used.
 */
export function encodeProduceRequest(args: ProduceArgs, encoderPrototype: object, now = Date.now()): EncoderLike | undefined {
  if ((args.compression ?? 0) !== 0) return undefined;
  return writeProduceRequest(args, encoderPrototype, now, undefined);
}

/**
 * The same for a compressed request: each partition's records section is written into a
 * buffer of its own and compressed with kafkajs's codec for `args.compression` (the same
 * function kafkajs would call on the same bytes, so the request is byte for byte kafkajs's),
 * all partitions' at once, so a codec that works off the main thread (LZ4, gzip) uses the
 * other cores. Undefined when a message cannot be written here or kafkajs has no such codec.
 */
export async function encodeCompressedProduceRequest(args: ProduceArgs, encoderPrototype: object, now = Date.now()): Promise<EncoderLike | undefined> {
  const codec = codecFor(args.compression ?? 0);
  if (codec === undefined) return undefined;
  const sections: Buffer[] = [];
  for (const { partitions } of args.topicData) {
    for (const { messages } of partitions) {
      const size = recordsSize(messages);
      if (size === undefined) return undefined;
      const section = Buffer.allocUnsafe(size);
      if (writeRecords(section, 0, messages) !== size) throw new Error('produce request: records section size');
      sections.push(section);
    }
  }
  const compressed = await Promise.all(sections.map((section) => codec.compress({ buffer: section })));
  return writeProduceRequest(args, encoderPrototype, now, compressed);
}

/**
 * Writes the request; each batch's records are written in place, or, given `bodies` (one per
 * partition in request order), are those compressed bytes with the codec in the attributes.
 */
function writeProduceRequest(args: ProduceArgs, encoderPrototype: object, now: number, bodies: readonly Buffer[] | undefined): EncoderLike | undefined {
  const transactionalId = args.transactionalId ?? null;
  const idBytes = transactionalId === null ? 0 : Buffer.byteLength(transactionalId, 'utf8');
  let size = 2 + idBytes + 2 + 4 + 4;
  let bodyIndex = 0;
  for (const { topic, partitions } of args.topicData) {
    size += 2 + Buffer.byteLength(topic, 'utf8') + 4;
    for (const { messages } of partitions) {
      const records = bodies === undefined ? recordsSize(messages) : bodies[bodyIndex++]!.length;
      if (records === undefined) return undefined;
      size += 4 + 4 + BATCH_HEADER_BYTES + records;
    }
  }
  const full = Buffer.allocUnsafe(FRAMING_HEADROOM + size);
  const buf = full.subarray(FRAMING_HEADROOM);
  let at = 0;
  if (transactionalId === null) at = buf.writeInt16BE(-1, at);
  else {
    at = buf.writeInt16BE(idBytes, at);
    at += buf.write(transactionalId, at, idBytes, 'utf8');
  }
  at = buf.writeInt16BE(args.acks, at);
  at = buf.writeInt32BE(args.timeout, at);
  at = buf.writeInt32BE(args.topicData.length, at);
  const producerId = bigIntOf(args.producerId);
  // kafkajs marks the batch transactional for a non-empty id only.
  const transactional = transactionalId === null || transactionalId === '' ? 0 : 16;
  const attributes = transactional | (bodies === undefined ? 0 : (args.compression ?? 0) & 0x07);
  bodyIndex = 0;
  for (const { topic, partitions } of args.topicData) {
    const topicBytes = Buffer.byteLength(topic, 'utf8');
    at = buf.writeInt16BE(topicBytes, at);
    at += buf.write(topic, at, topicBytes, 'utf8');
    at = buf.writeInt32BE(partitions.length, at);
    for (const { partition, firstSequence, messages } of partitions) {
      at = buf.writeInt32BE(partition, at);
      const sizeAt = at;
      at += 4;
      const batchStart = at;
      at = buf.writeBigInt64BE(0n, at); // first offset
      const lengthAt = at;
      at += 4;
      at = buf.writeInt32BE(0, at); // partition leader epoch
      at = buf.writeInt8(2, at); // magic
      const crcAt = at;
      at += 4;
      const crcStart = at;
      at = buf.writeInt16BE(attributes, at);
      at = buf.writeInt32BE(messages.length - 1, at); // last offset delta
      at = buf.writeBigInt64BE(BigInt(now), at); // first timestamp
      at = buf.writeBigInt64BE(BigInt(now), at); // max timestamp
      at = buf.writeBigInt64BE(producerId, at);
      at = buf.writeInt16BE(args.producerEpoch ?? 0, at);
      at = buf.writeInt32BE(firstSequence ?? 0, at);
      at = buf.writeInt32BE(messages.length, at);
      at = bodies === undefined ? writeRecords(buf, at, messages) : at + bodies[bodyIndex++]!.copy(buf, at);
      buf.writeInt32BE(at - lengthAt - 4, lengthAt);
      buf.writeUInt32BE(crc32c(buf, crcStart, at), crcAt);
      buf.writeInt32BE(at - batchStart, sizeAt);
    }
  }
  if (at !== size) throw new Error(`produce request: wrote ${at} of ${size} bytes`);
  const encoder = Object.create(encoderPrototype) as HeadroomEncoder;
  encoder.buf = buf;
  encoder.offset = size;
  encoder.portcallHeadroom = full;
  return encoder;
}

/** kafkajs's produce request, with `encode` replaced by the direct one where it applies. */
export function createProduceRequest(original: ProduceRequestFactory, encoderPrototype: object): ProduceRequestFactory {
  return (args) => {
    const request = original(args);
    const kafkajsEncode = request.encode;
    return Object.assign(request, {
      encode: async () =>
        ((args.compression ?? 0) === 0 ? encodeProduceRequest(args, encoderPrototype) : await encodeCompressedProduceRequest(args, encoderPrototype)) ?? kafkajsEncode(),
    });
  };
}

type Framing = (args: {
  correlationId: number;
  clientId: string | null;
  request: { apiKey: number; apiVersion: number; encode(): Promise<EncoderLike> | EncoderLike };
}) => Promise<EncoderLike>;

/**
 * kafkajs's request framing (size, api key, version, correlation id, client id, then the
 * body), written into one buffer: the same bytes, the body copied once, or not at all when
 * it was written with room in front for the framing (a produce request written here).
 */
export function createFraming(encoderPrototype: object): Framing {
  return async ({ correlationId, clientId, request: { apiKey, apiVersion, encode } }) => {
    const payload = (await encode()) as HeadroomEncoder;
    const clientIdBytes = clientId === null || clientId === undefined ? -1 : Buffer.byteLength(clientId, 'utf8');
    const headerBytes = 2 + 2 + 4 + 2 + Math.max(0, clientIdBytes);
    const size = headerBytes + payload.offset;
    const room = payload.portcallHeadroom;
    const inPlace = room !== undefined && 4 + headerBytes <= FRAMING_HEADROOM && room.subarray(FRAMING_HEADROOM).byteOffset === payload.buf.byteOffset;
    const buf = inPlace ? room.subarray(FRAMING_HEADROOM - 4 - headerBytes, FRAMING_HEADROOM + payload.offset) : Buffer.allocUnsafe(4 + size);
    let at = buf.writeInt32BE(size, 0);
    at = buf.writeInt16BE(apiKey, at);
    at = buf.writeInt16BE(apiVersion, at);
    at = buf.writeInt32BE(correlationId, at);
    at = buf.writeInt16BE(clientIdBytes, at);
    if (clientIdBytes > 0) at += buf.write(clientId!, at, clientIdBytes, 'utf8');
    if (!inPlace) payload.buf.copy(buf, at, 0, payload.offset);
    const encoder = Object.create(encoderPrototype) as EncoderLike;
    encoder.buf = buf;
    encoder.offset = buf.length;
    return encoder;
  };
}

export type InstallResult = 'installed' | 'too-late';

type Grouping = (args: {
  topic: string;
  partitionMetadata: readonly unknown[];
  messages: readonly unknown[];
  partitioner: (args: { topic: string; partitionMetadata: readonly unknown[]; message: unknown }) => number;
}) => Record<number, unknown[]>;

/**
 * kafkajs's grouping with its result built by appending, not by copying the list per message.
 * A pre-encoded message (the Kafka log's) goes to the partition it names without asking the
 * partitioner: kafkajs's default partitioners return that partition too, but only after
 * filtering the partition list into a new array per message.
 */
export const groupMessagesPerPartition: Grouping = ({ topic, partitionMetadata, messages, partitioner }) => {
  const result: Record<number, unknown[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const own = message as TailedMessage & { partition?: unknown };
    const partition = hasTail(own) && typeof own.partition === 'number' ? own.partition : partitioner({ topic, partitionMetadata, message });
    const current = result[partition];
    if (current === undefined) result[partition] = [message];
    else current.push(message);
  }
  return result;
};

/** kafkajs's own encoder and Encoder class, captured before anything replaces them. */
const recordPath = require.resolve(RECORD_MODULE);
const kafkajsRecordEncoder = require(recordPath) as RecordEncoder;
const kafkajsEncoderPrototype = (require(ENCODER_MODULE) as { prototype: object }).prototype;
const groupingPath = require.resolve(GROUPING_MODULE);
const kafkajsGrouping = require(groupingPath) as Grouping;
/** Loaded here only if no produce request module is loaded yet, so that it sees the record encoder above. */
const produceV3Path = require.resolve(PRODUCE_V3_MODULE);
const produceModulesLoaded = PRODUCE_REQUEST_MODULES.some((name) => require.cache[require.resolve(name)] !== undefined);
const framingPath = require.resolve(FRAMING_MODULE);
const kafkajsFraming = require(framingPath) as Framing;
const recordDecoderPath = require.resolve(RECORD_DECODER_MODULE);
const kafkajsRecordDecoder = require(recordDecoderPath) as RecordDecoder;

/** kafkajs's Decoder, as far as the record decoder uses it. */
interface DecoderLike {
  buffer: Buffer;
  offset: number;
  readInt8(): number;
  readVarLong(): unknown;
  readVarInt(): number;
  readVarIntBytes(): Buffer | null;
  readVarIntArray<T>(decode: (decoder: DecoderLike) => T): T[];
}
interface RecordBatchContext {
  readonly firstOffset?: string;
  readonly firstTimestamp?: string;
  readonly magicByte?: number;
  readonly isControlBatch?: boolean;
  readonly timestampType?: number;
  readonly maxTimestamp?: string;
}
type RecordDecoder = (decoder: DecoderLike, batchContext?: RecordBatchContext) => unknown;
interface LongLike {
  add(other: unknown): LongLike;
  toString(): string;
}

/** Marks a lazily decoded field not read yet (undefined is a value a caller may assign). */
const UNREAD: unique symbol = Symbol('unread');

/** Steps a decoder over a varint without computing it (what kafkajs's readVarLong reads, without its Longs). */
function skipVarInt(decoder: DecoderLike): void {
  const buffer = decoder.buffer;
  while ((buffer[decoder.offset++] ?? 0) >= 0x80);
}

/** Steps a decoder over a length-prefixed byte string (null is length -1) without copying it. */
function skipVarIntBytes(decoder: DecoderLike): void {
  const length = decoder.readVarInt();
  if (length > 0) decoder.offset += length;
}

/**
 * kafkajs's record decoder with the same result, but lazy where kafkajs is eager:
 *
 * - Key, value, timestamp and headers are decoded when first read, not when the record is: a
 *   read of one container decodes whole record batches, and most of their records belong to
 *   other containers or lie before the fetched offset, so most records are dropped unread.
 *   The decoder only steps over them (varint lengths) to find where each starts. The record's
 *   bytes are its own buffer (kafkajs's record batch decoder gives each record a decoder of
 *   its own), which the record keeps.
 * - When read, the headers are folded into one object instead of a copy of it per header
 *   (kafkajs's `{...obj, [key]: value}`: with our nine headers, nine growing copies per
 *   record). A repeated name becomes an array of its values in order, as kafkajs's fold makes
 *   it, including its reading of inherited names (a first `constructor` header becomes
 *   `[Object, value]` there, and here); `__proto__` is defined as an own property, as
 *   kafkajs's computed key in an object literal defines it.
 * - The timestamp (a 64-bit sum turned into a string) is computed when first read, and the
 *   offset in doubles while it is a safe integer, which it is for any Kafka partition short
 *   of 2^53 records, instead of parsing the batch's first offset once per record into a
 *   64-bit Long.
 *
 * A record is an instance of a class whose lazy fields are accessors on its prototype, and
 * can be assigned, as kafkajs's plain fields can. A first version made them own accessor
 * properties of an object literal, so that a spread or `Object.keys` saw what it sees of
 * kafkajs's; V8 builds such a literal with new closures through its runtime, 1.1 µs a record
 * against 80 ns for a class instance (measured, Node 20), and it was the largest self time of
 * a Kafka-backed site reading container histories. Neither kafkajs (2.2.4, its last release)
 * nor the Kafka log spreads or enumerates a decoded record; they read its fields by name.
 */
export function createRecordDecoder(): RecordDecoder {
  const Long = require(LONG_MODULE) as { fromValue(value: unknown): LongLike };
  const Decoder = require(DECODER_MODULE) as new (buffer: Buffer) => DecoderLike;
  const decodeHeader = require(HEADER_DECODER_MODULE) as (decoder: DecoderLike) => { key: string; value: Buffer | null };
  const { LOG_APPEND_TIME } = require(TIMESTAMP_TYPES_MODULE) as { LOG_APPEND_TIME: number };
  const decoderAt = (buffer: Buffer, offset: number): DecoderLike => {
    const decoder = new Decoder(buffer);
    decoder.offset = offset;
    return decoder;
  };
  const foldHeaders = (buffer: Buffer, offset: number): Record<string, unknown> => {
    const headers: Record<string, unknown> = {};
    for (const header of decoderAt(buffer, offset).readVarIntArray(decodeHeader)) {
      const name = header.key;
      const current = headers[name];
      const next = current === undefined ? header.value : Array.isArray(current) ? current.concat([header.value]) : [current, header.value];
      if (name === '__proto__') Object.defineProperty(headers, name, { value: next, writable: true, enumerable: true, configurable: true });
      else headers[name] = next;
    }
    return headers;
  };

  class DecodedRecord {
    readonly magicByte: number | undefined;
    readonly attributes: number;
    readonly offset: string;
    readonly isControlRecord: boolean;
    readonly batchContext: RecordBatchContext;
    readonly #buffer: Buffer;
    /** Where the timestamp delta, the key and the value start in the record's bytes. */
    readonly #timestampAt: number;
    readonly #keyAt: number;
    readonly #valueAt: number;
    #timestamp: unknown = UNREAD;
    #key: unknown = UNREAD;
    #value: unknown = UNREAD;
    #headers: unknown = UNREAD;

    constructor(decoder: DecoderLike, batchContext: RecordBatchContext) {
      const { firstOffset, magicByte, isControlBatch = false } = batchContext;
      this.magicByte = magicByte;
      this.attributes = decoder.readInt8();
      this.#timestampAt = decoder.offset;
      skipVarInt(decoder);
      const offsetDelta = decoder.readVarInt();
      const first = Number(firstOffset);
      this.offset = Number.isSafeInteger(first) && Number.isSafeInteger(first + offsetDelta) ? String(first + offsetDelta) : Long.fromValue(firstOffset).add(offsetDelta).toString();
      this.isControlRecord = isControlBatch;
      this.batchContext = batchContext;
      this.#buffer = decoder.buffer;
      this.#keyAt = decoder.offset;
      skipVarIntBytes(decoder);
      this.#valueAt = decoder.offset;
      skipVarIntBytes(decoder);
    }

    get timestamp(): unknown {
      if (this.#timestamp === UNREAD) {
        const { timestampType, maxTimestamp, firstTimestamp } = this.batchContext;
        this.#timestamp =
          timestampType === LOG_APPEND_TIME && maxTimestamp ? maxTimestamp : Long.fromValue(firstTimestamp).add(decoderAt(this.#buffer, this.#timestampAt).readVarLong()).toString();
      }
      return this.#timestamp;
    }
    set timestamp(assigned: unknown) {
      this.#timestamp = assigned;
    }

    get key(): unknown {
      if (this.#key === UNREAD) this.#key = decoderAt(this.#buffer, this.#keyAt).readVarIntBytes();
      return this.#key;
    }
    set key(assigned: unknown) {
      this.#key = assigned;
    }

    get value(): unknown {
      if (this.#value === UNREAD) this.#value = decoderAt(this.#buffer, this.#valueAt).readVarIntBytes();
      return this.#value;
    }
    set value(assigned: unknown) {
      this.#value = assigned;
    }

    get headers(): unknown {
      if (this.#headers === UNREAD) {
        const decoder = decoderAt(this.#buffer, this.#valueAt);
        skipVarIntBytes(decoder);
        this.#headers = foldHeaders(this.#buffer, decoder.offset);
      }
      return this.#headers;
    }
    set headers(assigned: unknown) {
      this.#headers = assigned;
    }
  }

  return (decoder, batchContext = {}) => new DecodedRecord(decoder, batchContext);
}

function replaceModule(path: string, users: readonly string[], replacement: unknown): InstallResult {
  const cached = require.cache[path];
  if (cached === undefined || users.some((name) => require.cache[require.resolve(name)] !== undefined)) return 'too-late';
  cached.exports = replacement;
  return 'installed';
}

/** What was installed, decided once when this module is first loaded. */
let kafkajsProduceV3: ProduceRequestFactory | undefined;

export const speedups: {
  readonly recordEncoder: InstallResult;
  readonly grouping: InstallResult;
  readonly produceRequest: InstallResult;
  readonly framing: InstallResult;
  readonly recordDecoder: InstallResult;
} = {
  recordEncoder: replaceModule(recordPath, PRODUCE_REQUEST_MODULES, createRecordEncoder(kafkajsRecordEncoder, kafkajsEncoderPrototype)),
  grouping: replaceModule(groupingPath, GROUPING_USERS, groupMessagesPerPartition),
  produceRequest: (() => {
    if (produceModulesLoaded) return 'too-late';
    // Loaded now, after the record encoder above replaced kafkajs's (which it requires).
    kafkajsProduceV3 = require(produceV3Path) as ProduceRequestFactory;
    return replaceModule(produceV3Path, PRODUCE_V3_USERS, createProduceRequest(kafkajsProduceV3, kafkajsEncoderPrototype));
  })(),
  framing: replaceModule(framingPath, FRAMING_USERS, createFraming(kafkajsEncoderPrototype)),
  recordDecoder: replaceModule(recordDecoderPath, RECORD_DECODER_USERS, createRecordDecoder()),
};

/** kafkajs's own implementations, for tests that compare. */
export function kafkajsOriginals(): {
  encode: RecordEncoder;
  prototype: object;
  grouping: Grouping;
  produceRequest: ProduceRequestFactory | undefined;
  framing: Framing;
  decodeRecord: RecordDecoder;
} {
  return { encode: kafkajsRecordEncoder, prototype: kafkajsEncoderPrototype, grouping: kafkajsGrouping, produceRequest: kafkajsProduceV3, framing: kafkajsFraming, decodeRecord: kafkajsRecordDecoder };
}

/** How long a transaction coordinator found is used without asking again. */
const COORDINATOR_CACHE_MS = 10_000;
const TRANSACTION_COORDINATOR = 1; // kafkajs protocol/coordinatorTypes TRANSACTION

interface BrokerLike {
  isConnected(): boolean;
}
type FindCoordinator = (this: object, args: { groupId: string; coordinatorType?: number }) => Promise<BrokerLike>;

/**
 * 5. The transaction coordinator, remembered (cluster/index.js `findGroupCoordinator`).
 *    kafkajs's transactional producer asks a broker which one coordinates its transactional
 *    id before every AddPartitionsToTxn and every EndTxn: three or four FindCoordinator round
 *    trips in each of the Kafka log's transactions, on its critical path, each waiting for the
 *    event loop as well. This one answers from what the same cluster object (one per
 *    producer) found in the last 10 s while that broker is connected; the answer is the same
 *    broker until the coordinator moves, and then the transaction's requests fail
 *    (NOT_COORDINATOR), the Kafka log refuses the calls (retriable) and replaces the
 *    producer, and with it the cluster object and what it remembered. Group coordinators
 *    (consumers) are looked up as before.
 */
export function createCoordinatorCache(original: FindCoordinator, now: () => number = Date.now): FindCoordinator {
  const known = new WeakMap<object, Map<string, { broker: BrokerLike; foundAtMs: number }>>();
  return async function findGroupCoordinator(this: object, args) {
    if (args.coordinatorType !== TRANSACTION_COORDINATOR) return original.call(this, args);
    let cluster = known.get(this);
    if (cluster === undefined) {
      cluster = new Map();
      known.set(this, cluster);
    }
    const hit = cluster.get(args.groupId);
    if (hit !== undefined && now() - hit.foundAtMs < COORDINATOR_CACHE_MS && hit.broker.isConnected()) return hit.broker;
    cluster.delete(args.groupId);
    const broker = await original.call(this, args);
    cluster.set(args.groupId, { broker, foundAtMs: now() });
    return broker;
  };
}

/** Installed on kafkajs's Cluster class itself (a method, so whenever kafkajs was loaded). */
const clusterClass = require('kafkajs/src/cluster/index.js') as { prototype: { findGroupCoordinator: FindCoordinator } };
const kafkajsFindCoordinator = clusterClass.prototype.findGroupCoordinator;
clusterClass.prototype.findGroupCoordinator = createCoordinatorCache(kafkajsFindCoordinator);
