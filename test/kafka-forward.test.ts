/**
 * Forwarding out of a Kafka-backed site (docs/KAFKA.md, "Reading a stream in order"), with
 * real processes: an embedded ship → a port whose log is on Kafka → embedded headquarters.
 * The ship's devices publish over MQTT while the port is kill -9'd and restarted mid-forward;
 * afterwards the port's Kafka topics and headquarters hold every record of the ship once, at
 * the ship's offsets, and headquarters was fed only through the port's link, which read the
 * port's stream journal and kept its cursor in the port's compacted consumer-cursor topic.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import mqtt from 'mqtt';
import { afterEach, expect, it } from 'vitest';

import { seededRandom } from '../devices/emulator/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';
import { header, readBackCommitted } from './support/kafka-readback.js';
import { SiteNet, links, missingFrom, recordSet, storedCount } from './support/sites.js';
import { eventually, tempDir } from './support/uplink.js';

interface Summary {
  topic: string;
  firstOffset: number;
  nextOffset: number;
  records: number;
  hash: string;
}

async function summaries(url: string, stream: string): Promise<Summary[]> {
  const response = await fetch(`${url}/v1/summaries/${stream}?maxTopics=5000`);
  if (!response.ok) throw new Error(`GET ${url}/v1/summaries/${stream}: HTTP ${response.status} ${await response.text()}`);
  return ((await response.json()) as { topics: Summary[] }).topics;
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
});

// Headquarters embedded (4 kills of the port), and on Kafka too (its own topic prefix; 2 kills).
const CASES = [
  { hq: 'sqlite', kills: 4 },
  { hq: 'kafka', kills: 2 },
] as const;

describeKafka('forwarding from a Kafka-backed site', () => {
  it.each(CASES)('ship → port on Kafka → headquarters on $hq: every record once, at the ship\'s offsets, across $kills kill -9s of the port mid-forward', { timeout: 240_000 }, async ({ hq: hqBackend, kills: targetKills }) => {
    const bootstrap = kafkaBootstrap()!;
    const run = randomBytes(3).toString('hex');
    const topicPrefix = `fwd${run}`;
    const dir = tempDir('kafka-forward');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const net = await SiteNet.create(
      dir,
      [
        { name: 'SHIP', mqtt: true },
        { name: 'PORT', extra: { log: { backend: 'kafka', kafka: { brokers: [bootstrap], topicPrefix, partitions: 3 } } } },
        { name: 'HQ', ...(hqBackend === 'kafka' ? { extra: { log: { backend: 'kafka', kafka: { brokers: [bootstrap], topicPrefix: `${topicPrefix}hq`, partitions: 2 } } } } : {}) },
      ],
      [
        ['SHIP', 'PORT'],
        ['PORT', 'HQ'],
      ],
    );
    cleanups.push(() => net.close());
    await net.startAll();

    // The ship's devices: eight containers and an alert now and then, QoS 1.
    const devices = mqtt.connect(`mqtt://127.0.0.1:${net.mqttPort.get('SHIP')!}`, { clientId: 'ship-devices', protocolVersion: 4, reconnectPeriod: 250 });
    devices.on('error', () => undefined);
    cleanups.push(() => devices.endAsync(true));
    let sequence = 0;
    let acknowledged = 0;
    const publish = (topic: string) => {
      sequence += 1;
      devices.publish(topic, JSON.stringify({ ts: Date.now(), temperature: 3 + (sequence % 17) / 10, n: sequence }), { qos: 1 }, (error) => {
        if (error === undefined || error === null) acknowledged += 1;
      });
    };
    const timer = setInterval(() => {
      for (let container = 1; container <= 8; container += 1) publish(`bigblue/containers/C${container}/reefer`);
      if (sequence % 50 === 0) publish('bigblue/alerts/C1');
    }, 20);
    cleanups.push(() => clearInterval(timer));

    // The port is killed while it forwards (and receives), a bounded number of times.
    const random = seededRandom(11);
    let kills = 0;
    const phaseEnd = Date.now() + 90_000;
    while (kills < targetKills && Date.now() < phaseEnd) {
      // Killed only once its link is forwarding in this life (bounded wait), a random moment later.
      let before = 0;
      for (const waitEnd = Date.now() + 20_000; Date.now() < waitEnd && before < 200; await sleep(100)) {
        before = (await links(net.url('PORT')).catch(() => []))[0]?.recordsForwarded ?? 0;
      }
      await sleep(random() * 700);
      await net.kill9('PORT');
      kills += 1;
      process.stderr.write(`[kafka-forward] kill -9 #${kills} of the Kafka-backed port after it forwarded ${before}+ records in this life\n`);
      await sleep(200 + random() * 800);
      await net.start('PORT');
    }
    clearInterval(timer);
    expect(kills).toBe(targetKills);
    await eventually(() => acknowledged >= sequence - 5, 30_000, () => `${acknowledged} of ${sequence} acknowledged`);
    await sleep(500);

    // Quiescence: the ship's summaries (topic, offsets, hash of every record) are at the port and at headquarters.
    const streams = ['containers', 'alerts'];
    await eventually(
      async () => {
        for (const stream of streams) {
          const ship = JSON.stringify(await summaries(net.url('SHIP'), stream));
          if (JSON.stringify(await summaries(net.url('PORT'), stream)) !== ship) return false;
          if (JSON.stringify(await summaries(net.url('HQ'), stream)) !== ship) return false;
        }
        return true;
      },
      90_000,
      async () =>
        `not converged: ${JSON.stringify(await Promise.all(['SHIP', 'PORT', 'HQ'].map(async (site) => [site, (await summaries(net.url(site), 'containers').catch((e: Error) => [e.message])).slice(0, 3)])))}` + net.exited(),
      500,
    );
    const portLinks = await links(net.url('PORT'));
    expect(portLinks.map((link) => link.name)).toEqual(['HQ']);
    await net.stopAll();

    const ship = await recordSet(net.logPath('SHIP'), 'SHIP');
    expect(ship.size).toBeGreaterThan(1000);
    if (hqBackend === 'sqlite') {
      // Headquarters holds exactly the ship's records (identity with offset, and payload), each once.
      const hq = await recordSet(net.logPath('HQ'), 'HQ');
      expect(missingFrom(ship, hq)).toEqual([]);
      expect(missingFrom(hq, ship)).toEqual([]);
      expect(await storedCount(net.logPath('HQ'), 'HQ')).toBe(ship.size);
    }
    // The Kafka sites' topics, read by a plain read_committed consumer: the ship's records, each once.
    const shipIdentities = new Set([...ship].map((line) => line.split('|').slice(0, 4).join('|')));
    for (const prefix of hqBackend === 'kafka' ? [topicPrefix, `${topicPrefix}hq`] : [topicPrefix]) {
      const read = [...(await readBackCommitted(bootstrap, `${prefix}.containers`)), ...(await readBackCommitted(bootstrap, `${prefix}.alerts`))];
      const identities = read.map(({ message }) => ['pc-origin', 'pc-stream', 'pc-topic', 'pc-offset'].map((name) => header(message, name)).join('|'));
      expect(new Set(identities).size, prefix).toBe(identities.length);
      expect(identities.length, prefix).toBe(ship.size);
      expect(identities.filter((identity) => !shipIdentities.has(identity)), prefix).toEqual([]);
    }
    process.stderr.write(`[kafka-forward] ${ship.size} records of the ship at headquarters (${hqBackend}) through the Kafka-backed port, each once, after ${kills} kill -9s of the port\n`);
  });
});
