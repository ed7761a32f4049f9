/**
 * Runs the fleet detectors over a site's log as it grows, and appends what they raise to the
 * `alerts` stream, durably, before it moves its cursors.
 *
 * Invariants:
 * - An alert is appended (durable) before the cursors pass the records that raised it, so a
 *   crash never loses one: after a restart those records are read again.
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
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export function detectorCursorName(stream: string): string {
  return `detectors/${stream}`;
}

export class DetectorRunner {
  private readonly detectors: FleetDetectors;
  private readonly positions = new Map<string, number>();
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
    for (const stream of INPUT_STREAMS) {
      const position = next.get(stream)!;
      if (position === this.positions.get(stream)) continue;
      this.positions.set(stream, position);
      const committed = await source.getCursor(detectorCursorName(stream));
      if (committed === undefined || position > committed) await source.commitCursor(detectorCursorName(stream), position);
    }
    return true;
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

  /** Resolves once everything durable so far has been read (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
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
