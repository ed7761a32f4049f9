/**
 * Notices when the site's event loop was held: a timer that should tick every `tickMs` and
 * came late by more than `blockedMs`. While the loop is held the site answers nobody, and
 * its peers' links give up on it after their stall timeout (3 s in the voyage), so a hold
 * that long is logged (with how long) and counted. Seen from outside it looks like a network
 * fault; this says it was the process.
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

export interface LoopWatchOptions {
  readonly logger: Logger;
  readonly registry: Registry;
  /** A late tick by more than this is a hold worth logging. */
  readonly blockedMs?: number;
  readonly tickMs?: number;
}

export function watchEventLoop(options: LoopWatchOptions): { stop(): void } {
  const blockedMs = options.blockedMs ?? 1000;
  const tickMs = options.tickMs ?? 250;
  const holds = new Counter({
    name: 'portcall_event_loop_holds_total',
    help: `Times the event loop was held for more than ${blockedMs} ms (a timer due every ${tickMs} ms came that late)`,
    registers: [options.registry],
  });
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const lateMs = now - last - tickMs;
    last = now;
    if (lateMs <= blockedMs) return;
    holds.inc();
    options.logger.warn({ heldMs: Math.round(lateMs + tickMs) }, 'event loop was held: nothing was answered meanwhile');
  }, tickMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
