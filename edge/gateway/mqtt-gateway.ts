/**
 * The edge MQTT gateway: devices publish over MQTT 3.1.1, every accepted message is appended
 * to the site's log.
 *
 * Acknowledged means durable: aedes sends PUBACK right after its `authorizePublish` hook
 * calls back and before `published` runs, so the append happens inside `authorizePublish`
 * and the hook calls back only once the log says the record is on disk. Many publishes of
 * one connection are in flight at once (aedes dispatches a whole socket read concurrently),
 * so they share the log's group commit.
 */
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Aedes, type Client, type PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { InvalidInputError, type RecordAppender } from '../../core/index.js';
import { TopicMapper, type TopicRule } from './topic-mapper.js';

export interface GatewayOptions {
  /** Where accepted messages go: the site's log. */
  readonly appender: RecordAppender;
  readonly topicRules: readonly TopicRule[];
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly maxTopicLength?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export interface GatewayStats {
  clientsConnected: number;
  messagesStored: number;
  messagesRefused: number;
}

function eventTimeOf(payload: Buffer): number | undefined {
  // Readings carry their own time as `ts` (epoch ms or ISO 8601); the gateway trusts it only
  // if it parses, and otherwise stamps ingest time.
  if (payload.length === 0 || payload[0] !== 0x7b /* { */) return undefined;
  try {
    const ts = (JSON.parse(payload.toString('utf8')) as { ts?: unknown }).ts;
    if (typeof ts === 'number' && Number.isFinite(ts)) return Math.trunc(ts);
    if (typeof ts === 'string') {
      const parsed = Date.parse(ts);
      return Number.isNaN(parsed) ? undefined : parsed;
    }
  } catch {
    // Not JSON: the payload is stored as it came, stamped with ingest time.
  }
  return undefined;
}

export class MqttGateway {
  private readonly statsValue: GatewayStats = { clientsConnected: 0, messagesStored: 0, messagesRefused: 0 };

  private constructor(
    private readonly broker: Aedes,
    private readonly server: Server,
  ) {}

  static async start(options: GatewayOptions): Promise<MqttGateway> {
    const mapper = new TopicMapper(options.topicRules);
    const maxTopicLength = options.maxTopicLength ?? 256;
    const registers = options.registry === undefined ? [] : [options.registry];
    const messages = new Counter({
      name: 'portcall_gateway_messages_total',
      help: 'MQTT PUBLISH packets by QoS and outcome',
      labelNames: ['qos', 'outcome'],
      registers,
    });
    const refusals = new Counter({
      name: 'portcall_gateway_refusals_total',
      help: 'Refused PUBLISH packets by reason',
      labelNames: ['reason'],
      registers,
    });
    const commitSeconds = new Histogram({
      name: 'portcall_gateway_commit_seconds',
      help: 'Time from PUBLISH received to durable append',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
      registers,
    });
    const clients = new Gauge({ name: 'portcall_gateway_clients', help: 'Connected MQTT clients', registers });

    let gateway: MqttGateway | undefined;
    const refuse = (reason: string, message: string, callback: (error?: Error | null) => void) => {
      refusals.inc({ reason });
      if (gateway) gateway.statsValue.messagesRefused += 1;
      // MQTT 3.1.1 has no negative PUBACK: the broker closes this client's connection,
      // which is the only refusal a 3.1.1 device can observe. Other clients carry on.
      callback(new InvalidInputError(reason, message));
    };

    const broker = await Aedes.createBroker({
      authorizePublish: (client: Client | null, packet: PublishPacket, callback) => {
        if (client === null) {
          callback(null);
          return;
        }
        const startedAt = process.hrtime.bigint();
        if (packet.topic.length > maxTopicLength) {
          refuse('topic-too-long', `topic longer than ${maxTopicLength} characters`, callback);
          return;
        }
        const mapped = mapper.map(packet.topic);
        if (mapped === undefined) {
          refuse('unmapped-topic', `no topic rule matches "${packet.topic}"`, callback);
          return;
        }
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        const eventTimeMs = eventTimeOf(payload);
        const append = options.appender.append([
          {
            stream: mapped.stream,
            topic: mapped.topic,
            ...(eventTimeMs === undefined ? {} : { eventTimeMs }),
            headers: { 'mqtt-topic': packet.topic },
            payload,
          },
        ]);
        const qos = String(packet.qos);
        if (packet.qos === 0) {
          // QoS 0 promises nothing: do not hold the connection for the disk.
          callback(null);
        }
        append.then(
          () => {
            if (gateway) gateway.statsValue.messagesStored += 1;
            messages.inc({ qos, outcome: 'stored' });
            commitSeconds.observe(Number(process.hrtime.bigint() - startedAt) / 1e9);
            if (packet.qos > 0) callback(null);
          },
          (error: unknown) => {
            messages.inc({ qos, outcome: 'store-failed' });
            options.logger?.warn({ err: (error as Error).message, topic: packet.topic }, 'append failed; not acknowledged');
            if (packet.qos > 0) callback(error as Error);
          },
        );
      },
    });
    broker.on('client', () => {
      clients.inc();
      if (gateway) gateway.statsValue.clientsConnected += 1;
    });
    broker.on('clientDisconnect', () => {
      clients.dec();
      if (gateway) gateway.statsValue.clientsConnected -= 1;
    });
    broker.on('clientError', (client, error) => {
      options.logger?.info({ client: client.id, err: error.message }, 'MQTT client dropped');
    });

    const server = createServer(broker.handle);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port, options.host ?? '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      throw error;
    }
    gateway = new MqttGateway(broker, server);
    return gateway;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  stats(): Readonly<GatewayStats> {
    return this.statsValue;
  }

  async close(): Promise<void> {
    // The server stops accepting at once but only reports closed once every connection has
    // ended, which the broker's close brings about.
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    await serverClosed;
  }
}
