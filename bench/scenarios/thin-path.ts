/**
 * thin-path: readings per second from MQTT publish on the ship to durable storage at the
 * shore (gateway → SQLite log → forwarder → HTTP → ingest → SQLite log), against Mosquitto
 * relaying the same readings from publisher to subscriber in memory, in the same run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { parseSiteConfig, startSite } from '../../site/index.js';
import { startMosquitto } from '../../tools/mosquitto/index.js';
import type { BenchContext, Figure, Scenario } from '../harness.js';
import { publishLoad } from '../mqtt-load.js';

const TOKEN = 'bench-token-0123456789abcdef';

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the pipeline to drain');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function measurePortcall(messages: number, containers: number): Promise<number> {
  const dataDir = mkdtempSync(join(tmpdir(), 'portcall-bench-'));
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const shore = await startSite(
    parseSiteConfig({ site: 'SHORE', dataDir, http: { port: 0 }, ingest: { peers: [{ site: 'SHIP', token: TOKEN }] } }),
    { logger },
  );
  const ship = await startSite(
    parseSiteConfig({ site: 'SHIP', dataDir, mqtt: { port: 0, auth: { allowAnonymous: true } }, links: [{ name: 'SHORE', url: shore.httpUrl!, token: TOKEN }] }),
    { logger },
  );
  try {
    const startedAt = performance.now();
    await publishLoad({
      brokerUrl: `mqtt://127.0.0.1:${ship.mqttPort!}`,
      connections: 4,
      messages,
      containers,
      topicPrefix: 'bigblue/containers',
      qos: 1,
      windowPerConnection: 200,
    });
    await waitUntil(() => (shore.stats().ingest?.recordsStored ?? 0) >= messages, 120_000);
    return messages / ((performance.now() - startedAt) / 1000);
  } finally {
    await ship.close();
    await shore.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function measureMosquitto(messages: number, containers: number): Promise<number> {
  const broker = await startMosquitto();
  try {
    const subscriber = mqtt.connect(broker.url, { clientId: 'bench-sub', protocolVersion: 4, clean: true });
    await new Promise<void>((resolve, reject) => {
      subscriber.once('connect', () => resolve());
      subscriber.once('error', reject);
    });
    await subscriber.subscribeAsync('bigblue/#', { qos: 1 });
    let received = 0;
    subscriber.on('message', () => (received += 1));
    const startedAt = performance.now();
    await publishLoad({
      brokerUrl: broker.url,
      connections: 4,
      messages,
      containers,
      topicPrefix: 'bigblue/containers',
      qos: 1,
      windowPerConnection: 200,
    });
    await waitUntil(() => received >= messages, 120_000);
    const rate = messages / ((performance.now() - startedAt) / 1000);
    await subscriber.endAsync();
    return rate;
  } finally {
    await broker.stop();
  }
}

export const thinPathScenario: Scenario = {
  name: 'thin-path',
  description: 'Readings/s from MQTT publish on the ship to durable storage at the shore, vs Mosquitto pub→sub',
  async run(context: BenchContext): Promise<Figure[]> {
    const messages = Math.round(20_000 * context.scale);
    const containers = 1000;
    context.progress(`thin-path: ${messages} QoS 1 readings over ${containers} containers through portcall…`);
    const portcallRate = await measurePortcall(messages, containers);
    context.progress(`thin-path: the same readings through Mosquitto (publisher → subscriber)…`);
    const mosquittoRate = await measureMosquitto(messages, containers);
    return [
      {
        scenario: 'thin-path',
        metric: 'readings end to end (QoS 1, durable at ship and shore)',
        value: portcallRate,
        unit: 'readings/s',
        baseline: 'mosquitto (QoS 1 pub→sub, in memory)',
        baselineValue: mosquittoRate,
      },
    ];
  },
};
