/**
 * A private Mosquitto broker (Debian's package) on a free loopback port, for benchmarks and
 * interop tests. Default settings, in memory: the baseline users would compare against,
 * except that a subscriber's queue is unbounded: by default Mosquitto silently drops QoS 1
 * messages beyond 1,000 queued per subscriber, which would make a pub→sub run lose readings
 * instead of measuring how fast it relays them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeLoopbackPort } from '../net/index.js';

export interface MosquittoBroker {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not open port ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface MosquittoOptions {
  readonly binary?: string;
  /** A fixed port, e.g. to restart a broker where its clients expect it; default a free one. */
  readonly port?: number;
  /**
   * Keep sessions and queued messages in this directory across restarts (saved when the
   * broker stops); default in memory, as the baseline. Started as root, Mosquitto saves as
   * its own user, so the directory's parents must let that user through (e.g. a fresh
   * directory directly under the temporary directory).
   */
  readonly persistenceDir?: string;
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<MosquittoBroker> {
  const port = options.port ?? (await freeLoopbackPort());
  const dir = mkdtempSync(join(tmpdir(), 'portcall-mosquitto-'));
  const configFile = join(dir, 'mosquitto.conf');
  // Started as root, Mosquitto drops to its own user before it saves: the directory must be
  // writable for that user.
  if (options.persistenceDir !== undefined) chmodSync(options.persistenceDir, 0o777);
  const persistence =
    options.persistenceDir === undefined
      ? 'persistence false\n'
      : `persistence true\npersistence_location ${options.persistenceDir}/\nautosave_interval 0\n`;
  writeFileSync(configFile, `listener ${port} 127.0.0.1\nallow_anonymous true\n${persistence}max_queued_messages 0\n`);
  const child: ChildProcess = spawn(options.binary ?? '/usr/sbin/mosquitto', ['-c', configFile], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  try {
    await Promise.race([
      waitForPort(port, 10_000),
      exited.then(() => {
        throw new Error(`mosquitto exited at start: ${stderr.trim()}`);
      }),
    ]);
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    stop: async () => {
      process.removeListener('exit', killOnExit);
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
