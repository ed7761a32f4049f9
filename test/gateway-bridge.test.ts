/**
 * Bridge mode against the real Mosquitto: the `portcall edge` process subscribes to an
 * onboard broker (a private Mosquitto with persistence, as a ship would run it) and stores
 * what it carries. The gateway is killed with -9 and the broker restarted, with readings
 * published while the gateway is away: afterwards the log holds every reading once, in order.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { startMosquitto, type MosquittoBroker } from '../tools/mosquitto/index.js';
import { readLogTopics, SITE } from './support/gateway-site.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const CONTAINERS = ['U01', 'U02', 'U03', 'U04'];
const BATCH = 120;
const LARGE_BATCH = 400;
/** The bridge's receive window: at most this many deliveries are committed but not yet acknowledged. */
const MAX_IN_FLIGHT = 20;

async function publishBatch(brokerUrl: string, first: number, count: number): Promise<void> {
  const client = await mqtt.connectAsync(brokerUrl, { clientId: `onboard-sensor-${first}`, protocolVersion: 4, reconnectPeriod: 0 });
  await Promise.all(
    Array.from({ length: count }, (_unused, index) => {
      const seq = first + index;
      return client.publishAsync(
        `bigblue/containers/${CONTAINERS[seq % CONTAINERS.length]!}/reefer`,
        JSON.stringify({ ts: 1_763_769_600_000 + seq, seq }),
        { qos: 1 },
      );
    }),
  );
  await client.endAsync();
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function stored(httpUrl: string): Promise<number> {
  let total = 0;
  for (const container of CONTAINERS) {
    // No keep-alive: an idle kept-alive connection would hold the site's HTTP close for seconds.
    const response = await fetch(`${httpUrl}/v1/streams/containers/topics/${container}/latest`, { headers: { connection: 'close' } });
    if (response.ok) total += ((await response.json()) as { offset: number }).offset + 1;
  }
  return total;
}

describe('bridge mode against Mosquitto', () => {
  const processes: PortcallProcess[] = [];
  const brokers: MosquittoBroker[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const broker of brokers.splice(0)) await broker.stop().catch(() => undefined);
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('stores the broker\'s messages after commit and resumes without loss after either side restarts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'portcall-bridge-'));
    dirs.push(dataDir);
    // Its own directory under the temporary root: a root-started Mosquitto saves as its own
    // user, which cannot enter a private test directory.
    const persistenceDir = mkdtempSync(join(tmpdir(), 'portcall-mosquitto-data-'));
    dirs.push(persistenceDir);
    let broker = await startMosquitto({ persistenceDir });
    brokers.push(broker);
    const config = writeYaml(join(dataDir, 'edge.yaml'), {
      site: SITE,
      dataDir,
      http: { port: 0 },
      mqtt: { port: 0, auth: { allowAnonymous: true }, bridge: { url: broker.url, topics: ['bigblue/#'], maxInFlight: MAX_IN_FLIGHT } },
    });
    const startEdge = async () => {
      const edge = startPortcall(['edge', '--config', config]);
      processes.push(edge);
      const [, httpUrl] = await edge.waitFor(/HTTP on (http:\/\/\S+) /);
      await waitFor(async () => (await (await fetch(`${httpUrl!}/metrics`, { headers: { connection: 'close' } })).text()).includes('portcall_gateway_bridge_up{site="AURORA"} 1'), 'bridge up');
      return httpUrl!;
    };

    let httpUrl = await startEdge();
    await publishBatch(broker.url, 0, BATCH);
    await waitFor(async () => (await stored(httpUrl)) === BATCH, 'first batch stored');

    // The gateway dies; the broker keeps its session and queues for it.
    await processes.pop()!.kill9();
    await publishBatch(broker.url, BATCH, BATCH);
    // The broker restarts too, with the queue in its persistence.
    await broker.stop();
    brokers.pop();
    broker = await startMosquitto({ port: broker.port, persistenceDir });
    brokers.push(broker);
    await publishBatch(broker.url, 2 * BATCH, BATCH);

    httpUrl = await startEdge();
    await waitFor(async () => (await stored(httpUrl)) === 3 * BATCH, 'queued batches stored after restarts');

    // The broker restarts under a running gateway: the bridge reconnects on its own.
    await broker.stop();
    brokers.pop();
    broker = await startMosquitto({ port: broker.port, persistenceDir });
    brokers.push(broker);
    await waitFor(async () => (await (await fetch(`${httpUrl}/metrics`, { headers: { connection: 'close' } })).text()).includes('portcall_gateway_bridge_up{site="AURORA"} 1'), 'bridge back up');
    await publishBatch(broker.url, 3 * BATCH, BATCH);
    await waitFor(async () => (await stored(httpUrl)) === 4 * BATCH, 'batch after broker restart stored');
    await processes.pop()!.stop();

    let topics = await readLogTopics(dataDir, 'containers', CONTAINERS);
    const seqsOf = (index: number) => topics[index]!.map((record) => (JSON.parse(Buffer.from(record.payload).toString()) as { seq: number }).seq);
    const expectedOf = (container: string, count: number) =>
      Array.from({ length: count }, (_unused, seq) => seq).filter((seq) => CONTAINERS[seq % CONTAINERS.length] === container);
    for (const [index, container] of CONTAINERS.entries()) {
      expect(seqsOf(index)).toEqual(expectedOf(container, 4 * BATCH));
      expect(topics[index]!.every((record) => record.headers['mqtt-topic'] === `bigblue/containers/${container}/reefer`)).toBe(true);
    }

    // Killed while the broker is delivering: whatever the broker saw acknowledged was durable,
    // so nothing is missing afterwards; a delivery committed but not yet acknowledged comes
    // again (at least once between brokers).
    httpUrl = await startEdge();
    const total = 4 * BATCH + LARGE_BATCH;
    const publishing = publishBatch(broker.url, 4 * BATCH, LARGE_BATCH);
    await waitFor(async () => (await stored(httpUrl)) > 4 * BATCH, 'delivery under way');
    await processes.pop()!.kill9();
    await publishing;
    httpUrl = await startEdge();
    await waitFor(async () => (await stored(httpUrl)) >= total, 'every message stored after the crash');
    await processes.pop()!.stop();
    topics = await readLogTopics(dataDir, 'containers', CONTAINERS);
    let duplicates = 0;
    for (const [index, container] of CONTAINERS.entries()) {
      const seqs = seqsOf(index);
      expect([...new Set(seqs)].sort((a, b) => a - b)).toEqual(expectedOf(container, total));
      duplicates += seqs.length - new Set(seqs).size;
    }
    // Only what was committed but not yet acknowledged when the process died comes twice: at
    // most the bridge's receive window, never a replay of the batch. (Mosquitto's own window
    // does not bound this: it sends its whole queue once the bridge has acknowledged anything.)
    expect(duplicates).toBeLessThanOrEqual(MAX_IN_FLIGHT);
    // Five gateway starts and three broker starts: on a loaded two-core machine each takes seconds.
  }, 180_000);
});
