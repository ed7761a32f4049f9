/**
 * Filtered replication to a customer's own endpoint: Tokyo's link to ToyCo carries only the
 * topics its filter names (ToyCo's yellow containers, in every stream the link forwards), and
 * nothing else arrives. Real processes and logs; and the filter's validation.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseSiteConfig } from '../site/config.js';
import { topicMatcher } from '../edge/forwarder/index.js';
import { SqliteLog } from '../edge/log/index.js';
import { SiteNet, links, metricSamples, recordSet } from './support/sites.js';
import { eventually, tempDir } from './support/uplink.js';

const LINK = { name: 'TOYCO', url: 'http://127.0.0.1:9080', token: 'tokyo-to-toyco-token' };

describe('link filter', () => {
  it('is validated: a list of names or patterns, nothing else', () => {
    const parsed = parseSiteConfig({ site: 'TOKYO', links: [{ ...LINK, filter: { topics: ['Y*', 'R0?', 'B01'] } }] });
    expect(parsed.links[0]!.filter).toEqual({ topics: ['Y*', 'R0?', 'B01'] });
    expect(() => parseSiteConfig({ site: 'TOKYO', links: [{ ...LINK, filter: { topics: [] } }] })).toThrow(/links\.0\.filter\.topics: list at least one topic/);
    expect(() => parseSiteConfig({ site: 'TOKYO', links: [{ ...LINK, filter: { topics: ['Y 1'] } }] })).toThrow(/links\.0\.filter\.topics\.0: must be a topic name or pattern/);
    expect(() => parseSiteConfig({ site: 'TOKYO', links: [{ ...LINK, filter: { topic: ['Y*'] } }] })).toThrow(/links\.0\.filter/);
    expect(() => parseSiteConfig({ site: 'TOKYO', links: [{ ...LINK, filter: 'Y*' }] })).toThrow(/links\.0\.filter/);
  });

  it('matches whole names: * any run, ? one character, the rest literal', () => {
    const matches = topicMatcher(['Y*', 'R0?', 'a.b', 'B01']);
    expect(['Y01', 'Y', 'Y10-x', 'R01', 'R09', 'a.b', 'B01'].every(matches)).toBe(true);
    expect(['XY01', 'R010', 'R1', 'aXb', 'B011', 'b01', ''].some(matches)).toBe(false);
  });

  const dirs: string[] = [];
  const nets: SiteNet[] = [];
  afterEach(async () => {
    for (const net of nets.splice(0)) await net.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('a filtered link carries only the topics it names', { timeout: 90_000 }, async () => {
    const dir = tempDir('filter');
    dirs.push(dir);
    const tokyo = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'TOKYO', 'log.sqlite') });
    for (let round = 0; round < 50; round += 1) {
      await tokyo.append([
        ...['Y01', 'Y02', 'Y10', 'B01', 'B02', 'R01'].map((container) => ({ stream: 'containers', topic: container, payload: Buffer.from(`{"t":${round}}`) })),
        ...(round % 10 === 0 ? [{ stream: 'alerts', topic: 'Y01', payload: Buffer.from('{"kind":"door"}') }, { stream: 'alerts', topic: 'R01', payload: Buffer.from('{"kind":"door"}') }] : []),
      ]);
    }
    await tokyo.close();
    const net = await SiteNet.create(dir, [{ name: 'TOKYO', linkExtra: { TOYCO: { filter: { topics: ['Y*'] } } } }, { name: 'TOYCO' }], [['TOKYO', 'TOYCO']], { proxies: false });
    nets.push(net);
    await net.startAll();
    await eventually(
      async () => (await links(net.url('TOKYO'))).every((link) => link.lag.every((entry) => entry.records === 0)),
      30_000,
      async () => JSON.stringify(await links(net.url('TOKYO'))),
      200,
    );
    const leftOut = await metricSamples(net.url('TOKYO'), 'portcall_link_left_out_records_total');
    expect([...leftOut.values()].reduce((sum, value) => sum + value, 0)).toBe(3 * 50 + 5);
    await net.stopAll();
    const atTokyo = await recordSet(net.logPath('TOKYO'), 'TOKYO');
    const atToyco = await recordSet(net.logPath('TOYCO'), 'TOYCO');
    const yellow = [...atTokyo].filter((line) => line.split('|')[2]!.startsWith('Y'));
    expect(yellow.length).toBe(3 * 50 + 5);
    expect([...atToyco].sort()).toEqual(yellow.sort());
  });
});
