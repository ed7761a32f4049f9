/**
 * Fuzzing the real `portcall edge` process: valid packets from mqtt-packet mutated at random
 * (flipped bytes, cut short, spliced), and plain random bytes, on many short connections,
 * while a well-behaved sensor keeps publishing. Bounded in rounds and time; seeded, so a
 * failure replays. The gateway must not crash, its memory must stay bounded, and the sensor
 * must keep getting every PUBACK.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import mqtt from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { mosquittoPub } from './support/mosquitto-clients.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const SEED = 20261122;
const MUTATED_ROUNDS = 400;
const RANDOM_ROUNDS = 100;
const PARALLEL = 16;
const TIME_BUDGET_MS = 20_000;

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) * 1024;
}

const safeText = fc.string({ minLength: 1, maxLength: 12, unit: fc.constantFrom(...'abcXYZ019-_') });
const topic = fc.oneof(
  safeText.map((name) => `bigblue/containers/${name}/reefer`),
  fc.array(safeText, { minLength: 1, maxLength: 6 }).map((levels) => levels.join('/')),
  fc.constantFrom('bigblue/#', '+/x', '$SYS/x', 'bigblue/containers//reefer'),
);
const payload = fc.oneof(
  fc.constant(Buffer.from('{"ts":1763769600000,"tempC":-18}')),
  fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
);
const validPacket: fc.Arbitrary<Packet> = fc.oneof(
  fc.record({ clientId: safeText, clean: fc.boolean(), keepalive: fc.integer({ min: 0, max: 60 }) }).map(
    (fields): Packet => ({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, ...fields }),
  ),
  fc.record({ topic, payload, qos: fc.constantFrom(0, 1, 2), retain: fc.boolean(), dup: fc.boolean(), messageId: fc.integer({ min: 1, max: 65535 }) }).map(
    (fields): Packet => ({ cmd: 'publish', ...fields, qos: fields.qos as 0 | 1 | 2 }),
  ),
  fc.record({ topic, messageId: fc.integer({ min: 1, max: 65535 }) }).map(
    ({ topic: filter, messageId }): Packet => ({ cmd: 'subscribe', messageId, subscriptions: [{ topic: filter, qos: 1 }] }),
  ),
  fc.integer({ min: 1, max: 65535 }).map((messageId): Packet => ({ cmd: 'pubrel', messageId })),
  fc.integer({ min: 1, max: 65535 }).map((messageId): Packet => ({ cmd: 'puback', messageId })),
  fc.constant<Packet>({ cmd: 'pingreq' }),
  fc.constant<Packet>({ cmd: 'disconnect' }),
);
const mutation = fc.record({
  flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 5 }),
  cutAt: fc.option(fc.nat(), { nil: undefined }),
  spliceAfter: fc.option(fc.uint8Array({ minLength: 1, maxLength: 64 }), { nil: undefined }),
});
const mutatedRound = fc.record({ connectFirst: fc.boolean(), packets: fc.array(validPacket, { minLength: 1, maxLength: 4 }), mutation });

interface Mutation {
  readonly flips: [number, number][];
  readonly cutAt: number | undefined;
  readonly spliceAfter: Uint8Array | undefined;
}

function mutate(bytes: Buffer, { flips, cutAt, spliceAfter }: Mutation): Buffer {
  const copy = Buffer.from(bytes);
  for (const [position, value] of flips) if (copy.length > 0) copy[position % copy.length] = value;
  const cut = cutAt === undefined || copy.length === 0 ? copy : copy.subarray(0, cutAt % copy.length);
  return spliceAfter === undefined ? cut : Buffer.concat([cut, Buffer.from(spliceAfter)]);
}

/** Sends the bytes on a fresh connection and lets the gateway answer (or hang up) for a moment. */
function fire(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.resume();
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.once('connect', () => socket.write(bytes));
    socket.once('close', done);
    setTimeout(done, 40);
  });
}

describe('gateway fuzzing', () => {
  let edge: PortcallProcess | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'portcall-fuzz-'));
  afterAll(async () => {
    await edge?.kill9();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('survives mutated and random packets with bounded memory, serving a well-behaved sensor throughout', async () => {
    edge = startPortcall([
      'edge',
      '--config',
      writeYaml(join(dataDir, 'edge.yaml'), { site: 'AURORA', dataDir, mqtt: { port: 0, auth: { allowAnonymous: true }, maxPacketBytes: 65536 } }),
    ]);
    const port = Number((await edge.waitFor(/MQTT on 127\.0\.0\.1:(\d+)/))[1]);
    const connectBytes = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'fuzz', clean: true, keepalive: 30 });

    const sensor = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'steady-sensor', protocolVersion: 4, reconnectPeriod: 0 });
    let sent = 0;
    let acknowledged = 0;
    const ticker = setInterval(() => {
      sent += 1;
      sensor.publish('bigblue/containers/STEADY/reefer', JSON.stringify({ ts: Date.now(), seq: sent }), { qos: 1 }, (error) => {
        if (!error) acknowledged += 1;
      });
    }, 10);

    const rssBefore = rssBytes(edge.pid);
    const rounds: Buffer[] = [
      ...fc.sample(mutatedRound, { numRuns: MUTATED_ROUNDS, seed: SEED }).map(({ connectFirst, packets, mutation: change }) => {
        const bytes = mutate(Buffer.concat(packets.map((packet) => mqttPacket.generate(packet))), change);
        return connectFirst ? Buffer.concat([connectBytes, bytes]) : bytes;
      }),
      ...fc.sample(fc.uint8Array({ minLength: 1, maxLength: 2048 }), { numRuns: RANDOM_ROUNDS, seed: SEED }).map((bytes) => Buffer.from(bytes)),
    ];
    const deadline = Date.now() + TIME_BUDGET_MS;
    let fired = 0;
    for (let start = 0; start < rounds.length && Date.now() < deadline; start += PARALLEL) {
      await Promise.all(rounds.slice(start, start + PARALLEL).map((bytes) => fire(port, bytes)));
      fired += Math.min(PARALLEL, rounds.length - start);
    }
    clearInterval(ticker);
    const waitUntil = Date.now() + 5000;
    while (acknowledged < sent && Date.now() < waitUntil) await new Promise((resolve) => setTimeout(resolve, 20));

    expect(fired).toBe(rounds.length);
    expect(edge.child.exitCode, edge.output()).toBeNull();
    expect(sensor.connected).toBe(true);
    expect(acknowledged).toBe(sent);
    expect(sent).toBeGreaterThan(50);
    expect(rssBytes(edge.pid) - rssBefore).toBeLessThan(150 * 1024 * 1024);
    await sensor.endAsync();
    // A newcomer is served as before.
    const after = await mosquittoPub(['-p', String(port), '-i', 'after-fuzz', '-q', '2', '-t', 'bigblue/containers/AFTER/reefer', '-m', '{"ts":1763769600000}']);
    expect(after.code, after.stderr).toBe(0);
  });
});
