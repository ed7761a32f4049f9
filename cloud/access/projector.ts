/**
 * The projector: follows `access/changes` and `manifests/custody` from offset 0 and folds
 * every signed, well-formed record into an AccessState. It reads through the TopicReader
 * contract (so it runs on the embedded log and on Kafka alike), is woken by `onDurable` when
 * the site's log offers it, and polls otherwise (records replicated from headquarters).
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { PortcallError, type LogRecord, type StreamSource, type TopicReader } from '../../core/index.js';
import {
  ACCESS_STREAM,
  ACCESS_TOPIC,
  CUSTODY_STREAM,
  CUSTODY_TOPIC,
  accessRecordSchema,
  custodyRecordSchema,
  verifyRecord,
} from './records.js';
import { AccessState } from './state.js';

export interface AccessProjectorOptions {
  readonly reader: TopicReader;
  /** Wakes the projector when records are made durable (the embedded log). */
  readonly source?: Pick<StreamSource, 'onDurable'>;
  readonly key: Uint8Array;
  readonly pollIntervalMs?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

const PAGE = 1000;

export class AccessProjector {
  state = new AccessState();
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly ignored: Counter<'reason'>;

  constructor(private readonly options: AccessProjectorOptions) {
    this.ignored = new Counter({
      name: 'portcall_access_records_ignored_total',
      help: 'Records of the access topics ignored by the projector (unsigned, bad signature, malformed)',
      labelNames: ['reason'] as const,
      registers: options.registry === undefined ? [] : [options.registry],
    });
  }

  /**
   * Reads everything held, then follows new records. When the log cannot be read yet (a Kafka
   * site's index catching up), it starts with what it has (nothing: every token unknown, every
   * read denied) and keeps trying.
   */
  async start(): Promise<void> {
    try {
      await this.catchUp();
    } catch (error) {
      if (!(error instanceof PortcallError && error.retriable)) throw error;
      this.options.logger?.warn({ err: error.message }, 'access records cannot be read yet; every read is denied until they are');
    }
    this.unsubscribe = this.options.source?.onDurable((stream) => {
      if (stream === ACCESS_STREAM || stream === CUSTODY_STREAM) void this.catchUp().catch(() => undefined);
    });
    const poll = () => {
      this.timer = setTimeout(() => {
        void this.catchUp()
          .catch((error: unknown) => this.options.logger?.warn({ err: (error as Error).message }, 'access projector could not read'))
          .finally(() => {
            if (this.timer !== undefined) poll();
          });
      }, this.options.pollIntervalMs ?? 1000);
      this.timer.unref();
    };
    poll();
  }

  stop(): void {
    this.unsubscribe?.();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Applies everything held now; concurrent calls share one pass and one more after it. */
  catchUp(): Promise<void> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.drain();
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /**
   * Reads what is new in both topics, then applies it all in one synchronous step, so no
   * request ever sees half a catch-up (a token issued but not yet its later revocation).
   */
  private async drain(): Promise<void> {
    const access = await this.readNew(ACCESS_STREAM, ACCESS_TOPIC, this.state.accessOffset);
    const custody = await this.readNew(CUSTODY_STREAM, CUSTODY_TOPIC, this.state.custodyOffset);
    for (const record of access) this.apply(record);
    for (const record of custody) this.apply(record);
    if (access.length > 0) this.state.accessOffset = access.at(-1)!.offset + 1;
    if (custody.length > 0) this.state.custodyOffset = custody.at(-1)!.offset + 1;
  }

  private async readNew(stream: string, topic: string, fromOffset: number): Promise<LogRecord[]> {
    const records: LogRecord[] = [];
    let from = fromOffset;
    for (let pages = 0; pages < 1_000_000; pages += 1) {
      const page = await this.options.reader.readTopic(stream, topic, from, { maxRecords: PAGE });
      if (page.length === 0) break;
      records.push(...page);
      from = page.at(-1)!.offset + 1;
    }
    return records;
  }

  private apply(record: LogRecord): void {
    applyRecord(this.state, this.options.key, record, (reason) => {
      this.state.ignored += 1;
      this.ignored.inc({ reason });
      this.options.logger?.warn({ stream: record.stream, topic: record.topic, offset: record.offset, origin: record.origin, reason }, 'access record ignored');
    });
  }
}

/** Folds one stored record into a state: the projector's step, exported for replay checks. */
export function applyRecord(state: AccessState, key: Uint8Array, record: LogRecord, ignore: (reason: string) => void = () => undefined): void {
  if (!verifyRecord(key, record)) return ignore('bad-signature');
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(record.payload).toString('utf8'));
  } catch {
    return ignore('not-json');
  }
  if (record.stream === ACCESS_STREAM && record.topic === ACCESS_TOPIC) {
    const parsed = accessRecordSchema.safeParse(json);
    if (!parsed.success) return ignore('malformed');
    state.applyAccess(parsed.data);
  } else if (record.stream === CUSTODY_STREAM && record.topic === CUSTODY_TOPIC) {
    const parsed = custodyRecordSchema.safeParse(json);
    if (!parsed.success) return ignore('malformed');
    state.applyCustody(parsed.data);
  } else {
    ignore('wrong-topic');
  }
}
