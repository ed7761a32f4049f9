/**
 * Runs the fleet detectors over a site's log as it grows, and appends what they raise to the
 * `alerts` stream, durably, before it moves its cursors.
 *
 * Invariants:
 * - An alert is appended (durable) before the cursors pass the records that raised it, so a
 *   crash never loses one: after a restart those records are read again. The cursors are
 *   committed at most once per `cursorCommitIntervalMs` (and when idle or closing), not after
 *   every pass: a pass follows every group commit, and a synchronous fsync'd cursor write per
 *   pass was a second fsync per commit on the site's main thread (about 12 s of the ship's in
 *   the voyage). A cursor that lags only means more records read again after a crash, which
 *   the episode rule below makes harmless.
 * - An alert is appended once per episode: before appending, the runner looks for the
 *   episode's key among the latest alerts of that container (the `alert-episode` header), so
 *   records read again after a crash do not raise it twice.
 * - Detectors keep state (a shock waiting for silence, an excursion's start): at start the
 *   runner replays the manifests stream whole (who is aboard what) and the last
 *   `rewindRecords` of the other streams before its cursors, so state that spans a restart
 *   is rebuilt; alerts raised during that replay are the duplicates the previous rule drops.
 * - Records are fed in event-time order within each read (the streams interleave by time),
 *   and silence is judged only when every stream has been read to its end: while catching
 *   up, one stream read ahead of another would make a container look silent that is not.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { CursorStore, LogRecord, RecordAppender, StreamSource, TopicReader } from '../../core/index.js';
import { FleetDetectors, type AlertDraft, type DetectorOptions } from './detectors.js';

export const ALERTS_STREAM = 'alerts';
const INPUT_STREAMS = ['manifests', 'ships', 'containers'] as const;
/** How many of a container's latest alerts are checked for an episode already raised. */
const EPISODE_LOOKBACK = 50;

export interface DetectorRunnerOptions {
  readonly source: StreamSource & CursorStore & TopicReader;
  readonly appender: RecordAppender;
  readonly detectors?: Partial<DetectorOptions>;
  /** Records of each stream read again before the cursor at start, to rebuild state. */
  readonly rewindRecords?: number;
  readonly pageRecords?: number;
  /** Cursors are committed at most this often while records keep coming (default 1000 ms). */
  readonly cursorCommitIntervalMs?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export function detectorCursorName(stream: string): string {
  return `detectors/${stream}`;
}

export class DetectorRunner {
  private readonly detectors: FleetDetectors;
  private readonly positions = new Map<string, number>();
  /** What the cursor store holds for each stream, as this runner last committed or read it. */
  private readonly committed = new Map<string, number>();
  private lastCommitAtMs = Number.NEGATIVE_INFINITY;
  private commitTimer: NodeJS.Timeout | undefined;
  private readonly alertsRaised: Counter<'kind'>;
  private readonly unreadable: Counter;
  private unsubscribe: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private lastError: string | undefined;
  raised = 0;

  constructor(private readonly options: DetectorRunnerOptions) {
    this.detectors = new FleetDetectors(options.detectors);
    const registers = options.registry === undefined ? [] : [options.registry];
    this.alertsRaised = new Counter({ name: 'portcall_detector_alerts_total', help: 'Alerts the detectors appended, by kind', labelNames: ['kind'], registers });
    this.unreadable = new Counter({ name: 'portcall_detector_unreadable_records_total', help: 'Records the detectors could not read as JSON objects (skipped)', registers });
  }

  /** Rebuilds state from the log, then follows it. */
  async start(): Promise<void> {
    const source = this.options.source;
    const rewind = this.options.rewindRecords ?? 50_000;
    for (const stream of INPUT_STREAMS) {
      const committed = (await source.getCursor(detectorCursorName(stream))) ?? 0;
      this.committed.set(stream, committed);
      this.positions.set(stream, stream === 'manifests' ? 0 : Math.max(0, committed - rewind));
    }
    this.unsubscribe = source.onDurable((stream) => {
      if ((INPUT_STREAMS as readonly string[]).includes(stream)) this.poke();
    });
    this.poke();
    await this.running;
  }

  /** Reads until caught up; concurrent pokes fold into one more pass. */
  private poke(): void {
    if (this.closed) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          while (!this.closed && (await this.pass())) {
            // More to read: give the event loop a turn first (the embedded log reads
            // synchronously, so a long catch-up would otherwise starve every other request).
            await nextTurn();
          }
          this.lastError = undefined;
        } catch (error) {
          this.lastError = (error as Error).message;
          this.options.logger?.warn({ err: error }, 'detectors: a pass failed; retrying on the next record');
        }
      } while (this.again && !this.closed);
      this.running = undefined;
    })();
  }

  /** One read of every input stream; true if anything was read. */
  private async pass(): Promise<boolean> {
    const source = this.options.source;
    const pageRecords = this.options.pageRecords ?? 5000;
    const records: LogRecord[] = [];
    const next = new Map<string, number>();
    let caughtUp = true;
    for (const stream of INPUT_STREAMS) {
      const page = await source.readStream(stream, this.positions.get(stream)!, { maxRecords: pageRecords });
      records.push(...page.records);
      next.set(stream, page.nextPosition);
      if (page.records.length >= pageRecords) caughtUp = false;
    }
    if (records.length === 0) {
      // Nothing new, but the clock may have passed a silence since the last check.
      for (const draft of this.detectors.checkSilences()) await this.raise(draft);
      return false;
    }
    // Stable: records of equal event time keep their stream order (manifests, ships, containers).
    records.sort((left, right) => left.eventTimeMs - right.eventTimeMs);
    const drafts: AlertDraft[] = [];
    const unreadableBefore = this.detectors.unreadable;
    for (const record of records) drafts.push(...this.detectors.observe(record));
    // Silence is only judged once every stream was read to the same moment.
    if (caughtUp) drafts.push(...this.detectors.checkSilences());
    this.unreadable.inc(this.detectors.unreadable - unreadableBefore);
    for (const draft of drafts) await this.raise(draft);
    for (const stream of INPUT_STREAMS) this.positions.set(stream, next.get(stream)!);
    // Every alert these records raised is durable by now: the cursors may pass them.
    const intervalMs = this.options.cursorCommitIntervalMs ?? 1000;
    const dueInMs = this.lastCommitAtMs + intervalMs - performance.now();
    if (dueInMs <= 0) await this.commitCursors();
    else this.commitLater(dueInMs);
    return true;
  }

  /** Records may stop coming: the cursors still get there, a moment later (never during a pass). */
  private commitLater(delayMs: number): void {
    if (this.commitTimer !== undefined) return;
    this.commitTimer = setTimeout(() => {
      this.commitTimer = undefined;
      if (this.closed) return;
      if (this.running !== undefined) return this.commitLater(50);
      void this.commitCursors().catch((error: unknown) => this.noteCommitFailure(error));
    }, delayMs);
    this.commitTimer.unref();
  }

  /** Commits each cursor the positions have passed (alerts raised before them are durable). */
  private async commitCursors(): Promise<void> {
    if (this.commitTimer !== undefined) clearTimeout(this.commitTimer);
    this.commitTimer = undefined;
    this.lastCommitAtMs = performance.now();
    for (const stream of INPUT_STREAMS) {
      const position = this.positions.get(stream)!;
      if (position <= (this.committed.get(stream) ?? 0)) continue;
      await this.options.source.commitCursor(detectorCursorName(stream), position);
      this.committed.set(stream, position);
    }
  }

  private noteCommitFailure(error: unknown): void {
    this.lastError = (error as Error).message;
    this.options.logger?.warn({ err: error }, 'detectors: could not commit the cursors; retrying after the next pass');
  }

  private async raise(draft: AlertDraft): Promise<void> {
    const source = this.options.source;
    const latest = await source.latest(ALERTS_STREAM, draft.container);
    if (latest !== undefined) {
      const from = Math.max(0, latest.offset + 1 - EPISODE_LOOKBACK);
      const recent = await source.readTopic(ALERTS_STREAM, draft.container, from, { maxRecords: EPISODE_LOOKBACK });
      if (recent.some((record) => record.headers['alert-episode'] === draft.episode)) return;
    }
    await this.options.appender.append([
      {
        stream: ALERTS_STREAM,
        topic: draft.container,
        eventTimeMs: draft.timeMs,
        headers: { 'alert-kind': draft.kind, 'alert-source': `containers/${draft.container}`, 'alert-episode': draft.episode },
        payload: Buffer.from(JSON.stringify(draft.body)),
      },
    ]);
    this.raised += 1;
    this.alertsRaised.inc({ kind: draft.kind });
    this.options.logger?.warn({ alert: draft.body }, `alert: ${draft.kind} ${draft.container}`);
  }

  /** Resolves once everything durable so far has been read and the cursors committed (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
    if (this.positions.size > 0) await this.commitCursors();
  }

  stats(): { raised: number; positions: Record<string, number>; lastError: string | undefined } {
    return { raised: this.raised, positions: Object.fromEntries(this.positions), lastError: this.lastError };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    await this.idle();
  }
}
