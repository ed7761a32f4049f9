import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FleetModel, loadScenarioFile, parseScenario, ScenarioError, voyageScenario, type FleetMessage } from '../devices/fleet/index.js';
import { distanceNm } from '../devices/sea-lanes/index.js';

const HOUR_MS = 3_600_000;

function digest(messages: readonly FleetMessage[]): string {
  const hash = createHash('sha256');
  for (const message of messages) hash.update(`${message.timeMs} ${message.kind} ${message.qos} ${message.topic} ${message.payload}\n`);
  return hash.digest('hex');
}

interface Reading {
  ts: number;
  container: string;
  tempC: number;
  setpointC?: number;
  compressor?: string;
  door: string;
  shockG: number;
  lat: number;
  lon: number;
}

const voyage = new FleetModel(voyageScenario());
const all = voyage.advanceTo(Infinity);
const readingsOf = (id: string): Reading[] =>
  all.filter((message) => message.kind === 'readings' && message.topic.startsWith(`bigblue/containers/${id}/`)).map((message) => JSON.parse(message.payload) as Reading);
const manifestsOf = (id: string) => all.filter((message) => message.topic === `bigblue/manifests/${id}`).map((message) => JSON.parse(message.payload) as { event: string; port?: string; ts: number });
const shipPositions = all.filter((message) => message.topic === 'bigblue/ships/AURORA/position').map((message) => JSON.parse(message.payload) as { ts: number; lat: number; lon: number; status: string; port?: string });

describe('emulated fleet: the voyage of DESIGN.md', () => {
  it('is deterministic, whether advanced in one step or in many', () => {
    // The first four days, stepped unevenly (some steps landing exactly on report times),
    // against the same days of the whole voyage advanced in one call.
    const endMs = voyage.timeline.startMs + 4 * 24 * HOUR_MS;
    const again = new FleetModel(voyageScenario(), { endMs });
    const stepped: FleetMessage[] = [];
    for (let t = again.timeline.startMs; t < endMs + HOUR_MS; t += 37 * 60_000 + 13) stepped.push(...again.advanceTo(t));
    stepped.push(...again.advanceTo(Infinity));
    const sameDays = all.filter((message) => message.timeMs <= endMs);
    expect(stepped.length).toBe(sameDays.length);
    expect(digest(stepped)).toBe(digest(sameDays));
    expect(stepped.slice(0, 1000)).toEqual(sameDays.slice(0, 1000));
    expect(all.findIndex((message, index) => index > 0 && message.timeMs < all[index - 1]!.timeMs)).toBe(-1);
  });

  it('sails AURORA Tokyo → Singapore → Sydney on the sea lanes, berthed in between', () => {
    const [tokyo, singapore, sydney] = voyage.timeline.ships.get('AURORA')!.calls;
    expect([tokyo!.port.code, singapore!.port.code, sydney!.port.code]).toEqual(['JPTYO', 'SGSIN', 'AUSYD']);
    // 18 knots over about 3,100 and 4,150 nm: about a week, then about nine and a half days.
    expect((singapore!.arriveMs - tokyo!.departMs) / HOUR_MS).toBeGreaterThan(150);
    expect((singapore!.arriveMs - tokyo!.departMs) / HOUR_MS).toBeLessThan(190);
    const berthedInSingapore = shipPositions.filter((position) => position.ts > singapore!.arriveMs && position.ts < singapore!.departMs);
    expect(berthedInSingapore.length).toBeGreaterThan(0);
    expect(berthedInSingapore.every((position) => position.status === 'berthed' && position.port === 'SGSIN')).toBe(true);
    // Reported positions move at the ship's speed: never more than 18 kn × 1 min + rounding between reports.
    for (let index = 1; index < shipPositions.length; index += 1) {
      expect(distanceNm(shipPositions[index - 1]!, shipPositions[index]!)).toBeLessThan(0.31);
    }
  });

  it('loads Y01–Y10 and B01–B05 in Tokyo, unloads Y01–Y04 and loads R01–R03 in Singapore; containers aboard are where the ship is', () => {
    for (const id of ['Y01', 'Y04']) expect(manifestsOf(id).map((m) => `${m.event}@${m.port ?? ''}`)).toEqual(['booked@', 'loaded@JPTYO', 'unloaded@SGSIN']);
    for (const id of ['R01', 'R03']) expect(manifestsOf(id).map((m) => `${m.event}@${m.port ?? ''}`)).toEqual(['booked@', 'loaded@SGSIN', 'unloaded@AUSYD']);
    for (const id of ['Y05', 'B01']) expect(manifestsOf(id).map((m) => `${m.event}@${m.port ?? ''}`)).toEqual(['booked@', 'loaded@JPTYO', 'unloaded@AUSYD']);
    const ship = voyage.timeline.ships.get('AURORA')!;
    const atSea = readingsOf('B01').filter((reading) => ship.whereabouts(reading.ts).kind === 'at-sea');
    expect(atSea.length).toBeGreaterThan(10_000);
    for (const reading of atSea.filter((_reading, index) => index % 97 === 0)) {
      expect(distanceNm(reading, ship.whereabouts(reading.ts).position)).toBeLessThan(0.01);
    }
    // Y01 stays in Singapore after it was unloaded.
    const [, , unloaded] = manifestsOf('Y01');
    const after = readingsOf('Y01').filter((reading) => reading.ts > unloaded!.ts + HOUR_MS);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((reading) => distanceNm(reading, { lat: 1.26, lon: 103.82 }) < 0.01)).toBe(true);
  });

  it('Y07 goes overboard near Sydney: a shock spike, its position parts from the ship, then silence', () => {
    const ship = voyage.timeline.ships.get('AURORA')!;
    const overboardAt = ship.callAt('AUSYD').arriveMs - 6 * HOUR_MS;
    const spike = all.find((message) => message.topic === 'bigblue/containers/Y07/event' && message.timeMs === overboardAt);
    expect(spike).toBeDefined();
    expect((JSON.parse(spike!.payload) as { shockG: number }).shockG).toBeGreaterThanOrEqual(8);
    const after = readingsOf('Y07').filter((reading) => reading.ts >= overboardAt);
    expect(after.length).toBeGreaterThanOrEqual(9);
    expect(after.length).toBeLessThanOrEqual(10);
    const last = after.at(-1)!;
    expect(distanceNm(last, ship.whereabouts(last.ts).position)).toBeGreaterThan(2);
    expect(distanceNm(last, after[0]!)).toBeLessThan(0.5);
    // Silent afterwards, and never unloaded.
    expect(readingsOf('Y07').at(-1)!.ts).toBe(last.ts);
    expect(manifestsOf('Y07').map((m) => m.event)).toEqual(['booked', 'loaded']);
    // Before it went over it rode with the ship.
    const before = readingsOf('Y07').filter((reading) => reading.ts < overboardAt && reading.ts > overboardAt - HOUR_MS);
    expect(before.every((reading) => distanceNm(reading, ship.whereabouts(reading.ts).position) < 0.01)).toBe(true);
  });

  it('reefers hold setpoint with compressor cycles and defrosts; a failed compressor lets B04 warm up; B02’s door opens at sea', () => {
    const healthy = readingsOf('B01');
    const states = new Set(healthy.map((reading) => reading.compressor));
    expect([...states].sort()).toEqual(['defrost', 'off', 'on']);
    for (const reading of healthy) {
      expect(reading.tempC).toBeGreaterThan(reading.setpointC! - 1.5);
      // A defrost warms the air a few degrees; the compressor pulls it down again after.
      expect(reading.tempC).toBeLessThan(reading.setpointC! + 6);
      // Off only inside the band (it switches on above it).
      if (reading.compressor === 'off') expect(Math.abs(reading.tempC - reading.setpointC!)).toBeLessThan(1.2);
    }
    // The compressor switches on and off many times a day, not every minute.
    const switches = healthy.filter((reading, index) => index > 0 && reading.compressor !== healthy[index - 1]!.compressor).length;
    const days = (healthy.at(-1)!.ts - healthy[0]!.ts) / (24 * HOUR_MS);
    expect(switches / days).toBeGreaterThan(10);
    expect(switches / days).toBeLessThan(200);
    const failedAt = voyage.timeline.ships.get('AURORA')!.callAt('SGSIN').departMs + 40 * HOUR_MS;
    const b04 = readingsOf('B04');
    expect(b04.filter((reading) => reading.ts < failedAt).every((reading) => reading.compressor !== 'failed')).toBe(true);
    const twelveHoursLater = b04.find((reading) => reading.ts >= failedAt + 12 * HOUR_MS)!;
    expect(twelveHoursLater.compressor).toBe('failed');
    expect(twelveHoursLater.tempC).toBeGreaterThan(-18 + 5);
    expect(all.some((message) => message.topic === 'bigblue/containers/B04/event' && message.payload.includes('compressor-fault'))).toBe(true);
    const open = readingsOf('B02').filter((reading) => reading.door === 'open');
    expect(open.length).toBeGreaterThanOrEqual(24);
    expect(open.length).toBeLessThanOrEqual(26);
    expect(open.every((reading) => voyage.timeline.ships.get('AURORA')!.whereabouts(reading.ts).kind === 'at-sea')).toBe(true);
  });

  it('gives every message the QoS of its kind and a JSON object with ts', () => {
    const qos = new Map(all.map((message) => [message.kind, message.qos]));
    expect(Object.fromEntries(qos)).toEqual({ manifests: 2, events: 1, readings: 1, ships: 0 });
    for (const message of all.filter((_message, index) => index % 101 === 0)) {
      const body = JSON.parse(message.payload) as { ts: number };
      expect(body.ts).toBe(message.timeMs);
    }
  });
});

describe('scenario files', () => {
  it('refuses bad scenarios with the field and the reason', () => {
    const base = { ships: [{ id: 'AURORA', calls: [{ port: 'JPTYO' }, { port: 'SGSIN' }] }] };
    const cases: [unknown, RegExp][] = [
      [{ ships: [{ id: 'AURORA', calls: [{ port: 'XXYYY' }] }] }, /ships\.0\.calls\.0\.port: unknown port/],
      [{ ...base, containers: [{ ids: 'Y01', owner: 'ToyCo', moves: [{ ship: 'NOPE', load: 'JPTYO', unload: 'SGSIN' }] }] }, /containers\.0\.moves\.0\.ship: no ship NOPE/],
      [{ ...base, containers: [{ ids: 'Y01', owner: 'ToyCo', moves: [{ ship: 'AURORA', load: 'SGSIN', unload: 'JPTYO' }] }] }, /containers\.0\.moves\.0\.unload: AURORA does not call at JPTYO after SGSIN/],
      [{ ...base, containers: [{ ids: ['Y01', 'Y01'], owner: 'ToyCo', moves: [{ ship: 'AURORA', load: 'JPTYO', unload: 'SGSIN' }] }] }, /container Y01 appears twice/],
      [{ ...base, events: [{ kind: 'overboard', container: 'Y99', at: { ship: 'AURORA', beforeArrivalAt: 'SGSIN', hours: 1 } }] }, /events\.0\.container: no container Y99/],
      [{ ...base, speed: 3 }, /Unrecognized key/],
      [{ ...base, topicPrefix: 'big/#' }, /topicPrefix: no MQTT wildcards/],
      // Link windows and faults.
      [{ ...base, links: [{ ship: 'AURORA', site: 'TOKYO', port: 'JPTYO', docked: 'wifi' }] }, /fleet\.yaml: links\.0\.docked: .*"docked"\|"satellite"\|"none"/],
      [{ ...base, links: [{ ship: 'AURORA', site: 'TOKYO', port: 'AUSYD' }] }, /links\.0\.port: AURORA does not call at AUSYD/],
      [{ ...base, links: [{ ship: 'NOPE', site: 'TOKYO' }] }, /links\.0\.ship: no ship NOPE/],
      [{ ...base, links: [{ ship: 'AURORA', site: 'HQ' }, { ship: 'AURORA', site: 'HQ' }] }, /links\.1\.site: AURORA already has a link to HQ/],
      [{ ...base, links: [{ ship: 'AURORA', site: 'bad site' }] }, /links\.0\.site: 1-64 of/],
      [{ ...base, faults: [{ kind: 'kill-gateway', ship: 'AURORA', at: { ship: 'AURORA', afterDepartureFrom: 'AUSYD', hours: 3 } }] }, /faults\.0\.at: AURORA does not call at AUSYD/],
      [{ ...base, faults: [{ kind: 'link-drop', ship: 'AURORA', site: 'SINGAPORE', port: 'SGSIN', afterLinkUpMs: [400] }] }, /faults\.0\.site: AURORA has no link to SINGAPORE in links/],
      [{ ...base, links: [{ ship: 'AURORA', site: 'SINGAPORE', port: 'SGSIN' }], faults: [{ kind: 'link-drop', ship: 'AURORA', site: 'SINGAPORE', port: 'JPTYO', afterLinkUpMs: [400] }] }, /faults\.0\.port: the link AURORA → SINGAPORE is docked at SGSIN, not JPTYO/],
      [{ ...base, links: [{ ship: 'AURORA', site: 'SINGAPORE', port: 'SGSIN' }], faults: [{ kind: 'link-drop', ship: 'AURORA', site: 'SINGAPORE', port: 'SGSIN', afterLinkUpMs: [] }] }, /faults\.0\.afterLinkUpMs: /],
      [{ ...base, faults: [{ kind: 'power-cut', ship: 'AURORA' }] }, /faults\.0\.kind: /],
    ];
    for (const [document, message] of cases) {
      expect(() => parseScenario(document, 'fleet.yaml')).toThrow(ScenarioError);
      expect(() => parseScenario(document, 'fleet.yaml')).toThrow(message);
    }
  });

  it('the voyage takes its link windows and faults from the scenario', () => {
    const voyage = voyageScenario();
    expect(voyage.links.map((link) => [link.site, link.port ?? null, link.docked, link.coastal, link.elsewhere])).toEqual([
      ['TOKYO', 'JPTYO', 'docked', 'satellite', 'none'],
      ['SINGAPORE', 'SGSIN', 'docked', 'satellite', 'none'],
      ['SYDNEY', 'AUSYD', 'docked', 'satellite', 'none'],
      ['HQ', null, 'docked', 'satellite', 'satellite'],
    ]);
    expect(voyage.faults.map((fault) => fault.kind)).toEqual(['kill-gateway', 'link-drop']);
  });

  it('a port hears its unloaded containers ashore, the ship them aboard: each message once', () => {
    const scenario = { ...voyageScenario(), readingIntervalS: 600, shipReportIntervalS: 600 };
    const containerMessages = (messages: FleetMessage[]) => messages.filter((message) => message.kind === 'readings' || message.kind === 'events').map((message) => `${message.topic} ${message.payload}`);
    const all = new FleetModel(scenario);
    const everything = containerMessages(all.advanceTo(all.endMs));
    const parts = [new FleetModel(scenario, { onlyAboard: 'AURORA' }), new FleetModel(scenario, { onlyAshoreAt: 'SGSIN' }), new FleetModel(scenario, { onlyAshoreAt: 'AUSYD' })].map((model) => model.advanceTo(model.endMs));
    // A port hears no ships or manifests, and only containers unloaded there, after unloading.
    const singapore = parts[1]!;
    expect(singapore.every((message) => message.kind === 'readings')).toBe(true);
    expect(new Set(singapore.map((message) => message.topic.split('/')[2]))).toEqual(new Set(['Y01', 'Y02', 'Y03', 'Y04']));
    const unloaded = all.timeline.containers.find((container) => container.id === 'Y01')!.moves[0]!.unloadMs;
    expect(Math.min(...singapore.filter((message) => message.topic.includes('/Y01/')).map((message) => message.timeMs))).toBeGreaterThanOrEqual(unloaded);
    // Ashore at Tokyo before loading, nobody hears a container; otherwise each message exactly once.
    const heard = parts.flatMap(containerMessages);
    expect(new Set(heard).size).toBe(heard.length);
    const everythingSet = new Set(everything);
    expect(heard.filter((message) => !everythingSet.has(message)).slice(0, 3)).toEqual([]);
    const loadedMs = new Map(all.timeline.containers.map((container) => [container.id, container.moves[0]!.loadMs]));
    const heardSet = new Set(heard);
    const unheard = everything.filter((message) => !heardSet.has(message));
    expect(unheard.every((message) => (JSON.parse(message.slice(message.indexOf(' ') + 1)) as { ts: number }).ts < loadedMs.get(message.split('/')[2]!)!)).toBe(true);
  });

  it('reads YAML files, with ranges of container ids', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-scenario-'));
    try {
      const file = join(dir, 'fleet.yaml');
      writeFileSync(
        file,
        ['seed: 7', 'ships:', '  - id: SEA1', '    calls: [{port: SGSIN, dwellHours: 2}, {port: MYPKG, dwellHours: 2}]', 'containers:', '  - ids: C0001-C2000', '    owner: Acme', '    kind: reefer', '    moves: [{ship: SEA1, load: SGSIN, unload: MYPKG}]', ''].join('\n'),
      );
      const model = new FleetModel(loadScenarioFile(file));
      expect(model.containerIds).toHaveLength(2000);
      expect(model.containerIds.at(-1)).toBe('C2000');
      writeFileSync(file, 'ships: [\n');
      expect(() => loadScenarioFile(file)).toThrow(ScenarioError);
      // An unknown tag is refused, not read as the literal text (the yaml library only warns).
      writeFileSync(file, 'seed: !env SEED\n');
      expect(() => loadScenarioFile(file)).toThrow(new RegExp(`${file}: .*!env`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
