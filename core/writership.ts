/**
 * One writer per topic, with handoff (DESIGN.md, decision 2; issue 7).
 *
 * A topic is written by one site at a time: the origin of its last record, unless that record
 * is a *handoff*, which names the next writer in its `pc-handoff-to` header. The writer hands
 * a topic over by appending the handoff record itself; the next writer may append only once it
 * holds that record (it arrives by replication like any other), so offsets go on with no gap
 * and no overlap, and a site that is not the writer never forks the topic.
 */
import { PortcallError } from './errors.js';
import type { LogRecord } from './record.js';

export const HANDOFF_HEADER = 'pc-handoff-to';

/** The site that may append to a topic whose last record is `last` (undefined: nobody wrote it yet). */
export function writerAfter(last: LogRecord | undefined): string | undefined {
  if (last === undefined) return undefined;
  return last.headers[HANDOFF_HEADER] ?? last.origin;
}

/** A write at a site that is not the topic's writer. Never retriable as sent. */
export class NotWriterError extends PortcallError {
  constructor(
    readonly stream: string,
    readonly topic: string,
    readonly site: string,
    readonly writer: string,
  ) {
    super(
      'NOT_WRITER',
      `topic ${stream}/${topic} is written by ${writer}, not ${site}: ${writer} must hand it over first (POST /v1/streams/${stream}/topics/${topic}/handoff at ${writer})`,
    );
  }
}
