/**
 * One writer per topic, with handoff, under load: Tokyo and Singapore replicate both ways and
 * devices at both publish readings of container Y01 all the time. Tokyo writes Y01, hands it
 * to Singapore, which hands it back; a write at the site that is not the writer is refused
 * (counted, logged, and never acknowledged to the device: no PUBACK, its connection closed, so
 * the message stays with it and is stored once the site becomes the writer), a handoff asked
 * of the wrong site is refused naming the writer. Both
 * sites end with the identical topic: dense offsets, and each record written by the writer
 * its predecessor names. Real processes, MQTT, SQLite.
 */
import { rmSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { writerAfter } from '../core/writership.js';
import { parseSiteConfig } from '../site/config.js';
import { SqliteLog } from '../edge/log/index.js';
import { eventually, tempDir } from './support/uplink.js';
import { SiteNet, links, metricSamples, recordSet } from './support/sites.js';

const HANDOFF_TOKEN = 'port-operations-handoff-token';

describe('one writer per topic, with handoff', () => {
  const nets: SiteNet[] = [];
  const clients: MqttClient[] = [];
  const timers: NodeJS.Timeout[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const timer of timers.splice(0)) clearInterval(timer);
    for (const client of clients.splice(0)) await client.endAsync(true).catch(() => undefined);
    for (const net of nets.splice(0)) await net.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('validates the handoff token', () => {
    expect(() => parseSiteConfig({ site: 'TOKYO', handoffToken: 'short' })).toThrow(/handoffToken: must be at least 16 characters/);
    expect(parseSiteConfig({ site: 'TOKYO', handoffToken: HANDOFF_TOKEN }).handoffToken).toBe(HANDOFF_TOKEN);
  });

  /** Tokyo and Singapore replicating both ways, each with a gateway and the handoff token. */
  const tokyoAndSingapore = async (dirName: string): Promise<SiteNet> => {
    const dir = tempDir(dirName);
    dirs.push(dir);
    const net = await SiteNet.create(
      dir,
      ['TOKYO', 'SINGAPORE'].map((name) => ({ name, mqtt: true, extra: { handoffToken: HANDOFF_TOKEN } })),
      [
        ['TOKYO', 'SINGAPORE'],
        ['SINGAPORE', 'TOKYO'],
      ],
      { proxies: false },
    );
    nets.push(net);
    await net.startAll();
    return net;
  };

  it('a topic moves Tokyo → Singapore → Tokyo while readings flow at both: no gap, overlap or fork', { timeout: 180_000 }, async () => {
    const net = await tokyoAndSingapore('handoff');
    const publisher = async (site: string) => {
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${net.mqttPort.get(site)!}`, { clientId: `reefer-Y01-${site}`, protocolVersion: 4 });
      clients.push(client);
      let sequence = 0;
      timers.push(
        setInterval(() => {
          sequence += 1;
          client.publish('bigblue/containers/Y01/reefer', JSON.stringify({ ts: Date.now(), temperature: 4.5, at: site, n: sequence }), { qos: 1 });
        }, 20),
      );
    };
    const latestOffset = async (site: string) => {
      const response = await fetch(`${net.url(site)}/v1/streams/containers/topics/Y01/latest`);
      return response.status === 404 ? -1 : ((await response.json()) as { offset: number }).offset;
    };
    const handoff = (site: string, to: string, token = HANDOFF_TOKEN) =>
      fetch(`${net.url(site)}/v1/streams/containers/topics/Y01/handoff`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ to }),
      });

    // Tokyo writes Y01 first; once Singapore holds it, Singapore's devices publish too.
    await publisher('TOKYO');
    await eventually(async () => (await latestOffset('SINGAPORE')) >= 20, 60_000, () => `Y01 at Singapore${net.exited()}`);
    await publisher('SINGAPORE');
    await new Promise((resolve) => setTimeout(resolve, 1500));

    // Asked of the wrong site, or without the token: refused, saying why.
    const wrongSite = await handoff('SINGAPORE', 'TOKYO');
    expect(wrongSite.status).toBe(409);
    expect(await wrongSite.json()).toMatchObject({ code: 'NOT_WRITER', writer: 'TOKYO' });
    expect((await handoff('TOKYO', 'SINGAPORE', 'not-the-handoff-token')).status).toBe(401);
    expect((await handoff('TOKYO', 'TOKYO')).status).toBe(400);

    const first = await handoff('TOKYO', 'SINGAPORE');
    expect(first.status).toBe(200);
    const firstHandoff = (await first.json()) as { offset: number; origin: string };
    expect(firstHandoff.origin).toBe('TOKYO');
    await new Promise((resolve) => setTimeout(resolve, 2000));

    // Singapore can hand it back once it holds the handoff (it has been writing since).
    await eventually(async () => (await handoff('SINGAPORE', 'TOKYO')).status === 200, 60_000, () => 'handoff back from Singapore', 200);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (const timer of timers.splice(0)) clearInterval(timer);
    // Forced: a device at the site that does not write Y01 keeps its refused readings (never acknowledged) and would wait for them forever.
    for (const client of clients.splice(0)) await client.endAsync(true);

    await eventually(
      async () =>
        (await Promise.all(['TOKYO', 'SINGAPORE'].map((site) => links(net.url(site))))).every((siteLinks) =>
          siteLinks.every((link) => link.lag.every((entry) => entry.records === 0)),
        ) && (await latestOffset('TOKYO')) === (await latestOffset('SINGAPORE')),
      60_000,
      () => 'links draining',
      200,
    );
    // Both sites refused readings while the other wrote Y01, and their gateways did not
    // acknowledge them: each refusal closes the device's connection (it reconnects after a
    // second and sends again), so a couple of refusals per second of the other's writership.
    for (const site of ['TOKYO', 'SINGAPORE']) {
      const refused = await metricSamples(net.url(site), 'portcall_writer_refused_records_total');
      expect([...refused.values()].reduce((sum, value) => sum + value, 0), site).toBeGreaterThan(0);
      const notAcknowledged = await metricSamples(net.url(site), 'portcall_gateway_refusals_total');
      expect(notAcknowledged.get(`{reason="not-writer",site="${site}"}`) ?? 0, site).toBeGreaterThan(0);
    }

    await net.stopAll();
    const tokyo = await recordSet(net.logPath('TOKYO'), 'TOKYO');
    const singapore = await recordSet(net.logPath('SINGAPORE'), 'SINGAPORE');
    expect([...singapore].sort()).toEqual([...tokyo].sort());
    for (const site of ['TOKYO', 'SINGAPORE']) {
      const log = SqliteLog.open({ siteId: site, path: net.logPath(site), indexer: 'inline', retentionIntervalMs: 0 });
      try {
        const records = await log.readTopic('containers', 'Y01', 0, { maxRecords: 100_000, maxBytes: 64 * 1024 * 1024 });
        expect(records.map((record) => record.offset)).toEqual(records.map((_record, index) => index));
        // Each record was written by the writer its predecessor names.
        for (let index = 1; index < records.length; index += 1) {
          expect(records[index]!.origin, `${site} offset ${index}`).toBe(writerAfter(records[index - 1]));
        }
        const handoffs = records.filter((record) => record.headers['pc-handoff-to'] !== undefined);
        expect(handoffs.map((record) => [record.origin, record.headers['pc-handoff-to']])).toEqual([
          ['TOKYO', 'SINGAPORE'],
          ['SINGAPORE', 'TOKYO'],
        ]);
        expect(handoffs[0]!.offset).toBe(firstHandoff.offset);
        // Singapore wrote between the handoffs, Tokyo before and after.
        expect(handoffs[1]!.offset - handoffs[0]!.offset).toBeGreaterThan(10);
        expect(records.length - 1 - handoffs[1]!.offset).toBeGreaterThan(10);
      } finally {
        await log.close();
      }
    }
  });
  it('a QoS 1 write at a site that is not the writer gets no PUBACK: counted, logged, the connection closed, other devices acknowledged; stored once the topic is handed over', { timeout: 120_000 }, async () => {
    const net = await tokyoAndSingapore('not-writer');
    const latest = async (site: string, topic: string) => {
      const response = await fetch(`${net.url(site)}/v1/streams/containers/topics/${topic}/latest`);
      return response.status === 404 ? undefined : ((await response.json()) as { offset: number; origin: string; headers: Record<string, string>; payload: unknown });
    };
    // Tokyo writes Y02 (its crane's reading); Singapore learns it by replication.
    const tokyo = await mqtt.connectAsync(`mqtt://127.0.0.1:${net.mqttPort.get('TOKYO')!}`, { clientId: 'reefer-Y02-tokyo', protocolVersion: 4 });
    clients.push(tokyo);
    for (let n = 0; n < 5; n += 1) await tokyo.publishAsync('bigblue/containers/Y02/reefer', JSON.stringify({ ts: Date.now(), tempC: 4.5, n }), { qos: 1 });
    await eventually(async () => (await latest('SINGAPORE', 'Y02'))?.offset === 4, 60_000, () => `Y02 at Singapore${net.exited()}`);

    // A device at Singapore publishes Y02 while Tokyo writes it: no PUBACK, the connection closes.
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${net.mqttPort.get('SINGAPORE')!}`, { clientId: 'reefer-Y02-singapore', protocolVersion: 4, clean: false, reconnectPeriod: 300 });
    clients.push(device);
    // Another device at Singapore, writing its own topic meanwhile, is acknowledged as usual.
    const other = await mqtt.connectAsync(`mqtt://127.0.0.1:${net.mqttPort.get('SINGAPORE')!}`, { clientId: 'reefer-R09-singapore', protocolVersion: 4 });
    clients.push(other);
    let closes = 0;
    device.on('close', () => (closes += 1));
    let acknowledged = false;
    const refusedReading = JSON.stringify({ ts: Date.now(), tempC: 5.5, at: 'SINGAPORE' });
    device.publish('bigblue/containers/Y02/reefer', refusedReading, { qos: 1 }, (error) => {
      if (error === undefined || error === null) acknowledged = true;
    });
    for (let n = 0; n < 20; n += 1) await other.publishAsync('bigblue/containers/R09/reefer', JSON.stringify({ ts: Date.now(), tempC: 2, n }), { qos: 1 });
    await eventually(async () => closes >= 2, 30_000, () => `the non-writer device's connection closed (closes ${closes})`, 100);
    expect(acknowledged).toBe(false);
    expect((await latest('SINGAPORE', 'R09'))?.offset).toBe(19);
    expect((await latest('SINGAPORE', 'Y02'))?.origin).toBe('TOKYO');
    expect((await latest('SINGAPORE', 'Y02'))?.offset).toBe(4);
    const refusals = await metricSamples(net.url('SINGAPORE'), 'portcall_gateway_refusals_total');
    expect(refusals.get('{reason="not-writer",site="SINGAPORE"}') ?? 0, JSON.stringify([...refusals])).toBeGreaterThanOrEqual(2);
    const refusedRecords = await metricSamples(net.url('SINGAPORE'), 'portcall_writer_refused_records_total');
    expect(refusedRecords.get('{stream="containers",site="SINGAPORE"}') ?? 0, JSON.stringify([...refusedRecords])).toBeGreaterThanOrEqual(2);
    expect(net.processes.get('SINGAPORE')!.output()).toMatch(/topic containers\/Y02 is written by TOKYO, not SINGAPORE/);

    // Tokyo hands Y02 to Singapore: the device's reading, resent after each refusal, is stored
    // right after the handoff record, once.
    const response = await fetch(`${net.url('TOKYO')}/v1/streams/containers/topics/Y02/handoff`, {
      method: 'POST',
      headers: { authorization: `Bearer ${HANDOFF_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: 'SINGAPORE' }),
    });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { offset: number }).offset).toBe(5);
    await eventually(async () => acknowledged, 30_000, () => 'the reading acknowledged after the handoff', 100);
    const stored = await latest('SINGAPORE', 'Y02');
    expect(stored).toMatchObject({ offset: 6, origin: 'SINGAPORE' });
    await eventually(async () => (await latest('TOKYO', 'Y02'))?.offset === 6, 30_000, () => 'the reading back at Tokyo');
  });
});
