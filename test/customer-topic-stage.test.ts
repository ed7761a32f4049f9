/**
 * The customer topic stage (cloud/customer-topics) on its own: a real SqliteLog as the stream
 * source, and an in-memory transactional sink that can fail a commit either cleanly (nothing
 * applied) or ambiguously (applied, then the error), as Kafka can. The acceptance test against
 * a real broker is test/kafka-customer-topics.test.ts; this one reaches the failure paths on
 * purpose, which kills reach only by chance.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterEach, describe, expect, it } from 'vitest';

import { CustomerTopicStage, type CustomerTopicSink } from '../cloud/customer-topics/index.js';
import { StoreUnavailableError, type LogRecord, type RecordFilter } from '../core/index.js';
import { SqliteLog } from '../edge/log/index.js';

/** Committed state as a read_committed reader would see it, plus failure injection. */
class MemorySink implements CustomerTopicSink {
  readonly committed: { customer: string; record: LogRecord }[] = [];
  readonly positions = new Map<string, number>();
  opens = 0;
  /** What the next commits do: 'ok', 'clean' (fails, nothing applied) or 'ambiguous' (applied, then fails). */
  readonly script: ('ok' | 'clean' | 'ambiguous')[] = [];
  private open_ = false;

  async open(): Promise<Map<string, number>> {
    this.opens += 1;
    this.open_ = true;
    return new Map(this.positions);
  }

  async commit(records: readonly { customer: string; record: LogRecord }[], positions: ReadonlyMap<string, number>): Promise<void> {
    if (!this.open_) throw new StoreUnavailableError('not open');
    const outcome = this.script.shift() ?? 'ok';
    if (outcome !== 'clean') {
      this.committed.push(...records);
      for (const [key, position] of positions) this.positions.set(key, position);
    }
    if (outcome !== 'ok') {
      this.open_ = false;
      throw new StoreUnavailableError(`injected ${outcome} failure`);
    }
  }

  async close(): Promise<void> {}

  identities(customer: string): string[] {
    return this.committed.filter((entry) => entry.customer === customer).map(({ record }) => `${record.topic}@${record.offset}`);
  }
}

const dirs: string[] = [];
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function openLog(): SqliteLog {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-customer-stage-'));
  dirs.push(dir);
  const log = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'log.sqlite') });
  stops.push(() => log.close());
  return log;
}

async function appendReadings(log: SqliteLog, count: number, topics: readonly string[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    await log.append([{ stream: 'containers', topic: topics[i % topics.length]!, eventTimeMs: 1_000 + i, payload: Buffer.from(JSON.stringify({ i })) }]);
  }
}

/** Admits records of the given containers while `live()` says so. */
function filterFor(containers: readonly string[], live: () => boolean = () => true): RecordFilter {
  return {
    mayHold: (_stream, topic) => live() && containers.includes(topic),
    admit: (record) => (live() && containers.includes(record.topic) ? record : undefined),
  };
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadlineMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const expectedFor = (count: number, topics: readonly string[], wanted: readonly string[]) =>
  [...Array(count).keys()].filter((i) => wanted.includes(topics[i % topics.length]!)).map((i) => `${topics[i % topics.length]}@${Math.floor(i / topics.length)}`);

describe('customer topic stage', () => {
  const TOPICS = ['Y01', 'R01', 'B01'];

  it('after a clean and an ambiguous failed commit, holds each admitted record once, from the positions read back', async () => {
    const log = openLog();
    const sink = new MemorySink();
    sink.script.push('ok', 'ambiguous', 'clean', 'ambiguous');
    const stage = new CustomerTopicStage({
      source: log,
      sink,
      customers: [{ id: 'toyco', kafkaTopic: 'customer.toyco', streams: ['containers'], filter: () => filterFor(['Y01']) }],
      maxRecordsPerRead: 7,
      pollIntervalMs: 20,
      retryInitialMs: 5,
      retryMaxMs: 20,
    });
    await stage.start();
    stops.push(() => stage.stop());
    await appendReadings(log, 90, TOPICS);
    await until(() => sink.identities('toyco').length >= 30 && sink.script.length === 0 && stage.health().status === 'ok', 'the stage to write every record');
    await sleep(100);
    expect(sink.identities('toyco')).toEqual(expectedFor(90, TOPICS, ['Y01']));
    // One open at start and one after each failure.
    expect(sink.opens).toBe(4);
  });

  it('holds a customer whose filter is not available (positions kept) without holding the others, and resumes it', async () => {
    const log = openLog();
    const sink = new MemorySink();
    const redco: { filter?: RecordFilter } = {};
    const stage = new CustomerTopicStage({
      source: log,
      sink,
      customers: [
        { id: 'toyco', kafkaTopic: 'customer.toyco', streams: ['containers'], filter: () => filterFor(['Y01']) },
        { id: 'redco', kafkaTopic: 'customer.redco', streams: ['containers'], filter: () => redco.filter },
      ],
      pollIntervalMs: 20,
    });
    await stage.start();
    stops.push(() => stage.stop());
    await appendReadings(log, 30, TOPICS);
    await until(() => sink.identities('toyco').length === 10, 'ToyCo written');
    expect(sink.identities('redco')).toEqual([]);
    expect(stage.health()).toMatchObject({ status: 'degraded', reason: expect.stringContaining('redco') });
    expect(stage.stats().find(({ customer }) => customer === 'redco')).toMatchObject({ held: true, written: 0, filtered: 0 });
    redco.filter = filterFor(['R01']);
    await until(() => sink.identities('redco').length === 10, 'RedCo caught up');
    expect(sink.identities('redco')).toEqual(expectedFor(30, TOPICS, ['R01']));
    expect(stage.health().status).toBe('ok');
  });

  it('a filter that stops admitting (a revoked token) stops the next record; what it passed over is not written later', async () => {
    const log = openLog();
    const sink = new MemorySink();
    let live = true;
    const stage = new CustomerTopicStage({
      source: log,
      sink,
      customers: [{ id: 'toyco', kafkaTopic: 'customer.toyco', streams: ['containers'], filter: () => filterFor(['Y01'], () => live) }],
      pollIntervalMs: 20,
    });
    await stage.start();
    stops.push(() => stage.stop());
    await appendReadings(log, 30, TOPICS);
    await until(() => sink.identities('toyco').length === 10, 'the first records');
    live = false;
    await appendReadings(log, 30, TOPICS);
    await until(() => stage.stats()[0]!.filtered === 50, 'the later records passed over');
    live = true;
    await sleep(100);
    expect(sink.identities('toyco')).toEqual(expectedFor(30, TOPICS, ['Y01']));
  });
});
