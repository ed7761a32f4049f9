/** The gateway's Prometheus metrics; registered on the site's registry when one is given. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

import { mqttPacketSpeedups } from './mqtt-packet-speedups.js';

const OUTCOMES = ['stored', 'refused', 'duplicate', 'store-failed'] as const;
const SOURCES = ['device', 'bridge'] as const;
export type MessageOutcome = (typeof OUTCOMES)[number];
export type MessageSource = (typeof SOURCES)[number];

export class GatewayMetrics {
  readonly messages: Counter<'qos' | 'outcome' | 'source'>;
  readonly refusals: Counter<'reason'>;
  readonly connectionsRefused: Counter<'reason'>;
  readonly commitSeconds: Histogram;
  readonly batchRecords: Histogram;
  readonly clients: Gauge;
  readonly topicsWatched: Gauge;
  readonly alerts: Counter<'kind'>;
  readonly readPauses: Counter;

  /** Counted per message as plain numbers and handed to prom-client at scrape time: labelled
   * increments cost a label hash each, which shows at tens of thousands of messages a second. */
  private readonly messageCounts = new Float64Array(3 * OUTCOMES.length * SOURCES.length);

  countMessage(qos: number, outcome: MessageOutcome, source: MessageSource): void {
    this.messageCounts[(qos * OUTCOMES.length + OUTCOMES.indexOf(outcome)) * SOURCES.length + SOURCES.indexOf(source)]! += 1;
  }

  constructor(registry: Registry | undefined, topicsWatched: () => number) {
    const registers = registry === undefined ? [] : [registry];
    const counts = this.messageCounts;
    this.messages = new Counter({
      name: 'portcall_gateway_messages_total',
      help: 'PUBLISH packets by QoS, outcome (stored, refused, duplicate, store-failed) and source (device, bridge)',
      labelNames: ['qos', 'outcome', 'source'],
      registers,
      collect() {
        counts.forEach((count, index) => {
          if (count === 0) return;
          const source = SOURCES[index % SOURCES.length]!;
          const outcome = OUTCOMES[Math.floor(index / SOURCES.length) % OUTCOMES.length]!;
          const qos = String(Math.floor(index / (SOURCES.length * OUTCOMES.length)));
          this.inc({ qos, outcome, source }, count);
          counts[index] = 0;
        });
      },
    });
    this.refusals = new Counter({
      name: 'portcall_gateway_refusals_total',
      help: 'Refused PUBLISH packets and dropped connections by reason',
      labelNames: ['reason'],
      registers,
    });
    this.connectionsRefused = new Counter({
      name: 'portcall_gateway_connections_refused_total',
      help: 'CONNECT attempts refused, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.commitSeconds = new Histogram({
      name: 'portcall_gateway_commit_seconds',
      help: 'Time from handing a batch to the log until it is durable',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.batchRecords = new Histogram({
      name: 'portcall_gateway_commit_batch_records',
      help: 'Records per append the gateway hands to the log',
      buckets: [1, 4, 16, 64, 256, 1024, 4096],
      registers,
    });
    this.clients = new Gauge({ name: 'portcall_gateway_clients', help: 'Connected MQTT clients', registers });
    this.topicsWatched = new Gauge({
      name: 'portcall_gateway_topics_watched',
      help: 'Topics whose silence the watchdog is watching',
      registers,
      collect() {
        this.set(topicsWatched());
      },
    });
    // Set once: the speedups are decided when this thread first loads mqtt-packet.
    const speedups = new Gauge({
      name: 'portcall_gateway_mqtt_packet_speedups',
      help: "mqtt-packet speedups in the gateway's thread (edge/gateway/mqtt-packet-speedups.ts) by part: 1 installed, 0 not (mqtt-packet was loaded first: slower, never different)",
      labelNames: ['part'],
      registers,
    });
    for (const [part, result] of Object.entries(mqttPacketSpeedups)) speedups.set({ part }, result === 'installed' ? 1 : 0);
    this.readPauses = new Counter({
      name: 'portcall_gateway_read_pauses_total',
      help: 'Times a connection was not read because too many accepted records were not yet durable',
      registers,
    });
    this.alerts = new Counter({
      name: 'portcall_gateway_alerts_total',
      help: 'Alert records the gateway raised, by kind',
      labelNames: ['kind'],
      registers,
    });
  }
}
