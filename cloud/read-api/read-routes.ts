/**
 * The site's read API: a topic's latest record, and a topic's history from any offset, paged
 * by offset. Offsets are those of the record identity, the same at every site holding the
 * topic, so a reader can continue at another site from the `nextOffset` it was given.
 * Every later read path is added here, behind the same reader.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { PortcallError, RateLimitedError, type LogRecord, type ReadAccess, type TopicReader } from '../../core/index.js';

export interface ReadApiOptions {
  readonly reader: TopicReader;
  readonly registry?: Registry;
  /** Most records one page may hold; a request asking for more is refused. */
  readonly maxPageRecords?: number;
  /** Most payload bytes one page may hold (at least one record is always returned). */
  readonly maxPageBytes?: number;
  /**
   * Access control: when set, each request reads through the reader its bearer token opens
   * (only what the policy admits, nothing for no token), so a denial is indistinguishable
   * from a topic that does not exist. Unset, every topic is open to every caller.
   */
  readonly access?: ReadAccess;
}

export const DEFAULT_MAX_PAGE_RECORDS = 1000;
export const DEFAULT_MAX_PAGE_BYTES = 4 * 1024 * 1024;

/** Record as JSON: a JSON payload is inlined, anything else is base64. */
export function recordToJson(record: LogRecord): Record<string, unknown> {
  const payloadBytes = Buffer.from(record.payload.buffer, record.payload.byteOffset, record.payload.byteLength);
  let payload: unknown;
  let payloadEncoding = 'json';
  try {
    payload = JSON.parse(payloadBytes.toString('utf8'));
  } catch {
    payload = payloadBytes.toString('base64');
    payloadEncoding = 'base64';
  }
  return {
    origin: record.origin,
    stream: record.stream,
    topic: record.topic,
    offset: record.offset,
    eventTime: new Date(record.eventTimeMs).toISOString(),
    ingestTime: new Date(record.ingestTimeMs).toISOString(),
    headers: record.headers,
    payloadEncoding,
    payload,
  };
}

const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';

const topicParams = {
  type: 'object',
  properties: { stream: { type: 'string', pattern: NAME_PATTERN }, topic: { type: 'string', pattern: NAME_PATTERN } },
  required: ['stream', 'topic'],
} as const;

type Outcome = 'ok' | 'not_found' | 'bad_request' | 'unavailable' | 'rate_limited' | 'error';

/** The reader a request may use: the site's, or the one its token opens when access control is on. */
function readerOf(options: ReadApiOptions, request: FastifyRequest): TopicReader {
  return options.access === undefined ? options.reader : options.access.readerFor(request.headers.authorization, request.ip);
}

export function registerReadRoutes(app: FastifyInstance, options: ReadApiOptions): void {
  const maxPageRecords = options.maxPageRecords ?? DEFAULT_MAX_PAGE_RECORDS;
  const maxPageBytes = options.maxPageBytes ?? DEFAULT_MAX_PAGE_BYTES;
  const requests = new Counter({
    name: 'portcall_read_requests_total',
    help: 'Read API requests by route and outcome',
    labelNames: ['route', 'outcome'] as const,
    registers: options.registry === undefined ? [] : [options.registry],
  });

  // Validation failures never reach a handler: count them here, by the route they were for.
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url;
    if (reply.statusCode === 400 && route !== undefined && route.startsWith('/v1/streams/')) {
      requests.inc({ route: route.endsWith('/latest') ? 'latest' : 'records', outcome: 'bad_request' });
    }
  });

  /** A store that cannot answer now says so with 503 and Retry-After; the reader may retry. */
  const failed = (route: string, reply: FastifyReply, error: unknown) => {
    if (error instanceof RateLimitedError) {
      requests.inc({ route, outcome: 'rate_limited' });
      return reply.code(429).header('retry-after', String(error.retryAfterSeconds)).send({ code: error.code, message: error.message });
    }
    if (error instanceof PortcallError && error.retriable) {
      requests.inc({ route, outcome: 'unavailable' });
      return reply.code(503).header('retry-after', '1').send({ code: error.code, message: error.message });
    }
    requests.inc({ route, outcome: 'error' });
    throw error;
  };
  const done = (route: string, outcome: Outcome) => requests.inc({ route, outcome });

  app.get<{ Params: { stream: string; topic: string } }>(
    '/v1/streams/:stream/topics/:topic/latest',
    { schema: { params: topicParams } },
    async (request, reply) => {
      let record: LogRecord | undefined;
      try {
        record = await readerOf(options, request).latest(request.params.stream, request.params.topic);
      } catch (error) {
        return failed('latest', reply, error);
      }
      if (record === undefined) {
        done('latest', 'not_found');
        return reply.code(404).send({ code: 'NOT_FOUND', message: 'no such topic' });
      }
      done('latest', 'ok');
      return recordToJson(record);
    },
  );

  app.get<{ Params: { stream: string; topic: string }; Querystring: { from: number; maxRecords?: number; maxBytes?: number } }>(
    '/v1/streams/:stream/topics/:topic/records',
    {
      schema: {
        params: topicParams,
        querystring: {
          type: 'object',
          properties: {
            from: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 },
            maxRecords: { type: 'integer', minimum: 1, maximum: maxPageRecords },
            maxBytes: { type: 'integer', minimum: 1, maximum: maxPageBytes },
          },
          additionalProperties: false,
        },
      },
    },
    async (request, reply) => {
      const { stream, topic } = request.params;
      const from = request.query.from;
      let records: LogRecord[];
      try {
        const reader = readerOf(options, request);
        records = await reader.readTopic(stream, topic, from, {
          maxRecords: request.query.maxRecords ?? Math.min(100, maxPageRecords),
          maxBytes: request.query.maxBytes ?? maxPageBytes,
        });
        // An empty page of a topic never written is "no such topic"; of a held topic, "nothing yet".
        if (records.length === 0 && (await reader.latest(stream, topic)) === undefined) {
          done('records', 'not_found');
          return reply.code(404).send({ code: 'NOT_FOUND', message: 'no such topic' });
        }
      } catch (error) {
        return failed('records', reply, error);
      }
      done('records', 'ok');
      const last = records.at(-1);
      return {
        stream,
        topic,
        from,
        // Where to continue, here or at any other site holding the topic. Under access control,
        // one past the last record returned (or `from`): it never skips past records the
        // caller was not shown, so it tells nothing about them.
        nextOffset: last === undefined ? from : last.offset + 1,
        records: records.map(recordToJson),
      };
    },
  );
}
