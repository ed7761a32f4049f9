/**
 * The standard emulated reefer fleet as a ship's log holds it, without running MQTT: the
 * readings of devices/emulator (`ReeferFleet.nextReading`, seeded), with the identity, times
 * and headers the gateway gives them. Used by the uplink benchmark and tests.
 *
 * Realistic in the ways that matter to a link's encoding:
 * - each container reports once a minute on its own clock: a fixed phase within the minute
 *   (containers power up at different times) and a couple of milliseconds of timer jitter,
 *   so readings arrive spread over the minute, not in one burst with one timestamp;
 * - the gateway stamps each reading durable a few milliseconds after the device took it;
 * - the MQTT topic of each reading is kept as a header, as the gateway does;
 * - records are in arrival order, each container's topic with dense offsets from 0.
 */
import type { LogRecord } from '../core/index.js';
import { ReeferFleet, seededRandom } from '../devices/emulator/index.js';

export interface FleetOptions {
  readonly containers: number;
  readonly origin?: string;
  readonly startMs?: number;
  readonly intervalMs?: number;
  /** Timer jitter of a device, ± this many ms. */
  readonly jitterMs?: number;
  /** Device to durable at the gateway, in [min, max] ms. */
  readonly latencyMs?: readonly [number, number];
  readonly seed?: number;
}

export function containerId(index: number): string {
  return `C${String(index + 1).padStart(5, '0')}`;
}

/** Readings of the whole fleet, minute after minute, in the order the gateway stored them. */
export function* fleetRecords(options: FleetOptions): Generator<LogRecord> {
  const random = seededRandom(options.seed ?? 7);
  const emulator = new ReeferFleet({
    brokerUrl: 'mqtt://unused',
    topicPrefix: 'bigblue/containers',
    containerIds: [],
    intervalMs: options.intervalMs ?? 60_000,
    qos: 1,
    seed: options.seed ?? 7,
  });
  const intervalMs = options.intervalMs ?? 60_000;
  const jitterMs = options.jitterMs ?? 2;
  const [latencyMin, latencyMax] = options.latencyMs ?? [2, 9];
  const startMs = options.startMs ?? Date.UTC(2026, 0, 1);
  const origin = options.origin ?? 'AURORA';
  const ids = Array.from({ length: options.containers }, (_unused, index) => containerId(index));
  const phases = ids.map(() => Math.floor(random() * intervalMs));
  for (let round = 0; ; round += 1) {
    const readings = ids.map((id, index) => ({
      id,
      ts: startMs + round * intervalMs + phases[index]! + Math.round((random() * 2 - 1) * jitterMs),
    }));
    readings.sort((left, right) => left.ts - right.ts);
    for (const { id, ts } of readings) {
      const reading = emulator.nextReading(id, ts);
      yield {
        origin,
        stream: 'containers',
        topic: id,
        offset: round,
        eventTimeMs: ts,
        ingestTimeMs: ts + latencyMin + Math.floor(random() * (latencyMax - latencyMin + 1)),
        headers: { 'mqtt-topic': `bigblue/containers/${id}/reefer` },
        payload: Buffer.from(JSON.stringify(reading)),
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
