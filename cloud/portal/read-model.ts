/**
 * The portal's read model: a fold of the site's records into what the pages show. Pure and
 * order-independent: `apply` takes records in any order, any number of times, and the state
 * depends only on the set of records applied (tested by replaying twice and by shuffled,
 * duplicated deliveries).
 *
 * What it keeps is *records*, not numbers derived from them, so that every answer can be
 * passed record by record through the audience's `RecordFilter` (the access policy decides
 * on the real record, never on a copy of its rules):
 * - per container: the latest readings (the RECENT records with the greatest (event time,
 *   offset)), a downsampled series (per time bucket the earliest record and the one with the
 *   greatest shock), its manifests records and its alerts;
 * - per ship: its latest position and environment records, a downsampled track, and the last
 *   event time it was berthed at each port (departures, for the "at sea" step of timelines);
 * - alerts by identity.
 *
 * Version guards: every selection is a minimum or maximum over a total order on the record
 * ((event time, offset) within a topic), and lists are keyed by offset, so a late record can
 * only take its place in order and a repeated one changes nothing.
 *
 * Downsampling: buckets are `BASE_BUCKET_MS × 2^k` wide, aligned on multiples of their width,
 * so doubling the width merges pairs of buckets exactly; k is raised while more than
 * `maxBuckets` buckets are held. The resulting k is the smallest that fits the whole set,
 * whatever the order the records came in.
 */
import type { LogRecord } from '../../core/index.js';
import { HANDOFF_HEADER } from '../../core/writership.js';

/** manifests/custody holds access control's custody windows (cloud/access), not a container. */
export const CUSTODY_TOPIC = 'custody';

export const BASE_BUCKET_MS = 60_000;
export const DEFAULT_MAX_BUCKETS = 240;
/** Latest records kept per container / ship, newest last. */
export const RECENT = 16;

const decoder = new TextDecoder('utf-8', { fatal: true });

/** The payload as a JSON object, or undefined. */
export function bodyOf(record: LogRecord): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(decoder.decode(record.payload));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Positions of records, noted when the fold parses them anyway, so that a map of thousands of
 * containers draws their tracks without parsing hundreds of thousands of payloads per request.
 * Keyed by the record object: an audience given a projected copy gets it parsed instead, and
 * records that leave the model leave the map with them.
 */
const positions = new WeakMap<LogRecord, readonly [number, number] | null>();

function notePosition(record: LogRecord, body: Record<string, unknown> | undefined): readonly [number, number] | null {
  const lat = num(body?.lat);
  const lon = num(body?.lon);
  const position = lat === undefined || lon === undefined ? null : ([lon, lat] as const);
  positions.set(record, position);
  return position;
}

/** The record's [lon, lat], or undefined when its payload has none. */
export function positionOf(record: LogRecord): readonly [number, number] | undefined {
  const known = positions.get(record);
  if (known !== undefined) return known ?? undefined;
  return notePosition(record, bodyOf(record)) ?? undefined;
}

/** Total order of a topic's records: event time, then offset (an identity offset is unique in a topic). */
export function newer(left: LogRecord, right: LogRecord): boolean {
  return left.eventTimeMs !== right.eventTimeMs ? left.eventTimeMs > right.eventTimeMs : left.offset > right.offset;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

interface Bucket {
  /** The earliest reading of the bucket (undefined while it holds device events only). */
  first: LogRecord | undefined;
  /** The record with the greatest value of the series' peak field (shock), ties to the earliest. */
  peak: LogRecord;
  peakValue: number;
}

/** A downsampled series of one topic's records (see the file note). */
export class Series {
  private level = 0;
  private readonly buckets = new Map<number, Bucket>();

  constructor(
    private readonly maxBuckets: number,
    private readonly peakOf: (record: LogRecord) => number,
  ) {}

  get widthMs(): number {
    return BASE_BUCKET_MS * 2 ** this.level;
  }

  /** Adds a record; a `peakOnly` one (a device event) may stand for its bucket's peak, never for its first reading. */
  add(record: LogRecord, peakOnly = false, peakValue = this.peakOf(record)): void {
    this.put(Math.floor(record.eventTimeMs / this.widthMs), peakOnly ? undefined : record, record, peakValue);
    while (this.buckets.size > this.maxBuckets) this.coarsen();
  }

  private put(index: number, first: LogRecord | undefined, peak: LogRecord, peakValue: number): void {
    const held = this.buckets.get(index);
    if (held === undefined) {
      this.buckets.set(index, { first, peak, peakValue });
      return;
    }
    if (first !== undefined && (held.first === undefined || newer(held.first, first))) held.first = first;
    if (peakValue > held.peakValue || (peakValue === held.peakValue && newer(held.peak, peak))) {
      held.peak = peak;
      held.peakValue = peakValue;
    }
  }

  private coarsen(): void {
    const old = [...this.buckets];
    this.buckets.clear();
    this.level += 1;
    for (const [index, bucket] of old) this.put(Math.floor(index / 2), bucket.first, bucket.peak, bucket.peakValue);
  }

  /** The records kept, once each, in (event time, offset) order. */
  records(): LogRecord[] {
    // Buckets cover disjoint time ranges, so ordering the bucket indexes (a few hundred
    // numbers) orders the records; only a bucket's own two records need comparing.
    const out: LogRecord[] = [];
    for (const index of [...this.buckets.keys()].sort((left, right) => left - right)) {
      const { first, peak } = this.buckets.get(index)!;
      if (first === undefined || first.offset === peak.offset) out.push(peak);
      else if (newer(peak, first)) out.push(first, peak);
      else out.push(peak, first);
    }
    return out;
  }
}

/** The greatest RECENT records by (event time, offset). */
class Recent {
  readonly records: LogRecord[] = [];

  add(record: LogRecord): void {
    if (this.records.some((held) => held.offset === record.offset)) return;
    if (this.records.length >= RECENT && !newer(record, this.records[0]!)) return;
    let at = this.records.length;
    while (at > 0 && newer(this.records[at - 1]!, record)) at -= 1;
    this.records.splice(at, 0, record);
    if (this.records.length > RECENT) this.records.shift();
  }
}

export interface ContainerModel {
  readonly id: string;
  readonly recent: Recent;
  readonly series: Series;
  /** Manifests records by offset. */
  readonly manifests: Map<number, LogRecord>;
  /** Handoff records of the container's own topic (a new writer site), by offset. */
  readonly handoffs: Map<number, LogRecord>;
}

export interface ShipModel {
  readonly id: string;
  readonly positions: Recent;
  readonly environment: Recent;
  readonly track: Series;
  /** Port → the latest event time the ship reported itself berthed there. */
  readonly lastBerthed: Map<string, number>;
}

const shockOf = (record: LogRecord) => num(bodyOf(record)?.shockG) ?? 0;

export interface ReadModelOptions {
  readonly maxBuckets?: number;
}

export class PortalReadModel {
  readonly containers = new Map<string, ContainerModel>();
  readonly ships = new Map<string, ShipModel>();
  /** Alerts by `<origin>/<topic>/<offset>`: topic is the container (or other topic) it is about. */
  readonly alerts = new Map<string, LogRecord>();
  /** The same alerts by topic, so a page about one container never walks every alert. */
  readonly alertsByTopic = new Map<string, Map<string, LogRecord>>();
  private readonly maxBuckets: number;
  /** Records applied, repeats included (for metrics and tests). */
  applied = 0;

  constructor(options: ReadModelOptions = {}) {
    this.maxBuckets = options.maxBuckets ?? DEFAULT_MAX_BUCKETS;
  }

  container(id: string): ContainerModel {
    let model = this.containers.get(id);
    if (model === undefined) {
      model = { id, recent: new Recent(), series: new Series(this.maxBuckets, shockOf), manifests: new Map(), handoffs: new Map() };
      this.containers.set(id, model);
    }
    return model;
  }

  ship(id: string): ShipModel {
    let model = this.ships.get(id);
    if (model === undefined) {
      model = { id, positions: new Recent(), environment: new Recent(), track: new Series(this.maxBuckets, () => 0), lastBerthed: new Map() };
      this.ships.set(id, model);
    }
    return model;
  }

  /** Folds one record in; records of other streams are ignored. */
  apply(record: LogRecord): void {
    this.applied += 1;
    switch (record.stream) {
      case 'containers': {
        const model = this.container(record.topic);
        // A handoff names the topic's next writer (core/writership.ts): a timeline step, not a reading.
        if (record.headers[HANDOFF_HEADER] !== undefined) {
          model.handoffs.set(record.offset, record);
          return;
        }
        const body = bodyOf(record);
        notePosition(record, body);
        model.recent.add(record);
        if (body === undefined) return;
        // A device event (door, shock) carries no temperature: it may be a bucket's shock peak, never its reading.
        model.series.add(record, typeof body.event === 'string', num(body.shockG) ?? 0);
        return;
      }
      case 'manifests': {
        if (record.topic === CUSTODY_TOPIC) return; // custody windows: access records, not a container
        this.container(record.topic).manifests.set(record.offset, record);
        return;
      }
      case 'ships': {
        const body = bodyOf(record);
        if (body === undefined) return;
        const model = this.ship(record.topic);
        if (num(body.lat) !== undefined && num(body.lon) !== undefined) {
          model.positions.add(record);
          model.track.add(record, false, 0);
          if (body.status === 'berthed' && typeof body.port === 'string') {
            const held = model.lastBerthed.get(body.port);
            if (held === undefined || record.eventTimeMs > held) model.lastBerthed.set(body.port, record.eventTimeMs);
          }
        } else {
          model.environment.add(record);
        }
        return;
      }
      case 'alerts': {
        const key = `${record.origin}/${record.topic}/${record.offset}`;
        this.alerts.set(key, record);
        let ofTopic = this.alertsByTopic.get(record.topic);
        if (ofTopic === undefined) this.alertsByTopic.set(record.topic, (ofTopic = new Map()));
        ofTopic.set(key, record);
        return;
      }
      default:
        return;
    }
  }

  /** A canonical dump of the whole state (for tests: equal dumps, equal states). */
  snapshot(): unknown {
    const id = (record: LogRecord) => `${record.origin}/${record.stream}/${record.topic}/${record.offset}`;
    const sorted = <T>(map: Map<string, T>) => [...map.entries()].sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0));
    return {
      containers: sorted(this.containers).map(([key, model]) => ({
        key,
        recent: model.recent.records.map(id),
        series: model.series.records().map(id),
        width: model.series.widthMs,
        manifests: [...model.manifests.values()].map(id).sort(),
        handoffs: [...model.handoffs.values()].map(id).sort(),
      })),
      ships: sorted(this.ships).map(([key, model]) => ({
        key,
        positions: model.positions.records.map(id),
        environment: model.environment.records.map(id),
        track: model.track.records().map(id),
        berthed: [...model.lastBerthed.entries()].sort(),
      })),
      alerts: [...this.alerts.keys()].sort(),
    };
  }
}
