/**
 * The edge MQTT gateway: devices publish over MQTT 3.1.1 (TCP, TLS or WebSocket) and every
 * accepted message is appended to the site's log.
 *
 * Acknowledged means durable: aedes sends PUBACK (and PUBREC) right after its
 * `authorizePublish` hook calls back and before `published` runs, so the append happens
 * inside `authorizePublish`, and the hook calls back only once the log says the record is on
 * disk. aedes dispatches a whole socket read concurrently and the commit batcher hands the
 * log one append per event-loop turn, so many messages of each connection are in flight at
 * once and share one commit.
 *
 * Refusals: an unknown or badly authenticated device is refused at CONNECT; a device that
 * publishes outside its access rules, or sends a packet over the size limit, is
 * disconnected (MQTT 3.1.1 cannot say "no" to a PUBLISH). A message that is merely bad —
 * unmapped topic, too long or deep, payload failing its stream's schema — is acknowledged
 * and dropped, counted by reason: disconnecting would make the device resend the same
 * poison message forever and stall everything it sends after it. A message the site refuses
 * to store because another site writes its topic (RecordsRefusedError from the appender) is
 * not acknowledged: the connection is closed, counted `not-writer`, and the device keeps it.
 */
// First: before aedes or mqtt-packet load (see the module).
import './mqtt-packet-speedups.js';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes, type Client, type PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { ConfigError, FixedWindowLimiter, InvalidInputError, StoreUnavailableError, type NewRecord, type RecordAppender } from '../../core/index.js';
import { AckGate } from './ack-gate.js';
import { rememberUnmatchedTopics } from './aedes-tuning.js';
import { CommitBatcher, type DurableAppend } from './commit-batcher.js';
import { mayPublish, maySubscribe, type DeviceDirectory, type DeviceIdentity } from './credentials.js';
import { LivenessWatch } from './liveness.js';
import { MessageIntake, UNCOUNTED_TAG, countCommitted, type Refusal, type ReservedTopic } from './message-intake.js';
import { GatewayMetrics } from './metrics.js';
import { PacketTooLargeError, guardConnection } from './packet-size-guard.js';
import type { PayloadKind } from './payload-policy.js';
import { isSafeIdentity } from './topic-filter.js';
import { TopicMapper, type TopicRule } from './topic-mapper.js';

export interface StreamPolicy {
  readonly payload: PayloadKind;
  /** Raise a silence alert when a topic of this stream that was reporting stops for this long. */
  readonly silenceAlertMs?: number;
}

export interface TlsListenerOptions {
  readonly host?: string;
  readonly port: number;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** CA that signs device certificates; without it, client certificates are not asked for. */
  readonly ca?: Buffer;
  /** Refuse the TLS handshake of a client without a certificate signed by `ca`. */
  readonly requireClientCertificate?: boolean;
}

export interface WebSocketListenerOptions {
  readonly host?: string;
  readonly port: number;
  readonly path?: string;
}

export interface GatewayOptions {
  /** Where accepted messages go: the site's log (or, on the gateway's own thread, the channel to it). */
  readonly appender: RecordAppender | DurableAppend;
  readonly topicRules: readonly TopicRule[];
  /** Payload policy and silence threshold by stream; a stream not listed takes JSON readings. */
  readonly streams?: Readonly<Record<string, StreamPolicy>>;
  /** Plain MQTT over TCP. */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly tls?: TlsListenerOptions;
  readonly websocket?: WebSocketListenerOptions;
  readonly maxTopicLength?: number;
  readonly maxTopicLevels?: number;
  /** Log topics devices and the bridge may never write (the access records), refused as `reserved-log-topic`. */
  readonly reservedTopics?: readonly ReservedTopic[];
  /** Largest MQTT packet (header included) a client may send; checked before buffering. */
  readonly maxPacketBytes?: number;
  /** Known devices and their access rules; without it every client is anonymous. */
  readonly devices?: DeviceDirectory;
  /** Accept clients that present no credentials, with no access restrictions (development). */
  readonly allowAnonymous: boolean;
  /**
   * CONNECTs whose credentials fail (or are still being checked) per client address and
   * window, beyond which that address is answered "server unavailable" at once, without
   * checking: each check costs a scrypt hash, so a flood of guesses would otherwise take
   * the gateway's CPU. Default 60 per 60 s.
   */
  readonly failedConnects?: { readonly maxPerAddress: number; readonly windowMs: number };
  readonly livenessCheckIntervalMs?: number;
  /** Records accepted but not yet durable above which connections stop being read. */
  readonly maxPendingRecords?: number;
  /** Most records in one append; more arriving in one event-loop turn start the next one. */
  readonly maxBatchRecords?: number;
  /** Skip aedes' subscription look-ups for topics that matched nothing since subscriptions last changed (aedes-tuning.ts); default on. */
  readonly rememberUnmatchedTopics?: boolean;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export interface GatewayStats {
  clientsConnected: number;
  messagesStored: number;
  messagesRefused: number;
}

/** Who a connected client is: a known device, or anonymous (when allowed). */
type ClientIdentity = { readonly kind: 'device'; readonly device: DeviceIdentity } | { readonly kind: 'anonymous' };

const DEFAULT_MAX_PACKET_BYTES = 256 * 1024;
/** About 50 MB of 150-byte readings in memory, and a second or two of the log's work. */
const DEFAULT_MAX_PENDING_RECORDS = 100_000;
const CONNACK_IDENTIFIER_REJECTED = 2;
const CONNACK_SERVER_UNAVAILABLE = 3;
const CONNACK_BAD_CREDENTIALS = 4;
const CONNACK_NOT_AUTHORIZED = 5;

function connectRefusal(returnCode: number, message: string): Error & { returnCode: number } {
  return Object.assign(new Error(message), { returnCode });
}

function certificateCommonName(connection: unknown): string | undefined {
  const socket = connection as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== 'function' || socket.authorized !== true) return undefined;
  const commonName = socket.getPeerCertificate().subject?.CN;
  return typeof commonName === 'string' && commonName.length > 0 ? commonName : undefined;
}

function listen(server: TcpServer | HttpServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export class MqttGateway {
  private readonly statsValue: GatewayStats = { clientsConnected: 0, messagesStored: 0, messagesRefused: 0 };
  private readonly identities = new WeakMap<Client, ClientIdentity>();
  /** QoS 2 messages being appended, by `clientId NUL messageId`: a retransmission waits for the first. */
  private readonly qos2InFlight = new Map<string, ((error: Error | undefined) => void)[]>();
  /** Payloads acknowledged but refused: never forwarded to subscribers or kept as retained. */
  private readonly dropped = new WeakSet<Buffer>();
  private readonly servers: (TcpServer | HttpServer)[] = [];
  private webSockets: WebSocketServer | undefined;
  private broker!: Aedes;
  readonly metrics: GatewayMetrics;
  readonly liveness: LivenessWatch;
  private readonly batcher: CommitBatcher;
  /** The gateway's checks and durable append, shared with the bridge. */
  readonly intake: MessageIntake;
  private readonly maxPacketBytes: number;
  private readonly maxPendingRecords: number;
  /** Each connection's client address (TCP, TLS, or the WebSocket's HTTP request). */
  private readonly addresses = new WeakMap<Duplex, string>();
  private readonly failedConnects: FixedWindowLimiter;
  private ports: { tcp: number; tls: number | undefined; websocket: number | undefined } = {
    tcp: 0,
    tls: undefined,
    websocket: undefined,
  };

  private constructor(private readonly options: GatewayOptions) {
    const streams = options.streams ?? {};
    const thresholds = new Map<string, number>();
    const payloadKinds = new Map<string, PayloadKind>();
    for (const [stream, policy] of Object.entries(streams)) {
      payloadKinds.set(stream, policy.payload);
      if (policy.silenceAlertMs !== undefined) thresholds.set(stream, policy.silenceAlertMs);
    }
    this.maxPacketBytes = options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
    this.maxPendingRecords = options.maxPendingRecords ?? DEFAULT_MAX_PENDING_RECORDS;
    this.failedConnects = new FixedWindowLimiter(options.failedConnects?.maxPerAddress ?? 60, options.failedConnects?.windowMs ?? 60_000);
    this.liveness = new LivenessWatch(thresholds, (record) => this.raiseAlert(record));
    this.metrics = new GatewayMetrics(options.registry, () => this.liveness.topicsWatched);
    this.batcher = new CommitBatcher(
      options.appender,
      options.maxBatchRecords ?? 4096,
      (tags, elapsedMs) => {
        this.statsValue.messagesStored += tags.length;
        this.metrics.commitSeconds.observe(elapsedMs / 1000);
        this.metrics.batchRecords.observe(tags.length);
        countCommitted(this.metrics, tags, 'stored');
      },
      (tags) => countCommitted(this.metrics, tags, 'store-failed'),
      // Refused by the site (a topic another site writes): not acknowledged, the device's connection closed.
      (tags, error) => {
        this.statsValue.messagesRefused += tags.length;
        for (const tag of tags) if (tag >= 0) this.metrics.countMessage(tag >> 1, 'refused', (tag & 1) === 1 ? 'bridge' : 'device');
        this.metrics.refusals.inc({ reason: error.refused.values().next().value?.code === 'NOT_WRITER' ? 'not-writer' : 'refused-by-site' }, tags.length);
      },
    );
    this.intake = new MessageIntake(
      new TopicMapper(options.topicRules),
      payloadKinds,
      {
        maxTopicLength: options.maxTopicLength ?? 256,
        maxTopicLevels: options.maxTopicLevels ?? 16,
        ...(options.reservedTopics === undefined ? {} : { reservedTopics: options.reservedTopics }),
      },
      this.batcher,
      this.liveness,
      this.metrics,
    );
  }

  static async start(options: GatewayOptions): Promise<MqttGateway> {
    if (options.devices === undefined && !options.allowAnonymous) {
      throw new ConfigError('mqtt.auth: a gateway without a credentials file must allow anonymous clients explicitly');
    }
    const gateway = new MqttGateway(options);
    gateway.broker = await Aedes.createBroker({
      // Our own limit is checked and counted in the intake; aedes' is only a backstop.
      maxTopicLevels: 100,
      // Identities are checked in authenticate; long ids are fine for MQTT 3.1.1 brokers.
      maxClientsIdLength: 128,
      authenticate: (client, username, password, callback) => gateway.authenticate(client, username, password, callback),
      authorizePublish: (client, packet, callback) => gateway.authorizePublish(client, packet, callback),
      authorizeSubscribe: (client, subscription, callback) => {
        const identity = gateway.identities.get(client);
        if (identity?.kind === 'device' && !maySubscribe(identity.device, subscription.topic)) {
          gateway.metrics.refusals.inc({ reason: 'subscribe-not-authorized' });
          // A null subscription makes aedes answer SUBACK 0x80 (failure) for this filter only.
          callback(null, null);
          return;
        }
        callback(null, subscription);
      },
      authorizeForward: (_client, packet) => (gateway.dropped.has(packet.payload as Buffer) ? null : packet),
    });
    if (options.rememberUnmatchedTopics !== false) rememberUnmatchedTopics(gateway.broker);
    gateway.watchClients();
    try {
      await gateway.listen();
    } catch (error) {
      await gateway.close();
      throw error;
    }
    gateway.liveness.start(options.livenessCheckIntervalMs ?? 1000);
    return gateway;
  }

  private watchClients(): void {
    const logger = this.options.logger;
    this.broker.on('client', () => {
      this.metrics.clients.inc();
      this.statsValue.clientsConnected += 1;
    });
    this.broker.on('clientDisconnect', () => {
      this.metrics.clients.dec();
      this.statsValue.clientsConnected -= 1;
    });
    this.broker.on('clientError', (client, error) => {
      logger?.info({ client: client.id, err: error.message }, 'MQTT client dropped');
    });
    this.broker.on('connectionError', (_client, error) => {
      logger?.debug({ err: error.message }, 'MQTT connection dropped before CONNECT completed');
    });
  }

  /**
   * Nothing bounds what clients send but the disk's pace: QoS 0 has no acknowledgement and
   * a QoS 1 client need not wait for its PUBACKs. Past this many records not yet durable,
   * connections are not read (TCP pushes back on the senders) until the log catches up.
   */
  private readonly isBusy = (): boolean => {
    if (this.batcher.pending < this.maxPendingRecords) return false;
    this.metrics.readPauses.inc();
    return true;
  };

  private handle(socket: Duplex, request?: IncomingMessage): void {
    const address = request?.socket.remoteAddress ?? (socket as Partial<Socket>).remoteAddress;
    if (address !== undefined) this.addresses.set(socket, address);
    const guarded = guardConnection(
      socket,
      this.maxPacketBytes,
      (error) => {
        this.metrics.refusals.inc({ reason: error instanceof PacketTooLargeError ? 'packet-too-large' : 'malformed-packet' });
        this.options.logger?.info({ err: error.message }, 'MQTT connection closed: packet refused before buffering');
      },
      this.isBusy,
    );
    AckGate.attach(guarded, (error) =>
      this.options.logger?.warn({ err: error.message }, 'append failed; not acknowledged, connection closed'),
    );
    this.broker.handle(guarded as Socket, request);
  }

  private async listen(): Promise<void> {
    const { options } = this;
    // PUBACKs are gathered per turn of the event loop already (guardConnection corks); Nagle
    // would only hold the last ones of a burst until the device's delayed ACK (40 ms).
    const tcp = createTcpServer({ noDelay: true }, (socket) => this.handle(socket));
    this.servers.push(tcp);
    await listen(tcp, options.port, options.host ?? '127.0.0.1');
    this.ports.tcp = (tcp.address() as AddressInfo).port;

    if (options.tls !== undefined) {
      const tls = options.tls;
      const server = createTlsServer(
        {
          noDelay: true,
          cert: tls.cert,
          key: tls.key,
          ...(tls.ca === undefined ? {} : { ca: tls.ca }),
          requestCert: tls.ca !== undefined,
          rejectUnauthorized: tls.ca !== undefined && tls.requireClientCertificate === true,
        },
        (socket) => this.handle(socket),
      );
      server.on('tlsClientError', (error) => {
        this.metrics.connectionsRefused.inc({ reason: 'tls-handshake' });
        options.logger?.info({ err: error.message }, 'TLS handshake refused');
      });
      this.servers.push(server);
      await listen(server, tls.port, tls.host ?? options.host ?? '127.0.0.1');
      this.ports.tls = (server.address() as AddressInfo).port;
    }

    if (options.websocket !== undefined) {
      const ws = options.websocket;
      const http = createHttpServer((_request, response) => {
        response.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only\n');
      });
      this.servers.push(http);
      // ws refuses frames over maxPayload itself; the guard still bounds what one MQTT packet
      // may announce across frames.
      this.webSockets = new WebSocketServer({ server: http, path: ws.path ?? '/mqtt', maxPayload: this.maxPacketBytes });
      this.webSockets.on('connection', (socket, request) => this.handle(createWebSocketStream(socket), request));
      await listen(http, ws.port, ws.host ?? options.host ?? '127.0.0.1');
      this.ports.websocket = (http.address() as AddressInfo).port;
    }
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    callback: (error: (Error & { returnCode: number }) | null, success: boolean | null) => void,
  ): void {
    const refuse = (reason: string, returnCode: number, message: string) => {
      this.metrics.connectionsRefused.inc({ reason });
      this.options.logger?.info({ client: client.id, username, reason }, 'MQTT CONNECT refused');
      callback(connectRefusal(returnCode, message), false);
    };
    if (!isSafeIdentity(client.id)) {
      refuse('unsafe-identity', CONNACK_IDENTIFIER_REJECTED, 'client id must not contain "+", "#", "/" or NUL');
      return;
    }
    if (username !== undefined && !isSafeIdentity(username)) {
      refuse('unsafe-identity', CONNACK_BAD_CREDENTIALS, 'username must not contain "+", "#", "/" or NUL');
      return;
    }
    const devices = this.options.devices;
    const commonName = certificateCommonName(client.conn);
    if (devices === undefined || (username === undefined && commonName === undefined && this.options.allowAnonymous)) {
      if (!this.options.allowAnonymous) {
        refuse('unknown-device', CONNACK_NOT_AUTHORIZED, 'anonymous clients are not allowed');
        return;
      }
      this.identities.set(client, { kind: 'anonymous' });
      callback(null, true);
      return;
    }
    const address = this.addresses.get(client.conn as Duplex) ?? 'unknown';
    if (this.failedConnects.exhausted(address)) {
      // Counted, not logged one by one: a flood would otherwise fill the log too.
      this.metrics.connectionsRefused.inc({ reason: 'rate-limited' });
      callback(connectRefusal(CONNACK_SERVER_UNAVAILABLE, 'too many failed connections from this address; try again later'), false);
      return;
    }
    // Counted as failed until it succeeds, so parallel guesses count before their hashes finish.
    this.failedConnects.note(address);
    devices.authenticate(username, password, commonName).then(
      (result) => {
        if (!result.ok) {
          const code = result.reason === 'bad-credentials' ? CONNACK_BAD_CREDENTIALS : CONNACK_NOT_AUTHORIZED;
          refuse(result.reason, code, `device refused: ${result.reason}`);
          return;
        }
        // A device may only use its own id as client id (or `<id>-<suffix>`): otherwise one
        // device could take over another's session and knock it off.
        const { id } = result.device;
        if (client.id !== id && !client.id.startsWith(`${id}-`)) {
          refuse('client-id-mismatch', CONNACK_IDENTIFIER_REJECTED, `client id must be "${id}" or start with "${id}-"`);
          return;
        }
        this.failedConnects.release(address);
        this.identities.set(client, { kind: 'device', device: result.device });
        callback(null, true);
      },
      (error: unknown) => refuse('auth-error', CONNACK_NOT_AUTHORIZED, (error as Error).message),
    );
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    // A will left by a previous broker instance, published with no client: nothing to check
    // it against, and no device is waiting for an acknowledgement.
    if (client === null) {
      callback(new InvalidInputError('orphan-will', 'will of an unknown client'));
      return;
    }
    const identity = this.identities.get(client);
    if (identity === undefined || (identity.kind === 'device' && !mayPublish(identity.device, packet.topic))) {
      this.metrics.refusals.inc({ reason: 'publish-not-authorized' });
      this.metrics.countMessage(packet.qos, 'refused', 'device');
      this.statsValue.messagesRefused += 1;
      this.options.logger?.warn({ client: client.id, topic: packet.topic }, 'publish outside the device\'s access rules; disconnecting');
      callback(new InvalidInputError('publish-not-authorized', `${client.id} may not publish to ${packet.topic}`));
      return;
    }
    if (packet.qos === 2) {
      this.authorizeQos2(client, packet, callback);
      return;
    }
    this.admit(client, packet, callback);
  }

  /**
   * aedes runs authorizePublish before its own QoS 2 duplicate check, so a retransmitted
   * PUBLISH (DUP, same message id, no PUBREL yet) would be appended twice. aedes' incoming
   * store holds every QoS 2 message awaiting PUBREL (per client id, so across reconnects of a
   * persistent session): a message found there is a retransmission and is not appended
   * again. One arriving while the first copy is still being appended waits for it.
   */
  private authorizeQos2(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    const key = `${client.id}\u0000${packet.messageId}`;
    const waiting = this.qos2InFlight.get(key);
    if (waiting !== undefined) {
      this.metrics.countMessage(2, 'duplicate', 'device');
      waiting.push((error) => callback(error ?? null));
      return;
    }
    this.qos2InFlight.set(key, []);
    this.incomingStore().incomingGetPacket(client, packet).then(
      () => {
        this.qos2InFlight.delete(key);
        this.metrics.countMessage(2, 'duplicate', 'device');
        callback(null);
      },
      () =>
        this.admit(client, packet, (error) => {
          callback(error ?? null);
          // aedes stores the message in its incoming store right after this callback (in
          // microtasks); from the next turn on, that store answers for retransmissions.
          setImmediate(() => {
            const waiters = this.qos2InFlight.get(key) ?? [];
            this.qos2InFlight.delete(key);
            for (const waiter of waiters) waiter(error ?? undefined);
          });
        }),
    );
  }

  /** aedes' persistence is public at run time but not in its typings. */
  private incomingStore(): { incomingGetPacket(client: Client, packet: PublishPacket): Promise<unknown> } {
    return (this.broker as unknown as { persistence: ReturnType<MqttGateway['incomingStore']> }).persistence;
  }

  private admit(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const qos = packet.qos;
    const gate = AckGate.of(client.conn);
    // A device's QoS 1 message: admitted, and its PUBACK held by the gate until durable, so
    // aedes goes on reading this connection meanwhile. (A will has no PUBACK; QoS 2 waits in
    // the hook, as its PUBREC and aedes' duplicate store depend on it.)
    if (qos === 1 && gate !== undefined && !client.closed && packet.messageId !== undefined) {
      const entry = gate.expect(packet.messageId);
      // The entry is told by the batcher when its commit is durable (or failed: no PUBACK,
      // connection closed).
      const refusal = this.intake.admit(packet.topic, payload, qos, 'device', entry);
      if (refusal !== undefined) {
        this.dropRefused(client, packet, payload, refusal);
        entry.committed(undefined);
      }
      callback(null);
      return;
    }
    const refusal = this.intake.admit(packet.topic, payload, qos, 'device', (error) => {
      if (error !== undefined) {
        this.options.logger?.warn({ err: error.message, topic: packet.topic }, 'append failed; not acknowledged');
        if (qos > 0) callback(new StoreUnavailableError(`not stored: ${error.message}`, error));
        return;
      }
      if (qos > 0) callback(null);
    });
    if (refusal !== undefined) {
      this.dropRefused(client, packet, payload, refusal);
      callback(null);
      return;
    }
    // QoS 0 promises nothing: do not hold the connection for the disk.
    if (qos === 0) callback(null);
  }

  /** Acknowledged but not stored, forwarded or retained; counted by the intake. */
  private dropRefused(client: Client, packet: PublishPacket, payload: Buffer, refusal: Refusal): void {
    this.statsValue.messagesRefused += 1;
    this.options.logger?.debug({ client: client.id, topic: packet.topic, reason: refusal.reason }, refusal.message);
    this.dropped.add(payload);
    packet.retain = false;
  }

  private async raiseAlert(record: NewRecord): Promise<void> {
    await new Promise<void>((resolve, reject) => this.batcher.add(record, (error) => (error ? reject(error) : resolve()), UNCOUNTED_TAG));
    this.metrics.alerts.inc({ kind: record.headers?.['alert-kind'] ?? 'unknown' });
    this.options.logger?.warn({ stream: record.stream, topic: record.topic }, 'alert raised');
  }

  /** TCP port. */
  get port(): number {
    return this.ports.tcp;
  }

  get tlsPort(): number | undefined {
    return this.ports.tls;
  }

  get webSocketPort(): number | undefined {
    return this.ports.websocket;
  }

  stats(): Readonly<GatewayStats> {
    return this.statsValue;
  }


  async close(): Promise<void> {
    this.liveness.stop();
    // Servers stop accepting at once but report closed only once every connection has
    // ended, which the broker's close brings about.
    const serversClosed = this.servers.map(
      (server) => new Promise<void>((resolve) => server.close(() => resolve())),
    );
    this.webSockets?.close();
    if (this.broker !== undefined) await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    await Promise.all(serversClosed);
    await this.batcher.drain();
  }
}
