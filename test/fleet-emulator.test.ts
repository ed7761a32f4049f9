/**
 * The emulated fleet against the real gateway (`portcall edge`), accelerated: one simulated
 * day of the voyage from Tokyo, split over two worker threads. The gateway is killed -9
 * mid-run and restarted on the same port; the emulator reconnects and loses nothing it sent
 * at QoS 1 or 2 (readings, events, manifests): every such message of the simulation is in the
 * log, in order per topic; the only duplicates are messages that were in flight at the kill.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FleetEmulator } from '../devices/emulator/index.js';
import { FleetModel, parseScenario, voyageScenario } from '../devices/fleet/index.js';
import { freeLoopbackPort } from '../tools/net/index.js';
import { readLogTopics, SITE } from './support/gateway-site.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const HOUR_MS = 3_600_000;
const MAX_IN_FLIGHT = 500;

const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

describe('fleet emulator → gateway', () => {
  const processes: PortcallProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('drives the voyage through a kill -9 of the gateway without losing a QoS 1/2 message', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'portcall-fleet-'));
    dirs.push(dataDir);
    const port = await freeLoopbackPort();
    const config = writeYaml(join(dataDir, 'edge.yaml'), { site: SITE, dataDir, mqtt: { port, auth: { allowAnonymous: true } } });
    const startEdge = async () => {
      const edge = startPortcall(['edge', '--config', config]);
      processes.push(edge);
      await edge.waitFor(/MQTT on 127\.0\.0\.1:(\d+)/);
      return edge;
    };
    let edge = await startEdge();

    const scenario = voyageScenario();
    const startMs = Date.parse(scenario.start);
    const endMs = startMs + 24 * HOUR_MS;
    // A simulated day in about 12 s of wall time.
    const emulator = await FleetEmulator.start({ scenario, brokerUrl: `mqtt://127.0.0.1:${port}`, acceleration: 7200, shards: 2, endMs, maxInFlight: MAX_IN_FLIGHT, clientIdPrefix: 'voyage-test' });
    try {
      const deadline = Date.now() + 60_000;
      while (emulator.stats().simTimeMs < startMs + 10 * HOUR_MS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(emulator.stats().simTimeMs).toBeGreaterThanOrEqual(startMs + 10 * HOUR_MS);
      await edge.kill9();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(emulator.stats().connected).toBe(false);
      edge = await startEdge();
      while (!emulator.stats().finished && Date.now() < deadline + 60_000) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(emulator.stats().finished).toBe(true);
    } finally {
      const stats = await emulator.stop(10_000);
      expect(stats.acknowledged).toBe(stats.published);
      expect(stats.reconnects).toBeGreaterThanOrEqual(2);
    }
    await edge.kill9();

    // What the simulation sent, by log topic: the default topic rules map
    // bigblue/containers/<id>/* to containers/<id>, bigblue/manifests/<id> to manifests/<id>.
    const expected = new Map<string, string[]>();
    for (const message of new FleetModel(scenario, { endMs }).advanceTo(endMs)) {
      if (message.qos === 0) continue;
      const [, level1, id] = message.topic.split('/') as [string, string, string];
      const key = `${level1}/${id}`;
      let list = expected.get(key);
      if (list === undefined) expected.set(key, (list = []));
      list.push(sha(message.payload));
    }
    let duplicates = 0;
    let total = 0;
    for (const stream of ['containers', 'manifests']) {
      const topics = [...expected.keys()].filter((key) => key.startsWith(`${stream}/`)).map((key) => key.slice(stream.length + 1));
      const logged = await readLogTopics(dataDir, stream, topics);
      topics.forEach((topic, index) => {
        const want = expected.get(`${stream}/${topic}`)!;
        const got = logged[index]!.map((record) => sha(record.payload));
        // Every message, in order; a resent one (in flight at the kill) may appear twice.
        const seen = new Set<string>();
        const firsts = got.filter((hash) => (seen.has(hash) ? false : (seen.add(hash), true)));
        expect(firsts, `${stream}/${topic}`).toEqual(want);
        duplicates += got.length - firsts.length;
        total += want.length;
      });
    }
    expect(total).toBeGreaterThan(15_000);
    expect(duplicates).toBeLessThanOrEqual(2 * MAX_IN_FLIGHT);
  }, 180_000);

  it('`portcall devices` runs a generated fleet to its end and reports every message acknowledged', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'portcall-fleet-cli-'));
    dirs.push(dataDir);
    const config = writeYaml(join(dataDir, 'edge.yaml'), { site: SITE, dataDir, mqtt: { port: 0, auth: { allowAnonymous: true } } });
    const edge = startPortcall(['edge', '--config', config]);
    processes.push(edge);
    const [, port] = await edge.waitFor(/MQTT on 127\.0\.0\.1:(\d+)/);
    const devices = startPortcall(['devices', '--broker', `mqtt://127.0.0.1:${port}`, '--containers', '200', '--hours', '2', '--acceleration', '3600', '--shards', '2']);
    processes.push(devices);
    // 200 containers × 120 readings, plus 2 × 120 ship reports and 200 bookings.
    const [, published, acknowledged] = await devices.waitFor(/published (\d+), acknowledged (\d+), reconnects 0/, 60_000);
    expect(Number(published)).toBeGreaterThanOrEqual(200 * 120);
    expect(Number(acknowledged)).toBe(Number(published));
  }, 90_000);

  it('the gateway raises the overboard alert durably on board, with the container’s last-seen position', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'portcall-fleet-alerts-'));
    dirs.push(dataDir);
    const config = writeYaml(join(dataDir, 'edge.yaml'), { site: SITE, dataDir, mqtt: { port: 0, auth: { allowAnonymous: true } }, detectors: {} });
    const edge = startPortcall(['edge', '--config', config]);
    processes.push(edge);
    const [, port] = await edge.waitFor(/MQTT on 127\.0\.0\.1:(\d+)/);
    const scenario = parseScenario({
      name: 'strait',
      seed: 11,
      ships: [{ id: 'SEA1', speedKnots: 16, calls: [{ port: 'SGSIN', dwellHours: 4 }, { port: 'MYPKG', dwellHours: 1 }] }],
      containers: [{ ids: 'K01-K06', owner: 'Acme', kind: 'dry', moves: [{ ship: 'SEA1', load: 'SGSIN', unload: 'MYPKG' }] }],
      events: [{ kind: 'overboard', container: 'K05', at: { ship: 'SEA1', beforeArrivalAt: 'MYPKG', hours: 2 }, reportsForMinutes: 10 }],
    });
    const emulator = await FleetEmulator.start({ scenario, brokerUrl: `mqtt://127.0.0.1:${port}`, acceleration: 7200, shards: 1 });
    const deadline = Date.now() + 60_000;
    while (!emulator.stats().finished && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const stats = await emulator.stop(10_000);
    expect(stats.finished).toBe(true);
    // The detectors follow the log; give them a moment after the last record, then stop the site.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await edge.kill9();
    const [alerts] = await readLogTopics(dataDir, 'alerts', ['K05']);
    expect(alerts!.map((record) => record.headers['alert-kind'])).toEqual(['overboard']);
    const alert = JSON.parse(Buffer.from(alerts![0]!.payload).toString()) as { container: string; ship: string; lastSeen: { lat: number; lon: number; ts: string } };
    expect(alert).toMatchObject({ container: 'K05', ship: 'SEA1' });
    const model = new FleetModel(scenario);
    const k05 = model.advanceTo(Infinity).filter((message) => message.topic === 'bigblue/containers/K05/telemetry').map((message) => JSON.parse(message.payload) as { ts: number; lat: number; lon: number });
    expect(Date.parse(alert.lastSeen.ts)).toBe(k05.at(-1)!.ts);
    expect(alert.lastSeen.lat).toBeCloseTo(k05.at(-1)!.lat, 4);
    const others = await readLogTopics(dataDir, 'alerts', ['K01', 'K02', 'K03', 'K04', 'K06']);
    expect(others.flat()).toEqual([]);
  }, 90_000);
});
