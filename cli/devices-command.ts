/**
 * `portcall devices`: an emulated fleet publishing to an MQTT gateway, from a scenario file
 * (default: the voyage of DESIGN.md) or a generated fleet of N reefers on one ship; or one
 * truck or train (a vehicle edge site's own devices) with the containers it carries.
 */
import { availableParallelism } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';

function integer(name: string, min: number, max: number) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return parsed;
  };
}

function positive(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
    return parsed;
  };
}

interface DevicesOptions {
  broker: string;
  scenario?: string;
  containers?: number;
  readingIntervalS?: number;
  acceleration: number;
  hours?: number;
  shards: number;
  qos?: string;
  seed?: number;
  username?: string;
  password?: string;
  clientIdPrefix?: string;
  maxInFlight: number;
  vehicle?: 'truck' | 'train';
  vehicleId?: string;
  carrying: string;
}

const HOUR_MS = 3_600_000;

export function devicesCommand(): Command {
  return new Command('devices')
    .description('Run an emulated fleet (ships on real sea lanes, reefers, dry containers, port calls, incidents) publishing to an MQTT gateway')
    .option('--broker <url>', 'MQTT URL of the gateway', 'mqtt://127.0.0.1:1884')
    .option('--scenario <file>', 'fleet scenario (YAML); default: the voyage of DESIGN.md (AURORA, Tokyo → Singapore → Sydney)')
    .option('--containers <n>', 'instead of a scenario: n reefers aboard ship SEA1 from Singapore to Sydney', integer('--containers', 1, 1_000_000))
    .option('--reading-interval-s <s>', 'simulated seconds between two readings of a container (overrides the scenario)', positive('--reading-interval-s'))
    .option('--acceleration <x>', 'simulated seconds per wall-clock second', positive('--acceleration'), 60)
    .option('--hours <h>', 'stop after this many simulated hours (default: the scenario\'s end)', positive('--hours'))
    .option('--shards <n>', 'worker threads, each with its own MQTT connection', integer('--shards', 1, 64), Math.min(4, availableParallelism()))
    .addOption(new Option('--qos <qos>', 'MQTT QoS of readings (overrides the scenario)').choices(['0', '1', '2']))
    .option('--seed <n>', 'seed of the simulation (overrides the scenario)', integer('--seed', 0, 2 ** 31))
    .option('--username <name>', 'MQTT username')
    .option('--password <secret>', 'MQTT password (prefer PORTCALL_DEVICES_PASSWORD)')
    .option('--client-id-prefix <prefix>', 'MQTT client ids are <prefix>-<shard>; keep it stable so sessions resume')
    .addOption(new Option('--vehicle <kind>', 'instead of a fleet: one truck (Port Botany to Melbourne by road) or train (Port Botany to Parkes by rail), publishing to the vehicle\'s own gateway until it arrives').choices(['truck', 'train']))
    .option('--vehicle-id <id>', 'with --vehicle: its id, the edge site it runs (default TRUCK-1 or TRAIN-1)')
    .option('--carrying <ids>', 'with --vehicle: the containers aboard, comma-separated (dry; a reefer with -18 °C after a colon, e.g. B01:reefer)', 'Y05')
    .option('--max-in-flight <n>', 'unacknowledged messages per connection before the simulation waits for the gateway', integer('--max-in-flight', 1, 1_000_000), 2000)
    .addHelpText(
      'after',
      '\nExamples:\n  portcall devices --broker mqtt://127.0.0.1:1884 --acceleration 3600\n  portcall devices --containers 10000 --reading-interval-s 60 --acceleration 300 --shards 2\n  portcall devices --scenario fleet.yaml --hours 48\n  portcall devices --vehicle truck --carrying Y05,B01:reefer --broker mqtt://127.0.0.1:1885 --acceleration 3600\n\nA vehicle\'s tracker publishes bigblue/vehicles/<id>/position: its gateway needs a topic rule for it\n(pattern bigblue/vehicles/{vehicle}/{sensor}, stream vehicles, topic {vehicle}; docs/DEVICES.md).',
    )
    .action(async (options: DevicesOptions) => {
      if (options.vehicle !== undefined) {
        if (options.scenario !== undefined || options.containers !== undefined) throw new InvalidArgumentError('--vehicle excludes --scenario and --containers');
        await runVehicle(options);
        return;
      }
      const { parseScenario, loadScenarioFile, voyageScenario } = await import('../devices/fleet/index.js');
      const { FleetEmulator } = await import('../devices/emulator/index.js');
      if (options.scenario !== undefined && options.containers !== undefined) throw new InvalidArgumentError('--scenario and --containers exclude each other');
      let scenario =
        options.containers !== undefined
          ? parseScenario(
              {
                name: 'generated',
                ships: [{ id: 'SEA1', calls: [{ port: 'SGSIN', dwellHours: 1 }, { port: 'AUSYD', dwellHours: 6 }] }],
                containers: [{ ids: `C000001-C${String(options.containers).padStart(6, '0')}`, owner: 'Acme', kind: 'reefer', moves: [{ ship: 'SEA1', load: 'SGSIN', unload: 'AUSYD' }] }],
              },
              '--containers',
            )
          : options.scenario !== undefined
            ? loadScenarioFile(options.scenario)
            : voyageScenario();
      scenario = {
        ...scenario,
        ...(options.readingIntervalS === undefined ? {} : { readingIntervalS: options.readingIntervalS }),
        ...(options.seed === undefined ? {} : { seed: options.seed }),
        ...(options.qos === undefined ? {} : { qos: { ...scenario.qos, readings: Number(options.qos) as 0 | 1 | 2 } }),
      };
      const startMs = Date.parse(scenario.start);
      const password = options.password ?? process.env.PORTCALL_DEVICES_PASSWORD;
      const emulator = await FleetEmulator.start({
        scenario,
        brokerUrl: options.broker,
        acceleration: options.acceleration,
        shards: options.shards,
        maxInFlight: options.maxInFlight,
        ...(options.hours === undefined ? {} : { endMs: startMs + options.hours * HOUR_MS }),
        ...(options.username === undefined ? {} : { username: options.username }),
        ...(password === undefined ? {} : { password }),
        ...(options.clientIdPrefix === undefined ? {} : { clientIdPrefix: options.clientIdPrefix }),
      });
      process.stdout.write(
        `scenario ${scenario.name}: ${scenario.ships.length} ship(s), publishing to ${options.broker} at ${options.acceleration}× over ${options.shards} connection(s). Ctrl-C stops.\n`,
      );
      let previous = emulator.stats();
      let previousAt = performance.now();
      const stop = new AbortController();
      const progress = setInterval(() => {
        const stats = emulator.stats();
        const now = performance.now();
        const rate = ((stats.published - previous.published) / ((now - previousAt) / 1000)).toFixed(0);
        const line =
          `sim ${new Date(stats.simTimeMs).toISOString().slice(0, 16).replace('T', ' ')}  ` +
          `${rate} msg/s  published ${stats.published}  acknowledged ${stats.acknowledged}  ` +
          `behind ${(stats.lagMs / 1000).toFixed(0)} s${stats.connected ? '' : '  (disconnected)'}` +
          (stats.lastError === undefined ? '' : `  last error: ${stats.lastError}`);
        process.stderr.write(process.stderr.isTTY ? `\r${line}\u001b[K` : `${line}\n`);
        previous = stats;
        previousAt = now;
        if (stats.finished) stop.abort();
      }, 2000);
      await new Promise<void>((resolve) => {
        const finish = () => resolve();
        stop.signal.addEventListener('abort', finish);
        process.once('SIGINT', finish);
        process.once('SIGTERM', finish);
      });
      clearInterval(progress);
      process.stderr.write('\nstopping: waiting for the gateway to acknowledge what was sent…\n');
      const stats = await emulator.stop(10_000);
      process.stdout.write(`published ${stats.published}, acknowledged ${stats.acknowledged}, reconnects ${stats.reconnects}\n`);
      if (stats.acknowledged < stats.published) process.exitCode = 1;
    });
}

/** One truck or train until it arrives (or Ctrl-C), with progress; exit 1 if anything sent was not acknowledged. */
async function runVehicle(options: DevicesOptions): Promise<void> {
  const { VehicleEmulator, SYDNEY_MELBOURNE_ROAD, SYDNEY_PARKES_RAIL } = await import('../devices/vehicles/index.js');
  const kind = options.vehicle!;
  const id = options.vehicleId ?? (kind === 'truck' ? 'TRUCK-1' : 'TRAIN-1');
  const containers = options.carrying
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
    .map((entry) => {
      const [containerId, containerKind = 'dry'] = entry.split(':');
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(containerId!)) throw new InvalidArgumentError(`--carrying: "${containerId}" is not a container id (letters, digits, "-" or "_")`);
      if (containerKind !== 'dry' && containerKind !== 'reefer') throw new InvalidArgumentError(`--carrying: ${containerId}'s kind must be dry or reefer, not "${containerKind}"`);
      return containerKind === 'reefer' ? { id: containerId!, kind: 'reefer' as const, setpointC: -18 } : { id: containerId!, kind: 'dry' as const };
    });
  const emulator = await VehicleEmulator.start({
    spec: {
      id,
      kind,
      path: kind === 'truck' ? SYDNEY_MELBOURNE_ROAD : SYDNEY_PARKES_RAIL,
      speedKmh: kind === 'truck' ? 90 : 70,
      startMs: Date.now(),
      containers,
      readingIntervalS: options.readingIntervalS ?? 300,
      positionIntervalS: 120,
      seed: options.seed ?? 1,
    },
    brokerUrl: options.broker,
    acceleration: options.acceleration,
    maxInFlight: options.maxInFlight,
  });
  process.stdout.write(`${kind} ${id} carrying ${containers.map((container) => container.id).join(', ') || 'nothing'}, publishing to ${options.broker} at ${options.acceleration}×. Ctrl-C stops.\n`);
  const stop = new AbortController();
  const progress = setInterval(() => {
    const stats = emulator.stats();
    process.stderr.write(`sim ${new Date(stats.simTimeMs).toISOString().slice(0, 16).replace('T', ' ')}  published ${stats.published}  acknowledged ${stats.acknowledged}${stats.connected ? '' : '  (disconnected)'}\n`);
    if (stats.finished) stop.abort();
  }, 1000);
  let onSignal = () => undefined as void;
  await new Promise<void>((resolve) => {
    onSignal = () => resolve();
    stop.signal.addEventListener('abort', onSignal);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  clearInterval(progress);
  const stats = await emulator.stop(10_000);
  process.stdout.write(`${id} ${stats.finished ? 'arrived' : 'stopped'}: published ${stats.published}, acknowledged ${stats.acknowledged}\n`);
  if (stats.acknowledged < stats.published) process.exitCode = 1;
}
