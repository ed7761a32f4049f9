/**
 * One shard of an emulated fleet: a share of the containers (and, for shard 0, the ships)
 * simulated and published over one MQTT connection. Runs on a worker thread started by
 * FleetEmulator, or inline (one shard) when threads are not wanted.
 *
 * Time: simulated time advances `acceleration` times faster than the wall clock, but never
 * past what the broker has taken: when more than `maxInFlight` messages are unacknowledged
 * (or queued while disconnected), the simulation holds its clock, so a slow or absent
 * broker delays readings and loses none. The lag behind the intended simulated time is
 * reported.
 * A publish mqtt.js gives up on is published again (acked-publisher.ts).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { AckedPublisher, type PublishedMessage } from './acked-publisher.js';
import { FleetModel, type Scenario } from '../fleet/index.js';

export interface ShardOptions {
  readonly scenario: Scenario;
  readonly shard: number;
  readonly shards: number;
  readonly brokerUrl: string;
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  /** Simulated milliseconds per wall-clock millisecond. */
  readonly acceleration: number;
  /** Unacknowledged messages at most before the simulation waits for the broker. */
  readonly maxInFlight: number;
  /** Simulated time to stop at (default: the scenario's end). */
  readonly endMs?: number;
  /** Simulated time to begin at (default: the scenario's start); earlier messages are skipped. */
  readonly fromMs?: number;
  /** Emulate only what this ship's gateway hears (FleetModelOptions.onlyAboard). */
  readonly onlyAboard?: string;
  /** Emulate only what this port's terminal hears (FleetModelOptions.onlyAshoreAt). */
  readonly onlyAshoreAt?: string;
}

export interface ShardStats {
  readonly shard: number;
  readonly published: number;
  readonly acknowledged: number;
  readonly simTimeMs: number;
  /** How far the simulation is behind where acceleration alone would have it. */
  readonly lagMs: number;
  readonly connected: boolean;
  readonly reconnects: number;
  readonly finished: boolean;
  readonly lastError: string | undefined;
}

const TICK_MS = 10;

export class FleetShard {
  private readonly model: FleetModel;
  private client: MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly publisher = new AckedPublisher<PublishedMessage>({ failed: (error) => (this.lastError = error.message) });
  private reconnects = 0;
  private lastError: string | undefined;
  private simTimeMs: number;
  private lastWallMs = 0;
  private lagMs = 0;
  private finished = false;
  private pending: PublishedMessage[] = [];
  private pendingIndex = 0;
  private acceleration: number;
  /** Simulated time the clock does not pass until released (a demo holding the fleet at a moment). */
  private holdAtMs = Number.POSITIVE_INFINITY;

  constructor(private readonly options: ShardOptions) {
    this.acceleration = options.acceleration;
    const { shard, shards } = options;
    this.model = new FleetModel(options.scenario, {
      ...(options.endMs === undefined ? {} : { endMs: options.endMs }),
      ...(options.onlyAboard === undefined ? {} : { onlyAboard: options.onlyAboard }),
      ...(options.onlyAshoreAt === undefined ? {} : { onlyAshoreAt: options.onlyAshoreAt }),
      include: { containers: (_id, index) => index % shards === shard, ships: shard === 0 },
    });
    this.simTimeMs = options.fromMs ?? this.model.timeline.startMs;
    if (options.fromMs !== undefined) this.model.advanceTo(options.fromMs - 1);
  }

  get endMs(): number {
    return this.model.endMs;
  }

  /** The clock stops at this simulated time until `holdAt(undefined)` (it never goes back). */
  holdAt(timeMs: number | undefined): void {
    this.holdAtMs = timeMs ?? Number.POSITIVE_INFINITY;
  }

  /** Changes how fast simulated time runs from now on (0 holds it). */
  setAcceleration(acceleration: number): void {
    this.acceleration = acceleration;
  }

  async start(): Promise<void> {
    const client = mqtt.connect(this.options.brokerUrl, {
      clientId: this.options.clientId,
      protocolVersion: 4,
      clean: false,
      reconnectPeriod: 500,
      connectTimeout: 10_000,
      queueQoSZero: true,
      ...(this.options.username === undefined ? {} : { username: this.options.username }),
      ...(this.options.password === undefined ? {} : { password: this.options.password }),
    });
    this.client = client;
    client.on('reconnect', () => (this.reconnects += 1));
    client.on('error', (error) => (this.lastError = error.message));
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => {
        if (!client.connected) reject(error);
      };
      client.once('connect', () => {
        client.off('error', onError);
        resolve();
      });
      client.once('error', onError);
    });
    this.lastWallMs = performance.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  private tick(): void {
    const client = this.client;
    if (client === undefined || (this.finished && this.publisher.retrying === 0)) return;
    const wallMs = performance.now();
    const wantedAdvanceMs = (wallMs - this.lastWallMs) * this.acceleration;
    this.lastWallMs = wallMs;
    // Back-pressure: hold the simulated clock while the broker has not taken what was sent.
    if (this.publisher.inFlight >= this.options.maxInFlight || !client.connected) {
      this.lagMs += wantedAdvanceMs;
      return;
    }
    this.publisher.sendRetries(client, this.options.maxInFlight);
    if (this.finished) return;
    if (this.pendingIndex >= this.pending.length) {
      this.simTimeMs = Math.max(this.simTimeMs, Math.min(this.simTimeMs + wantedAdvanceMs, this.model.endMs, this.holdAtMs));
      this.pending = this.model.advanceTo(this.simTimeMs);
      this.pendingIndex = 0;
    } else {
      this.lagMs += wantedAdvanceMs;
    }
    // Publish up to the in-flight window; the rest waits for the next tick.
    while (this.pendingIndex < this.pending.length && this.publisher.inFlight < this.options.maxInFlight) {
      const message = this.pending[this.pendingIndex]!;
      this.pendingIndex += 1;
      this.publisher.publish(client, message);
    }
    if (this.pendingIndex >= this.pending.length && this.simTimeMs >= this.model.endMs) this.finished = true;
  }

  stats(): ShardStats {
    return {
      shard: this.options.shard,
      published: this.publisher.published,
      acknowledged: this.publisher.acknowledged,
      simTimeMs: this.simTimeMs,
      lagMs: Math.round(this.lagMs),
      connected: this.client?.connected ?? false,
      reconnects: this.reconnects,
      finished: this.finished,
      lastError: this.lastError,
    };
  }

  /** Stops simulating; waits up to `drainMs` for what was published to be acknowledged. */
  async stop(drainMs = 5000): Promise<ShardStats> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.publisher.drain(this.client, this.options.maxInFlight, drainMs);
    const stats = this.stats();
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await client.endAsync(true);
    return stats;
  }
}
