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
