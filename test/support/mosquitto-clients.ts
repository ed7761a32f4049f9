/**
 * Debian's mosquitto_pub and mosquitto_sub, run as they are: software nobody here wrote,
 * talking to the gateway.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';

export interface ClientRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function mosquittoPub(args: readonly string[], timeoutMs = 10_000): Promise<ClientRun> {
  return new Promise((resolve) => {
    execFile('/usr/bin/mosquitto_pub', ['-V', 'mqttv311', ...args], { timeout: timeoutMs }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

export interface RunningSubscriber {
  readonly child: ChildProcess;
  /** Lines printed so far. */
  lines(): string[];
  waitForLines(count: number, timeoutMs?: number): Promise<string[]>;
  /** Resolves when it has connected and subscribed (it prints nothing until then, so wait on the broker). */
  kill9(): void;
  exited: Promise<number | null>;
}

export function mosquittoSub(args: readonly string[]): RunningSubscriber {
  // Line-buffered: piped stdout is otherwise block-buffered and a killed client never flushes.
  const child = spawn('stdbuf', ['-oL', '/usr/bin/mosquitto_sub', '-V', 'mqttv311', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let errors = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = () => output.split('\n').filter((line) => line.length > 0);
  return {
    child,
    lines,
    exited,
    kill9: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    async waitForLines(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (lines().length < count) {
        if (Date.now() > deadline) throw new Error(`mosquitto_sub printed ${lines().length} of ${count} lines; stderr: ${errors}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return lines();
    },
  };
}
