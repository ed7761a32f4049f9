/**
 * `POST /v1/streams/<stream>/topics/<topic>/handoff` with `{"to": "<site>"}` (and optionally
 * `"at"`, an ISO time: when the handoff took place on the topic's own clock, e.g. the moment
 * of unloading; default now) and
 * `Authorization: Bearer <handoffToken>`: the site that writes the topic hands it over (a
 * container unloaded at a port, loaded onto the next ship). Answers the handoff record's
 * identity once it is durable; 409 NOT_WRITER, naming the writer, at any other site.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { NotWriterError } from '../core/writership.js';
import type { WriterGuard } from './writer-guard.js';

const SITE = /^[A-Za-z0-9_-]{1,64}$/;

export function registerHandoffRoute(app: FastifyInstance, options: { guard: WriterGuard; site: string; token: string }): void {
  app.post<{ Params: { stream: string; topic: string }; Body: { to?: unknown; at?: unknown } }>('/v1/streams/:stream/topics/:topic/handoff', async (request, reply) => {
    const header = request.headers.authorization ?? '';
    const given = Buffer.from(header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '');
    const expected = Buffer.from(options.token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return reply.code(401).send({ code: 'UNAUTHENTICATED', message: 'missing or wrong handoff token (handoffToken)' });
    }
    const to = request.body?.to;
    if (typeof to !== 'string' || !SITE.test(to) || to === options.site) {
      return reply.code(400).send({ code: 'INVALID_INPUT', message: `to: the next writer's site name (1-64 of A-Z a-z 0-9 - _), not ${options.site} itself` });
    }
    const at = request.body?.at;
    const atMs = typeof at === 'string' ? Date.parse(at) : Number.NaN;
    if (at !== undefined && (typeof at !== 'string' || !Number.isFinite(atMs))) {
      return reply.code(400).send({ code: 'INVALID_INPUT', message: 'at: an ISO 8601 time (when the handoff took place), or leave it out for now' });
    }
    const { stream, topic } = request.params;
    try {
      const record = await options.guard.handoff(stream, topic, to, at === undefined ? undefined : atMs);
      return { origin: record.origin, stream, topic, offset: record.offset, to };
    } catch (error) {
      if (error instanceof NotWriterError) return reply.code(409).send({ code: error.code, writer: error.writer, message: error.message });
      throw error;
    }
  });
}
