import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LogRecord, NewRecord } from '../core/index.js';
import { DetectorRunner, FleetDetectors, detectorCursorName, type AlertDraft } from '../edge/detectors/index.js';
import { SqliteLog } from '../edge/log/index.js';
import { FleetModel, parseScenario, voyageScenario, type FleetMessage } from '../devices/fleet/index.js';
import { distanceNm } from '../devices/sea-lanes/index.js';

const HOUR_MS = 3_600_000;

/** What the gateway's default topic rules make of a device message. */
function asNewRecord(message: FleetMessage): NewRecord {
  const [, level1, id] = message.topic.split('/') as [string, string, string];
  return { stream: level1, topic: id, eventTimeMs: message.timeMs, payload: Buffer.from(message.payload) };
}

function asLogRecord(message: FleetMessage, offset: number): LogRecord {
  const record = asNewRecord(message);
  return { origin: 'AURORA', stream: record.stream, topic: record.topic, offset, eventTimeMs: message.timeMs, ingestTimeMs: message.timeMs, headers: {}, payload: record.payload };
}

describe('fleet detectors over the voyage', () => {
  it('raise Y07 overboard with its last-seen position, B04’s and B02’s temperature excursions, B02’s door at sea, and nothing else', () => {
    const model = new FleetModel(voyageScenario());
    const messages = model.advanceTo(Infinity);
    const detectors = new FleetDetectors();
    const alerts: AlertDraft[] = [];
    messages.forEach((message, index) => {
      alerts.push(...detectors.observe(asLogRecord(message, index)));
      alerts.push(...detectors.checkSilences());
    });
    expect(alerts.map((alert) => `${alert.kind} ${alert.container}`).sort()).toEqual([
      'door-open-at-sea B02',
      'overboard Y07',
      'temperature-excursion B02',
      'temperature-excursion B04',
    ]);
    const overboard = alerts.find((alert) => alert.kind === 'overboard')!;
    const y07 = messages.filter((message) => message.topic.startsWith('bigblue/containers/Y07/')).map((message) => JSON.parse(message.payload) as { ts: number; lat?: number; lon?: number });
    const lastReading = y07.filter((reading) => reading.lat !== undefined).at(-1)!;
    const lastSeen = overboard.body.lastSeen as { ts: string; lat: number; lon: number };
    expect(Date.parse(lastSeen.ts)).toBe(y07.at(-1)!.ts);
    expect(distanceNm(lastSeen, { lat: lastReading.lat!, lon: lastReading.lon! })).toBeLessThan(0.01);
    const overboardAt = model.timeline.ships.get('AURORA')!.callAt('AUSYD').arriveMs - 6 * HOUR_MS;
    expect(overboard.body.shockAt).toBe(new Date(overboardAt).toISOString());
    // Raised once it had been silent 5 minutes, at the next ship report: within a minute of that.
    expect(overboard.timeMs - y07.at(-1)!.ts).toBeGreaterThanOrEqual(5 * 60_000);
    expect(overboard.timeMs - y07.at(-1)!.ts).toBeLessThan(6 * 60_000 + 1);
    expect(overboard.timeMs - overboardAt).toBeLessThan(17 * 60_000);
    expect(overboard.body.separationNm as number).toBeGreaterThan(1);
    const failedAt = model.timeline.ships.get('AURORA')!.callAt('SGSIN').departMs + 40 * HOUR_MS;
    const b04 = alerts.find((alert) => alert.kind === 'temperature-excursion' && alert.container === 'B04')!;
    expect(b04.timeMs - failedAt).toBeGreaterThan(30 * 60_000);
    expect(b04.timeMs - failedAt).toBeLessThan(12 * HOUR_MS);
  });

  it('ignore a hard knock that does not part the container from the ship, and unreadable records', () => {
    const detectors = new FleetDetectors();
    const base = { origin: 'AURORA', offset: 0, ingestTimeMs: 0, headers: {} };
    const feed = (stream: string, topic: string, timeMs: number, body: unknown) =>
      detectors.observe({ ...base, stream, topic, eventTimeMs: timeMs, payload: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)) });
    feed('manifests', 'K01', 0, { event: 'loaded', container: 'K01', ship: 'SEA1' });
    const alerts: AlertDraft[] = [];
    for (let minute = 0; minute < 120; minute += 1) {
      const t = minute * 60_000;
      const ship = { lat: -10 + minute * 0.005, lon: 140 };
      feed('ships', 'SEA1', t, { ts: t, ...ship, status: 'at-sea' });
      // A 9 g knock at minute 10, then it keeps reporting with the ship until minute 60, then silence.
      if (minute <= 60) alerts.push(...feed('containers', 'K01', t + 1, { ts: t + 1, ...ship, shockG: minute === 10 ? 9 : 0.2, door: 'closed' }));
      alerts.push(...detectors.checkSilences());
    }
    // A record on another clock (an access custody record stamped by an operator today) does
    // not make anyone look silent.
    feed('manifests', 'custody', Date.parse('2026-11-22T00:00:00Z'), { event: 'custody.assigned', container: 'K01' });
    expect(detectors.checkSilences()).toEqual([]);
    expect(feed('containers', 'K01', 130 * 60_000, 'not json')).toEqual([]);
    expect(detectors.unreadable).toBe(1);
    expect(alerts).toEqual([]);
  });
});

describe('detector runner on a real log', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('appends each alert once, durably, and not again after a restart or a replay from zero', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-detectors-'));
    dirs.push(dir);
    const scenario = parseScenario({
      name: 'short',
      seed: 3,
      ships: [{ id: 'SEA1', speedKnots: 16, calls: [{ port: 'SGSIN', dwellHours: 4 }, { port: 'MYPKG', dwellHours: 2 }] }],
      containers: [{ ids: 'K01-K04', owner: 'Acme', kind: 'reefer', setpointC: -20, moves: [{ ship: 'SEA1', load: 'SGSIN', unload: 'MYPKG' }] }],
      events: [
        { kind: 'overboard', container: 'K02', at: { ship: 'SEA1', beforeArrivalAt: 'MYPKG', hours: 3 } },
        { kind: 'door-open', container: 'K03', at: { ship: 'SEA1', afterDepartureFrom: 'SGSIN', hours: 1 }, minutes: 10 },
      ],
    });
    const path = join(dir, 'log.sqlite');
    let log = SqliteLog.open({ siteId: 'SEA1', path });
    const model = new FleetModel(scenario);
    let runner = new DetectorRunner({ source: log, appender: log, pageRecords: 500 });
    await runner.start();
    // The gateway's appends, in bursts, while the runner follows.
    const messages = model.advanceTo(Infinity);
    for (let index = 0; index < messages.length; index += 250) await log.append(messages.slice(index, index + 250).map(asNewRecord));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await runner.idle();
    const alertsOf = async (topic: string) => log.readTopic('alerts', topic, 0, { maxRecords: 100 });
    const kinds = async () => {
      const all: string[] = [];
      for (const id of ['K01', 'K02', 'K03', 'K04']) for (const record of await alertsOf(id)) all.push(`${record.headers['alert-kind']} ${id}`);
      return all.sort();
    };
    expect(await kinds()).toEqual(['door-open-at-sea K03', 'overboard K02', 'temperature-excursion K03']);
    const [overboard] = await alertsOf('K02');
    expect(JSON.parse(Buffer.from(overboard!.payload).toString())).toMatchObject({ kind: 'overboard', container: 'K02', ship: 'SEA1' });
    expect(await log.getCursor(detectorCursorName('containers'))).toBeGreaterThan(0);
    await runner.close();
    await log.close();

    // Restart: the rewind replays recent records; nothing is raised twice.
    log = SqliteLog.open({ siteId: 'SEA1', path });
    runner = new DetectorRunner({ source: log, appender: log, rewindRecords: 100_000 });
    await runner.start();
    await runner.idle();
    expect(await kinds()).toEqual(['door-open-at-sea K03', 'overboard K02', 'temperature-excursion K03']);
    expect(runner.raised).toBe(0);
    await runner.close();
    await log.close();
  });

  it('commits its cursors at most once per interval while records keep coming, and all of them when idle', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-detectors-'));
    dirs.push(dir);
    const log = SqliteLog.open({ siteId: 'SEA1', path: join(dir, 'log.sqlite') });
    const commits: [string, number][] = [];
    // The log as the runner's source, counting the cursor writes (each one an fsync on the site's main thread).
    const source = new Proxy(log, {
      get(target, property, receiver) {
        if (property === 'commitCursor') {
          return async (name: string, position: number) => {
            commits.push([name, position]);
            await target.commitCursor(name, position);
          };
        }
        const value = Reflect.get(target, property, receiver) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const runner = new DetectorRunner({ source, appender: log, cursorCommitIntervalMs: 60_000 });
    await runner.start();
    const reading = (n: number): NewRecord => ({ stream: 'containers', topic: `C${n % 5}`, eventTimeMs: 1_700_000_000_000 + n * 1000, payload: Buffer.from(JSON.stringify({ tempC: 4 })) });
    // Forty group commits, each followed by a pass of the runner.
    for (let n = 0; n < 40; n += 1) {
      await log.append([reading(n)]);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The first pass commits (nothing had been for a whole interval); the rest wait for it to pass.
    expect(commits.length).toBeLessThanOrEqual(1);
    await runner.idle();
    const position = runner.stats().positions.containers!;
    expect(position).toBeGreaterThan(0);
    expect(await log.getCursor(detectorCursorName('containers'))).toBe(position);
    // Nothing new: idle again writes nothing.
    const before = commits.length;
    await runner.idle();
    expect(commits.length).toBe(before);
    await runner.close();
    await log.close();
  });
});
