/**
 * The contracts every path out of a site uses to ask what one audience may see (DESIGN.md,
 * decision 8). The policy (cloud/access) implements them; a path (the read API today;
 * replication to a customer's endpoint, live updates and per-customer Kafka topics later) is
 * handed an implementation by its composition root and never decides on its own.
 */
import type { LogRecord } from './record.js';
import type { TopicReader } from './site-log.js';

/**
 * What one audience (a principal: a person or a service token) may see, record by record.
 * It follows the access records as they change: a revoked token, a custody window that ended,
 * an expression that no longer admits the audience take effect on the next call.
 *
 * Paths that must use it: every read path (read API, portal pages), live updates, consumer
 * cursors handed to a customer, replication links to a customer's own endpoint, and the
 * stage that writes per-customer Kafka topics (`customer.<id>`). See docs/ACCESS.md.
 */
export interface RecordFilter {
  /**
   * Whether any record of the topic could be admitted (a quick "no" before reading it). False
   * for a topic that does not exist as much as for one that belongs to someone else.
   */
  mayHold(stream: string, topic: string): boolean;
  /**
   * The record as this audience may see it (possibly projected to a coarser payload, same
   * identity), or undefined when the audience may not see it at all.
   */
  admit(record: LogRecord): LogRecord | undefined;
}

/** How a read path learns whose request it serves, and gets the reader that request may use. */
export interface ReadAccess {
  /**
   * The topic reader for a request carrying this `Authorization` header from this client
   * address: a reader that serves only what the caller may see (and holds nothing at all for
   * a missing, unknown, expired or revoked token). Throws `RateLimitedError` when the client
   * asked too often.
   */
  readerFor(authorization: string | undefined, client: string): TopicReader;
}

/**
 * Where the access records a policy has folded stand (the next offset of each access topic):
 * a link to a customer's endpoint keeps the mark its cursor was judged under, durably, so it
 * knows which changes it has not yet accounted for, after a restart too.
 */
export type AccessMark = readonly number[];

/** What may have grown since a mark: the topics whose earlier records may now be admitted. */
export interface Widening {
  /** 'all' when the change is not about given topics (the principal enabled, an expression, a group). */
  readonly topics: ReadonlySet<string> | 'all';
  /** The mark these changes run up to. */
  readonly mark: AccessMark;
}

/**
 * The filter of a replication link to a customer's own endpoint: a `RecordFilter` that also
 * says when what it admits may have grown (custody added for a past period, the principal
 * enabled again), so the link can send the records it left out before (a rescan). Narrowing
 * (a window withdrawn, the principal disabled, a token revoked) needs nothing: the next
 * record is judged by the state as it is.
 */
export interface LinkFilter extends RecordFilter {
  /** The mark of the access state the filter consults now. */
  mark(): AccessMark;
  /** What the access records after `mark` (up to now) may have widened for this audience. */
  widenedSince(mark: AccessMark): Promise<Widening>;
}
