/**
 * Sites of the voyage demo as real processes: each site is `portcall edge` or `portcall shore`
 * with a generated configuration, its output going to a log file, restartable after kill -9
 * on the same ports (peers and proxies expect it there).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { portcallEntry } from '../tools/build-layout/index.js';

const PORTCALL_BIN = portcallEntry();

export class SiteProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly output: WriteStream;
  readonly configFile: string;
  restarts = 0;

  constructor(
    readonly name: string,
    readonly kind: 'edge' | 'shore',
    readonly httpPort: number,
    config: Record<string, unknown>,
    dir: string,
  ) {
    this.configFile = join(dir, `${name.toLowerCase()}.yaml`);
    writeFileSync(this.configFile, stringify(config));
    this.output = createWriteStream(join(dir, `${name.toLowerCase()}.log`), { flags: 'a' });
  }

  get url(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process and waits until its HTTP port answers. */
  async start(timeoutMs = 60_000): Promise<void> {
    const child = spawn(process.execPath, [PORTCALL_BIN, this.kind, '--config', this.configFile], {
      env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.pipe(this.output, { end: false });
    child.stderr!.pipe(this.output, { end: false });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let exitCode: number | null | undefined;
    child.once('exit', (code) => (exitCode = code));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exitCode !== undefined) throw new Error(`${this.name} exited with ${exitCode} while starting; see ${this.output.path as string}`);
      try {
        const response = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (response.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`${this.name} did not answer on ${this.url} within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** kill -9: the process gets no chance to flush or close anything. */
  async kill9(): Promise<void> {
    if (this.child === undefined || this.child.exitCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.kill9();
    this.restarts += 1;
    await this.start();
  }

  /** SIGTERM, then SIGKILL if it does not stop within the grace period. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    this.output.end();
  }

  /** GET as JSON; asked again (at most three times) when the connection fails, e.g. a reset keep-alive socket on a loaded machine. */
  async getJson<T>(path: string, token?: string, timeoutMs = 10_000): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      let response: Response;
      try {
        response = await fetch(`${this.url}${path}`, {
          signal: AbortSignal.timeout(timeoutMs),
          ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
        });
      } catch (error) {
        if (attempt >= 3 || !(error instanceof TypeError)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
        continue;
      }
      if (!response.ok) throw new Error(`${this.name} ${path}: HTTP ${response.status}`);
      return (await response.json()) as T;
    }
  }

  /** Sum of a Prometheus counter's samples whose labels contain `labelFilter`. */
  async metric(name: string, labelFilter = ''): Promise<number> {
    const response = await fetch(`${this.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    const text = await response.text();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
      if (labelFilter !== '' && !line.includes(labelFilter)) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }
}
