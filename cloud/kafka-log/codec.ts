/**
 * How a LogRecord and a topic's high water look on Kafka (DESIGN.md decision 5).
 *
 * Data: one Kafka topic per stream, key = logical topic so every record of a container lands
 * in one partition in offset order, identity in `pc-*` headers, the record's own headers
 * prefixed `h-` so they can never collide with ours, value = payload bytes.
 * High water: a compacted topic keyed by `${stream}\u0000${topic}`, value JSON
 * `{nextOffset, origin}` of the last record held, so compaction keeps exactly one entry per
 * logical topic and a restart reads back only as many entries as there are topics.
 */
import type { IHeaders, KafkaMessage, Message } from 'kafkajs';

import { topicKey, type LogRecord } from '../../core/index.js';

export const HEADER_ORIGIN = 'pc-origin';
export const HEADER_STREAM = 'pc-stream';
export const HEADER_TOPIC = 'pc-topic';
export const HEADER_OFFSET = 'pc-offset';
export const HEADER_EVENT_TIME_MS = 'pc-event-time-ms';
export const HEADER_INGEST_TIME_MS = 'pc-ingest-time-ms';
export const HEADER_CONTENT_TYPE = 'pc-content-type';
export const HEADER_SCHEMA = 'pc-schema';
export const USER_HEADER_PREFIX = 'h-';
/**
 * Version of this layout (header names and meanings, key, value), in every record's
 * `pc-schema` header so a third-party consumer can tell a future layout apart. Bump it when a
 * header changes meaning or a required one is added; adding an optional header needs no bump.
 */
export const SCHEMA_VERSION = '1';
/** A record's own header that, when present, names its content type instead of the stream's. */
export const RECORD_CONTENT_TYPE_HEADER = 'content-type';

/** Bytes Kafka's record format spends per record beyond key, value and headers (upper bound). */
const RECORD_OVERHEAD_BYTES = 64;

/** What the log remembers of a logical topic: enough to dedupe and to check a fork cheaply. */
export interface HeldTopic {
  /** One past the last offset held. */
  readonly nextOffset: number;
  /** Origin of the record at `nextOffset - 1`. */
  readonly origin: string;
}

export function dataTopicName(prefix: string, stream: string): string {
  return `${prefix}.${stream}`;
}

export function highWaterTopicName(prefix: string): string {
  return `${prefix}.highwater`;
}

export function cursorTopicName(prefix: string): string {
  return `${prefix}.cursors`;
}

export function consumerCursorTopicName(prefix: string): string {
  return `${prefix}.consumers`;
}

/**
 * The transactional id of one of a site's producers: `<prefix>.<site>-<role>`. It starts with
 * the topic prefix, so two deployments that share a cluster under different prefixes (say,
 * staging and production, both with a site TOKYO) never fence each other, and one prefixed
 * ACL covers a deployment's topics and transactional ids alike. Site ids hold no '.', so the
 * last '.' is where the prefix ends and no two (prefix, site) pairs share an id.
 */
export function transactionalIdName(prefix: string, siteId: string, role: string): string {
  return `${prefix}.${siteId}-${role}`;
}

/** A named consumer cursor (`CursorStore`): key = name, value `{"position": n}`. */
export function decodeConsumerCursor(message: Pick<KafkaMessage, 'key' | 'value' | 'offset'>): { name: string; position: number | undefined } {
  if (message.key === null) throw new Error(`consumer cursor entry at offset ${message.offset} has no key`);
  const name = message.key.toString('utf8');
  if (message.value === null) return { name, position: undefined };
  let parsed: unknown;
  try {
    parsed = JSON.parse(message.value.toString('utf8'));
  } catch (error) {
    throw new Error(`consumer cursor entry at offset ${message.offset} is not JSON: ${(error as Error).message}`);
  }
  const { position } = (parsed ?? {}) as { position?: unknown };
  if (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0) {
    throw new Error(`consumer cursor entry at offset ${message.offset} has no valid position`);
  }
  return { name, position };
}

/** Key of a sender's cursor: sender NUL incarnation (of the sender's log) NUL stream. */
export function cursorKey(sender: string, incarnation: string, stream: string): string {
  return `${sender}\u0000${incarnation}\u0000${stream}`;
}

export function encodeCursor(key: string, position: number): Message {
  return { key, value: JSON.stringify({ position }) };
}

export function decodeCursor(message: Pick<KafkaMessage, 'key' | 'value' | 'offset'>): { key: string; position: number | undefined } {
  if (message.key === null) throw new Error(`cursor entry at offset ${message.offset} has no key`);
  const key = message.key.toString('utf8');
  if (key.split('\u0000').length !== 3) throw new Error(`cursor entry at offset ${message.offset} has a malformed key`);
  if (message.value === null) return { key, position: undefined };
  let parsed: unknown;
  try {
    parsed = JSON.parse(message.value.toString('utf8'));
  } catch (error) {
    throw new Error(`cursor entry at offset ${message.offset} is not JSON: ${(error as Error).message}`);
  }
  const { position } = (parsed ?? {}) as { position?: unknown };
  if (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0) {
    throw new Error(`cursor entry at offset ${message.offset} has no valid position`);
  }
  return { key, position };
}

/**
 * A view on the payload's bytes, not a copy: the producer serializes it before the
 * transaction commits and the caller's promise is still pending until then.
 */
export function payloadBuffer(payload: Uint8Array): Buffer {
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

/**
 * `partition` is set by the caller (TopicLayout), never left to the producer, because the
 * topic index records where each record went.
 */
export function encodeRecord(record: LogRecord, streamContentType: string, partition: number): Message {
  const headers: IHeaders = {
    [HEADER_ORIGIN]: record.origin,
    [HEADER_STREAM]: record.stream,
    [HEADER_TOPIC]: record.topic,
    [HEADER_OFFSET]: String(record.offset),
    [HEADER_EVENT_TIME_MS]: String(record.eventTimeMs),
    [HEADER_INGEST_TIME_MS]: String(record.ingestTimeMs),
    [HEADER_CONTENT_TYPE]: record.headers[RECORD_CONTENT_TYPE_HEADER] ?? streamContentType,
    [HEADER_SCHEMA]: SCHEMA_VERSION,
  };
  for (const name of Object.keys(record.headers)) headers[USER_HEADER_PREFIX + name] = record.headers[name]!;
  // No Kafka timestamp of our own: the broker's time-based retention keys on it, and a
  // backlog weeks old stamped with its event time would be deleted as soon as it landed.
  return { key: record.topic, value: payloadBuffer(record.payload), headers, partition };
}

/**
 * The same record as `encodeRecord` makes, already in Kafka's record wire format from the key
 * on (key, value, headers: everything but the length, attributes and the two deltas the
 * producer assigns per batch), for the record encoder in kafkajs-speedups.ts to copy instead
 * of building a headers object and walking it. The bytes are what kafkajs would write for
 * `encodeRecord`'s message; test/kafkajs-speedups.test.ts checks that.
 */
export function encodeRecordTail(record: LogRecord, streamContentType: string): Buffer {
  const size = recordTailSize(record, streamContentType);
  const buf = Buffer.allocUnsafe(size);
  const end = writeRecordTail(buf, 0, record, streamContentType);
  if (end !== size) throw new Error(`record tail: wrote ${end} of ${size} bytes`);
  return buf;
}

/** The exact size of `encodeRecordTail(record, streamContentType)`, without writing it. */
export function recordTailSize(record: LogRecord, streamContentType: string): number {
  const headers = record.headers;
  const payloadBytes = record.payload.byteLength;
  const keyBytes = utf8Length(record.topic);
  let size = varIntSize(keyBytes) + keyBytes + varIntSize(payloadBytes) + payloadBytes;
  let userCount = 0;
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    userCount += 1;
    size += userHeaderName(name).length + stringSize(headers[name]!);
  }
  size += varIntSize(IDENTITY_HEADER_NAMES.length + userCount) + IDENTITY_NAMES_BYTES;
  size += stringSize(record.origin) + stringSize(record.stream) + varIntSize(keyBytes) + keyBytes;
  size += numberSize(record.offset) + numberSize(record.eventTimeMs) + numberSize(record.ingestTimeMs);
  size += stringSize(headers[RECORD_CONTENT_TYPE_HEADER] ?? streamContentType) + SCHEMA_VERSION_BYTES;
  return size;
}

/**
 * Writes `encodeRecordTail(record, streamContentType)` into `buf` at `offset` (straight into a
 * produce request, kafkajs-speedups.ts) and returns where it ended. Called once per record on
 * the write path: no intermediate arrays or strings, and the short ASCII strings that make up
 * most of it are copied by a loop rather than a native call each.
 */
export function writeRecordTail(buf: Buffer, offset: number, record: LogRecord, streamContentType: string): number {
  const headers = record.headers;
  const payload = record.payload;
  let userCount = 0;
  for (const name in headers) if (Object.hasOwn(headers, name)) userCount += 1;
  offset = writeString(buf, offset, record.topic);
  offset = writeVarInt(buf, offset, payload.byteLength);
  buf.set(payload, offset);
  offset += payload.byteLength;
  offset = writeVarInt(buf, offset, IDENTITY_HEADER_NAMES.length + userCount);
  // In IDENTITY_HEADER_NAMES order, written out rather than from an array of the values.
  offset = writeString(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[0]!), record.origin);
  offset = writeString(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[1]!), record.stream);
  offset = writeString(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[2]!), record.topic);
  offset = writeNumber(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[3]!), record.offset);
  offset = writeNumber(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[4]!), record.eventTimeMs);
  offset = writeNumber(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[5]!), record.ingestTimeMs);
  offset = writeString(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[6]!), headers[RECORD_CONTENT_TYPE_HEADER] ?? streamContentType);
  offset = writeBytes(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[7]!), SCHEMA_VERSION_ENCODED);
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    offset = writeBytes(buf, offset, userHeaderName(name));
    offset = writeString(buf, offset, headers[name]!);
  }
  return offset;
}

/**
 * What the tails of a run of records share (wire format 2 sends a container's records
 * together, with the same origin, stream, topic and own headers): everything but the
 * payload, the offset and the two times, encoded once as four pieces to copy. `write` gives
 * exactly `writeRecordTail`'s bytes for every record `matches` accepts.
 */
export class TailTemplate {
  private readonly origin: string;
  private readonly stream: string;
  private readonly topic: string;
  private readonly streamContentType: string;
  private readonly names: string[] = [];
  private readonly values: string[] = [];
  /** Key (length, topic). */
  private readonly key: Buffer;
  /** Header count, pc-origin, pc-stream, pc-topic with their values, pc-offset's name. */
  private readonly head: Buffer;
  /** pc-content-type and pc-schema with their values, then the record's own headers. */
  private readonly rest: Buffer;
  private readonly fixedBytes: number;

  constructor(record: LogRecord, streamContentType: string) {
    this.origin = record.origin;
    this.stream = record.stream;
    this.topic = record.topic;
    this.streamContentType = streamContentType;
    const headers = record.headers;
    for (const name in headers) {
      if (!Object.hasOwn(headers, name)) continue;
      this.names.push(name);
      this.values.push(headers[name]!);
    }
    this.key = Buffer.allocUnsafe(stringSize(record.topic));
    writeString(this.key, 0, record.topic);
    const headBytes =
      varIntSize(IDENTITY_HEADER_NAMES.length + this.names.length) +
      IDENTITY_NAME_PREFIXES[0]!.length + stringSize(record.origin) +
      IDENTITY_NAME_PREFIXES[1]!.length + stringSize(record.stream) +
      IDENTITY_NAME_PREFIXES[2]!.length + stringSize(record.topic) +
      IDENTITY_NAME_PREFIXES[3]!.length;
    this.head = Buffer.allocUnsafe(headBytes);
    let at = writeVarInt(this.head, 0, IDENTITY_HEADER_NAMES.length + this.names.length);
    at = writeString(this.head, writeBytes(this.head, at, IDENTITY_NAME_PREFIXES[0]!), record.origin);
    at = writeString(this.head, writeBytes(this.head, at, IDENTITY_NAME_PREFIXES[1]!), record.stream);
    at = writeString(this.head, writeBytes(this.head, at, IDENTITY_NAME_PREFIXES[2]!), record.topic);
    at = writeBytes(this.head, at, IDENTITY_NAME_PREFIXES[3]!);
    if (at !== headBytes) throw new Error(`tail template: wrote ${at} of ${headBytes} bytes`);
    const contentType = headers[RECORD_CONTENT_TYPE_HEADER] ?? streamContentType;
    let restBytes = IDENTITY_NAME_PREFIXES[6]!.length + stringSize(contentType) + IDENTITY_NAME_PREFIXES[7]!.length + SCHEMA_VERSION_BYTES;
    for (let i = 0; i < this.names.length; i++) restBytes += userHeaderName(this.names[i]!).length + stringSize(this.values[i]!);
    this.rest = Buffer.allocUnsafe(restBytes);
    at = writeString(this.rest, writeBytes(this.rest, 0, IDENTITY_NAME_PREFIXES[6]!), contentType);
    at = writeBytes(this.rest, writeBytes(this.rest, at, IDENTITY_NAME_PREFIXES[7]!), SCHEMA_VERSION_ENCODED);
    for (let i = 0; i < this.names.length; i++) at = writeString(this.rest, writeBytes(this.rest, at, userHeaderName(this.names[i]!)), this.values[i]!);
    if (at !== restBytes) throw new Error(`tail template: wrote ${at} of ${restBytes} bytes`);
    this.fixedBytes = this.key.length + headBytes + IDENTITY_NAME_PREFIXES[4]!.length + IDENTITY_NAME_PREFIXES[5]!.length + restBytes;
  }

  /** Whether `record`'s tail is this template's with its own payload, offset and times. */
  matches(record: LogRecord, streamContentType: string): boolean {
    if (record.topic !== this.topic || record.origin !== this.origin || record.stream !== this.stream || streamContentType !== this.streamContentType) return false;
    const headers = record.headers;
    let i = 0;
    for (const name in headers) {
      if (!Object.hasOwn(headers, name)) continue;
      if (i >= this.names.length || name !== this.names[i] || headers[name] !== this.values[i]) return false;
      i += 1;
    }
    return i === this.names.length;
  }

  /** `recordTailSize` of a record this template matches. */
  size(record: LogRecord): number {
    const payloadBytes = record.payload.byteLength;
    return this.fixedBytes + varIntSize(payloadBytes) + payloadBytes + numberSize(record.offset) + numberSize(record.eventTimeMs) + numberSize(record.ingestTimeMs);
  }

  /** `writeRecordTail` of a record this template matches. */
  write(buf: Buffer, offset: number, record: LogRecord): number {
    const payload = record.payload;
    buf.set(this.key, offset);
    offset = writeVarInt(buf, offset + this.key.length, payload.byteLength);
    buf.set(payload, offset);
    offset += payload.byteLength;
    buf.set(this.head, offset);
    offset = writeNumber(buf, offset + this.head.length, record.offset);
    offset = writeNumber(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[4]!), record.eventTimeMs);
    offset = writeNumber(buf, writeBytes(buf, offset, IDENTITY_NAME_PREFIXES[5]!), record.ingestTimeMs);
    buf.set(this.rest, offset);
    return offset + this.rest.length;
  }
}

/**
 * A message with a key, a value and no headers (high-water and cursor entries), in Kafka's
 * record wire format from the key on, like `encodeRecordTail`; what kafkajs writes for
 * `{ key, value }`.
 */
export function encodeKeyValueTail(key: string, value: string): Buffer {
  const buf = Buffer.allocUnsafe(stringSize(key) + stringSize(value) + 1);
  let offset = writeString(buf, 0, key);
  offset = writeString(buf, offset, value);
  buf[offset++] = 0; // no headers
  if (offset !== buf.length) throw new Error(`key/value tail: wrote ${offset} of ${buf.length} bytes`);
  return buf;
}

/** Short byte strings (header names) copied by a loop rather than a native call each. */
function writeBytes(buf: Buffer, offset: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) buf[offset++] = bytes[i]!;
  return offset;
}

/**
 * A record's own header name as written (`h-<name>`, its length first), made once per name:
 * a fleet's records carry a handful of names. Bounded, since a name is whatever a device sent.
 */
const userHeaderNames = new Map<string, Buffer>();
const MAX_CACHED_HEADER_NAMES = 1_024;

function userHeaderName(name: string): Buffer {
  let encoded = userHeaderNames.get(name);
  if (encoded === undefined) {
    const full = USER_HEADER_PREFIX + name;
    encoded = Buffer.allocUnsafe(stringSize(full));
    writeString(encoded, 0, full);
    if (userHeaderNames.size < MAX_CACHED_HEADER_NAMES) userHeaderNames.set(name, encoded);
  }
  return encoded;
}

/** UTF-8 length; a loop for ASCII, which every identity field of ours is. */
function utf8Length(text: string): number {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return Buffer.byteLength(text, 'utf8');
  return text.length;
}

/** A varint length and the string's UTF-8 bytes. */
function stringSize(text: string): number {
  const bytes = utf8Length(text);
  return varIntSize(bytes) + bytes;
}

function writeString(buf: Buffer, offset: number, text: string): number {
  const bytes = utf8Length(text);
  offset = writeVarInt(buf, offset, bytes);
  if (bytes !== text.length || bytes > 64) return offset + buf.write(text, offset, bytes, 'utf8');
  for (let i = 0; i < bytes; i++) buf[offset++] = text.charCodeAt(i);
  return offset;
}

/** 10^0 .. 10^15: a safe integer has at most 16 decimal digits. */
const POWERS_OF_TEN: readonly number[] = Array.from({ length: 16 }, (_unused, power) => 10 ** power);

/**
 * Decimal digits of a safe non-negative integer (offsets and times), as `String(value)` has.
 * By comparison, not division: three of these per record, 13 digits for a time in ms.
 */
function digitsOf(value: number): number {
  if (!(value >= 0 && value <= Number.MAX_SAFE_INTEGER) || !Number.isInteger(value)) return -1;
  let digits = 1;
  while (digits < 16 && value >= POWERS_OF_TEN[digits]!) digits += 1;
  return digits;
}

/** `stringSize(String(value))`, without making the string for the common case. */
function numberSize(value: number): number {
  const digits = digitsOf(value);
  return digits < 0 ? stringSize(String(value)) : varIntSize(digits) + digits;
}

/** Writes the `count` lowest decimal digits of `value` (an int32) ending just before `end`, in 32-bit integer steps. */
function writeSmallDigits(buf: Buffer, end: number, value: number, count: number): void {
  let rest = value | 0;
  for (let at = end - 1; at >= end - count; at--) {
    const next = (rest / 10) | 0;
    buf[at] = 0x30 + rest - next * 10;
    rest = next;
  }
}

/**
 * `writeString(buf, offset, String(value))`, without making the string for the common case.
 * A time in ms is past 2^31: its last 8 digits and the rest are written as two 32-bit integers,
 * so one floating-point division remains of the thirteen a digit-by-digit loop made.
 */
function writeNumber(buf: Buffer, offset: number, value: number): number {
  const digits = digitsOf(value);
  if (digits < 0) return writeString(buf, offset, String(value));
  offset = writeVarInt(buf, offset, digits);
  const end = offset + digits;
  if (digits <= 9) {
    writeSmallDigits(buf, end, value, digits);
  } else {
    const high = Math.floor(value / 1e8);
    writeSmallDigits(buf, end, value - high * 1e8, 8);
    writeSmallDigits(buf, end - 8, high, digits - 8);
  }
  return end;
}

const IDENTITY_HEADER_NAMES = [
  HEADER_ORIGIN,
  HEADER_STREAM,
  HEADER_TOPIC,
  HEADER_OFFSET,
  HEADER_EVENT_TIME_MS,
  HEADER_INGEST_TIME_MS,
  HEADER_CONTENT_TYPE,
  HEADER_SCHEMA,
];
/** Each identity header name as written: varint length, then its (ASCII) bytes. */
const IDENTITY_NAME_PREFIXES: readonly Uint8Array[] = IDENTITY_HEADER_NAMES.map((name) => {
  const buf = Buffer.alloc(varIntSize(name.length) + name.length);
  buf.write(name, writeVarInt(buf, 0, name.length), 'ascii');
  return buf;
});
const IDENTITY_NAMES_BYTES = IDENTITY_NAME_PREFIXES.reduce((sum, prefix) => sum + prefix.length, 0);
/** The `pc-schema` value as written: its length, then its bytes. */
const SCHEMA_VERSION_ENCODED: Uint8Array = (() => {
  const buf = Buffer.alloc(stringSize(SCHEMA_VERSION));
  writeString(buf, 0, SCHEMA_VERSION);
  return buf;
})();
const SCHEMA_VERSION_BYTES = SCHEMA_VERSION_ENCODED.length;

/** Kafka's varint: zig-zag, then 7 bits a byte, low first (lengths here are never negative). */
function varIntSize(value: number): number {
  let zigzag = value * 2;
  let bytes = 1;
  while (zigzag >= 0x80) {
    bytes += 1;
    zigzag = Math.floor(zigzag / 128);
  }
  return bytes;
}

function writeVarInt(buf: Buffer, offset: number, value: number): number {
  let zigzag = value * 2;
  while (zigzag >= 0x80) {
    buf[offset++] = (zigzag & 0x7f) | 0x80;
    zigzag = Math.floor(zigzag / 128);
  }
  buf[offset++] = zigzag;
  return offset;
}

/** Upper bound of the bytes a record takes in a produce request, for batching and limits. */
export function encodedSizeBytes(record: LogRecord): number {
  let bytes = RECORD_OVERHEAD_BYTES + Buffer.byteLength(record.topic) + record.payload.byteLength;
  bytes += Buffer.byteLength(record.origin) + Buffer.byteLength(record.stream) + Buffer.byteLength(record.topic);
  bytes += 3 * 20 + 8 * 24 + 64; // three decimal numbers, eight header names, content type and schema
  for (const [name, value] of Object.entries(record.headers)) {
    bytes += 8 + USER_HEADER_PREFIX.length + Buffer.byteLength(name) + Buffer.byteLength(value);
  }
  return bytes;
}

function headerText(headers: IHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name];
  const single = Array.isArray(value) ? value[value.length - 1] : value;
  if (single === undefined) return undefined;
  return typeof single === 'string' ? single : single.toString('utf8');
}

function headerNumber(headers: IHeaders | undefined, name: string): number | undefined {
  const text = headerText(headers, name);
  if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * Where a data-topic message belongs, reading only the three headers that say it: what the
 * topic index and a read's filter need, without copying the payload.
 */
export function peekIdentity(message: Pick<KafkaMessage, 'headers'>): { stream: string; topic: string; offset: number } | undefined {
  const stream = headerText(message.headers, HEADER_STREAM);
  const topic = headerText(message.headers, HEADER_TOPIC);
  const offset = headerNumber(message.headers, HEADER_OFFSET);
  if (stream === undefined || topic === undefined || offset === undefined) return undefined;
  return { stream, topic, offset };
}

/**
 * Reads a record back from a data topic; undefined when the message was not written by a
 * KafkaLog (someone else producing to the topic), which readers skip rather than trust.
 */
export function decodeRecord(message: Pick<KafkaMessage, 'headers' | 'value'>): LogRecord | undefined {
  const headers = message.headers;
  const origin = headerText(headers, HEADER_ORIGIN);
  const stream = headerText(headers, HEADER_STREAM);
  const topic = headerText(headers, HEADER_TOPIC);
  const offset = headerNumber(headers, HEADER_OFFSET);
  const eventTimeMs = headerNumber(headers, HEADER_EVENT_TIME_MS);
  const ingestTimeMs = headerNumber(headers, HEADER_INGEST_TIME_MS);
  if (
    origin === undefined ||
    stream === undefined ||
    topic === undefined ||
    offset === undefined ||
    eventTimeMs === undefined ||
    ingestTimeMs === undefined
  ) {
    return undefined;
  }
  const userHeaderEntries: [string, string][] = [];
  for (const name of Object.keys(headers ?? {})) {
    if (!name.startsWith(USER_HEADER_PREFIX)) continue;
    const value = headerText(headers, name);
    if (value !== undefined) userHeaderEntries.push([name.slice(USER_HEADER_PREFIX.length), value]);
  }
  // fromEntries defines own properties, so even a header named "__proto__" survives.
  const userHeaders: Record<string, string> = Object.fromEntries(userHeaderEntries);
  // A copy, because kafkajs hands out slices of the whole fetch response, and keeping one
  // slice in a long-lived map would keep megabytes of response alive with it.
  const payload = message.value === null ? new Uint8Array(0) : new Uint8Array(message.value);
  return { origin, stream, topic, offset, eventTimeMs, ingestTimeMs, headers: userHeaders, payload };
}

export function encodeHighWater(stream: string, topic: string, held: HeldTopic): Message {
  return {
    key: topicKey(stream, topic),
    value: JSON.stringify({ nextOffset: held.nextOffset, origin: held.origin }),
  };
}

/** The error text says which entry is bad, because a corrupt high water must stop a start. */
export function decodeHighWater(message: Pick<KafkaMessage, 'key' | 'value' | 'offset'>): { key: string; held: HeldTopic | undefined } {
  if (message.key === null) throw new Error(`high-water entry at offset ${message.offset} has no key`);
  const key = message.key.toString('utf8');
  if (key.indexOf('\u0000') <= 0) throw new Error(`high-water entry at offset ${message.offset} has a malformed key`);
  // A tombstone (null value) would mean the topic was deleted on purpose; nothing writes one
  // today, but honouring it is what compaction readers are expected to do.
  if (message.value === null) return { key, held: undefined };
  let parsed: unknown;
  try {
    parsed = JSON.parse(message.value.toString('utf8'));
  } catch (error) {
    throw new Error(`high-water entry at offset ${message.offset} is not JSON: ${(error as Error).message}`);
  }
  const { nextOffset, origin } = (parsed ?? {}) as { nextOffset?: unknown; origin?: unknown };
  if (typeof nextOffset !== 'number' || !Number.isSafeInteger(nextOffset) || nextOffset < 0 || typeof origin !== 'string') {
    throw new Error(`high-water entry at offset ${message.offset} has no valid nextOffset/origin`);
  }
  return { key, held: { nextOffset, origin } };
}
