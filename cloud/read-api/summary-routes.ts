/**
 * Per-topic summaries, to compare sites topic by topic (`portcall verify --sites`):
 *
 *   GET /v1/summaries                       → {"site", "streams": [{"stream", "topics"}]}
 *   GET /v1/summaries/<stream>?after=&maxTopics=&maxRecords=
 *     → {"stream", "topics": [{"topic", "firstOffset", "nextOffset", "records", "hash"}], "after"}
 *
 * Topics come in name order, a page at a time: at most `maxTopics` (default 500, at most
 * 5000) and about `maxRecords` records read (default 100,000; at least one topic), and `after`
 * is the name to pass back for the next page (null at the end). A topic's `hash` is SHA-256
 * over every record it holds, in offset order: origin, offset, event and ingest time, headers
 * and payload, so two sites agree on it only when they hold the same records, byte for byte.
 * Reading a summary reads the topic's records; this is an operator's check, not a hot path.
 */
import { createHash } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { PortcallError, RateLimitedError, type ReadAccess, type TopicHighWater, type TopicReader } from '../../core/index.js';

/** What the summaries need of a log besides reading topics. */
export interface TopicListing {
  listStreams(): string[];
  listTopics(stream: string): TopicHighWater[];
}

export interface SummaryRoutesOptions {
  readonly site: string;
  readonly reader: TopicReader;
  readonly listing: TopicListing;
  readonly registry?: Registry;
  /**
   * Access control: each request is summarised through the reader its bearer token opens, and
   * a topic it may not read is left out as if it did not exist (and counts are not given).
   */
  readonly access?: ReadAccess;
}

export interface TopicSummary {
  readonly topic: string;
  /** First offset held (retention may have removed earlier ones); equal to nextOffset when none. */
  readonly firstOffset: number;
  readonly nextOffset: number;
  readonly records: number;
  readonly hash: string;
}

const NAME = /^[A-Za-z0-9._-]{1,200}$/;

/**
 * Hashes a topic's records from the first held one, a page at a time. With `endAtLastRead`
 * (a reader under access control), `nextOffset` is one past the last record the reader gave,
 * so the summary says nothing of records the caller may not see (not even that they exist).
 */
export async function summarizeTopic(reader: TopicReader, stream: string, topic: string, nextOffset: number, endAtLastRead = false): Promise<TopicSummary> {
  const hash = createHash('sha256');
  let from = 0;
  let first: number | undefined;
  let last: number | undefined;
  let records = 0;
  while (from < nextOffset) {
    const page = await reader.readTopic(stream, topic, from, { maxRecords: 1000, maxBytes: 8 * 1024 * 1024 });
    if (page.length === 0) break;
    for (const record of page) {
      if (record.offset >= nextOffset) break;
      first ??= record.offset;
      last = record.offset;
      records += 1;
      hash.update(`${record.origin}\u0000${record.offset}\u0000${record.eventTimeMs}\u0000${record.ingestTimeMs}\u0000${JSON.stringify(record.headers)}\u0000${record.payload.byteLength}\u0000`);
      hash.update(record.payload);
    }
    from = page.at(-1)!.offset + 1;
    // The embedded log reads synchronously: without a turn between pages, a stream's summary
    // (100,000 records by default) held the site's event loop for seconds (2 s at every shore
    // site of the voyage), answering neither its peers' batches nor its devices meanwhile.
    await nextTurn();
  }
  const end = endAtLastRead ? (last === undefined ? 0 : last + 1) : nextOffset;
  return { topic, firstOffset: first ?? end, nextOffset: end, records, hash: hash.digest('hex') };
}

export function registerSummaryRoutes(app: FastifyInstance, options: SummaryRoutesOptions): void {
  const requests = new Counter({
    name: 'portcall_summary_requests_total',
    help: 'Per-topic summary requests (portcall verify), by outcome',
    labelNames: ['outcome'],
    registers: options.registry === undefined ? [] : [options.registry],
  });

  app.get('/v1/summaries', async () => {
    requests.inc({ outcome: 'ok' });
    return {
      site: options.site,
      streams: options.listing
        .listStreams()
        .map((stream) => (options.access === undefined ? { stream, topics: options.listing.listTopics(stream).length } : { stream })),
    };
  });

  app.get<{ Params: { stream: string }; Querystring: { after?: string; maxTopics?: string; maxRecords?: string } }>('/v1/summaries/:stream', async (request, reply) => {
    const { stream } = request.params;
    const after = request.query.after ?? '';
    const maxTopics = request.query.maxTopics === undefined ? 500 : Number(request.query.maxTopics);
    const maxRecords = request.query.maxRecords === undefined ? 100_000 : Number(request.query.maxRecords);
    const bad = !NAME.test(stream)
      ? 'stream'
      : !Number.isInteger(maxTopics) || maxTopics < 1 || maxTopics > 5000
        ? 'maxTopics (1-5000)'
        : !Number.isInteger(maxRecords) || maxRecords < 1 || maxRecords > 10_000_000
          ? 'maxRecords (1-10000000)'
          : undefined;
    if (bad !== undefined) {
      requests.inc({ outcome: 'bad_request' });
      return reply.code(400).send({ code: 'INVALID_INPUT', message: `${bad}: malformed` });
    }
    const topics = options.listing
      .listTopics(stream)
      .filter((entry) => entry.topic > after)
      .sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
    const page: TopicSummary[] = [];
    let read = 0;
    let consumed = 0;
    try {
      const reader = options.access === undefined ? options.reader : options.access.readerFor(request.headers.authorization, request.ip);
      for (const entry of topics) {
        if (page.length >= maxTopics || (page.length > 0 && read >= maxRecords)) break;
        consumed += 1;
        const summary = await summarizeTopic(reader, stream, entry.topic, entry.nextOffset, options.access !== undefined);
        // What the caller may not read does not exist for it.
        if (options.access !== undefined && summary.records === 0) continue;
        read += summary.records;
        page.push(summary);
      }
    } catch (error) {
      if (error instanceof RateLimitedError) {
        requests.inc({ outcome: 'rate_limited' });
        return reply.code(429).header('retry-after', String(error.retryAfterSeconds)).send({ code: error.code, message: error.message });
      }
      if (error instanceof PortcallError && error.retriable) {
        requests.inc({ outcome: 'unavailable' });
        return reply.code(503).header('retry-after', '1').send({ code: error.code, message: error.message });
      }
      throw error;
    }
    requests.inc({ outcome: 'ok' });
    const more = consumed < topics.length;
    return { stream, topics: page, after: more ? topics[consumed - 1]!.topic : null };
  });
}
