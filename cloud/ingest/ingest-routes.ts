/**
 * The receiving endpoint of a site: peers post batches, the site stores them through its
 * replica sink and acknowledges only after they are durable.
 *
 * A batch is refused whole, with a specific code, before anything of it is applied when it
 * is oversized, corrupted, malformed, or sent under another site's name. Refusals are
 * counted by reason.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import {
  InvalidInputError,
  OffsetGapError,
  PortcallError,
  StoreUnavailableError,
  TopicForkError,
  type ReplicaSink,
} from '../../core/index.js';
import { BATCH_CONTENT_TYPE, decodeBatch } from '../../edge/link/index.js';

export interface IngestLimits {
  /** Largest encoded (compressed) batch accepted, in bytes. */
  readonly maxBatchBytes: number;
  readonly maxDecompressedBytes: number;
  readonly maxRecordsPerBatch: number;
}

export const DEFAULT_INGEST_LIMITS: IngestLimits = {
  maxBatchBytes: 16 * 1024 * 1024,
  maxDecompressedBytes: 64 * 1024 * 1024,
  maxRecordsPerBatch: 100_000,
};

export interface IngestOptions {
  readonly sink: ReplicaSink;
  /** Sending sites this site accepts, each with the token it issued to it. */
  readonly peers: readonly { readonly site: string; readonly token: string }[];
  readonly limits?: Partial<IngestLimits>;
  readonly registry?: Registry;
}

export interface IngestStats {
  batchesAccepted: number;
  recordsStored: number;
  duplicatesDropped: number;
  batchesRefused: number;
}

function tokensEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

export function registerIngestRoutes(app: FastifyInstance, options: IngestOptions): { stats(): IngestStats } {
  const limits = { ...DEFAULT_INGEST_LIMITS, ...options.limits };
  const registers = options.registry === undefined ? [] : [options.registry];
  const stats: IngestStats = { batchesAccepted: 0, recordsStored: 0, duplicatesDropped: 0, batchesRefused: 0 };
  const refusals = new Counter({
    name: 'portcall_ingest_refused_batches_total',
    help: 'Batches refused by the receiving endpoint, by reason',
    labelNames: ['reason'],
    registers,
  });
  const stored = new Counter({
    name: 'portcall_ingest_records_total',
    help: 'Records received, by outcome (stored or duplicate)',
    labelNames: ['outcome', 'sender'],
    registers,
  });

  const refuse = (reply: FastifyReply, status: number, reason: string, code: string, message: string) => {
    stats.batchesRefused += 1;
    refusals.inc({ reason });
    return reply.code(status).send({ code, reason, message });
  };

  app.addContentTypeParser(
    BATCH_CONTENT_TYPE,
    { parseAs: 'buffer', bodyLimit: limits.maxBatchBytes },
    (_request, body, done) => done(null, body),
  );

  app.post('/v1/batches', async (request, reply) => {
    const header = request.headers.authorization ?? '';
    const token = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    const peer = options.peers.find((candidate) => tokensEqual(candidate.token, token));
    if (peer === undefined) {
      return refuse(reply, 401, 'unauthenticated', 'UNAUTHENTICATED', 'missing or unknown site token');
    }
    if (!Buffer.isBuffer(request.body)) {
      return refuse(reply, 415, 'bad-content-type', 'INVALID_INPUT', `send batches as ${BATCH_CONTENT_TYPE}`);
    }
    let batch;
    try {
      batch = decodeBatch(request.body, {
        maxDecompressedBytes: limits.maxDecompressedBytes,
        maxRecords: limits.maxRecordsPerBatch,
      });
    } catch (error) {
      if (error instanceof InvalidInputError) {
        return refuse(reply, error.reason === 'too-large' ? 413 : 400, error.reason, error.code, error.message);
      }
      throw error;
    }
    if (batch.sender !== peer.site) {
      return refuse(
        reply,
        403,
        'wrong-sender',
        'WRONG_SENDER',
        `batch says it is from ${batch.sender} but the token belongs to ${peer.site}`,
      );
    }
    try {
      const result = await options.sink.replicate(batch.records);
      stats.batchesAccepted += 1;
      stats.recordsStored += result.stored;
      stats.duplicatesDropped += result.duplicates;
      stored.inc({ outcome: 'stored', sender: peer.site }, result.stored);
      stored.inc({ outcome: 'duplicate', sender: peer.site }, result.duplicates);
      return reply.code(200).send(result);
    } catch (error) {
      if (error instanceof OffsetGapError) return refuse(reply, 409, 'offset-gap', error.code, error.message);
      if (error instanceof TopicForkError) return refuse(reply, 409, 'topic-fork', error.code, error.message);
      if (error instanceof StoreUnavailableError) {
        return refuse(reply, 503, 'store-unavailable', error.code, error.message);
      }
      if (error instanceof PortcallError) return refuse(reply, 400, 'invalid', error.code, error.message);
      throw error;
    }
  });

  return { stats: () => stats };
}
