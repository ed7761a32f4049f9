/**
 * Runs an emulated fleet against an MQTT broker (the gateway), split over worker threads so
 * one process can drive tens of thousands of containers: shard k simulates containers
 * k, k+n, k+2n, … of the scenario over its own connection (client id `<prefix>-<k>`,
 * persistent session, so QoS 1/2 messages in flight survive a reconnect), and shard 0 also
 * the ships. See fleet-shard.ts for time and back-pressure.
 */
import { Worker } from 'node:worker_threads';
import type { Scenario } from '../fleet/index.js';
import type { ShardOptions, ShardStats } from './fleet-shard.js';
import type { ShardCommand, ShardReport } from './fleet-shard-worker.js';

export interface FleetEmulatorOptions {
  readonly scenario: Scenario;
  readonly brokerUrl: string;
  readonly acceleration: number;
  /** Worker threads (and MQTT connections); default 1. */
  readonly shards?: number;
  readonly clientIdPrefix?: string;
  readonly username?: string;
  readonly password?: string;
  /** Per shard; default 2,000. */
  readonly maxInFlight?: number;
  readonly endMs?: number;
  readonly fromMs?: number;
  /** Emulate only what this ship's gateway hears (FleetModelOptions.onlyAboard). */
  readonly onlyAboard?: string;
  /** Emulate only what this port's terminal hears (FleetModelOptions.onlyAshoreAt). */
  readonly onlyAshoreAt?: string;
}

export interface FleetStats {
  readonly published: number;
  readonly acknowledged: number;
  /** The slowest shard's simulated time. */
  readonly simTimeMs: number;
  readonly lagMs: number;
  readonly connected: boolean;
  readonly reconnects: number;
  readonly finished: boolean;
  readonly lastError: string | undefined;
}

function workerUrl(): URL {
  // Under the test runner this module runs from TypeScript source; worker threads need the
  // compiled JavaScript, which `npm test` builds first.
  return import.meta.url.endsWith('.ts')
    ? new URL('../../dist/devices/emulator/fleet-shard-worker.js', import.meta.url)
    : new URL('./fleet-shard-worker.js', import.meta.url);
}

export class FleetEmulator {
  private readonly workers: Worker[] = [];
  private readonly latest: (ShardStats | undefined)[] = [];

  private constructor(private readonly options: FleetEmulatorOptions) {}

  static async start(options: FleetEmulatorOptions): Promise<FleetEmulator> {
    const emulator = new FleetEmulator(options);
    try {
      await emulator.startShards();
    } catch (error) {
      await emulator.stop(0);
      throw error;
    }
    return emulator;
  }

  private async startShards(): Promise<void> {
    const shards = this.options.shards ?? 1;
    const prefix = this.options.clientIdPrefix ?? `fleet-${this.options.scenario.name}`;
    const started: Promise<void>[] = [];
    for (let shard = 0; shard < shards; shard += 1) {
      const shardOptions: ShardOptions = {
        scenario: this.options.scenario,
        shard,
        shards,
        brokerUrl: this.options.brokerUrl,
        clientId: `${prefix}-${shard}`,
        acceleration: this.options.acceleration,
        maxInFlight: this.options.maxInFlight ?? 2000,
        ...(this.options.username === undefined ? {} : { username: this.options.username }),
        ...(this.options.password === undefined ? {} : { password: this.options.password }),
        ...(this.options.endMs === undefined ? {} : { endMs: this.options.endMs }),
        ...(this.options.fromMs === undefined ? {} : { fromMs: this.options.fromMs }),
        ...(this.options.onlyAboard === undefined ? {} : { onlyAboard: this.options.onlyAboard }),
        ...(this.options.onlyAshoreAt === undefined ? {} : { onlyAshoreAt: this.options.onlyAshoreAt }),
      };
      const worker = new Worker(workerUrl(), { workerData: { options: shardOptions, statsEveryMs: 200 } });
      this.workers.push(worker);
      this.latest.push(undefined);
      started.push(
        new Promise<void>((resolve, reject) => {
          worker.on('message', (report: ShardReport) => {
            if (report.type === 'started') resolve();
            else if (report.type === 'error') reject(new Error(`fleet shard ${shard}: ${report.message}`));
            else this.latest[shard] = report.stats;
          });
          worker.once('error', reject);
          worker.once('exit', (code) => reject(new Error(`fleet shard ${shard} exited with ${code}`)));
        }),
      );
    }
    await Promise.all(started);
  }

  stats(): FleetStats {
    const shards = this.latest.filter((stats): stats is ShardStats => stats !== undefined);
    return {
      published: shards.reduce((sum, stats) => sum + stats.published, 0),
      acknowledged: shards.reduce((sum, stats) => sum + stats.acknowledged, 0),
      simTimeMs: shards.length === 0 ? Date.parse(this.options.scenario.start) : Math.min(...shards.map((stats) => stats.simTimeMs)),
      lagMs: shards.length === 0 ? 0 : Math.max(...shards.map((stats) => stats.lagMs)),
      connected: shards.length === this.workers.length && shards.every((stats) => stats.connected),
      reconnects: shards.reduce((sum, stats) => sum + stats.reconnects, 0),
      finished: shards.length === this.workers.length && shards.every((stats) => stats.finished),
      lastError: shards.find((stats) => stats.lastError !== undefined)?.lastError,
    };
  }

  /**
   * Changes how fast simulated time runs (0 holds it), e.g. slower while a ship is in port so
   * its link has the wall-clock time to drain a backlog.
   */
  setAcceleration(acceleration: number): void {
    if (!(acceleration >= 0) || !Number.isFinite(acceleration)) throw new RangeError('acceleration must be a finite number ≥ 0');
    for (const worker of this.workers) worker.postMessage({ type: 'accelerate', acceleration } satisfies ShardCommand);
  }

  /** Stops simulated time at `timeMs` (each shard waits there) until called with undefined. */
  holdAt(timeMs: number | undefined): void {
    for (const worker of this.workers) worker.postMessage({ type: 'hold', atMs: timeMs ?? null } satisfies ShardCommand);
  }

  /** Stops every shard, waiting up to `drainMs` for their messages to be acknowledged. */
  async stop(drainMs = 5000): Promise<FleetStats> {
    await Promise.all(
      this.workers.map(
        (worker, shard) =>
          new Promise<void>((resolve) => {
            const timeout = setTimeout(() => void worker.terminate().then(() => resolve()), drainMs + 5000);
            worker.on('message', (report: ShardReport) => {
              if (report.type === 'stopped') this.latest[shard] = report.stats;
            });
            worker.once('exit', () => {
              clearTimeout(timeout);
              resolve();
            });
            worker.postMessage({ type: 'stop', drainMs } satisfies ShardCommand);
          }),
      ),
    );
    return this.stats();
  }
}
