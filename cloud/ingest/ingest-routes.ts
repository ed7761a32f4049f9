/**
 * The receiving endpoint of a site: peers post batches (wire format version 1 or 2, over
 * HTTP/1.1 or HTTP/2), the site stores them through its replica sink and acknowledges only
 * after they are durable.
 *
 * A batch is refused whole, with a specific code, before anything of it is applied when it
 * is oversized, corrupted, malformed, or sent under another site's name (or over a TLS
 * client certificate issued to another site). Refusals are counted by reason.
 *
 * The acknowledgement of a version 2 batch is compact: it lists the high water of only those
 * topics that do not stand exactly one past the last record the batch carried for them
 * (usually none), so a 10,000-topic batch is not answered with 10,000 numbers.
 */
import { timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import {
  InvalidInputError,
  OffsetGapError,
  PortcallError,
  StoreUnavailableError,
  TopicForkError,
  type LogRecord,
  type ReplicaSink,
  type ReplicateResult,
  type TopicHighWater,
} from '../../core/index.js';
import { BATCH_CONTENT_TYPE, decodeBatch } from '../../edge/link/index.js';
import { placementFrom, SenderPositions } from './sender-positions.js';

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
  /**
   * Sending sites this site accepts, each with the token it issued to it. `sparse`: the peer
   * is a filtered feed (a carrier's link to this customer endpoint): its topics may skip
   * offsets and fill in later, and the sink stores them as a sparse replica
   * (`ReplicateContext.sparse`). Decided here, by the receiver's configuration of the
   * sender, so an ordinary replica still refuses gaps whatever a sender claims.
   */
  readonly peers: readonly { readonly site: string; readonly token: string; readonly sparse?: boolean }[];
  readonly limits?: Partial<IngestLimits>;
  readonly registry?: Registry;
}

export interface IngestStats {
  batchesAccepted: number;
  recordsStored: number;
  duplicatesDropped: number;
  batchesRefused: number;
}

/** High water of the topics that do not stand where the batch's own records imply. */
function compactHighWater(records: readonly LogRecord[], result: ReplicateResult): TopicHighWater[] {
  const implied = new Map<string, number>();
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const next = records[i + 1];
    // Only the last record of a run of one topic counts (the last run wins, as the last record
    // would): a version 2 batch arrives grouped by topic, so this is a key per topic, not per record.
    if (next !== undefined && next.topic === record.topic && next.stream === record.stream) continue;
    implied.set(`${record.stream}\u0000${record.topic}`, record.offset + 1);
  }
  return result.highWater.filter((entry) => implied.get(`${entry.stream}\u0000${entry.topic}`) !== entry.nextOffset);
}

/** The subject CN of a verified TLS client certificate, if the request came with one. */
function clientCertificateName(socket: unknown): string | undefined {
  const tls = socket as Partial<TLSSocket> | undefined;
  if (tls?.authorized !== true || typeof tls.getPeerCertificate !== 'function') return undefined;
  const subject = tls.getPeerCertificate().subject as { CN?: string | string[] } | undefined;
  const name = subject?.CN;
  return Array.isArray(name) ? name[0] : name;
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
  const batches = new Counter({
    name: 'portcall_ingest_batches_total',
    help: 'Batches stored, by sender and wire format version',
    labelNames: ['sender', 'version'],
    registers,
  });
  const wireBytes = new Counter({
    name: 'portcall_ingest_wire_bytes_total',
    help: 'Encoded bytes of the batches stored, by sender',
    labelNames: ['sender'],
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

  const positions = new SenderPositions();
  const peerOf = (authorization: string | undefined) => {
    const token = authorization?.startsWith('Bearer ') ? authorization.slice('Bearer '.length) : '';
    return options.peers.find((candidate) => tokensEqual(candidate.token, token));
  };

  // A sender reconnecting asks how far its streams arrived without a gap (sender-positions.ts).
  app.get<{ Querystring: { incarnation?: string } }>('/v1/positions', async (request, reply) => {
    const peer = peerOf(request.headers.authorization);
    if (peer === undefined) return refuse(reply, 401, 'unauthenticated', 'UNAUTHENTICATED', 'missing or unknown site token');
    const incarnation = request.query.incarnation ?? '';
    if (incarnation === '') return { positions: {} };
    const remembered = positions.of(peer.site, incarnation);
    if (options.sink.senderPositions === undefined) return { positions: remembered };
    // The sink keeps the sender's cursor with the records (Kafka: in the same transaction), so
    // it knows even after this process restarted or another instance served the sender.
    let kept: Record<string, number>;
    try {
      kept = await options.sink.senderPositions(peer.site, incarnation);
    } catch (error) {
      if (error instanceof StoreUnavailableError) return refuse(reply, 503, 'store-unavailable', error.code, error.message);
      throw error;
    }
    const merged = { ...kept };
    for (const [stream, position] of Object.entries(remembered)) merged[stream] = Math.max(merged[stream] ?? 0, position);
    return { positions: merged };
  });

  app.post('/v1/batches', async (request, reply) => {
    const peer = peerOf(request.headers.authorization);
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
    const certificateName = clientCertificateName(request.raw.socket);
    if (certificateName !== undefined && certificateName !== peer.site) {
      return refuse(
        reply,
        403,
        'wrong-certificate',
        'WRONG_SENDER',
        `the TLS client certificate names ${certificateName} but the token belongs to ${peer.site}`,
      );
    }
    const placement = placementFrom(request.headers);
    try {
      const result = await options.sink.replicate(batch.records, {
        sender: peer.site,
        ...(placement === undefined ? {} : { placement }),
        ...(peer.sparse === true ? { sparse: true } : {}),
      });
      stats.batchesAccepted += 1;
      stats.recordsStored += result.stored;
      stats.duplicatesDropped += result.duplicates;
      stored.inc({ outcome: 'stored', sender: peer.site }, result.stored);
      stored.inc({ outcome: 'duplicate', sender: peer.site }, result.duplicates);
      batches.inc({ sender: peer.site, version: String(batch.version) });
      if (placement !== undefined) positions.applied(peer.site, placement);
      wireBytes.inc({ sender: peer.site }, request.body.length);
      if (batch.version === 1) return reply.code(200).send(result);
      return reply.code(200).send({ stored: result.stored, duplicates: result.duplicates, highWater: compactHighWater(batch.records, result) });
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
