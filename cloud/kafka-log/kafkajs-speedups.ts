/**
 * Two drop-in replacements for kafkajs internals on the produce path, found by profiling
 * `KafkaLog.replicate` (bench shore-kafka); each writes exactly what kafkajs's own writes.
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
 *
 * How they are installed: by replacing the modules' entries in Node's require cache before
 * the kafkajs modules that `require` them are loaded. The grouping is required when kafkajs
 * itself is first loaded, so this module is imported first by cloud/kafka-log/index.ts; the
 * record encoder is required by the produce request modules, which kafkajs loads on the
 * first produce. Whatever was loaded earlier (kafkajs imported by other code first, say in a
 * test) keeps kafkajs's own version: slower, never different. kafkajs 2.2.4 is its last
 * release, so the modules replaced here no longer change under them.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type HeaderValue = string | Buffer | null | undefined;
interface RecordInput {
  /** Key, value and headers already encoded (codec.ts `encodeRecordTail`); wins over them when set. */
  readonly portcallTail?: Buffer;
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
    const tail = record.portcallTail;
    if (tail !== undefined) {
      const body = 1 + sizeOfUVarInt(zigZag(timestampDelta)) + sizeOfUVarInt(zigZag(offsetDelta)) + tail.length;
      const length = sizeOfUVarInt(zigZag(body)) + body;
      const out = Buffer.allocUnsafe(length);
      let at = writeUVarInt(out, 0, zigZag(body));
      out[at++] = 0; // attributes
      at = writeUVarInt(out, at, zigZag(timestampDelta));
      at = writeUVarInt(out, at, zigZag(offsetDelta));
      tail.copy(out, at);
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

export type InstallResult = 'installed' | 'too-late';

type Grouping = (args: {
  topic: string;
  partitionMetadata: readonly unknown[];
  messages: readonly unknown[];
  partitioner: (args: { topic: string; partitionMetadata: readonly unknown[]; message: unknown }) => number;
}) => Record<number, unknown[]>;

/** kafkajs's grouping with its result built by appending, not by copying the list per message. */
export const groupMessagesPerPartition: Grouping = ({ topic, partitionMetadata, messages, partitioner }) => {
  const result: Record<number, unknown[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
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

function replaceModule(path: string, users: readonly string[], replacement: unknown): InstallResult {
  const cached = require.cache[path];
  if (cached === undefined || users.some((name) => require.cache[require.resolve(name)] !== undefined)) return 'too-late';
  cached.exports = replacement;
  return 'installed';
}

/** What was installed, decided once when this module is first loaded. */
export const speedups: { readonly recordEncoder: InstallResult; readonly grouping: InstallResult } = {
  recordEncoder: replaceModule(recordPath, PRODUCE_REQUEST_MODULES, createRecordEncoder(kafkajsRecordEncoder, kafkajsEncoderPrototype)),
  grouping: replaceModule(groupingPath, GROUPING_USERS, groupMessagesPerPartition),
};

/** kafkajs's own implementations, for tests that compare. */
export function kafkajsOriginals(): { encode: RecordEncoder; prototype: object; grouping: Grouping } {
  return { encode: kafkajsRecordEncoder, prototype: kafkajsEncoderPrototype, grouping: kafkajsGrouping };
}
