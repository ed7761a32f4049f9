/**
 * Runs the built `portcall` command line as a real child process, the way an operator would,
 * and waits for the line that says it is up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';

import { bundledEntry } from '../../tools/build-layout/index.js';

/** The bundle, never tsc's tree: the tests run what `bin` and `npm start` run (npm test builds it first). */
export const PORTCALL_BIN = bundledEntry();

export interface PortcallProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything the process printed so far. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

export function startPortcall(args: readonly string[], env: NodeJS.ProcessEnv = {}): PortcallProcess {
  const child = spawn(process.execPath, [PORTCALL_BIN, ...args], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const check of waiters) check();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    for (const check of waiters) check();
    resolve(code);
  }));
  return {
    child,
    pid: child.pid!,
    output: () => output,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${pattern} in output:\n${output}`));
        }, timeoutMs);
        const check = () => {
          const match = output.match(pattern);
          if (match) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(match);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(new Error(`portcall exited (${child.exitCode ?? child.signalCode}) before ${pattern}; output:\n${output}`));
          }
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export function writeYaml(path: string, document: unknown): string {
  writeFileSync(path, stringify(document));
  return path;
}

/** Runs `portcall <args>` to its end: its exit code and what it printed on each stream. */
export function runPortcall(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [PORTCALL_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** PIDs whose parent is `pid` (a demo's site processes, say), from /proc: to find orphans a stop left behind. */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** kill -9 of a process and of the children it had (a demo's sites), so a run that failed half-way leaves nothing behind. */
export async function kill9WithChildren(parent: PortcallProcess): Promise<void> {
  const orphans = childrenOf(parent.pid);
  await parent.kill9();
  for (const pid of orphans) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
