/**
 * Gathers the records the gateway accepts during one turn of the event loop into a single
 * `append` call, and settles each message's callback when that call is durable.
 *
 * Why: a whole socket read can carry hundreds of PUBLISH packets; one append per message
 * would cost the log one savepoint and one promise each. The batcher never waits for a
 * commit before starting the next batch, so the connection keeps many messages in flight
 * while the disk works, and offsets follow arrival order because batches are appended in
 * the order they close.
 */
import type { NewRecord } from '../../core/index.js';

/** What the batcher needs of the log: a `RecordAppender`, or the channel to one on another thread. */
export interface DurableAppend {
  /** Resolves once every record of the call is durable; rejects if none of it is. */
  append(records: readonly NewRecord[]): Promise<unknown>;
}

export type CommitCallback = (error: Error | undefined) => void;

export class CommitBatcher {
  private records: NewRecord[] = [];
  private callbacks: CommitCallback[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(
    private readonly appender: DurableAppend,
    private readonly maxBatchRecords: number,
    private readonly onCommitted: (records: number, elapsedMs: number) => void = () => undefined,
  ) {}

  add(record: NewRecord, callback: CommitCallback): void {
    this.records.push(record);
    this.callbacks.push(callback);
    if (this.records.length >= this.maxBatchRecords) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Appends not yet durable (for shutdown and metrics). */
  get pending(): number {
    return this.inFlight + this.records.length;
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    if (this.records.length === 0) return;
    const records = this.records;
    const callbacks = this.callbacks;
    this.records = [];
    this.callbacks = [];
    this.inFlight += records.length;
    const startedAt = performance.now();
    this.appender.append(records).then(
      () => {
        this.inFlight -= records.length;
        this.onCommitted(records.length, performance.now() - startedAt);
        for (const callback of callbacks) callback(undefined);
      },
      (error: unknown) => {
        this.inFlight -= records.length;
        const failure = error instanceof Error ? error : new Error(String(error));
        for (const callback of callbacks) callback(failure);
      },
    );
  };

  /** Resolves once everything added so far is durable or failed. */
  async drain(): Promise<void> {
    this.flush();
    while (this.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
