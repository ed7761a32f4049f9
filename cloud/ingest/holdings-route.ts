/**
 * `GET /v1/holdings?stream=<s>&origins=<a,b,…>&seed=<seed>`: this site's holdings digest of
 * each named origin in one stream (core/holdings.ts), for a sender that wants to know how far
 * this site already holds its stream although it never sent it here (the records came through
 * another site). One short entry per origin, however many topics. Peers only (their token).
 *
 * Answered from the log's topic list (in memory for the embedded log) and the origin of each
 * topic's last record, cached by the topic's next offset; a site whose log cannot list its
 * topics does not register the route, and senders then resume from their own cursors.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { holdingsDigests, TopicOrigins, type TopicCatalog } from '../../core/holdings.js';

export interface HoldingsRouteOptions {
  readonly catalog: TopicCatalog;
  readonly peers: readonly { readonly site: string; readonly token: string }[];
  readonly registry?: Registry;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_ORIGINS = 1000;

function tokensEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

export function registerHoldingsRoute(app: FastifyInstance, options: HoldingsRouteOptions): void {
  const origins = new TopicOrigins(options.catalog);
  const answered = new Counter({
    name: 'portcall_ingest_holdings_requests_total',
    help: 'Holdings digests asked by senders resuming a stream, by outcome',
    labelNames: ['outcome'],
    registers: options.registry === undefined ? [] : [options.registry],
  });
  app.get<{ Querystring: { stream?: string; origins?: string; seed?: string } }>('/v1/holdings', async (request, reply) => {
    const authorization = request.headers.authorization;
    const token = authorization?.startsWith('Bearer ') ? authorization.slice('Bearer '.length) : '';
    if (!options.peers.some((peer) => tokensEqual(peer.token, token))) {
      answered.inc({ outcome: 'unauthenticated' });
      return reply.code(401).send({ code: 'UNAUTHENTICATED', reason: 'unauthenticated', message: 'missing or unknown site token' });
    }
    const { stream = '', seed = '' } = request.query;
    const wanted = (request.query.origins ?? '').split(',').filter((name) => name !== '');
    const bad =
      !NAME.test(stream) ? 'stream' : seed.length < 8 || seed.length > 64 ? 'seed' : wanted.length === 0 || wanted.length > MAX_ORIGINS || !wanted.every((name) => NAME.test(name)) ? 'origins' : undefined;
    if (bad !== undefined) {
      answered.inc({ outcome: 'bad-request' });
      return reply.code(400).send({ code: 'INVALID_INPUT', reason: 'bad-request', message: `${bad}: missing or malformed (stream and origins are site/stream names, origins comma-separated, at most ${MAX_ORIGINS}; seed 8-64 characters)` });
    }
    const holdings = await holdingsDigests(options.catalog, origins, stream, wanted, seed);
    answered.inc({ outcome: 'answered' });
    return { stream, holdings };
  });
}
