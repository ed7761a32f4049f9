/**
 * Conformance suite for every implementation of the copy path (`ReplicaSink`) and topic
 * reads (`TopicReader`): the embedded SQLite log and the Kafka log both pass it. What
 * "exactly once at the destination" means is written here once.
 */
import { describe, expect, it } from 'vitest';
import { OffsetGapError, TopicForkError, type LogRecord, type ReadLimits, type ReplicaSink, type TopicReader } from '../../core/index.js';

export interface ReplicaSinkUnderTest extends ReplicaSink, TopicReader {
  highWater(stream: string, topic: string): Promise<number>;
  readTopic(stream: string, topic: string, fromOffset: number, limits?: ReadLimits): Promise<LogRecord[]>;
  close(): Promise<void>;
}

export interface ReplicaSinkFactory {
  /** Opens the implementation on the store named by `name`; opening the same name again reopens it. */
  open(name: string): Promise<ReplicaSinkUnderTest>;
  /** Whether a copy of a held offset from another origin is refused (forks detected). */
  readonly detectsForks: boolean;
  /** How long `latest` may lag `replicate` (a read model fed asynchronously), in ms. */
  readonly latestLagMs: number;
}

let uniqueCounter = 0;
const uniqueName = (prefix: string) => `${prefix}${Date.now().toString(36)}${(uniqueCounter += 1)}`;

export function record(topic: string, offset: number, origin = 'AURORA', stream = 'containers'): LogRecord {
  return {
    origin,
    stream,
    topic,
    offset,
    eventTimeMs: 1_763_769_600_000 + offset * 60_000,
    ingestTimeMs: 1_763_769_600_500 + offset * 60_000,
    // A header named __proto__ must survive every store like any other name.
    headers: JSON.parse(`{"mqtt-topic": "bigblue/${stream}/${topic}/reefer", "__proto__": "x"}`) as Record<string, string>,
    payload: Buffer.from(JSON.stringify({ topic, offset, origin })),
  };
}

const run = (topic: string, from: number, to: number, origin?: string) =>
  Array.from({ length: to - from }, (_unused, index) => record(topic, from + index, origin));

async function latestEventually(sink: ReplicaSinkUnderTest, topic: string, offset: number, lagMs: number) {
  const deadline = Date.now() + lagMs + 50;
  let latest: LogRecord | undefined;
  do {
    latest = await sink.latest('containers', topic);
    if (latest !== undefined && latest.offset >= offset) return latest;
    await new Promise((resolve) => setTimeout(resolve, 25));
  } while (Date.now() < deadline);
  return latest;
}

export function replicaSinkConformance(implementation: string, factory: ReplicaSinkFactory): void {
  describe(`${implementation}: ReplicaSink / TopicReader conformance`, () => {
    it('stores new records at their own offsets and reports the high water', async () => {
      const sink = await factory.open(uniqueName('a'));
      try {
        const result = await sink.replicate([...run('Y01', 0, 3), ...run('Y02', 0, 2)]);
        expect(result.stored).toBe(5);
        expect(result.duplicates).toBe(0);
        expect([...result.highWater].sort((a, b) => a.topic.localeCompare(b.topic))).toEqual([
          { stream: 'containers', topic: 'Y01', nextOffset: 3 },
          { stream: 'containers', topic: 'Y02', nextOffset: 2 },
        ]);
        expect(await sink.highWater('containers', 'Y01')).toBe(3);
        const latest = await latestEventually(sink, 'Y01', 2, factory.latestLagMs);
        expect(latest).toMatchObject({ origin: 'AURORA', stream: 'containers', topic: 'Y01', offset: 2, eventTimeMs: record('Y01', 2).eventTimeMs });
        expect(latest!.headers).toEqual(record('Y01', 2).headers);
        expect(Buffer.from(latest!.payload).toString()).toBe(Buffer.from(record('Y01', 2).payload).toString());
        expect(await sink.latest('containers', 'NEVER')).toBeUndefined();
      } finally {
        await sink.close();
      }
    });

    it('drops records it already holds: a resent or overlapping batch stores only what is new', async () => {
      const sink = await factory.open(uniqueName('b'));
      try {
        await sink.replicate(run('Y01', 0, 3));
        expect(await sink.replicate(run('Y01', 0, 3))).toMatchObject({ stored: 0, duplicates: 3 });
        expect(await sink.replicate(run('Y01', 1, 5))).toMatchObject({ stored: 2, duplicates: 2 });
        expect(await sink.highWater('containers', 'Y01')).toBe(5);
      } finally {
        await sink.close();
      }
    });

    it('refuses a gap, and stores nothing of that batch, not even its valid records', async () => {
      const sink = await factory.open(uniqueName('c'));
      try {
        await sink.replicate(run('Y01', 0, 2));
        await expect(sink.replicate([...run('Y02', 0, 2), record('Y01', 5)])).rejects.toBeInstanceOf(OffsetGapError);
        expect(await sink.highWater('containers', 'Y02')).toBe(0);
        expect(await sink.highWater('containers', 'Y01')).toBe(2);
        await expect(sink.replicate([record('Y09', 1)])).rejects.toBeInstanceOf(OffsetGapError);
        expect(await sink.replicate(run('Y01', 2, 3))).toMatchObject({ stored: 1 });
      } finally {
        await sink.close();
      }
    });

    it('accepts a topic whose writer changes (handoff): offsets continue under the new origin', async () => {
      const sink = await factory.open(uniqueName('d'));
      try {
        await sink.replicate(run('Y01', 0, 3, 'AURORA'));
        expect(await sink.replicate(run('Y01', 3, 5, 'SINGAPORE'))).toMatchObject({ stored: 2 });
        const latest = await latestEventually(sink, 'Y01', 4, factory.latestLagMs);
        expect(latest).toMatchObject({ origin: 'SINGAPORE', offset: 4 });
      } finally {
        await sink.close();
      }
    });

    it.skipIf(!factory.detectsForks)('refuses a copy of a held offset from another origin (a fork)', async () => {
      const sink = await factory.open(uniqueName('e'));
      try {
        await sink.replicate(run('Y01', 0, 3, 'AURORA'));
        await expect(sink.replicate([record('Y01', 2, 'SINGAPORE')])).rejects.toBeInstanceOf(TopicForkError);
        expect(await sink.highWater('containers', 'Y01')).toBe(3);
      } finally {
        await sink.close();
      }
    });

    it('serves concurrent callers independently: one refused batch fails no other', async () => {
      const sink = await factory.open(uniqueName('f'));
      try {
        const calls = Array.from({ length: 12 }, (_unused, index) =>
          index === 5 ? sink.replicate([record('G05', 0), record('G05', 2)]) : sink.replicate(run(`G${String(index).padStart(2, '0')}`, 0, 4)),
        );
        const outcomes = await Promise.allSettled(calls);
        outcomes.forEach((outcome, index) => expect(outcome.status, `call ${index}`).toBe(index === 5 ? 'rejected' : 'fulfilled'));
        for (let index = 0; index < 12; index += 1) {
          expect(await sink.highWater('containers', `G${String(index).padStart(2, '0')}`)).toBe(index === 5 ? 0 : 4);
        }
      } finally {
        await sink.close();
      }
    });

    it('reads a topic from any offset in order, within limits, across many batches and other topics', async () => {
      const sink = await factory.open(uniqueName('h'));
      try {
        // Interleaved writers: each batch carries a few records of several topics, so a topic's
        // records are spread among others' in the store.
        for (let batch = 0; batch < 12; batch += 1) {
          await sink.replicate(['R1', 'R2', 'R3'].flatMap((topic, index) => run(topic, batch * (index + 2), (batch + 1) * (index + 2))));
        }
        const offsets = (records: LogRecord[]) => records.map((r) => r.offset);
        const all = await sink.readTopic('containers', 'R2', 0, { maxRecords: 1000 });
        expect(offsets(all)).toEqual(Array.from({ length: 36 }, (_unused, index) => index));
        expect(all[17]).toMatchObject({ origin: 'AURORA', stream: 'containers', topic: 'R2', offset: 17, eventTimeMs: record('R2', 17).eventTimeMs });
        expect(all[17]!.headers).toEqual(record('R2', 17).headers);
        expect(Buffer.from(all[17]!.payload).toString()).toBe(Buffer.from(record('R2', 17).payload).toString());
        expect(offsets(await sink.readTopic('containers', 'R3', 7, { maxRecords: 5 }))).toEqual([7, 8, 9, 10, 11]);
        expect(offsets(await sink.readTopic('containers', 'R1', 23, { maxRecords: 10 }))).toEqual([23]);
        expect(await sink.readTopic('containers', 'R1', 24)).toEqual([]);
        expect(await sink.readTopic('containers', 'NEVER', 0)).toEqual([]);
        // maxBytes stops early but always returns at least one record.
        const oneByBytes = await sink.readTopic('containers', 'R3', 3, { maxRecords: 100, maxBytes: 1 });
        expect(offsets(oneByBytes)).toEqual([3]);
        const payloadBytes = record('R3', 3).payload.byteLength;
        expect((await sink.readTopic('containers', 'R3', 3, { maxRecords: 100, maxBytes: payloadBytes * 3 })).length).toBe(3);
      } finally {
        await sink.close();
      }
    });

    it('after close and reopen, knows what it holds: old copies are duplicates, the next offset is accepted', async () => {
      const name = uniqueName('g');
      const first = await factory.open(name);
      await first.replicate([...run('Y01', 0, 4), ...run('Y02', 0, 1)]);
      await first.close();
      const again = await factory.open(name);
      try {
        expect(await again.highWater('containers', 'Y01')).toBe(4);
        expect(await again.replicate(run('Y01', 0, 5))).toMatchObject({ stored: 1, duplicates: 4 });
        await expect(again.replicate([record('Y02', 3)])).rejects.toBeInstanceOf(OffsetGapError);
        const latest = await latestEventually(again, 'Y01', 4, factory.latestLagMs);
        expect(latest).toMatchObject({ offset: 4 });
        expect((await again.readTopic('containers', 'Y01', 1)).map((r) => r.offset)).toEqual([1, 2, 3, 4]);
      } finally {
        await again.close();
      }
    });
  });
}
