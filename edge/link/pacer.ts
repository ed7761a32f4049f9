/**
 * Writes request bodies onto the link in small pieces, at no more than the link's bandwidth
 * cap, urgent bodies first.
 *
 * Why the sender paces itself rather than letting TCP fill the pipe: on a satellite link the
 * bottleneck (the modem) holds whatever it is given in one FIFO queue. Whatever bulk data
 * sits there is ahead of an alert, however the alert is prioritised afterwards, so the only
 * way to keep an alert's latency independent of the backlog is to never hand the link more
 * than it can carry right now. With the cap at (or just under) the link's rate, the modem's
 * queue stays empty, and an alert waits for at most one piece of bulk data in flight.
 *
 * Bulk bodies are written strictly one after another, so the receiver sees batches of a
 * stream complete in the order they were read (it refuses a batch that would leave a gap).
 */

/** Where a body goes: an HTTP/2 request stream. */
export interface BodySink {
  write(chunk: Buffer): boolean;
  end(): void;
  once(event: 'drain', listener: () => void): unknown;
  readonly destroyed: boolean;
}

interface Job {
  readonly sink: BodySink;
  readonly body: Buffer;
  offset: number;
  blocked: boolean;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Largest piece written at once; an urgent body waits for at most this much bulk data. */
const MAX_PIECE_BYTES = 16 * 1024;
/** Under a cap, a piece is about this much of the link's time. */
const PIECE_MS = 20;
const MIN_PIECE_BYTES = 1024;

export class Pacer {
  private bytesPerSecond: number | undefined;
  private tokens = 0;
  private refilledAt = performance.now();
  private readonly urgent: Job[] = [];
  private readonly bulk: Job[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pumping = false;
  /** Body bytes written, for metrics and tests. */
  written = 0;

  constructor(bytesPerSecond?: number) {
    this.setRate(bytesPerSecond);
  }

  get rate(): number | undefined {
    return this.bytesPerSecond;
  }

  setRate(bytesPerSecond: number | undefined): void {
    this.bytesPerSecond = bytesPerSecond !== undefined && bytesPerSecond > 0 ? bytesPerSecond : undefined;
    this.tokens = Math.min(this.tokens, this.pieceBytes());
    this.pump();
  }

  private pieceBytes(): number {
    if (this.bytesPerSecond === undefined) return MAX_PIECE_BYTES;
    return Math.max(MIN_PIECE_BYTES, Math.min(MAX_PIECE_BYTES, Math.round((this.bytesPerSecond * PIECE_MS) / 1000)));
  }

  /** Resolves once the whole body is handed to the sink (and the sink ended). */
  send(sink: BodySink, body: Buffer, urgent: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      (urgent ? this.urgent : this.bulk).push({ sink, body, offset: 0, blocked: false, resolve, reject });
      this.pump();
    });
  }

  /** Drops a body not yet fully written (its request failed). */
  cancel(sink: BodySink, error: unknown): void {
    for (const queue of [this.urgent, this.bulk]) {
      const index = queue.findIndex((job) => job.sink === sink);
      if (index >= 0) queue.splice(index, 1)[0]!.reject(error);
    }
    this.pump();
  }

  cancelAll(error: unknown): void {
    for (const job of [...this.urgent.splice(0), ...this.bulk.splice(0)]) job.reject(error);
  }

  private next(): Job | undefined {
    const urgent = this.urgent.find((job) => !job.blocked);
    if (urgent !== undefined) return urgent;
    const bulk = this.bulk[0];
    return bulk !== undefined && !bulk.blocked ? bulk : undefined;
  }

  private refill(): void {
    const now = performance.now();
    if (this.bytesPerSecond !== undefined) {
      this.tokens = Math.min(this.pieceBytes(), this.tokens + ((now - this.refilledAt) * this.bytesPerSecond) / 1000);
    }
    this.refilledAt = now;
  }

  private pump(): void {
    if (this.pumping) return;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pumping = true;
    try {
      for (;;) {
        const job = this.next();
        if (job === undefined) return;
        if (job.sink.destroyed) {
          this.finish(job, new Error('request closed before its body was written'));
          continue;
        }
        const length = Math.min(this.pieceBytes(), job.body.length - job.offset);
        if (this.bytesPerSecond !== undefined) {
          this.refill();
          if (this.tokens < length) {
            const waitMs = ((length - this.tokens) * 1000) / this.bytesPerSecond;
            this.timer = setTimeout(() => {
              this.timer = undefined;
              this.pump();
            }, Math.max(1, Math.ceil(waitMs)));
            return;
          }
          this.tokens -= length;
        }
        const writable = job.sink.write(job.body.subarray(job.offset, job.offset + length));
        job.offset += length;
        this.written += length;
        if (job.offset >= job.body.length) {
          job.sink.end();
          this.finish(job);
        } else if (!writable) {
          job.blocked = true;
          job.sink.once('drain', () => {
            job.blocked = false;
            this.pump();
          });
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private finish(job: Job, error?: unknown): void {
    for (const queue of [this.urgent, this.bulk]) {
      const index = queue.indexOf(job);
      if (index >= 0) queue.splice(index, 1);
    }
    if (error === undefined) job.resolve();
    else job.reject(error);
  }
}
