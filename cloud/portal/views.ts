/**
 * What one audience sees of the read model. Every record goes through the audience's
 * `RecordFilter` (the access policy) and only its admitted form is used: a record not
 * admitted contributes nothing, a projected one (consignee status, port movements) only its
 * projection. Nothing here decides who may see what.
 */
import type { LogRecord, RecordFilter } from '../../core/index.js';
import { HANDOFF_HEADER } from '../../core/writership.js';
import { bodyOf, newer, positionOf, type ContainerModel, type PortalReadModel, type SeriesPoint } from './read-model.js';

type Json = Record<string, unknown>;

const iso = (ms: number) => new Date(ms).toISOString();

function admitted(filter: RecordFilter, records: Iterable<LogRecord>): LogRecord[] {
  const out: LogRecord[] = [];
  for (const record of records) {
    const seen = filter.admit(record);
    if (seen !== undefined) out.push(seen);
  }
  return out;
}

const pick = (body: Json, keys: readonly string[]): Json => Object.fromEntries(keys.filter((key) => body[key] !== undefined).map((key) => [key, body[key]]));

const READING_FIELDS = ['tempC', 'setpointC', 'humidityPct', 'door', 'shockG', 'batteryPct', 'lat', 'lon', 'compressor'] as const;

/** A reading as the pages use it. */
export function readingOf(record: LogRecord, body: Json = bodyOf(record) ?? {}): Json {
  return { at: iso(record.eventTimeMs), offset: record.offset, ...pick(body, [...READING_FIELDS, 'event']) };
}

/** A manifests record as a timeline entry, in whichever form the audience was given. */
export function timelineEntryOf(record: LogRecord, body: Json = bodyOf(record) ?? {}): Json {
  const step = typeof body.event === 'string' ? body.event : typeof body.type === 'string' ? body.type : undefined;
  return {
    at: iso(record.eventTimeMs),
    offset: record.offset,
    ...(step === undefined ? {} : { step }),
    ...pick(body, ['status', 'port', 'ship', 'from', 'to', 'owner', 'cargo', 'voyage', 'container']),
  };
}

export function alertOf(record: LogRecord): Json {
  const body = bodyOf(record) ?? {};
  return {
    id: `${record.origin}/${record.topic}/${record.offset}`,
    subject: record.topic,
    at: iso(typeof body.ts === 'number' && Number.isFinite(body.ts) ? body.ts : record.eventTimeMs),
    kind: body.kind ?? record.headers['alert-kind'] ?? 'alert',
    ...pick(body, ['container', 'ship', 'lastSeen', 'shockG', 'shockAt', 'separationNm', 'tempC', 'setpointC', 'since', 'lat', 'lon', 'silentForMs', 'lastReading', 'stream', 'topic']),
  };
}

/**
 * The kept history of a container (series points and the latest records) as records, once
 * each by offset, in (event time, offset) order: the latest ones are held whole, the others
 * are read back from the log. Not yet admitted.
 */
async function historyOf(model: PortalReadModel, container: ContainerModel): Promise<LogRecord[]> {
  const recent = container.recent.records;
  const held = new Set(recent.map((record) => record.offset));
  const wanted = container.series.points().filter((point) => !held.has(point.offset)).map((point) => point.offset);
  const points = new Map<number, LogRecord>();
  for (const record of [...(await model.read('containers', container.id, wanted)), ...recent]) points.set(record.offset, record);
  return [...points.values()].sort((l, r) => (newer(l, r) ? 1 : -1));
}

/** Everything of one container this audience may see, or undefined when nothing (= does not exist). */
export async function containerView(model: PortalReadModel, filter: RecordFilter, id: string, detail: boolean): Promise<Json | undefined> {
  const container: ContainerModel | undefined = model.containers.get(id);
  const mayReadings = filter.mayHold('containers', id);
  const mayManifests = filter.mayHold('manifests', id);
  const mayAlerts = filter.mayHold('alerts', id);
  if (container === undefined && !mayAlerts) return undefined;
  if (!mayReadings && !mayManifests && !mayAlerts) return undefined;

  const recent = container === undefined || !mayReadings ? [] : admitted(filter, container.recent.records);
  // A list shows the latest reading only: the whole history is read (from the log) for a
  // container's own page, or when none of its latest records is admitted.
  const history = container === undefined || !mayReadings ? [] : detail || recent.length === 0 ? admitted(filter, await historyOf(model, container)) : recent;
  const ordered = [...history].sort((l, r) => (newer(l, r) ? 1 : -1));
  // Payloads are parsed only where an answer needs them (a parse costs microseconds, and a
  // list of thousands of containers would otherwise parse every record it holds).
  let latest: LogRecord | undefined;
  let latestBody: Json = {};
  for (let index = ordered.length - 1; index >= 0 && latest === undefined; index -= 1) {
    const body = bodyOf(ordered[index]!);
    if (typeof body?.event !== 'string') [latest, latestBody] = [ordered[index]!, body ?? {}];
  }
  const manifests = container === undefined || !mayManifests ? [] : admitted(filter, [...container.manifests.values()].sort((l, r) => (newer(l, r) ? 1 : -1)));
  const alerts = mayAlerts ? admitted(filter, [...(model.alertsByTopic.get(id)?.values() ?? [])]) : [];
  if (latest === undefined && manifests.length === 0 && alerts.length === 0) return undefined;

  const manifestBodies = manifests.map((record) => bodyOf(record) ?? {});
  const timeline = manifests.map((record, index) => timelineEntryOf(record, manifestBodies[index]));
  // "At sea": the ship's departure from the port the container was loaded at, shown with
  // (and only with) the admitted `loaded` record it follows from.
  // Handoffs of the container's topic (its next writer, e.g. the port that unloaded it), in
  // the form the audience was given: a projection without the header is no handoff to it.
  const handoffs = container === undefined || !mayReadings ? [] : admitted(filter, container.handoffs.values());
  const handedOver: Json[] = [];
  for (const record of handoffs) {
    const to = record.headers[HANDOFF_HEADER];
    if (to === undefined) continue;
    const from = (bodyOf(record)?.handoff as { from?: unknown } | undefined)?.from;
    handedOver.push({ at: iso(record.eventTimeMs), step: 'handed over', from: typeof from === 'string' ? from : record.origin, to });
  }
  const steps: Json[] = [];
  const entries = [...timeline, ...handedOver].sort((l, r) => Date.parse(l.at as string) - Date.parse(r.at as string));
  for (const entry of entries) {
    steps.push(entry);
    if (entry.step === 'loaded' && typeof entry.ship === 'string' && typeof entry.port === 'string') {
      const departed = model.ships.get(entry.ship)?.lastBerthed.get(entry.port);
      if (departed !== undefined && departed >= Date.parse(entry.at as string)) steps.push({ at: iso(departed), step: 'at sea', ship: entry.ship, from: entry.port });
    }
  }
  const overboard = alerts.map(alertOf).filter((alert) => alert.kind === 'overboard');
  const lastEntry = timeline.at(-1);
  const status =
    overboard.length > 0
      ? 'lost overboard'
      : typeof lastEntry?.status === 'string'
        ? lastEntry.status
        : lastEntry?.step === 'unloaded'
          ? `unloaded at ${String(lastEntry.port ?? '')}`.trim()
          : lastEntry?.step === 'loaded'
            ? `aboard ${String(lastEntry.ship ?? '')}`.trim()
            : lastEntry?.step === 'booked'
              ? 'booked'
              : latest === undefined
                ? 'unknown'
                : 'reporting';
  const owner = manifestBodies.map((body) => body.owner).find((value) => typeof value === 'string');
  const view: Json = {
    id,
    status,
    ...(owner === undefined ? {} : { owner }),
    ...(latest === undefined ? {} : { latest: readingOf(latest, latestBody) }),
    alerts: alerts.length,
  };
  if (!detail) return view;
  return {
    ...view,
    timeline: steps,
    alertList: alerts.map(alertOf),
    series: ordered.map((record) => readingOf(record)),
  };
}

export async function containerList(model: PortalReadModel, filter: RecordFilter): Promise<Json[]> {
  const ids = new Set([...model.containers.keys(), ...[...model.alertsByTopic.keys()].filter((topic) => !model.ships.has(topic))]);
  const out: Json[] = [];
  for (const id of [...ids].sort()) {
    const view = await containerView(model, filter, id, false);
    if (view !== undefined) out.push(view);
  }
  return out;
}

/**
 * Points of container tracks in one fleet answer, shared among the containers it shows: a
 * customer with a few containers gets each one's whole downsampled track, carrier operations
 * with thousands a coarser one each, and the answer stays a few hundred KB (at 2,000
 * containers with every track whole it was 480,000 points, and the page could not draw it).
 */
export const FLEET_TRACK_POINTS = 20_000;

/** At most `count` records of a time-ordered list, evenly spaced, the last always kept. */
function spread<T>(records: readonly T[], count: number): T[] {
  if (records.length <= count) return [...records];
  // One point is the last (a step of (length - 1) / 0 would pick index NaN: over 10,000 containers).
  if (count < 2) return count < 1 ? [] : [records.at(-1)!];
  const out: T[] = [];
  const step = (records.length - 1) / (count - 1);
  for (let index = 0; index < count; index += 1) out.push(records[Math.round(index * step)]!);
  return out;
}

/** Ships (positions, track) and containers (latest position, track) this audience may see. */
export async function fleetView(model: PortalReadModel, filter: RecordFilter): Promise<Json> {
  const ships: Json[] = [];
  for (const ship of [...model.ships.values()].sort((l, r) => (l.id < r.id ? -1 : 1))) {
    if (!filter.mayHold('ships', ship.id)) continue;
    const positions = admitted(filter, ship.positions.records);
    const latest = positions.at(-1);
    if (latest === undefined) continue;
    const points = ship.track.points().map((point) => point.offset);
    const track = admitted(filter, await model.read('ships', ship.id, points)).map((record) => {
      const body = bodyOf(record) ?? {};
      return [body.lon, body.lat];
    });
    const body = bodyOf(latest) ?? {};
    ships.push({ id: ship.id, at: iso(latest.eventTimeMs), ...pick(body, ['lat', 'lon', 'status', 'port', 'speedKnots', 'headingDeg', 'heading', 'speed']), track });
  }
  const shown = [...model.containers.values()].filter((container) => filter.mayHold('containers', container.id)).sort((l, r) => (l.id < r.id ? -1 : 1));
  const pointsEach = Math.max(2, Math.floor(FLEET_TRACK_POINTS / Math.max(1, shown.length)));
  const containers: Json[] = [];
  for (const container of shown) {
    const view = await containerTrack(model, filter, container, pointsEach);
    if (view === undefined) continue;
    const lost = admitted(filter, [...(model.alertsByTopic.get(container.id)?.values() ?? [])]).some((record) => bodyOf(record)?.kind === 'overboard');
    containers.push({ id: container.id, at: iso(view.latest.eventTimeMs), lat: view.position[1], lon: view.position[0], ...(lost ? { status: 'lost overboard' } : {}), track: view.track });
  }
  return { ships, containers };
}

/**
 * A container's latest admitted position and a track of at most `pointsEach` admitted
 * positions before it. The kept points' noted positions only choose which records to read
 * (those with a position, evenly spread); each chosen record is read from the log (or is one
 * of the latest, held whole) and passed through the filter, and only its admitted form's
 * position is drawn. A point not admitted is left out of the track.
 */
async function containerTrack(
  model: PortalReadModel,
  filter: RecordFilter,
  container: ContainerModel,
  pointsEach: number,
): Promise<{ latest: LogRecord; position: readonly [number, number]; track: (readonly [number, number])[] } | undefined> {
  // The kept points, once each by offset (a latest record may also be a series point), in order.
  const whole = new Map<number, LogRecord>();
  for (const record of container.recent.records) whole.set(record.offset, record);
  const byOffset = new Map<number, SeriesPoint>();
  for (const point of container.series.points()) byOffset.set(point.offset, point);
  for (const record of container.recent.records) byOffset.set(record.offset, { offset: record.offset, eventTimeMs: record.eventTimeMs, position: positionOf(record) });
  const ordered = [...byOffset.values()].filter((point) => point.position !== undefined);
  ordered.sort((l, r) => (l.eventTimeMs !== r.eventTimeMs ? l.eventTimeMs - r.eventTimeMs : l.offset - r.offset));
  const recordsOf = async (points: readonly SeriesPoint[]): Promise<LogRecord[]> => {
    const fromLog = await model.read('containers', container.id, points.filter((point) => !whole.has(point.offset)).map((point) => point.offset));
    const read = new Map(fromLog.map((record) => [record.offset, record]));
    return points.flatMap((point) => whole.get(point.offset) ?? read.get(point.offset) ?? []);
  };
  // The latest admitted record with a position: newest first, a few at a time.
  let latestIndex = ordered.length;
  let latest: LogRecord | undefined;
  let position: readonly [number, number] | undefined;
  while (latest === undefined && latestIndex > 0) {
    const from = Math.max(0, latestIndex - 4);
    const candidates = await recordsOf(ordered.slice(from, latestIndex));
    for (let index = candidates.length - 1; index >= 0 && latest === undefined; index -= 1) {
      const seen = filter.admit(candidates[index]!);
      const at = seen === undefined ? undefined : positionOf(seen);
      if (seen !== undefined && at !== undefined) [latest, position] = [seen, at];
    }
    if (latest === undefined) latestIndex = from;
    else latestIndex = from + ordered.slice(from, latestIndex).findIndex((point) => point.offset === latest!.offset);
  }
  if (latest === undefined || position === undefined) return undefined;
  const track: (readonly [number, number])[] = [];
  for (const record of await recordsOf(spread(ordered.slice(0, latestIndex), pointsEach - 1))) {
    const seen = filter.admit(record);
    const point = seen === undefined ? undefined : positionOf(seen);
    if (point !== undefined) track.push(point);
  }
  track.push(position);
  return { latest, position, track };
}

export function alertsView(model: PortalReadModel, filter: RecordFilter): Json[] {
  const alerts = admitted(
    filter,
    [...model.alerts.values()].filter((record) => filter.mayHold('alerts', record.topic)),
  );
  return alerts.sort((l, r) => r.eventTimeMs - l.eventTimeMs).map(alertOf);
}

/** Every manifests record the audience may see, in the form it may see it (port authority, consignee, customer, ops). */
export function movementsView(model: PortalReadModel, filter: RecordFilter): Json[] {
  const out: { at: number; entry: Json }[] = [];
  for (const container of model.containers.values()) {
    if (container.manifests.size === 0 || !filter.mayHold('manifests', container.id)) continue;
    for (const record of admitted(filter, container.manifests.values())) out.push({ at: record.eventTimeMs, entry: { container: container.id, ...timelineEntryOf(record) } });
  }
  return out.sort((l, r) => r.at - l.at).map(({ entry }) => entry);
}

/** A live record as the pages get it, in the admitted form; undefined when not admitted. */
export function liveEventOf(filter: RecordFilter, record: LogRecord): Json | undefined {
  if (!filter.mayHold(record.stream, record.topic)) return undefined;
  const seen = filter.admit(record);
  if (seen === undefined) return undefined;
  switch (seen.stream) {
    case 'containers':
      return { type: 'reading', container: seen.topic, ...readingOf(seen) };
    case 'manifests':
      return { type: 'movement', container: seen.topic, ...timelineEntryOf(seen) };
    case 'alerts':
      return { type: 'alert', ...alertOf(seen) };
    case 'ships': {
      const body = bodyOf(seen) ?? {};
      return typeof body.lat === 'number' ? { type: 'ship', ship: seen.topic, at: iso(seen.eventTimeMs), ...pick(body, ['lat', 'lon', 'status', 'port']) } : undefined;
    }
    default:
      return undefined;
  }
}
