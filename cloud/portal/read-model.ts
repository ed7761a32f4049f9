/**
 * The portal's read model: a fold of the site's records into what the pages show. Pure and
 * order-independent: `apply` takes records in any order, any number of times, and the state
 * depends only on the set of records applied (tested by replaying twice and by shuffled,
 * duplicated deliveries).
 *
 * Every answer is passed record by record through the audience's `RecordFilter` (the access
 * policy decides on the real record, never on a copy of its rules), so what the model keeps
 * either is the record or names it:
 * - per container: the latest readings (the RECENT records with the greatest (event time,
 *   offset)), kept whole since every list and latest state uses them; a downsampled series
 *   (per time bucket the earliest reading and the one with the greatest shock) kept as numbers
 *   only (offset, event time, position: 80 bytes a bucket), whose records `read` fetches back
 *   from the site's log when a page needs them; its manifests records and its alerts, whole;
 * - per ship: its latest position and environment records, a downsampled track (numbers, as
 *   above), and the last event time it was berthed at each port (departures, for the "at sea"
 *   step of timelines);
 * - alerts by identity.
 * A kept record cost about 800 bytes in the process (object, headers, payload buffer), and a
 * series kept two per bucket: 800 MB at 2,000 containers (docs/PORTAL.md, "Memory").
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
import { PortcallError, type LogRecord, type TopicReader } from '../../core/index.js';
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

/** One kept point of a series: what the fold noted of a record it saw (the record itself stays in the log). */
export interface SeriesPoint {
  readonly offset: number;
  readonly eventTimeMs: number;
  /** [lon, lat] of the record's payload, or undefined when it has none. */
  readonly position: readonly [number, number] | undefined;
}

/*
 * A bucket is STRIDE numbers in one Float64Array, buckets in increasing index order:
 * its index, then its first reading (offset, event time, lon, lat; offset NaN while it holds
 * device events only), then its peak (offset, event time, value, lon, lat). 80 bytes a bucket
 * instead of two whole records (about 1,600 bytes in the process).
 */
const STRIDE = 10;
const INDEX = 0;
const FIRST = 1;
const PEAK = 5;
const PEAK_VALUE = 7;

/** (time, offset) of `left` after (time, offset) of `right`: the order `newer` gives records. */
const after = (leftTimeMs: number, leftOffset: number, rightTimeMs: number, rightOffset: number) =>
  leftTimeMs !== rightTimeMs ? leftTimeMs > rightTimeMs : leftOffset > rightOffset;

/**
 * A downsampled series of one topic's records (see the file note), kept as numbers: per
 * bucket the identity (offset) and event time of its two records and their positions. The
 * records themselves are read back from the log when an answer needs them, and only their
 * admitted form is shown (views.ts): the numbers here say which records, never what a viewer sees.
 */
export class Series {
  private level = 0;
  private data = new Float64Array(4 * STRIDE);
  private count = 0;

  constructor(private readonly maxBuckets: number) {}

  get widthMs(): number {
    return BASE_BUCKET_MS * 2 ** this.level;
  }

  /** Buckets held. */
  get size(): number {
    return this.count;
  }

  /**
   * Notes a record; a `peakOnly` one (a device event) may stand for its bucket's peak, never
   * for its first reading.
   */
  add(record: LogRecord, peakOnly: boolean, peakValue: number, position: readonly [number, number] | null | undefined): void {
    const lon = position?.[0] ?? Number.NaN;
    const lat = position?.[1] ?? Number.NaN;
    const { offset, eventTimeMs } = record;
    this.put(Math.floor(eventTimeMs / this.widthMs), peakOnly ? Number.NaN : offset, eventTimeMs, lon, lat, offset, eventTimeMs, peakValue, lon, lat);
    while (this.count > this.maxBuckets) this.coarsen();
  }

  /** Slot of the bucket with this index, or -(insertion slot) - 1. */
  private find(index: number): number {
    let low = 0;
    let high = this.count - 1;
    // Records mostly come in time order: the last bucket first.
    if (high >= 0 && this.data[high * STRIDE + INDEX]! < index) return -(high + 1) - 1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      const held = this.data[mid * STRIDE + INDEX]!;
      if (held === index) return mid;
      if (held < index) low = mid + 1;
      else high = mid - 1;
    }
    return -low - 1;
  }

  // One bucket's ten numbers, passed flat so that folding a record allocates nothing.
  private put(index: number, firstOffset: number, firstTimeMs: number, firstLon: number, firstLat: number, peakOffset: number, peakTimeMs: number, peakValue: number, peakLon: number, peakLat: number): void {
    let slot = this.find(index);
    const data = this.data;
    if (slot < 0) {
      slot = -slot - 1;
      if ((this.count + 1) * STRIDE > data.length) {
        const grown = new Float64Array(data.length * 2);
        grown.set(data);
        this.data = grown;
      }
      const held = this.data;
      held.copyWithin((slot + 1) * STRIDE, slot * STRIDE, this.count * STRIDE);
      // Written number by number: an array literal here would allocate per new bucket.
      const at = slot * STRIDE;
      held[at + INDEX] = index;
      held[at + FIRST] = firstOffset;
      held[at + FIRST + 1] = firstTimeMs;
      held[at + FIRST + 2] = firstLon;
      held[at + FIRST + 3] = firstLat;
      held[at + PEAK] = peakOffset;
      held[at + PEAK + 1] = peakTimeMs;
      held[at + PEAK_VALUE] = peakValue;
      held[at + PEAK + 3] = peakLon;
      held[at + PEAK + 4] = peakLat;
      this.count += 1;
      return;
    }
    this.merge(slot * STRIDE, firstOffset, firstTimeMs, firstLon, firstLat, peakOffset, peakTimeMs, peakValue, peakLon, peakLat);
  }

  private merge(at: number, firstOffset: number, firstTimeMs: number, firstLon: number, firstLat: number, peakOffset: number, peakTimeMs: number, peakValue: number, peakLon: number, peakLat: number): void {
    const data = this.data;
    // The earliest reading: a minimum over (event time, offset).
    if (!Number.isNaN(firstOffset) && (Number.isNaN(data[at + FIRST]!) || after(data[at + FIRST + 1]!, data[at + FIRST]!, firstTimeMs, firstOffset))) {
      data[at + FIRST] = firstOffset;
      data[at + FIRST + 1] = firstTimeMs;
      data[at + FIRST + 2] = firstLon;
      data[at + FIRST + 3] = firstLat;
    }
    // The greatest peak value, ties to the earliest record.
    const heldValue = data[at + PEAK_VALUE]!;
    if (peakValue > heldValue || (peakValue === heldValue && after(data[at + PEAK + 1]!, data[at + PEAK]!, peakTimeMs, peakOffset))) {
      data[at + PEAK] = peakOffset;
      data[at + PEAK + 1] = peakTimeMs;
      data[at + PEAK_VALUE] = peakValue;
      data[at + PEAK + 3] = peakLon;
      data[at + PEAK + 4] = peakLat;
    }
  }

  /** Doubles the width: pairs of buckets merge in place (both minimum and maximum are exact under merging). */
  private coarsen(): void {
    const data = this.data;
    this.level += 1;
    let out = -1;
    for (let slot = 0; slot < this.count; slot += 1) {
      const at = slot * STRIDE;
      const index = Math.floor(data[at + INDEX]! / 2);
      if (out >= 0 && data[out * STRIDE + INDEX] === index) {
        this.merge(out * STRIDE, data[at + 1]!, data[at + 2]!, data[at + 3]!, data[at + 4]!, data[at + 5]!, data[at + 6]!, data[at + 7]!, data[at + 8]!, data[at + 9]!);
        continue;
      }
      out += 1;
      if (out !== slot) data.copyWithin(out * STRIDE, at, at + STRIDE);
      data[out * STRIDE + INDEX] = index;
    }
    this.count = out + 1;
  }

  /** The points kept, once each, in (event time, offset) order. */
  points(): SeriesPoint[] {
    const data = this.data;
    const out: SeriesPoint[] = [];
    const point = (at: number): SeriesPoint => ({
      offset: data[at]!,
      eventTimeMs: data[at + 1]!,
      position: Number.isNaN(data[at + 2]!) || Number.isNaN(data[at + 3]!) ? undefined : [data[at + 2]!, data[at + 3]!],
    });
    // Buckets cover disjoint time ranges in index order; only a bucket's own two points need comparing.
    for (let slot = 0; slot < this.count; slot += 1) {
      const at = slot * STRIDE;
      // The peak's numbers are offset, time, value, lon, lat.
      const peakPoint: SeriesPoint = {
        offset: data[at + PEAK]!,
        eventTimeMs: data[at + PEAK + 1]!,
        position: Number.isNaN(data[at + PEAK + 3]!) || Number.isNaN(data[at + PEAK + 4]!) ? undefined : [data[at + PEAK + 3]!, data[at + PEAK + 4]!],
      };
      if (Number.isNaN(data[at + FIRST]!) || data[at + FIRST] === data[at + PEAK]) out.push(peakPoint);
      else {
        const first = point(at + FIRST);
        if (after(peakPoint.eventTimeMs, peakPoint.offset, first.eventTimeMs, first.offset)) out.push(first, peakPoint);
        else out.push(peakPoint, first);
      }
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
  /** The latest records, kept whole (lists and latest states use them on every request). */
  readonly recent: Recent;
  /** The downsampled history, as numbers (the records are read back from the log). */
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

export interface ReadModelOptions {
  readonly maxBuckets?: number;
  /**
   * Where the records of series points are read back from: the site's log. Without one the
   * model folds (a replay benchmark) but cannot answer a page that needs its series.
   */
  readonly reader?: Pick<TopicReader, 'readTopic'>;
  /** Records read back kept for the next answers (about 800 bytes each); 0 keeps none. */
  readonly cacheRecords?: number;
}

/**
 * Two generations of 50,000 records (about 80 MB): a generation must hold a customer's and
 * carrier operations' maps (20,000 records each) with room to spare, or every load of a map
 * pushes its own records out (with generations of 20,000, ToyCo's map still took 832 ms).
 */
export const DEFAULT_CACHE_RECORDS = 100_000;

/** A page needs records the model cannot read (no reader was given). */
export class PortalRecordsUnavailableError extends PortcallError {
  constructor(message: string) {
    super('PORTAL_RECORDS_UNAVAILABLE', message);
  }
}

/**
 * Offsets closer than this are read in one range: a read of a few neighbouring records costs
 * about what a read of one does (one statement on the embedded log, one fetch on Kafka).
 */
const RANGE_GAP = 8;

export class PortalReadModel {
  readonly containers = new Map<string, ContainerModel>();
  readonly ships = new Map<string, ShipModel>();
  /** Alerts by `<origin>/<topic>/<offset>`: topic is the container (or other topic) it is about. */
  readonly alerts = new Map<string, LogRecord>();
  /** The same alerts by topic, so a page about one container never walks every alert. */
  readonly alertsByTopic = new Map<string, Map<string, LogRecord>>();
  private readonly maxBuckets: number;
  private readonly reader: Pick<TopicReader, 'readTopic'> | undefined;
  /** Records applied, repeats included (for metrics and tests). */
  applied = 0;
  /** Records read back from the log for answers, and those found in the cache instead (for metrics and tests). */
  recordsRead = 0;
  cacheHits = 0;
  /**
   * Records read back lately (two generations, see remember): a map asks for the same
   * 20,000 records on every load, and a read of the embedded log costs 13-70 µs a record
   * (1-10 M records; a map took 0.85-1.4 s). Records never change under their identity, so a
   * cached one is the log's record; the filter still judges it on every request.
   */
  private cache = new Map<string, LogRecord>();
  private oldCache = new Map<string, LogRecord>();
  private readonly cacheRecords: number;

  constructor(options: ReadModelOptions = {}) {
    this.maxBuckets = options.maxBuckets ?? DEFAULT_MAX_BUCKETS;
    this.reader = options.reader;
    this.cacheRecords = options.cacheRecords ?? DEFAULT_CACHE_RECORDS;
  }

  container(id: string): ContainerModel {
    let model = this.containers.get(id);
    if (model === undefined) {
      model = { id, recent: new Recent(), series: new Series(this.maxBuckets), manifests: new Map(), handoffs: new Map() };
      this.containers.set(id, model);
    }
    return model;
  }

  ship(id: string): ShipModel {
    let model = this.ships.get(id);
    if (model === undefined) {
      model = { id, positions: new Recent(), environment: new Recent(), track: new Series(this.maxBuckets), lastBerthed: new Map() };
      this.ships.set(id, model);
    }
    return model;
  }

  /**
   * The records of a topic at these offsets, read from the log, in the order asked; an offset
   * the log no longer holds (retention) is left out. The caller passes each through its
   * audience's filter: these are the real records, never a copy made by the model.
   */
  async read(stream: string, topic: string, offsets: readonly number[]): Promise<LogRecord[]> {
    if (offsets.length === 0) return [];
    const reader = this.reader;
    if (reader === undefined) throw new PortalRecordsUnavailableError(`the portal's read model has no log to read ${stream}/${topic} from`);
    const key = (offset: number) => `${stream}\u0000${topic}\u0000${offset}`;
    const found = new Map<number, LogRecord>();
    const missing: number[] = [];
    for (const offset of new Set(offsets)) {
      const cached = this.cached(key(offset));
      if (cached === undefined) missing.push(offset);
      else found.set(offset, cached);
    }
    this.cacheHits += found.size;
    const wanted = missing.sort((left, right) => left - right);
    for (let start = 0; start < wanted.length; ) {
      let end = start;
      while (end + 1 < wanted.length && wanted[end + 1]! - wanted[end]! <= RANGE_GAP) end += 1;
      const from = wanted[start]!;
      const count = wanted[end]! - from + 1;
      const records = await reader.readTopic(stream, topic, from, { maxRecords: count, maxBytes: Number.MAX_SAFE_INTEGER });
      for (const record of records) {
        if (record.offset > wanted[end]! || found.has(record.offset)) continue;
        found.set(record.offset, record);
        this.recordsRead += 1;
        this.remember(key(record.offset), record);
      }
      start = end + 1;
    }
    const out: LogRecord[] = [];
    for (const offset of offsets) {
      const record = found.get(offset);
      if (record !== undefined) out.push(record);
    }
    return out;
  }

  /** A cached record; one found in the older generation moves to the young one. */
  private cached(key: string): LogRecord | undefined {
    const young = this.cache.get(key);
    if (young !== undefined) return young;
    const old = this.oldCache.get(key);
    if (old !== undefined) this.remember(key, old);
    return old;
  }

  /**
   * Two generations of half the size each: when the young one is full it becomes the old one
   * and the old one is dropped. (A Map used as an LRU list, deleting its oldest entry on every
   * insert, made each eviction walk the deleted entries V8 keeps until a rehash: quadratic,
   * and a bench run's map queries went from 1.3 s to minutes.)
   */
  private remember(key: string, record: LogRecord): void {
    if (this.cacheRecords <= 0) return;
    if (this.cache.size >= Math.ceil(this.cacheRecords / 2)) {
      this.oldCache = this.cache;
      this.cache = new Map();
    }
    this.cache.set(key, record);
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
        model.recent.add(record);
        if (body === undefined) return;
        // A device event (door, shock) carries no temperature: it may be a bucket's shock peak, never its reading.
        model.series.add(record, typeof body.event === 'string', num(body.shockG) ?? 0, notePosition(record, body));
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
        const position = notePosition(record, body);
        if (position !== null) {
          model.positions.add(record);
          model.track.add(record, false, 0, position);
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
    const points = (series: Series) => series.points().map((point) => [point.offset, point.eventTimeMs, ...(point.position ?? [])]);
    const sorted = <T>(map: Map<string, T>) => [...map.entries()].sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0));
    return {
      containers: sorted(this.containers).map(([key, model]) => ({
        key,
        recent: model.recent.records.map(id),
        series: points(model.series),
        width: model.series.widthMs,
        manifests: [...model.manifests.values()].map(id).sort(),
        handoffs: [...model.handoffs.values()].map(id).sort(),
      })),
      ships: sorted(this.ships).map(([key, model]) => ({
        key,
        positions: model.positions.records.map(id),
        environment: model.environment.records.map(id),
        track: points(model.track),
        berthed: [...model.lastBerthed.entries()].sort(),
      })),
      alerts: [...this.alerts.keys()].sort(),
    };
  }
}
