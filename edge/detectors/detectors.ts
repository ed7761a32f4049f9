/**
 * Alert detectors over a site's log: what a carrier wants to hear about at once, computed
 * from the records the gateway stored. Pure and deterministic: `observe` takes records in
 * the order the site stored them and returns the alerts they complete (`checkSilences` those
 * that silence completes); time is the records'
 * event time (the latest seen across all streams is "now"), never the wall clock, so a
 * replay of the same records raises the same alerts with the same episode keys.
 *
 * Rules (thresholds in DetectorOptions):
 * - overboard: a container aboard a ship at sea reports a shock of at least `shockG`; within
 *   `divergeWindowMs` its own position parts from the ship's by more than `divergeNm`; then it
 *   is silent for `silenceMs` while the ship goes on reporting. The alert carries the last
 *   position and time it was seen, the shock, and where the ship was.
 * - temperature excursion: a reefer more than `excursionC` from its setpoint (defrosts
 *   excepted) for `excursionMs`; once per episode, re-armed when it is back in band.
 * - door open at sea: a container aboard a ship at sea reports its door open; once per
 *   opening.
 * (Silence of any sensor is the gateway's own watchdog, `mqtt.streams.<s>.silenceAlertMs`.)
 *
 * Who is aboard what comes from the manifests stream (`loaded` names the ship, `unloaded`
 * ends it); where a ship is, from the ships stream (`status: at-sea | berthed`).
 */
import type { LogRecord } from '../../core/index.js';
import { HANDOFF_HEADER } from '../../core/writership.js';

export interface DetectorOptions {
  readonly shockG: number;
  readonly divergeNm: number;
  readonly divergeWindowMs: number;
  readonly silenceMs: number;
  readonly excursionC: number;
  readonly excursionMs: number;
}

export const DEFAULT_DETECTOR_OPTIONS: DetectorOptions = {
  shockG: 5,
  divergeNm: 1,
  divergeWindowMs: 30 * 60_000,
  silenceMs: 5 * 60_000,
  excursionC: 3,
  excursionMs: 30 * 60_000,
};

export type AlertKind = 'overboard' | 'temperature-excursion' | 'door-open-at-sea';

export interface AlertDraft {
  readonly kind: AlertKind;
  /** The container the alert is about: the alert's topic. */
  readonly container: string;
  /** Event time at which the condition was complete. */
  readonly timeMs: number;
  /** Stable name of this occurrence: the same records always give the same key. */
  readonly episode: string;
  readonly body: Record<string, unknown>;
}

interface Position {
  readonly timeMs: number;
  readonly lat: number;
  readonly lon: number;
}

interface ShipState extends Position {
  readonly atSea: boolean;
}

interface ContainerState {
  ship: string | undefined;
  /** Event time of its latest record of any kind: it is alive until it goes silent. */
  lastSeenMs: number;
  lastPosition: Position | undefined;
  shock: { readonly timeMs: number; readonly g: number; readonly ship: string } | undefined;
  diverged: { readonly timeMs: number; readonly separationNm: number; readonly ship: Position } | undefined;
  overboardRaised: boolean;
  excursionSince: number | undefined;
  excursionRaised: boolean;
  doorOpenSince: number | undefined;
}

const EARTH_RADIUS_NM = 3440.065;
const RAD = Math.PI / 180;

function separationNm(left: { lat: number; lon: number }, right: { lat: number; lon: number }): number {
  const dLat = (right.lat - left.lat) * RAD;
  const dLon = (right.lon - left.lon) * RAD;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(left.lat * RAD) * Math.cos(right.lat * RAD) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_NM * Math.asin(Math.min(1, Math.sqrt(h)));
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function parseObject(payload: Uint8Array): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(decoder.decode(payload));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const finite = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);

function positionOf(body: Record<string, unknown>, timeMs: number): Position | undefined {
  const lat = finite(body.lat);
  const lon = finite(body.lon);
  if (lat === undefined || lon === undefined || Math.abs(lat) > 90 || Math.abs(lon) > 180) return undefined;
  return { timeMs, lat, lon };
}

export class FleetDetectors {
  private readonly options: DetectorOptions;
  private readonly ships = new Map<string, ShipState>();
  private readonly containers = new Map<string, ContainerState>();
  /** Containers past steps 1 and 2 of overboard, waiting for silence. */
  private readonly suspects = new Set<string>();
  private nowMs = -Infinity;
  /** Records whose payload could not be read as a JSON object; counted, never fatal. */
  unreadable = 0;

  constructor(options: Partial<DetectorOptions> = {}) {
    this.options = { ...DEFAULT_DETECTOR_OPTIONS, ...options };
  }

  private container(id: string): ContainerState {
    let state = this.containers.get(id);
    if (state === undefined) {
      state = {
        ship: undefined,
        lastSeenMs: -Infinity,
        lastPosition: undefined,
        shock: undefined,
        diverged: undefined,
        overboardRaised: false,
        excursionSince: undefined,
        excursionRaised: false,
        doorOpenSince: undefined,
      };
      this.containers.set(id, state);
    }
    return state;
  }

  /** Feeds one stored record; returns the alerts it completes. */
  observe(record: LogRecord): AlertDraft[] {
    if (record.stream !== 'containers' && record.stream !== 'ships' && record.stream !== 'manifests') return [];
    // A handoff record (core/writership.ts) says who writes the topic next; it is not a reading.
    if (record.headers[HANDOFF_HEADER] !== undefined) return [];
    const body = parseObject(record.payload);
    if (body === undefined) {
      this.unreadable += 1;
      return [];
    }
    const timeMs = record.eventTimeMs;
    // The clock is the devices' own: ships and containers report on event time. Manifests may
    // carry other clocks (access custody records are stamped when an operator made them), and a
    // clock jumping ahead would make every container look silent.
    if (record.stream !== 'manifests' && timeMs > this.nowMs) this.nowMs = timeMs;
    const alerts: AlertDraft[] = [];
    if (record.stream === 'ships') this.observeShip(record.topic, body, timeMs);
    else if (record.stream === 'manifests') this.observeManifest(record.topic, body);
    else this.observeContainer(record.topic, body, timeMs, alerts);
    return alerts;
  }

  /**
   * Overboard, step 3: silence, measured by the clock every other record moves. Call it only
   * when every stream has been read up to the same moment (caught up): while one stream is
   * read ahead of another, a container would look silent that is not.
   */
  checkSilences(): AlertDraft[] {
    const alerts: AlertDraft[] = [];
    this.collectSilences(alerts);
    return alerts;
  }

  private observeShip(ship: string, body: Record<string, unknown>, timeMs: number): void {
    const position = positionOf(body, timeMs);
    if (position === undefined) return; // environment reports carry no position
    this.ships.set(ship, { ...position, atSea: body.status === 'at-sea' });
  }

  private observeManifest(topic: string, body: Record<string, unknown>): void {
    const event = body.event ?? body.movement;
    const container = typeof body.container === 'string' ? body.container : topic;
    if (event === 'loaded' && typeof body.ship === 'string') this.container(container).ship = body.ship;
    else if (event === 'unloaded') this.container(container).ship = undefined;
  }

  private shipAtSea(state: ContainerState): ShipState | undefined {
    const ship = state.ship === undefined ? undefined : this.ships.get(state.ship);
    return ship?.atSea === true ? ship : undefined;
  }

  private observeContainer(id: string, body: Record<string, unknown>, timeMs: number, alerts: AlertDraft[]): void {
    const state = this.container(id);
    const options = this.options;
    const position = positionOf(body, timeMs);
    if (timeMs > state.lastSeenMs) state.lastSeenMs = timeMs;
    if (position !== undefined) state.lastPosition = position;
    const ship = this.shipAtSea(state);

    // Overboard, step 1: the shock.
    const shockG = finite(body.shockG);
    if (shockG !== undefined && shockG >= options.shockG && ship !== undefined && state.ship !== undefined && !state.overboardRaised) {
      state.shock = { timeMs, g: shockG, ship: state.ship };
      state.diverged = undefined;
    }
    // Step 2: its position parts from the ship's, soon after the shock.
    if (state.shock !== undefined && position !== undefined && state.diverged === undefined) {
      if (timeMs - state.shock.timeMs > options.divergeWindowMs) {
        state.shock = undefined; // a shock that came to nothing: a rough sea
      } else {
        const shipNow = this.ships.get(state.shock.ship);
        if (shipNow !== undefined) {
          const separation = separationNm(position, shipNow);
          if (separation > options.divergeNm) {
            state.diverged = { timeMs, separationNm: separation, ship: shipNow };
            this.suspects.add(id);
          }
        }
      }
    }

    // Temperature excursion (reefers: readings with a setpoint).
    const tempC = finite(body.tempC);
    const setpointC = finite(body.setpointC);
    if (tempC !== undefined && setpointC !== undefined) {
      const outside = Math.abs(tempC - setpointC) > options.excursionC && body.compressor !== 'defrost';
      if (!outside) {
        state.excursionSince = undefined;
        state.excursionRaised = false;
      } else {
        state.excursionSince ??= timeMs;
        if (!state.excursionRaised && timeMs - state.excursionSince >= options.excursionMs) {
          state.excursionRaised = true;
          alerts.push({
            kind: 'temperature-excursion',
            container: id,
            timeMs,
            episode: `temperature-excursion/${id}/${state.excursionSince}`,
            body: {
              ts: timeMs,
              kind: 'temperature-excursion',
              container: id,
              tempC,
              setpointC,
              since: new Date(state.excursionSince).toISOString(),
              ...(body.compressor === undefined ? {} : { compressor: body.compressor }),
              ...(position === undefined ? {} : { lat: position.lat, lon: position.lon }),
            },
          });
        }
      }
    }

    // Door open at sea.
    if (body.door === 'open' || body.door === 'closed') {
      if (body.door === 'closed') state.doorOpenSince = undefined;
      else if (state.doorOpenSince === undefined && ship !== undefined) {
        state.doorOpenSince = timeMs;
        alerts.push({
          kind: 'door-open-at-sea',
          container: id,
          timeMs,
          episode: `door-open-at-sea/${id}/${timeMs}`,
          body: {
            ts: timeMs,
            kind: 'door-open-at-sea',
            container: id,
            ship: state.ship,
            ...(position === undefined ? { lat: ship.lat, lon: ship.lon } : { lat: position.lat, lon: position.lon }),
          },
        });
      }
    }
  }

  private collectSilences(alerts: AlertDraft[]): void {
    for (const id of this.suspects) {
      const state = this.containers.get(id)!;
      if (state.diverged === undefined || state.overboardRaised || state.shock === undefined) {
        this.suspects.delete(id);
        continue;
      }
      if (this.nowMs - state.lastSeenMs < this.options.silenceMs) continue;
      this.suspects.delete(id);
      state.overboardRaised = true;
      const shock = state.shock;
      // Step 2 needed a position, so there is one.
      const lastSeen = state.lastPosition!;
      const ship = this.ships.get(shock.ship);
      alerts.push({
        kind: 'overboard',
        container: id,
        timeMs: this.nowMs,
        episode: `overboard/${id}/${shock.timeMs}`,
        body: {
          ts: this.nowMs,
          kind: 'overboard',
          container: id,
          ship: shock.ship,
          lastSeen: { ts: new Date(state.lastSeenMs).toISOString(), lat: lastSeen.lat, lon: lastSeen.lon, positionTs: new Date(lastSeen.timeMs).toISOString() },
          shockG: shock.g,
          shockAt: new Date(shock.timeMs).toISOString(),
          separationNm: Math.round(state.diverged.separationNm * 100) / 100,
          silentForMs: this.nowMs - state.lastSeenMs,
          ...(ship === undefined ? {} : { shipPosition: { ts: new Date(ship.timeMs).toISOString(), lat: ship.lat, lon: ship.lon } }),
        },
      });
    }
  }
}
