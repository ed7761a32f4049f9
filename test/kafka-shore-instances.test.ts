/**
 * Two real `portcall shore` processes of one site on one Kafka cluster (same topics), the way
 * several ingest instances serve a site: each sending site is served by one instance at a
 * time, through its own transactional id.
 *
 * - The ship's batches carry their place in its log; its cursor is committed to Kafka with the
 *   records, so the instance the ship moves to answers where it stands without having seen it.
 * - When the ship moves to instance B, B registers the ship's transactional id and fences A:
 *   a batch A still gets for the ship (a stale connection, a retry) is refused (503), and none
 *   of it reaches Kafka.
 * - A port relays the ship's records (same origin) to B while the ship sends them too: every
 *   record is stored once (the two senders' transactions claim the logical topics they touch).
 * - The ship goes back to A, which fences B, re-reads what B committed, and goes on exactly.
 *
 * Afterwards a plain read_committed consumer finds every record exactly once, in order.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, expect, it } from 'vitest';

import type { LogRecord } from '../core/index.js';
import { BATCH_CONTENT_TYPE, Compression, encodeBatch } from '../edge/link/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';
import { readBackCommitted } from './support/kafka-readback.js';
import { ORIGIN, originRecord, verifyExactlyOnce } from './support/origin-sender.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const TOPICS = 6;
const SHIP_TOKEN = 'aurora-to-shore-token-0001';
const PORT_TOKEN = 'tokyo-to-shore-token-00001';
const STREAM = 'origin-log';

const dataDir = mkdtempSync(join(tmpdir(), 'portcall-kafka-instances-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
const running: PortcallProcess[] = [];
afterEach(async () => {
  await Promise.all(
    running.splice(0).map(async (child) => {
      // A stop that did not end by itself (exit 1 after the grace period) shows what it waited for.
      if ((await child.stop()) !== 0) process.stderr.write(`[kafka-shore-instances] a shore did not stop cleanly:\n${child.output().slice(-3000)}\n`);
    }),
  );
});

interface Posted {
  readonly status: number;
  readonly body: { stored?: number; duplicates?: number; message?: string; code?: string };
}

async function post(url: string, token: string, sender: string, from: number, to: number, acked: number, incarnation: string): Promise<Posted> {
  const records: LogRecord[] = [];
  for (let i = from; i < to; i++) records.push(originRecord(i, TOPICS));
  const response = await fetch(new URL('/v1/batches', url), {
    method: 'POST',
    headers: {
      'content-type': BATCH_CONTENT_TYPE,
      authorization: `Bearer ${token}`,
      'pc-stream': STREAM,
      'pc-incarnation': incarnation,
      'pc-from': String(from),
      'pc-to': String(to),
      'pc-acked': String(Math.min(acked, from)),
    },
    body: encodeBatch({ sender, records }, Compression.None),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, body: (await response.json()) as Posted['body'] };
}

/** Posts until acknowledged, resending on 503 as a forwarder does (bounded). */
async function postUntilStored(url: string, token: string, sender: string, from: number, to: number, incarnation: string): Promise<Posted> {
  for (let attempt = 0; ; attempt++) {
    const result = await post(url, token, sender, from, to, from, incarnation);
    if (result.status !== 503 || attempt >= 40) return result;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function positionOf(url: string, token: string, incarnation: string): Promise<number | undefined> {
  const response = await fetch(new URL(`/v1/positions?incarnation=${incarnation}`, url), { headers: { authorization: `Bearer ${token}` } });
  expect(response.status).toBe(200);
  return ((await response.json()) as { positions: Record<string, number> }).positions[STREAM];
}

interface KafkaLogDetails {
  fencedTransactions?: number;
  senders?: string[];
  kafkajsSpeedups?: Record<string, string>;
}

async function health(url: string): Promise<KafkaLogDetails> {
  const response = await fetch(new URL('/healthz', url));
  const body = (await response.json()) as { components: { component: string; details?: Record<string, unknown> }[] };
  return (body.components.find((component) => component.component === 'kafka-log')?.details ?? {}) as KafkaLogDetails;
}

describeKafka('two portcall shore instances of one site on one Kafka cluster', () => {
  it('fences a stale instance per sender, keeps the cursor in Kafka, and stores relayed records once', { timeout: 180_000 }, async () => {
    const bootstrap = kafkaBootstrap()!;
    const run = randomBytes(3).toString('hex');
    const site = `HQ${run}`;
    const topicPrefix = `instances${run}`;
    const start = async (name: string) => {
      // Same site and topics; each instance keeps its own topic index beside it.
      const config = writeYaml(join(dataDir, `${name}.yaml`), {
        site,
        dataDir: join(dataDir, name),
        log: { backend: 'kafka', kafka: { brokers: [bootstrap], topicPrefix, partitions: 3 } },
        http: { host: '127.0.0.1', port: 0 },
        ingest: {
          peers: [
            { site: ORIGIN, token: SHIP_TOKEN },
            { site: 'TOKYO', token: PORT_TOKEN },
          ],
        },
      });
      const child = startPortcall(['shore', '--config', config]);
      running.push(child);
      return (await child.waitFor(/HTTP on (http:\/\/[\d.]+:\d+)/, 60_000))[1]!;
    };
    const [a, b] = await Promise.all([start('a'), start('b')]);
    // Run from the bundle (support/portcall-process.ts), a shore has kafkajs's speedups: each
    // entry of the bundle runs cli/preload.ts before anything loads kafkajs.
    expect((await health(a)).kafkajsSpeedups).toEqual({ recordEncoder: 'installed', grouping: 'installed', produceRequest: 'installed', framing: 'installed', recordDecoder: 'installed' });
    const ship = `ship-${run}`;
    const port = `port-${run}`;

    // 1. The ship sends its first 1,200 records to A.
    for (let from = 0; from < 1_200; from += 300) {
      expect(await postUntilStored(a, SHIP_TOKEN, ORIGIN, from, from + 300, ship)).toMatchObject({ status: 200, body: { stored: 300, duplicates: 0 } });
    }

    // 2. It moves to B, which never saw it: B answers from the cursor A committed to Kafka.
    expect(await positionOf(b, SHIP_TOKEN, ship)).toBe(1_200);

    // 3. B takes the ship over (registering its transactional id fences A's producer for it).
    expect(await postUntilStored(b, SHIP_TOKEN, ORIGIN, 1_200, 1_500, ship)).toMatchObject({ status: 200, body: { stored: 300, duplicates: 0 } });

    // 4. A stale batch reaches A: records A has never seen, which B already stored. A's
    //    producer for the ship is fenced, so it must refuse, retriably, and write nothing.
    const stale = await post(a, SHIP_TOKEN, ORIGIN, 1_200, 1_600, 1_200, ship);
    expect(stale.status).toBe(503);
    expect(stale.body.message).toMatch(/another ingest instance now serves sender AURORA/);
    expect((await health(a)).fencedTransactions).toBeGreaterThanOrEqual(1);

    // 5. At B, the ship and a port relaying the ship's records (same origin, overlapping
    //    ranges) send at the same time: each record is stored once.
    const shipAtB = (async () => {
      for (let from = 1_500; from < 3_000; from += 250) {
        const result = await postUntilStored(b, SHIP_TOKEN, ORIGIN, from, from + 250, ship);
        expect(result.status).toBe(200);
      }
    })();
    const portAtB = (async () => {
      for (let from = 1_000; from < 3_000; from += 400) {
        const result = await postUntilStored(b, PORT_TOKEN, 'TOKYO', from, Math.min(3_000, from + 400), port);
        expect(result.status).toBe(200);
      }
    })();
    await Promise.all([shipAtB, portAtB]);
    expect((await health(b)).senders?.sort()).toEqual([ORIGIN, 'TOKYO']);

    // 6. The ship goes back to A (fencing B for it): A re-reads what B committed meanwhile, so
    //    the overlap it is sent is a duplicate, not a second copy and not a gap.
    expect(await positionOf(a, SHIP_TOKEN, ship)).toBe(3_000);
    const back = await postUntilStored(a, SHIP_TOKEN, ORIGIN, 2_800, 3_400, ship);
    expect(back).toMatchObject({ status: 200, body: { stored: 400, duplicates: 200 } });
    // And B, now stale for the ship (it last saw 3,000 of it), refuses it.
    expect((await post(b, SHIP_TOKEN, ORIGIN, 3_000, 3_500, 3_000, ship)).status).toBe(503);
    expect(await positionOf(b, SHIP_TOKEN, ship)).toBe(3_400);

    const read = await readBackCommitted(bootstrap, `${topicPrefix}.containers`);
    read.push(...(await readBackCommitted(bootstrap, `${topicPrefix}.ships`)));
    expect(verifyExactlyOnce(read, TOPICS, 3_400)).toEqual([]);
    expect(read).toHaveLength(3_400);

    // A serves reads of what B wrote once it re-read it (step 6); its topic index is rebuilt
    // from Kafka meanwhile, and a read waits for that (503, retriable) rather than answer short.
    let latest: Response | undefined;
    for (let attempt = 0; attempt < 60; attempt++) {
      latest = await fetch(new URL(`/v1/streams/containers/topics/C00/latest`, a));
      if (latest.status !== 503) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(latest!.status).toBe(200);
    expect(((await latest!.json()) as { offset: number }).offset).toBe(Math.floor((3_400 - 1) / TOPICS));
  });
});
