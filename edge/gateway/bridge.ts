/**
 * Bridge mode: the gateway takes its input from an existing onboard broker. It subscribes
 * with QoS 1 on a persistent session (clean session off, fixed client id), maps and stores
 * each message through the same intake as a device's, and sends PUBACK upstream only after
 * the durable append. Whatever was not acknowledged when either side restarts is still in
 * the upstream broker's session and is delivered again on reconnect.
 *
 * At most `maxInFlight` deliveries are between arrival and PUBACK at once; later ones wait,
 * unread or parsed but not yet appended, and the socket is paused until the window has room.
 * That bounds what a crash can duplicate: only a delivery committed whose PUBACK had not yet
 * left is delivered again, so at most `maxInFlight` records are stored twice. The upstream
 * broker's own window cannot be relied on for this: Mosquitto 2.0.11 honours
 * `max_inflight_messages` only until its subscriber acknowledges something, then sends its
 * whole queue (measured: 200 unacknowledged deliveries to one client with the default 20).
 *
 * Why not mqtt.js: its client handles incoming packets one at a time and sends each PUBACK
 * before reading the next, so acknowledging after commit would cost one disk commit per
 * message. Here many deliveries are in flight at once and share commits, the way device
 * connections do. mqtt-packet does the encoding and parsing.
 */
// First: before aedes or mqtt-packet load (see the module).
import './mqtt-packet-speedups.js';
import { connect as connectTcp, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { MessageIntake } from './message-intake.js';

export interface BridgeOptions {
  readonly host: string;
  readonly port: number;
  /** Fixed, so the upstream broker keeps the session (and its unacknowledged messages). */
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  /** Topic filters to subscribe to at QoS 1. */
  readonly topics: readonly string[];
  readonly keepaliveS?: number;
  readonly reconnectDelayMs?: number;
  /** Deliveries appended (or being appended) but not yet acknowledged upstream, at most; default 256. */
  readonly maxInFlight?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export type BridgeState = 'connecting' | 'up' | 'down' | 'stopped';

export const DEFAULT_BRIDGE_MAX_IN_FLIGHT = 256;

/** One connection's receive window: its deliveries in flight and those waiting for room. */
interface ReceiveWindow {
  inFlight: number;
  readonly waiting: (Packet & { cmd: 'publish' })[];
}

export class MqttBridge {
  private socket: Socket | undefined;
  private stateValue: BridgeState = 'down';
  private reconnectTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly connects: Counter;
  private readonly up: Gauge;
  private readonly inFlightGauge: Gauge;
  private readonly maxInFlight: number;
  constructor(
    private readonly intake: MessageIntake,
    private readonly options: BridgeOptions,
  ) {
    const registers = options.registry === undefined ? [] : [options.registry];
    this.connects = new Counter({
      name: 'portcall_gateway_bridge_connects_total',
      help: 'Connections (and reconnections) of the bridge to its upstream broker',
      registers,
    });
    this.up = new Gauge({ name: 'portcall_gateway_bridge_up', help: '1 while the bridge is subscribed upstream', registers });
    this.inFlightGauge = new Gauge({
      name: 'portcall_gateway_bridge_in_flight',
      help: 'Deliveries from the upstream broker being made durable, not yet acknowledged upstream',
      registers,
    });
    this.maxInFlight = options.maxInFlight ?? DEFAULT_BRIDGE_MAX_IN_FLIGHT;
    if (!Number.isInteger(this.maxInFlight) || this.maxInFlight < 1) throw new RangeError(`maxInFlight must be a positive integer, not ${this.maxInFlight}`);
  }

  get state(): BridgeState {
    return this.stateValue;
  }

  start(): void {
    this.connect();
  }

  private connect(): void {
    if (this.stopped) return;
    this.stateValue = 'connecting';
    const socket = connectTcp(this.options.port, this.options.host);
    this.socket = socket;
    socket.setNoDelay(true);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let subscribed = false;
    const window: ReceiveWindow = { inFlight: 0, waiting: [] };
    socket.on('connect', () => {
      socket.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: this.options.clientId,
          clean: false,
          keepalive: this.options.keepaliveS ?? 30,
          ...(this.options.username === undefined ? {} : { username: this.options.username }),
          ...(this.options.password === undefined ? {} : { password: Buffer.from(this.options.password) }),
        }),
      );
    });
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    parser.on('error', (error: Error) => this.drop(socket, `upstream sent a malformed packet: ${error.message}`));
    parser.on('packet', (packet: Packet) => {
      switch (packet.cmd) {
        case 'connack':
          if (packet.returnCode !== 0) {
            this.drop(socket, `upstream refused the bridge (CONNACK ${packet.returnCode})`);
            return;
          }
          // Subscribing again on a resumed session is harmless and covers a changed topic list.
          socket.write(
            mqttPacket.generate({
              cmd: 'subscribe',
              messageId: 1,
              subscriptions: this.options.topics.map((topic) => ({ topic, qos: 1 as const })),
            }),
          );
          this.startKeepalive(socket);
          break;
        case 'suback':
          if (!subscribed) {
            subscribed = true;
            this.stateValue = 'up';
            this.up.set(1);
            this.connects.inc();
            this.options.logger?.info({ topics: this.options.topics }, 'bridge subscribed upstream');
          }
          break;
        case 'publish':
          if (window.waiting.length > 0 || window.inFlight >= this.maxInFlight) {
            // Parsed from a chunk already read: it waits, unappended, and nothing more is read.
            window.waiting.push(packet);
            socket.pause();
          } else this.onPublish(socket, window, packet);
          break;
        case 'pubrel':
          // Subscribed at QoS 1, so upstream should never deliver QoS 2; if a broker does,
          // its PUBREC went out after the commit like a PUBACK, and the exchange is completed.
          socket.write(mqttPacket.generate({ cmd: 'pubcomp', messageId: packet.messageId! }));
          break;
        default:
          break;
      }
    });
    socket.on('error', (error) => this.options.logger?.info({ err: error.message }, 'bridge connection failed'));
    socket.on('close', () => {
      // Waiting deliveries were never appended: upstream delivers them again.
      window.waiting.length = 0;
      if (this.socket === socket) this.scheduleReconnect();
    });
  }

  private onPublish(socket: Socket, window: ReceiveWindow, packet: Packet & { cmd: 'publish' }): void {
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const acknowledge = () => {
      if (packet.qos === 1 && !socket.destroyed) {
        socket.write(mqttPacket.generate({ cmd: 'puback', messageId: packet.messageId! }));
      } else if (packet.qos === 2 && !socket.destroyed) {
        socket.write(mqttPacket.generate({ cmd: 'pubrec', messageId: packet.messageId! }));
      }
    };
    window.inFlight += 1;
    this.inFlightGauge.inc();
    const refusal = this.intake.admit(packet.topic, payload, packet.qos, 'bridge', (error) => {
      window.inFlight -= 1;
      this.inFlightGauge.dec();
      if (error !== undefined) {
        // Not durable: leave it unacknowledged and reconnect, so upstream delivers it again.
        this.drop(socket, `append failed: ${error.message}`);
        return;
      }
      acknowledge();
      this.admitWaiting(socket, window);
    });
    if (refusal !== undefined) {
      window.inFlight -= 1;
      this.inFlightGauge.dec();
      this.options.logger?.debug({ topic: packet.topic, reason: refusal.reason }, 'bridged message refused');
      // Acknowledged and dropped, counted: upstream would otherwise resend it forever.
      acknowledge();
    }
  }

  /** Appends waiting deliveries while the window has room, in arrival order; reads on once none wait. */
  private admitWaiting(socket: Socket, window: ReceiveWindow): void {
    if (socket.destroyed) return;
    let next = 0;
    while (next < window.waiting.length && window.inFlight < this.maxInFlight) this.onPublish(socket, window, window.waiting[next++]!);
    window.waiting.splice(0, next);
    if (window.waiting.length === 0 && socket.isPaused()) socket.resume();
  }

  private startKeepalive(socket: Socket): void {
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    const intervalMs = (this.options.keepaliveS ?? 30) * 1000;
    this.keepaliveTimer = setInterval(() => {
      if (!socket.destroyed) socket.write(mqttPacket.generate({ cmd: 'pingreq' }));
    }, intervalMs / 2);
    this.keepaliveTimer.unref();
  }

  private drop(socket: Socket, why: string): void {
    this.options.logger?.warn({ why }, 'bridge connection dropped');
    socket.destroy();
  }

  private scheduleReconnect(): void {
    this.up.set(0);
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
    if (this.stopped) return;
    this.stateValue = 'down';
    this.reconnectTimer = setTimeout(() => this.connect(), this.options.reconnectDelayMs ?? 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stateValue = 'stopped';
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    const socket = this.socket;
    if (socket !== undefined && !socket.destroyed) {
      // No DISCONNECT packet needed for a persistent session; closing keeps it upstream.
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      });
    }
  }
}
