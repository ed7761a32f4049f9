/**
 * The load generator, run as its own process so it never shares an event loop with the
 * broker under test. It pre-encodes one PUBLISH per container topic with mqtt-packet, then
 * only copies those bytes into large writes and patches the message id; PUBACKs are read by
 * walking fixed headers. Started by `runLoad` (index.ts) over Node IPC.
 */
import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { readingPayload } from '../mqtt-load.js';
import { PACKET_CONNACK, PACKET_PINGRESP, PACKET_PUBACK, PINGREQ, concat, fixedHeaderLength, forEachFrame } from './frames.js';
import type { LoadRequest, LoadResult } from './protocol.js';

interface Template {
  readonly bytes: Buffer;
  /** Where the 2-byte message id sits (QoS 1), or -1. */
  readonly messageIdAt: number;
}

function buildTemplates(request: LoadRequest): Template[] {
  return Array.from({ length: request.containers }, (_unused, index) => {
    const container = `C${String(index).padStart(5, '0')}`;
    const topic = `${request.topicPrefix}/${container}/reefer`;
    const bytes = mqttPacket.generate({
      cmd: 'publish',
      topic,
      payload: readingPayload(container, index),
      qos: request.qos,
      dup: false,
      retain: false,
      ...(request.qos > 0 ? { messageId: 1 } : {}),
    });
    const messageIdAt = request.qos > 0 ? fixedHeaderLength(bytes) + 2 + Buffer.byteLength(topic) : -1;
    return { bytes, messageIdAt };
  });
}

class Connection {
  sent = 0;
  acked = 0;
  private nextId = 1;
  private tail: Buffer = Buffer.alloc(0);
  private readonly sentAt = new Float64Array(65536);
  private onConnack: (() => void) | undefined;
  private onPong: (() => void) | undefined;
  onAcks: (() => void) | undefined;

  constructor(
    readonly socket: Socket,
    private readonly latencies: Float64Array,
    private readonly counter: { acked: number },
    /** When each acknowledged message was sent, in acknowledgement order (for the timeline). */
    private readonly sentTimes: Float64Array,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      const now = performance.now();
      const buffer = concat(this.tail, chunk);
      let acks = 0;
      this.tail = forEachFrame(buffer, (type, _flags, start) => {
        if (type === PACKET_PUBACK) {
          const id = buffer[start]! * 256 + buffer[start + 1]!;
          acks += 1;
          if (this.counter.acked < this.latencies.length) {
            this.latencies[this.counter.acked] = now - this.sentAt[id]!;
            if (this.counter.acked < this.sentTimes.length) this.sentTimes[this.counter.acked] = this.sentAt[id]!;
          }
          this.counter.acked += 1;
        } else if (type === PACKET_CONNACK) this.onConnack?.();
        else if (type === PACKET_PINGRESP) this.onPong?.();
      });
      if (acks > 0) {
        this.acked += acks;
        this.onAcks?.();
      }
    });
  }

  connack(): Promise<void> {
    return new Promise((resolve) => (this.onConnack = resolve));
  }

  ping(): Promise<void> {
    return new Promise((resolve) => {
      this.onPong = resolve;
      this.socket.write(PINGREQ);
    });
  }

  /** Encodes `count` messages starting at global index `first` into one write. */
  write(templates: readonly Template[], first: number, count: number, scratch: Buffer): boolean {
    let length = 0;
    const now = performance.now();
    for (let i = 0; i < count; i += 1) {
      const template = templates[(first + i) % templates.length]!;
      template.bytes.copy(scratch, length);
      if (template.messageIdAt >= 0) {
        const id = this.nextId;
        this.nextId = id === 65535 ? 1 : id + 1;
        scratch[length + template.messageIdAt] = id >> 8;
        scratch[length + template.messageIdAt + 1] = id & 0xff;
        this.sentAt[id] = now;
      }
      length += template.bytes.length;
    }
    this.sent += count;
    // Copied out: the scratch buffer is reused while the socket may still hold this write.
    return this.socket.write(Buffer.from(scratch.subarray(0, length)));
  }
}

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** PUBACK latencies grouped by when the message was sent, one slice per `sliceMs`. */
function sliceLatencies(latencies: Float64Array, sentTimes: Float64Array, count: number, startedAt: number, sliceMs: number): NonNullable<LoadResult['timeline']> {
  const slices: number[][] = [];
  for (let i = 0; i < Math.min(count, sentTimes.length); i += 1) {
    const slice = Math.max(0, Math.floor((sentTimes[i]! - startedAt) / sliceMs));
    (slices[slice] ??= []).push(latencies[i]!);
  }
  return Array.from(slices, (values, index) => {
    const sorted = Float64Array.from(values ?? []).sort();
    return {
      startMs: index * sliceMs,
      count: sorted.length,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      maxMs: sorted.length === 0 ? 0 : sorted[sorted.length - 1]!,
    };
  });
}

async function openConnection(
  request: LoadRequest,
  index: number,
  latencies: Float64Array,
  counter: { acked: number },
  sentTimes: Float64Array,
): Promise<Connection> {
  const socket = connect(request.port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const connection = new Connection(socket, latencies, counter, sentTimes);
  const connack = connection.connack();
  socket.write(
    mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: `load-${process.pid}-${index}`,
      keepalive: 0,
      ...(request.username === undefined ? {} : { username: request.username }),
      ...(request.password === undefined ? {} : { password: Buffer.from(request.password) }),
    }),
  );
  await connack;
  return connection;
}

async function run(request: LoadRequest): Promise<LoadResult> {
  const templates = buildTemplates(request);
  const maxPacket = Math.max(...templates.map((template) => template.bytes.length));
  const counter = { acked: 0 };
  const latencies = new Float64Array(request.qos > 0 ? request.messages : 0);
  const sentTimes = new Float64Array(request.qos > 0 && (request.timelineSliceMs !== undefined || request.measureAfterMs !== undefined) ? request.messages : 0);
  const connections = await Promise.all(
    Array.from({ length: request.connections }, (_unused, index) => openConnection(request, index, latencies, counter, sentTimes)),
  );
  const batch = request.qos > 0 ? Math.min(request.windowPerConnection, 512) : 256;
  const scratch = Buffer.alloc(maxPacket * Math.max(batch, request.windowPerConnection));
  let next = 0;
  let error: string | undefined;
  const startedAt = performance.now();

  const finished = new Promise<void>((resolve) => {
    const deadline = setTimeout(() => {
      error = `timed out after ${request.timeoutMs} ms with ${counter.acked} of ${request.messages} acknowledged`;
      resolve();
    }, request.timeoutMs);
    const done = () => {
      clearTimeout(deadline);
      resolve();
    };
    for (const connection of connections) {
      connection.socket.on('error', (socketError) => {
        error = `connection failed: ${socketError.message}`;
        done();
      });
      connection.socket.on('close', () => {
        if (counter.acked < request.messages || request.qos === 0) {
          error ??= 'broker closed a connection';
          done();
        }
      });
    }

    if (request.qos === 0) {
      // Fire and forget, limited only by socket back-pressure; a PINGREQ after the last
      // message returns once the broker has handled everything before it.
      let pending = connections.length;
      for (const connection of connections) {
        const pump = () => {
          while (next < request.messages) {
            const count = Math.min(batch, request.messages - next);
            const first = next;
            next += count;
            if (!connection.write(templates, first, count, scratch)) {
              connection.socket.once('drain', pump);
              return;
            }
          }
          void connection.ping().then(() => {
            pending -= 1;
            if (pending === 0) done();
          });
        };
        pump();
      }
      return;
    }

    const windowOf = (connection: Connection) => request.windowPerConnection - (connection.sent - connection.acked);
    if (request.ratePerSecond <= 0) {
      for (const connection of connections) {
        const refill = () => {
          const room = windowOf(connection);
          if (room > 0 && next < request.messages) {
            const count = Math.min(room, request.messages - next);
            connection.write(templates, next, count, scratch);
            next += count;
          }
          if (counter.acked >= request.messages) done();
        };
        connection.onAcks = refill;
        refill();
      }
      return;
    }

    // Paced: every millisecond, top the sent count up to rate × elapsed, round-robin.
    let turn = 0;
    const timer = setInterval(() => {
      const target = Math.min(request.messages, Math.floor(((performance.now() - startedAt) / 1000) * request.ratePerSecond));
      let guard = connections.length;
      while (next < target && guard > 0) {
        const connection = connections[turn % connections.length]!;
        turn += 1;
        const count = Math.min(windowOf(connection), Math.ceil((target - next) / connections.length), target - next);
        if (count <= 0) {
          guard -= 1;
          continue;
        }
        guard = connections.length;
        connection.write(templates, next, count, scratch);
        next += count;
      }
      if (counter.acked >= request.messages) {
        clearInterval(timer);
        done();
      }
    }, 1);
    for (const connection of connections) {
      connection.onAcks = () => {
        if (counter.acked >= request.messages) {
          clearInterval(timer);
          done();
        }
      };
    }
  });
  await finished;
  const elapsedMs = performance.now() - startedAt;
  for (const connection of connections) connection.socket.destroy();
  const acknowledged = Math.min(counter.acked, latencies.length);
  const timeline = request.timelineSliceMs === undefined ? undefined : sliceLatencies(latencies, sentTimes, acknowledged, startedAt, request.timelineSliceMs);
  let steady: LoadResult['steady'];
  if (request.measureAfterMs !== undefined && request.qos > 0) {
    const from = startedAt + request.measureAfterMs;
    const values: number[] = [];
    for (let i = 0; i < acknowledged; i += 1) if (sentTimes[i]! >= from) values.push(latencies[i]!);
    const sorted = Float64Array.from(values).sort();
    steady = { count: sorted.length, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99), maxMs: sorted.length === 0 ? 0 : sorted[sorted.length - 1]! };
  }
  const measured = latencies.subarray(0, acknowledged).sort();
  return {
    kind: 'result',
    sent: next,
    acknowledged: request.qos > 0 ? counter.acked : next,
    elapsedMs,
    latencyP50Ms: percentile(measured, 0.5),
    latencyP99Ms: percentile(measured, 0.99),
    latencyMaxMs: measured.length === 0 ? 0 : measured[measured.length - 1]!,
    ...(timeline === undefined ? {} : { timeline }),
    ...(steady === undefined ? {} : { steady }),
    ...(error === undefined ? {} : { error }),
  };
}

process.on('message', (message: LoadRequest) => {
  if (message.kind !== 'load') return;
  run(message).then(
    (result) => process.send!(result, () => process.exit(0)),
    (failure: unknown) =>
      process.send!(
        { kind: 'result', sent: 0, acknowledged: 0, elapsedMs: 0, latencyP50Ms: 0, latencyP99Ms: 0, latencyMaxMs: 0, error: String(failure) },
        () => process.exit(1),
      ),
  );
});
