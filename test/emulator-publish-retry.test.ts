/**
 * The emulators keep a reading until it is acknowledged, also when mqtt.js gives up on it.
 *
 * After a reconnect with a persistent session, mqtt.js resends its session's unacknowledged
 * messages one at a time (the next after the last one's PUBACK) and queues every new publish
 * behind them; if the connection drops before that queue is sent, mqtt.js fails the queued
 * publishes ("Connection closed") and forgets them. A gateway refusing a reading closes the
 * connection (docs/GATEWAY.md), so a device resending a refused reading lands there again and
 * again: in CI a truck's emulator once ended with 434 of 435 readings acknowledged.
 *
 * A scripted MQTT server drives mqtt.js into that path: the first connection takes three
 * publishes without acknowledging them and closes; the second resumes the session, takes the
 * first resent message without acknowledging it, holds the connection for a second while the
 * devices publish on (queued in mqtt.js), and closes; every later connection acknowledges
 * everything. Afterwards the server must hold every QoS 1 and 2 message the model made, once
 * each, and nothing else.
 */
import { createServer, type Server, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { FleetShard } from '../devices/emulator/index.js';
import { FleetModel, parseScenario } from '../devices/fleet/index.js';
import { SYDNEY_MELBOURNE_ROAD, VehicleEmulator, VehicleModel, type VehicleSpec } from '../devices/vehicles/index.js';

const HOLD_MS = 1000;

class ScriptedBroker {
  connections = 0;
  /** What connections after the second took: topic and payload, in arrival order. */
  readonly stored: string[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(): Promise<ScriptedBroker> {
    const server = createServer();
    const broker = new ScriptedBroker(server);
    server.on('connection', (socket) => broker.serve(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return broker;
  }

  get url(): string {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('not listening');
    return `mqtt://127.0.0.1:${address.port}`;
  }

  private serve(socket: Socket): void {
    const connection = ++this.connections;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let received = 0;
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connect') {
        socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: connection > 1 }));
        if (connection === 2) setTimeout(() => socket.destroy(), HOLD_MS);
      } else if (packet.cmd === 'pingreq') {
        socket.write(mqttPacket.generate({ cmd: 'pingresp' }));
      } else if (packet.cmd === 'publish') {
        received += 1;
        if (connection === 1) {
          // In flight, never acknowledged: the session has them to resend.
          if (received >= 3) socket.destroy();
        } else if (connection > 2) {
          this.stored.push(`${packet.topic} ${String(packet.payload)}`);
          if (packet.qos === 1) socket.write(mqttPacket.generate({ cmd: 'puback', messageId: packet.messageId! }));
          if (packet.qos === 2) socket.write(mqttPacket.generate({ cmd: 'pubrec', messageId: packet.messageId! }));
        }
      } else if (packet.cmd === 'pubrel' && connection > 2) {
        socket.write(mqttPacket.generate({ cmd: 'pubcomp', messageId: packet.messageId! }));
      }
    });
    socket.on('data', (bytes) => parser.parse(bytes));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function duplicatesIn(values: readonly string[]): string[] {
  const seen = new Set<string>();
  return values.filter((value) => (seen.has(value) ? true : (seen.add(value), false)));
}

/**
 * Runs an emulator to the end of its simulation, stops it (waiting up to 10 s for what is in
 * flight), and checks what both emulators must show: the path was taken (mqtt.js failed
 * publishes queued behind the resent session) and everything published was acknowledged.
 */
async function finishAndStop<Stats extends { finished: boolean; published: number; acknowledged: number; lastError: string | undefined }>(
  broker: ScriptedBroker,
  emulator: { stats(): Stats; stop(drainMs: number): Promise<Stats> },
): Promise<Stats> {
  const deadline = Date.now() + 45_000;
  while (!emulator.stats().finished && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  const stats = await emulator.stop(10_000);
  expect(broker.connections).toBeGreaterThanOrEqual(3);
  expect(stats.lastError).toBe('Connection closed');
  expect(stats.finished, JSON.stringify(stats)).toBe(true);
  expect(stats.acknowledged, JSON.stringify(stats)).toBe(stats.published);
  return stats;
}

describe('emulators under mqtt.js failing queued publishes', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('a vehicle publishes again what mqtt.js gave up on: every reading of the trip arrives once', { timeout: 60_000 }, async () => {
    const broker = await ScriptedBroker.start();
    cleanups.push(() => broker.close());
    const spec: VehicleSpec = {
      id: 'TRUCK-3',
      kind: 'truck',
      path: SYDNEY_MELBOURNE_ROAD,
      speedKmh: 90,
      startMs: Date.UTC(2026, 2, 20, 0, 0, 0),
      containers: [
        { id: 'Y05', kind: 'dry' },
        { id: 'B01', kind: 'reefer', setpointC: -18 },
      ],
      readingIntervalS: 300,
      positionIntervalS: 120,
      seed: 3,
    };
    const devices = await VehicleEmulator.start({ spec, brokerUrl: broker.url, acceleration: 10_000 });
    cleanups.push(() => devices.stop(0));
    await finishAndStop(broker, devices);

    const model = new VehicleModel(spec);
    const all = model.advanceTo(model.endMs).map((message) => `${message.topic} ${message.payload}`);
    expect(duplicatesIn(broker.stored)).toEqual([]);
    expect([...broker.stored].sort()).toEqual([...all].sort());
    expect(devices.acknowledgedMessages.length).toBe(all.length);
  });

  it('a fleet shard publishes again what mqtt.js gave up on: every message arrives once', { timeout: 60_000 }, async () => {
    const broker = await ScriptedBroker.start();
    cleanups.push(() => broker.close());
    const scenario = parseScenario(
      {
        name: 'retry',
        seed: 5,
        ships: [{ id: 'AURORA', speedKnots: 18, calls: [{ port: 'SGSIN', dwellHours: 1 }, { port: 'AUSYD', dwellHours: 6 }] }],
        containers: [{ ids: 'C01-C08', owner: 'Acme', kind: 'reefer', setpointC: -18, moves: [{ ship: 'AURORA', load: 'SGSIN', unload: 'AUSYD' }] }],
      },
      'retry',
    );
    const endMs = new FleetModel(scenario).timeline.startMs + 6 * 3_600_000;
    const shard = new FleetShard({ scenario, shard: 0, shards: 1, brokerUrl: broker.url, clientId: 'retry-shard', acceleration: 5_000, maxInFlight: 500, endMs });
    await shard.start();
    cleanups.push(() => shard.stop(0));
    await finishAndStop(broker, shard);

    const messages = new FleetModel(scenario, { endMs }).advanceTo(endMs);
    const key = (message: { topic: string; payload: string }) => `${message.topic} ${message.payload}`;
    expect(duplicatesIn(broker.stored)).toEqual([]);
    // QoS 1 and 2: every one. QoS 0 (the ship's position) is at most once: what the first two
    // connections took of it, the server dropped.
    const stored = new Set(broker.stored);
    expect(messages.filter((message) => message.qos > 0 && !stored.has(key(message))).map(key)).toEqual([]);
    const all = new Set(messages.map(key));
    expect(broker.stored.filter((message) => !all.has(message))).toEqual([]);
  });
});
