/**
 * The thin path, every hop real and in its own process: an mqtt.js sensor → `portcall edge`
 * (aedes gateway → SQLite log → forwarder → HTTP link) → `portcall shore` (ingest → SQLite
 * log or Apache Kafka) → the shore's read API; for Kafka, the records are also read back
 * from Kafka itself with their identity in headers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { Kafka, logLevel } from 'kafkajs';
import { registerLz4Codec } from '../cloud/kafka-log/index.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';
import { kafkaBootstrap } from './support/kafka.js';

const CONTAINERS = ['Y01', 'Y02', 'Y03', 'B01', 'B02'];
const READINGS_PER_CONTAINER = 10;

interface SentReading {
  container: string;
  seq: number;
  body: { ts: number; container: string; tempC: number; seq: number };
}

async function publishReadings(mqttPort: number): Promise<SentReading[]> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'thin-path-sensor', protocolVersion: 4 });
  const sent: SentReading[] = [];
  const baseTs = Date.UTC(2026, 10, 22, 0, 0, 0);
  for (let seq = 0; seq < READINGS_PER_CONTAINER; seq += 1) {
    await Promise.all(
      CONTAINERS.map((container) => {
        const body = { ts: baseTs + seq * 60_000, container, tempC: -18 + seq / 10, seq };
        sent.push({ container, seq, body });
        // publishAsync with QoS 1 resolves on PUBACK, which the gateway sends only after commit.
        return client.publishAsync(`bigblue/containers/${container}/reefer`, JSON.stringify(body), { qos: 1 });
      }),
    );
  }
  await client.endAsync();
  return sent;
}

async function waitForLatest(shoreUrl: string, container: string, offset: number, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const response = await fetch(`${shoreUrl}/v1/streams/containers/topics/${container}/latest`);
    if (response.ok) {
      last = await response.json();
      if ((last as { offset: number }).offset >= offset) return last as Record<string, unknown>;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`container ${container} did not reach offset ${offset} at the shore; last answer ${JSON.stringify(last)}`);
}

describe('thin path: sensor → gateway → log → forwarder → link → ingest → shore log → read API', () => {
  const processes: PortcallProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.stop();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function startPair(shoreLog: Record<string, unknown>) {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-thin-'));
    dirs.push(dir);
    const token = randomBytes(16).toString('hex');
    const shore = startPortcall([
      'shore',
      '--config',
      writeYaml(join(dir, 'tokyo.yaml'), {
        site: 'TOKYO',
        dataDir: dir,
        log: shoreLog,
        http: { port: 0 },
        ingest: { peers: [{ site: 'AURORA', token }] },
      }),
    ]);
    processes.push(shore);
    const [, shoreUrl] = await shore.waitFor(/HTTP on (http:\/\/\S+) /, 60_000);
    const edge = startPortcall([
      'edge',
      '--config',
      writeYaml(join(dir, 'aurora.yaml'), {
        site: 'AURORA',
        dataDir: dir,
        mqtt: { port: 0, auth: { allowAnonymous: true } },
        links: [{ name: 'TOKYO', url: shoreUrl, token }],
      }),
    ]);
    processes.push(edge);
    const [, mqttPort] = await edge.waitFor(/MQTT on 127\.0\.0\.1:(\d+)/);
    return { shoreUrl: shoreUrl!, mqttPort: Number(mqttPort) };
  }

  it('embedded shore: every container’s latest reading arrives with its identity', async () => {
    const { shoreUrl, mqttPort } = await startPair({ backend: 'sqlite' });
    const sent = await publishReadings(mqttPort);
    for (const container of CONTAINERS) {
      const latest = await waitForLatest(shoreUrl, container, READINGS_PER_CONTAINER - 1);
      const expected = sent.find((reading) => reading.container === container && reading.seq === READINGS_PER_CONTAINER - 1)!;
      expect(latest).toMatchObject({
        origin: 'AURORA',
        stream: 'containers',
        topic: container,
        offset: READINGS_PER_CONTAINER - 1,
        eventTime: new Date(expected.body.ts).toISOString(),
        payload: expected.body,
        headers: { 'mqtt-topic': `bigblue/containers/${container}/reefer` },
      });
    }
    const unknown = await fetch(`${shoreUrl}/v1/streams/containers/topics/NOPE1/latest`);
    expect(unknown.status).toBe(404);
  });

  it.skipIf(kafkaBootstrap() === null)('Kafka shore: records land in Kafka once each, identity in headers', async () => {
    const bootstrap = kafkaBootstrap()!;
    const topicPrefix = `thin${randomBytes(4).toString('hex')}`;
    const { shoreUrl, mqttPort } = await startPair({ backend: 'kafka', kafka: { brokers: [bootstrap], topicPrefix, partitions: 3 } });
    const sent = await publishReadings(mqttPort);
    for (const container of CONTAINERS) {
      const latest = await waitForLatest(shoreUrl, container, READINGS_PER_CONTAINER - 1, 60_000);
      expect(latest).toMatchObject({ origin: 'AURORA', topic: container, offset: READINGS_PER_CONTAINER - 1 });
    }

    // The site writes LZ4 batches; a kafkajs consumer needs an LZ4 codec for them, as any third party's does.
    expect(registerLz4Codec()).toBe(true);
    const kafka = new Kafka({ clientId: 'thin-path-test', brokers: [bootstrap], logLevel: logLevel.NOTHING });
    const consumer = kafka.consumer({ groupId: `thin-path-${topicPrefix}`, readUncommitted: false });
    await consumer.connect();
    await consumer.subscribe({ topic: `${topicPrefix}.containers`, fromBeginning: true });
    const seen: { key: string; headers: Record<string, string>; value: unknown }[] = [];
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(message.headers ?? {})) headers[name] = String(value);
        seen.push({ key: message.key!.toString(), headers, value: JSON.parse(message.value!.toString()) });
      },
    });
    const deadline = Date.now() + 60_000;
    while (seen.length < sent.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    await new Promise((resolve) => setTimeout(resolve, 500)); // a duplicate would show up here
    await consumer.disconnect();

    expect(seen).toHaveLength(sent.length);
    for (const container of CONTAINERS) {
      const ofContainer = seen.filter((message) => message.key === container);
      // Keyed by container, so one partition holds it in order: offsets 0..n-1, as published.
      expect(ofContainer.map((message) => Number(message.headers['pc-offset']))).toEqual(
        Array.from({ length: READINGS_PER_CONTAINER }, (_unused, index) => index),
      );
      for (const message of ofContainer) {
        expect(message.headers).toMatchObject({ 'pc-origin': 'AURORA', 'pc-stream': 'containers', 'pc-topic': container });
        const seq = Number(message.headers['pc-offset']);
        expect(message.value).toEqual(sent.find((reading) => reading.container === container && reading.seq === seq)!.body);
      }
    }
  });
});
