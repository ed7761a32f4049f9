/**
 * A sending site for ingest tests: an endless, deterministic origin log (record i belongs to
 * topic i % topics at offset floor(i / topics)) posted in batches to a receiving endpoint the
 * way a forwarder does: advance only on an acknowledgement, send the same range again after
 * any failure, and now and then resend a stretch that was already acknowledged.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type { LogRecord } from '../../core/index.js';
import { BATCH_CONTENT_TYPE, Compression, encodeBatch } from '../../edge/link/index.js';
import { header, type ReadMessage } from './kafka-readback.js';

export const ORIGIN = 'AURORA';
const EVENT_TIME_BASE_MS = 1_763_769_600_000;

/** Topic `t`: containers C00.. for all but the last, which is the ship in the `ships` stream. */
export function topicOf(t: number, topics: number): { stream: string; topic: string } {
  return t === topics - 1 ? { stream: 'ships', topic: ORIGIN } : { stream: 'containers', topic: `C${String(t).padStart(2, '0')}` };
}

export function originRecord(i: number, topics: number): LogRecord {
  const { stream, topic } = topicOf(i % topics, topics);
  const offset = Math.floor(i / topics);
  const body = JSON.stringify({ ts: EVENT_TIME_BASE_MS + i * 1000, tempC: -18 + (i % 7) / 4, i });
  return {
    origin: ORIGIN,
    stream,
    topic,
    offset,
    eventTimeMs: EVENT_TIME_BASE_MS + i * 1000,
    ingestTimeMs: EVENT_TIME_BASE_MS + i * 1000 + 250,
    headers: { 'mqtt-topic': `bigblue/${stream}/${topic}/reefer` },
    // 150 bytes, the size the benchmark and the issue talk about.
    payload: Buffer.from(body.padEnd(150, ' ')),
  };
}

/** How many records topic `t` has among the first `limit` of the origin log. */
export function expectedCount(t: number, topics: number, limit: number): number {
  return limit > t ? Math.floor((limit - 1 - t) / topics) + 1 : 0;
}

export interface SenderStats {
  accepted: number;
  stored: number;
  duplicates: number;
  unavailable: number;
  connectionErrors: number;
  unexpected: string[];
}

export interface OriginSenderOptions {
  /** The receiving endpoint's base URL now; undefined while it is down. */
  readonly url: () => string | undefined;
  readonly token: string;
  readonly topics: number;
  readonly batchRecords: number;
  readonly requestTimeoutMs?: number;
  /** Deterministic randomness for the resends. */
  readonly random?: () => number;
  /** The sending site, named in the batch (its token must belong to it); default the origin. */
  readonly sender?: string;
  /**
   * Say where each batch sits in the sender's log (pc-stream, pc-from, pc-to, pc-acked,
   * pc-incarnation), as a forwarder does, so the receiver keeps the sender's cursor.
   */
  readonly placement?: { readonly stream: string; readonly incarnation: string };
}

export class OriginSender {
  /** Everything below is acknowledged. */
  position = 0;
  /** One past the highest record ever sent: a bound on what the receiver can hold. */
  maxSent = 0;
  /** True while a batch is posted and not yet answered. */
  inFlight = false;
  private limit: number | undefined;
  private stopped = false;
  readonly stats: SenderStats = { accepted: 0, stored: 0, duplicates: 0, unavailable: 0, connectionErrors: 0, unexpected: [] };
  readonly statuses: number[] = [];
  private readonly random: () => number;

  constructor(private readonly options: OriginSenderOptions) {
    this.random = options.random ?? Math.random;
  }

  /** Sends until stopped, or until everything below `finishAt()`'s limit is acknowledged. */
  async run(): Promise<void> {
    while (!this.stopped) {
      if (this.limit !== undefined && this.position >= this.limit) return;
      const url = this.options.url();
      if (url === undefined) {
        await sleep(20);
        continue;
      }
      const rewind = this.random() < 0.15 ? 1 + Math.floor(this.random() * 300) : 0;
      const from = Math.max(0, this.position - rewind);
      const to = Math.min(this.limit ?? Number.MAX_SAFE_INTEGER, this.position + this.options.batchRecords);
      const records: LogRecord[] = [];
      for (let i = from; i < to; i++) records.push(originRecord(i, this.options.topics));
      this.maxSent = Math.max(this.maxSent, to);
      let response: Response;
      this.inFlight = true;
      try {
        const placement = this.options.placement;
        response = await fetch(new URL('/v1/batches', url), {
          method: 'POST',
          headers: {
            'content-type': BATCH_CONTENT_TYPE,
            authorization: `Bearer ${this.options.token}`,
            ...(placement === undefined
              ? {}
              : {
                  'pc-stream': placement.stream,
                  'pc-incarnation': placement.incarnation,
                  'pc-from': String(from),
                  'pc-to': String(to),
                  // What the sender had acknowledged that this batch does not resend.
                  'pc-acked': String(Math.min(this.position, from)),
                }),
          },
          body: encodeBatch({ sender: this.options.sender ?? ORIGIN, records }, Compression.None),
          signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 15_000),
        });
      } catch {
        this.inFlight = false;
        this.stats.connectionErrors += 1;
        await sleep(20);
        continue;
      }
      const text = await response.text().catch(() => '');
      this.inFlight = false;
      this.statuses.push(response.status);
      if (response.status === 200) {
        const result = JSON.parse(text) as { stored: number; duplicates: number };
        this.stats.accepted += 1;
        this.stats.stored += result.stored;
        this.stats.duplicates += result.duplicates;
        this.position = to;
      } else if (response.status === 503) {
        this.stats.unavailable += 1;
        await sleep(100);
      } else {
        this.stats.unexpected.push(`HTTP ${response.status}: ${text.slice(0, 300)}`);
        await sleep(100);
      }
    }
  }

  /**
   * Asks the receiver how far this sender's log arrived there (GET /v1/positions), as a
   * forwarder does after a failure; undefined when it does not know.
   */
  async askPosition(url: string): Promise<number | undefined> {
    const placement = this.options.placement;
    if (placement === undefined) return undefined;
    const response = await fetch(new URL(`/v1/positions?incarnation=${encodeURIComponent(placement.incarnation)}`, url), {
      headers: { authorization: `Bearer ${this.options.token}` },
      signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 15_000),
    });
    if (response.status !== 200) throw new Error(`positions: HTTP ${response.status} ${await response.text()}`);
    const { positions } = (await response.json()) as { positions: Record<string, number> };
    return positions[placement.stream];
  }

  /** From now on, send only what was ever sent, and finish once all of it is acknowledged. */
  finishAt(): number {
    this.limit = Math.max(this.maxSent, this.position);
    return this.limit;
  }

  stop(): void {
    this.stopped = true;
  }
}

/**
 * Checks what a read_committed consumer read against the origin log's first `limit` records:
 * each exactly once, in offset order per logical topic, one partition per topic, with its key,
 * identity headers, own headers and payload. Returns the problems found (empty when right).
 */
export function verifyExactlyOnce(read: readonly ReadMessage[], topics: number, limit: number): string[] {
  const problems: string[] = [];
  const byTopic = new Map<string, { offsets: number[]; partitions: Set<number> }>();
  for (const { partition, message } of read) {
    const key = `${header(message, 'pc-stream')}/${header(message, 'pc-topic')}`;
    let entry = byTopic.get(key);
    if (entry === undefined) {
      entry = { offsets: [], partitions: new Set() };
      byTopic.set(key, entry);
    }
    const offset = Number(header(message, 'pc-offset'));
    entry.offsets.push(offset);
    entry.partitions.add(partition);
    const t = [...Array(topics).keys()].find((candidate) => {
      const { stream, topic } = topicOf(candidate, topics);
      return key === `${stream}/${topic}`;
    });
    if (t === undefined) {
      problems.push(`unexpected topic ${key}`);
      continue;
    }
    const expected = originRecord(offset * topics + t, topics);
    const mismatches = [
      ['key', message.key?.toString(), expected.topic],
      ['pc-origin', header(message, 'pc-origin'), ORIGIN],
      ['pc-event-time-ms', header(message, 'pc-event-time-ms'), String(expected.eventTimeMs)],
      ['pc-ingest-time-ms', header(message, 'pc-ingest-time-ms'), String(expected.ingestTimeMs)],
      ['pc-content-type', header(message, 'pc-content-type'), 'application/json'],
      ['pc-schema', header(message, 'pc-schema'), '1'],
      ['h-mqtt-topic', header(message, 'h-mqtt-topic'), expected.headers['mqtt-topic']],
      ['payload', message.value?.toString(), Buffer.from(expected.payload).toString()],
    ].filter(([, actual, wanted]) => actual !== wanted);
    if (mismatches.length > 0 && problems.length < 20) {
      problems.push(`${key}@${offset}: ${mismatches.map(([name, actual, wanted]) => `${name} ${String(actual)} != ${String(wanted)}`).join('; ')}`);
    }
  }
  for (let t = 0; t < topics; t++) {
    const { stream, topic } = topicOf(t, topics);
    const entry = byTopic.get(`${stream}/${topic}`) ?? { offsets: [], partitions: new Set<number>() };
    const count = expectedCount(t, topics, limit);
    const inOrder = entry.offsets.length === count && entry.offsets.every((offset, index) => offset === index);
    if (!inOrder) {
      const seen = new Map<number, number>();
      for (const offset of entry.offsets) seen.set(offset, (seen.get(offset) ?? 0) + 1);
      const duplicated = [...seen].filter(([, n]) => n > 1).map(([offset]) => offset);
      const missing = [...Array(count).keys()].filter((offset) => !seen.has(offset));
      problems.push(
        `${stream}/${topic}: ${entry.offsets.length} records, expected ${count} (0..${count - 1}); ` +
          `duplicated ${JSON.stringify(duplicated.slice(0, 10))}, missing ${JSON.stringify(missing.slice(0, 10))}` +
          (duplicated.length === 0 && missing.length === 0 ? ', out of order' : ''),
      );
    }
    if (entry.partitions.size > 1) problems.push(`${stream}/${topic} is spread over partitions ${[...entry.partitions].join(',')}`);
  }
  return problems;
}
