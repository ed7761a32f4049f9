/**
 * A vehicle's devices (its tracker and the containers aboard) publishing to the vehicle's own
 * edge gateway over MQTT 3.1.1, accelerated: simulated time runs `acceleration` times the wall
 * clock but never ahead of the gateway (with `maxInFlight` messages unacknowledged, or while
 * disconnected, the clock holds), with a persistent session so QoS 1 messages in flight are
 * sent again after a reconnect. Nothing acknowledged is lost; nothing is skipped.
 * A publish mqtt.js gives up on is published again (devices/emulator/acked-publisher.ts).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { AckedPublisher } from '../emulator/acked-publisher.js';
import { VehicleModel, type VehicleMessage, type VehicleSpec } from './vehicle-model.js';

export interface VehicleEmulatorOptions {
  readonly spec: VehicleSpec;
  readonly brokerUrl: string;
  /** Simulated milliseconds per wall-clock millisecond. */
  readonly acceleration: number;
  readonly maxInFlight?: number;
  readonly clientId?: string;
}

export interface VehicleStats {
  readonly published: number;
  readonly acknowledged: number;
  readonly simTimeMs: number;
  readonly connected: boolean;
  readonly finished: boolean;
  readonly lastError: string | undefined;
}

const TICK_MS = 10;

export class VehicleEmulator {
  readonly model: VehicleModel;
  /** Every message acknowledged by the gateway, in the order published (what must arrive ashore). */
  readonly acknowledgedMessages: VehicleMessage[] = [];
  private client: MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly publisher = new AckedPublisher<VehicleMessage>({
    acknowledged: (message) => this.acknowledgedMessages.push(message),
    failed: (error) => (this.lastError = error.message),
  });
  private simTimeMs: number;
  private lastWallMs = 0;
  private pending: VehicleMessage[] = [];
  private pendingIndex = 0;
  private finished = false;
  private lastError: string | undefined;

  private constructor(private readonly options: VehicleEmulatorOptions) {
    this.model = new VehicleModel(options.spec);
    this.simTimeMs = this.model.startMs;
  }

  static async start(options: VehicleEmulatorOptions): Promise<VehicleEmulator> {
    const emulator = new VehicleEmulator(options);
    await emulator.connect();
    return emulator;
  }

  private async connect(): Promise<void> {
    const client = mqtt.connect(this.options.brokerUrl, {
      clientId: this.options.clientId ?? `vehicle-${this.options.spec.id.toLowerCase()}`,
      protocolVersion: 4,
      clean: false,
      reconnectPeriod: 500,
      connectTimeout: 10_000,
    });
    this.client = client;
    client.on('error', (error) => (this.lastError = error.message));
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      client.once('error', onError);
      client.once('connect', () => {
        client.off('error', onError);
        resolve();
      });
    });
    this.lastWallMs = performance.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  private tick(): void {
    const client = this.client;
    if (client === undefined || (this.finished && this.publisher.retrying === 0)) return;
    const wallMs = performance.now();
    const advanceMs = (wallMs - this.lastWallMs) * this.options.acceleration;
    this.lastWallMs = wallMs;
    const maxInFlight = this.options.maxInFlight ?? 500;
    // Back-pressure: the clock holds while the gateway has not taken what was sent.
    if (this.publisher.inFlight >= maxInFlight || !client.connected) return;
    this.publisher.sendRetries(client, maxInFlight);
    if (this.finished) return;
    if (this.pendingIndex >= this.pending.length) {
      this.simTimeMs = Math.min(this.simTimeMs + advanceMs, this.model.endMs);
      this.pending = this.model.advanceTo(this.simTimeMs);
      this.pendingIndex = 0;
    }
    while (this.pendingIndex < this.pending.length && this.publisher.inFlight < maxInFlight) {
      const message = this.pending[this.pendingIndex]!;
      this.pendingIndex += 1;
      this.publisher.publish(client, message);
    }
    if (this.pendingIndex >= this.pending.length && this.simTimeMs >= this.model.endMs) this.finished = true;
  }

  stats(): VehicleStats {
    return { published: this.publisher.published, acknowledged: this.publisher.acknowledged, simTimeMs: this.simTimeMs, connected: this.client?.connected ?? false, finished: this.finished, lastError: this.lastError };
  }

  /** Stops; waits up to `drainMs` for what was published to be acknowledged. */
  async stop(drainMs = 5000): Promise<VehicleStats> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.publisher.drain(this.client, this.options.maxInFlight ?? 500, drainMs);
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await client.endAsync(true);
    return this.stats();
  }
}
