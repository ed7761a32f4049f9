/**
 * The fault-injecting TCP proxy itself, over real loopback sockets: each fault does what it
 * says, so the uplink tests that rely on it test what they claim.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultProxy, parseFlaps } from '../tools/fault-proxy/index.js';

/** A server that counts what it receives and answers every chunk with one byte. */
async function sink(): Promise<{ server: Server; port: number; received: () => number }> {
  let received = 0;
  const server = createServer((socket) => {
    socket.on('data', (chunk) => {
      received += chunk.length;
      socket.write('k');
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, port: (server.address() as { port: number }).port, received: () => received };
}

async function open(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return socket;
}

function firstReply(socket: Socket): Promise<number> {
  const startedAt = performance.now();
  return new Promise((resolve) => socket.once('data', () => resolve(performance.now() - startedAt)));
}

function closed(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    socket.once('close', () => resolve('closed'));
  });
}

describe('fault proxy', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function setUp(options: Partial<Parameters<typeof FaultProxy.start>[0]> = {}) {
    const target = await sink();
    cleanups.push(() => void target.server.close());
    const proxy = await FaultProxy.start({ targetPort: target.port, ...options });
    cleanups.push(() => proxy.close());
    return { target, proxy };
  }

  it('adds latency each way: a round trip takes twice the one-way delay', async () => {
    const { proxy } = await setUp({ latencyMs: 150 });
    const socket = await open(proxy.port);
    cleanups.push(() => void socket.destroy());
    const reply = firstReply(socket);
    socket.write('ping');
    const rtt = await reply;
    expect(rtt).toBeGreaterThanOrEqual(295);
    expect(rtt).toBeLessThan(1500);
  });

  it('limits bandwidth', async () => {
    const { target, proxy } = await setUp({ bandwidthBytesPerSecond: 200_000 });
    const socket = await open(proxy.port);
    cleanups.push(() => void socket.destroy());
    const startedAt = performance.now();
    const chunk = Buffer.alloc(64 * 1024);
    for (let sent = 0; sent < 400_000; sent += chunk.length) {
      if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
    }
    while (target.received() < 6 * chunk.length) await new Promise((resolve) => setTimeout(resolve, 20));
    const seconds = (performance.now() - startedAt) / 1000;
    // 393,216 bytes at 200,000 B/s: about 2 s, never faster than the link.
    expect(seconds).toBeGreaterThan(1.8);
    expect(seconds).toBeLessThan(6);
  });

  it('stalls: nothing is delivered while stalled, everything after, on the same connection', async () => {
    const { target, proxy } = await setUp();
    const socket = await open(proxy.port);
    cleanups.push(() => void socket.destroy());
    proxy.stall(600);
    socket.write('hello');
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(target.received()).toBe(0);
    const reply = firstReply(socket);
    await reply;
    expect(target.received()).toBe(5);
    expect(socket.destroyed).toBe(false);
    expect(proxy.stats().stalls).toBe(1);
  });

  it('resets every open connection with a TCP RST', async () => {
    const { proxy } = await setUp();
    const socket = await open(proxy.port);
    const ended = closed(socket);
    socket.write('x');
    await firstReply(socket);
    proxy.reset();
    expect(await ended).toBe('ECONNRESET');
  });

  it('cuts a connection after N bytes, and again and again with resetEvery', async () => {
    const { proxy } = await setUp();
    proxy.cutAfter(10_000);
    const socket = await open(proxy.port);
    const ended = closed(socket);
    socket.write(Buffer.alloc(64 * 1024));
    expect(await ended).toBe('ECONNRESET');
    // Delivered up to the cut (a piece at most past it), then nothing.
    expect(proxy.stats().bytesUp).toBeGreaterThanOrEqual(10_000);
    expect(proxy.stats().bytesUp).toBeLessThan(16 * 1024);

    proxy.setResetEvery({ minBytes: 5000, maxBytes: 8000 });
    for (let round = 0; round < 3; round += 1) {
      const next = await open(proxy.port);
      const nextEnded = closed(next);
      next.write(Buffer.alloc(20_000));
      expect(await nextEnded).toBe('ECONNRESET');
    }
    expect(proxy.stats().resets).toBe(4);
  });

  it('goes down (refusing connections) and up again, on a schedule of flaps', async () => {
    const { proxy } = await setUp();
    proxy.flap(parseFlaps('down:300ms,up:10s'), false);
    const refused = connect(proxy.port, '127.0.0.1');
    expect(await closed(refused)).toMatch(/ECONNRESET|closed/);
    await new Promise((resolve) => setTimeout(resolve, 400));
    const socket = await open(proxy.port);
    cleanups.push(() => void socket.destroy());
    socket.write('x');
    expect(await firstReply(socket)).toBeLessThan(1000);
    expect(proxy.stats().refused).toBe(1);
    expect(() => parseFlaps('sideways:1s')).toThrow(/flap phase/);
  });
});
