/**
 * A link keeps several batches in flight on one HTTP/2 connection, and the receiving site
 * refuses a batch that would leave a gap. So the batches of a stream must complete at the
 * receiver in the order they were read, or every overtaking batch costs the link a refusal and
 * a resend of everything after it.
 *
 * HTTP/2 does not give that by itself: the bench's first link-shaped sender (2026-11-23) ended
 * eight 1.5 MB bodies at once on one connection, the frames of the streams interleaved, and a
 * later batch often completed first: in one run of 30 batches the sender had to start again 4
 * times. The link's pacer writes bulk bodies strictly one after another (edge/link/pacer.ts);
 * this test holds the real link to that against a real site: 8 batches of 5,000 records in
 * flight (each body larger than one of the pacer's pieces), none refused. (With the pacer
 * taking any unblocked bulk body instead of the first, it fails.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { LogRecord } from '../core/index.js';
import { Http2Link, type BatchPosition } from '../edge/link/index.js';
import { parseSiteConfig, startSite, type RunningSite } from '../site/index.js';
import { fleetRecords, take } from '../bench/uplink-fleet.js';

const TOKEN = 'aurora-link-order-token-0001';
const BATCH_RECORDS = 5_000;
const BATCHES = 24;
const IN_FLIGHT = 8;

describe('a link with batches in flight on one HTTP/2 connection', () => {
  let dir: string | undefined;
  let site: RunningSite | undefined;
  let link: Http2Link | undefined;
  afterEach(async () => {
    await link?.close();
    await site?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it(`delivers ${BATCHES} batches of one stream, ${IN_FLIGHT} in flight, in order: none refused for a gap`, { timeout: 120_000 }, async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcall-link-order-'));
    site = await startSite(
      parseSiteConfig({ site: 'TOKYO', dataDir: dir, http: { host: '127.0.0.1', port: 0 }, ingest: { peers: [{ site: 'AURORA', token: TOKEN }] } }),
      { logger: pino({ level: 'silent' }) },
    );
    // Brotli's fastest quality: about 23 KB a body, more than one of the pacer's 16 KB pieces,
    // so bodies written side by side would interleave (and did, with the pacer mutated).
    link = new Http2Link({ url: site.httpUrl!, sender: 'AURORA', token: TOKEN, compressionQuality: 0 });
    const records = take(fleetRecords({ containers: 500 }), BATCH_RECORDS * BATCHES);
    const batches: LogRecord[][] = [];
    for (let start = 0; start < records.length; start += BATCH_RECORDS) batches.push(records.slice(start, start + BATCH_RECORDS));

    const refusals: string[] = [];
    let acked = 0;
    let next = 0;
    const flights = new Map<number, Promise<void>>();
    const send = (k: number) => {
      const position: BatchPosition = { stream: 'containers', from: k * BATCH_RECORDS, to: (k + 1) * BATCH_RECORDS, acked: acked * BATCH_RECORDS, incarnation: 'link-order' };
      return link!.send(batches[k]!, { position }).then(
        () => undefined,
        (error: Error) => {
          refusals.push(`batch ${k}: ${error.message}`);
        },
      );
    };
    while (acked < batches.length) {
      while (next < batches.length && next - acked < IN_FLIGHT) {
        flights.set(next, send(next));
        next += 1;
      }
      await flights.get(acked);
      flights.delete(acked);
      acked += 1;
    }

    expect(refusals).toEqual([]);
    expect(site.stats().ingest?.batchesAccepted).toBe(BATCHES);
    expect(site.stats().ingest?.recordsStored).toBe(records.length);
    expect(site.stats().ingest?.batchesRefused).toBe(0);
  });
});
