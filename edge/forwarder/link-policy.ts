/**
 * A link's state and bandwidth, decided from four sources, the first that says something
 * winning:
 *
 *   1. an override set over HTTP (`PUT /v1/links/<name>/state`), optionally for a while;
 *   2. a switch file the ship's own systems write (`up`, `down` or `metered`, optionally
 *      followed by a bandwidth in bytes/s), read every second;
 *   3. the first schedule window (UTC) that contains the current time;
 *   4. the configured default.
 *
 * `up` sends everything, `metered` only the urgent streams (alerts) and summary streams,
 * `down` nothing. The bandwidth cap is the source's own, else the configured one.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';

export const LINK_STATES = ['up', 'metered', 'down'] as const;
export type LinkState = (typeof LINK_STATES)[number];

export type ConditionSource = 'override' | 'switch-file' | 'schedule' | 'default';

export interface LinkCondition {
  readonly state: LinkState;
  readonly bandwidthBytesPerSecond: number | undefined;
  readonly source: ConditionSource;
}

export interface ScheduleWindow {
  /** Days of the week (0 = Sunday) the window applies on; every day when absent. */
  readonly days?: readonly number[];
  /** Minutes after midnight UTC; a window with from > to runs over midnight. */
  readonly fromMinute: number;
  readonly toMinute: number;
  readonly state: LinkState;
  readonly bandwidthBytesPerSecond?: number;
}

export interface LinkPolicyOptions {
  readonly state?: LinkState;
  readonly bandwidthBytesPerSecond?: number;
  readonly schedule?: readonly ScheduleWindow[];
  readonly switchFile?: string;
  /** How often the switch file and the schedule are looked at. */
  readonly pollIntervalMs?: number;
  readonly now?: () => number;
  readonly logger?: Logger;
}

export interface LinkOverride {
  readonly state: LinkState;
  readonly bandwidthBytesPerSecond?: number;
  /** Epoch ms after which the override lapses; forever when absent. */
  readonly untilMs?: number;
}

/** Parses a switch file: `up`, `down` or `metered`, optionally followed by bytes per second. */
export function parseSwitch(text: string): { state: LinkState; bandwidthBytesPerSecond?: number } {
  const words = text.trim().split(/\s+/);
  const state = words[0]?.toLowerCase();
  if (!LINK_STATES.includes(state as LinkState)) {
    throw new Error(`expected "up", "down" or "metered" (optionally followed by bytes per second), got "${text.trim().slice(0, 40)}"`);
  }
  if (words.length > 2) throw new Error(`expected at most two words, got "${text.trim().slice(0, 40)}"`);
  if (words[1] === undefined) return { state: state as LinkState };
  const bandwidth = Number(words[1]);
  if (!Number.isInteger(bandwidth) || bandwidth <= 0) throw new Error(`bandwidth must be a whole number of bytes per second, got "${words[1]}"`);
  return { state: state as LinkState, bandwidthBytesPerSecond: bandwidth };
}

export function windowContains(window: ScheduleWindow, atMs: number): boolean {
  const date = new Date(atMs);
  const minute = date.getUTCHours() * 60 + date.getUTCMinutes();
  const inside =
    window.fromMinute <= window.toMinute
      ? minute >= window.fromMinute && minute < window.toMinute
      : minute >= window.fromMinute || minute < window.toMinute;
  if (!inside) return false;
  if (window.days === undefined) return true;
  // A window over midnight belongs to the day it started on.
  const day = window.fromMinute > window.toMinute && minute < window.toMinute ? (date.getUTCDay() + 6) % 7 : date.getUTCDay();
  return window.days.includes(day);
}

export class LinkPolicy {
  private override: LinkOverride | undefined;
  private switchValue: { state: LinkState; bandwidthBytesPerSecond?: number } | undefined;
  private switchText: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private last: LinkCondition;
  private readonly listeners = new Set<(condition: LinkCondition) => void>();
  private readonly now: () => number;

  constructor(private readonly options: LinkPolicyOptions = {}) {
    this.now = options.now ?? Date.now;
    this.last = this.evaluate();
  }

  /** Reads the switch file once and starts watching it and the schedule. */
  async start(): Promise<void> {
    await this.readSwitch();
    this.refresh();
    this.timer = setInterval(() => void this.readSwitch().then(() => this.refresh()), this.options.pollIntervalMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  current(): LinkCondition {
    return this.last;
  }

  onChange(listener: (condition: LinkCondition) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setOverride(override: LinkOverride | undefined): LinkCondition {
    this.override = override;
    this.refresh();
    return this.last;
  }

  getOverride(): LinkOverride | undefined {
    return this.override;
  }

  private async readSwitch(): Promise<void> {
    const file = this.options.switchFile;
    if (file === undefined) return;
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') {
        this.options.logger?.warn({ file, err: (error as Error).message }, 'cannot read link switch file; ignoring it');
      }
      text = undefined;
    }
    if (text === this.switchText) return;
    this.switchText = text;
    if (text === undefined || text.trim() === '') {
      this.switchValue = undefined;
      return;
    }
    try {
      this.switchValue = parseSwitch(text);
    } catch (error) {
      // A half-written or mistyped file must not take the link down: keep the last good value.
      this.options.logger?.warn({ file, err: (error as Error).message }, 'link switch file not understood; keeping the previous setting');
    }
  }

  private evaluate(): LinkCondition {
    const nowMs = this.now();
    const configured = this.options.bandwidthBytesPerSecond;
    const override = this.override;
    if (override !== undefined && (override.untilMs === undefined || override.untilMs > nowMs)) {
      return { state: override.state, bandwidthBytesPerSecond: override.bandwidthBytesPerSecond ?? configured, source: 'override' };
    }
    if (this.switchValue !== undefined) {
      return { state: this.switchValue.state, bandwidthBytesPerSecond: this.switchValue.bandwidthBytesPerSecond ?? configured, source: 'switch-file' };
    }
    const window = this.options.schedule?.find((candidate) => windowContains(candidate, nowMs));
    if (window !== undefined) {
      return { state: window.state, bandwidthBytesPerSecond: window.bandwidthBytesPerSecond ?? configured, source: 'schedule' };
    }
    return { state: this.options.state ?? 'up', bandwidthBytesPerSecond: configured, source: 'default' };
  }

  /** Re-evaluates and tells listeners if anything changed. */
  refresh(): void {
    const next = this.evaluate();
    const previous = this.last;
    this.last = next;
    if (next.state !== previous.state || next.bandwidthBytesPerSecond !== previous.bandwidthBytesPerSecond || next.source !== previous.source) {
      this.options.logger?.info({ state: next.state, bandwidthBytesPerSecond: next.bandwidthBytesPerSecond, source: next.source }, 'link condition changed');
      for (const listener of this.listeners) listener(next);
    }
  }
}
