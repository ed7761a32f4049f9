/**
 * Carries appends from the gateway's thread to the thread that owns the log, and their
 * outcomes back. A batch travels as one transferred buffer of payloads plus small arrays,
 * never as an array of Buffers: a payload is a view into a 64 KiB socket read, and cloning
 * views would copy the whole read once per message.
 */
import type { MessagePort } from 'node:worker_threads';
import { StoreUnavailableError, type NewRecord, type RecordAppender } from '../../core/index.js';
import type { DurableAppend } from './commit-batcher.js';

export interface EncodedBatch {
  readonly streams: string[];
  readonly topics: string[];
  readonly mqttTopics: (string | null)[];
  /** NaN where the record has no event time of its own. */
  readonly eventTimesMs: Float64Array;
  /** Extra headers beyond `mqtt-topic` (alerts), JSON, or null. */
  readonly otherHeaders: (string | null)[];
  readonly payloadEnds: Uint32Array;
  readonly payloads: ArrayBuffer;
}

export function encodeBatch(records: readonly NewRecord[]): EncodedBatch {
  let total = 0;
  for (const record of records) total += record.payload.byteLength;
  const payloads = new ArrayBuffer(total);
  const bytes = new Uint8Array(payloads);
  const batch: EncodedBatch = {
    streams: new Array<string>(records.length),
    topics: new Array<string>(records.length),
    mqttTopics: new Array<string | null>(records.length),
    eventTimesMs: new Float64Array(records.length),
    otherHeaders: new Array<string | null>(records.length),
    payloadEnds: new Uint32Array(records.length),
    payloads,
  };
  let at = 0;
  records.forEach((record, index) => {
    batch.streams[index] = record.stream;
    batch.topics[index] = record.topic;
    const { 'mqtt-topic': mqttTopic, ...others } = record.headers ?? {};
    batch.mqttTopics[index] = mqttTopic ?? null;
    batch.otherHeaders[index] = Object.keys(others).length === 0 ? null : JSON.stringify(others);
    batch.eventTimesMs[index] = record.eventTimeMs ?? Number.NaN;
    bytes.set(record.payload, at);
    at += record.payload.byteLength;
    batch.payloadEnds[index] = at;
  });
  return batch;
}

export function decodeBatch(batch: EncodedBatch): NewRecord[] {
  const records = new Array<NewRecord>(batch.streams.length);
  let start = 0;
  for (let index = 0; index < records.length; index += 1) {
    const end = batch.payloadEnds[index]!;
    const mqttTopic = batch.mqttTopics[index];
    const others = batch.otherHeaders[index];
    const headers: Record<string, string> = others === null || others === undefined ? {} : (JSON.parse(others) as Record<string, string>);
    if (mqttTopic !== null && mqttTopic !== undefined) headers['mqtt-topic'] = mqttTopic;
    const eventTimeMs = batch.eventTimesMs[index]!;
    records[index] = {
      stream: batch.streams[index]!,
      topic: batch.topics[index]!,
      ...(Number.isNaN(eventTimeMs) ? {} : { eventTimeMs }),
      headers,
      payload: Buffer.from(batch.payloads, start, end - start),
    };
    start = end;
  }
  return records;
}

export type ChannelRequest = { readonly type: 'append'; readonly id: number; readonly batch: EncodedBatch };
export type ChannelReply =
  | { readonly type: 'appended'; readonly id: number }
  | { readonly type: 'append-failed'; readonly id: number; readonly message: string; readonly retriable: boolean };

/**
 * The gateway thread's end of the log: posts each batch to the log's thread and resolves
 * when that thread reports it durable. Only what the gateway needs of the result (durable or
 * not) comes back; the assigned offsets stay with the log.
 */
export class ChannelAppender implements DurableAppend {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

  constructor(private readonly port: MessagePort) {}

  /** Called with each reply from the log's thread. */
  settle(reply: ChannelReply): void {
    const waiter = this.waiting.get(reply.id);
    if (waiter === undefined) return;
    this.waiting.delete(reply.id);
    if (reply.type === 'appended') waiter.resolve();
    else waiter.reject(new StoreUnavailableError(reply.message));
  }

  /** Fails everything still waiting (the log's thread went away). */
  failAll(message: string): void {
    for (const waiter of this.waiting.values()) waiter.reject(new StoreUnavailableError(message));
    this.waiting.clear();
  }

  append(records: readonly NewRecord[]): Promise<void> {
    const id = this.nextId;
    this.nextId += 1;
    const batch = encodeBatch(records);
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.port.postMessage({ type: 'append', id, batch } satisfies ChannelRequest, [batch.payloads]);
    });
  }
}

/** The log thread's side: appends each batch and replies with the outcome. */
export function serveAppends(request: ChannelRequest, appender: RecordAppender, reply: (message: ChannelReply) => void): void {
  appender.append(decodeBatch(request.batch)).then(
    () => reply({ type: 'appended', id: request.id }),
    (error: unknown) =>
      reply({
        type: 'append-failed',
        id: request.id,
        message: (error as Error).message ?? String(error),
        retriable: (error as { retriable?: boolean }).retriable ?? true,
      }),
  );
}
