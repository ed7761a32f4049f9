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

/**
 * Where a batch sits in its sender's own stream (sender positions, not record offsets): it
 * holds the records after `from` up to and including `to`, and its sender had everything up
 * to `acked` acknowledged already. `incarnation` names the sender's log, so positions of a
 * rebuilt log never mix with an earlier one's.
 */
export interface SenderPlacement {
  readonly stream: string;
  readonly from: number;
  readonly to: number;
  readonly acked: number;
  readonly incarnation: string;
}

/**
 * How far a sender's stream has arrived without a gap, after a batch at `placement` was made
 * durable: the position starts at what the sender had acknowledged (durable here, or it would
 * not have been acknowledged), and advances only over a batch that starts at or before where
 * it stands (a resend may overlap what arrived), so it is always a gap-free prefix even when
 * batches are applied out of order.
 */
export function advanceSenderPosition(current: number | undefined, placement: SenderPlacement): number {
  let position = Math.max(current ?? 0, placement.acked);
  if (placement.from <= position && placement.to > position) position = placement.to;
  return position;
}

/** Who sent a replicated batch, and where it sits in the sender's stream, if it said. */
export interface ReplicateContext {
  /** The sending site (authenticated by the receiving endpoint). */
  readonly sender: string;
  readonly placement?: SenderPlacement;
  /**
   * The sender is a filtered feed (a carrier's link to a customer's own endpoint, carrying
   * only what that customer may see): its topics may skip offsets (records the customer may
   * not see, e.g. before its custody window) and records below a topic's next offset may
   * still arrive later (custody widened). The sink then stores each identity it does not
   * hold yet, wherever it falls, and drops the ones it holds (checked one by one, not by the
   * next offset). Identities never change. A sink that cannot store sparse topics refuses
   * the batch (`OffsetGapError`) as it would any gap. Set by the receiving endpoint from its
   * own configuration of that sender (`ingest.peers[].sparse`), never by the sender.
   */
  readonly sparse?: boolean;
}

/** The copy path: records that already have an identity, arriving from another site. */
export interface ReplicaSink {
  /**
   * Stores the records that are not yet held, at their own offsets, all or nothing, and
   * resolves once they are durable. A record whose offset would leave a gap is refused
   * (`OffsetGapError`) unless `context.sparse`, and so is one that contradicts a held record's
   * origin (`TopicForkError`).
   * A sink may use `context` to keep the sender's cursor durably with the records (Kafka does);
   * one that ignores it stays correct, since senders resend and duplicates are dropped.
   */
  replicate(records: readonly LogRecord[], context?: ReplicateContext): Promise<ReplicateResult>;
  /**
   * Optional: how far each stream of the sender's log (`incarnation`) has arrived here without
   * a gap, as kept durably by the sink with the records (positions of the sender's stream).
   * A sink without it leaves the receiving endpoint to remember positions in memory.
   */
  senderPositions?(sender: string, incarnation: string): Promise<Record<string, number>>;
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

/** Reading one topic (a container's history), by the offsets of its record identity. */
export interface TopicReader {
  latest(stream: string, topic: string): Promise<LogRecord | undefined>;
  /**
   * Records of the topic from `fromOffset` on, in offset order, at most `limits.maxRecords`
   * and about `limits.maxBytes` of payload (always at least one record when any is held). When
   * retention removed `fromOffset`, the page starts at the first record still held; an empty
   * page means nothing is held at or after `fromOffset`. Rejects with a retriable
   * `StoreUnavailableError` when the range cannot be read right now.
   */
  readTopic(stream: string, topic: string, fromOffset: number, limits?: ReadLimits): Promise<LogRecord[]>;
}

/** Everything a site's embedded log offers. */
export interface SiteLog extends RecordAppender, ReplicaSink, StreamSource, CursorStore, TopicReader {
  readonly siteId: string;
  close(): Promise<void>;
}
