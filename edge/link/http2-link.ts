/**
 * Client side of a link to another site over HTTP/2: one connection, many batches in flight
 * on it, bodies paced under the link's bandwidth cap with urgent batches first (pacer.ts).
 *
 * Why HTTP/2: a ship's link has a long round trip (600 ms by satellite) and drops without
 * warning. One connection means one TCP (and TLS) handshake after each drop instead of one
 * per batch in flight, and keeping several batches in flight on it keeps the link busy
 * through the round trip. Flow-control windows are opened wide (the receiver does the same)
 * so HTTP/2's own 64 KiB default window does not cap the link at 64 KiB per round trip.
 *
 * A resolved `send` means the peer made the batch durable. Any failure is a `LinkError`
 * with a stable `reason`; whether the batch arrived is unknown, and the caller resends (the
 * peer drops what it already holds by record identity).
 */
import { connect, constants as http2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { LinkError, type LogRecord, type ReplicateResult, type SenderPlacement } from '../../core/index.js';
import type { HoldingsDigest } from '../../core/holdings.js';
import { BATCH_CONTENT_TYPE } from './batch.js';
import { Pacer } from './pacer.js';
import { encodeBatch, Compression } from './wire.js';
import { encodeBatchV2 } from './wire-v2.js';

export interface Http2LinkTls {
  /** CA certificates to trust for the peer (PEM); the system's when absent. */
  readonly ca?: Buffer;
  /** This site's client certificate and key, when the peer asks for one. */
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/**
 * A link capped at or below this many bytes per second is a slow, expensive one (1 Mbit/s: a
 * satellite link): with compression 'auto' its batches get brotli's best quality. Measured on
 * the standard fleet (docs/BENCHMARKS.md): quality 11 makes a 10,000-reading batch about 12%
 * smaller than quality 5 and encodes about 46,000 readings/s on one core, more than such a
 * link carries at under 4 bytes a reading.
 */
export const SLOW_LINK_BYTES_PER_SECOND = 125_000;

export interface Http2LinkOptions {
  /** Base URL of the peer: http:// (HTTP/2 without TLS) or https:// */
  readonly url: string;
  /** This site's name, as the peer knows it. */
  readonly sender: string;
  /** Bearer token the peer issued to this site. */
  readonly token: string;
  readonly tls?: Http2LinkTls;
  readonly wireVersion?: 1 | 2;
  /**
   * Brotli quality for version 2 (0–11), or 'auto' (the default): 11 while the link is capped
   * at or below SLOW_LINK_BYTES_PER_SECOND (a satellite link: bytes cost more than CPU, and
   * quality 11 still encodes faster than such a link carries), 5 otherwise.
   */
  readonly compressionQuality?: number | 'auto';
  readonly bandwidthBytesPerSecond?: number;
  readonly connectTimeoutMs?: number;
  /** How long the peer may take to acknowledge once the whole body is sent. */
  readonly requestTimeoutMs?: number;
  /** A connection that answers no PING for this long, while batches are out, is given up. */
  readonly stallTimeoutMs?: number;
}

/**
 * Where a batch sits in the sender's stream, sent as request headers so the receiver can
 * keep, per sender, how far each stream has arrived without a gap (see `positions`).
 */
export type BatchPosition = SenderPlacement;

export interface SendOptions {
  /** Written ahead of every non-urgent body (alerts). */
  readonly urgent?: boolean;
  readonly position?: BatchPosition;
}

export interface SendReport extends ReplicateResult {
  /** Bytes of the encoded batch as it went on the wire. */
  readonly wireBytes: number;
  /** Payload and header bytes of the records, before encoding. */
  readonly rawBytes: number;
}

/** HTTP/2 window the link opens for its responses; the peer's request window is its own setting. */
const WINDOW_BYTES = 16 * 1024 * 1024;

function rawBytesOf(records: readonly LogRecord[]): number {
  let bytes = 0;
  for (const record of records) {
    bytes += record.payload.byteLength;
    for (const key in record.headers) bytes += key.length + record.headers[key]!.length;
  }
  return bytes;
}

export class Http2Link {
  private readonly origin: string;
  private readonly pacer: Pacer;
  private session: ClientHttp2Session | undefined;
  private connecting: Promise<ClientHttp2Session> | undefined;
  private outstanding = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private pingOutstandingSince: number | undefined;
  private closed = false;
  /** Why the current session was torn down by this side, for the errors its streams then raise. */
  private teardown: LinkError | undefined;

  constructor(private readonly options: Http2LinkOptions) {
    const url = new URL(options.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`link URL must be http:// or https://, got ${options.url}`);
    this.origin = url.origin;
    this.pacer = new Pacer(options.bandwidthBytesPerSecond);
  }

  get destination(): string {
    return this.origin;
  }

  /** Caps the body bytes per second this link writes (undefined: no cap). */
  setBandwidthLimit(bytesPerSecond: number | undefined): void {
    this.pacer.setRate(bytesPerSecond);
  }

  get bandwidthLimit(): number | undefined {
    return this.pacer.rate;
  }

  /** The brotli quality batches are encoded with now (see `compressionQuality`). */
  get compressionQuality(): number {
    const configured = this.options.compressionQuality ?? 'auto';
    if (configured !== 'auto') return configured;
    const cap = this.pacer.rate;
    return cap !== undefined && cap <= SLOW_LINK_BYTES_PER_SECOND ? 11 : 5;
  }

  encode(records: readonly LogRecord[]): Buffer {
    const batch = { sender: this.options.sender, records };
    return (this.options.wireVersion ?? 2) === 2 ? encodeBatchV2(batch, { quality: this.compressionQuality }) : encodeBatch(batch, Compression.Gzip);
  }

  async send(records: readonly LogRecord[], options: SendOptions = {}): Promise<SendReport> {
    if (this.closed) throw new LinkError('link is closed', { retriable: false, reason: 'closed' });
    const body = this.encode(records);
    const rawBytes = rawBytesOf(records);
    const session = await this.connect();
    this.outstanding += 1;
    this.armWatchdog();
    try {
      const ack = await this.post(session, body, options.urgent === true, options.position);
      return { ...ack, wireBytes: body.length, rawBytes };
    } finally {
      this.outstanding -= 1;
    }
  }

  /**
   * How far the peer holds each stream of this sender without a gap, as it remembers it
   * (since its last restart): one number per stream, however many topics. Empty when it
   * does not know.
   */
  async positions(incarnation: string): Promise<Record<string, number>> {
    // A peer without the route (an older version) simply does not know.
    const parsed = (await this.getJson(`/v1/positions?incarnation=${encodeURIComponent(incarnation)}`)) as { positions?: Record<string, unknown> } | null | undefined;
    const positions: Record<string, number> = {};
    if (typeof parsed !== 'object' || parsed === null) return positions;
    for (const [name, value] of Object.entries(parsed.positions ?? {})) {
      if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) positions[name] = value;
    }
    return positions;
  }

  /**
   * The peer's holdings digest of each origin in one stream (core/holdings.ts): one short
   * answer per origin, however many topics. Undefined when the peer cannot say (an older
   * version without the route, or a log that cannot list its topics).
   */
  async holdings(stream: string, origins: readonly string[], seed: string): Promise<Record<string, HoldingsDigest> | undefined> {
    const query = new URLSearchParams({ stream, origins: origins.join(','), seed });
    const parsed = await this.getJson(`/v1/holdings?${query.toString()}`);
    if (parsed === undefined) return undefined;
    const holdings = (parsed as { holdings?: Record<string, Partial<HoldingsDigest>> }).holdings;
    if (holdings === undefined || typeof holdings !== 'object') return undefined;
    const result: Record<string, HoldingsDigest> = {};
    for (const [origin, entry] of Object.entries(holdings)) {
      if (typeof entry?.digest === 'string' && typeof entry.topics === 'number' && typeof entry.records === 'number') {
        result[origin] = { digest: entry.digest, topics: entry.topics, records: entry.records };
      }
    }
    return result;
  }

  /** GET on the peer with this link's token: the parsed JSON, or undefined on 404/501. */
  private async getJson(path: string): Promise<unknown> {
    const session = await this.connect();
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request({ ':method': 'GET', ':path': path, authorization: `Bearer ${this.options.token}` });
      } catch (error) {
        reject(this.transportError(error));
        return;
      }
      const timeoutMs = this.options.requestTimeoutMs ?? 30_000;
      stream.setTimeout(timeoutMs, () => {
        stream.close(http2.NGHTTP2_CANCEL);
        reject(new LinkError(`${this.origin} did not answer within ${timeoutMs} ms`, { retriable: true, reason: 'timeout' }));
      });
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => (status = Number(headers[':status'] ?? 0)));
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (error) => reject(this.transportError(error)));
      stream.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (status === 404 || status === 501) return resolve(undefined);
        if (status !== 200) return reject(status === 0 ? this.transportError(new Error('no response')) : this.refusal(status, text));
        try {
          resolve(JSON.parse(text) as unknown);
        } catch {
          reject(new LinkError(`${this.origin} answered ${path.split('?')[0]} with a body that is not JSON`, { retriable: true, reason: 'bad-ack' }));
        }
      });
    });
  }

  private post(session: ClientHttp2Session, body: Buffer, urgent: boolean, position: BatchPosition | undefined): Promise<ReplicateResult> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let stream: ClientHttp2Stream;
      const fail = (error: LinkError) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        this.pacer.cancel(stream, error);
        if (!stream.closed) stream.close(http2.NGHTTP2_CANCEL);
        reject(error);
      };
      try {
        stream = session.request(
          {
            ':method': 'POST',
            ':path': '/v1/batches',
            'content-type': BATCH_CONTENT_TYPE,
            'content-length': String(body.length),
            authorization: `Bearer ${this.options.token}`,
            ...(position === undefined
              ? {}
              : {
                  'pc-stream': position.stream,
                  'pc-from': String(position.from),
                  'pc-to': String(position.to),
                  'pc-acked': String(position.acked),
                  'pc-incarnation': position.incarnation,
                }),
          },
          { endStream: false },
        );
      } catch (error) {
        reject(this.transportError(error));
        return;
      }
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => {
        status = Number(headers[':status'] ?? 0);
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (settled) return;
        const text = Buffer.concat(chunks).toString('utf8');
        if (status === 200) {
          try {
            const ack = JSON.parse(text) as ReplicateResult;
            settled = true;
            if (timer !== undefined) clearTimeout(timer);
            resolve(ack);
          } catch {
            fail(new LinkError(`${this.origin} acknowledged with a body that is not JSON`, { retriable: true, reason: 'bad-ack' }));
          }
          return;
        }
        // No response at all: the stream ended with the connection, not with an answer.
        fail(status === 0 ? this.transportError(new Error('stream ended without a response')) : this.refusal(status, text));
      });
      stream.on('error', (error) => fail(this.transportError(error)));
      stream.on('close', () => {
        if (!settled) fail(this.transportError(new Error(`stream closed (code ${stream.rstCode})`)));
      });
      this.pacer.send(stream, body, urgent).then(
        () => {
          if (settled) return;
          const timeoutMs = this.options.requestTimeoutMs ?? 30_000;
          timer = setTimeout(
            () => fail(new LinkError(`${this.origin} did not acknowledge within ${timeoutMs} ms`, { retriable: true, reason: 'timeout' })),
            timeoutMs,
          );
          timer.unref();
        },
        (error: unknown) => fail(error instanceof LinkError ? error : this.transportError(error)),
      );
    });
  }

  private refusal(status: number, text: string): LinkError {
    let reason = `http-${status}`;
    let detail = text;
    try {
      const parsed = JSON.parse(text) as { code?: string; reason?: string; message?: string };
      if (typeof parsed.reason === 'string' && parsed.reason !== '') reason = parsed.reason;
      detail = `${parsed.code ?? ''}: ${parsed.message ?? text}`;
    } catch {
      // Not our JSON error shape (a proxy's page, say); keep the raw text.
    }
    return new LinkError(`${this.origin} refused the batch (HTTP ${status}) ${detail}`.trim(), {
      status,
      reason,
      // Server-side trouble and rate limits pass; a refused batch is refused again as sent.
      retriable: status >= 500 || status === 429 || status === 408,
    });
  }

  private transportError(error: unknown): LinkError {
    if (error instanceof LinkError) return error;
    if (this.teardown !== undefined) return this.teardown;
    const code = (error as { code?: string }).code ?? '';
    return new LinkError(`link to ${this.origin} broke: ${(error as Error).message}`, {
      retriable: true,
      reason: code === 'ECONNREFUSED' ? 'connect-failed' : 'reset',
      cause: error,
    });
  }

  private connect(): Promise<ClientHttp2Session> {
    const current = this.session;
    if (current !== undefined && !current.closed && !current.destroyed) return Promise.resolve(current);
    if (this.connecting !== undefined) return this.connecting;
    const attempt = new Promise<ClientHttp2Session>((resolve, reject) => {
      const tls = this.options.tls;
      const session = connect(this.origin, {
        settings: { enablePush: false, initialWindowSize: WINDOW_BYTES },
        maxSessionMemory: 64,
        ...(tls?.ca === undefined ? {} : { ca: tls.ca }),
        ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
        ...(tls?.key === undefined ? {} : { key: tls.key }),
      });
      const connectTimeoutMs = this.options.connectTimeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        session.destroy();
        reject(new LinkError(`no connection to ${this.origin} within ${connectTimeoutMs} ms`, { retriable: true, reason: 'connect-failed' }));
      }, connectTimeoutMs);
      session.once('connect', () => {
        clearTimeout(timer);
        // The connect timeout may have destroyed the session while its 'connect' was queued
        // (a busy machine): that attempt has already failed, and touching it would throw.
        if (session.destroyed || session.closed) return;
        session.setLocalWindowSize(WINDOW_BYTES);
        this.teardown = undefined;
        this.session = session;
        resolve(session);
      });
      session.on('error', (error) => {
        clearTimeout(timer);
        const code = (error as { code?: string }).code ?? '';
        // Before 'connect' this is the attempt failing; after it, each stream reports its own error.
        reject(
          new LinkError(`cannot connect to ${this.origin}: ${error.message}`, {
            retriable: !/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code),
            reason: /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code) ? 'tls' : 'connect-failed',
            cause: error,
          }),
        );
      });
      session.on('close', () => {
        clearTimeout(timer);
        if (this.session === session) this.session = undefined;
      });
      // A peer going away (restart, idle close) ends this session; the next send reconnects.
      session.on('goaway', () => {
        if (this.session === session) this.session = undefined;
      });
      session.unref();
    });
    this.connecting = attempt;
    const clear = () => {
      if (this.connecting === attempt) this.connecting = undefined;
    };
    attempt.then(clear, clear);
    return attempt;
  }

  /** While batches are out, a PING must come back within stallTimeoutMs, or the connection is given up. */
  private armWatchdog(): void {
    if (this.watchdog !== undefined) return;
    const stallTimeoutMs = this.options.stallTimeoutMs ?? 20_000;
    const intervalMs = Math.max(100, Math.min(5000, Math.floor(stallTimeoutMs / 4)));
    this.watchdog = setInterval(() => {
      const session = this.session;
      if (this.outstanding === 0 || session === undefined || session.destroyed) {
        this.pingOutstandingSince = undefined;
        if (this.outstanding === 0) {
          clearInterval(this.watchdog);
          this.watchdog = undefined;
        }
        return;
      }
      const now = performance.now();
      if (this.pingOutstandingSince !== undefined) {
        if (now - this.pingOutstandingSince > stallTimeoutMs) {
          this.teardown = new LinkError(`link to ${this.origin} stalled: no answer for ${stallTimeoutMs} ms`, { retriable: true, reason: 'stalled' });
          this.pingOutstandingSince = undefined;
          if (this.session === session) this.session = undefined;
          session.destroy();
        }
        return;
      }
      this.pingOutstandingSince = now;
      try {
        session.ping(() => {
          this.pingOutstandingSince = undefined;
        });
      } catch {
        this.pingOutstandingSince = undefined;
      }
    }, intervalMs);
    this.watchdog.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.pacer.cancelAll(new LinkError('link is closed', { retriable: false, reason: 'closed' }));
    const session = this.session ?? (await this.connecting?.catch(() => undefined));
    this.session = undefined;
    if (session !== undefined && !session.destroyed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          session.destroy();
          resolve();
        }, 1000);
        session.close(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}
