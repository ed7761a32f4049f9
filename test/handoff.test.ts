/**
 * One writer per topic, with handoff, under load: Tokyo and Singapore replicate both ways and
 * devices at both publish readings of container Y01 all the time. Tokyo writes Y01, hands it
 * to Singapore, which hands it back; a write at the site that is not the writer is refused
 * (counted, logged), a handoff asked of the wrong site is refused naming the writer. Both
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

  it('a topic moves Tokyo → Singapore → Tokyo while readings flow at both: no gap, overlap or fork', { timeout: 180_000 }, async () => {
    const dir = tempDir('handoff');
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
    for (const client of clients.splice(0)) await client.endAsync();

    await eventually(
      async () =>
        (await Promise.all(['TOKYO', 'SINGAPORE'].map((site) => links(net.url(site))))).every((siteLinks) =>
          siteLinks.every((link) => link.lag.every((entry) => entry.records === 0)),
        ) && (await latestOffset('TOKYO')) === (await latestOffset('SINGAPORE')),
      60_000,
      () => 'links draining',
      200,
    );
    // Both sites refused readings while the other wrote Y01.
    for (const site of ['TOKYO', 'SINGAPORE']) {
      const refused = await metricSamples(net.url(site), 'portcall_writer_refused_records_total');
      expect([...refused.values()].reduce((sum, value) => sum + value, 0), site).toBeGreaterThan(10);
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
});
