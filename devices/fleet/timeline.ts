/**
 * When each ship is where, and when each container is loaded and unloaded: everything the
 * scenario fixes in advance, computed once. A ship starts berthed at its first call, sails
 * each leg along the sea lanes at its speed, and stays berthed at its last port.
 */
import { portByCode, SeaLanes, type Port, type RoutePosition, type SeaRoute } from '../sea-lanes/index.js';
import type { Scenario, When } from './scenario.js';
import { expandIds } from './scenario.js';

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;
/** Containers are unloaded from an hour after arrival, loaded until two hours before departure, one crane move every few minutes. */
const UNLOAD_AFTER_ARRIVAL_MS = HOUR_MS;
const LOAD_BEFORE_DEPARTURE_MS = 3 * HOUR_MS;
const CRANE_MOVE_MS = 2 * MINUTE_MS;

export interface PortCall {
  readonly port: Port;
  readonly arriveMs: number;
  readonly departMs: number;
}

export interface Leg {
  readonly from: Port;
  readonly to: Port;
  readonly departMs: number;
  readonly arriveMs: number;
  readonly route: SeaRoute;
}

export type ShipWhereabouts =
  | { readonly kind: 'berthed'; readonly port: Port; readonly position: RoutePosition }
  | { readonly kind: 'at-sea'; readonly leg: Leg; readonly position: RoutePosition };

export class ShipTimeline {
  readonly calls: readonly PortCall[];
  readonly legs: readonly Leg[];

  constructor(
    readonly id: string,
    readonly speedKnots: number,
    calls: readonly { port: string; dwellHours: number }[],
    startMs: number,
    lanes: SeaLanes,
  ) {
    const portCalls: PortCall[] = [];
    const legs: Leg[] = [];
    let arriveMs = startMs;
    calls.forEach((call, index) => {
      const port = portByCode(call.port);
      const departMs = arriveMs + call.dwellHours * HOUR_MS;
      portCalls.push({ port, arriveMs, departMs });
      const next = calls[index + 1];
      if (next !== undefined) {
        const to = portByCode(next.port);
        const route = lanes.route(port, to);
        const legArriveMs = departMs + Math.round((route.lengthNm / speedKnots) * HOUR_MS);
        legs.push({ from: port, to, departMs, arriveMs: legArriveMs, route });
        arriveMs = legArriveMs;
      }
    });
    this.calls = portCalls;
    this.legs = legs;
  }

  /** When the ship leaves its last port: the end of its part of the scenario. */
  get endMs(): number {
    return this.calls.at(-1)!.departMs;
  }

  whereabouts(timeMs: number): ShipWhereabouts {
    for (const leg of this.legs) {
      if (timeMs >= leg.departMs && timeMs < leg.arriveMs) {
        const sailedNm = ((timeMs - leg.departMs) / HOUR_MS) * this.speedKnots;
        return { kind: 'at-sea', leg, position: leg.route.positionAt(sailedNm) };
      }
    }
    // Berthed: at the last call that began by now (or the first, before the scenario starts).
    let call = this.calls[0]!;
    for (const candidate of this.calls) if (candidate.arriveMs <= timeMs) call = candidate;
    return {
      kind: 'berthed',
      port: call.port,
      position: { lat: call.port.lat, lon: call.port.lon, headingDeg: 0, distanceNm: 0, arrived: true },
    };
  }

  callAt(port: string): PortCall {
    const call = this.calls.find((candidate) => candidate.port.code === port);
    if (call === undefined) throw new RangeError(`${this.id} does not call at ${port}`);
    return call;
  }

  /** The moment a scenario event names. */
  resolve(when: When): number {
    if ('afterDepartureFrom' in when) return this.callAt(when.afterDepartureFrom).departMs + when.hours * HOUR_MS;
    return this.callAt(when.beforeArrivalAt).arriveMs - when.hours * HOUR_MS;
  }
}

export interface ContainerMove {
  readonly ship: string;
  readonly load: Port;
  readonly unload: Port;
  readonly loadMs: number;
  readonly unloadMs: number;
}

export interface ContainerPlan {
  readonly id: string;
  readonly owner: string;
  readonly kind: 'reefer' | 'dry';
  readonly setpointC: number;
  readonly cargo: string;
  readonly moves: readonly ContainerMove[];
}

export interface VoyageTimeline {
  readonly startMs: number;
  readonly endMs: number;
  readonly ships: ReadonlyMap<string, ShipTimeline>;
  readonly containers: readonly ContainerPlan[];
}

export function buildTimeline(scenario: Scenario, lanes: SeaLanes = SeaLanes.load()): VoyageTimeline {
  const startMs = Date.parse(scenario.start);
  const ships = new Map(scenario.ships.map((ship) => [ship.id, new ShipTimeline(ship.id, ship.speedKnots, ship.calls, startMs, lanes)]));
  // Crane order: per (ship, port) the containers are moved one after another, in scenario order.
  const loadsAt = new Map<string, number>();
  const unloadsAt = new Map<string, number>();
  const containers: ContainerPlan[] = [];
  for (const group of scenario.containers) {
    for (const id of (Array.isArray(group.ids) ? group.ids : [group.ids]).flatMap(expandIds)) {
      const moves = group.moves.map((move) => {
        const ship = ships.get(move.ship)!;
        const loadCall = ship.callAt(move.load);
        const afterLoad = ship.calls.slice(ship.calls.indexOf(loadCall) + 1);
        const unloadCall = afterLoad.find((call) => call.port.code === move.unload)!;
        const loadKey = `${move.ship}@${move.load}`;
        const unloadKey = `${move.ship}@${move.unload}`;
        const loadIndex = loadsAt.get(loadKey) ?? 0;
        const unloadIndex = unloadsAt.get(unloadKey) ?? 0;
        loadsAt.set(loadKey, loadIndex + 1);
        unloadsAt.set(unloadKey, unloadIndex + 1);
        const loadMs = Math.max(loadCall.arriveMs, loadCall.departMs - LOAD_BEFORE_DEPARTURE_MS) + loadIndex * CRANE_MOVE_MS;
        const unloadMs = unloadCall.arriveMs + UNLOAD_AFTER_ARRIVAL_MS + unloadIndex * CRANE_MOVE_MS;
        return { ship: move.ship, load: loadCall.port, unload: unloadCall.port, loadMs: Math.min(loadMs, loadCall.departMs - MINUTE_MS), unloadMs: Math.min(unloadMs, unloadCall.departMs - MINUTE_MS) };
      });
      containers.push({ id, owner: group.owner, kind: group.kind, setpointC: group.setpointC, cargo: group.cargo, moves });
    }
  }
  const endMs = Math.max(...[...ships.values()].map((ship) => ship.endMs));
  return { startMs, endMs, ships, containers };
}
