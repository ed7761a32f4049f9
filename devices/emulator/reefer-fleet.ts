/**
 * A small, deterministic fleet of reefer containers publishing readings over MQTT.
 * Same seed, same readings: the generator is a seeded PRNG, never Math.random.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { mulberry32 as seededRandom } from '../fleet/random.js';

export interface ReeferFleetOptions {
  /** mqtt://host:port of the gateway. */
  readonly brokerUrl: string;
  /** MQTT topic prefix, e.g. `bigblue/containers`. */
  readonly topicPrefix: string;
  readonly containerIds: readonly string[];
  readonly intervalMs: number;
  readonly qos: 0 | 1 | 2;
  readonly seed?: number;
  readonly clientId?: string;
}

export interface ReeferReading {
  readonly ts: number;
  readonly container: string;
  readonly tempC: number;
  readonly setpointC: number;
  readonly humidityPct: number;
  readonly door: 'closed' | 'open';
}

/** The fleet's seeded generator (mulberry32), under the name this module has always exported. */
export { seededRandom };

export class ReeferFleet {
  private client: MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly random: () => number;
  private readonly temperatures = new Map<string, number>();
  private published = 0;
  private acknowledged = 0;

  constructor(private readonly options: ReeferFleetOptions) {
    this.random = seededRandom(options.seed ?? 1);
  }

  nextReading(container: string, ts: number): ReeferReading {
    const setpointC = -18;
    const previous = this.temperatures.get(container) ?? setpointC + (this.random() - 0.5);
    // A compressor holding setpoint: drift back towards it with a little noise.
    const tempC = Math.round((previous + (setpointC - previous) * 0.2 + (this.random() - 0.5) * 0.3) * 100) / 100;
    this.temperatures.set(container, tempC);
    return {
      ts,
      container,
      tempC,
      setpointC,
      humidityPct: Math.round((70 + this.random() * 20) * 10) / 10,
      door: 'closed',
    };
  }

  async start(): Promise<void> {
    const client = mqtt.connect(this.options.brokerUrl, {
      clientId: this.options.clientId ?? `reefer-fleet-${process.pid}`,
      protocolVersion: 4,
      reconnectPeriod: 1000,
      clean: false,
    });
    this.client = client;
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    const tick = () => this.publishRound();
    tick();
    this.timer = setInterval(tick, this.options.intervalMs);
  }

  private publishRound(): void {
    const client = this.client;
    if (client === undefined) return;
    const ts = Date.now();
    for (const container of this.options.containerIds) {
      const reading = this.nextReading(container, ts);
      this.published += 1;
      client.publish(
        `${this.options.topicPrefix}/${container}/reefer`,
        JSON.stringify(reading),
        { qos: this.options.qos },
        (error) => {
          if (!error) this.acknowledged += 1;
        },
      );
    }
  }

  stats(): { published: number; acknowledged: number } {
    return { published: this.published, acknowledged: this.acknowledged };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const client = this.client;
    this.client = undefined;
    if (client) await client.endAsync();
  }
}
