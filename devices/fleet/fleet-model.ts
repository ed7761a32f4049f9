/**
 * The emulated fleet as a deterministic simulation: given a scenario, `advanceTo(t)` returns
 * every MQTT message the fleet's devices send up to simulated time t, in time order. The
 * same scenario and seed give the same messages, byte for byte, however the simulation is
 * stepped (one call to the end, or many small ones): each entity draws only from its own
 * random stream, and only when it reports.
 *
 * What devices send (topics under the scenario's prefix, default `bigblue`):
 * - `containers/<id>/reefer` or `containers/<id>/telemetry` (dry): a reading every
 *   `readingIntervalS`: temperature, humidity, door, shock, battery, position (from the ship
 *   while aboard, the port while ashore, its own drift once overboard); reefers add setpoint
 *   and compressor state (on, off, defrost, failed).
 * - `containers/<id>/event`: what a unit reports at once: door opened/closed, a shock
 *   over 2 g (a crane move, going overboard), a reefer alarm.
 * - `ships/<id>/position` and `ships/<id>/environment` every `shipReportIntervalS`.
 * - `manifests/<container>`: booked (at the start), loaded, unloaded, with ship, port, owner.
 *
 * Physics, simple but recognisable: a reefer's air temperature warms towards ambient and is
 * pulled down by its compressor, which cycles on a ±0.6 °C band around setpoint, defrosts
 * every 8 h for 25 min, and when failed lets the box drift to ambient over hours. Air
 * temperature follows latitude and the time of day; sea state drifts slowly; shock grows
 * with sea state. A container that goes overboard spikes 8–15 g, parts from the ship's
 * track at about a knot, and falls silent after a few minutes.
 */
import type { GeoPoint } from '../sea-lanes/index.js';
import { Random, roundTo } from './random.js';
import type { Scenario } from './scenario.js';
import { buildTimeline, type ContainerPlan, type ShipTimeline, type ShipWhereabouts, type VoyageTimeline } from './timeline.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DEFROST_EVERY_MS = 8 * HOUR_MS;
const DEFROST_MS = 25 * MINUTE_MS;
const COMPRESSOR_BAND_C = 0.6;
/** Physics step: the reefer's temperature is integrated in steps no longer than this. */
const STEP_MS = 30_000;

export type MessageKind = 'readings' | 'ships' | 'manifests' | 'events';

export interface FleetMessage {
  /** Simulated time the device sent it (epoch ms). */
  readonly timeMs: number;
  readonly kind: MessageKind;
  readonly topic: string;
  readonly payload: string;
  readonly qos: 0 | 1 | 2;
}

/** Environment at a place and time: what a ship's sensors measure and containers feel. */
function airTemperatureC(position: GeoPoint, timeMs: number): number {
  const localSolarHour = (((timeMs / HOUR_MS + position.lon / 15) % 24) + 24) % 24;
  return 28 - 0.42 * Math.abs(position.lat) + 3 * Math.sin(((localSolarHour - 9) / 24) * 2 * Math.PI);
}

function seaStateAt(seed: number, timeMs: number): number {
  const hours = timeMs / HOUR_MS;
  const level = 3 + 1.8 * Math.sin(hours / 17 + seed) + 1.2 * Math.sin(hours / 5.3 + seed * 2);
  return Math.min(9, Math.max(0, Math.round(level)));
}

type Location =
  | { readonly kind: 'ashore'; readonly port: GeoPoint & { code: string } }
  | { readonly kind: 'aboard'; readonly ship: ShipTimeline }
  | { readonly kind: 'overboard' };

interface Overboard {
  readonly atMs: number;
  readonly silentFromMs: number;
  readonly from: GeoPoint;
  readonly driftBearingDeg: number;
}

class ContainerModel {
  readonly random: Random;
  private lastMs: number;
  private tempC: number;
  private humidityPct: number;
  private readonly humidityLevelPct: number;
  private batteryPct: number;
  private compressorOn = false;
  private nextDefrostMs: number;
  private failure: { readonly mode: 'compressor' | 'power' | 'sensor'; readonly atMs: number } | undefined;
  private stuckTempC: number | undefined;
  private doorOpen: { readonly fromMs: number; readonly untilMs: number } | undefined;
  overboard: Overboard | undefined;

  constructor(
    readonly plan: ContainerPlan,
    seed: number,
    startMs: number,
  ) {
    this.random = new Random(seed, `container/${plan.id}`);
    this.lastMs = startMs;
    this.tempC = plan.kind === 'reefer' ? plan.setpointC + this.random.between(-0.4, 0.4) : 22 + this.random.between(-2, 2);
    this.humidityLevelPct = plan.kind === 'reefer' ? this.random.between(75, 92) : this.random.between(45, 70);
    this.humidityPct = this.humidityLevelPct;
    this.batteryPct = plan.kind === 'reefer' ? 100 : this.random.between(70, 100);
    this.nextDefrostMs = startMs + this.random.between(0, DEFROST_EVERY_MS);
  }

  setFailure(mode: 'compressor' | 'power' | 'sensor', atMs: number): void {
    this.failure = { mode, atMs };
  }

  setDoorOpen(fromMs: number, untilMs: number): void {
    this.doorOpen = { fromMs, untilMs };
  }

  failed(timeMs: number): 'compressor' | 'power' | 'sensor' | undefined {
    return this.failure !== undefined && timeMs >= this.failure.atMs ? this.failure.mode : undefined;
  }

  doorIsOpen(timeMs: number): boolean {
    return this.doorOpen !== undefined && timeMs >= this.doorOpen.fromMs && timeMs < this.doorOpen.untilMs;
  }

  location(timeMs: number, ships: ReadonlyMap<string, ShipTimeline>): Location {
    if (this.overboard !== undefined && timeMs >= this.overboard.atMs) return { kind: 'overboard' };
    const moves = this.plan.moves;
    let port = moves[0]!.load;
    for (const move of moves) {
      if (timeMs < move.loadMs) return { kind: 'ashore', port };
      if (timeMs < move.unloadMs) return { kind: 'aboard', ship: ships.get(move.ship)! };
      port = move.unload;
    }
    return { kind: 'ashore', port };
  }

  position(timeMs: number, ships: ReadonlyMap<string, ShipTimeline>): GeoPoint {
    return this.positionAt(timeMs, this.location(timeMs, ships));
  }

  positionAt(timeMs: number, location: Location, whereabouts?: ShipWhereabouts): GeoPoint {
    if (location.kind === 'ashore') return { lat: location.port.lat, lon: location.port.lon };
    if (location.kind === 'aboard') return (whereabouts ?? location.ship.whereabouts(timeMs)).position;
    const overboard = this.overboard!;
    // Drifting at about a knot away from where it went over.
    const driftedNm = ((timeMs - overboard.atMs) / HOUR_MS) * 1.0;
    return destinationPoint(overboard.from, overboard.driftBearingDeg, driftedNm);
  }

  /** Advances the box's physics to `timeMs` under the given ambient temperature. */
  advance(timeMs: number, ambientC: number, powered: boolean): void {
    let now = this.lastMs;
    while (now < timeMs) {
      const stepMs = Math.min(STEP_MS, timeMs - now);
      const minutes = stepMs / MINUTE_MS;
      now += stepMs;
      const door = this.doorIsOpen(now);
      // A reefer (insulated, its cargo's thermal mass) drifts towards ambient over a day or
      // two; a dry box (bare steel) within a couple of hours; an open door in minutes.
      const leak = (door ? 1 / 20 : this.plan.kind === 'reefer' ? 1 / 2400 : 1 / 120) * minutes;
      this.tempC += (ambientC - this.tempC) * Math.min(1, leak);
      if (this.plan.kind === 'reefer') {
        const failure = this.failed(now);
        const running = powered && failure !== 'compressor' && failure !== 'power';
        if (running && now >= this.nextDefrostMs && now < this.nextDefrostMs + DEFROST_MS) {
          this.compressorOn = false;
          this.tempC += 0.18 * minutes; // heater on the evaporator coil
        } else {
          if (running && now >= this.nextDefrostMs + DEFROST_MS) this.nextDefrostMs += DEFROST_EVERY_MS;
          if (!running) this.compressorOn = false;
          else if (this.tempC > this.plan.setpointC + COMPRESSOR_BAND_C) this.compressorOn = true;
          else if (this.tempC < this.plan.setpointC - COMPRESSOR_BAND_C) this.compressorOn = false;
          if (this.compressorOn) this.tempC -= 0.35 * minutes;
        }
        if (!powered || this.failed(now) === 'power') this.batteryPct = Math.max(0, this.batteryPct - 0.4 * (minutes / 60));
        else this.batteryPct = Math.min(100, this.batteryPct + 2 * (minutes / 60));
      } else {
        this.batteryPct = Math.max(0, this.batteryPct - 0.002 * (minutes / 60));
      }
      const humidityTarget = door ? 85 : this.humidityLevelPct;
      this.humidityPct += (humidityTarget - this.humidityPct) * Math.min(1, (door ? 0.2 : 0.02) * minutes);
    }
    this.lastMs = Math.max(this.lastMs, timeMs);
  }

  compressorState(timeMs: number): 'on' | 'off' | 'defrost' | 'failed' {
    const failure = this.failed(timeMs);
    if (failure === 'compressor' || failure === 'power') return 'failed';
    if (timeMs >= this.nextDefrostMs && timeMs < this.nextDefrostMs + DEFROST_MS) return 'defrost';
    return this.compressorOn ? 'on' : 'off';
  }

  /** The sensor's view of the box: noise at the sensor's resolution, stuck if it failed. */
  reading(timeMs: number, position: GeoPoint, shockG: number): Record<string, unknown> {
    let tempC = roundTo(this.tempC + this.random.normal() * 0.04, 2);
    if (this.failed(timeMs) === 'sensor') tempC = this.stuckTempC ??= tempC;
    return {
      ts: timeMs,
      container: this.plan.id,
      tempC,
      ...(this.plan.kind === 'reefer' ? { setpointC: this.plan.setpointC, compressor: this.compressorState(timeMs) } : {}),
      humidityPct: roundTo(Math.min(100, Math.max(0, this.humidityPct + this.random.normal() * 0.3)), 1),
      door: this.doorIsOpen(timeMs) ? 'open' : 'closed',
      shockG: roundTo(shockG, 2),
      batteryPct: roundTo(this.batteryPct, 1),
      lat: roundTo(position.lat, 5),
      lon: roundTo(position.lon, 5),
    };
  }
}

/** The point `distance` nm from `from` on initial bearing `bearing`. */
function destinationPoint(from: GeoPoint, bearing: number, distance: number): GeoPoint {
  const δ = distance / 3440.065;
  const θ = (bearing * Math.PI) / 180;
  const φ1 = (from.lat * Math.PI) / 180;
  const λ1 = (from.lon * Math.PI) / 180;
  const φ2 = Math.asin(Math.sin(φ1) * Math.cos(δ) + Math.cos(φ1) * Math.sin(δ) * Math.cos(θ));
  const λ2 = λ1 + Math.atan2(Math.sin(θ) * Math.sin(δ) * Math.cos(φ1), Math.cos(δ) - Math.sin(φ1) * Math.sin(φ2));
  const lon = ((((λ2 * 180) / Math.PI + 540) % 360) + 360) % 360 - 180;
  return { lat: (φ2 * 180) / Math.PI, lon };
}

interface Scheduled {
  readonly timeMs: number;
  readonly sequence: number;
  readonly run: (timeMs: number) => void;
}

/** Min-heap on (time, sequence): ties go in the order they were scheduled, so runs repeat exactly. */
class Schedule {
  private readonly items: Scheduled[] = [];
  private sequence = 0;

  get nextTimeMs(): number | undefined {
    return this.items[0]?.timeMs;
  }

  add(timeMs: number, run: (timeMs: number) => void): void {
    const item = { timeMs, sequence: this.sequence++, run };
    const items = this.items;
    let index = items.length;
    items.push(item);
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!before(item, items[parent]!)) break;
      items[index] = items[parent]!;
      index = parent;
    }
    items[index] = item;
  }

  pop(): Scheduled {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      let index = 0;
      for (;;) {
        const left = 2 * index + 1;
        if (left >= items.length) break;
        const right = left + 1;
        const child = right < items.length && before(items[right]!, items[left]!) ? right : left;
        if (!before(items[child]!, last)) break;
        items[index] = items[child]!;
        index = child;
      }
      items[index] = last;
    }
    return top;
  }
}

function before(left: Scheduled, right: Scheduled): boolean {
  return left.timeMs < right.timeMs || (left.timeMs === right.timeMs && left.sequence < right.sequence);
}

export interface FleetModelOptions {
  /** Stop every device at this simulated time (default: when the last ship leaves its last port). */
  readonly endMs?: number;
  /**
   * Simulate only some of the fleet, for emulators that split it over threads: the
   * containers for which this returns true (by id and position in the scenario), and the
   * ships if `ships` is true. Each part's messages are exactly those of the whole fleet's
   * run for the same devices, since every device draws from its own random stream.
   */
  readonly include?: { readonly containers?: (id: string, index: number) => boolean; readonly ships?: boolean };
  /**
   * Only what reaches one ship's gateway: containers' readings and events while they are
   * aboard that ship (or have just gone over its side), nothing from containers ashore, which
   * would report to a port's systems. Manifests and ship reports are unaffected.
   */
  readonly onlyAboard?: string;
  /**
   * Only what one port's terminal hears (a port code): containers' readings and events while
   * they stand ashore there after being unloaded there, as reefer monitoring and trackers go
   * on reporting to the port's systems; nothing from the ships, no manifests (the ship sends
   * those) and not the crane moves (the ship hears them).
   */
  readonly onlyAshoreAt?: string;
}

export class FleetModel {
  readonly timeline: VoyageTimeline;
  readonly endMs: number;
  private readonly containers = new Map<string, ContainerModel>();
  private readonly schedule = new Schedule();
  private readonly prefix: string;
  private out: FleetMessage[] = [];
  private nowMs: number;

  constructor(
    readonly scenario: Scenario,
    private readonly options: FleetModelOptions = {},
  ) {
    this.timeline = buildTimeline(scenario);
    this.endMs = options.endMs ?? this.timeline.endMs;
    this.prefix = scenario.topicPrefix;
    this.nowMs = this.timeline.startMs;
    const startMs = this.timeline.startMs;
    const includeContainer = options.include?.containers ?? (() => true);
    this.timeline.containers.forEach((plan, index) => {
      if (includeContainer(plan.id, index)) this.containers.set(plan.id, new ContainerModel(plan, scenario.seed, startMs));
    });
    const ashore = options.onlyAshoreAt !== undefined;
    this.planManifests();
    this.planEvents();
    this.planReadings();
    if ((options.include?.ships ?? true) && !ashore) this.planShips();
  }

  /** Simulated time the fleet has been advanced to. */
  get timeMs(): number {
    return this.nowMs;
  }

  get containerIds(): string[] {
    return [...this.containers.keys()];
  }

  /** Every message sent after the last call and up to `timeMs` (inclusive), in time order. */
  advanceTo(timeMs: number): FleetMessage[] {
    const until = Math.min(timeMs, this.endMs);
    for (let next = this.schedule.nextTimeMs; next !== undefined && next <= until; next = this.schedule.nextTimeMs) {
      const item = this.schedule.pop();
      item.run(item.timeMs);
    }
    this.nowMs = Math.max(this.nowMs, until);
    const messages = this.out;
    this.out = [];
    return messages;
  }

  /** Where a container is at a time: for tests, detectors' expectations and the demo. */
  containerPosition(id: string, timeMs: number): GeoPoint {
    const container = this.containers.get(id);
    if (container === undefined) throw new RangeError(`no container ${id}`);
    return container.position(timeMs, this.timeline.ships);
  }

  /** Whether a container's own messages reach this emulation's gateway (see `onlyAboard`). */
  private heard(container: ContainerModel, timeMs: number): boolean {
    const port = this.options.onlyAshoreAt;
    if (port !== undefined) {
      const location = container.location(timeMs, this.timeline.ships);
      return location.kind === 'ashore' && location.port.code === port && container.plan.moves.some((move) => move.unload.code === port && move.unloadMs <= timeMs);
    }
    const ship = this.options.onlyAboard;
    if (ship === undefined) return true;
    const location = container.location(timeMs, this.timeline.ships);
    if (location.kind === 'aboard') return location.ship.id === ship;
    if (location.kind === 'overboard') return true;
    return false;
  }

  private emit(timeMs: number, kind: MessageKind, topic: string, body: Record<string, unknown>): void {
    // A port's gateway hears its containers, not the manifests (the ship sends them).
    if (kind === 'manifests' && this.options.onlyAshoreAt !== undefined) return;
    this.out.push({ timeMs, kind, topic: `${this.prefix}/${topic}`, payload: JSON.stringify(body), qos: this.scenario.qos[kind] });
  }

  private planManifests(): void {
    const startMs = this.timeline.startMs;
    for (const plan of this.timeline.containers) {
      if (!this.containers.has(plan.id)) continue;
      for (const move of plan.moves) {
        const common = { container: plan.id, owner: plan.owner, kind: plan.kind, cargo: plan.cargo, ship: move.ship };
        this.schedule.add(startMs, (t) =>
          this.emit(t, 'manifests', `manifests/${plan.id}`, { ts: t, event: 'booked', ...common, from: move.load.code, to: move.unload.code }),
        );
        this.schedule.add(move.loadMs, (t) => {
          if (this.isOverboard(plan.id, t)) return;
          this.emit(t, 'manifests', `manifests/${plan.id}`, { ts: t, event: 'loaded', ...common, port: move.load.code });
          this.craneShock(plan.id, t);
        });
        this.schedule.add(move.unloadMs, (t) => {
          if (this.isOverboard(plan.id, t)) return; // nothing to unload
          this.emit(t, 'manifests', `manifests/${plan.id}`, { ts: t, event: 'unloaded', ...common, port: move.unload.code });
          this.craneShock(plan.id, t);
        });
      }
    }
  }

  private isOverboard(id: string, timeMs: number): boolean {
    const overboard = this.containers.get(id)!.overboard;
    return overboard !== undefined && timeMs >= overboard.atMs;
  }

  private craneShock(id: string, timeMs: number): void {
    const container = this.containers.get(id)!;
    const ashore = this.options.onlyAshoreAt !== undefined;
    // The crane lifts it on or off: the ship hears it when it is aboard just before or after.
    if (!ashore && !this.heard(container, timeMs) && !this.heard(container, timeMs - 1)) return;
    const g = roundTo(container.random.between(2.1, 3.4), 2);
    // A port's gateway does not hear the crane (the ship does), but the unit drew its value all the same.
    if (ashore) return;
    this.emit(timeMs, 'events', `containers/${id}/event`, { ts: timeMs, container: id, event: 'shock', shockG: g, cause: 'crane' });
  }

  private planEvents(): void {
    for (const event of this.scenario.events) {
      const container = this.containers.get(event.container);
      if (container === undefined) continue;
      const ship = this.timeline.ships.get(event.at.ship)!;
      const atMs = ship.resolve(event.at);
      if (event.kind === 'door-open') {
        const untilMs = atMs + event.minutes * MINUTE_MS;
        container.setDoorOpen(atMs, untilMs);
        const door = (state: 'open' | 'closed') => (t: number) => {
          if (this.heard(container, t)) this.emit(t, 'events', `containers/${event.container}/event`, { ts: t, container: event.container, event: 'door', door: state });
        };
        this.schedule.add(atMs, door('open'));
        this.schedule.add(untilMs, door('closed'));
      } else if (event.kind === 'reefer-failure') {
        container.setFailure(event.mode, atMs);
        if (event.mode !== 'sensor') {
          this.schedule.add(atMs, (t) => {
            if (!this.heard(container, t)) return;
            this.emit(t, 'events', `containers/${event.container}/event`, { ts: t, container: event.container, event: 'alarm', alarm: event.mode === 'power' ? 'power-off' : 'compressor-fault' });
          });
        }
      } else {
        this.schedule.add(atMs, (t) => {
          const from = container.position(t, this.timeline.ships);
          const whereabouts = ship.whereabouts(t);
          // It leaves the ship sideways: drifting at right angles to the ship's course.
          const driftBearingDeg = (whereabouts.position.headingDeg + (container.random.chance(0.5) ? 90 : 270)) % 360;
          container.overboard = { atMs: t, silentFromMs: t + event.reportsForMinutes * MINUTE_MS, from, driftBearingDeg };
          const g = roundTo(container.random.between(8, 15), 2);
          if (this.heard(container, t)) this.emit(t, 'events', `containers/${event.container}/event`, { ts: t, container: event.container, event: 'shock', shockG: g, lat: roundTo(from.lat, 5), lon: roundTo(from.lon, 5) });
        });
      }
    }
  }

  private planReadings(): void {
    const intervalMs = this.scenario.readingIntervalS * 1000;
    const startMs = this.timeline.startMs;
    for (const container of this.containers.values()) {
      // Each unit reports on its own clock: a fixed phase within the interval.
      const phaseMs = Math.floor(container.random.uniform() * intervalMs);
      const sensor = container.plan.kind === 'reefer' ? 'reefer' : 'telemetry';
      const report = (t: number) => {
        const overboard = container.overboard;
        if (overboard !== undefined && t >= overboard.silentFromMs) return; // sank, or its antenna did
        const location = container.location(t, this.timeline.ships);
        const whereabouts = location.kind === 'aboard' ? location.ship.whereabouts(t) : undefined;
        const position = container.positionAt(t, location, whereabouts);
        const ambientC = airTemperatureC(position, t) + (location.kind === 'aboard' ? 4 : 2); // sun on steel
        // Reefers are plugged in aboard and in the port's reefer stacks; not once overboard.
        container.advance(t, ambientC, location.kind !== 'overboard');
        const seaState = whereabouts?.kind === 'at-sea' ? seaStateAt(this.scenario.seed, t) : 0;
        const shockG = location.kind === 'overboard' ? container.random.between(0.5, 2) : 0.02 + 0.03 * seaState * Math.abs(container.random.normal());
        // Taken whether or not this gateway hears it, so the unit's noise is the same either way.
        const reading = container.reading(t, position, shockG);
        if (this.heard(container, t)) this.emit(t, 'readings', `containers/${container.plan.id}/${sensor}`, reading);
        if (t + intervalMs <= this.endMs) this.schedule.add(t + intervalMs, report);
      };
      this.schedule.add(startMs + phaseMs, report);
    }
  }

  private planShips(): void {
    const intervalMs = this.scenario.shipReportIntervalS * 1000;
    for (const ship of this.timeline.ships.values()) {
      const random = new Random(this.scenario.seed, `ship/${ship.id}`);
      const report = (t: number) => {
        const where = ship.whereabouts(t);
        const position = where.position;
        const atSea = where.kind === 'at-sea';
        const seaState = atSea ? seaStateAt(this.scenario.seed, t) : 1;
        this.emit(t, 'ships', `ships/${ship.id}/position`, {
          ts: t,
          ship: ship.id,
          lat: roundTo(position.lat, 5),
          lon: roundTo(position.lon, 5),
          speedKn: atSea ? roundTo(ship.speedKnots + random.normal() * 0.3, 1) : 0,
          headingDeg: atSea ? roundTo(position.headingDeg, 1) : null,
          status: atSea ? 'at-sea' : 'berthed',
          ...(atSea ? { from: where.leg.from.code, to: where.leg.to.code } : { port: where.port.code }),
        });
        this.emit(t, 'ships', `ships/${ship.id}/environment`, {
          ts: t,
          ship: ship.id,
          airTempC: roundTo(airTemperatureC(position, t) + random.normal() * 0.2, 1),
          seaState,
          windKn: roundTo(Math.max(0, seaState * 4.5 + random.normal() * 2), 1),
        });
        if (t + intervalMs <= this.endMs) this.schedule.add(t + intervalMs, report);
      };
      this.schedule.add(this.timeline.startMs, report);
    }
  }
}
