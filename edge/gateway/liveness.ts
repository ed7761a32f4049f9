/**
 * Last-seen per topic and a silence watchdog: when a topic that was reporting stays silent
 * longer than its stream's threshold, the watchdog appends one alert record (stream
 * `alerts`, topic = the silent topic's name) carrying the last reading and when it came.
 * It fires once per silence; the next reading re-arms it.
 */
import type { NewRecord } from '../../core/index.js';

export interface SilenceAlert {
  readonly kind: 'silence';
  readonly stream: string;
  readonly topic: string;
  readonly lastSeen: string;
  readonly silentForMs: number;
  readonly thresholdMs: number;
  readonly lastReading: unknown;
}

interface Seen {
  readonly stream: string;
  readonly topic: string;
  lastSeenMs: number;
  lastReading: unknown;
  alerted: boolean;
}

export const ALERTS_STREAM = 'alerts';

export class LivenessWatch {
  private readonly seen = new Map<string, Seen>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** Silence threshold by stream; streams not listed are never alerted on. */
    private readonly thresholdsMs: ReadonlyMap<string, number>,
    private readonly raise: (record: NewRecord) => Promise<void>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether readings of this stream are watched (and so must be passed to `record`). */
  watches(stream: string): boolean {
    return this.thresholdsMs.has(stream);
  }

  record(stream: string, topic: string, reading: unknown): void {
    if (!this.thresholdsMs.has(stream)) return;
    const key = `${stream}\u0000${topic}`;
    const entry = this.seen.get(key);
    if (entry === undefined) {
      this.seen.set(key, { stream, topic, lastSeenMs: this.now(), lastReading: reading, alerted: false });
    } else {
      entry.lastSeenMs = this.now();
      entry.lastReading = reading;
      entry.alerted = false;
    }
  }

  lastSeenMs(stream: string, topic: string): number | undefined {
    return this.seen.get(`${stream}\u0000${topic}`)?.lastSeenMs;
  }

  get topicsWatched(): number {
    return this.seen.size;
  }

  start(checkIntervalMs: number): void {
    if (this.thresholdsMs.size === 0) return;
    this.timer = setInterval(() => void this.check(), checkIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Raises an alert for every topic silent past its threshold; returns how many. */
  async check(): Promise<number> {
    const now = this.now();
    const raised: Promise<void>[] = [];
    for (const entry of this.seen.values()) {
      const thresholdMs = this.thresholdsMs.get(entry.stream)!;
      const silentForMs = now - entry.lastSeenMs;
      if (entry.alerted || silentForMs < thresholdMs) continue;
      entry.alerted = true;
      const alert: SilenceAlert = {
        kind: 'silence',
        stream: entry.stream,
        topic: entry.topic,
        lastSeen: new Date(entry.lastSeenMs).toISOString(),
        silentForMs,
        thresholdMs,
        lastReading: entry.lastReading,
      };
      raised.push(
        this.raise({
          stream: ALERTS_STREAM,
          topic: entry.topic,
          eventTimeMs: now,
          headers: { 'alert-kind': 'silence', 'alert-source': `${entry.stream}/${entry.topic}` },
          payload: Buffer.from(JSON.stringify({ ts: now, ...alert })),
        }).catch(() => {
          // Not durable: try again on the next check.
          entry.alerted = false;
        }),
      );
    }
    await Promise.all(raised);
    return raised.length;
  }
}
