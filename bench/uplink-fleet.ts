/**
 * The standard emulated reefer fleet as a ship's log holds it, without running MQTT: the
 * readings the fleet simulation (devices/fleet) gives N reefers aboard one ship from Singapore
 * to Sydney, with the identity, times and headers the gateway gives them. Used by the uplink
 * benchmark and tests.
 *
 * Realistic in the ways that matter to a link's encoding:
 * - each reefer reports once a minute on its own clock (a fixed phase within the minute), so
 *   readings arrive spread over the minute, in arrival order;
 * - a reading is what the simulation's units send: temperature against setpoint with the
 *   compressor cycling and defrosting, humidity, door, shock from the sea state, battery, and
 *   the position of the ship it rides on;
 * - the gateway stamps each reading durable a few milliseconds after the device took it, and
 *   keeps the MQTT topic as a header;
 * - each container's topic has dense offsets from 0.
 */
import type { LogRecord } from '../core/index.js';
import { FleetModel, parseScenario, Random } from '../devices/fleet/index.js';

export interface FleetOptions {
  readonly containers: number;
  readonly origin?: string;
  /** Device to durable at the gateway, in [min, max] ms. */
  readonly latencyMs?: readonly [number, number];
  readonly seed?: number;
}

export function containerId(index: number): string {
  return `C${String(index + 1).padStart(5, '0')}`;
}

/** Simulated time advanced per step of the generator: bounded memory, whatever is taken. */
const STEP_MS = 10 * 60_000;

/** Readings of the whole fleet, minute after minute, in the order the gateway stored them. */
export function* fleetRecords(options: FleetOptions): Generator<LogRecord> {
  const origin = options.origin ?? 'AURORA';
  const seed = options.seed ?? 7;
  const scenario = parseScenario(
    {
      name: 'uplink-fleet',
      seed,
      ships: [{ id: origin, speedKnots: 18, calls: [{ port: 'SGSIN', dwellHours: 1 }, { port: 'AUSYD', dwellHours: 6 }] }],
      containers: [{ ids: `${containerId(0)}-${containerId(options.containers - 1)}`, owner: 'Acme', kind: 'reefer', setpointC: -18, moves: [{ ship: origin, load: 'SGSIN', unload: 'AUSYD' }] }],
    },
    'uplink-fleet',
  );
  const model = new FleetModel(scenario, { include: { ships: false } });
  const latency = new Random(seed, 'gateway-latency');
  const [latencyMin, latencyMax] = options.latencyMs ?? [2, 9];
  const offsets = new Map<string, number>();
  // From just after the ship sails: every container aboard and reporting.
  let timeMs = model.timeline.ships.get(origin)!.legs[0]!.departMs;
  model.advanceTo(timeMs);
  while (timeMs < model.endMs) {
    timeMs += STEP_MS;
    for (const message of model.advanceTo(timeMs)) {
      if (message.kind !== 'readings') continue;
      const topic = message.topic.split('/')[2]!;
      const offset = offsets.get(topic) ?? 0;
      offsets.set(topic, offset + 1);
      yield {
        origin,
        stream: 'containers',
        topic,
        offset,
        eventTimeMs: message.timeMs,
        ingestTimeMs: message.timeMs + latency.integer(latencyMin, latencyMax),
        headers: { 'mqtt-topic': message.topic },
        payload: Buffer.from(message.payload),
      };
    }
  }
}

/** The next `count` records of a fleet generator. */
export function take(records: Iterator<LogRecord>, count: number): LogRecord[] {
  const taken: LogRecord[] = [];
  for (let index = 0; index < count; index += 1) {
    const next = records.next();
    if (next.done === true) break;
    taken.push(next.value);
  }
  return taken;
}

/** An alert as the gateway stores one: a JSON document on the alerts stream. */
export function alertRecord(origin: string, offset: number, container: string, atMs: number): LogRecord {
  return {
    origin,
    stream: 'alerts',
    topic: container,
    offset,
    eventTimeMs: atMs,
    ingestTimeMs: atMs,
    headers: { 'mqtt-topic': `bigblue/alerts/${container}` },
    payload: Buffer.from(JSON.stringify({ ts: atMs, container, kind: 'shock', severity: 'critical', position: { lat: -33.85, lon: 151.2 } })),
  };
}
