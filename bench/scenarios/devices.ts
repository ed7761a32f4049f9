/**
 * devices: how fast one `portcall devices` process drives a fleet. 10,000 reefers aboard one
 * ship (issue 10: one process, 10,000 containers, at least 50,000 messages/s), published to
 * Mosquitto (in memory, the fastest sink here) at QoS 0 and QoS 1, the simulation as fast as
 * the broker takes it (acceleration far above what the broker can follow, so the in-flight
 * window, not the clock, sets the pace). Baseline in the same run: the raw-socket load
 * generator (pre-encoded packets, no simulation) into the same Mosquitto — what any
 * generator on this machine could do.
 */
import { FleetEmulator } from '../../devices/emulator/index.js';
import { parseScenario, type Scenario as FleetScenario } from '../../devices/fleet/index.js';
import { startMosquitto } from '../../tools/mosquitto/index.js';
import type { BenchContext, Figure, Scenario } from '../harness.js';
import { runLoad } from '../raw-load/index.js';

const CONTAINERS = 10_000;

/** 10,000 reefers aboard one ship from Singapore to Sydney, reporting every simulated minute. */
function benchFleet(qos: 0 | 1): FleetScenario {
  return parseScenario(
    {
      name: 'bench',
      qos: { readings: qos, ships: qos, manifests: qos === 0 ? 0 : 1, events: qos },
      ships: [{ id: 'SEA1', calls: [{ port: 'SGSIN', dwellHours: 1 }, { port: 'AUSYD', dwellHours: 6 }] }],
      containers: [{ ids: `C00001-C${CONTAINERS}`, owner: 'Acme', kind: 'reefer', moves: [{ ship: 'SEA1', load: 'SGSIN', unload: 'AUSYD' }] }],
    },
    'bench',
  );
}

async function emulatorRate(context: BenchContext, qos: 0 | 1, seconds: number, shards: number): Promise<number> {
  const broker = await startMosquitto();
  try {
    const scenario = benchFleet(qos);
    // 10,000 containers reporting every simulated minute: 1,000× is 166,000 messages/s wanted.
    // At QoS 0 mqtt.js waits for socket drain per message past the window: keep it under its
    // listener limit.
    const emulator = await FleetEmulator.start({ scenario, brokerUrl: broker.url, acceleration: 1000, shards, maxInFlight: qos === 0 ? 900 : 5000, clientIdPrefix: `bench-devices-${qos}` });
    try {
      await new Promise((resolve) => setTimeout(resolve, 2000)); // warm up
      const before = emulator.stats();
      const startedAt = performance.now();
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      const after = emulator.stats();
      const rate = (after.acknowledged - before.acknowledged) / ((performance.now() - startedAt) / 1000);
      context.progress(`devices: QoS ${qos}, ${shards} shard(s): ${Math.round(rate)} messages/s acknowledged`);
      return rate;
    } finally {
      await emulator.stop(5000);
    }
  } finally {
    await broker.stop();
  }
}

async function generatorRate(qos: 0 | 1, messages: number): Promise<number> {
  const broker = await startMosquitto();
  try {
    const result = await runLoad({
      port: Number(new URL(broker.url).port),
      connections: 2,
      messages,
      containers: CONTAINERS,
      topicPrefix: 'bigblue/containers',
      qos,
      windowPerConnection: 5000,
      ratePerSecond: 0,
      timeoutMs: 120_000,
    });
    return result.acknowledged / (result.elapsedMs / 1000);
  } finally {
    await broker.stop();
  }
}

export const devicesScenario: Scenario = {
  name: 'devices',
  description: 'Emulated fleet: messages/s one process drives for 10,000 reefers into Mosquitto (QoS 0, 1), vs the raw pre-encoded generator',
  async run(context: BenchContext): Promise<Figure[]> {
    const seconds = Math.max(3, Math.round(10 * context.scale));
    const figures: Figure[] = [];
    for (const qos of [0, 1] as const) {
      const baseline = await generatorRate(qos, Math.round(500_000 * context.scale));
      context.progress(`devices: raw generator QoS ${qos}: ${Math.round(baseline)} messages/s`);
      for (const shards of [1, 2]) {
        const rate = await emulatorRate(context, qos, seconds, shards);
        figures.push({
          scenario: 'devices',
          metric: `emulated fleet, 10,000 reefers, QoS ${qos}, ${shards} worker thread(s) (target ≥ 50,000/s)`,
          value: rate,
          unit: 'messages/s',
          baseline: `raw pre-encoded generator, QoS ${qos}`,
          baselineValue: baseline,
        });
      }
    }
    return figures;
  },
};
