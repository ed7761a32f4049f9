/**
 * The filter stage of per-customer Kafka topics (docs/ACCESS.md, DESIGN.md decisions 4, 5
 * and 8): reads the site's streams in order from durable positions, passes each record
 * through the customer's `RecordFilter` and hands what it admits (possibly projected) to a
 * sink that writes it to `customer.<id>` and moves the positions in one transaction.
 *
 * Invariants, and why they hold:
 * 1. Exactly once in the customer topic. A round reads a page per (customer, stream) after
 *    the positions last committed, and commits its admitted records WITH the positions after
 *    the page. After any failure the stage forgets what it believed and starts from the
 *    positions the sink reads back after re-registering (the sink's open()), which describe
 *    exactly what the customer topics hold.
 * 2. The policy decides, at the moment the record is read: a revoked token, an ended or
 *    withdrawn custody window stop the next record. A record the filter refuses is passed
 *    over (counted as filtered) and never reconsidered: widening custody later does not
 *    re-emit what the stage already passed (docs/ACCESS.md says so, and what to do).
 * 3. A customer whose filter is not available (its token not, or no longer, accepted) is
 *    held, not skipped: its positions stay, nothing of it is written, /healthz says so. Held
 *    customers do not hold back the others.
 * 4. Bounded: at most `maxRecordsPerRead` records per (customer, stream) per transaction.
 *    Customers at the same position of a stream share one read of the page.
 */
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AccessMark, HealthReport, HealthSource, HealthStatus, LogRecord, RecordFilter, StreamPage, StreamSource, Widening } from '../../core/index.js';

/** Where admitted records go, with the positions, transactionally (cloud/kafka-log implements it). */
export interface CustomerTopicSink {
  /**
   * Registers the writer (settling anything a previous holder left open) and reads back the
   * committed positions, by `positionKey`. Called at start and after every failed commit.
   */
  open(): Promise<Map<string, number>>;
  /** One transaction: the records to their customers' topics, and the new positions. */
  commit(records: readonly { customer: string; record: LogRecord }[], positions: ReadonlyMap<string, number>): Promise<void>;
  close(): Promise<void>;
}

export interface CustomerTopicSpec {
  /** Organisation id; the topic is named after it (`customer.<id>`). */
  readonly id: string;
  readonly kafkaTopic: string;
  readonly streams: readonly string[];
  /** The customer's filter now, or undefined while its token is not accepted here (held). */
  readonly filter: () => RecordFilter | undefined;
  /**
   * Where the access records the policy has folded stand, and what changes since a mark may
   * have widened for this customer (core/access.ts `LinkFilter`): the stage reports widenings
   * (records it passed over are not re-emitted), and keeps the mark with its positions.
   */
  readonly widening?: { mark(): AccessMark; widenedSince(mark: AccessMark): Promise<Widening> };
}

export interface CustomerTopicStageOptions {
  readonly source: StreamSource;
  readonly sink: CustomerTopicSink;
  readonly customers: readonly CustomerTopicSpec[];
  /** Records of the stream after a position (lag); may answer undefined while counting. */
  readonly recordsAfter?: (stream: string, afterPosition: number) => number | undefined;
  readonly maxRecordsPerRead?: number;
  /** Without a durable notification, the stage looks again this often (and retries a held customer). */
  readonly pollIntervalMs?: number;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

/**
 * Key of one position: customer NUL Kafka topic NUL stream. The topic is part of it, so a
 * customer given a new topic name starts that topic from the beginning of the streams (how an
 * operator rebuilds a customer's topic under the current rules: docs/ACCESS.md).
 */
export function positionKey(customer: string, kafkaTopic: string, stream: string): string {
  return `${customer}\u0000${kafkaTopic}\u0000${stream}`;
}

const DEFAULT_MAX_RECORDS_PER_READ = 10_000;
/** Pseudo-stream names under which a customer's access mark is kept with its positions (not stream names: those are lower case). */
const MARK_KEYS = ['@access', '@custody'] as const;

function sameMark(a: AccessMark, b: AccessMark): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

export class CustomerTopicStage implements HealthSource {
  private positions = new Map<string, number>();
  private running: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  private woken = false;
  private unsubscribe: (() => void) | undefined;
  private readonly held = new Set<string>();
  private lastError: string | undefined;
  private state: { status: HealthStatus; reason: string | undefined; sinceMs: number } = { status: 'ok', reason: undefined, sinceMs: Date.now() };
  private readonly counts = new Map<string, { written: number; filtered: number }>();
  private lastCommitAtMs: number | undefined;
  private readonly written: Counter<'customer'>;
  private readonly filtered: Counter<'customer'>;
  private readonly transactions: Counter<'outcome'>;
  private readonly widenings: Counter<'customer'>;
  private lastWidening: { customer: string; topics: string[] | 'all'; atMs: number } | undefined;
  private readonly maxRecordsPerRead: number;

  constructor(private readonly options: CustomerTopicStageOptions) {
    this.maxRecordsPerRead = options.maxRecordsPerRead ?? DEFAULT_MAX_RECORDS_PER_READ;
    const registers = options.registry === undefined ? [] : [options.registry];
    this.written = new Counter({
      name: 'portcall_customer_topic_records_written_total',
      help: 'Records written to a customer Kafka topic (committed), by customer',
      labelNames: ['customer'] as const,
      registers,
    });
    this.filtered = new Counter({
      name: 'portcall_customer_topic_records_filtered_total',
      help: 'Records of the streams a customer topic reads that the customer may not see (passed over, committed), by customer',
      labelNames: ['customer'] as const,
      registers,
    });
    this.transactions = new Counter({
      name: 'portcall_customer_topic_transactions_total',
      help: 'Transactions of the customer topic stage, by outcome (committed, failed)',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.widenings = new Counter({
      name: 'portcall_customer_topic_widenings_total',
      help: 'Access changes that may have widened what a customer sees (custody added, rights given) after the stage read records; those records are not re-emitted',
      labelNames: ['customer'] as const,
      registers,
    });
    // The gauges' collect() has the gauge as `this`; these read the stage.
    const lagNow = () => this.lag();
    const heldNow = () => this.options.customers.map(({ id }) => ({ id, held: this.held.has(id) }));
    new Gauge({
      name: 'portcall_customer_topic_lag_records',
      help: "Records of a stream after a customer topic's position (counted in the background; absent until counted)",
      labelNames: ['customer', 'stream'] as const,
      registers,
      collect() {
        this.reset();
        for (const { customer, stream, lag } of lagNow()) if (lag !== undefined) this.set({ customer, stream }, lag);
      },
    });
    new Gauge({
      name: 'portcall_customer_topic_held',
      help: 'Whether a customer topic is held because its token is not accepted (1) or running (0)',
      labelNames: ['customer'] as const,
      registers,
      collect() {
        this.reset();
        for (const { id, held } of heldNow()) this.set({ customer: id }, held ? 1 : 0);
      },
    });
    for (const { id } of options.customers) this.counts.set(id, { written: 0, filtered: 0 });
  }

  /**
   * Opens the sink once before returning, so a misconfigured cursor topic or an unreachable
   * Kafka fails the site's start with its reason; later failures are retried.
   */
  async start(): Promise<void> {
    this.positions = await this.options.sink.open();
    this.unsubscribe = this.options.source.onDurable((stream) => {
      if (this.options.customers.some((customer) => customer.streams.includes(stream))) this.poke();
    });
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.poke();
    await this.running;
    await this.options.sink.close();
  }

  /** Per customer and stream, the records after its position (undefined while being counted). */
  lag(): { customer: string; stream: string; lag: number | undefined }[] {
    return this.options.customers.flatMap(({ id, kafkaTopic, streams }) =>
      streams.map((stream) => ({ customer: id, stream, lag: this.options.recordsAfter?.(stream, this.positions.get(positionKey(id, kafkaTopic, stream)) ?? 0) })),
    );
  }

  stats(): { customer: string; written: number; filtered: number; held: boolean }[] {
    return this.options.customers.map(({ id }) => ({ customer: id, ...this.counts.get(id)!, held: this.held.has(id) }));
  }

  health(): HealthReport {
    return {
      component: 'customer-topics',
      status: this.state.status,
      ...(this.state.reason === undefined ? {} : { reason: this.state.reason }),
      sinceMs: this.state.sinceMs,
      details: {
        customers: this.stats(),
        ...(this.lastCommitAtMs === undefined ? {} : { lastCommitAt: new Date(this.lastCommitAtMs).toISOString() }),
        ...(this.lastWidening === undefined
          ? {}
          : { lastWidening: { customer: this.lastWidening.customer, topics: this.lastWidening.topics, at: new Date(this.lastWidening.atMs).toISOString() } }),
        ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
      },
    };
  }

  private setState(status: HealthStatus, reason: string | undefined): void {
    if (status !== this.state.status || reason !== this.state.reason) this.state = { status, reason, sinceMs: Date.now() };
  }

  private poke(): void {
    this.woken = true;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async sleep(ms: number): Promise<void> {
    if (this.woken || this.stopped) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    const retryInitialMs = this.options.retryInitialMs ?? 500;
    const retryMaxMs = this.options.retryMaxMs ?? 10_000;
    let delayMs = retryInitialMs;
    let open = true;
    while (!this.stopped) {
      try {
        if (!open) {
          this.positions = await this.options.sink.open();
          open = true;
        }
        this.woken = false;
        const progressed = await this.round();
        delayMs = retryInitialMs;
        this.lastError = undefined;
        this.setState(this.held.size === 0 ? 'ok' : 'degraded', this.heldReason());
        if (!progressed) await this.sleep(this.options.pollIntervalMs ?? 1_000);
      } catch (error) {
        if (this.stopped) break;
        // The commit may or may not have happened: start again from what the sink reads back.
        open = false;
        this.transactions.inc({ outcome: 'failed' });
        this.lastError = error instanceof Error ? error.message : String(error);
        // Degraded, not unavailable: the site still takes batches (readiness is about that).
        this.setState('degraded', `customer topics not written: ${this.lastError}; retrying in ${delayMs} ms`);
        this.options.logger?.warn({ err: this.lastError, retryInMs: delayMs }, 'customer topic stage failed; retrying from the committed positions');
        this.woken = false;
        await this.sleep(delayMs);
        delayMs = Math.min(delayMs * 2, retryMaxMs);
      }
    }
  }

  private heldReason(): string | undefined {
    if (this.held.size === 0) return undefined;
    return `held (token not accepted here: unknown, revoked, expired, or not of this organisation; positions kept, nothing written): ${[...this.held].join(', ')}`;
  }

  /**
   * When the access records moved since the mark kept with this customer's positions, asks
   * what they may have widened; a widening is logged, counted and shown on /healthz (the
   * records already passed over stay out: docs/ACCESS.md says why and what to do), and the
   * new mark is committed with the round. A first mark (a new customer) is just kept.
   */
  private async noteWidening(customer: CustomerTopicSpec, widening: NonNullable<CustomerTopicSpec['widening']>, moved: Map<string, number>): Promise<void> {
    const keys = MARK_KEYS.map((name) => positionKey(customer.id, customer.kafkaTopic, name));
    const now = widening.mark();
    const kept = keys.map((key) => this.positions.get(key));
    if (kept.every((value) => value !== undefined) && sameMark(kept as number[], now)) return;
    if (kept.every((value) => value !== undefined)) {
      const widened = await widening.widenedSince(kept as number[]);
      const topics = widened.topics === 'all' ? 'all' : [...widened.topics].sort();
      if (topics === 'all' || topics.length > 0) {
        this.widenings.inc({ customer: customer.id });
        this.lastWidening = { customer: customer.id, topics, atMs: Date.now() };
        this.options.logger?.warn(
          { customer: customer.id, topics },
          'access widened for a customer topic: records of these topics it read before the change (if any) stay out; read them through the read API, or rebuild the topic under a new name (docs/ACCESS.md)',
        );
      }
      now.forEach((value, index) => moved.set(keys[index]!, widened.mark[index] ?? value));
      return;
    }
    now.forEach((value, index) => moved.set(keys[index]!, value));
  }

  /** Reads a page per (customer, stream) and commits what it admits with the new positions. False when there was nothing to read. */
  private async round(): Promise<boolean> {
    const out: { customer: string; record: LogRecord }[] = [];
    const moved = new Map<string, number>();
    const tally = new Map<string, { written: number; filtered: number }>();
    // Customers usually stand at the same positions: one read of a page serves them all.
    const pages = new Map<string, Promise<StreamPage>>();
    for (const customer of this.options.customers) {
      const filter = customer.filter();
      if (filter === undefined) {
        if (!this.held.has(customer.id)) this.options.logger?.warn({ customer: customer.id }, 'customer topic held: its token is not accepted at this site, or is not of this organisation');
        this.held.add(customer.id);
        continue;
      }
      if (this.held.delete(customer.id)) this.options.logger?.info({ customer: customer.id }, 'customer topic resumed');
      if (customer.widening !== undefined) await this.noteWidening(customer, customer.widening, moved);
      const counts = { written: 0, filtered: 0 };
      tally.set(customer.id, counts);
      for (const stream of customer.streams) {
        const key = positionKey(customer.id, customer.kafkaTopic, stream);
        const from = this.positions.get(key) ?? 0;
        const pageKey = `${stream}\u0000${from}`;
        let reading = pages.get(pageKey);
        if (reading === undefined) pages.set(pageKey, (reading = this.options.source.readStream(stream, from, { maxRecords: this.maxRecordsPerRead })));
        const page = await reading;
        if (page.nextPosition === from) continue;
        for (const record of page.records) {
          const admitted = filter.admit(record);
          if (admitted === undefined) counts.filtered += 1;
          else {
            out.push({ customer: customer.id, record: admitted });
            counts.written += 1;
          }
        }
        moved.set(key, page.nextPosition);
      }
    }
    if (moved.size === 0) return false;
    await this.options.sink.commit(out, moved);
    const onlyMarks = out.length === 0 && [...moved.keys()].every((key) => MARK_KEYS.some((name) => key.endsWith(`\u0000${name}`)));
    this.transactions.inc({ outcome: 'committed' });
    this.lastCommitAtMs = Date.now();
    for (const [key, position] of moved) this.positions.set(key, position);
    for (const [customer, counts] of tally) {
      const total = this.counts.get(customer)!;
      total.written += counts.written;
      total.filtered += counts.filtered;
      if (counts.written > 0) this.written.inc({ customer }, counts.written);
      if (counts.filtered > 0) this.filtered.inc({ customer }, counts.filtered);
    }
    // A round that only moved marks read nothing: wait for records as after an empty round.
    return !onlyMarks;
  }
}
