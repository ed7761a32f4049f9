/**
 * A truck or a train carrying containers over land: a deterministic simulation of its position
 * along a road or rail path (real places, great-circle segments between them), its speed (a
 * truck slows in traffic, a train runs at line speed and stands at stations), and the readings
 * of the containers aboard, whose position is the vehicle's. What a vehicle's edge gateway hears:
 *
 *   <prefix>/vehicles/<id>/position       every positionIntervalS: lat, lon, speed, heading, km along the path
 *   <prefix>/containers/<id>/telemetry    every readingIntervalS per dry container (reefer: .../reefer)
 *
 * Same seed, same messages byte for byte, however the simulation is stepped.
 */
import { Random, roundTo, streamSeed } from '../fleet/index.js';
import { bearingDeg, distanceNm, interpolate, type GeoPoint } from '../sea-lanes/index.js';

const KM_PER_NM = 1.852;

export interface Waypoint extends GeoPoint {
  readonly name: string;
  /** A train stands here this many minutes (a station); a truck's waypoints have none. */
  readonly stopMinutes?: number;
}

export interface VehicleContainer {
  readonly id: string;
  readonly kind: 'dry' | 'reefer';
  readonly setpointC?: number;
}

export interface VehicleSpec {
  readonly id: string;
  readonly kind: 'truck' | 'train';
  readonly path: readonly Waypoint[];
  /** Cruising speed; a truck's varies around it (traffic), a train's does not. */
  readonly speedKmh: number;
  /** When it leaves the first waypoint (epoch ms, simulated). */
  readonly startMs: number;
  readonly containers: readonly VehicleContainer[];
  readonly readingIntervalS: number;
  readonly positionIntervalS: number;
  readonly seed: number;
  readonly topicPrefix?: string;
}

export interface VehicleMessage {
  readonly topic: string;
  readonly payload: string;
  readonly qos: 0 | 1 | 2;
  readonly timeMs: number;
}

export interface VehiclePosition extends GeoPoint {
  /** Along the path from its start. */
  readonly km: number;
  readonly speedKmh: number;
  readonly headingDeg: number;
  readonly status: 'moving' | 'at-station' | 'arrived';
}

/** Port Botany (Sydney) to Melbourne by the Hume Highway: a container trucked on from the ship. */
export const SYDNEY_MELBOURNE_ROAD: readonly Waypoint[] = [
  { name: 'Port Botany', lat: -33.9706, lon: 151.2195 },
  { name: 'Liverpool', lat: -33.9213, lon: 150.9237 },
  { name: 'Campbelltown', lat: -34.0650, lon: 150.8142 },
  { name: 'Goulburn', lat: -34.7547, lon: 149.7186 },
  { name: 'Yass', lat: -34.8420, lon: 148.9100 },
  { name: 'Gundagai', lat: -35.0656, lon: 148.1056 },
  { name: 'Albury', lat: -36.0737, lon: 146.9135 },
  { name: 'Wangaratta', lat: -36.3580, lon: 146.3126 },
  { name: 'Seymour', lat: -37.0260, lon: 145.1390 },
  { name: 'Melbourne', lat: -37.8136, lon: 144.9631 },
];

/** Port Botany to Parkes by rail over the Blue Mountains, standing at Lithgow and Bathurst. */
export const SYDNEY_PARKES_RAIL: readonly Waypoint[] = [
  { name: 'Port Botany', lat: -33.9706, lon: 151.2195 },
  { name: 'Enfield', lat: -33.8870, lon: 151.0930 },
  { name: 'Penrith', lat: -33.7510, lon: 150.6940 },
  { name: 'Katoomba', lat: -33.7140, lon: 150.3110 },
  { name: 'Lithgow', lat: -33.4820, lon: 150.1570, stopMinutes: 30 },
  { name: 'Bathurst', lat: -33.4190, lon: 149.5770, stopMinutes: 20 },
  { name: 'Orange', lat: -33.2840, lon: 149.1000 },
  { name: 'Parkes', lat: -33.1370, lon: 148.1750 },
];

export class VehicleSpecError extends Error {
  readonly code = 'BAD_VEHICLE';
}

interface Segment {
  readonly from: Waypoint;
  readonly to: Waypoint;
  readonly km: number;
  /** Simulated time it leaves `from` (after any stop there) and reaches `to`. */
  readonly departMs: number;
  readonly arriveMs: number;
}

export class VehicleModel {
  readonly segments: readonly Segment[];
  readonly endMs: number;
  readonly lengthKm: number;
  private readonly prefix: string;
  private readonly random: Map<string, Random>;
  private nextPositionMs: number;
  private arrivalReported = false;
  private readonly nextReadingMs = new Map<string, number>();
  private readonly tempC = new Map<string, number>();

  constructor(readonly spec: VehicleSpec) {
    if (spec.path.length < 2) throw new VehicleSpecError(`${spec.id}: path: at least two waypoints`);
    if (!(spec.speedKmh > 0)) throw new VehicleSpecError(`${spec.id}: speedKmh must be positive`);
    if (!(spec.readingIntervalS > 0) || !(spec.positionIntervalS > 0)) throw new VehicleSpecError(`${spec.id}: intervals must be positive`);
    this.prefix = spec.topicPrefix ?? 'bigblue';
    // A truck's speed per stretch: traffic, roadworks (seeded, so deterministic); a train keeps line speed.
    const pace = new Random(spec.seed, `${spec.id}/pace`);
    const segments: Segment[] = [];
    let atMs = spec.startMs;
    for (let index = 1; index < spec.path.length; index += 1) {
      const from = spec.path[index - 1]!;
      const to = spec.path[index]!;
      if (index > 1) atMs += (from.stopMinutes ?? 0) * 60_000;
      const km = distanceNm(from, to) * KM_PER_NM;
      const speedKmh = spec.kind === 'truck' ? spec.speedKmh * pace.between(0.7, 1.05) : spec.speedKmh;
      const durationMs = Math.round((km / speedKmh) * 3_600_000);
      segments.push({ from, to, km, departMs: atMs, arriveMs: atMs + durationMs });
      atMs += durationMs;
    }
    this.segments = segments;
    this.endMs = atMs;
    this.lengthKm = segments.reduce((sum, segment) => sum + segment.km, 0);
    this.random = new Map([spec.id, ...spec.containers.map((container) => container.id)].map((name) => [name, new Random(spec.seed, `${spec.id}/${name}`)]));
    this.nextPositionMs = spec.startMs;
    // Each container on its own phase, as the fleet's do.
    for (const container of spec.containers) {
      this.nextReadingMs.set(container.id, spec.startMs + (streamSeed(spec.seed, container.id) % (spec.readingIntervalS * 1000)));
      this.tempC.set(container.id, container.kind === 'reefer' ? (container.setpointC ?? 2) : 20);
    }
  }

  get startMs(): number {
    return this.spec.startMs;
  }

  /** Where the vehicle is at a moment of its trip (before it: at the start; after: at the end). */
  positionAt(timeMs: number): VehiclePosition {
    let km = 0;
    for (const segment of this.segments) {
      if (timeMs < segment.departMs) {
        // Standing at a station before this stretch.
        return { lat: segment.from.lat, lon: segment.from.lon, km, speedKmh: 0, headingDeg: roundTo(bearingDeg(segment.from, segment.to), 1), status: 'at-station' };
      }
      if (timeMs < segment.arriveMs) {
        const fraction = (timeMs - segment.departMs) / (segment.arriveMs - segment.departMs);
        const point = interpolate(segment.from, segment.to, fraction);
        return { ...point, km: km + segment.km * fraction, speedKmh: (segment.km / (segment.arriveMs - segment.departMs)) * 3_600_000, headingDeg: roundTo(bearingDeg(point, segment.to), 1), status: 'moving' };
      }
      km += segment.km;
    }
    const last = this.spec.path.at(-1)!;
    return { lat: last.lat, lon: last.lon, km: this.lengthKm, speedKmh: 0, headingDeg: 0, status: 'arrived' };
  }

  /** Every message due up to and including `timeMs`, in time order; each only once. */
  advanceTo(timeMs: number): VehicleMessage[] {
    const until = Math.min(timeMs, this.endMs);
    const messages: VehicleMessage[] = [];
    const { id } = this.spec;
    while (this.nextPositionMs <= until) {
      const at = this.nextPositionMs;
      const where = this.positionAt(at);
      messages.push({
        topic: `${this.prefix}/vehicles/${id}/position`,
        qos: 1,
        timeMs: at,
        payload: JSON.stringify({ ts: at, vehicle: id, kind: this.spec.kind, lat: roundTo(where.lat, 5), lon: roundTo(where.lon, 5), speedKmh: roundTo(where.speedKmh, 1), headingDeg: where.headingDeg, km: roundTo(where.km, 2), status: where.status }),
      });
      this.nextPositionMs += this.spec.positionIntervalS * 1000;
    }
    // And where it arrived, when it arrived (between two regular reports).
    if (until >= this.endMs && !this.arrivalReported) {
      this.arrivalReported = true;
      const where = this.positionAt(this.endMs);
      messages.push({
        topic: `${this.prefix}/vehicles/${id}/position`,
        qos: 1,
        timeMs: this.endMs,
        payload: JSON.stringify({ ts: this.endMs, vehicle: id, kind: this.spec.kind, lat: roundTo(where.lat, 5), lon: roundTo(where.lon, 5), speedKmh: 0, headingDeg: where.headingDeg, km: roundTo(where.km, 2), status: where.status }),
      });
    }
    for (const container of this.spec.containers) {
      const random = this.random.get(container.id)!;
      for (let at = this.nextReadingMs.get(container.id)!; at <= until; at += this.spec.readingIntervalS * 1000) {
        const where = this.positionAt(at);
        // Ambient over land by latitude and the local hour; a dry box follows it, a reefer holds setpoint.
        const hour = (new Date(at).getUTCHours() + where.lon / 15 + 24) % 24;
        const ambientC = 28 + (Math.abs(where.lat) - 33) * -1.2 + 6 * Math.sin(((hour - 9) / 24) * 2 * Math.PI);
        const previous = this.tempC.get(container.id)!;
        const tempC = container.kind === 'reefer' ? (container.setpointC ?? 2) + random.between(-0.5, 0.5) : previous + (ambientC - previous) * 0.2 + random.normal() * 0.1;
        this.tempC.set(container.id, tempC);
        // Road vibration shakes a truck's boxes more than rails do a train's; standing still, neither.
        const shockG = where.status === 'moving' ? (this.spec.kind === 'truck' ? random.between(0.2, 0.9) : random.between(0.1, 0.4)) : random.between(0, 0.05);
        const payload = {
          ts: at,
          container: container.id,
          tempC: roundTo(tempC, 2),
          ...(container.kind === 'reefer' ? { setpointC: container.setpointC ?? 2, compressor: tempC > (container.setpointC ?? 2) } : {}),
          humidityPct: roundTo(55 + random.normal() * 4, 1),
          door: 'closed',
          shockG: roundTo(shockG, 2),
          batteryPct: roundTo(Math.max(0, 98 - (at - this.spec.startMs) / 3_600_000 * 0.2), 1),
          lat: roundTo(where.lat, 5),
          lon: roundTo(where.lon, 5),
          vehicle: id,
        };
        messages.push({ topic: `${this.prefix}/containers/${container.id}/${container.kind === 'reefer' ? 'reefer' : 'telemetry'}`, qos: 1, timeMs: at, payload: JSON.stringify(payload) });
        this.nextReadingMs.set(container.id, at + this.spec.readingIntervalS * 1000);
      }
    }
    return messages.sort((a, b) => a.timeMs - b.timeMs);
  }
}
