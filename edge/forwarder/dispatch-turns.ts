/**
 * Turns of the event loop shared by a site's forwarders: one lane reads, encodes and sends one
 * batch per turn, an alert lane before any bulk lane.
 *
 * Why: reading a page of 10,000 records and encoding it is 100–200 ms of synchronous work.
 * Each lane used to yield with its own `setImmediate`, so every lane with work ran its page in
 * the same turn: a port forwarding a backlog to four peers (two lanes each) held its event
 * loop for 1.3–2.9 s at a time in the voyage (site/loop-watch.ts; a CPU profile put the time
 * in several lanes' readStream and encodeBatchV2 back to back), answering nothing meanwhile,
 * and its peers' links, whose stall timeout there is 3 s, came close to giving up on it.
 * One batch per turn keeps a turn near one batch's cost whatever the number of links; the
 * total work is the same.
 *
 * Invariant: a lane that asked for a turn gets one within (lanes waiting ahead of it) turns;
 * urgent lanes are granted first, in the order they asked, then bulk lanes in theirs.
 */
export class DispatchTurns {
  private readonly urgent: (() => void)[] = [];
  private readonly bulk: (() => void)[] = [];
  private scheduled = false;
  /** Turns granted so far (for tests and metrics). */
  granted = 0;

  /** Resolves in a later turn of the event loop, when this lane may read and send one batch. */
  take(urgent: boolean): Promise<void> {
    return new Promise((resolve) => {
      (urgent ? this.urgent : this.bulk).push(resolve);
      this.schedule();
    });
  }

  get waiting(): number {
    return this.urgent.length + this.bulk.length;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.grant());
  }

  private grant(): void {
    this.scheduled = false;
    const next = this.urgent.shift() ?? this.bulk.shift();
    if (next === undefined) return;
    this.granted += 1;
    // The lane's batch runs in this turn's microtasks; the next lane waits for the next turn.
    next();
    if (this.waiting > 0) this.schedule();
  }
}
