/**
 * One site of the chaos run as a real `portcall edge` or `portcall shore` process: its output
 * appended to a file, killable with SIGKILL and restartable on the same ports and data.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { portcallEntry } from '../build-layout/index.js';

export class ChaosSite {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly output: WriteStream;
  starts = 0;
  /** Times the process exited while starting and was started again. */
  startFailures = 0;

  constructor(
    readonly name: string,
    readonly kind: 'edge' | 'shore',
    readonly httpPort: number,
    readonly configFile: string,
    readonly logFile: string,
  ) {
    this.output = createWriteStream(logFile, { flags: 'a' });
  }

  get url(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Starts the process and waits (bounded) until /healthz answers 200. A process that exits
   * while starting (a Kafka-backed site whose broker is still loading its coordinators
   * refuses to open) is started again, as a supervisor would, and counted in `startFailures`.
   */
  async start(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.startOnce(deadline)) return;
      this.startFailures += 1;
      if (Date.now() > deadline) throw new Error(`${this.name} exited while starting, again and again for ${timeoutMs} ms; see ${this.logFile}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  /** True when the process answered /healthz, false when it exited first. */
  private async startOnce(deadline: number): Promise<boolean> {
    this.starts += 1;
    const child = spawn(process.execPath, [portcallEntry(), this.kind, '--config', this.configFile], {
      env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.pipe(this.output, { end: false });
    child.stderr!.pipe(this.output, { end: false });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) return false;
      try {
        const response = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        await response.arrayBuffer();
        if (response.status === 200) return true;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await this.kill9();
        throw new Error(`${this.name} did not become healthy on ${this.url} in time; see ${this.logFile}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** kill -9: the process gets no chance to flush or close anything. */
  async kill9(): Promise<void> {
    if (!this.running) return;
    this.child!.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL after the grace period. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (child !== undefined && this.running) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
  }

  /** Whether it serves GET /v1/summaries (per-topic summaries for `portcall verify --sites`; older Kafka-backed sites did not). */
  async servesSummaries(): Promise<boolean> {
    return (await this.getJson<unknown>('/v1/summaries', 30_000, true)) !== undefined;
  }

  close(): void {
    this.output.end();
  }

  /** GET a JSON document; with `notFoundIsUndefined`, a 404 (a topic the site does not hold) is undefined. */
  async getJson<T>(path: string, timeoutMs = 30_000, notFoundIsUndefined = false): Promise<T> {
    // A store catching up (the Kafka site's index) answers 503: wait a little, a few times.
    for (let attempt = 0; ; attempt += 1) {
      const response = await fetch(`${this.url}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
      if (response.status === 503 && attempt < 30) {
        await response.arrayBuffer();
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      if (response.status === 404 && notFoundIsUndefined) {
        await response.arrayBuffer();
        return undefined as T;
      }
      if (!response.ok) throw new Error(`${this.name} GET ${path}: HTTP ${response.status} ${(await response.text()).slice(0, 200)}`);
      return (await response.json()) as T;
    }
  }
}
