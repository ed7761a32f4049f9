/**
 * Batch wire format, version 2: telemetry-aware columnar encoding, then brotli. Documented
 * in docs/WIRE.md; the frame is
 *
 *   offset  size  field
 *   0       4     magic "PCB2"
 *   4       1     compression: 0 none, 2 brotli
 *   5       4     CRC-32 of the body as sent (big-endian)
 *   9       4     body length in bytes (big-endian)
 *   13      4     record count (big-endian)
 *   17      4     body length after decompression (big-endian)
 *   21      n     body
 *
 * The record count and decompressed length are declared up front so that the receiver
 * refuses a batch over its limits before it decompresses anything, and decompresses with
 * the declared length as a hard output limit.
 *
 * The body groups records by (stream, topic), keeping each topic's order, and writes every
 * field as a column (columns.ts). Payloads that are flat JSON objects (flat-json.ts) are
 * taken apart into one column per key of each distinct key list ("shape"); the rest are
 * carried as bytes. Every decoded record is checked like a version 1 record would be.
 */
import { brotliCompressSync, brotliDecompressSync, constants as zlib, crc32 } from 'node:zlib';
import { InvalidInputError, NO_HEADERS, type LogRecord, type RecordHeaders } from '../../core/index.js';
import { ByteReader, ByteWriter, MalformedBodyError } from './byte-buffer.js';
import {
  readInts,
  readNumbers,
  readRefs,
  runLengths,
  StringColumn,
  StringDictionary,
  writeInts,
  writeNumbers,
} from './columns.js';
import { buildFlatJson, shredFlatJson, type Scalar } from './flat-json.js';
import type { Batch, DecodeLimits } from './batch.js';

export const MAGIC_V2 = Buffer.from('PCB2', 'ascii');
export const HEADER_BYTES_V2 = 21;
/** Decoding copies a container's consecutive blob payloads out in pieces of at most this many bytes (decodeBody). */
const BLOB_RUN_MAX_BYTES = 64 * 1024;

export enum CompressionV2 {
  None = 0,
  Brotli = 2,
}

export interface EncodeV2Options {
  readonly compression?: CompressionV2;
  /** Brotli quality 0–11: 11 is smallest and slowest; 9 is nearly as small and much faster. */
  readonly quality?: number;
}

const enum Tag {
  Null = 0,
  False = 1,
  True = 2,
  Number = 3,
  String = 4,
}

function tagOf(value: Scalar): Tag {
  if (typeof value === 'number') return Tag.Number;
  if (typeof value === 'string') return Tag.String;
  if (value === null) return Tag.Null;
  return value ? Tag.True : Tag.False;
}

/** Values of one key of one shape, for the records of that shape, in batch order. */
class ValueColumn {
  private readonly tags: Tag[];
  private readonly numbers: number[] = [];
  private readonly numberReference: number[] = [];
  private readonly numberTopics: string[] = [];
  private readonly strings: StringColumn | undefined;

  constructor(values: readonly Scalar[], eventTimes: readonly number[], topics: readonly string[], dictionary: StringDictionary) {
    this.tags = values.map(tagOf);
    const strings: string[] = [];
    const stringTopics: string[] = [];
    for (let index = 0; index < values.length; index += 1) {
      const value = values[index]!;
      if (typeof value === 'number') {
        this.numbers.push(value);
        this.numberReference.push(eventTimes[index]!);
        this.numberTopics.push(topics[index]!);
      } else if (typeof value === 'string') {
        strings.push(value);
        stringTopics.push(topics[index]!);
      }
    }
    this.strings = strings.length > 0 ? new StringColumn(strings, stringTopics, dictionary) : undefined;
  }

  write(writer: ByteWriter, dictionary: StringDictionary): void {
    const first = this.tags[0];
    if (first !== undefined && this.tags.every((tag) => tag === first)) {
      writer.u8(first + 1);
    } else {
      writer.u8(0);
      for (const tag of this.tags) writer.u8(tag);
    }
    if (this.numbers.length > 0) {
      writeNumbers(writer, this.numbers, { reference: this.numberReference, runs: runLengths(this.numberTopics) });
    }
    this.strings?.write(writer, dictionary);
  }

  static read(
    reader: ByteReader,
    count: number,
    eventTimes: readonly number[],
    topics: readonly string[],
    dictionary: readonly string[],
  ): Scalar[] {
    const tagMode = reader.u8();
    let tags: Tag[];
    if (tagMode === 0) {
      tags = Array.from(reader.bytes(count), (tag) => {
        if (tag > Tag.String) throw new MalformedBodyError(`unknown value tag ${tag}`);
        return tag as Tag;
      });
    } else if (tagMode <= Tag.String + 1) {
      tags = new Array<Tag>(count).fill((tagMode - 1) as Tag);
    } else {
      throw new MalformedBodyError(`unknown tag mode ${tagMode}`);
    }
    const numberReference: number[] = [];
    const numberTopics: string[] = [];
    const stringTopics: string[] = [];
    for (let index = 0; index < count; index += 1) {
      if (tags[index] === Tag.Number) {
        numberReference.push(eventTimes[index]!);
        numberTopics.push(topics[index]!);
      } else if (tags[index] === Tag.String) stringTopics.push(topics[index]!);
    }
    const numbers =
      numberReference.length > 0
        ? readNumbers(reader, numberReference.length, { reference: numberReference, runs: runLengths(numberTopics) })
        : [];
    const strings = stringTopics.length > 0 ? StringColumn.read(reader, stringTopics.length, stringTopics, dictionary) : [];
    let nextNumber = 0;
    let nextString = 0;
    return tags.map((tag) => {
      switch (tag) {
        case Tag.Number:
          return numbers[nextNumber++]!;
        case Tag.String:
          return strings[nextString++]!;
        case Tag.Null:
          return null;
        default:
          return tag === Tag.True;
      }
    });
  }
}

/** Records sharing a key list (of headers, or of a flat JSON payload), with their values per key. */
interface KeyedGroup<V> {
  /** From 1; 0 means "none" (no headers, payload as bytes). */
  readonly id: number;
  readonly keys: readonly string[];
  readonly rows: number[];
  readonly values: V[][];
}

function keyedGroup<V>(groups: Map<string, KeyedGroup<V>>, keys: readonly string[], signature = JSON.stringify(keys)): KeyedGroup<V> {
  let group = groups.get(signature);
  if (group === undefined) {
    group = { id: groups.size + 1, keys, rows: [], values: keys.map(() => []) };
    groups.set(signature, group);
  }
  return group;
}

function sameKeys(left: readonly string[], right: readonly string[]): boolean {
  if (left.length !== right.length) return false;
  for (let index = 0; index < left.length; index += 1) if (left[index] !== right[index]) return false;
  return true;
}

function pick<T>(values: readonly T[], rows: readonly number[]): T[] {
  return rows.map((row) => values[row]!);
}

export function encodeBatchV2(batch: Batch, options: EncodeV2Options = {}): Buffer {
  // Group by (stream, topic), keeping each topic's records in their order.
  const byStream = new Map<string, Map<string, LogRecord[]>>();
  for (const record of batch.records) {
    let topicsOfStream = byStream.get(record.stream);
    if (topicsOfStream === undefined) byStream.set(record.stream, (topicsOfStream = new Map()));
    let list = topicsOfStream.get(record.topic);
    if (list === undefined) topicsOfStream.set(record.topic, (list = []));
    list.push(record);
  }
  const groups: LogRecord[][] = [];
  for (const stream of [...byStream.keys()].sort()) {
    const topicsOfStream = byStream.get(stream)!;
    for (const topic of [...topicsOfStream.keys()].sort()) groups.push(topicsOfStream.get(topic)!);
  }
  const records: LogRecord[] = [];
  for (const group of groups) for (const record of group) records.push(record);
  const count = records.length;

  const dictionary = new StringDictionary();
  dictionary.add(batch.sender);
  const topics = records.map((record) => record.topic);
  const eventTimes = records.map((record) => record.eventTimeMs);
  for (const group of groups) {
    dictionary.add(group[0]!.stream);
    dictionary.add(group[0]!.topic);
    for (const record of group) dictionary.add(record.origin);
  }

  const headerSets = new Map<string, KeyedGroup<string>>();
  const headerSetIds = new Array<number>(count);
  const shapes = new Map<string, KeyedGroup<Scalar>>();
  const payloadKinds = new Array<number>(count);
  const blobs: Uint8Array[] = [];
  // Consecutive records almost always carry the same header names: skip the lookup then.
  let lastHeaders: KeyedGroup<string> | undefined;
  let lastShape: KeyedGroup<Scalar> | undefined;
  for (let row = 0; row < count; row += 1) {
    const record = records[row]!;
    const headerKeys = Object.keys(record.headers);
    if (headerKeys.length === 0) {
      headerSetIds[row] = 0;
    } else {
      if (lastHeaders === undefined || !sameKeys(lastHeaders.keys, headerKeys)) lastHeaders = keyedGroup(headerSets, headerKeys);
      const group = lastHeaders;
      headerSetIds[row] = group.id;
      group.rows.push(row);
      for (let index = 0; index < headerKeys.length; index += 1) group.values[index]!.push(record.headers[headerKeys[index]!]!);
    }
    const flat = shredFlatJson(record.payload);
    if (flat === undefined) {
      payloadKinds[row] = 0;
      blobs.push(record.payload);
    } else {
      // Consecutive readings almost always have the previous one's shape.
      const group = lastShape !== undefined && sameKeys(lastShape.keys, flat.keys) ? lastShape : keyedGroup(shapes, flat.keys);
      lastShape = group;
      payloadKinds[row] = group.id;
      group.rows.push(row);
      for (let index = 0; index < flat.values.length; index += 1) group.values[index]!.push(flat.values[index]!);
    }
  }

  const headerColumns = [...headerSets.values()].map((set) => {
    for (const key of set.keys) dictionary.add(key);
    const setTopics = pick(topics, set.rows);
    return set.values.map((values) => new StringColumn(values, setTopics, dictionary));
  });
  const shapeColumns = [...shapes.values()].map((shape) => {
    for (const key of shape.keys) dictionary.add(key);
    const shapeTopics = pick(topics, shape.rows);
    const shapeTimes = pick(eventTimes, shape.rows);
    return shape.values.map((values) => new ValueColumn(values, shapeTimes, shapeTopics, dictionary));
  });

  const writer = new ByteWriter(64 * 1024);
  dictionary.write(writer);
  writer.uvarint(dictionary.ref(batch.sender));
  writer.uvarint(groups.length);
  writeInts(writer, groups.map((group) => dictionary.ref(group[0]!.stream)));
  writeInts(writer, groups.map((group) => dictionary.ref(group[0]!.topic)));
  const groupSizes = groups.map((group) => group.length);
  writeInts(writer, groupSizes);
  writeInts(writer, records.map((record) => dictionary.ref(record.origin)));
  writeNumbers(writer, records.map((record) => record.offset), { runs: groupSizes });
  writeNumbers(writer, eventTimes, { runs: groupSizes });
  writeNumbers(writer, records.map((record) => record.ingestTimeMs), { reference: eventTimes, runs: groupSizes });

  writeInts(writer, headerSetIds);
  writer.uvarint(headerSets.size);
  for (const set of headerSets.values()) {
    writer.uvarint(set.keys.length);
    for (const key of set.keys) writer.uvarint(dictionary.ref(key));
  }
  for (const columns of headerColumns) for (const column of columns) column.write(writer, dictionary);

  writeInts(writer, payloadKinds);
  writer.uvarint(shapes.size);
  for (const shape of shapes.values()) {
    writer.uvarint(shape.keys.length);
    for (const key of shape.keys) writer.uvarint(dictionary.ref(key));
  }
  for (const columns of shapeColumns) for (const column of columns) column.write(writer, dictionary);

  writeInts(writer, blobs.map((blob) => blob.length));
  for (const blob of blobs) writer.bytes(blob);

  const raw = writer.finish();
  const compression = options.compression ?? CompressionV2.Brotli;
  const body =
    compression === CompressionV2.Brotli
      ? brotliCompressSync(raw, {
          params: {
            [zlib.BROTLI_PARAM_QUALITY]: options.quality ?? 9,
            [zlib.BROTLI_PARAM_LGWIN]: 22,
            [zlib.BROTLI_PARAM_SIZE_HINT]: raw.length,
          },
        })
      : raw;
  const header = Buffer.alloc(HEADER_BYTES_V2);
  MAGIC_V2.copy(header, 0);
  header.writeUInt8(compression, 4);
  header.writeUInt32BE(crc32(body), 5);
  header.writeUInt32BE(body.length, 9);
  header.writeUInt32BE(count, 13);
  header.writeUInt32BE(raw.length, 17);
  return Buffer.concat([header, body]);
}

function refuse(reason: string, message: string): never {
  throw new InvalidInputError(reason, message);
}

/** Checks the frame, decompresses within the limits and decodes; throws InvalidInputError. */
export function decodeBatchV2(bytes: Buffer, limits: DecodeLimits): Batch {
  if (bytes.length < HEADER_BYTES_V2) refuse('bad-magic', 'not a portcall batch: truncated version 2 header');
  const compression = bytes.readUInt8(4);
  const expectedCrc = bytes.readUInt32BE(5);
  const bodyBytes = bytes.readUInt32BE(9);
  const declaredRecords = bytes.readUInt32BE(13);
  const rawBytes = bytes.readUInt32BE(17);
  if (bodyBytes !== bytes.length - HEADER_BYTES_V2) {
    refuse('bad-length', `batch header says ${bodyBytes} body bytes but ${bytes.length - HEADER_BYTES_V2} arrived`);
  }
  const body = bytes.subarray(HEADER_BYTES_V2);
  if (crc32(body) !== expectedCrc) refuse('bad-checksum', 'batch checksum does not match its body');
  if (declaredRecords > limits.maxRecords) {
    refuse('too-many-records', `batch holds ${declaredRecords} records, the limit is ${limits.maxRecords}`);
  }
  if (rawBytes > limits.maxDecompressedBytes) {
    refuse('too-large', `batch decompresses to ${rawBytes} bytes, more than ${limits.maxDecompressedBytes}`);
  }
  let raw: Buffer;
  if (compression === CompressionV2.Brotli) {
    try {
      raw = brotliDecompressSync(body, { maxOutputLength: Math.max(1, rawBytes) });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        refuse('too-large', `batch decompresses to more than the ${rawBytes} bytes its header declares`);
      }
      refuse('bad-compression', `batch body is not valid brotli: ${(error as Error).message}`);
    }
  } else if (compression === CompressionV2.None) {
    raw = body;
  } else {
    refuse('bad-compression', `unknown compression code ${compression} for version 2`);
  }
  if (raw.length !== rawBytes) refuse('bad-length', `batch body decompresses to ${raw.length} bytes, its header declares ${rawBytes}`);
  try {
    return decodeBody(raw, declaredRecords, limits);
  } catch (error) {
    if (error instanceof MalformedBodyError) refuse('bad-body', `batch body invalid: ${error.message}`);
    throw error;
  }
}

function decodeBody(raw: Buffer, declaredRecords: number, limits: DecodeLimits): Batch {
  const reader = new ByteReader(raw);
  const dictionary = StringDictionary.read(reader);
  const ref = (what: string) => {
    const index = reader.uvarint();
    if (index >= dictionary.length) throw new MalformedBodyError(`${what} reference ${index} out of range`);
    return dictionary[index]!;
  };
  const sender = ref('sender');
  const groupCount = reader.count(3, 'topic group');
  const groupStreams = readRefs(reader, groupCount, dictionary.length, 'stream reference');
  const groupTopics = readRefs(reader, groupCount, dictionary.length, 'topic reference');
  const groupSizes = readInts(reader, groupCount);
  let count = 0;
  for (const size of groupSizes) {
    if (!Number.isSafeInteger(size) || size < 1) throw new MalformedBodyError(`topic group of ${size} records`);
    count += size;
  }
  if (count !== declaredRecords) throw new MalformedBodyError(`body holds ${count} records, its header declares ${declaredRecords}`);
  const streams = new Array<string>(count);
  const topics = new Array<string>(count);
  let row = 0;
  for (let group = 0; group < groupCount; group += 1) {
    for (let index = 0; index < groupSizes[group]!; index += 1) {
      streams[row] = dictionary[groupStreams[group]!]!;
      topics[row] = dictionary[groupTopics[group]!]!;
      row += 1;
    }
  }
  const origins = readRefs(reader, count, dictionary.length, 'origin reference').map((index) => dictionary[index]!);
  const offsets = readNumbers(reader, count, { runs: groupSizes });
  const eventTimes = readNumbers(reader, count, { runs: groupSizes });
  const ingestTimes = readNumbers(reader, count, { reference: eventTimes, runs: groupSizes });

  const headerSetIds = readInts(reader, count);
  const headerSetCount = reader.count(1, 'header set');
  const headerSetKeys: string[][] = [];
  for (let set = 0; set < headerSetCount; set += 1) {
    const keyCount = reader.count(1, 'header key');
    headerSetKeys.push(Array.from({ length: keyCount }, () => ref('header key')));
  }
  const headers = new Array<RecordHeaders>(count);
  const rowsOfSet: number[][] = headerSetKeys.map(() => []);
  for (let index = 0; index < count; index += 1) {
    const id = headerSetIds[index]!;
    if (!Number.isInteger(id) || id < 0 || id > headerSetCount) throw new MalformedBodyError(`header set ${id} out of range`);
    if (id === 0) headers[index] = NO_HEADERS;
    else rowsOfSet[id - 1]!.push(index);
  }
  // What the headers add to the records, counted against the expansion cap below.
  let headerBytes = 0;
  headerSetKeys.forEach((keys, set) => {
    const rows = rowsOfSet[set]!;
    const setTopics = pick(topics, rows);
    const columns = keys.map(() => StringColumn.read(reader, rows.length, setTopics, dictionary));
    let keyBytes = 0;
    for (const key of keys) keyBytes += key.length;
    // fromEntries defines own properties, so a header named "__proto__" stays a header.
    const plainKeys = !keys.includes('__proto__');
    let previous: RecordHeaders | undefined;
    for (let position = 0; position < rows.length; position += 1) {
      headerBytes += keyBytes;
      let sameAsPrevious = previous !== undefined;
      for (let keyIndex = 0; keyIndex < keys.length; keyIndex += 1) {
        const value = columns[keyIndex]![position]!;
        headerBytes += value.length;
        if (sameAsPrevious && value !== columns[keyIndex]![position - 1]) sameAsPrevious = false;
      }
      // A container's records mostly carry the same headers (its MQTT topic): one frozen object
      // for a run of equal rows, as the gateway hands them to the log.
      if (!sameAsPrevious) {
        if (plainKeys) {
          const record: Record<string, string> = {};
          for (let keyIndex = 0; keyIndex < keys.length; keyIndex += 1) record[keys[keyIndex]!] = columns[keyIndex]![position]!;
          previous = Object.freeze(record);
        } else {
          previous = Object.freeze(Object.fromEntries(keys.map((key, keyIndex) => [key, columns[keyIndex]![position]!])));
        }
      }
      headers[rows[position]!] = previous!;
    }
  });

  const payloadKinds = readInts(reader, count);
  const shapeCount = reader.count(1, 'shape');
  const shapeKeys: string[][] = [];
  for (let shape = 0; shape < shapeCount; shape += 1) {
    const keyCount = reader.count(1, 'shape key');
    shapeKeys.push(Array.from({ length: keyCount }, () => ref('shape key')));
  }
  const payloads = new Array<Buffer>(count);
  const rowsOfShape: number[][] = shapeKeys.map(() => []);
  const blobRows: number[] = [];
  for (let index = 0; index < count; index += 1) {
    const kind = payloadKinds[index]!;
    if (!Number.isInteger(kind) || kind < 0 || kind > shapeCount) throw new MalformedBodyError(`payload shape ${kind} out of range`);
    if (kind === 0) blobRows.push(index);
    else rowsOfShape[kind - 1]!.push(index);
  }
  // Columns can expand (one long string referenced by every record): cap what decoding builds.
  let expandedBytes = 0;
  const expand = (bytes: number) => {
    expandedBytes += bytes;
    if (expandedBytes > limits.maxDecompressedBytes) {
      refuse('too-large', `batch expands to more than ${limits.maxDecompressedBytes} bytes of records`);
    }
  };
  expand(headerBytes);
  shapeKeys.forEach((keys, shape) => {
    const rows = rowsOfShape[shape]!;
    const shapeTopics = pick(topics, rows);
    const shapeTimes = pick(eventTimes, rows);
    const columns = keys.map(() => ValueColumn.read(reader, rows.length, shapeTimes, shapeTopics, dictionary));
    const values = new Array<Scalar>(keys.length);
    rows.forEach((rowIndex, position) => {
      for (let key = 0; key < keys.length; key += 1) values[key] = columns[key]![position]!;
      const payload = Buffer.from(buildFlatJson(keys, values), 'utf8');
      expand(payload.length);
      payloads[rowIndex] = payload;
    });
  });
  const blobLengths = readInts(reader, blobRows.length);
  // A container's blob payloads lie one after another: each run of them (up to
  // BLOB_RUN_MAX_BYTES) is copied out in one piece and its records get views of that copy.
  // A record kept for long then holds its own container's few payloads alive, never the body;
  // a copy per payload (a byte loop and a buffer each) was the largest single cost of decoding.
  for (let start = 0; start < blobRows.length; ) {
    const runTopic = topics[blobRows[start]!];
    let end = start;
    let runBytes = 0;
    do {
      const length = blobLengths[end]!;
      if (!Number.isSafeInteger(length) || length < 0) throw new MalformedBodyError(`payload length ${length}`);
      runBytes += length;
      end += 1;
    } while (end < blobRows.length && topics[blobRows[end]!] === runTopic && runBytes + blobLengths[end]! <= BLOB_RUN_MAX_BYTES);
    const run = reader.copyOfBytes(runBytes);
    let at = 0;
    for (let position = start; position < end; position += 1) {
      const length = blobLengths[position]!;
      payloads[blobRows[position]!] = run.subarray(at, at + length);
      at += length;
    }
    start = end;
  }
  reader.expectEnd();

  const result = new Array<LogRecord>(count);
  for (let index = 0; index < count; index += 1) {
    const offset = offsets[index]!;
    const eventTimeMs = eventTimes[index]!;
    const ingestTimeMs = ingestTimes[index]!;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new MalformedBodyError(`record ${index}: offset ${offset}`);
    if (!Number.isSafeInteger(eventTimeMs) || !Number.isSafeInteger(ingestTimeMs)) {
      throw new MalformedBodyError(`record ${index}: times must be whole milliseconds`);
    }
    if (origins[index] === '' || streams[index] === '' || topics[index] === '') {
      throw new MalformedBodyError(`record ${index}: empty origin, stream or topic`);
    }
    result[index] = {
      origin: origins[index]!,
      stream: streams[index]!,
      topic: topics[index]!,
      offset,
      eventTimeMs,
      ingestTimeMs,
      headers: headers[index]!,
      payload: payloads[index]!,
    };
  }
  return { sender, records: result };
}
