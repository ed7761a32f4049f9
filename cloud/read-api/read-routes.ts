/**
 * The site's read API. For now: the latest record of a topic, which is what the portal's
 * container view starts from. Every later read path is added here, behind the same reader.
 */
import type { FastifyInstance } from 'fastify';
import type { LogRecord, TopicReader } from '../../core/index.js';

export interface ReadApiOptions {
  readonly reader: TopicReader;
}

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

export function registerReadRoutes(app: FastifyInstance, options: ReadApiOptions): void {
  app.get<{ Params: { stream: string; topic: string } }>(
    '/v1/streams/:stream/topics/:topic/latest',
    {
      schema: {
        params: {
          type: 'object',
          properties: { stream: { type: 'string', pattern: NAME_PATTERN }, topic: { type: 'string', pattern: NAME_PATTERN } },
          required: ['stream', 'topic'],
        },
      },
    },
    async (request, reply) => {
      const record = await options.reader.latest(request.params.stream, request.params.topic);
      if (record === undefined) {
        return reply.code(404).send({ code: 'NOT_FOUND', message: 'no such topic' });
      }
      return recordToJson(record);
    },
  );
}
