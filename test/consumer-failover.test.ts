/**
 * Consumer failover (the voyage, step 7): a consumer reads a container's history at Singapore
 * through the read API, a page at a time, while the readings still flow Tokyo → Singapore →
 * Sydney; halfway it switches to Sydney and continues from the `nextOffset` Singapore gave it.
 * It sees every record exactly once, byte for byte as Tokyo stored it. Real processes, real
 * MQTT, real SQLite.
 */
import { rmSync } from 'node:fs';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, tempDir } from './support/uplink.js';
import { SiteNet } from './support/sites.js';

const READINGS = 600;

interface Page {
  nextOffset: number;
  records: { origin: string; offset: number; payload: unknown }[];
}

describe('consumer failover between sites', () => {
  const nets: SiteNet[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const net of nets.splice(0)) await net.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('reads half a topic at Singapore, continues at Sydney from nextOffset: every record once', { timeout: 90_000 }, async () => {
    const dir = tempDir('failover');
    dirs.push(dir);
    const net = await SiteNet.create(
      dir,
      [{ name: 'TOKYO', mqtt: true }, { name: 'SINGAPORE' }, { name: 'SYDNEY' }],
      [
        ['TOKYO', 'SINGAPORE'],
        ['SINGAPORE', 'SYDNEY'],
      ],
      { proxies: false },
    );
    nets.push(net);
    await net.startAll();

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${net.mqttPort.get('TOKYO')!}`, { clientId: 'reefer-Y01', protocolVersion: 4, reconnectPeriod: 0 });
    const publishing = (async () => {
      for (let index = 0; index < READINGS; index += 1) {
        await client.publishAsync('bigblue/containers/Y01/reefer', JSON.stringify({ ts: 1_763_769_600_000 + index * 60_000, temperature: 4 + (index % 7) / 10, i: index }), { qos: 1 });
        if (index % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();

    const seen: { site: string; offset: number; origin: string; payload: string }[] = [];
    const read = async (site: string, from: number): Promise<Page> => {
      const response = await fetch(`${net.url(site)}/v1/streams/containers/topics/Y01/records?from=${from}&maxRecords=37`);
      if (response.status === 404) return { nextOffset: from, records: [] };
      expect(response.status).toBe(200);
      return (await response.json()) as Page;
    };
    let offset = 0;
    let site = 'SINGAPORE';
    const deadline = Date.now() + 60_000;
    while (seen.length < READINGS && Date.now() < deadline) {
      if (site === 'SINGAPORE' && seen.length >= READINGS / 2) site = 'SYDNEY';
      const page = await read(site, offset);
      for (const record of page.records) seen.push({ site, offset: record.offset, origin: record.origin, payload: JSON.stringify(record.payload) });
      expect(page.nextOffset).toBeGreaterThanOrEqual(offset);
      offset = page.nextOffset;
      // Caught up with what this site holds so far: the rest is still on its way.
      if (page.records.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await publishing;
    await client.endAsync();

    expect(seen.length).toBe(READINGS);
    expect(seen.map((record) => record.offset)).toEqual(Array.from({ length: READINGS }, (_unused, index) => index));
    expect(new Set(seen.map((record) => record.site))).toEqual(new Set(['SINGAPORE', 'SYDNEY']));
    expect(seen.filter((record) => record.site === 'SINGAPORE').length).toBeGreaterThanOrEqual(READINGS / 2);
    expect(seen.every((record) => record.origin === 'TOKYO')).toBe(true);

    // Byte for byte what Tokyo holds at those offsets.
    const atTokyo: string[] = [];
    await eventually(
      async () => {
        atTokyo.length = 0;
        let from = 0;
        for (;;) {
          const page = await read('TOKYO', from);
          if (page.records.length === 0) break;
          atTokyo.push(...page.records.map((record) => JSON.stringify(record.payload)));
          from = page.nextOffset;
        }
        return atTokyo.length === READINGS;
      },
      10_000,
      () => `Tokyo holds ${atTokyo.length}`,
    );
    expect(seen.map((record) => record.payload)).toEqual(atTokyo);
    expect(JSON.parse(seen[READINGS - 1]!.payload) as { i: number }).toMatchObject({ i: READINGS - 1 });
  });
});
