/**
 * Carries appends from the gateway's thread to the thread that owns the log, and their
 * outcomes back. A batch travels as a few transferred buffers, never as an array of objects:
 *
 * - payloads copied once into one buffer (a payload is a view into a 64 KiB socket read, and
 *   cloning views would copy the whole read once per message), with their ends;
 * - per record, a destination number, and its event time; a destination (stream, topic and
 *   the `mqtt-topic` header) crosses once, in the first batch that uses it, and the log's
 *   side keeps it, so a steady stream of readings moves no strings at all and each decoded
 *   record shares one frozen headers object per destination;
 * - records whose headers are anything else (alerts) cross whole, beside the numbers.
 */
import type { MessagePort } from 'node:worker_threads';
import { NO_HEADERS, PortcallError, RecordsRefusedError, StoreUnavailableError, type NewRecord, type RecordAppender } from '../../core/index.js';
import type { DurableAppend } from './commit-batcher.js';

/** In `destinations`: a record carried whole in `inline` instead. */
const INLINE = 0xffffffff;
/** Destinations remembered on both sides before both start afresh. */
const DEFAULT_MAX_DESTINATIONS = 100_000;

export interface EncodedBatch {
  /** Both sides forget their destinations before this batch. */
  readonly reset: boolean;
  /** Destinations first used in this batch: numbers, and their stream, topic and `mqtt-topic` (or null). */
  readonly newIds: number[];
  readonly newStreams: string[];
  readonly newTopics: string[];
  readonly newMqttTopics: (string | null)[];
  /** Per record, its destination number, or INLINE. */
  readonly destinations: Uint32Array;
  /** Records carried whole: index in the batch, stream, topic and headers as JSON (null if none). */
  readonly inline: { readonly index: number; readonly stream: string; readonly topic: string; readonly headers: string | null }[];
  /** NaN where the record has no event time of its own. */
  readonly eventTimesMs: Float64Array;
  readonly payloadEnds: Uint32Array;
  readonly payloads: ArrayBuffer;
}

interface KnownDestination {
  readonly id: number;
  readonly stream: string;
  readonly topic: string;
}

/** The gateway's side: numbers destinations and packs each batch into buffers. */
export class BatchEncoder {
  /** By the record's headers object: the intake shares one frozen object per MQTT topic. */
  private known = new Map<object, KnownDestination>();
  private nextId = 0;

  constructor(private readonly maxDestinations = DEFAULT_MAX_DESTINATIONS) {}

  encode(records: readonly NewRecord[]): EncodedBatch {
    // Bounded: past the limit both sides forget every destination, from this batch on (a
    // batch adds at most its own records to the table).
    const reset = this.known.size >= this.maxDestinations;
    if (reset) {
      this.known = new Map();
      this.nextId = 0;
    }
    let total = 0;
    for (let i = 0; i < records.length; i += 1) total += records[i]!.payload.byteLength;
    const payloads = new ArrayBuffer(total);
    const bytes = new Uint8Array(payloads);
    const batch: EncodedBatch = {
      reset,
      newIds: [],
      newStreams: [],
      newTopics: [],
      newMqttTopics: [],
      destinations: new Uint32Array(records.length),
      inline: [],
      eventTimesMs: new Float64Array(records.length),
      payloadEnds: new Uint32Array(records.length),
      payloads,
    };
    let at = 0;
    for (let index = 0; index < records.length; index += 1) {
      const record = records[index]!;
      batch.destinations[index] = this.destinationOf(record, batch);
      if (batch.destinations[index] === INLINE) {
        const headers = record.headers;
        const hasHeaders = headers !== undefined && Object.keys(headers).length > 0;
        batch.inline.push({ index, stream: record.stream, topic: record.topic, headers: hasHeaders ? JSON.stringify(headers) : null });
      }
      batch.eventTimesMs[index] = record.eventTimeMs ?? Number.NaN;
      const payload = record.payload;
      bytes.set(payload, at);
      at += payload.byteLength;
      batch.payloadEnds[index] = at;
    }
    return batch;
  }

  /** Buffers to transfer rather than copy. */
  static transferList(batch: EncodedBatch): ArrayBuffer[] {
    return [batch.destinations.buffer as ArrayBuffer, batch.eventTimesMs.buffer as ArrayBuffer, batch.payloadEnds.buffer as ArrayBuffer, batch.payloads];
  }

  private destinationOf(record: NewRecord, batch: EncodedBatch): number {
    const headers = record.headers;
    // Only the intake's shared, frozen headers (one per MQTT topic) are worth numbering.
    if (headers === undefined || !Object.isFrozen(headers)) return INLINE;
    const known = this.known.get(headers);
    if (known !== undefined) return known.stream === record.stream && known.topic === record.topic ? known.id : INLINE;
    let mqttTopic: string | null = null;
    for (const key in headers) {
      if (key !== 'mqtt-topic') return INLINE;
      mqttTopic = headers[key]!;
    }
    const id = this.nextId;
    this.nextId += 1;
    this.known.set(headers, { id, stream: record.stream, topic: record.topic });
    batch.newIds.push(id);
    batch.newStreams.push(record.stream);
    batch.newTopics.push(record.topic);
    batch.newMqttTopics.push(mqttTopic);
    return id;
  }
}

/** The log thread's side: remembers destinations and turns each batch back into records. */
export class BatchDecoder {
  private streams: string[] = [];
  private topics: string[] = [];
  private headers: Readonly<Record<string, string>>[] = [];

  decode(batch: EncodedBatch): NewRecord[] {
    if (batch.reset) {
      this.streams = [];
      this.topics = [];
      this.headers = [];
    }
    for (let i = 0; i < batch.newIds.length; i += 1) {
      const id = batch.newIds[i]!;
      const mqttTopic = batch.newMqttTopics[i];
      this.streams[id] = batch.newStreams[i]!;
      this.topics[id] = batch.newTopics[i]!;
      this.headers[id] = mqttTopic === null || mqttTopic === undefined ? NO_HEADERS : Object.freeze({ 'mqtt-topic': mqttTopic });
    }
    const count = batch.destinations.length;
    const records = new Array<NewRecord>(count);
    let inlineAt = 0;
    let start = 0;
    for (let index = 0; index < count; index += 1) {
      const end = batch.payloadEnds[index]!;
      const id = batch.destinations[index]!;
      const eventTimeMs = batch.eventTimesMs[index]!;
      let stream: string;
      let topic: string;
      let headers: Readonly<Record<string, string>>;
      if (id === INLINE) {
        const inline = batch.inline[inlineAt]!;
        inlineAt += 1;
        stream = inline.stream;
        topic = inline.topic;
        headers = inline.headers === null ? {} : (JSON.parse(inline.headers) as Record<string, string>);
      } else {
        stream = this.streams[id]!;
        topic = this.topics[id]!;
        headers = this.headers[id]!;
      }
      records[index] = Number.isNaN(eventTimeMs)
        ? { stream, topic, headers, payload: Buffer.from(batch.payloads, start, end - start) }
        : { stream, topic, eventTimeMs, headers, payload: Buffer.from(batch.payloads, start, end - start) };
      start = end;
    }
    return records;
  }
}

/** One self-contained batch (a fresh encoder): for tests and one-off use. */
export function encodeBatch(records: readonly NewRecord[]): EncodedBatch {
  return new BatchEncoder().encode(records);
}

/** Decodes a self-contained batch from `encodeBatch`. */
export function decodeBatch(batch: EncodedBatch): NewRecord[] {
  return new BatchDecoder().decode(batch);
}

export type ChannelRequest = { readonly type: 'append'; readonly id: number; readonly batch: EncodedBatch };
export type ChannelReply =
  | { readonly type: 'appended'; readonly id: number }
  | { readonly type: 'append-failed'; readonly id: number; readonly message: string; readonly retriable: boolean }
  /** Some records refused (index, code, message), the rest durable. */
  | { readonly type: 'append-refused'; readonly id: number; readonly stored: number; readonly refused: readonly { readonly index: number; readonly code: string; readonly message: string }[] };

/**
 * The gateway thread's end of the log: posts each batch to the log's thread and resolves
 * when that thread reports it durable. Only what the gateway needs of the result (durable or
 * not) comes back; the assigned offsets stay with the log.
 */
export class ChannelAppender implements DurableAppend {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private readonly encoder = new BatchEncoder();

  constructor(private readonly port: MessagePort) {}

  /** Called with each reply from the log's thread. */
  settle(reply: ChannelReply): void {
    const waiter = this.waiting.get(reply.id);
    if (waiter === undefined) return;
    this.waiting.delete(reply.id);
    if (reply.type === 'appended') waiter.resolve();
    else if (reply.type === 'append-refused') {
      waiter.reject(new RecordsRefusedError(new Map(reply.refused.map(({ index, code, message }) => [index, new PortcallError(code, message)])), reply.stored));
    } else waiter.reject(new StoreUnavailableError(reply.message));
  }

  /** Fails everything still waiting (the log's thread went away). */
  failAll(message: string): void {
    for (const waiter of this.waiting.values()) waiter.reject(new StoreUnavailableError(message));
    this.waiting.clear();
  }

  append(records: readonly NewRecord[]): Promise<void> {
    const id = this.nextId;
    this.nextId += 1;
    const batch = this.encoder.encode(records);
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.port.postMessage({ type: 'append', id, batch } satisfies ChannelRequest, BatchEncoder.transferList(batch));
    });
  }
}

/** The log thread's side of one channel: appends each batch and replies with the outcome. */
export class AppendServer {
  private readonly decoder = new BatchDecoder();

  constructor(
    private readonly appender: RecordAppender,
    private readonly reply: (message: ChannelReply) => void,
  ) {}

  serve(request: ChannelRequest): void {
    // Decoded in arrival order, so destinations are known before the batches that use them.
    const records = this.decoder.decode(request.batch);
    this.appender.append(records).then(
      () => this.reply({ type: 'appended', id: request.id }),
      (error: unknown) =>
        error instanceof RecordsRefusedError
          ? this.reply({
              type: 'append-refused',
              id: request.id,
              stored: error.stored,
              refused: [...error.refused].map(([index, refusal]) => ({ index, code: refusal.code, message: refusal.message })),
            })
          : this.reply({
          type: 'append-failed',
          id: request.id,
          message: (error as Error).message ?? String(error),
          retriable: (error as { retriable?: boolean }).retriable ?? true,
        }),
    );
  }
}
