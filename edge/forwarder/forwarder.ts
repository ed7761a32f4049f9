/**
 * Moves a site's log to one destination, stream by stream, exactly where it left off.
 *
 * Invariants:
 * - The cursor of (destination, stream) only advances after the destination acknowledged
 *   that the batch is durable there, so after any crash or link failure the forwarder
 *   resends from the last acknowledged position and nothing is skipped.
 * - Resending is safe because the destination drops records it already holds by identity.
 * - Streams are visited in priority order and the walk restarts at the top after every
 *   batch, so a record of a higher-priority stream (alerts) waits for at most one batch.
 */
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CursorStore, LogRecord, ReplicateResult, StreamSource } from '../../core/index.js';
import { PortcallError } from '../../core/index.js';

/** What the forwarder pushes into: the link to the destination. */
export interface BatchSender {
  readonly destination: string;
  send(records: readonly LogRecord[]): Promise<ReplicateResult & { wireBytes?: number }>;
}

export interface ForwarderOptions {
  /** Names the destination in cursor names and metrics; stable across restarts. */
  readonly linkName: string;
  readonly source: StreamSource & CursorStore;
  readonly sender: BatchSender;
  /** Streams to forward, highest priority first. */
  readonly streams: readonly string[];
  readonly maxBatchRecords?: number;
  readonly maxBatchBytes?: number;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export interface ForwarderStats {
  recordsForwarded: number;
  batchesAcknowledged: number;
  duplicatesAtDestination: number;
  wireBytes: number;
  failures: number;
  lastError: string | undefined;
  lastAckAtMs: number | undefined;
}

/** Name of the durable cursor of one link and stream; retention waits for it (mustForward). */
export function forwardCursorName(linkName: string, stream: string): string {
  return `forward/${linkName}/${stream}`;
}

export class Forwarder {
  private readonly cursors = new Map<string, number>();
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private cancelSleep: (() => void) | undefined;
  private dirty = true;
  private unsubscribe: (() => void) | undefined;
  private readonly statsValue: ForwarderStats = {
    recordsForwarded: 0,
    batchesAcknowledged: 0,
    duplicatesAtDestination: 0,
    wireBytes: 0,
    failures: 0,
    lastError: undefined,
    lastAckAtMs: undefined,
  };
  private readonly metrics;

  constructor(private readonly options: ForwarderOptions) {
    const registers = options.registry === undefined ? [] : [options.registry];
    const labelNames = ['link'] as const;
    this.metrics = {
      records: new Counter({
        name: 'portcall_forwarder_records_total',
        help: 'Records acknowledged by the destination',
        labelNames,
        registers,
      }),
      wireBytes: new Counter({
        name: 'portcall_forwarder_wire_bytes_total',
        help: 'Encoded batch bytes sent and acknowledged',
        labelNames,
        registers,
      }),
      failures: new Counter({
        name: 'portcall_forwarder_failures_total',
        help: 'Batches that failed to send, by reason code',
        labelNames: ['link', 'code'],
        registers,
      }),
      up: new Gauge({ name: 'portcall_link_up', help: '1 when the last send succeeded', labelNames, registers }),
    };
  }

  private cursorName(stream: string): string {
    return forwardCursorName(this.options.linkName, stream);
  }

  stats(): Readonly<ForwarderStats> {
    return this.statsValue;
  }

  async start(): Promise<void> {
    if (this.running) return;
    for (const stream of this.options.streams) {
      this.cursors.set(stream, (await this.options.source.getCursor(this.cursorName(stream))) ?? 0);
    }
    this.running = true;
    this.unsubscribe = this.options.source.onDurable((stream) => {
      if (this.cursors.has(stream)) this.poke();
    });
    this.loop = this.run();
  }

  private poke(): void {
    this.dirty = true;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async run(): Promise<void> {
    let retryDelayMs = this.options.retryInitialMs ?? 200;
    while (this.running) {
      if (!this.dirty) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      this.dirty = false;
      try {
        while (this.running && (await this.forwardOneBatch())) {
          retryDelayMs = this.options.retryInitialMs ?? 200;
        }
      } catch (error) {
        this.recordFailure(error);
        this.dirty = true;
        await this.sleep(retryDelayMs);
        retryDelayMs = Math.min(retryDelayMs * 2, this.options.retryMaxMs ?? 10_000);
      }
    }
  }

  /** Sends the next batch of the highest-priority stream with anything new; false if none. */
  private async forwardOneBatch(): Promise<boolean> {
    for (const stream of this.options.streams) {
      const after = this.cursors.get(stream) ?? 0;
      const page = await this.options.source.readStream(stream, after, {
        maxRecords: this.options.maxBatchRecords ?? 5000,
        maxBytes: this.options.maxBatchBytes ?? 2 * 1024 * 1024,
      });
      if (page.records.length === 0) continue;
      const ack = await this.options.sender.send(page.records);
      await this.options.source.commitCursor(this.cursorName(stream), page.nextPosition);
      this.cursors.set(stream, page.nextPosition);
      this.recordAck(page.records.length, ack);
      return true;
    }
    return false;
  }

  private recordAck(records: number, ack: ReplicateResult & { wireBytes?: number }): void {
    const link = this.options.linkName;
    this.statsValue.recordsForwarded += records;
    this.statsValue.batchesAcknowledged += 1;
    this.statsValue.duplicatesAtDestination += ack.duplicates;
    this.statsValue.wireBytes += ack.wireBytes ?? 0;
    this.statsValue.lastAckAtMs = Date.now();
    this.statsValue.lastError = undefined;
    this.metrics.records.inc({ link }, records);
    this.metrics.wireBytes.inc({ link }, ack.wireBytes ?? 0);
    this.metrics.up.set({ link }, 1);
  }

  private recordFailure(error: unknown): void {
    const code = error instanceof PortcallError ? error.code : 'UNEXPECTED';
    const message = (error as Error).message;
    this.statsValue.failures += 1;
    if (this.statsValue.lastError !== message) {
      this.options.logger?.warn({ link: this.options.linkName, code, err: message }, 'forwarding failed; will retry');
    }
    this.statsValue.lastError = message;
    this.metrics.failures.inc({ link: this.options.linkName, code });
    this.metrics.up.set({ link: this.options.linkName }, 0);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.cancelSleep = undefined;
        resolve();
      }, ms);
      // New records must not cut a back-off short (that would hammer a failing link), but
      // stop() must not wait it out either.
      this.cancelSleep = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Stops after the batch in flight, if any, is acknowledged or fails. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribe?.();
    this.cancelSleep?.();
    this.poke();
    await this.loop;
  }
}
