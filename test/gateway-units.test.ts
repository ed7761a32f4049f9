/**
 * Unit tests of the gateway's pieces that have rules of their own: the packet-size scanner,
 * topic filters, credentials and access rules, payload schemas, the record channel, the
 * silence watchdog, and the `mqtt` configuration section.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { DeviceDirectory, hashSecret, verifySecret } from '../edge/gateway/index.js';
import { mayPublish, maySubscribe } from '../edge/gateway/credentials.js';
import { LivenessWatch } from '../edge/gateway/liveness.js';
import { PacketSizeScanner, PacketTooLargeError } from '../edge/gateway/packet-size-guard.js';
import { checkPayload } from '../edge/gateway/payload-policy.js';
import { decodeBatch, encodeBatch } from '../edge/gateway/record-channel.js';
import { topicMatches } from '../edge/gateway/topic-filter.js';
import type { NewRecord } from '../core/index.js';
import { loadSiteConfig, parseSiteConfig } from '../site/index.js';

function errorOf(action: () => unknown): Error {
  try {
    action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('packet size scanner', () => {
  it('passes any split of valid packets up to the limit and stops at the first larger one', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 6 }), (sizes, cuts) => {
        const packets = sizes.map((size) => mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(size), qos: 0, dup: false, retain: false }));
        const stream = Buffer.concat(packets);
        const limit = 2000;
        const firstTooLarge = packets.findIndex((packet) => packet.length > limit);
        const scanner = new PacketSizeScanner(limit);
        const points = [...new Set(cuts.map((cut) => cut % (stream.length + 1)))].sort((a, b) => a - b);
        let previous = 0;
        let thrown: unknown;
        try {
          for (const point of [...points, stream.length]) {
            scanner.feed(stream.subarray(previous, point));
            previous = point;
          }
        } catch (error) {
          thrown = error;
        }
        if (firstTooLarge === -1) expect(thrown).toBeUndefined();
        else expect(thrown).toBeInstanceOf(PacketTooLargeError);
      }),
      { numRuns: 200, seed: 4 },
    );
  });

  it('refuses a remaining length of more than four bytes', () => {
    expect(() => new PacketSizeScanner(1 << 30).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(/malformed remaining length/);
  });
});

describe('topic filters and access rules', () => {
  it('matches MQTT wildcards', () => {
    expect(topicMatches('bigblue/containers/Y01/+', 'bigblue/containers/Y01/reefer')).toBe(true);
    expect(topicMatches('bigblue/containers/Y01/+', 'bigblue/containers/Y02/reefer')).toBe(false);
    expect(topicMatches('bigblue/containers/Y01/+', 'bigblue/containers/Y01/reefer/x')).toBe(false);
    expect(topicMatches('bigblue/#', 'bigblue')).toBe(true);
    expect(topicMatches('bigblue/#', 'bigblue/a/b')).toBe(true);
  });

  it('expands profiles with each device\'s attributes, and refuses identities that would widen them', async () => {
    const secret = await hashSecret('secret-0123', 1024);
    const directory = DeviceDirectory.parse(
      [
        'profiles: { reefer: { publish: ["bigblue/containers/{container}/+"], subscribe: ["bigblue/containers/{container}/#"] } }',
        'devices:',
        `  - { id: Y01-reefer, profile: reefer, attributes: { container: Y01 }, secret: "${secret}" }`,
      ].join('\n'),
      'devices.yaml',
    );
    const result = await directory.authenticate('Y01-reefer', Buffer.from('secret-0123'), undefined);
    expect(result.ok).toBe(true);
    const device = (result as { device: Parameters<typeof mayPublish>[0] }).device;
    expect(mayPublish(device, 'bigblue/containers/Y01/reefer')).toBe(true);
    expect(mayPublish(device, 'bigblue/containers/Y02/reefer')).toBe(false);
    expect(maySubscribe(device, 'bigblue/containers/Y01/reefer')).toBe(true);
    expect(maySubscribe(device, 'bigblue/containers/+/reefer')).toBe(false);
    expect(maySubscribe(device, 'bigblue/#')).toBe(false);
    expect(await directory.authenticate('Y01-reefer', Buffer.from('wrong'), undefined)).toEqual({ ok: false, reason: 'bad-credentials' });
    expect(await directory.authenticate('Y09', Buffer.from('secret-0123'), undefined)).toEqual({ ok: false, reason: 'unknown-device' });

    for (const [text, message] of [
      [`devices: [{ id: "Y#", secret: "${secret}" }]`, 'devices.0.id: must not contain "+", "#", "/" or NUL'],
      [`devices: [{ id: Y1, attributes: { container: "+" }, secret: "${secret}" }]`, 'devices.0.attributes.container: must not contain'],
      [`devices: [{ id: Y1, publish: ["a/{container}"], secret: "${secret}" }]`, 'uses {container}, which this device has no attribute for'],
      ['devices: [{ id: Y1 }]', 'needs a secret or a certificateCommonName'],
      ['devices: [{ id: Y1, secret: plain-text }]', 'must be a "scrypt$N$r$p$salt$key" hash'],
      [`devices: [{ id: Y1, secret: "${secret}" }, { id: Y1, secret: "${secret}" }]`, 'id is listed twice'],
      [`devices: [{ id: Y1, secret: !vault "${secret}" }]`, 'devices.yaml: not valid YAML or JSON: '],
    ] as const) {
      expect(errorOf(() => DeviceDirectory.parse(text, 'devices.yaml')).message).toContain(message);
    }
  });

  it('verifies scrypt hashes and rejects tampered ones', async () => {
    const stored = await hashSecret('a-long-secret', 1024);
    expect(await verifySecret('a-long-secret', stored)).toBe(true);
    expect(await verifySecret('a-long-secreT', stored)).toBe(false);
    expect(await verifySecret('a-long-secret', stored.replace(/.$/, (last) => (last === 'A' ? 'B' : 'A')))).toBe(false);
  });

  it('the example credentials file loads and its example secrets verify', async () => {
    const directory = DeviceDirectory.load('config/devices.example.yaml');
    expect((await directory.authenticate('Y01-reefer', Buffer.from('change-me-Y01-reefer'), undefined)).ok).toBe(true);
    expect((await directory.authenticate('AURORA-nav', Buffer.from('change-me-AURORA-nav'), undefined)).ok).toBe(true);
  });
});

describe('payload schemas', () => {
  it('takes event time from a reading\'s ts and refuses what the stream does not accept', () => {
    expect(checkPayload('json-reading', Buffer.from('{"ts":1763769600000}'))).toMatchObject({ ok: true, eventTimeMs: 1763769600000 });
    expect(checkPayload('json-reading', Buffer.from('{"ts":"2025-11-22T00:00:00Z"}'))).toMatchObject({ ok: true, eventTimeMs: Date.UTC(2025, 10, 22) });
    expect(checkPayload('json-reading', Buffer.from('{"tempC":1}'))).toMatchObject({ ok: true, eventTimeMs: undefined });
    expect(checkPayload('json-reading', Buffer.from('[1]'))).toMatchObject({ ok: false, reason: 'payload-not-object' });
    expect(checkPayload('json-reading', Buffer.from('{"ts":true}'))).toMatchObject({ ok: false, reason: 'payload-bad-ts' });
    expect(checkPayload('json', Buffer.from('[1]'))).toMatchObject({ ok: true });
    expect(checkPayload('json', Buffer.from('{'))).toMatchObject({ ok: false, reason: 'payload-not-json' });
    expect(checkPayload('binary', Buffer.from([0xff, 0x00]))).toMatchObject({ ok: true, eventTimeMs: undefined });
  });
});

describe('record channel', () => {
  it('carries records across threads as one buffer, each payload copied once', () => {
    const socketRead = Buffer.alloc(65536, 7);
    socketRead.write('{"a":1}', 100);
    const records: NewRecord[] = [
      { stream: 'containers', topic: 'Y01', eventTimeMs: 5, headers: { 'mqtt-topic': 'bigblue/containers/Y01/reefer' }, payload: socketRead.subarray(100, 107) },
      { stream: 'alerts', topic: 'Y07', headers: { 'alert-kind': 'silence' }, payload: Buffer.from([1, 2, 3]) },
      { stream: 'ships', topic: 'AURORA', payload: Buffer.alloc(0) },
    ];
    const batch = encodeBatch(records);
    expect(batch.payloads.byteLength).toBe(10);
    const decoded = decodeBatch(structuredClone(batch));
    expect(decoded.map((record) => ({ ...record, payload: Buffer.from(record.payload).toString('hex') }))).toEqual([
      { stream: 'containers', topic: 'Y01', eventTimeMs: 5, headers: { 'mqtt-topic': 'bigblue/containers/Y01/reefer' }, payload: Buffer.from('{"a":1}').toString('hex') },
      { stream: 'alerts', topic: 'Y07', headers: { 'alert-kind': 'silence' }, payload: '010203' },
      { stream: 'ships', topic: 'AURORA', headers: {}, payload: '' },
    ]);
  });
});

describe('silence watchdog', () => {
  it('alerts once per silence of a watched stream, and re-arms on the next reading', async () => {
    let now = 1_000_000;
    const raised: NewRecord[] = [];
    const watch = new LivenessWatch(new Map([['containers', 60_000]]), async (record) => void raised.push(record), () => now);
    watch.record('containers', 'Y07', { tempC: -18 });
    watch.record('ships', 'AURORA', {});
    now += 59_999;
    expect(await watch.check()).toBe(0);
    now += 1;
    expect(await watch.check()).toBe(1);
    expect(await watch.check()).toBe(0);
    expect(raised[0]).toMatchObject({ stream: 'alerts', topic: 'Y07', headers: { 'alert-kind': 'silence' } });
    expect(JSON.parse(Buffer.from(raised[0]!.payload).toString())).toMatchObject({ silentForMs: 60_000, lastReading: { tempC: -18 } });
    watch.record('containers', 'Y07', { tempC: -17 });
    now += 60_000;
    expect(await watch.check()).toBe(1);
  });
});

describe('mqtt configuration', () => {
  it('needs credentials or an explicit anonymous switch, and names the field', () => {
    expect(errorOf(() => parseSiteConfig({ site: 'AURORA', mqtt: {} })).message).toContain('configuration: mqtt.auth: set credentialsFile');
    expect(parseSiteConfig({ site: 'AURORA', mqtt: { auth: { allowAnonymous: true } } }).mqtt).toMatchObject({
      maxPacketBytes: 256 * 1024,
      maxTopicLevels: 16,
      ownThread: true,
      streams: { containers: { payload: 'json-reading' }, alerts: { payload: 'json' } },
    });
    expect(errorOf(() => parseSiteConfig({ site: 'A', mqtt: { auth: { allowAnonymous: true }, tls: { certFile: 'c', keyFile: 'k', requireClientCertificate: true } } })).message).toContain(
      'mqtt.tls.caFile: required when requireClientCertificate is true',
    );
    expect(errorOf(() => parseSiteConfig({ site: 'A', mqtt: { auth: { allowAnonymous: true }, streams: { containers: { payload: 'xml' } } } })).message).toContain(
      'mqtt.streams.containers.payload',
    );
    expect(errorOf(() => parseSiteConfig({ site: 'A', mqtt: { auth: { allowAnonymous: true }, bridge: { url: 'http://x:1' } } })).message).toContain('mqtt.bridge.url');
    expect(loadSiteConfig('config/aurora.yaml', {}).mqtt?.auth.allowAnonymous).toBe(true);
  });
});

describe('back-pressure', () => {
  it('stops reading connections while too much is not yet durable, and takes everything once the log catches up', async () => {
    const { MqttGateway } = await import('../edge/gateway/index.js');
    const { connect } = await import('node:net');
    let inFlight = 0;
    let peak = 0;
    let stored = 0;
    // A log that takes 50 ms per commit: far slower than one client can send QoS 0.
    const slowLog = {
      append: async (records: readonly NewRecord[]) => {
        inFlight += records.length;
        peak = Math.max(peak, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 50));
        inFlight -= records.length;
        stored += records.length;
        return [];
      },
    };
    const gateway = await MqttGateway.start({
      appender: slowLog,
      topicRules: [{ pattern: 'bigblue/containers/{container}/{sensor}', stream: 'containers', topic: '{container}' }],
      port: 0,
      allowAnonymous: true,
      maxPendingRecords: 200,
    });
    try {
      const socket = connect(gateway.port, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      socket.on('error', () => undefined);
      const connack = new Promise((resolve) => socket.once('data', resolve));
      socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'flood', clean: true, keepalive: 0 }));
      await connack;
      socket.resume();
      const messages = 5000;
      const publish = mqttPacket.generate({ cmd: 'publish', topic: 'bigblue/containers/F01/reefer', payload: Buffer.from('{"tempC":1}'), qos: 0, dup: false, retain: false });
      socket.write(Buffer.concat(Array.from({ length: messages }, () => publish)));
      const deadline = Date.now() + 20_000;
      while (stored < messages && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      socket.destroy();
      expect(stored).toBe(messages);
      // One socket read past the mark at most (64 KiB of 40-byte packets).
      expect(peak).toBeLessThanOrEqual(200 + 65536 / publish.length);
      expect(peak).toBeGreaterThan(0);
    } finally {
      await gateway.close();
    }
  });
});
