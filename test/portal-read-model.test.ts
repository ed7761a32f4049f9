/**
 * The portal's read model: replaying from zero gives the same state, shuffled and repeated
 * deliveries change nothing, a late record never rolls the latest state back, and what an
 * audience sees is exactly what its RecordFilter admits.
 */
import { describe, expect, it } from 'vitest';
import type { LogRecord, ReadLimits, RecordFilter, StreamSource, TopicReader } from '../core/index.js';
import { FleetModel, voyageScenario } from '../devices/fleet/index.js';
import { FLEET_TRACK_POINTS, PortalProjector, PortalReadModel, alertsView, containerList, containerView, fleetView, liveEventOf } from '../cloud/portal/index.js';

/** The voyage's messages as a site stores them (topic rules of config/aurora.yaml), every 10 simulated minutes. */
function voyageRecords(): LogRecord[] {
  const scenario = { ...voyageScenario(), readingIntervalS: 600, shipReportIntervalS: 600 };
  const next = new Map<string, number>();
  const records: LogRecord[] = [];
  for (const message of new FleetModel(scenario).advanceTo(Infinity)) {
    const [, kind, subject] = message.topic.split('/');
    const stream = kind!;
    const key = `${stream}/${subject}`;
    const offset = next.get(key) ?? 0;
    next.set(key, offset + 1);
    records.push({ origin: 'AURORA', stream, topic: subject!, offset, eventTimeMs: message.timeMs, ingestTimeMs: message.timeMs, headers: {}, payload: Buffer.from(message.payload) });
  }
  return records;
}

/**
 * A site's log for the views to read series records back from (the model keeps their
 * numbers only): each topic's records by offset.
 */
class MemoryTopics implements Pick<TopicReader, 'readTopic'> {
  /** Each topic's records in offset order. */
  private readonly topics = new Map<string, LogRecord[]>();
  reads = 0;

  constructor(records: Iterable<LogRecord> = []) {
    for (const record of records) this.add(record);
  }

  add(record: LogRecord): void {
    const key = `${record.stream}/${record.topic}`;
    let topic = this.topics.get(key);
    if (topic === undefined) this.topics.set(key, (topic = []));
    let at = topic.length;
    while (at > 0 && topic[at - 1]!.offset > record.offset) at -= 1;
    if (topic[at - 1]?.offset === record.offset) return;
    topic.splice(at, 0, record);
  }

  async readTopic(stream: string, topic: string, fromOffset: number, limits?: ReadLimits): Promise<LogRecord[]> {
    this.reads += 1;
    const held = this.topics.get(`${stream}/${topic}`) ?? [];
    let low = 0;
    let high = held.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (held[mid]!.offset < fromOffset) low = mid + 1;
      else high = mid;
    }
    return held.slice(low, low + (limits?.maxRecords ?? 1000));
  }
}

const records = voyageRecords();
const overboard: LogRecord = {
  origin: 'AURORA',
  stream: 'alerts',
  topic: 'Y07',
  offset: 0,
  eventTimeMs: records.at(-1)!.eventTimeMs - 86_400_000,
  ingestTimeMs: records.at(-1)!.eventTimeMs,
  headers: { 'alert-kind': 'overboard' },
  payload: Buffer.from(JSON.stringify({ kind: 'overboard', container: 'Y07', lastSeen: { ts: '2026-03-19T10:00:00.000Z', lat: -33.9, lon: 151.9 } })),
};
const all = [...records, overboard];
const log = new MemoryTopics(all);

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let index = out.length - 1; index > 0; index -= 1) {
    state = (state * 1103515245 + 12345) >>> 0;
    const other = state % (index + 1);
    [out[index], out[other]] = [out[other]!, out[index]!];
  }
  return out;
}

const everything: RecordFilter = { mayHold: () => true, admit: (record) => record };
/** A stand-in audience for the views: ToyCo's containers, readings only. */
const toyco: RecordFilter = {
  mayHold: (stream, topic) => stream !== 'ships' && topic.startsWith('Y'),
  admit: (record) => (record.stream !== 'ships' && record.topic.startsWith('Y') ? record : undefined),
};

describe('portal read model', () => {
  it('replaying from zero gives the same state, and shuffled, duplicated deliveries change nothing', () => {
    const first = new PortalReadModel({ reader: log });
    for (const record of all) first.apply(record);
    const again = new PortalReadModel({ reader: log });
    for (const record of all) again.apply(record);
    expect(again.snapshot()).toEqual(first.snapshot());

    const messy = new PortalReadModel({ reader: log });
    const duplicated = shuffled([...all, ...all.filter((_, index) => index % 3 === 0)], 7);
    for (const record of duplicated) messy.apply(record);
    expect(messy.applied).toBeGreaterThan(all.length);
    expect(messy.snapshot()).toEqual(first.snapshot());

    // Twice everything, again in another order.
    const twice = new PortalReadModel({ reader: log });
    for (const record of shuffled([...all, ...all], 11)) twice.apply(record);
    expect(twice.snapshot()).toEqual(first.snapshot());
  });

  it('a late or repeated record never rolls the latest state back', async () => {
    const lateLog = new MemoryTopics(all);
    const model = new PortalReadModel({ reader: lateLog });
    for (const record of all) model.apply(record);
    const before = (await containerView(model, everything, 'Y01', false))!;
    const early = records.find((record) => record.stream === 'containers' && record.topic === 'Y01')!;
    model.apply(early);
    const late = { ...early, offset: 999_999, eventTimeMs: early.eventTimeMs - 1 }; // arrives late, older
    lateLog.add(late); // the site's log holds what the model was given
    model.apply(late);
    expect(await containerView(model, everything, 'Y01', false)).toEqual(before);
  });

  it('downsamples the whole history into bounded series that keep the shock peaks', async () => {
    const model = new PortalReadModel({ maxBuckets: 100, reader: log });
    for (const record of all) model.apply(record);
    const y07 = model.containers.get('Y07')!;
    const kept = await model.read('containers', 'Y07', y07.series.points().map((point) => point.offset));
    expect(kept.length).toBeLessThanOrEqual(200);
    expect(kept.length).toBeGreaterThan(50);
    const peak = Math.max(...records.filter((r) => r.stream === 'containers' && r.topic === 'Y07').map((r) => (JSON.parse(r.payload.toString()) as { shockG?: number }).shockG ?? 0));
    expect(peak).toBeGreaterThan(5); // the overboard spike
    expect(Math.max(...kept.map((r) => (JSON.parse(r.payload.toString()) as { shockG?: number }).shockG ?? 0))).toBe(peak);
    // The series spans the voyage: from the first reading to (near) the last.
    const times = records.filter((r) => r.stream === 'containers' && r.topic === 'Y07').map((r) => r.eventTimeMs);
    expect(kept[0]!.eventTimeMs).toBe(Math.min(...times));
    expect(Math.max(...times) - kept.at(-1)!.eventTimeMs).toBeLessThanOrEqual(y07.series.widthMs);
  });

  it('shows an audience only what its filter admits', async () => {
    const model = new PortalReadModel({ reader: log });
    for (const record of all) model.apply(record);
    const ids = (await containerList(model, toyco)).map((view) => view.id);
    expect(ids).toEqual(['Y01', 'Y02', 'Y03', 'Y04', 'Y05', 'Y06', 'Y07', 'Y08', 'Y09', 'Y10']);
    expect((await containerList(model, everything)).map((view) => view.id)).toEqual(expect.arrayContaining(['B01', 'R01', 'Y07']));
    expect(await containerView(model, toyco, 'R01', true)).toBeUndefined();
    const fleet = (await fleetView(model, toyco)) as { ships: unknown[]; containers: { id: string }[] };
    expect(fleet.ships).toEqual([]);
    expect(fleet.containers.every((container) => container.id.startsWith('Y'))).toBe(true);
    expect(((await fleetView(model, everything)) as { ships: { id: string }[] }).ships.map((ship) => ship.id)).toEqual(['AURORA']);
    const y07 = (await containerView(model, toyco, 'Y07', true))!;
    expect(y07.status).toBe('lost overboard');
    expect((y07.alertList as { lastSeen: unknown }[])[0]!.lastSeen).toEqual({ ts: '2026-03-19T10:00:00.000Z', lat: -33.9, lon: 151.9 });
    const steps = (y07.timeline as { step: string }[]).map((entry) => entry.step);
    expect(steps.slice(0, 3)).toEqual(['booked', 'loaded', 'at sea']);
    expect(alertsView(model, toyco).map((alert) => alert.subject)).toEqual(['Y07']);
    // A projected form is what the views use: a filter that replaces the payload.
    const coarse: RecordFilter = {
      mayHold: (stream, topic) => stream === 'manifests' && topic === 'Y05',
      admit: (record) => (record.stream === 'manifests' && record.topic === 'Y05' ? { ...record, headers: {}, payload: Buffer.from(JSON.stringify({ status: 'in-transit', at: 'x' })) } : undefined),
    };
    const y05 = (await containerView(model, coarse, 'Y05', true))!;
    expect(y05.status).toBe('in-transit');
    expect(y05.series).toEqual([]);
    expect(JSON.stringify(y05)).not.toContain('ToyCo');
    expect(liveEventOf(toyco, records.find((r) => r.topic === 'R01')!)).toBeUndefined();
    expect(liveEventOf(toyco, records.find((r) => r.stream === 'containers' && r.topic === 'Y01')!)).toMatchObject({ type: 'reading', container: 'Y01' });
  });

  it('shares a bounded number of track points among the containers of a fleet answer, each ending at its latest position', async () => {
    const containers = 3000;
    const readings = 300;
    const startMs = Date.parse('2026-03-02T00:00:00Z');
    const recordOf = (topic: string, offset: number): LogRecord => {
      const eventTimeMs = startMs + offset * 600_000;
      const payload = Buffer.from(JSON.stringify({ ts: eventTimeMs, tempC: 4, lat: 10 + offset / 100, lon: 100 + Number(topic.slice(1)) / 100 }));
      return { origin: 'AURORA', stream: 'containers', topic, offset, eventTimeMs, ingestTimeMs: eventTimeMs, headers: {}, payload };
    };
    // The log makes its records again when read (900,000 of them held at once cost the test more than the model).
    const fleetLog: Pick<TopicReader, 'readTopic'> = {
      readTopic: async (_stream, topic, fromOffset, limits) =>
        Array.from({ length: Math.max(0, Math.min(readings, fromOffset + (limits?.maxRecords ?? 1000)) - fromOffset) }, (_unused, index) => recordOf(topic, fromOffset + index)),
    };
    const model = new PortalReadModel({ reader: fleetLog });
    for (let index = 0; index < containers; index += 1) {
      const topic = `C${String(index).padStart(5, '0')}`;
      for (let offset = 0; offset < readings; offset += 1) model.apply(recordOf(topic, offset));
    }
    const everything: RecordFilter = { mayHold: () => true, admit: (record) => record };
    const fleet = (await fleetView(model, everything)) as { containers: { id: string; lat: number; track: number[][] }[] };
    expect(fleet.containers).toHaveLength(containers);
    const points = fleet.containers.reduce((sum, container) => sum + container.track.length, 0);
    expect(points).toBeLessThanOrEqual(FLEET_TRACK_POINTS);
    expect(points).toBeGreaterThanOrEqual(containers * 2);
    for (const container of fleet.containers) {
      expect(container.lat).toBe(10 + (readings - 1) / 100);
      expect(container.track.at(-1)).toEqual([100 + Number(container.id.slice(1)) / 100, 10 + (readings - 1) / 100]);
      expect(container.track[0]![1]).toBe(10);
    }
    // One container alone gets its whole downsampled track.
    const one: RecordFilter = { mayHold: (_stream, topic) => topic === 'C00007', admit: (record) => (record.topic === 'C00007' ? record : undefined) };
    const alone = (await fleetView(model, one)) as { containers: { track: unknown[] }[] };
    expect(alone.containers[0]!.track.length).toBe(((await containerView(model, one, 'C00007', true))!.series as unknown[]).length);
  });

  it('shows a handoff of a container\'s topic as a "handed over" step after its unloading, never as a reading', async () => {
    const handoffLog = new MemoryTopics(records);
    const model = new PortalReadModel({ reader: handoffLog });
    for (const record of records) model.apply(record);
    const y01 = records.filter((record) => record.stream === 'containers' && record.topic === 'Y01');
    const unloaded = records.find((record) => record.stream === 'manifests' && record.topic === 'Y01' && record.payload.toString().includes('"unloaded"'))!;
    const handoff: LogRecord = {
      origin: 'AURORA',
      stream: 'containers',
      topic: 'Y01',
      offset: y01.length,
      eventTimeMs: unloaded.eventTimeMs + 60_000,
      ingestTimeMs: unloaded.eventTimeMs + 60_000,
      headers: { 'pc-handoff-to': 'SINGAPORE' },
      payload: Buffer.from(JSON.stringify({ handoff: { from: 'AURORA', to: 'SINGAPORE' } })),
    };
    handoffLog.add(handoff);
    model.apply(handoff);
    const everything: RecordFilter = { mayHold: () => true, admit: (record) => record };
    const view = (await containerView(model, everything, 'Y01', true))!;
    const timeline = view.timeline as { step?: string; from?: string; to?: string; at: string }[];
    const unloadedAt = timeline.findIndex((entry) => entry.step === 'unloaded');
    expect(unloadedAt).toBeGreaterThan(0);
    expect(timeline[unloadedAt + 1]).toEqual({ at: new Date(handoff.eventTimeMs).toISOString(), step: 'handed over', from: 'AURORA', to: 'SINGAPORE' });
    expect(view.status).toBe('unloaded at SGSIN');
    expect((view.latest as { offset: number }).offset).toBe(y01.at(-1)!.offset);
    expect((view.series as { offset: number }[]).some((point) => point.offset === handoff.offset)).toBe(false);
    // An audience given the manifests only sees no handoff.
    const manifestsOnly: RecordFilter = { mayHold: (stream) => stream === 'manifests', admit: (record) => (record.stream === 'manifests' ? record : undefined) };
    expect(((await containerView(model, manifestsOnly, 'Y01', true))!.timeline as { step?: string }[]).map((entry) => entry.step)).not.toContain('handed over');
  });

  it('keeps a series as numbers and judges the records read back from the log: a window starting mid-history', async () => {
    const reading = new MemoryTopics(all);
    const model = new PortalReadModel({ reader: reading });
    for (const record of all) model.apply(record);
    const y03 = model.containers.get('Y03')!;
    const points = y03.series.points();
    expect(points.length).toBeGreaterThan(50);
    // A point names a record (offset, event time) and notes its position; it holds no record.
    for (const point of points) expect(Object.keys(point).sort()).toEqual(['eventTimeMs', 'offset', 'position']);
    const history = records.filter((record) => record.stream === 'containers' && record.topic === 'Y03');
    for (const point of points) {
      const record = history.find((held) => held.offset === point.offset)!;
      expect(point.eventTimeMs).toBe(record.eventTimeMs);
      const body = JSON.parse(record.payload.toString()) as { lat?: number; lon?: number };
      expect(point.position).toEqual(body.lat === undefined ? undefined : [body.lon, body.lat]);
    }

    // A viewer whose custody starts in the middle: the filter is asked about the log's own record objects.
    const fromMs = history[Math.floor(history.length / 2)]!.eventTimeMs;
    const judged: LogRecord[] = [];
    const window: RecordFilter = {
      mayHold: (_stream, topic) => topic === 'Y03',
      admit: (record) => {
        judged.push(record);
        return record.eventTimeMs >= fromMs ? record : undefined;
      },
    };
    const readsBefore = reading.reads;
    const view = (await containerView(model, window, 'Y03', true))!;
    const series = view.series as { at: string; offset: number }[];
    const kept = new Set([...points.map((point) => point.offset), ...y03.recent.records.map((record) => record.offset)]);
    const expected = history.filter((record) => kept.has(record.offset) && record.eventTimeMs >= fromMs).map((record) => record.offset);
    expect(series.map((point) => point.offset).sort((l, r) => l - r)).toEqual(expected.sort((l, r) => l - r));
    expect(series.length).toBeGreaterThan(10);
    const logged = new Set<LogRecord>(all);
    expect(judged.filter((record) => record.stream === 'containers').every((record) => logged.has(record))).toBe(true);
    // Neighbouring offsets are read together: fewer reads than points.
    expect(reading.reads - readsBefore).toBeGreaterThan(0);
    expect(reading.reads - readsBefore).toBeLessThanOrEqual(points.length);
    // The map, too: every track point is a position of an admitted record.
    const fleet = (await fleetView(model, window)) as { containers: { id: string; at: string; track: [number, number][] }[] };
    expect(fleet.containers.map((container) => container.id)).toEqual(['Y03']);
    const admittedPositions = new Set(history.filter((record) => record.eventTimeMs >= fromMs).map((record) => {
      const body = JSON.parse(record.payload.toString()) as { lat?: number; lon?: number };
      return `${body.lon},${body.lat}`;
    }));
    expect(fleet.containers[0]!.track.length).toBeGreaterThan(1);
    for (const [lon, lat] of fleet.containers[0]!.track) expect(admittedPositions.has(`${lon},${lat}`)).toBe(true);

    // A second look reads nothing more from the log (the records read back are cached) and is
    // judged again: a narrower window shows less.
    const readsCached = reading.reads;
    const laterMs = history[Math.floor((history.length * 3) / 4)]!.eventTimeMs;
    const narrower: RecordFilter = { mayHold: (_stream, topic) => topic === 'Y03', admit: (record) => (record.eventTimeMs >= laterMs ? record : undefined) };
    const again = (await containerView(model, narrower, 'Y03', true))!;
    expect(reading.reads).toBe(readsCached);
    expect(model.cacheHits).toBeGreaterThan(0);
    const seriesAgain = again.series as { at: string }[];
    expect(seriesAgain.length).toBeGreaterThan(0);
    expect(seriesAgain.length).toBeLessThan(series.length);
    expect(seriesAgain.every((point) => Date.parse(point.at) >= laterMs)).toBe(true);
    // Without a cache every look reads again.
    const uncached = new PortalReadModel({ reader: reading, cacheRecords: 0 });
    for (const record of all) uncached.apply(record);
    const readsUncached = reading.reads;
    await containerView(uncached, window, 'Y03', true);
    const firstLook = reading.reads - readsUncached;
    await containerView(uncached, window, 'Y03', true);
    expect(firstLook).toBeGreaterThan(0);
    expect(reading.reads - readsUncached).toBe(2 * firstLook);
    expect(uncached.cacheHits).toBe(0);
  });

  it('leaves out a series point whose record the log no longer holds (retention), and says when there is no log to read', async () => {
    const trimmed = new MemoryTopics(all.filter((record) => !(record.stream === 'containers' && record.topic === 'Y04' && record.offset < 100)));
    const model = new PortalReadModel({ reader: trimmed });
    for (const record of all) model.apply(record);
    expect(model.containers.get('Y04')!.series.points().some((point) => point.offset < 100)).toBe(true);
    const view = (await containerView(model, everything, 'Y04', true))!;
    const offsets = (view.series as { offset: number }[]).map((point) => point.offset);
    expect(offsets.length).toBeGreaterThan(10);
    expect(offsets.every((offset) => offset >= 100)).toBe(true);

    const blind = new PortalReadModel();
    for (const record of all) blind.apply(record);
    // A list needs only the latest records, held whole; a container's page needs the log.
    expect((await containerList(blind, everything)).length).toBeGreaterThan(10);
    await expect(containerView(blind, everything, 'Y04', true)).rejects.toMatchObject({ code: 'PORTAL_RECORDS_UNAVAILABLE' });
  });

  it('lets the event loop serve requests while the projector catches up on a log that reads synchronously', async () => {
    const pages = 200;
    const pageRecords = 10;
    let pagesRead = 0;
    // Like the embedded log: every read's promise is settled at once.
    const source: StreamSource = {
      readStream: async (stream, afterPosition) => {
        if (stream !== 'containers' || afterPosition >= pages * pageRecords) return { records: [], nextPosition: afterPosition };
        pagesRead += 1;
        const records = Array.from({ length: pageRecords }, (_unused, index) => {
          const offset = afterPosition + index;
          return { origin: 'AURORA', stream, topic: 'C1', offset, eventTimeMs: offset * 60_000, ingestTimeMs: offset * 60_000, headers: {}, payload: Buffer.from(JSON.stringify({ tempC: 4 })) };
        });
        return { records, nextPosition: afterPosition + pageRecords };
      },
      onDurable: () => () => undefined,
    };
    const projector = new PortalProjector({ source, pageRecords, pollIntervalMs: 3_600_000 });
    const caughtUp = projector.start();
    const readWhenServed = await new Promise<number>((resolve) => setImmediate(() => resolve(pagesRead)));
    await caughtUp;
    projector.stop();
    expect(pagesRead).toBe(pages);
    expect(readWhenServed).toBeLessThan(pages);
    expect(projector.model.applied).toBe(pages * pageRecords);
  });
});
