/**
 * The log's indexer thread runs at a lower scheduling priority (Linux nice 10 by default), so
 * the threads a PUBACK waits for run first; it changes that thread alone, never the process
 * nor the WAL checkpointer's thread. How far the index lags is on /metrics, since at that
 * priority it may fall behind under load.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, expect, it } from 'vitest';
import type { NewRecord } from '../core/index.js';
import { SqliteLog } from '../edge/log/index.js';

const dirs: string[] = [];
const logs: SqliteLog[] = [];
afterEach(async () => {
  for (const log of logs.splice(0)) await log.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function openLog(options: { indexerNice?: number; indexer?: 'thread' | 'inline' }): { log: SqliteLog; registry: Registry } {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-indexer-nice-'));
  dirs.push(dir);
  const registry = new Registry();
  const log = SqliteLog.open({ siteId: 'SHIP', path: join(dir, 'log.sqlite'), retentionIntervalMs: 0, registry, ...options });
  logs.push(log);
  return { log, registry };
}

/** Nice value of each thread of this process, from /proc (field 19 of a task's stat line). */
function threadNiceValues(): Map<number, number> {
  const result = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // The command name (field 2) may hold spaces; the fields after it are plain.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      result.set(Number(tid), Number(fields[16]));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return result;
}

async function gaugeValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((entry) => entry.name === name);
  const value = metric?.values.find((entry) => Object.entries(labels).every(([key, label]) => entry.labels[key] === label));
  return value?.value;
}

async function waitFor<T>(read: () => Promise<T>, accept: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const reading = (i: number): NewRecord => ({ stream: 'containers', topic: `C${i % 7}`, payload: Buffer.from(`{"t":${i}}`), eventTimeMs: 1_700_000_000_000 + i });

/** Opens a log and checks that exactly one of the threads it started runs at `expected`, the rest at the process's. */
async function expectIndexerAt(options: { indexerNice?: number }, expected: number): Promise<void> {
  const processNice = getPriority(0);
  expect(processNice).toBeLessThan(expected);
  const before = new Set(threadNiceValues().keys());
  const { registry } = openLog(options);
  expect(await waitFor(() => gaugeValue(registry, 'portcall_log_indexer_nice'), (value) => value !== undefined && !Number.isNaN(value), 'the indexer to report its priority')).toBe(expected);
  const started = [...threadNiceValues()].filter(([tid]) => !before.has(tid));
  // The indexer's and the checkpointer's threads at least (V8 may add helpers of its own).
  expect(started.length).toBeGreaterThanOrEqual(2);
  expect(started.filter(([, nice]) => nice === expected)).toHaveLength(1);
  for (const [, nice] of started.filter(([, value]) => value !== expected)) expect(nice).toBe(processNice);
  // The process (its main thread, which commits) keeps its priority.
  expect(threadNiceValues().get(process.pid)).toBe(processNice);
  expect(getPriority(0)).toBe(processNice);
}

it.runIf(process.platform === 'linux')('lowers the indexer thread alone to nice 10 by default, and says so on /metrics', async () => {
  await expectIndexerAt({}, 10);
});

it.runIf(process.platform === 'linux')('lowers it to the nice value asked for', async () => {
  await expectIndexerAt({ indexerNice: 19 }, 19);
});

it.runIf(process.platform === 'linux')('leaves the indexer at the process priority with indexerNice 0', async () => {
  const processNice = getPriority(0);
  const before = new Set(threadNiceValues().keys());
  const { registry } = openLog({ indexerNice: 0 });
  expect(await waitFor(() => gaugeValue(registry, 'portcall_log_indexer_nice'), (value) => value !== undefined && !Number.isNaN(value), 'the indexer to report its priority')).toBe(processNice);
  const newThreads = [...threadNiceValues()].filter(([tid]) => !before.has(tid));
  expect(newThreads.length).toBeGreaterThan(0);
  for (const [, nice] of newThreads) expect(nice).toBe(processNice);
});

it('counts the records committed past the topic index per stream, back to 0 once indexed', async () => {
  const { log, registry } = openLog({ indexer: 'inline' });
  await log.append(Array.from({ length: 100 }, (_, i) => reading(i)));
  expect(await gaugeValue(registry, 'portcall_log_unindexed_records', { stream: 'containers' })).toBe(100);
  expect(log.indexNow()).toBe(100);
  expect(await gaugeValue(registry, 'portcall_log_unindexed_records', { stream: 'containers' })).toBe(0);
  await log.append(Array.from({ length: 30 }, (_, i) => reading(100 + i)));
  expect(await gaugeValue(registry, 'portcall_log_unindexed_records', { stream: 'containers' })).toBe(30);
});
