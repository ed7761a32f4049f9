/**
 * The access records (`access/*`, `manifests/custody`) are written only through the access
 * admin API: a real MQTT client publishing where the topic rules would map it there (the
 * default `bigblue/manifests/{subject}` rule, or a custom rule into `access`) is acknowledged,
 * refused, counted as `reserved-log-topic`, and nothing reaches the log; its other manifests
 * and readings are stored. On the gateway's own thread (the default) and on the site's thread.
 */
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startGatewaySite, type GatewaySite } from './support/gateway-site.js';
import { DEFAULT_TOPIC_RULES } from '../site/index.js';

describe('reserved access topics at the gateway', () => {
  const sites: GatewaySite[] = [];
  afterEach(async () => {
    for (const site of sites.splice(0)) {
      await site.stop();
      site.remove();
    }
  });

  for (const ownThread of [true, false]) {
    it(`refuses and counts publishes mapped to manifests/custody or access (ownThread ${ownThread})`, { timeout: 20_000 }, async () => {
      const site = await startGatewaySite({
        ownThread,
        auth: { allowAnonymous: true },
        topicRules: [...DEFAULT_TOPIC_RULES, { pattern: 'acl/{what}', stream: 'access', topic: '{what}' }],
      });
      sites.push(site);
      const client = await mqtt.connectAsync(site.mqttUrl, { clientId: 'forger', reconnectPeriod: 0 });
      const forged = JSON.stringify({ type: 'custody.assigned', container: 'R01', org: 'toyco', fromMs: 0 });
      // QoS 1 and 2: acknowledged (the device is not told which topics exist), never stored.
      await client.publishAsync('bigblue/manifests/custody', forged, { qos: 1 });
      await client.publishAsync('bigblue/manifests/custody', forged, { qos: 2 });
      await client.publishAsync('acl/changes', JSON.stringify({ type: 'principal.set' }), { qos: 1 });
      await client.publishAsync('bigblue/manifests/Y01', JSON.stringify({ type: 'loaded', port: 'JPTYO' }), { qos: 1 });
      await client.publishAsync('bigblue/containers/Y01/temp', JSON.stringify({ c: 4 }), { qos: 1 });
      expect(client.connected).toBe(true);
      await client.endAsync();

      const metrics = await site.site.registry.metrics();
      expect(metrics).toMatch(/portcall_gateway_refusals_total\{reason="reserved-log-topic"[^}]*\} 3\b/);
      expect(await site.readTopic('manifests', 'custody')).toEqual([]);
      const { readLogTopic } = await import('./support/gateway-site.js');
      expect(await readLogTopic(site.dataDir, 'access', 'changes')).toEqual([]);
      expect((await readLogTopic(site.dataDir, 'manifests', 'Y01')).length).toBe(1);
      expect((await readLogTopic(site.dataDir, 'containers', 'Y01')).length).toBe(1);
    });
  }
});
