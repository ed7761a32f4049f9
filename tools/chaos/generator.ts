/**
 * The chaos run's load: the fleet simulation's messages (devices/fleet, the voyage of
 * DESIGN.md as AURORA's gateway sees it) published at QoS 1 to the ship's gateway at a paced
 * rate, remembering every message it published and which were acknowledged (PUBACK).
 *
 * Each payload carries `chaosSeq`, the message's number in this run, so that a record read
 * back anywhere is matched to the message it came from; `ts` is the simulated device time plus
 * the current clock skew. A message is published once: when the connection drops with
 * messages in flight, those stay unacknowledged and are not sent again (MQTT QoS 1 is at least
 * once, so a resend of a message the gateway stored but could not acknowledge would be a
 * legitimate second copy; without resends every copy found twice is a real duplicate).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { FleetModel, voyageScenario, type FleetMessage } from '../../devices/fleet/index.js';

export interface GeneratedMessage {
  readonly seq: number;
  /** MQTT topic, e.g. `bigblue/containers/Y01/telemetry`. */
  readonly mqttTopic: string;
  readonly stream: string;
  readonly topic: string;
  /** 0 published, awaiting PUBACK; 1 acknowledged; 2 not acknowledged (connection lost first). */
  state: 0 | 1 | 2;
}

export interface GeneratorStats {
  readonly published: number;
  readonly acknowledged: number;
  readonly unacknowledged: number;
  readonly inFlight: number;
  readonly connections: number;
  readonly skewMs: number;
}

export interface GeneratorOptions {
  readonly brokerUrl: string;
  /** Messages per second. */
  readonly rate: number;
  readonly seed: number;
  /** At most this many messages awaiting PUBACK. */
  readonly maxInFlight?: number;
  /** A connection that acknowledges nothing this long is given up (a stalled gateway). */
  readonly ackTimeoutMs?: number;
}

/** `bigblue/<stream>/<subject>/…` → the gateway's default topic rules (site/config.ts). */
function logicalTopic(mqttTopic: string): { stream: string; topic: string } {
  const [, stream, subject] = mqttTopic.split('/');
  return { stream: stream!, topic: subject! };
}

export class FleetGenerator {
  readonly messages: GeneratedMessage[] = [];
  private model: FleetModel;
  private modelRound = 0;
  private simTimeMs: number;
  private buffer: FleetMessage[] = [];
  private client: MqttClient | undefined;
  private connected = false;
  private inFlight = new Set<GeneratedMessage>();
  private connections = 0;
  private skewMs = 0;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private credit = 0;
  private lastTickMs = 0;
  private lastAckMs = 0;
  private acknowledged = 0;
  private unacknowledged = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: GeneratorOptions) {
    this.model = this.newModel();
    this.simTimeMs = this.model.timeline.startMs;
  }

  private newModel(): FleetModel {
    // A reading a minute per container keeps messages coming for hours of wall time at the default rate.
    const scenario = { ...voyageScenario(), seed: this.options.seed + this.modelRound, readingIntervalS: 60, shipReportIntervalS: 60 };
    return new FleetModel(scenario, { onlyAboard: 'AURORA' });
  }

  setSkew(skewMs: number): void {
    this.skewMs = skewMs;
  }

  stats(): GeneratorStats {
    return {
      published: this.messages.length,
      acknowledged: this.acknowledged,
      unacknowledged: this.unacknowledged,
      inFlight: this.inFlight.size,
      connections: this.connections,
      skewMs: this.skewMs,
    };
  }

  start(): void {
    this.running = true;
    this.connect();
    this.lastTickMs = performance.now();
    this.timer = setInterval(() => this.tick(), 20);
  }

  private connect(): void {
    if (!this.running) return;
    this.connections += 1;
    const client = mqtt.connect(this.options.brokerUrl, {
      clientId: `chaos-fleet-${process.pid}`,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      keepalive: 10,
    });
    this.client = client;
    client.on('connect', () => {
      this.connected = true;
      this.lastAckMs = performance.now();
    });
    client.on('error', () => undefined);
    client.once('close', () => this.lost(client));
  }

  /** The connection is gone: what was in flight stays unacknowledged; connect again shortly. */
  private lost(client: MqttClient): void {
    if (this.client !== client) return;
    this.connected = false;
    this.client = undefined;
    for (const message of this.inFlight) {
      message.state = 2;
      this.unacknowledged += 1;
    }
    this.inFlight.clear();
    client.end(true);
    if (this.running) this.reconnectTimer = setTimeout(() => this.connect(), 300);
  }

  private nextMessage(): FleetMessage {
    while (this.buffer.length === 0) {
      if (this.simTimeMs >= this.model.endMs) {
        // The voyage is over: sail it again with the next seed.
        this.modelRound += 1;
        this.model = this.newModel();
        this.simTimeMs = this.model.timeline.startMs;
      }
      this.simTimeMs += 3_600_000;
      this.buffer = this.model.advanceTo(this.simTimeMs).filter((message) => message.topic.split('/').length >= 3);
    }
    return this.buffer.shift()!;
  }

  private tick(): void {
    const now = performance.now();
    this.credit = Math.min(this.credit + ((now - this.lastTickMs) / 1000) * this.options.rate, this.options.rate);
    this.lastTickMs = now;
    const client = this.client;
    if (client === undefined || !this.connected) return;
    if (this.inFlight.size > 0 && now - this.lastAckMs > (this.options.ackTimeoutMs ?? 15_000)) {
      // No PUBACK for a long time: the gateway is stalled; start over on a new connection.
      client.stream.destroy();
      return;
    }
    const maxInFlight = this.options.maxInFlight ?? 500;
    while (this.credit >= 1 && this.inFlight.size < maxInFlight) {
      this.credit -= 1;
      const source = this.nextMessage();
      const document = JSON.parse(source.payload) as Record<string, unknown>;
      const seq = this.messages.length;
      if (typeof document.ts === 'number') document.ts = Math.max(0, document.ts + this.skewMs);
      document.chaosSeq = seq;
      const message: GeneratedMessage = { seq, mqttTopic: source.topic, ...logicalTopic(source.topic), state: 0 };
      this.messages.push(message);
      this.inFlight.add(message);
      if (this.inFlight.size === 1) this.lastAckMs = now;
      client.publish(source.topic, JSON.stringify(document), { qos: 1 }, (error) => {
        if (message.state !== 0 || this.client !== client) return;
        this.inFlight.delete(message);
        if (error === undefined || error === null) {
          message.state = 1;
          this.acknowledged += 1;
          this.lastAckMs = performance.now();
        }
      });
    }
  }

  /** Stops publishing; waits (bounded) for the PUBACKs of what is in flight, then disconnects. */
  async stop(waitMs = 10_000): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    const deadline = Date.now() + waitMs;
    while (this.inFlight.size > 0 && this.client !== undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    this.running = false;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (client !== undefined) {
      this.lost(client);
    }
  }
}
