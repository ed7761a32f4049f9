/**
 * A raw-socket MQTT load generator in its own process (see generator-process.ts), and an
 * ack-only sink to measure the generator's own ceiling. Benchmarks drive a broker under test
 * with `runLoad`, so the same generator measures portcall and its baseline.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { compiledModule } from '../../tools/build-layout/index.js';
import type { LoadRequest, LoadResult, SinkReady } from './protocol.js';

export type { LoadRequest, LoadResult } from './protocol.js';

const GENERATOR = compiledModule('bench/raw-load/generator-process.js');
const SINK = compiledModule('bench/raw-load/ack-sink-process.js');

function once<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${what} exited (${code}) before answering`));
    child.once('exit', onExit);
    child.once('message', (message) => {
      child.off('exit', onExit);
      resolve(message as T);
    });
  });
}

export async function runLoad(request: Omit<LoadRequest, 'kind'>): Promise<LoadResult> {
  const child = fork(GENERATOR, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const answer = once<LoadResult>(child, 'load generator');
    child.send({ kind: 'load', ...request } satisfies LoadRequest);
    return await answer;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export interface AckSink {
  readonly port: number;
  stop(): Promise<void>;
}

export async function startAckSink(): Promise<AckSink> {
  const child = fork(SINK, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await once<SinkReady>(child, 'ack sink');
  return {
    port: ready.port,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
