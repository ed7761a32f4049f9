/**
 * What one audience sees of the read model. Every record goes through the audience's
 * `RecordFilter` (the access policy) and only its admitted form is used: a record not
 * admitted contributes nothing, a projected one (consignee status, port movements) only its
 * projection. Nothing here decides who may see what.
 */
import type { LogRecord, RecordFilter } from '../../core/index.js';
import { HANDOFF_HEADER } from '../../core/writership.js';
import { bodyOf, newer, positionOf, type ContainerModel, type PortalReadModel } from './read-model.js';

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

/** Everything of one container this audience may see, or undefined when nothing (= does not exist). */
export function containerView(model: PortalReadModel, filter: RecordFilter, id: string, detail: boolean): Json | undefined {
  const container: ContainerModel | undefined = model.containers.get(id);
  const mayReadings = filter.mayHold('containers', id);
  const mayManifests = filter.mayHold('manifests', id);
  const mayAlerts = filter.mayHold('alerts', id);
  if (container === undefined && !mayAlerts) return undefined;
  if (!mayReadings && !mayManifests && !mayAlerts) return undefined;

  const recent = container === undefined || !mayReadings ? [] : admitted(filter, container.recent.records);
  const series = container === undefined || !mayReadings || (!detail && recent.length > 0) ? [] : admitted(filter, container.series.records());
  const points = new Map<number, LogRecord>();
  for (const record of [...series, ...recent]) points.set(record.offset, record);
  // Payloads are parsed only where an answer needs them (a parse costs microseconds, and a
  // list of thousands of containers would otherwise parse every record it holds).
  const ordered = [...points.values()].sort((l, r) => (newer(l, r) ? 1 : -1));
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

export function containerList(model: PortalReadModel, filter: RecordFilter): Json[] {
  const ids = new Set([...model.containers.keys(), ...[...model.alertsByTopic.keys()].filter((topic) => !model.ships.has(topic))]);
  const out: Json[] = [];
  for (const id of [...ids].sort()) {
    const view = containerView(model, filter, id, false);
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
  const out: T[] = [];
  const step = (records.length - 1) / (count - 1);
  for (let index = 0; index < count; index += 1) out.push(records[Math.round(index * step)]!);
  return out;
}

/** Ships (positions, track) and containers (latest position, track) this audience may see. */
export function fleetView(model: PortalReadModel, filter: RecordFilter): Json {
  const ships: Json[] = [];
  for (const ship of [...model.ships.values()].sort((l, r) => (l.id < r.id ? -1 : 1))) {
    if (!filter.mayHold('ships', ship.id)) continue;
    const positions = admitted(filter, ship.positions.records);
    const latest = positions.at(-1);
    if (latest === undefined) continue;
    const track = admitted(filter, ship.track.records()).map((record) => {
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
    // A recent record may also be in the series: once each, by offset.
    const points = new Map<number, LogRecord>();
    for (const record of admitted(filter, [...container.series.records(), ...container.recent.records])) points.set(record.offset, record);
    const ordered = [...points.values()].sort((l, r) => (newer(l, r) ? 1 : -1));
    // The latest record with a position, and an even spread of the others before it.
    let latestIndex = ordered.length - 1;
    let latestPosition: readonly [number, number] | undefined;
    for (; latestIndex >= 0 && latestPosition === undefined; latestIndex -= 1) latestPosition = positionOf(ordered[latestIndex]!);
    if (latestPosition === undefined) continue;
    latestIndex += 1;
    const latest = ordered[latestIndex]!;
    const track: (readonly [number, number])[] = [];
    for (const record of spread(ordered.slice(0, latestIndex), pointsEach - 1)) {
      const point = positionOf(record);
      if (point !== undefined) track.push(point);
    }
    track.push(latestPosition);
    const lost = admitted(filter, [...(model.alertsByTopic.get(container.id)?.values() ?? [])]).some((record) => bodyOf(record)?.kind === 'overboard');
    containers.push({
      id: container.id,
      at: iso(latest.eventTimeMs),
      lat: latestPosition[1],
      lon: latestPosition[0],
      ...(lost ? { status: 'lost overboard' } : {}),
      track,
    });
  }
  return { ships, containers };
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
