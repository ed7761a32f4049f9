import { pino } from 'pino';
import { Registry } from 'prom-client';
import { expect, it } from 'vitest';
import { watchEventLoop } from '../site/loop-watch.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Holds this thread's event loop, as a long synchronous commit or scan would. */
function holdLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy: nothing else runs
  }
}

it('logs and counts a hold of the event loop longer than blockedMs, and not a shorter one', async () => {
  const lines: string[] = [];
  const registry = new Registry();
  const watch = watchEventLoop({ logger: pino({ level: 'warn' }, { write: (line: string) => lines.push(line) }), registry, blockedMs: 300, tickMs: 50 });
  try {
    await sleep(120);
    holdLoop(100);
    await sleep(120);
    expect(lines).toEqual([]);
    holdLoop(600);
    await sleep(120);
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!) as { msg: string; heldMs: number };
    expect(entry.msg).toBe('event loop was held: nothing was answered meanwhile');
    expect(entry.heldMs).toBeGreaterThanOrEqual(600);
    expect(entry.heldMs).toBeLessThan(5000);
    expect((await registry.getSingleMetric('portcall_event_loop_holds_total')!.get()).values[0]!.value).toBe(1);
  } finally {
    watch.stop();
  }
});
