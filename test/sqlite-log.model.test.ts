/**
 * Model-based test of the embedded log: random sequences of appends, replications (with
 * duplicates, gaps and forks), reads, stream scans, cursor commits, size-cap retention,
 * index builds and reopens, each checked against a plain in-memory model.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { OffsetGapError, TopicForkError, type LogRecord } from '../core/index.js';
import { SqliteLog, indexPathFor } from '../edge/log/index.js';

const STREAMS = ['a', 'b'] as const;
const LOCAL_TOPICS = ['L0', 'L1', 'L2'];
const REMOTE_TOPICS = ['R0', 'R1'];
const SIZE_CAP_BYTES = 400;

interface ModelRecord {
  stream: string;
  topic: string;
  offset: number;
  origin: string;
  payload: string;
  position: number;
}

class Model {
  readonly topics = new Map<string, { first: number; next: number; records: ModelRecord[] }>();
  readonly streams = new Map<string, { nextPosition: number; records: ModelRecord[] }>();
  readonly cursors = new Map<string, number>();

  topic(stream: string, topic: string) {
    const key = `${stream}/${topic}`;
    let state = this.topics.get(key);
    if (!state) this.topics.set(key, (state = { first: 0, next: 0, records: [] }));
    return state;
  }
  stream(stream: string) {
    let state = this.streams.get(stream);
    if (!state) this.streams.set(stream, (state = { nextPosition: 1, records: [] }));
    return state;
  }
  store(stream: string, topic: string, offset: number, origin: string, payload: string): ModelRecord {
    const s = this.stream(stream);
    const record = { stream, topic, offset, origin, payload, position: s.nextPosition };
    s.nextPosition += 1;
    s.records.push(record);
    const t = this.topic(stream, topic);
    t.records.push(record);
    t.next = offset + 1;
    return record;
  }
  applySizeCap(stream: string) {
    const s = this.streams.get(stream);
    if (!s) return;
    let bytes = s.records.reduce((sum, r) => sum + r.payload.length, 0);
    while (bytes > SIZE_CAP_BYTES && s.records.length > 0) {
      const oldest = s.records.shift()!;
      bytes -= oldest.payload.length;
      const t = this.topic(stream, oldest.topic);
      t.records.shift();
      t.first = oldest.offset + 1;
    }
  }
}

interface Real {
  log: SqliteLog;
  path: string;
}

const same = (records: LogRecord[]) => records.map((r) => `${r.stream}/${r.topic}@${r.offset}:${r.origin}:${Buffer.from(r.payload).toString()}`);
const expected = (records: ModelRecord[]) => records.map((r) => `${r.stream}/${r.topic}@${r.offset}:${r.origin}:${r.payload}`);

async function checkHighWaters(model: Model, real: Real) {
  for (const [key, state] of model.topics) {
    const [stream, topic] = key.split('/') as [string, string];
    expect(await real.log.highWater(stream, topic), `high water of ${key}`).toBe(state.next);
    const stats = real.log.topicStats(stream, topic);
    if (state.next > 0) expect(stats?.firstOffset, `first offset of ${key}`).toBe(state.first);
  }
}

type Command = fc.AsyncCommand<Model, Real>;

class Append implements Command {
  constructor(readonly stream: string, readonly items: { topic: string; payload: string }[]) {}
  check = () => true;
  async run(model: Model, real: Real) {
    const stored = await real.log.append(this.items.map((item) => ({ stream: this.stream, topic: item.topic, payload: Buffer.from(item.payload) })));
    const modelled = this.items.map((item) => model.store(this.stream, item.topic, model.topic(this.stream, item.topic).next, 'LOCAL', item.payload));
    expect(same(stored)).toEqual(expected(modelled));
    await checkHighWaters(model, real);
  }
  toString = () => `append(${this.stream}, ${this.items.map((i) => i.topic).join(',')})`;
}

class Replicate implements Command {
  constructor(readonly stream: string, readonly topic: string, readonly delta: number, readonly count: number, readonly origin: string) {}
  check = () => true;
  async run(model: Model, real: Real) {
    const t = model.topic(this.stream, this.topic);
    const from = Math.max(0, t.next + this.delta);
    const records: LogRecord[] = Array.from({ length: this.count }, (_u, i) => ({
      origin: this.origin,
      stream: this.stream,
      topic: this.topic,
      offset: from + i,
      eventTimeMs: 1,
      ingestTimeMs: 2,
      headers: {},
      payload: Buffer.from(`r${from + i}`),
    }));
    const gap = from > t.next;
    const forkAt = records.find((r) => r.offset < t.next && r.offset >= t.first && t.records.find((m) => m.offset === r.offset)!.origin !== this.origin);
    if (gap) {
      await expect(real.log.replicate(records)).rejects.toBeInstanceOf(OffsetGapError);
    } else if (forkAt) {
      await expect(real.log.replicate(records)).rejects.toBeInstanceOf(TopicForkError);
    } else {
      const result = await real.log.replicate(records);
      let stored = 0;
      for (const record of records) {
        if (record.offset >= t.next) {
          model.store(this.stream, this.topic, record.offset, this.origin, Buffer.from(record.payload).toString());
          stored += 1;
        }
      }
      expect(result.stored).toBe(stored);
      expect(result.duplicates).toBe(records.length - stored);
    }
    await checkHighWaters(model, real);
  }
  toString = () => `replicate(${this.stream}/${this.topic}, delta ${this.delta}, ${this.count} from ${this.origin})`;
}

class ReadTopic implements Command {
  constructor(readonly stream: string, readonly topic: string, readonly from: number, readonly maxRecords: number) {}
  check = () => true;
  async run(model: Model, real: Real) {
    const t = model.topics.get(`${this.stream}/${this.topic}`);
    const want = (t?.records ?? []).filter((r) => r.offset >= this.from).slice(0, this.maxRecords);
    expect(same(await real.log.readTopic(this.stream, this.topic, this.from, { maxRecords: this.maxRecords }))).toEqual(expected(want));
    const latest = await real.log.latest(this.stream, this.topic);
    const last = t?.records.at(-1);
    expect(latest === undefined ? undefined : same([latest])[0]).toEqual(last === undefined ? undefined : expected([last])[0]);
  }
  toString = () => `readTopic(${this.stream}/${this.topic} from ${this.from}, ${this.maxRecords})`;
}

class ReadStream implements Command {
  constructor(readonly stream: string, readonly pick: number, readonly maxRecords: number) {}
  check = () => true;
  async run(model: Model, real: Real) {
    const records = model.streams.get(this.stream)?.records ?? [];
    const after = records.length === 0 ? 0 : this.pick % 3 === 0 ? 0 : records[this.pick % records.length]!.position;
    const want = records.filter((r) => r.position > after).slice(0, this.maxRecords);
    const page = await real.log.readStream(this.stream, after, { maxRecords: this.maxRecords });
    expect(same(page.records)).toEqual(expected(want));
    expect(page.nextPosition).toBe(want.at(-1)?.position ?? after);
  }
  toString = () => `readStream(${this.stream}, pick ${this.pick}, ${this.maxRecords})`;
}

class CommitCursor implements Command {
  constructor(readonly name: string, readonly position: number) {}
  check = () => true;
  async run(model: Model, real: Real) {
    await real.log.commitCursor(this.name, this.position);
    model.cursors.set(this.name, this.position);
    expect(await real.log.getCursor(this.name)).toBe(this.position);
  }
  toString = () => `commitCursor(${this.name}, ${this.position})`;
}

class Retention implements Command {
  check = () => true;
  async run(model: Model, real: Real) {
    // Retention deletes only what the topic index has seen; build it first.
    real.log.indexNow();
    await real.log.runRetention();
    model.applySizeCap('a');
    await checkHighWaters(model, real);
  }
  toString = () => 'retention()';
}

class IndexNow implements Command {
  check = () => true;
  async run(_model: Model, real: Real) {
    real.log.indexNow();
  }
  toString = () => 'indexNow()';
}

class Reopen implements Command {
  check = () => true;
  async run(model: Model, real: Real) {
    await real.log.close();
    real.log = openLog(real.path);
    await checkHighWaters(model, real);
    for (const [name, position] of model.cursors) expect(await real.log.getCursor(name)).toBe(position);
  }
  toString = () => 'reopen()';
}

/** The index file is derived: losing it must lose nothing. */
class LoseIndex implements Command {
  check = () => true;
  async run(model: Model, real: Real) {
    await real.log.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${indexPathFor(real.path)}${suffix}`, { force: true });
    real.log = openLog(real.path);
    await checkHighWaters(model, real);
  }
  toString = () => 'loseIndex()';
}

function openLog(path: string): SqliteLog {
  return SqliteLog.open({
    siteId: 'LOCAL',
    path,
    indexer: 'inline',
    retentionIntervalMs: 0,
    streams: { a: { maxBytes: SIZE_CAP_BYTES, priority: 1 } },
  });
}

const root = mkdtempSync(join(tmpdir(), 'portcall-model-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('SqliteLog against an in-memory model', () => {
  it('agrees with the model over random command sequences', async () => {
    const stream = fc.constantFrom(...STREAMS);
    const payload = fc.string({ minLength: 10, maxLength: 80 });
    const append = fc
      .tuple(stream, fc.array(fc.record({ topic: fc.constantFrom(...LOCAL_TOPICS), payload }), { minLength: 1, maxLength: 8 }))
      .map(([s, items]) => new Append(s, items));
    const commands = [
      append,
      append,
      fc.tuple(stream, fc.array(fc.record({ topic: fc.constantFrom(...LOCAL_TOPICS), payload }), { minLength: 1, maxLength: 8 })).map(([s, items]) => new Append(s, items)),
      fc.tuple(stream, fc.constantFrom(...REMOTE_TOPICS), fc.integer({ min: -3, max: 1 }), fc.integer({ min: 1, max: 5 })).map(([s, t, d, c]) => new Replicate(s, t, d, c, 'REMOTE')),
      fc.tuple(stream, fc.constantFrom(...LOCAL_TOPICS), fc.integer({ min: -4, max: -1 })).map(([s, t, d]) => new Replicate(s, t, d, 1, 'REMOTE')),
      fc.tuple(stream, fc.constantFrom(...LOCAL_TOPICS, ...REMOTE_TOPICS), fc.nat(30), fc.integer({ min: 1, max: 10 })).map(([s, t, f, m]) => new ReadTopic(s, t, f, m)),
      fc.tuple(stream, fc.nat(50), fc.integer({ min: 1, max: 10 })).map(([s, p, m]) => new ReadStream(s, p, m)),
      fc.tuple(fc.constantFrom('c1', 'c2'), fc.nat(100)).map(([n, p]) => new CommitCursor(n, p)),
      fc.constant(new Retention()),
      fc.constant(new IndexNow()),
      fc.constant(new Reopen()),
      fc.constant(new LoseIndex()),
    ];
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 80, size: 'large' }), async (sequence) => {
        const path = join(root, `run${(run += 1)}`, 'log.sqlite');
        const real: Real = { log: openLog(path), path };
        try {
          await fc.asyncModelRun(() => ({ model: new Model(), real }), sequence);
          expect((await import('../edge/log/index.js')).verifyLog(path).problems).toEqual([]);
        } finally {
          await real.log.close();
        }
      }),
      { numRuns: 50, interruptAfterTimeLimit: 60_000 },
    );
  }, 120_000);
});
