/**
 * Trucks and trains as vehicle edge sites (issue #10): the same site software as the ship
 * (`portcall edge`: gateway, durable log, a link ashore) in a truck and in a train, each with
 * its own emulated devices (the vehicle's tracker and the containers aboard) publishing over
 * MQTT, forwarding to the port's site (`portcall shore`). The truck's link is cut while it
 * drives (out of coverage) and comes back. Everything the vehicles' gateways acknowledged is
 * at the port once, at dense offsets; the positions follow the road and the rail. And a truck
 * takes a container on from the port: the port hands the container's topic to the truck's site
 * (as the ship handed it to the port), the truck writes on from the next offset.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { distanceNm, interpolate } from '../devices/sea-lanes/index.js';
import { SYDNEY_MELBOURNE_ROAD, SYDNEY_PARKES_RAIL, VehicleEmulator, VehicleModel, type VehicleSpec } from '../devices/vehicles/index.js';
import { DEFAULT_TOPIC_RULES } from '../site/config.js';
import { FaultProxy } from '../tools/fault-proxy/index.js';
import { freeLoopbackPort } from '../tools/net/index.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';
import { QUICK_LINK } from './support/sites.js';

const START_MS = Date.parse('2026-03-21T06:00:00Z');

const truck: VehicleSpec = {
  id: 'TRUCK-7',
  kind: 'truck',
  path: SYDNEY_MELBOURNE_ROAD,
  speedKmh: 90,
  startMs: START_MS,
  containers: [
    { id: 'Y05', kind: 'dry' },
    { id: 'B01', kind: 'reefer', setpointC: -18 },
  ],
  readingIntervalS: 300,
  positionIntervalS: 120,
  seed: 7,
};

const train: VehicleSpec = {
  id: 'TRAIN-2',
  kind: 'train',
  path: SYDNEY_PARKES_RAIL,
  speedKmh: 70,
  startMs: START_MS,
  containers: ['Y06', 'Y08', 'Y09', 'Y10'].map((id) => ({ id, kind: 'dry' as const })),
  readingIntervalS: 300,
  positionIntervalS: 120,
  seed: 2,
};

/** Shortest distance (nm) from a point to a path's great-circle segments, sampled every 100 m. */
function offPathNm(point: { lat: number; lon: number }, model: VehicleModel): number {
  let best = Number.POSITIVE_INFINITY;
  for (const segment of model.segments) {
    const steps = Math.ceil(segment.km / 0.1);
    for (let step = 0; step <= steps; step += 1) best = Math.min(best, distanceNm(point, interpolate(segment.from, segment.to, step / steps)));
  }
  return best;
}

describe('vehicle model', () => {
  it('drives the path from its first place to its last, deterministic however it is stepped, the containers at the vehicle', () => {
    const model = new VehicleModel(truck);
    // Port Botany to Melbourne by the Hume: 760 km on these waypoints (the road is about 870 km).
    expect(model.lengthKm).toBeGreaterThan(740);
    expect(model.lengthKm).toBeLessThan(780);
    expect(distanceNm(model.positionAt(START_MS), SYDNEY_MELBOURNE_ROAD[0]!)).toBeLessThan(0.01);
    expect(model.positionAt(model.endMs + 1).status).toBe('arrived');
    expect(distanceNm(model.positionAt(model.endMs), SYDNEY_MELBOURNE_ROAD.at(-1)!)).toBeLessThan(0.01);
    const whole = model.advanceTo(model.endMs);
    const stepped = new VehicleModel(truck);
    const inSteps = [];
    for (let at = START_MS; at <= stepped.endMs + 600_000; at += 3_700_000) inSteps.push(...stepped.advanceTo(at));
    inSteps.push(...stepped.advanceTo(stepped.endMs));
    expect(inSteps.map((message) => message.payload)).toEqual(whole.map((message) => message.payload));
    // Each container reading carries the truck's position at that moment.
    for (const message of whole.filter((candidate) => candidate.topic.includes('/containers/'))) {
      const reading = JSON.parse(message.payload) as { ts: number; lat: number; lon: number };
      expect(distanceNm(reading, model.positionAt(reading.ts))).toBeLessThan(0.01);
    }
    // A train stands at its stations: at Lithgow for 30 minutes.
    const rail = new VehicleModel(train);
    const lithgow = rail.segments.find((segment) => segment.from.name === 'Lithgow')!;
    expect(rail.positionAt(lithgow.departMs - 10 * 60_000).status).toBe('at-station');
    expect(distanceNm(rail.positionAt(lithgow.departMs - 10 * 60_000), lithgow.from)).toBeLessThan(0.01);
  });
});

describe('trucks and trains as vehicle edge sites', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-vehicles-'));
  const processes: PortcallProcess[] = [];
  const emulators: VehicleEmulator[] = [];
  let proxy: FaultProxy | undefined;

  afterAll(async () => {
    for (const emulator of emulators) await emulator.stop(0).catch(() => undefined);
    for (const process of processes) await process.kill9();
    await proxy?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a truck and a train, each running the site software as an edge site, forward positions and container readings to the port; the truck out of coverage mid-trip loses nothing', async () => {
    const portHttp = await freeLoopbackPort();
    proxy = await FaultProxy.start({ targetPort: portHttp });
    const vehicles = [
      { spec: truck, http: await freeLoopbackPort(), mqtt: await freeLoopbackPort(), url: proxy.url() },
      { spec: train, http: await freeLoopbackPort(), mqtt: await freeLoopbackPort(), url: `http://127.0.0.1:${portHttp}` },
    ];
    const token = (id: string) => `${id.toLowerCase()}-to-sydney-token`;
    const portConfig = writeYaml(join(dir, 'sydney.yaml'), {
      site: 'SYDNEY',
      dataDir: dir,
      http: { port: portHttp },
      ingest: { peers: vehicles.map(({ spec }) => ({ site: spec.id, token: token(spec.id) })) },
    });
    const port = startPortcall(['shore', '--config', portConfig]);
    processes.push(port);
    await port.waitFor(/HTTP on /, 60_000);
    for (const vehicle of vehicles) {
      const config = writeYaml(join(dir, `${vehicle.spec.id.toLowerCase()}.yaml`), {
        site: vehicle.spec.id,
        dataDir: dir,
        http: { port: vehicle.http },
        // The vehicle's tracker reports under vehicles/<id>: its own stream, one topic per vehicle.
        mqtt: { port: vehicle.mqtt, auth: { allowAnonymous: true }, topicRules: [...DEFAULT_TOPIC_RULES, { pattern: 'bigblue/vehicles/{vehicle}/{sensor}', stream: 'vehicles', topic: '{vehicle}' }] },
        links: [{ name: 'SYDNEY', url: vehicle.url, token: token(vehicle.spec.id), streams: ['alerts', 'manifests', 'vehicles', 'containers'], ...QUICK_LINK }],
      });
      const site = startPortcall(['edge', '--config', config]);
      processes.push(site);
      await site.waitFor(/HTTP on /, 60_000);
    }
    // About 10 hours of driving in about 10 s of wall time each.
    for (const vehicle of vehicles) emulators.push(await VehicleEmulator.start({ spec: vehicle.spec, brokerUrl: `mqtt://127.0.0.1:${vehicle.mqtt}`, acceleration: 4000 }));
    const [truckDevices, trainDevices] = emulators as [VehicleEmulator, VehicleEmulator];
    // The truck out of coverage from a quarter of its trip to a half: its gateway keeps storing.
    const quarter = truckDevices.model.startMs + (truckDevices.model.endMs - truckDevices.model.startMs) / 4;
    const half = truckDevices.model.startMs + (truckDevices.model.endMs - truckDevices.model.startMs) / 2;
    const deadline = Date.now() + 120_000;
    let cut = false;
    let restored = false;
    while (!emulators.every((emulator) => emulator.stats().finished) && Date.now() < deadline) {
      const at = truckDevices.stats().simTimeMs;
      if (!cut && at >= quarter) {
        proxy.setDown();
        cut = true;
      }
      if (cut && !restored && at >= half) {
        proxy.setUp();
        restored = true;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(emulators.map((emulator) => emulator.stats().finished)).toEqual([true, true]);
    expect(cut && restored).toBe(true);
    for (const emulator of emulators) {
      const stats = await emulator.stop(10_000);
      expect(stats.acknowledged, `unacknowledged at stop: ${JSON.stringify(stats)}`).toBe(stats.published);
    }

    // Everything each vehicle's gateway acknowledged arrives at the port (bounded wait), once.
    const read = async (stream: string, topic: string) => {
      const records: { origin: string; offset: number; payload: Record<string, unknown> }[] = [];
      for (let from = 0; ; ) {
        const response = await fetch(`http://127.0.0.1:${portHttp}/v1/streams/${stream}/topics/${topic}/records?from=${from}&maxRecords=1000`, { signal: AbortSignal.timeout(30_000) });
        if (response.status === 404) return records;
        const page = (await response.json()) as { nextOffset: number; records: { origin: string; offset: number; payload: Record<string, unknown> }[] };
        records.push(...page.records);
        if (page.records.length === 0) return records;
        from = page.nextOffset;
      }
    };
    const expectedOf = (emulator: VehicleEmulator) => {
      const byTopic = new Map<string, string[]>();
      for (const message of emulator.acknowledgedMessages) {
        const [, kind, id] = message.topic.split('/');
        const key = `${kind === 'vehicles' ? 'vehicles' : 'containers'}/${id}`;
        byTopic.set(key, [...(byTopic.get(key) ?? []), JSON.stringify(JSON.parse(message.payload))]);
      }
      return byTopic;
    };
    const arrivalDeadline = Date.now() + 60_000;
    let differences: string[] = [];
    for (;;) {
      differences = [];
      for (const emulator of emulators) {
        for (const [key, payloads] of expectedOf(emulator)) {
          const [stream, topic] = key.split('/') as [string, string];
          const records = await read(stream, topic);
          const stored = records.map((record) => JSON.stringify(record.payload)).sort();
          if (JSON.stringify(stored) !== JSON.stringify([...payloads].sort())) differences.push(`${key}: ${records.length} at the port, ${payloads.length} acknowledged aboard ${emulator.model.spec.id}`);
          if (!records.every((record, index) => record.offset === index && record.origin === emulator.model.spec.id)) differences.push(`${key}: offsets not dense from 0 or not written by ${emulator.model.spec.id}`);
        }
      }
      if (differences.length === 0 || Date.now() > arrivalDeadline) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(differences).toEqual([]);

    // The positions at the port follow the road and the rail, forward, from start to end.
    for (const emulator of [truckDevices, trainDevices]) {
      const positions = (await read('vehicles', emulator.model.spec.id)).map((record) => record.payload as { lat: number; lon: number; km: number; ts: number });
      expect(positions.length).toBeGreaterThan(100);
      // On the road (or the rail): within 100 m of the path between its real places; and where the simulation had it then.
      const worst = Math.max(...positions.filter((_, index) => index % 10 === 0).map((position) => offPathNm(position, emulator.model)));
      expect(worst).toBeLessThan(0.06);
      expect(Math.max(...positions.map((position) => distanceNm(position, emulator.model.positionAt(position.ts))))).toBeLessThan(0.01);
      expect(positions.every((position, index) => index === 0 || position.km >= positions[index - 1]!.km)).toBe(true);
      expect(positions.at(-1)!.km).toBeCloseTo(emulator.model.lengthKm, 0);
    }
    // The truck's gateway kept what it heard while out of coverage and sent it once back in range.
    const out = (await read('vehicles', truck.id)).filter((record) => {
      const ts = (record.payload as { ts: number }).ts;
      return ts > quarter + 600_000 && ts < half - 600_000;
    });
    expect(out.length).toBeGreaterThan(20);
  }, 240_000);

  it('a truck takes Y05 from the port onwards: the port hands Y05\u2019s topic to the truck\u2019s site, the truck writes on at the next offset, and its readings reach the port', async () => {
    const portHttp = await freeLoopbackPort();
    const portMqtt = await freeLoopbackPort();
    const truckHttp = await freeLoopbackPort();
    const truckMqtt = await freeLoopbackPort();
    const handoffToken = 'handoff-token-of-the-terminal-0123456789';
    const id = 'TRUCK-9';
    const portConfig = writeYaml(join(dir, 'sydney-2.yaml'), {
      site: 'SYDNEY',
      dataDir: join(dir, 'handoff'),
      http: { port: portHttp },
      mqtt: { port: portMqtt, auth: { allowAnonymous: true } },
      handoffToken,
      ingest: { peers: [{ site: id, token: 'truck-to-sydney-token' }] },
      // The truck gets only the topics it is to carry on (here Y05), with their handoff records.
      links: [{ name: id, url: `http://127.0.0.1:${truckHttp}`, token: 'sydney-to-truck-token', streams: ['containers'], filter: { topics: ['Y05'] }, ...QUICK_LINK }],
    });
    const truckConfig = writeYaml(join(dir, 'truck-9.yaml'), {
      site: id,
      dataDir: join(dir, 'handoff'),
      http: { port: truckHttp },
      mqtt: { port: truckMqtt, auth: { allowAnonymous: true }, topicRules: [...DEFAULT_TOPIC_RULES, { pattern: 'bigblue/vehicles/{vehicle}/{sensor}', stream: 'vehicles', topic: '{vehicle}' }] },
      // A container's readings are stored aboard only once it has been handed to the truck.
      handoffOnlyStreams: ['containers'],
      ingest: { peers: [{ site: 'SYDNEY', token: 'sydney-to-truck-token', sparse: true }] },
      links: [{ name: 'SYDNEY', url: `http://127.0.0.1:${portHttp}`, token: 'truck-to-sydney-token', streams: ['alerts', 'manifests', 'vehicles', 'containers'], ...QUICK_LINK }],
    });
    for (const [kind, config] of [['shore', portConfig], ['edge', truckConfig]] as const) {
      const site = startPortcall([kind, '--config', config]);
      processes.push(site);
      await site.waitFor(/HTTP on /, 60_000);
    }
    const read = async (url: string, topic: string) => {
      const response = await fetch(`${url}/v1/streams/containers/topics/${topic}/records?from=0&maxRecords=1000`, { signal: AbortSignal.timeout(30_000) });
      if (response.status === 404) return [];
      return ((await response.json()) as { records: { origin: string; offset: number; headers: Record<string, string>; payload: Record<string, unknown> }[] }).records;
    };
    const port = `http://127.0.0.1:${portHttp}`;
    // Y05 stands at the terminal: its unit reports to the port's gateway, which writes its topic.
    const terminal = await mqtt.connectAsync(`mqtt://127.0.0.1:${portMqtt}`, { clientId: 'terminal-y05', protocolVersion: 4 });
    for (let index = 0; index < 20; index += 1) {
      await terminal.publishAsync('bigblue/containers/Y05/telemetry', JSON.stringify({ ts: START_MS - (20 - index) * 300_000, container: 'Y05', tempC: 24, door: 'closed' }), { qos: 1 });
    }
    await terminal.endAsync();
    expect((await read(port, 'Y05')).map((record) => record.origin)).toEqual(Array.from({ length: 20 }, () => 'SYDNEY'));
    // The truck's devices start now: Y05's readings are refused aboard until the handoff arrives.
    const devices = await VehicleEmulator.start({ spec: { ...truck, id, containers: [{ id: 'Y05', kind: 'dry' }], seed: 9 }, brokerUrl: `mqtt://127.0.0.1:${truckMqtt}`, acceleration: 4000 });
    emulators.push(devices);
    const handed = await fetch(`${port}/v1/streams/containers/topics/Y05/handoff`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handoffToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: id, at: new Date(START_MS).toISOString() }),
    });
    expect(handed.status, await handed.clone().text()).toBe(200);
    expect(((await handed.json()) as { offset: number }).offset).toBe(20);
    const deadline = Date.now() + 120_000;
    while (!devices.stats().finished && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const stats = await devices.stop(10_000);
    expect(stats.finished).toBe(true);
    expect(stats.acknowledged, `unacknowledged at stop: ${JSON.stringify(stats)}`).toBe(stats.published);
    const carried = devices.acknowledgedMessages.filter((message) => message.topic.includes('/containers/Y05/')).map((message) => JSON.stringify(JSON.parse(message.payload)));
    expect(carried.length).toBeGreaterThan(50);
    // At the port: Y05 written by the port, the handoff at offset 20, then the truck's readings, densely.
    let records: Awaited<ReturnType<typeof read>> = [];
    const arrival = Date.now() + 60_000;
    do {
      records = [];
      for (let from = 0; ; ) {
        const response = await fetch(`${port}/v1/streams/containers/topics/Y05/records?from=${from}&maxRecords=1000`, { signal: AbortSignal.timeout(30_000) });
        const page = (await response.json()) as { nextOffset: number; records: typeof records };
        records.push(...page.records);
        if (page.records.length === 0) break;
        from = page.nextOffset;
      }
      if (records.length >= 21 + carried.length) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    } while (Date.now() < arrival);
    expect(records.map((record) => record.offset)).toEqual(records.map((_, index) => index));
    expect(records.slice(0, 21).every((record) => record.origin === 'SYDNEY')).toBe(true);
    expect(records[20]!.headers['pc-handoff-to']).toBe(id);
    const after = records.slice(21);
    expect(after.every((record) => record.origin === id)).toBe(true);
    expect(after.map((record) => JSON.stringify(record.payload)).sort()).toEqual([...carried].sort());
    // And the truck's own copy of Y05 holds the port's part, the handoff and its own, at the same offsets.
    const aboard = await read(`http://127.0.0.1:${truckHttp}`, 'Y05');
    expect(aboard.length).toBe(records.length);
  }, 240_000);

  it('portcall devices --vehicle truck drives a truck to Melbourne through its own edge gateway, every reading acknowledged and stored', async () => {
    const http = await freeLoopbackPort();
    const mqttPort = await freeLoopbackPort();
    const config = writeYaml(join(dir, 'truck-9.yaml'), {
      site: 'TRUCK-9',
      dataDir: dir,
      http: { port: http },
      mqtt: { port: mqttPort, auth: { allowAnonymous: true }, topicRules: [...DEFAULT_TOPIC_RULES, { pattern: 'bigblue/vehicles/{vehicle}/{sensor}', stream: 'vehicles', topic: '{vehicle}' }] },
    });
    const site = startPortcall(['edge', '--config', config]);
    processes.push(site);
    await site.waitFor(/HTTP on /, 60_000);
    const devices = startPortcall(['devices', '--vehicle', 'truck', '--vehicle-id', 'TRUCK-9', '--carrying', 'Y05,B01:reefer', '--broker', `mqtt://127.0.0.1:${mqttPort}`, '--acceleration', '20000']);
    processes.push(devices);
    const [, published, acknowledged] = await devices.waitFor(/TRUCK-9 arrived: published (\d+), acknowledged (\d+)/, 120_000);
    // Arrived: it ends by itself, exit 0 (1 would mean something sent was not acknowledged).
    expect(devices.child.exitCode ?? (await new Promise<number | null>((resolve) => devices.child.once('exit', resolve)))).toBe(0);
    expect(Number(acknowledged)).toBe(Number(published));
    // Positions every 2 simulated minutes over about 8.5 hours, and each container's readings every 5.
    const stored = async (stream: string, topic: string) => {
      const response = await fetch(`http://127.0.0.1:${http}/v1/streams/${stream}/topics/${topic}/latest`, { headers: { connection: 'close' } });
      return response.ok ? ((await response.json()) as { offset: number }).offset + 1 : 0;
    };
    const counts = [await stored('vehicles', 'TRUCK-9'), await stored('containers', 'Y05'), await stored('containers', 'B01')];
    expect(counts[0]).toBeGreaterThan(200);
    expect(counts[1]).toBeGreaterThan(80);
    expect(counts[2]).toBe(counts[1]);
    expect(counts.reduce((sum, count) => sum + count, 0)).toBe(Number(published));
  }, 180_000);
});
