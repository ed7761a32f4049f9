/**
 * The routes an embedded site has, on a site whose log is on Kafka (in-process startSite, real
 * HTTP, the real broker): holdings digests (a sender resuming where this site holds its
 * records), per-topic summaries (`portcall verify --sites`), and one writer per topic with
 * handoff (core/writership.ts through the writer guard over the Kafka log), also after a
 * restart, when the writer is known only from what Kafka holds.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';

import type { LogRecord } from '../core/index.js';
import { HANDOFF_HEADER } from '../core/writership.js';
import { digestHex, topicWeight } from '../core/holdings.js';
import { BATCH_CONTENT_TYPE, Compression, encodeBatch } from '../edge/link/index.js';
import { parseSiteConfig, startSite, type RunningSite } from '../site/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';

const PEER = 'aurora-to-port-token-0123456789';
const HANDOFF = 'port-handoff-token-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'portcall-kafka-routes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function record(topic: string, offset: number, headers: Record<string, string> = {}): LogRecord {
  return { origin: 'AURORA', stream: 'containers', topic, offset, eventTimeMs: 1_772_000_000_000 + offset, ingestTimeMs: 1_772_000_000_000, headers, payload: Buffer.from(JSON.stringify({ temperature: 4, n: offset })) };
}

describeKafka('a Kafka-backed site serves holdings, summaries and handoffs', () => {
  it('answers holdings digests and summaries from Kafka, and hands a topic over once, also after a restart', { timeout: 120_000 }, async () => {
    const config = parseSiteConfig({
      site: 'PORT',
      dataDir: dir,
      http: { port: 0 },
      handoffToken: HANDOFF,
      ingest: { peers: [{ site: 'AURORA', token: PEER }] },
      log: { backend: 'kafka', kafka: { brokers: [kafkaBootstrap()!], topicPrefix: `routes${randomBytes(3).toString('hex')}`, partitions: 3 } },
    });
    let site: RunningSite = await startSite(config, { logger: pino({ level: 'silent' }) });
    try {
      let url = site.httpUrl!;
      // The ship's containers: Y01 unloaded here (its last record hands it to PORT), Y02 still aboard.
      const batch = [...[0, 1, 2, 3].map((offset) => record('Y01', offset)), record('Y01', 4, { [HANDOFF_HEADER]: 'PORT' }), ...[0, 1, 2].map((offset) => record('Y02', offset))];
      const posted = await fetch(`${url}/v1/batches`, {
        method: 'POST',
        headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${PEER}` },
        body: encodeBatch({ sender: 'AURORA', records: batch }, Compression.None),
      });
      expect(posted.status).toBe(200);

      // Holdings: one digest per origin, Σ weight × next offset over the topics whose last record is that origin's.
      const seed = 'seed-0123456789';
      const holdings = await fetch(`${url}/v1/holdings?stream=containers&origins=AURORA,PORT&seed=${seed}`, { headers: { authorization: `Bearer ${PEER}` } });
      expect(holdings.status).toBe(200);
      const expected = digestHex(topicWeight(seed, 'containers', 'Y01') * 5n + topicWeight(seed, 'containers', 'Y02') * 3n);
      expect(await holdings.json()).toEqual({
        stream: 'containers',
        holdings: { AURORA: { topics: 2, records: 8, digest: expected }, PORT: { topics: 0, records: 0, digest: digestHex(0n) } },
      });

      // One writer per topic: PORT writes Y01 now and hands it to the next ship; Y02 is AURORA's.
      const handoff = (topic: string, to: string) =>
        fetch(`${url}/v1/streams/containers/topics/${topic}/handoff`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${HANDOFF}` },
          body: JSON.stringify({ to }),
        });
      const handed = await handoff('Y01', 'NEXTSHIP');
      expect(handed.status).toBe(200);
      expect(await handed.json()).toEqual({ origin: 'PORT', stream: 'containers', topic: 'Y01', offset: 5, to: 'NEXTSHIP' });
      const again = await handoff('Y01', 'OTHERSHIP');
      expect(again.status).toBe(409);
      expect(await again.json()).toMatchObject({ code: 'NOT_WRITER', writer: 'NEXTSHIP' });
      const notOurs = await handoff('Y02', 'NEXTSHIP');
      expect(notOurs.status).toBe(409);
      expect(await notOurs.json()).toMatchObject({ code: 'NOT_WRITER', writer: 'AURORA' });

      // The handoff record is in Kafka (read through the topic index) and in the stream.
      const latest = (await (await fetch(`${url}/v1/streams/containers/topics/Y01/latest`)).json()) as { origin: string; offset: number; headers: Record<string, string> };
      expect(latest).toMatchObject({ origin: 'PORT', offset: 5, headers: { [HANDOFF_HEADER]: 'NEXTSHIP' } });
      const summaries = (await (await fetch(`${url}/v1/summaries/containers`)).json()) as { topics: { topic: string; firstOffset: number; nextOffset: number; records: number }[] };
      expect(summaries.topics.map(({ topic, firstOffset, nextOffset, records }) => ({ topic, firstOffset, nextOffset, records }))).toEqual([
        { topic: 'Y01', firstOffset: 0, nextOffset: 6, records: 6 },
        { topic: 'Y02', firstOffset: 0, nextOffset: 3, records: 3 },
      ]);

      // After a restart the writer is read back from Kafka: still refused.
      await site.close();
      site = await startSite(config, { logger: pino({ level: 'silent' }) });
      url = site.httpUrl!;
      const afterRestart = await handoff('Y01', 'OTHERSHIP');
      expect(afterRestart.status).toBe(409);
      expect(await afterRestart.json()).toMatchObject({ code: 'NOT_WRITER', writer: 'NEXTSHIP' });
    } finally {
      await site.close();
    }
  });
});
