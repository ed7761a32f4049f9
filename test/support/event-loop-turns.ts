/**
 * Counts turns of the event loop (one per check phase) until stopped: tests that work must yield
 * between pieces (dispatch turns, summaries) read it before and after.
 */
export class EventLoopTurns {
  count = 0;
  private stopped = false;

  constructor() {
    const tick = () => {
      if (this.stopped) return;
      this.count += 1;
      setImmediate(tick);
    };
    setImmediate(tick);
  }

  stop(): void {
    this.stopped = true;
  }
}
