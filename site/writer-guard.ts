/**
 * The write path of a site, guarded so that a site appends only to topics it writes
 * (core/writership.ts): the gateway appends through it, and handoffs are made here.
 *
 * A record for a topic another site writes is refused: it is left out of the append, counted
 * in `portcall_writer_refused_records_total` and logged with the topic's writer, and the call
 * rejects with RecordsRefusedError naming each refused record (a NotWriterError) once the rest
 * of the batch, other devices' readings, is durable. The gateway then acknowledges the rest and
 * not the refused ones: an MQTT 3.1.1 device cannot be told no, so its connection is closed
 * and the message stays with the device, which sends it again (stored once this site becomes
 * the writer). A topic never seen here may be written here: it is created on first sight.
 *
 * The writer of each topic is read from its last record and cached by the topic's next offset,
 * so it is read again only after the topic moved (a replicated handoff arrived). A handoff
 * marks the topic as handed over synchronously, before anything else can be appended, and
 * the check before an append runs synchronously with the call that enqueues it, so no reading
 * can land after the handoff record.
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { HANDOFF_HEADER, NotWriterError, writerAfter } from '../core/writership.js';
import { RecordsRefusedError, type LogRecord, type NewRecord, type RecordAppender } from '../core/index.js';
import type { SqliteLog } from '../edge/log/index.js';

type GuardedLog = Pick<SqliteLog, 'append' | 'latest' | 'topicStats'>;

const MISS = Symbol('miss');

/** A topic of one append call: its joined key, its writer as known, and whether this site may write it. */
interface CallTopic {
  readonly key: string;
  writer: string | undefined;
  allowed: boolean;
}

export class WriterGuard implements RecordAppender {
  private readonly writers = new Map<string, { nextOffset: number; writer: string | undefined }>();
  /** Topics this site handed over: to whom, and the next offset after the handoff record (Infinity while it commits). */
  private readonly handedOver = new Map<string, { to: string; after: number }>();
  private readonly refused: Counter;
  private readonly loggedAt = new Map<string, number>();
  private readonly handoffOnly: ReadonlySet<string>;

  constructor(
    private readonly log: GuardedLog,
    private readonly site: string,
    private readonly logger?: Logger,
    registry?: Registry,
    /** Streams whose topics this site writes only once handed them: an unseen topic is refused, not created. */
    handoffOnlyStreams: readonly string[] = [],
  ) {
    this.handoffOnly = new Set(handoffOnlyStreams);
    this.refused = new Counter({
      name: 'portcall_writer_refused_records_total',
      help: 'Records refused because another site writes their topic (one writer per topic), by stream',
      labelNames: ['stream'],
      registers: registry === undefined ? [] : [registry],
    });
  }

  /** The site that writes the topic now, as this site knows it (undefined: nobody yet). */
  async writerOf(stream: string, topic: string): Promise<string | undefined> {
    const key = `${stream}\u0000${topic}`;
    const stats = this.log.topicStats(stream, topic);
    const handed = this.handedOver.get(key);
    if (handed !== undefined) {
      // Until the topic moves past the handoff (the next writer's records, or a handoff back).
      if ((stats?.nextOffset ?? 0) <= handed.after) return handed.to;
      this.handedOver.delete(key);
    }
    if (stats === undefined || stats.nextOffset === 0) return undefined;
    const cached = this.writers.get(key);
    if (cached !== undefined && cached.nextOffset === stats.nextOffset) return cached.writer;
    const last = await this.log.latest(stream, topic);
    // Retention removed every record: whoever wrote last is unknown here; this site does not claim it.
    const writer = last === undefined ? undefined : writerAfter(last);
    this.writers.set(key, { nextOffset: last === undefined ? stats.nextOffset : last.offset + 1, writer });
    return writer;
  }

  private mayWrite(key: string, writer: string | undefined, stream: string): boolean {
    return !this.handedOver.has(key) && (writer === this.site || (writer === undefined && !this.handoffOnly.has(stream)));
  }

  /** The writer as cached, without reading the log; `miss` when the topic moved since. */
  private cachedWriter(key: string, stream: string, topic: string): string | undefined | typeof MISS {
    const stats = this.log.topicStats(stream, topic);
    if (stats === undefined || stats.nextOffset === 0) return this.handedOver.has(key) ? MISS : undefined;
    const cached = this.writers.get(key);
    return cached !== undefined && cached.nextOffset === stats.nextOffset && !this.handedOver.has(key) ? cached.writer : MISS;
  }

  async append(records: readonly NewRecord[]): Promise<LogRecord[]> {
    // Each distinct topic of the call is looked at once. Keyed by stream, then topic, rather
    // than by a joined key per record: a batch from the gateway shares one string per
    // destination, whose hash V8 keeps, so a record costs two look-ups and no allocation.
    const topics = new Map<string, Map<string, CallTopic>>();
    const misses: Promise<void>[] = [];
    for (const record of records) {
      let byTopic = topics.get(record.stream);
      if (byTopic === undefined) topics.set(record.stream, (byTopic = new Map()));
      if (byTopic.has(record.topic)) continue;
      const key = `${record.stream}\u0000${record.topic}`;
      const cached = this.cachedWriter(key, record.stream, record.topic);
      const entry: CallTopic = { key, writer: cached === MISS ? undefined : cached, allowed: false };
      byTopic.set(record.topic, entry);
      if (cached === MISS) {
        misses.push(
          this.writerOf(record.stream, record.topic).then((writer) => {
            entry.writer = writer;
          }),
        );
      }
    }
    // Only topics that moved since this site last looked (a replicated record, a handoff) are read.
    if (misses.length > 0) await Promise.all(misses);
    // From here to the log's append nothing awaits, so a handoff cannot slip in between.
    for (const [stream, byTopic] of topics) for (const entry of byTopic.values()) entry.allowed = this.mayWrite(entry.key, entry.writer, stream);
    const kept: NewRecord[] = [];
    const refused = new Map<number, NotWriterError>();
    for (let index = 0; index < records.length; index++) {
      const record = records[index]!;
      const entry = topics.get(record.stream)!.get(record.topic)!;
      if (entry.allowed) {
        kept.push(record);
        continue;
      }
      this.refused.inc({ stream: record.stream });
      const writer = this.handedOver.get(entry.key)?.to ?? entry.writer ?? 'nobody yet (it must be handed to this site first)';
      const error = new NotWriterError(record.stream, record.topic, this.site, writer);
      refused.set(index, error);
      const now = Date.now();
      if (now - (this.loggedAt.get(entry.key) ?? 0) > 10_000) {
        this.loggedAt.set(entry.key, now);
        this.logger?.error({ stream: record.stream, topic: record.topic, writer }, error.message);
      }
    }
    const stored = kept.length === 0 ? [] : await this.log.append(kept);
    // This site wrote them as the writer: remember, so the next append reads nothing.
    for (const record of stored) {
      const key = topics.get(record.stream)?.get(record.topic)?.key ?? `${record.stream}\u0000${record.topic}`;
      const known = this.writers.get(key);
      if (known === undefined) this.writers.set(key, { nextOffset: record.offset + 1, writer: this.site });
      else {
        known.nextOffset = record.offset + 1;
        known.writer = this.site;
      }
    }
    // The rest is durable; the refused ones must not be acknowledged.
    if (refused.size > 0) throw new RecordsRefusedError(refused, stored.length);
    return stored;
  }

  /**
   * Hands the topic over to `to`: appends the handoff record (resolves once it is durable),
   * with `eventTimeMs` as its event time if given (the topic's own clock), else now.
   * Refused with NotWriterError when this site does not write the topic.
   */
  async handoff(stream: string, topic: string, to: string, eventTimeMs?: number): Promise<LogRecord> {
    const key = `${stream}\u0000${topic}`;
    const writer = await this.writerOf(stream, topic);
    if (!this.mayWrite(key, writer, stream) || writer === undefined) {
      throw new NotWriterError(stream, topic, this.site, writer ?? 'nobody yet');
    }
    const appending = this.log.append([
      {
        stream,
        topic,
        ...(eventTimeMs === undefined ? {} : { eventTimeMs }),
        headers: { [HANDOFF_HEADER]: to },
        payload: Buffer.from(JSON.stringify({ handoff: { from: this.site, to } })),
      },
    ]);
    const handed = { to, after: Number.POSITIVE_INFINITY };
    this.handedOver.set(key, handed);
    try {
      const [record] = await appending;
      handed.after = record!.offset + 1;
      return record!;
    } catch (error) {
      this.handedOver.delete(key);
      throw error;
    }
  }
}
