/**
 * Client side of a link to another site: posts encoded batches to the peer's receiving
 * endpoint and returns its acknowledgement. A resolved `send` means the peer has made the
 * batch durable; anything else means it may or may not have, and the caller sends again
 * (the peer drops what it already holds by record identity).
 */
import { LinkError, type LogRecord, type ReplicateResult } from '../../core/index.js';
import { BATCH_CONTENT_TYPE, Compression, encodeBatch } from './wire.js';

export interface HttpUplinkOptions {
  /** Base URL of the peer site, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  /** This site's name, as the peer knows it. */
  readonly sender: string;
  /** Bearer token the peer issued to this site. */
  readonly token: string;
  readonly requestTimeoutMs?: number;
  readonly compression?: Compression;
}

export interface SendReport extends ReplicateResult {
  /** Bytes of the encoded batch as it went on the wire. */
  readonly wireBytes: number;
}

export class HttpUplink {
  private readonly endpoint: string;
  constructor(private readonly options: HttpUplinkOptions) {
    this.endpoint = new URL('/v1/batches', options.url).toString();
  }

  get destination(): string {
    return this.options.url;
  }

  async send(records: readonly LogRecord[]): Promise<SendReport> {
    const body = encodeBatch({ sender: this.options.sender, records }, this.options.compression);
    let response: Response;
    try {
      response = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${this.options.token}` },
        body,
        signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 30_000),
      });
    } catch (error) {
      throw new LinkError(`no answer from ${this.options.url}: ${(error as Error).message}`, {
        retriable: true,
        cause: error,
      });
    }
    const text = await response.text().catch(() => '');
    if (!response.ok) {
      let detail = text;
      try {
        const parsed = JSON.parse(text) as { code?: string; message?: string };
        detail = `${parsed.code ?? ''}: ${parsed.message ?? text}`;
      } catch {
        // Not our JSON error shape (a proxy's page, say); keep the raw text.
      }
      throw new LinkError(`${this.options.url} refused the batch (HTTP ${response.status}) ${detail}`.trim(), {
        status: response.status,
        // Server-side trouble and rate limits pass; a refused batch will be refused again.
        retriable: response.status >= 500 || response.status === 429 || response.status === 408,
      });
    }
    const ack = JSON.parse(text) as ReplicateResult;
    return { ...ack, wireBytes: body.length };
  }
}
