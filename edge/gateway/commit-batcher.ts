/**
 * Gathers the records the gateway accepts during one turn of the event loop into a single
 * `append` call, and tells each message's waiter when that call is durable.
 *
 * Why: a whole socket read can carry hundreds of PUBLISH packets; one append per message
 * would cost the log one savepoint and one promise each. The batcher never waits for a
 * commit before starting the next batch, so the connection keeps many messages in flight
 * while the disk works, and offsets follow arrival order because batches are appended in
 * the order they close.
 *
 * Per message it keeps the record and its waiter in two arrays, with no closure: waiters are
 * objects (an ack gate's entry, say) or plain callbacks for the rarer paths.
 */
import { RecordsRefusedError, type NewRecord } from '../../core/index.js';

/** What the batcher needs of the log: a `RecordAppender`, or the channel to one on another thread. */
export interface DurableAppend {
  /**
   * Resolves once every record of the call is durable; rejects if none of it is, or with
   * RecordsRefusedError when the records it names were refused and the rest are durable.
   */
  append(records: readonly NewRecord[]): Promise<unknown>;
}

export type CommitCallback = (error: Error | undefined) => void;

/** Told once whether its record is durable (`undefined`) or not (the error). */
export interface CommitWaiter {
  committed(error: Error | undefined): void;
}

function settle(waiter: CommitWaiter | CommitCallback, error: Error | undefined): void {
  if (typeof waiter === 'function') waiter(error);
  else waiter.committed(error);
}

export class CommitBatcher {
  private records: NewRecord[] = [];
  private waiters: (CommitWaiter | CommitCallback)[] = [];
  /** A small number per record the owner chose (what to count it as), handed back per batch. */
  private tags: number[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(
    private readonly appender: DurableAppend,
    private readonly maxBatchRecords: number,
    /** Called once per durable batch, before its waiters are told, with each record's tag. */
    private readonly onCommitted: (tags: readonly number[], elapsedMs: number) => void = () => undefined,
    /** Called once per failed batch, before its waiters are told. */
    private readonly onFailed: (tags: readonly number[], error: Error) => void = () => undefined,
    /** Called once per batch some of whose records were refused (the rest durable), with the refused records' tags. */
    private readonly onRefused: (tags: readonly number[], error: RecordsRefusedError) => void = () => undefined,
  ) {}

  add(record: NewRecord, waiter: CommitWaiter | CommitCallback, tag = 0): void {
    this.records.push(record);
    this.waiters.push(waiter);
    this.tags.push(tag);
    if (this.records.length >= this.maxBatchRecords) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Appends not yet durable (for back-pressure, shutdown and metrics). */
  get pending(): number {
    return this.inFlight + this.records.length;
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    if (this.records.length === 0) return;
    const records = this.records;
    const waiters = this.waiters;
    const tags = this.tags;
    this.records = [];
    this.waiters = [];
    this.tags = [];
    this.inFlight += records.length;
    const startedAt = performance.now();
    this.appender.append(records).then(
      () => {
        this.inFlight -= records.length;
        this.onCommitted(tags, performance.now() - startedAt);
        for (let i = 0; i < waiters.length; i += 1) settle(waiters[i]!, undefined);
      },
      (error: unknown) => {
        this.inFlight -= records.length;
        if (error instanceof RecordsRefusedError) {
          // Partly refused: the rest is durable. Each refused record's waiter is told why.
          const refusedTags: number[] = [];
          const storedTags: number[] = [];
          for (let i = 0; i < tags.length; i += 1) (error.refused.has(i) ? refusedTags : storedTags).push(tags[i]!);
          if (storedTags.length > 0) this.onCommitted(storedTags, performance.now() - startedAt);
          this.onRefused(refusedTags, error);
          for (let i = 0; i < waiters.length; i += 1) settle(waiters[i]!, error.refused.get(i));
          return;
        }
        const failure = error instanceof Error ? error : new Error(String(error));
        this.onFailed(tags, failure);
        for (let i = 0; i < waiters.length; i += 1) settle(waiters[i]!, failure);
      },
    );
  };

  /** Resolves once everything added so far is durable or failed. */
  async drain(): Promise<void> {
    this.flush();
    while (this.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
