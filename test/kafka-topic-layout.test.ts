/**
 * A shore site on Kafka creates its bounded set of topics as configured: partitions,
 * replication, min.insync.replicas and retention for all streams or per stream, and a
 * compacted high-water topic; and it serves its health on /healthz and /readyz.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import kafkajs, { Kafka, logLevel } from 'kafkajs';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';

import { parseSiteConfig, startSite } from '../site/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';

const dataDir = mkdtempSync(join(tmpdir(), 'portcall-kafka-layout-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describeKafka('Kafka topic layout of a shore site', () => {
  it('creates one topic per stream with the configured settings, and a compacted high-water topic', async () => {
    const bootstrap = kafkaBootstrap()!;
    const topicPrefix = `layout${randomBytes(3).toString('hex')}`;
    const site = await startSite(
      parseSiteConfig({
        site: 'LAYOUT',
        dataDir,
        log: {
          backend: 'kafka',
          kafka: {
            brokers: [bootstrap],
            topicPrefix,
            partitions: 2,
            retentionHours: 24,
            streams: { containers: { partitions: 5, retentionHours: 0.5, retentionBytesPerPartition: 50_000_000 } },
          },
        },
        http: { port: 0 },
        ingest: { peers: [] },
      }),
      { logger: pino({ level: 'silent' }) },
    );
    const admin = new Kafka({ clientId: 'layout-test', brokers: [bootstrap], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const topics = ['alerts', 'manifests', 'ships', 'containers', 'highwater'].map((name) => `${topicPrefix}.${name}`);
      const metadata = await admin.fetchTopicMetadata({ topics });
      const partitions = Object.fromEntries(metadata.topics.map((topic) => [topic.name.slice(topicPrefix.length + 1), topic.partitions.length]));
      expect(partitions).toEqual({ alerts: 2, manifests: 2, ships: 2, containers: 5, highwater: 2 });
      const described = await admin.describeConfigs({
        includeSynonyms: false,
        resources: topics.map((name) => ({
          type: kafkajs.ConfigResourceTypes.TOPIC,
          name,
          configNames: ['cleanup.policy', 'retention.ms', 'retention.bytes', 'min.insync.replicas'],
        })),
      });
      const config = (name: string) =>
        Object.fromEntries(
          described.resources.find((r) => r.resourceName === `${topicPrefix}.${name}`)!.configEntries.map((e) => [e.configName, e.configValue]),
        );
      expect(config('containers')).toEqual({ 'cleanup.policy': 'delete', 'retention.ms': '1800000', 'retention.bytes': '50000000', 'min.insync.replicas': '1' });
      expect(config('ships')).toEqual({ 'cleanup.policy': 'delete', 'retention.ms': '86400000', 'retention.bytes': '-1', 'min.insync.replicas': '1' });
      expect(config('highwater')['cleanup.policy']).toBe('compact');

      const ready = await fetch(new URL('/readyz', site.httpUrl));
      expect(ready.status).toBe(200);
      const health = (await (await fetch(new URL('/healthz', site.httpUrl))).json()) as { status: string; components: { component: string; status: string }[] };
      expect(health).toMatchObject({ status: 'ok', components: [{ component: 'kafka-log', status: 'ok' }] });
    } finally {
      await admin.disconnect();
      await site.close();
    }
  });
});
