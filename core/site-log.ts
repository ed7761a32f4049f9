/**
 * The contracts between stages and a site's log. Each stage depends only on the role it
 * needs, and the composition root hands it an implementation (the embedded SQLite log, or
 * the Kafka log at a shore site). Stages never import the implementations.
 */
import type { LogRecord, NewRecord, TopicHighWater } from './record.js';

/** The writer path: records produced at this site (devices, detectors). */
export interface RecordAppender {
  /**
   * Appends records, assigning each the next offset of its topic with this site as origin.
   * Resolves only once every record is durable (fsync'd); rejects with a retriable
   * `StoreUnavailableError` when it cannot be, in which case nothing of the call was stored.
   */
  append(records: readonly NewRecord[]): Promise<LogRecord[]>;
}

export interface ReplicateResult {
  /** Records newly stored by this call. */
  readonly stored: number;
  /** Records already held (same identity); dropped, which is what makes delivery exactly once. */
  readonly duplicates: number;
  /** Where each topic the call touched now stands at this site. */
  readonly highWater: readonly TopicHighWater[];
}

/** The copy path: records that already have an identity, arriving from another site. */
export interface ReplicaSink {
  /**
   * Stores the records that are not yet held, at their own offsets, all or nothing, and
   * resolves once they are durable. A record whose offset would leave a gap is refused
   * (`OffsetGapError`), and so is one that contradicts a held record's origin (`TopicForkError`).
   */
  replicate(records: readonly LogRecord[]): Promise<ReplicateResult>;
}

export interface ReadLimits {
  readonly maxRecords?: number;
  readonly maxBytes?: number;
}

/** A page of a stream in this site's append order. */
export interface StreamPage {
  readonly records: LogRecord[];
  /** Pass back as `afterPosition` to continue; equal to the input when nothing was read. */
  readonly nextPosition: number;
}

/** Reading a stream across all its topics in the order this site stored them. */
export interface StreamSource {
  /** Positions are this site's own append order; they are not part of the record identity. */
  readStream(stream: string, afterPosition: number, limits?: ReadLimits): Promise<StreamPage>;
  /** Calls the listener after records of the stream were made durable; returns an unsubscribe. */
  onDurable(listener: (stream: string) => void): () => void;
}

/** Named, durable consumer positions kept in the log itself. */
export interface CursorStore {
  getCursor(name: string): Promise<number | undefined>;
  commitCursor(name: string, position: number): Promise<void>;
}

/** Reading one topic. */
export interface TopicReader {
  latest(stream: string, topic: string): Promise<LogRecord | undefined>;
}

/** Everything a site's embedded log offers. */
export interface SiteLog extends RecordAppender, ReplicaSink, StreamSource, CursorStore, TopicReader {
  readonly siteId: string;
  readTopic(stream: string, topic: string, fromOffset: number, limits?: ReadLimits): Promise<LogRecord[]>;
  close(): Promise<void>;
}
