import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Lowest port handed out: above the registered services most machines run below it. */
const LOWEST_PORT = 10_000;
/** Ports this process has handed out: never twice, since the caller binds them later. */
const handedOut = new Set<number>();

/** Lowest source port the kernel gives outgoing connections (Linux), or its default. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 0) return low;
  } catch {
    // not Linux: the kernel's range is unknown; assume Linux's default
  }
  return 32_768;
}

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * A loopback port that was free a moment ago, for a process the caller starts later. Another
 * process can take it before the caller binds it; callers that can bind port 0 themselves
 * should do that instead.
 *
 * Why not the kernel's port 0: that hands out a port from the range the kernel also takes
 * source ports of outgoing connections from, so between this call and the caller's bind any
 * connection on the machine (a Kafka client's, an HTTP fetch's) may be given it: a voyage
 * site then failed to start with its HTTP or MQTT port in use (CI, 2026-11-22). Below that
 * range only another listener can take the port, and listeners here ask this function.
 */
export async function freeLoopbackPort(): Promise<number> {
  const span = ephemeralLow() - LOWEST_PORT;
  if (span >= 1_000) {
    const start = Math.floor(Math.random() * span);
    for (let attempt = 0; attempt < 64; attempt += 1) {
      const port = LOWEST_PORT + ((start + attempt * 7_919) % span);
      if (handedOut.has(port)) continue;
      if ((await tryListen(port)) === port) {
        handedOut.add(port);
        return port;
      }
    }
  }
  // No room below the kernel's range, or nothing free there: the kernel picks.
  const port = await tryListen(0);
  if (port === undefined) throw new Error('no free loopback port');
  handedOut.add(port);
  return port;
}
