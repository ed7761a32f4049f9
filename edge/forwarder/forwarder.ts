/**
 * Moves a site's log to one destination, stream by stream, exactly where it left off,
 * keeping several batches in flight so a long round trip does not idle the link.
 *
 * Invariants:
 * - The cursor of (destination, stream) is a position in this site's stream and only
 *   advances over batches the destination acknowledged as durable, and only over a
 *   contiguous prefix of them: batch k+1's acknowledgement does not move the cursor while
 *   batch k is out. After any crash or link failure the forwarder resends from the cursor,
 *   so nothing is skipped; resending is safe because the destination drops records it
 *   already holds by identity.
 * - When a batch fails, every batch sent after it in the same lane is written off (their
 *   outcome no longer counts) and the lane starts again from its cursors: the destination
 *   refuses a batch that would leave a gap, so sending past a lost batch is wasted.
 * - Urgent streams (alerts) have their own lane: they are read as soon as they are durable,
 *   never wait for a bulk batch to be read, encoded or acknowledged, and the link writes
 *   their bytes ahead of bulk bytes. Bulk streams are visited in priority order.
 * - The link policy decides which lanes run: `up` all, `metered` the urgent lane and the
 *   summary streams, `down` none.
 *
 * Why a position cursor per stream and not the destination's high water per topic: a
 * stream's positions are one total order over all its topics, so one number per stream
 * says how far 100,000 topics have been sent. On reconnect (start, or after a failure) the
 * forwarder asks the destination how far each stream arrived without a gap (it remembers
 * the sender's positions, one number per stream), and moves its cursor there if that is
 * further: batches that arrived but whose acknowledgement was lost are not sent again. If
 * the destination does not know (it restarted), the forwarder resends from its own cursor
 * and the destination drops what it already holds.
 *
 * A link to a customer's own endpoint has an audience (`audience`, a `LinkFilter` from access
 * control): each record goes in the form the audience may see (`admit`), or not at all, and
 * the cursor moves over what was left out. Custody widened later (a booking covering past
 * records) means records the cursor passed are now admitted: the link keeps, as named
 * cursors, the access mark its cursors were judged under, and when the filter's mark moves
 * it sends the admitted earlier records of the topics the change named (reading just those
 * topics), or, when the change was not about given topics, rescans its streams from the start
 * up to where it had read.
 * The destination, a sparse replica, stores what it lacks and drops the rest by identity, so
 * a rescan interrupted by a crash is simply run again from the start; only once a rescan has
 * been acknowledged whole is the new mark committed.
 */
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AccessMark, CursorStore, LinkFilter, LogRecord, ReplicateResult, SenderPlacement, StreamSource, TopicReader } from '../../core/index.js';
import { TopicOrigins, type HoldingsDigest, type TopicCatalog } from '../../core/holdings.js';
import { LinkPolicy, LINK_STATES, type LinkCondition } from './link-policy.js';
import { RetryPolicy, type RetryDecision, type RetryPolicyOptions } from './retry-policy.js';
import { findResumePoint } from './resume-point.js';
import type { DispatchTurns } from './dispatch-turns.js';

/** Where a batch sits in this site's stream; the destination remembers how far it got. */
export type BatchPosition = SenderPlacement;

export interface SendOptions {
  /** The link writes urgent batches ahead of everything else. */
  readonly urgent: boolean;
  readonly position?: BatchPosition;
}

export interface SendReport extends ReplicateResult {
  /** Encoded bytes that went on the wire. */
  readonly wireBytes?: number;
  /** Payload and header bytes before encoding. */
  readonly rawBytes?: number;
}

/** What the forwarder pushes into: the link to the destination. */
export interface BatchSender {
  readonly destination: string;
  send(records: readonly LogRecord[], options: SendOptions): Promise<SendReport>;
  /**
   * How far the destination holds each stream of this log without a gap (positions of this
   * site), as far as it knows: one number per stream. Asked after every failure.
   */
  positions?(incarnation: string): Promise<Record<string, number>>;
  /**
   * The destination's holdings digest of each origin in the stream (core/holdings.ts), to
   * find how far it holds this site's stream when it does not remember this sender's
   * positions; undefined when it cannot say.
   */
  holdings?(stream: string, origins: readonly string[], seed: string): Promise<Record<string, HoldingsDigest> | undefined>;
  /** Bytes per second the link may use; undefined lifts the cap. */
  setBandwidthLimit?(bytesPerSecond: number | undefined): void;
  close?(): Promise<void>;
}

/** How much of a stream the log holds, for lag metrics (the log's own statistics). */
export interface StreamBacklog {
  readonly lastPosition: number;
  readonly records: number;
  readonly bytes: number;
}

export interface ForwarderOptions {
  /** Names the destination in cursor names and metrics; stable across restarts. */
  readonly linkName: string;
  readonly source: StreamSource & CursorStore;
  readonly sender: BatchSender;
  /** Streams to forward, highest priority first. */
  readonly streams: readonly string[];
  /** Streams with their own lane, sent first and also when the link is metered. */
  readonly urgentStreams?: readonly string[];
  /** Streams besides the urgent ones that still go when the link is metered (a summary). */
  readonly summaryStreams?: readonly string[];
  readonly policy?: LinkPolicy;
  readonly maxBatchRecords?: number;
  /** Payload bytes per batch at most (a larger record still goes alone). */
  readonly maxBatchBytes?: number;
  /** A bulk batch not yet full waits until its oldest record is this old, to fill up. */
  readonly maxBatchAgeMs?: number;
  /** Batches per lane sent and not yet acknowledged. */
  readonly maxInFlightBatches?: number;
  /**
   * Turns of the event loop shared with the site's other forwarders (dispatch-turns.ts): one
   * batch of one lane per turn. Without it each lane yields a turn after each batch on its own.
   */
  readonly turns?: DispatchTurns;
  /** Under a bandwidth cap, a batch is sized to take about this long on the wire. */
  readonly targetBatchSeconds?: number;
  readonly retry?: RetryPolicyOptions;
  readonly backlog?: (stream: string) => StreamBacklog | undefined;
  /**
   * Records of the stream after a position, for a source whose positions are not record
   * counts (the Kafka log's stream order); used instead of `backlog` for the lag and for
   * deciding whether a digest is worth computing. May answer from a cache refreshed in the
   * background; undefined while unknown.
   */
  readonly recordsAfter?: (stream: string, afterPosition: number) => number | undefined;
  /**
   * Which records of the stream go to this destination (all when absent). Records left out
   * still move the cursor: split horizon (a record never goes back to its origin, which holds
   * it) and a link's stream/topic filter. A batch left with nothing is acknowledged here.
   */
  readonly include?: (record: LogRecord) => boolean;
  /**
   * Whom the destination stands for (a customer's endpoint): records go in the form `admit`
   * gives (projected), those it refuses are left out like `include`'s, and earlier records a
   * widened custody now admits are sent by a rescan. Without it every included record goes as stored.
   */
  readonly audience?: LinkFilter;
  /** How often the rescan loop looks at the audience's mark (ms). */
  readonly audiencePollMs?: number;
  /**
   * The log's topics by offset: a rescan for named containers reads just their topics
   * instead of scanning the streams (without it, it scans).
   */
  readonly topicReader?: TopicReader;
  /**
   * The log's topics, for resuming where the destination stands when it holds this site's
   * records without knowing this sender (they came another way): see resume-point.ts.
   */
  readonly catalog?: TopicCatalog;
  /** Backlog (records past the cursor) from which a holdings digest is worth computing. */
  readonly digestMinRecords?: number;
  /** A stream's digest is computed at most this often (it scans the backlog locally). */
  readonly digestIntervalMs?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export interface ForwarderStats {
  recordsForwarded: number;
  batchesAcknowledged: number;
  duplicatesAtDestination: number;
  wireBytes: number;
  rawBytes: number;
  failures: number;
  lastError: string | undefined;
  lastFailureReason: string | undefined;
  lastAckAtMs: number | undefined;
}

/** Name of the durable cursor of one link and stream; retention waits for it (mustForward). */
export function forwardCursorName(linkName: string, stream: string): string {
  return `forward/${linkName}/${stream}`;
}

interface Flight {
  readonly stream: string;
  readonly to: number;
  readonly records: number;
  readonly rawBytes: number;
  readonly generation: number;
  readonly sentAtMs: number;
  done: boolean;
}

class Lane {
  readonly flights: Flight[] = [];
  readonly readPositions = new Map<string, number>();
  generation = 0;
  backoffUntilMs = 0;
  /** Ask the destination where it stands before sending (at start and after a failure). */
  needsSync = true;
  /** The first sync since start is done (a rescan waits for it: it may move the cursor over records a previous run sent). */
  syncedOnce = false;
  maxRecords: number;
  maxBytes: number;
  private wake: (() => void) | undefined;
  loop: Promise<void> | undefined;

  constructor(
    readonly name: 'urgent' | 'bulk',
    readonly streams: readonly string[],
    maxRecords: number,
    maxBytes: number,
  ) {
    this.maxRecords = maxRecords;
    this.maxBytes = maxBytes;
  }

  poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Waits for a poke, or at most `ms`. */
  sleep(ms: number | undefined): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => this.poke(), Math.max(0, ms));
      this.wake = () => {
        if (timer !== undefined) clearTimeout(timer);
        resolve();
      };
    });
  }
}

interface LinkMetrics {
  state: Gauge;
  records: Counter;
  duplicates: Counter;
  wireBytes: Counter;
  rawBytes: Counter;
  retries: Counter;
  lastAck: Gauge;
  inFlight: Gauge;
  lagRecords: Gauge;
  lagBytes: Gauge;
  ackSeconds: Histogram;
  skipped: Counter;
  leftOut: Counter;
  rescans: Counter;
  rescanned: Counter;
}

const metricsByRegistry = new WeakMap<Registry, LinkMetrics>();
const lagSources = new WeakMap<Registry, Set<Forwarder>>();

/** One set of link metrics per registry, labelled by link: a site has several links. */
function linkMetrics(registry: Registry | undefined): LinkMetrics {
  const cached = registry === undefined ? undefined : metricsByRegistry.get(registry);
  if (cached !== undefined) return cached;
  const registers = registry === undefined ? [] : [registry];
  const sources = new Set<Forwarder>();
  if (registry !== undefined) lagSources.set(registry, sources);
  const metrics: LinkMetrics = {
    state: new Gauge({ name: 'portcall_link_state', help: '1 for the state each link is in (up, metered, down)', labelNames: ['link', 'state'], registers }),
    records: new Counter({ name: 'portcall_link_records_total', help: 'Records the destination acknowledged, by stream', labelNames: ['link', 'stream'], registers }),
    duplicates: new Counter({
      name: 'portcall_link_duplicates_total',
      help: 'Records the destination already held (resent after a failure)',
      labelNames: ['link'],
      registers,
    }),
    wireBytes: new Counter({ name: 'portcall_link_wire_bytes_total', help: 'Encoded batch bytes acknowledged', labelNames: ['link'], registers }),
    rawBytes: new Counter({
      name: 'portcall_link_raw_bytes_total',
      help: 'Payload and header bytes of the records those batches carried',
      labelNames: ['link'],
      registers,
    }),
    retries: new Counter({ name: 'portcall_link_retries_total', help: 'Batches that failed and will be resent, by reason', labelNames: ['link', 'reason'], registers }),
    lastAck: new Gauge({ name: 'portcall_link_last_ack_timestamp_seconds', help: 'When the destination last acknowledged a batch', labelNames: ['link'], registers }),
    inFlight: new Gauge({ name: 'portcall_link_in_flight_batches', help: 'Batches sent and not yet acknowledged, by lane', labelNames: ['link', 'lane'], registers }),
    lagRecords: new Gauge({
      name: 'portcall_link_lag_records',
      help: 'Records stored here and not yet acknowledged by the destination, by stream',
      labelNames: ['link', 'stream'],
      registers,
      collect() {
        for (const forwarder of sources) forwarder.collectLag(this, 'records');
      },
    }),
    lagBytes: new Gauge({
      name: 'portcall_link_lag_bytes',
      help: 'Payload bytes not yet acknowledged (estimated from the stream\u2019s mean record size), by stream',
      labelNames: ['link', 'stream'],
      registers,
      collect() {
        for (const forwarder of sources) forwarder.collectLag(this, 'bytes');
      },
    }),
    ackSeconds: new Histogram({
      name: 'portcall_link_ack_seconds',
      help: 'Time from handing a batch to the link to its acknowledgement, by lane',
      labelNames: ['link', 'lane'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    }),
    skipped: new Counter({
      name: 'portcall_link_resync_skipped_records_total',
      help: 'Records not resent after a failure because the destination said it already held them',
      labelNames: ['link'],
      registers,
    }),
    leftOut: new Counter({
      name: 'portcall_link_left_out_records_total',
      help: 'Records the link does not send: their origin is the destination (split horizon), or they are outside its filter',
      labelNames: ['link'],
      registers,
    }),
    rescans: new Counter({
      name: 'portcall_link_rescans_total',
      help: 'Rescans of a customer endpoint link: its audience may see more of past records (custody widened)',
      labelNames: ['link'],
      registers,
    }),
    rescanned: new Counter({
      name: 'portcall_link_rescanned_records_total',
      help: 'Records a rescan sent, by outcome at the destination (stored: it lacked them; duplicate: it held them)',
      labelNames: ['link', 'outcome'],
      registers,
    }),
  };
  if (registry !== undefined) metricsByRegistry.set(registry, metrics);
  return metrics;
}

export class Forwarder {
  /** Acknowledged positions per stream (committed to the cursor store right after). */
  private readonly acked = new Map<string, number>();
  private readonly lanes: Lane[];
  private readonly laneOf = new Map<string, Lane>();
  private readonly policy: LinkPolicy;
  private readonly retry: RetryPolicy;
  private readonly metrics: LinkMetrics;
  private readonly meteredStreams: Set<string>;
  private running = false;
  private unsubscribe: (() => void)[] = [];
  private cursorCommits: Promise<void> = Promise.resolve();
  private compressionRatio: number | undefined;
  private incarnation = '';
  private lastLoggedReason: string | undefined;
  private readonly topicOrigins: TopicOrigins | undefined;
  private readonly digestAtMs = new Map<string, number>();
  /** The access mark every record up to the cursors was judged under (audience links only). */
  private committedMark: AccessMark = [];
  private rescanLoop: Promise<void> | undefined;
  private rescanWake: (() => void) | undefined;
  private readonly statsValue: ForwarderStats = {
    recordsForwarded: 0,
    batchesAcknowledged: 0,
    duplicatesAtDestination: 0,
    wireBytes: 0,
    rawBytes: 0,
    failures: 0,
    lastError: undefined,
    lastFailureReason: undefined,
    lastAckAtMs: undefined,
  };

  constructor(private readonly options: ForwarderOptions) {
    const urgent = options.streams.filter((stream) => (options.urgentStreams ?? ['alerts']).includes(stream));
    const bulk = options.streams.filter((stream) => !urgent.includes(stream));
    const maxRecords = options.maxBatchRecords ?? 10_000;
    const maxBytes = options.maxBatchBytes ?? 2 * 1024 * 1024;
    this.lanes = [];
    if (urgent.length > 0) this.lanes.push(new Lane('urgent', urgent, maxRecords, maxBytes));
    if (bulk.length > 0) this.lanes.push(new Lane('bulk', bulk, maxRecords, maxBytes));
    for (const lane of this.lanes) for (const stream of lane.streams) this.laneOf.set(stream, lane);
    this.meteredStreams = new Set([...urgent, ...(options.summaryStreams ?? [])]);
    this.policy = options.policy ?? new LinkPolicy();
    this.retry = new RetryPolicy(options.retry);
    this.metrics = linkMetrics(options.registry);
    this.topicOrigins = options.catalog === undefined ? undefined : new TopicOrigins(options.catalog);
    if (options.registry !== undefined) lagSources.get(options.registry)?.add(this);
  }

  private cursorName(stream: string): string {
    return forwardCursorName(this.options.linkName, stream);
  }

  stats(): Readonly<ForwarderStats> {
    return this.statsValue;
  }

  condition(): LinkCondition {
    return this.policy.current();
  }

  /** Records not yet acknowledged per stream, from the log's statistics. */
  lag(): { stream: string; records: number; bytes: number }[] {
    const result: { stream: string; records: number; bytes: number }[] = [];
    for (const stream of this.options.streams) {
      if (this.options.recordsAfter !== undefined) {
        const records = this.options.recordsAfter(stream, this.acked.get(stream) ?? 0);
        if (records !== undefined) result.push({ stream, records, bytes: 0 });
        continue;
      }
      const backlog = this.options.backlog?.(stream);
      if (backlog === undefined) continue;
      const records = Math.max(0, backlog.lastPosition - (this.acked.get(stream) ?? 0));
      const meanBytes = backlog.records > 0 ? backlog.bytes / backlog.records : 0;
      result.push({ stream, records, bytes: Math.round(records * meanBytes) });
    }
    return result;
  }

  /** @internal called by the lag gauges' collect(). */
  collectLag(gauge: Gauge, what: 'records' | 'bytes'): void {
    for (const entry of this.lag()) gauge.set({ link: this.options.linkName, stream: entry.stream }, entry[what]);
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.incarnation = await this.logIncarnation();
    for (const stream of this.options.streams) {
      const position = (await this.options.source.getCursor(this.cursorName(stream))) ?? 0;
      this.acked.set(stream, position);
      this.laneOf.get(stream)!.readPositions.set(stream, position);
    }
    if (this.options.audience !== undefined) this.committedMark = await this.loadMark(this.options.audience);
    this.running = true;
    this.applyCondition(this.policy.current());
    this.unsubscribe.push(
      this.options.source.onDurable((stream) => this.laneOf.get(stream)?.poke()),
      this.policy.onChange((condition) => this.applyCondition(condition)),
    );
    for (const lane of this.lanes) lane.loop = this.run(lane);
    if (this.options.audience !== undefined) this.rescanLoop = this.runRescans(this.options.audience);
  }

  private markCursorName(component: number): string {
    return `forward/${this.options.linkName}/#access-mark/${component}`;
  }

  /**
   * The mark the cursors were judged under, as kept. A link without one is new (nothing
   * judged yet: the mark as it is now) or was judged under states nobody wrote down (from
   * the start: every access record counts as a change, so the first rescan covers all).
   */
  private async loadMark(audience: LinkFilter): Promise<AccessMark> {
    const now = audience.mark();
    const kept: number[] = [];
    for (let component = 0; component < now.length; component += 1) {
      const value = await this.options.source.getCursor(this.markCursorName(component));
      if (value === undefined) break;
      kept.push(value);
    }
    if (kept.length === now.length) return kept;
    const fresh = this.options.streams.every((stream) => (this.acked.get(stream) ?? 0) === 0);
    if (!fresh) return now.map(() => 0);
    await this.commitMark(now);
    return now;
  }

  /**
   * Only after a rescan was acknowledged whole. A crash between the components' commits
   * leaves some of them older, which only makes the next rescan cover more.
   */
  private async commitMark(mark: AccessMark): Promise<void> {
    for (let component = 0; component < mark.length; component += 1) {
      await this.options.source.commitCursor(this.markCursorName(component), mark[component]!);
    }
    this.committedMark = mark;
  }

  private sleepRescan(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.rescanWake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.rescanWake = done;
    });
  }

  /** Follows the audience's mark; each change that may widen what it sees is a rescan (see the file comment). */
  private async runRescans(audience: LinkFilter): Promise<void> {
    const pollMs = this.options.audiencePollMs ?? 1000;
    while (this.running) {
      const now = audience.mark();
      const same = now.length === this.committedMark.length && now.every((value, index) => value === this.committedMark[index]);
      // Until every lane has asked the destination where it stands, the cursors may still
      // jump over records an earlier run sent: the rescan's bound is not known yet.
      if (same || !this.lanes.every((lane) => lane.syncedOnce)) {
        await this.sleepRescan(pollMs);
        continue;
      }
      try {
        const widening = await audience.widenedSince(this.committedMark);
        if (widening.topics === 'all' || widening.topics.size > 0) {
          if (!(await this.rescan(audience, widening.topics))) return;
        }
        await this.commitMark(widening.mark);
      } catch (error) {
        // The access records could not be read, or the mark not stored: the same again later.
        this.options.logger?.warn({ link: this.options.linkName, err: (error as Error).message }, 'rescan for a widened audience failed; trying again');
        await this.sleepRescan(pollMs);
      }
    }
  }

  /**
   * Sends the earlier records of `topics` the audience now admits. With a topic reader and
   * named topics, each topic is read by its own offsets from 0 to its end (a booking widens a
   * container: its records only, not the whole stream); records appended meanwhile were judged
   * under the new state already, and any sent twice are dropped there. Otherwise ('all', or no
   * reader) each stream is scanned from the start up to where the link has read (a bound that
   * moves with it). One batch at a time, each acknowledged before the next; a failure resends
   * the same batch. False when the forwarder stopped.
   */
  private async rescan(audience: LinkFilter, topics: ReadonlySet<string> | 'all'): Promise<boolean> {
    const link = this.options.linkName;
    this.metrics.rescans.inc({ link });
    const startedAt = performance.now();
    const counts = { sent: 0, stored: 0, read: 0 };
    this.options.logger?.info({ link, topics: topics === 'all' ? 'all' : [...topics].slice(0, 20), count: topics === 'all' ? undefined : topics.size }, 'audience may see more of earlier records: rescanning');
    const include = this.options.include;
    const limits = { maxRecords: this.options.maxBatchRecords ?? 10_000, maxBytes: this.options.maxBatchBytes ?? 2 * 1024 * 1024 };
    const judge = (read: readonly LogRecord[]) => {
      counts.read += read.length;
      const records: LogRecord[] = [];
      for (const record of read) {
        if (topics !== 'all' && !topics.has(record.topic)) continue;
        if (include !== undefined && !include(record)) continue;
        const seen = audience.admit(record);
        if (seen !== undefined) records.push(seen);
      }
      return records;
    };
    const reader = this.options.topicReader;
    for (const stream of this.options.streams) {
      if (topics !== 'all' && reader !== undefined) {
        for (const topic of topics) {
          let from = 0;
          for (let pages = 0; pages < Number.MAX_SAFE_INTEGER; pages += 1) {
            if (!(await this.rescanMayGo(stream))) return false;
            const page = await reader.readTopic(stream, topic, from, limits);
            if (page.length === 0) break;
            if (!(await this.sendRescanned(judge(page), counts))) return false;
            from = page.at(-1)!.offset + 1;
          }
        }
        continue;
      }
      let position = 0;
      for (let pages = 0; pages < Number.MAX_SAFE_INTEGER; pages += 1) {
        if (!(await this.rescanMayGo(stream))) return false;
        const bound = Math.max(this.acked.get(stream) ?? 0, this.laneOf.get(stream)?.readPositions.get(stream) ?? 0);
        if (position >= bound) break;
        const page = await this.options.source.readStream(stream, position, limits);
        if (page.records.length === 0) break;
        if (!(await this.sendRescanned(judge(page.records), counts))) return false;
        position = page.nextPosition;
      }
    }
    this.options.logger?.info({ link, ...counts, ms: Math.round(performance.now() - startedAt) }, 'rescan done');
    return true;
  }

  /** Waits while the link's policy holds the stream back; false once the forwarder stopped. */
  private async rescanMayGo(stream: string): Promise<boolean> {
    for (;;) {
      if (!this.running) return false;
      if (this.allows(stream)) return true;
      await this.sleepRescan(500);
    }
  }

  /** Sends one rescanned batch until the destination acknowledges it; false once the forwarder stopped. */
  private async sendRescanned(records: LogRecord[], counts: { sent: number; stored: number }): Promise<boolean> {
    if (records.length === 0) return true;
    const link = this.options.linkName;
    for (let failures = 0; ; failures += 1) {
      if (!this.running) return false;
      try {
        const ack = await this.options.sender.send(records, { urgent: false });
        counts.sent += records.length;
        counts.stored += ack.stored;
        this.metrics.rescanned.inc({ link, outcome: 'stored' }, ack.stored);
        this.metrics.rescanned.inc({ link, outcome: 'duplicate' }, ack.duplicates);
        return true;
      } catch (error) {
        if (!this.running) return false;
        const delayMs = Math.min(this.options.retry?.maxDelayMs ?? 30_000, (this.options.retry?.initialDelayMs ?? 200) * 2 ** Math.min(failures + 1, 16));
        this.options.logger?.debug({ link, err: (error as Error).message, retryInMs: delayMs }, 'rescan batch failed; resending it');
        await this.sleepRescan(delayMs);
      }
    }
  }

  /**
   * A random id of this site's log, kept in the log itself (as a named cursor), so the
   * destination never mixes this log's positions with those of an earlier one (a log
   * restored from a backup or rebuilt starts positions again).
   */
  private async logIncarnation(): Promise<string> {
    const name = `forward/${this.options.linkName}/#incarnation`;
    let id = await this.options.source.getCursor(name);
    if (id === undefined) {
      id = Math.floor(Math.random() * 2 ** 48);
      await this.options.source.commitCursor(name, id);
    }
    return id.toString(36);
  }

  /** Moves the lane's cursors to where the destination says its streams arrived, if further. */
  private async sync(lane: Lane): Promise<void> {
    const positions = (await this.options.sender.positions?.(this.incarnation)) ?? {};
    for (const stream of lane.streams) {
      const held = positions[stream] ?? (await this.heldByDigest(stream));
      const acked = this.acked.get(stream) ?? 0;
      if (held === undefined || held <= acked) continue;
      const skipped = held - acked;
      this.acked.set(stream, held);
      lane.readPositions.set(stream, held);
      this.metrics.skipped.inc({ link: this.options.linkName }, skipped);
      this.cursorCommits = this.cursorCommits
        .then(() => this.options.source.commitCursor(this.cursorName(stream), held))
        .catch((error: unknown) => {
          this.options.logger?.warn({ link: this.options.linkName, err: (error as Error).message }, 'could not store the forwarding cursor');
        });
      this.options.logger?.debug({ link: this.options.linkName, stream, from: acked, to: held }, 'destination already holds these; not resending');
    }
  }

  /**
   * When the destination does not know this sender's positions in a stream, how far it holds
   * the stream anyway (records it got from another site), from holdings digests: one number
   * per origin crosses the link (resume-point.ts). Undefined when not worth asking or unknown.
   */
  private async heldByDigest(stream: string): Promise<number | undefined> {
    const { catalog, sender } = this.options;
    if (catalog === undefined || this.topicOrigins === undefined || sender.holdings === undefined) return undefined;
    const acked = this.acked.get(stream) ?? 0;
    const backlog = this.options.backlog?.(stream);
    const pending = this.options.recordsAfter !== undefined ? this.options.recordsAfter(stream, acked) : backlog === undefined ? undefined : backlog.lastPosition - acked;
    if (pending === undefined || pending < (this.options.digestMinRecords ?? 1000)) return undefined;
    const now = Date.now();
    if (now - (this.digestAtMs.get(stream) ?? -Infinity) < (this.options.digestIntervalMs ?? 30_000)) return undefined;
    this.digestAtMs.set(stream, now);
    const startedAt = performance.now();
    const point = await findResumePoint({
      source: this.options.source,
      catalog,
      origins: this.topicOrigins,
      stream,
      cursor: acked,
      ...(this.options.include === undefined ? {} : { include: this.options.include }),
      ask: (origins, seed) => sender.holdings!(stream, origins, seed),
    });
    this.options.logger?.info(
      { link: this.options.linkName, stream, cursor: acked, resumeAfter: point.position, scanned: point.scanned, origins: point.origins, ms: Math.round(performance.now() - startedAt) },
      point.position > acked ? 'destination already holds part of this stream (holdings digest); resuming past it' : 'holdings digest: nothing to skip',
    );
    return point.position;
  }

  private applyCondition(condition: LinkCondition): void {
    for (const state of LINK_STATES) this.metrics.state.set({ link: this.options.linkName, state }, state === condition.state ? 1 : 0);
    this.options.sender.setBandwidthLimit?.(condition.bandwidthBytesPerSecond);
    for (const lane of this.lanes) lane.poke();
  }

  private allows(stream: string): boolean {
    const state = this.policy.current().state;
    return state === 'up' || (state === 'metered' && this.meteredStreams.has(stream));
  }

  /** Raw bytes per batch: the configured limit, or under a cap what takes targetBatchSeconds on the wire. */
  private batchBytes(lane: Lane): number {
    const cap = this.policy.current().bandwidthBytesPerSecond;
    if (cap === undefined || this.compressionRatio === undefined) return lane.maxBytes;
    const wireBudget = cap * (this.options.targetBatchSeconds ?? 2);
    return Math.max(16 * 1024, Math.min(lane.maxBytes, Math.floor(wireBudget / this.compressionRatio)));
  }

  private async run(lane: Lane): Promise<void> {
    const maxInFlight = this.options.maxInFlightBatches ?? 8;
    const maxAgeMs = this.options.maxBatchAgeMs ?? 500;
    while (this.running) {
      const now = Date.now();
      if (lane.backoffUntilMs > now) {
        await lane.sleep(lane.backoffUntilMs - now);
        continue;
      }
      const allowed = lane.streams.filter((stream) => this.allows(stream));
      if (allowed.length === 0 || lane.flights.length >= maxInFlight) {
        await lane.sleep(undefined);
        continue;
      }
      if (lane.needsSync && lane.flights.length === 0) {
        const generation = lane.generation;
        try {
          await this.sync(lane);
          if (generation === lane.generation) {
            lane.needsSync = false;
            lane.syncedOnce = true;
          }
        } catch (error) {
          // The link is still down: wait as after any failure, then ask again.
          const decision = this.retry.onFailure(error);
          lane.backoffUntilMs = Date.now() + decision.delayMs;
          this.noteFailure(lane, decision, error);
        }
        continue;
      }
      // A failure while this lane waited for its turn or its page (a reset of the connection)
      // rewinds the lane and sets its backoff and resync: those come before any more sending.
      const laneGeneration = lane.generation;
      // Reading and encoding a batch is synchronous work: one lane of the site's links per turn.
      if (this.options.turns !== undefined) {
        await this.options.turns.take(lane.name === 'urgent');
        if (!this.running) return;
        if (lane.generation !== laneGeneration || !allowed.every((stream) => this.allows(stream))) continue;
      }
      let picked: { stream: string; records: LogRecord[]; nextPosition: number; from: number } | undefined;
      try {
        for (const stream of allowed) {
          const from = lane.readPositions.get(stream) ?? 0;
          const page = await this.options.source.readStream(stream, from, { maxRecords: lane.maxRecords, maxBytes: this.batchBytes(lane) });
          if (page.records.length > 0) {
            picked = { stream, records: page.records, nextPosition: page.nextPosition, from };
            break;
          }
        }
      } catch (error) {
        // The local log failed to read (closing, I/O error): try again shortly.
        this.options.logger?.warn({ link: this.options.linkName, err: (error as Error).message }, 'reading the log to forward failed');
        await lane.sleep(1000);
        continue;
      }
      if (!this.running) return;
      if (lane.generation !== laneGeneration) continue;
      if (picked === undefined) {
        await lane.sleep(undefined);
        continue;
      }
      if (lane.name === 'bulk' && picked.records.length < lane.maxRecords) {
        // Not full: give a trickle of live readings time to make a batch worth sending.
        const ageMs = Date.now() - picked.records[0]!.ingestTimeMs;
        let bytes = 0;
        for (const record of picked.records) bytes += record.payload.byteLength;
        if (ageMs >= 0 && ageMs < maxAgeMs && bytes < this.batchBytes(lane) / 2) {
          await new Promise((resolve) => setTimeout(resolve, maxAgeMs - ageMs));
          continue;
        }
      }
      this.dispatch(lane, picked.stream, picked.records, picked.nextPosition);
      // Reading and encoding a batch is synchronous work: let acknowledgements, the other
      // lane (an alert) and the gateway in before the next one (shared turns do that above).
      if (this.options.turns === undefined) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private dispatch(lane: Lane, stream: string, read: LogRecord[], nextPosition: number): void {
    const include = this.options.include;
    const audience = this.options.audience;
    let records = include === undefined ? read : read.filter(include);
    if (audience !== undefined) {
      // The form the audience may see (possibly projected), or nothing: judged now, so a
      // revocation or an ended window counts from the next record on.
      const admitted: LogRecord[] = [];
      for (const record of records) {
        const seen = audience.admit(record);
        if (seen !== undefined) admitted.push(seen);
      }
      records = admitted;
    }
    if (records.length < read.length) this.metrics.leftOut.inc({ link: this.options.linkName }, read.length - records.length);
    let rawBytes = 0;
    for (const record of records) rawBytes += record.payload.byteLength;
    const from = lane.readPositions.get(stream) ?? 0;
    const flight: Flight = { stream, to: nextPosition, records: records.length, rawBytes, generation: lane.generation, sentAtMs: performance.now(), done: false };
    lane.flights.push(flight);
    lane.readPositions.set(stream, nextPosition);
    const position: BatchPosition = { stream, from, to: nextPosition, acked: this.acked.get(stream) ?? 0, incarnation: this.incarnation };
    this.metrics.inFlight.set({ link: this.options.linkName, lane: lane.name }, lane.flights.length);
    let sending: Promise<SendReport>;
    try {
      // Nothing of this range goes to the destination: it is done, in its turn among the flights.
      sending =
        records.length === 0
          ? Promise.resolve({ stored: 0, duplicates: 0, highWater: [], wireBytes: 0, rawBytes: 0 })
          : this.options.sender.send(records, { urgent: lane.name === 'urgent', position });
    } catch (error) {
      sending = Promise.reject(error);
    }
    sending.then(
      (ack) => this.onAck(lane, flight, ack),
      (error: unknown) => this.onFailure(lane, flight, error),
    );
  }

  /** Counts an acknowledgement from the destination (not a range left out by `include`). */
  private noteAck(lane: Lane, flight: Flight, ack: SendReport): void {
    this.retry.onSuccess();
    const link = this.options.linkName;
    const stats = this.statsValue;
    stats.recordsForwarded += flight.records;
    stats.batchesAcknowledged += 1;
    stats.duplicatesAtDestination += ack.duplicates;
    stats.wireBytes += ack.wireBytes ?? 0;
    stats.rawBytes += ack.rawBytes ?? flight.rawBytes;
    stats.lastAckAtMs = Date.now();
    stats.lastError = undefined;
    this.lastLoggedReason = undefined;
    if (ack.wireBytes !== undefined && flight.rawBytes > 0) {
      const ratio = ack.wireBytes / flight.rawBytes;
      this.compressionRatio = this.compressionRatio === undefined ? ratio : this.compressionRatio * 0.8 + ratio * 0.2;
    }
    this.metrics.records.inc({ link, stream: flight.stream }, flight.records);
    this.metrics.duplicates.inc({ link }, ack.duplicates);
    this.metrics.wireBytes.inc({ link }, ack.wireBytes ?? 0);
    this.metrics.rawBytes.inc({ link }, ack.rawBytes ?? flight.rawBytes);
    this.metrics.lastAck.set({ link }, stats.lastAckAtMs / 1000);
    this.metrics.ackSeconds.observe({ link, lane: lane.name }, (performance.now() - flight.sentAtMs) / 1000);
  }

  private onAck(lane: Lane, flight: Flight, ack: SendReport): void {
    if (flight.generation !== lane.generation) return;
    flight.done = true;
    const link = this.options.linkName;
    if (flight.records > 0) this.noteAck(lane, flight, ack);

    // Advance the stream's cursor over its acknowledged prefix only.
    let advancedTo: number | undefined;
    for (;;) {
      const first = lane.flights.find((candidate) => candidate.stream === flight.stream);
      if (first === undefined || !first.done) break;
      lane.flights.splice(lane.flights.indexOf(first), 1);
      advancedTo = first.to;
    }
    this.metrics.inFlight.set({ link, lane: lane.name }, lane.flights.length);
    if (advancedTo !== undefined) {
      const position = advancedTo;
      this.acked.set(flight.stream, position);
      this.cursorCommits = this.cursorCommits
        .then(() => this.options.source.commitCursor(this.cursorName(flight.stream), position))
        .catch((error: unknown) => {
          // Not fatal: the position is resent after a restart, and the destination drops duplicates.
          this.options.logger?.warn({ link, err: (error as Error).message }, 'could not store the forwarding cursor');
        });
    }
    lane.poke();
  }

  private onFailure(lane: Lane, flight: Flight, error: unknown): void {
    if (flight.generation !== lane.generation) return;
    if (!this.running) {
      // Stopping: nothing after this batch can count any more; stop() need not wait for it.
      lane.generation += 1;
      lane.flights.length = 0;
      return;
    }
    const index = lane.flights.indexOf(flight);
    const afterEarlierFailure = lane.flights.slice(0, index).some((earlier) => !earlier.done);
    const decision = this.retry.onFailure(error, afterEarlierFailure);
    lane.generation += 1;
    lane.flights.length = 0;
    for (const stream of lane.streams) lane.readPositions.set(stream, this.acked.get(stream) ?? 0);
    if (decision.shrink) {
      lane.maxRecords = Math.max(1, Math.floor(flight.records / 2));
      lane.maxBytes = Math.max(1, Math.floor(flight.rawBytes / 2));
    }
    lane.backoffUntilMs = Date.now() + decision.delayMs;
    lane.needsSync = true;
    this.metrics.inFlight.set({ link: this.options.linkName, lane: lane.name }, 0);
    this.noteFailure(lane, decision, error);
    lane.poke();
  }

  private noteFailure(lane: Lane, decision: RetryDecision, error: unknown): void {
    const link = this.options.linkName;
    const message = (error as Error).message;
    this.statsValue.failures += 1;
    this.statsValue.lastError = message;
    this.statsValue.lastFailureReason = decision.reason;
    this.metrics.retries.inc({ link, reason: decision.reason });
    if (this.lastLoggedReason !== decision.reason) {
      this.lastLoggedReason = decision.reason;
      const log = { link, lane: lane.name, reason: decision.reason, retryInMs: decision.delayMs, err: message };
      if (decision.permanent) this.options.logger?.error(log, 'destination refuses what this link sends; retrying slowly until someone acts');
      else this.options.logger?.warn(log, 'forwarding failed; resending from the acknowledged position');
    }
  }

  /** Stops sending; waits a little for batches in flight, then closes the link. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const unsubscribe of this.unsubscribe.splice(0)) unsubscribe();
    if (this.options.registry !== undefined) lagSources.get(this.options.registry)?.delete(this);
    for (const lane of this.lanes) lane.poke();
    this.rescanWake?.();
    await Promise.all(this.lanes.map((lane) => lane.loop));
    const deadline = Date.now() + 2000;
    while (this.lanes.some((lane) => lane.flights.some((flight) => !flight.done)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await this.cursorCommits;
    await this.options.sender.close?.();
    // After the link is closed: a rescan waiting for a batch's answer fails at once then
    // (instead of holding the site's shutdown up to the request timeout), and stops.
    await this.rescanLoop;
  }
}
