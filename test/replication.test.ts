/**
 * Replication on a graph with a cycle, every hop real: four shore sites (`portcall shore`
 * processes on real SQLite files), Tokyo ↔ Singapore ↔ Sydney both ways and every port →
 * headquarters, each link through its own fault-injecting proxy. Each port's own devices
 * publish over MQTT to its gateway. Links flap and sites are kill -9'd and restarted at
 * random (bounded in count and time); after quiescence every site holds the identical set of
 * (origin, stream, topic, offset, payload hash), each record once, and nothing its origin did
 * not write.
 */
import { rmSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../devices/emulator/index.js';
import { eventually, tempDir } from './support/uplink.js';
import { SiteNet, links, metricSamples, missingFrom, recordSet, storedCount } from './support/sites.js';

const SITES = ['TOKYO', 'SINGAPORE', 'SYDNEY', 'HQ'] as const;
const EDGES = [
  ['TOKYO', 'SINGAPORE'],
  ['SINGAPORE', 'TOKYO'],
  ['SINGAPORE', 'SYDNEY'],
  ['SYDNEY', 'SINGAPORE'],
  ['TOKYO', 'HQ'],
  ['SINGAPORE', 'HQ'],
  ['SYDNEY', 'HQ'],
] as const;
const WRITERS = ['TOKYO', 'SINGAPORE', 'SYDNEY'] as const;

/** A site's own devices: a few containers and an alert now and then, QoS 1, reconnecting. */
class Writer {
  private readonly client: MqttClient;
  private timer: NodeJS.Timeout | undefined;
  private sequence = 0;
  acknowledged = 0;

  constructor(
    readonly site: string,
    port: number,
  ) {
    this.client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: `devices-${site}`, protocolVersion: 4, reconnectPeriod: 250, connectTimeout: 2000 });
    this.client.on('error', () => undefined);
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      for (let container = 1; container <= 4; container += 1) this.publish(`bigblue/containers/${this.site}-C${container}/reefer`);
      if (this.sequence % 40 === 0) this.publish(`bigblue/alerts/${this.site}-C1`);
    }, intervalMs);
  }

  private publish(topic: string): void {
    this.sequence += 1;
    const payload = JSON.stringify({ ts: Date.now(), temperature: 3 + (this.sequence % 17) / 10, n: this.sequence });
    this.client.publish(topic, payload, { qos: 1 }, (error) => {
      if (error === undefined || error === null) this.acknowledged += 1;
    });
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.client.endAsync(true);
  }
}

describe('replication on a graph with a cycle', () => {
  const nets: SiteNet[] = [];
  const writers: Writer[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const writer of writers.splice(0)) await writer.stop().catch(() => undefined);
    for (const net of nets.splice(0)) await net.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('four sites under flaps and kill -9s end up with the identical records, each once', { timeout: 200_000 }, async () => {
    const dir = tempDir('replication');
    dirs.push(dir);
    const net = await SiteNet.create(
      dir,
      // Headquarters has no devices and forwards nowhere: its records would stay there.
      SITES.map((name) => ({ name, mqtt: name !== 'HQ' })),
      EDGES,
    );
    nets.push(net);
    await net.startAll();
    for (const site of WRITERS) {
      const writer = new Writer(site, net.mqttPort.get(site)!);
      writers.push(writer);
      writer.start(40);
    }

    // Chaos for 20 s: links flap, sites are killed and restarted. Bounded in count and time.
    const random = seededRandom(7);
    const chaosEnd = Date.now() + 20_000;
    let kills = 0;
    let flaps = 0;
    while (Date.now() < chaosEnd && kills + flaps < 16) {
      await new Promise((resolve) => setTimeout(resolve, 600 + random() * 1200));
      if (random() < 0.4 && kills < 5) {
        const site = SITES[Math.floor(random() * SITES.length)]!;
        kills += 1;
        await net.kill9(site);
        await new Promise((resolve) => setTimeout(resolve, 300 + random() * 1000));
        await net.start(site);
      } else {
        const [from, to] = EDGES[Math.floor(random() * EDGES.length)]!;
        const proxy = net.proxy(from, to);
        flaps += 1;
        const mode = random();
        if (mode < 0.4) {
          proxy.setDown();
          setTimeout(() => proxy.setUp(), 500 + random() * 1500);
        } else if (mode < 0.7) proxy.stall(500 + random() * 1500);
        else proxy.reset();
      }
    }
    expect(kills).toBeGreaterThanOrEqual(2);
    for (const proxy of net.proxies.values()) {
      proxy.resume();
      proxy.setUp();
    }
    // Every port's devices got a fair amount written (on a loaded machine a site killed early may
    // take many seconds to come back, so they keep publishing until then, bounded).
    await eventually(
      () => writers.every((writer) => writer.acknowledged >= 500),
      60_000,
      () => writers.map((writer) => `${writer.site}: ${writer.acknowledged} acknowledged`).join(', ') + net.exited(),
      200,
    );
    for (const writer of writers.splice(0)) await writer.stop();

    // Quiescence: every link of every site has nothing left to send, twice in a row.
    let quietRounds = 0;
    await eventually(
      async () => {
        const all = await Promise.all(SITES.map((site) => links(net.url(site))));
        const quiet = all.every((siteLinks) => siteLinks.every((link) => link.lag.every((entry) => entry.records === 0)));
        quietRounds = quiet ? quietRounds + 1 : 0;
        return quietRounds >= 3;
      },
      60_000,
      async () => JSON.stringify(await Promise.all(SITES.map(async (site) => [site, await links(net.url(site)).catch((error: Error) => error.message)]))) + net.exited(),
      300,
    );

    // Relayed records are in the lag of the link that relays them: with Singapore → Sydney
    // down, Tokyo's new records reach Singapore and wait there for Sydney.
    const tokyoWriter = new Writer('TOKYO', net.mqttPort.get('TOKYO')!);
    writers.push(tokyoWriter);
    net.proxy('SINGAPORE', 'SYDNEY').setDown();
    const singaporeAlreadyHad = await fetchNext(net.url('SINGAPORE'), 'TOKYO-C4');
    await new Promise<void>((resolve) => {
      let sent = 0;
      const publishMore = () => {
        for (let container = 1; container <= 4; container += 1) {
          tokyoWriter['client'].publish(`bigblue/containers/TOKYO-C${container}/reefer`, JSON.stringify({ ts: Date.now(), relay: sent }), { qos: 1 });
        }
        sent += 1;
        if (sent < 25) setTimeout(publishMore, 10);
        else resolve();
      };
      publishMore();
    });
    await eventually(async () => (await fetchNext(net.url('SINGAPORE'), 'TOKYO-C4')) >= singaporeAlreadyHad + 25, 20_000, () => 'Tokyo records at Singapore');
    await eventually(
      async () => {
        const sydney = (await links(net.url('SINGAPORE'))).find((link) => link.name === 'SYDNEY')!;
        return sydney.lag.find((entry) => entry.stream === 'containers')?.records === 100;
      },
      10_000,
      async () => JSON.stringify((await links(net.url('SINGAPORE'))).find((link) => link.name === 'SYDNEY')),
    );
    const lagGauge = await metricSamples(net.url('SINGAPORE'), 'portcall_link_lag_records');
    expect(lagGauge.get('{link="SYDNEY",stream="containers",site="SINGAPORE"}') ?? lagGauge.get('{site="SINGAPORE",link="SYDNEY",stream="containers"}')).toBe(100);
    net.proxy('SINGAPORE', 'SYDNEY').setUp();
    await tokyoWriter.stop();
    writers.length = 0;
    await eventually(
      async () => (await Promise.all(SITES.map((site) => links(net.url(site))))).every((siteLinks) => siteLinks.every((link) => link.lag.every((entry) => entry.records === 0))),
      30_000,
      () => 'links draining after the relay check',
      300,
    );

    // A record reaching a site by two paths was stored once: headquarters got Tokyo's records
    // directly and through Singapore (and Sydney), and dropped the second copies.
    const duplicates = await metricSamples(net.url('HQ'), 'portcall_ingest_records_total');
    const hqDuplicates = [...duplicates].filter(([labels]) => labels.includes('outcome="duplicate"')).reduce((sum, [, value]) => sum + value, 0);
    expect(hqDuplicates).toBeGreaterThan(0);
    // Split horizon: Singapore holds Tokyo's records and relays them to Sydney and headquarters,
    // but never sends them back to Tokyo (at least the 100 relayed since its last restart).
    const leftOut = await metricSamples(net.url('SINGAPORE'), 'portcall_link_left_out_records_total');
    expect([...leftOut].find(([labels]) => labels.includes('link="TOKYO"'))?.[1] ?? 0).toBeGreaterThanOrEqual(100);

    await net.stopAll();
    const sets = new Map<string, Set<string>>();
    for (const site of SITES) sets.set(site, await recordSet(net.logPath(site), site));
    const tokyo = sets.get('TOKYO')!;
    expect(tokyo.size).toBeGreaterThan(2000);
    for (const site of SITES) {
      const set = sets.get(site)!;
      expect(missingFrom(tokyo, set), `${site} lacks`).toEqual([]);
      expect(missingFrom(set, tokyo), `${site} has more than Tokyo`).toEqual([]);
      // Each record stored once: the log's positions hold no identity twice.
      expect(await storedCount(net.logPath(site), site)).toBe(set.size);
    }
    // Nothing but what its origin wrote: every record's origin is the site that owns its topic,
    // and offsets are dense per topic.
    const perTopic = new Map<string, number[]>();
    for (const line of tokyo) {
      const [origin, stream, topic, offset] = line.split('|');
      expect(topic!.startsWith(`${origin}-`), line).toBe(true);
      const key = `${stream}/${topic}`;
      perTopic.set(key, [...(perTopic.get(key) ?? []), Number(offset)]);
    }
    expect(perTopic.size).toBe(WRITERS.length * 5);
    for (const [key, offsets] of perTopic) {
      offsets.sort((a, b) => a - b);
      expect(offsets.at(-1), key).toBe(offsets.length - 1);
    }
  });
});

/** How many records of a Tokyo container a site holds (its next offset), 0 when none. */
async function fetchNext(url: string, container: string): Promise<number> {
  const response = await fetch(`${url}/v1/streams/containers/topics/${container}/latest`);
  if (response.status === 404) return 0;
  const body = (await response.json()) as { offset?: number; record?: { offset: number } };
  return (body.record?.offset ?? body.offset ?? -1) + 1;
}
