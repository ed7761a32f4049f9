/**
 * A fault-injecting TCP proxy for tests, benchmarks and the demo: it stands between a
 * forwarder and a receiving site and behaves like the link a ship has, or worse.
 *
 * - latency and jitter, one way, in each direction (RTT = 2 × latency);
 * - a bandwidth limit, per direction, shared by all connections like one satellite channel
 *   (bytes leave in arrival order at the link's rate; a sender that writes faster fills
 *   the proxy's queue up to a bound, then TCP backpressure pushes back, as a modem does);
 * - stall (blackhole): nothing is delivered in either direction until it ends, while the
 *   connections stay open, as when a satellite loses lock;
 * - reset: every open connection is torn down with a TCP RST;
 * - cut after N bytes: connections are reset once that many bytes went through, and
 *   `resetEvery` does so again and again after a random number of bytes;
 * - down: new connections are refused (RST at accept) and open ones reset;
 * - flaps: a repeating schedule of up / down / stall phases.
 *
 * Everything is on 127.0.0.0/8. Random choices come from a seeded generator so a failing
 * run can be repeated.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface FaultProxyOptions {
  readonly targetHost?: string;
  readonly targetPort: number;
  readonly listenHost?: string;
  /** 0 (default) picks a free port. */
  readonly listenPort?: number;
  /** One-way delay added to every byte, each direction. */
  readonly latencyMs?: number;
  /** Extra delay, uniform in [0, jitterMs]; bytes never overtake each other. */
  readonly jitterMs?: number;
  /** Each direction's rate; undefined = unlimited. */
  readonly bandwidthBytesPerSecond?: number;
  /** Reset every connection each time this many more bytes (both directions) went through. */
  readonly resetEvery?: { readonly minBytes: number; readonly maxBytes: number };
  readonly seed?: number;
}

export type FlapMode = 'up' | 'down' | 'stall';

export interface FlapPhase {
  readonly mode: FlapMode;
  readonly durationMs: number;
}

export interface FaultProxyStats {
  readonly connections: number;
  readonly openConnections: number;
  /** Bytes delivered client → server and server → client. */
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly resets: number;
  readonly refused: number;
  readonly stalls: number;
}

/** Piece size the bandwidth limit delivers at a time; smaller is smoother and costs more timers. */
const PIECE_BYTES = 4096;
/** Bytes a direction may hold beyond the link's bandwidth-delay product before pushing back. */
const QUEUE_SLACK_BYTES = 64 * 1024;

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One direction of the link, shared by every connection: a FIFO wire with a rate and a delay. */
class Wire {
  /** When the wire has sent everything queued so far (ms, performance.now()). */
  private busyUntil = 0;
  private lastArrival = 0;
  bytes = 0;
  constructor(private readonly proxy: FaultProxy) {}

  /** When a piece entering now arrives at the far end. */
  schedule(bytes: number): number {
    const now = performance.now();
    const rate = this.proxy.bandwidthBytesPerSecond;
    const start = Math.max(now, this.busyUntil);
    this.busyUntil = rate === undefined ? start : start + (bytes / rate) * 1000;
    const jitter = this.proxy.jitterMs > 0 ? this.proxy.random() * this.proxy.jitterMs : 0;
    this.lastArrival = Math.max(this.lastArrival, this.busyUntil + this.proxy.latencyMs + jitter);
    return this.lastArrival;
  }

  /** Shifts everything queued by `ms` (time spent stalled does not count as sending). */
  postpone(ms: number): void {
    this.busyUntil += ms;
    this.lastArrival += ms;
  }
}

interface Piece {
  readonly data: Buffer;
  arriveAt: number;
}

/** One direction of one connection: pieces on their way from `from` to `to`. */
class Flow {
  private readonly pieces: Piece[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private pausedSource = false;
  private waitingDrain = false;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly wire: Wire,
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly direction: 'up' | 'down',
  ) {
    from.on('data', (chunk: Buffer) => this.accept(chunk));
    to.on('drain', () => {
      this.waitingDrain = false;
      this.pump();
    });
  }

  private highWaterBytes(): number {
    const rate = this.proxy.bandwidthBytesPerSecond;
    const bdp = rate === undefined ? 0 : (rate * (this.proxy.latencyMs + this.proxy.jitterMs)) / 1000;
    return bdp + QUEUE_SLACK_BYTES;
  }

  private accept(chunk: Buffer): void {
    for (let offset = 0; offset < chunk.length; offset += PIECE_BYTES) {
      const data = chunk.subarray(offset, Math.min(chunk.length, offset + PIECE_BYTES));
      this.pieces.push({ data, arriveAt: this.wire.schedule(data.length) });
      this.queuedBytes += data.length;
    }
    if (this.queuedBytes > this.highWaterBytes() && !this.pausedSource) {
      this.pausedSource = true;
      this.from.pause();
    }
    this.pump();
  }

  postpone(ms: number): void {
    for (const piece of this.pieces) piece.arriveAt += ms;
  }

  pump(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.proxy.stalled || this.waitingDrain || this.to.destroyed) return;
    const now = performance.now();
    while (this.pieces.length > 0 && this.pieces[0]!.arriveAt <= now) {
      const piece = this.pieces.shift()!;
      this.queuedBytes -= piece.data.length;
      this.wire.bytes += piece.data.length;
      const writable = this.to.write(piece.data);
      if (this.proxy.countDelivered(piece.data.length, this.direction)) return; // reset by the count
      if (!writable) {
        this.waitingDrain = true;
        break;
      }
    }
    if (this.pausedSource && this.queuedBytes < this.highWaterBytes() / 2) {
      this.pausedSource = false;
      this.from.resume();
    }
    if (!this.waitingDrain && this.pieces.length > 0) {
      this.timer = setTimeout(() => this.pump(), Math.max(0, this.pieces[0]!.arriveAt - now));
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.pieces.length = 0;
  }
}

class Connection {
  readonly flows: Flow[] = [];
  closed = false;
  constructor(
    readonly client: Socket,
    readonly server: Socket,
  ) {}
}

export class FaultProxy {
  latencyMs: number;
  jitterMs: number;
  bandwidthBytesPerSecond: number | undefined;
  stalled = false;
  readonly random: () => number;
  private readonly server: Server;
  private readonly connections = new Set<Connection>();
  private readonly up: Wire;
  private readonly down: Wire;
  private refusing = false;
  private stallStartedAt = 0;
  private stallTimer: NodeJS.Timeout | undefined;
  private flapTimer: NodeJS.Timeout | undefined;
  private resetEvery: { minBytes: number; maxBytes: number } | undefined;
  /** Bytes until the next reset by count (cutAfter, resetEvery); Infinity = none. */
  private bytesUntilReset = Infinity;
  private counters = { connections: 0, resets: 0, refused: 0, stalls: 0 };
  private boundPort = 0;

  private constructor(private readonly options: FaultProxyOptions) {
    this.latencyMs = options.latencyMs ?? 0;
    this.jitterMs = options.jitterMs ?? 0;
    this.bandwidthBytesPerSecond = options.bandwidthBytesPerSecond;
    this.random = seeded(options.seed ?? 1);
    this.up = new Wire(this);
    this.down = new Wire(this);
    if (options.resetEvery !== undefined) this.setResetEvery(options.resetEvery);
    this.server = createServer((client) => this.accept(client));
  }

  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(options.listenPort ?? 0, options.listenHost ?? '127.0.0.1', () => resolve());
    });
    const address = proxy.server.address();
    proxy.boundPort = typeof address === 'object' && address !== null ? address.port : 0;
    return proxy;
  }

  get port(): number {
    return this.boundPort;
  }

  get host(): string {
    return this.options.listenHost ?? '127.0.0.1';
  }

  /** http://host:port, for pointing a link at the proxy. */
  url(scheme: 'http' | 'https' = 'http'): string {
    return `${scheme}://${this.host}:${this.port}`;
  }

  private accept(client: Socket): void {
    if (this.refusing) {
      this.counters.refused += 1;
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    this.counters.connections += 1;
    client.setNoDelay(true);
    client.pause();
    const server = connect({ host: this.options.targetHost ?? '127.0.0.1', port: this.options.targetPort });
    server.setNoDelay(true);
    const connection = new Connection(client, server);
    this.connections.add(connection);
    const close = () => this.closeConnection(connection, false);
    client.on('error', close);
    server.on('error', close);
    client.on('close', close);
    server.on('close', close);
    // A half-close is passed on once everything before it has been delivered.
    client.on('end', () => server.end());
    server.on('end', () => client.end());
    server.once('connect', () => {
      connection.flows.push(new Flow(this, this.up, client, server, 'up'), new Flow(this, this.down, server, client, 'down'));
      client.resume();
    });
  }

  private closeConnection(connection: Connection, reset: boolean): void {
    if (connection.closed) return;
    connection.closed = true;
    this.connections.delete(connection);
    for (const flow of connection.flows) flow.stop();
    for (const socket of [connection.client, connection.server]) {
      socket.on('error', () => undefined);
      if (reset && !socket.destroyed) socket.resetAndDestroy();
      else socket.destroy();
    }
  }

  /** Counts delivered bytes; true when that triggered a reset of every connection. */
  countDelivered(bytes: number, _direction: 'up' | 'down'): boolean {
    if (this.bytesUntilReset === Infinity) return false;
    this.bytesUntilReset -= bytes;
    if (this.bytesUntilReset > 0) return false;
    this.pickNextReset();
    this.reset();
    return true;
  }

  private pickNextReset(): void {
    const every = this.resetEvery;
    this.bytesUntilReset = every === undefined ? Infinity : every.minBytes + Math.floor(this.random() * (every.maxBytes - every.minBytes + 1));
  }

  /** Resets connections again and again, each time after a random number of bytes in [min, max]. */
  setResetEvery(every: { minBytes: number; maxBytes: number } | undefined): void {
    this.resetEvery = every;
    this.pickNextReset();
  }

  /** Resets connections once, after `bytes` more bytes went through (both directions). */
  cutAfter(bytes: number): void {
    this.resetEvery = undefined;
    this.bytesUntilReset = bytes;
  }

  /** Tears down every open connection with a TCP RST. */
  reset(): void {
    this.counters.resets += 1;
    for (const connection of [...this.connections]) this.closeConnection(connection, true);
  }

  /** Delivers nothing in either direction for `durationMs` (or until `resume`), connections kept open. */
  stall(durationMs?: number): void {
    if (!this.stalled) {
      this.stalled = true;
      this.stallStartedAt = performance.now();
      this.counters.stalls += 1;
    }
    if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
    this.stallTimer = durationMs === undefined ? undefined : setTimeout(() => this.resume(), durationMs);
  }

  resume(): void {
    if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    if (!this.stalled) return;
    this.stalled = false;
    // The stall took the wire's time: what was queued arrives that much later, not at once.
    const stalledMs = performance.now() - this.stallStartedAt;
    this.up.postpone(stalledMs);
    this.down.postpone(stalledMs);
    for (const connection of this.connections) {
      for (const flow of connection.flows) {
        flow.postpone(stalledMs);
        flow.pump();
      }
    }
  }

  /** Refuses new connections and resets open ones until `setUp`. */
  setDown(): void {
    this.refusing = true;
    this.reset();
  }

  setUp(): void {
    this.refusing = false;
    this.resume();
  }

  /** Runs the phases in order, again and again (`repeat`), until `stopFlaps` or close. */
  flap(phases: readonly FlapPhase[], repeat = true): void {
    this.stopFlaps();
    let index = 0;
    const next = () => {
      if (index >= phases.length) {
        if (!repeat) {
          this.setUp();
          return;
        }
        index = 0;
      }
      const phase = phases[index++]!;
      if (phase.mode === 'down') this.setDown();
      else if (phase.mode === 'stall') {
        this.refusing = false;
        this.stall();
      } else this.setUp();
      this.flapTimer = setTimeout(next, phase.durationMs);
    };
    next();
  }

  stopFlaps(): void {
    if (this.flapTimer !== undefined) clearTimeout(this.flapTimer);
    this.flapTimer = undefined;
  }

  setLatency(latencyMs: number, jitterMs = 0): void {
    this.latencyMs = latencyMs;
    this.jitterMs = jitterMs;
  }

  setBandwidth(bytesPerSecond: number | undefined): void {
    this.bandwidthBytesPerSecond = bytesPerSecond;
  }

  stats(): FaultProxyStats {
    return {
      connections: this.counters.connections,
      openConnections: this.connections.size,
      bytesUp: this.up.bytes,
      bytesDown: this.down.bytes,
      resets: this.counters.resets,
      refused: this.counters.refused,
      stalls: this.counters.stalls,
    };
  }

  async close(): Promise<void> {
    this.stopFlaps();
    if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
    for (const connection of [...this.connections]) this.closeConnection(connection, false);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Parses "up:30s,down:10s,stall:2s" (units ms, s, m) into flap phases. */
export function parseFlaps(text: string): FlapPhase[] {
  return text.split(',').map((part) => {
    const match = /^\s*(up|down|stall):(\d+(?:\.\d+)?)(ms|s|m)\s*$/.exec(part);
    if (match === null) throw new Error(`"${part}" is not a flap phase like up:30s, down:10s or stall:500ms`);
    const scale = match[3] === 'ms' ? 1 : match[3] === 's' ? 1000 : 60_000;
    return { mode: match[1] as FlapMode, durationMs: Number(match[2]) * scale };
  });
}
