/**
 * The embedded log as a sparse replica (a customer's endpoint fed by a filtered link): offsets
 * may skip, a record below a topic's last offset may arrive later (custody widened) and is
 * stored once, identities never change, an ordinary replica still refuses gaps, and `verify`
 * knows which topics are sparse. Through the index and the unindexed tail, and after a reopen.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { OffsetGapError, TopicForkError, type LogRecord } from '../core/index.js';
import { SqliteLog, verifyLog } from '../edge/log/index.js';
import { tempDir } from './support/uplink.js';

const record = (topic: string, offset: number, origin = 'TOKYO', stream = 'containers'): LogRecord => ({
  origin,
  stream,
  topic,
  offset,
  eventTimeMs: 1_000 + offset,
  ingestTimeMs: 2_000 + offset,
  headers: { n: String(offset) },
  payload: Buffer.from(`{"offset":${offset}}`),
});

const SPARSE = { sender: 'TOKYO', sparse: true } as const;

describe('sparse replica (embedded log)', () => {
  const dirs: string[] = [];
  const logs: SqliteLog[] = [];
  afterEach(async () => {
    for (const log of logs.splice(0)) await log.close().catch(() => undefined);
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const open = (dir: string, indexer: 'inline' | 'thread' = 'inline') => {
    const log = SqliteLog.open({ siteId: 'TOYCO', path: join(dir, 'log.sqlite'), indexer, retentionIntervalMs: 0 });
    logs.push(log);
    return log;
  };
  const offsets = async (log: SqliteLog, topic: string, from = 0) => (await log.readTopic('containers', topic, from, { maxRecords: 1000 })).map((r) => r.offset);

  it('takes gaps and late records from a sparse sender, once each; an ordinary one still gets 409s', async () => {
    const dir = tempDir('sparse');
    dirs.push(dir);
    const log = open(dir);
    expect(await log.replicate([record('Y01', 10), record('Y01', 11), record('Y01', 20)], SPARSE)).toMatchObject({ stored: 3, duplicates: 0 });
    // The ordinary path refuses a gap in the same topic, and in a new one.
    await expect(log.replicate([record('Y01', 30)])).rejects.toBeInstanceOf(OffsetGapError);
    await expect(log.replicate([record('Y02', 5)])).rejects.toBeInstanceOf(OffsetGapError);
    log.indexNow();
    // Late records below the end, a duplicate of an indexed one, a duplicate inside the batch.
    expect(await log.replicate([record('Y01', 3), record('Y01', 11), record('Y01', 4), record('Y01', 3), record('Y01', 21)], SPARSE)).toMatchObject({
      stored: 3,
      duplicates: 2,
      highWater: [{ stream: 'containers', topic: 'Y01', nextOffset: 22 }],
    });
    // Read across the index and the unindexed tail, merged in offset order.
    expect(await offsets(log, 'Y01')).toEqual([3, 4, 10, 11, 20, 21]);
    // Counted, not next - first: three in the index, three in the tail, offsets skipped.
    expect(log.topicStats('containers', 'Y01')?.count).toBe(6);
    expect(log.streamStats('containers')?.records).toBe(6);
    expect(await offsets(log, 'Y01', 5)).toEqual([10, 11, 20, 21]);
    expect((await log.readTopic('containers', 'Y01', 0, { maxRecords: 2 })).map((r) => r.offset)).toEqual([3, 4]);
    expect((await log.latest('containers', 'Y01'))?.offset).toBe(21);
    // Unindexed duplicates (same flush too) are found as well.
    const [a, b] = await Promise.all([log.replicate([record('Y01', 5), record('Y01', 4)], SPARSE), log.replicate([record('Y01', 5), record('Y01', 21)], SPARSE)]);
    expect(a.stored + b.stored).toBe(1);
    expect(a.duplicates + b.duplicates).toBe(3);
    // Another origin at a held offset is a fork, refused whole.
    await expect(log.replicate([record('Y01', 6), record('Y01', 10, 'SINGAPORE')], SPARSE)).rejects.toBeInstanceOf(TopicForkError);
    expect(await offsets(log, 'Y01')).toEqual([3, 4, 5, 10, 11, 20, 21]);
    const report = verifyLog(log.path);
    expect(report.problems).toEqual([]);
    expect(report.sparseTopics).toBe(1);
    await log.close();
    logs.splice(0);
    const reopened = open(dir, 'thread');
    expect(await offsets(reopened, 'Y01')).toEqual([3, 4, 5, 10, 11, 20, 21]);
    expect(await reopened.replicate([record('Y01', 5), record('Y01', 7)], SPARSE)).toMatchObject({ stored: 1, duplicates: 1 });
    expect(await offsets(reopened, 'Y01')).toEqual([3, 4, 5, 7, 10, 11, 20, 21]);
    expect(reopened.topicStats('containers', 'Y01')?.count).toBe(8);
    const held = await reopened.readTopic('containers', 'Y01', 7, { maxRecords: 1 });
    expect(held[0]).toMatchObject({ origin: 'TOKYO', offset: 7, eventTimeMs: 1_007, ingestTimeMs: 2_007, headers: { n: '7' } });
  });

  it('verify passes a sparse topic with skips beside an ordinary one', async () => {
    const dir = tempDir('sparse-verify');
    dirs.push(dir);
    const log = open(dir);
    await log.replicate([record('Y01', 0), record('Y01', 1)]);
    await log.replicate([record('Y02', 4)], SPARSE);
    const report = verifyLog(log.path);
    expect(report.ok).toBe(true);
    expect(report.sparseTopics).toBe(1);
  });

  it('holds exactly the union of what arrived, whatever the order, duplicates and index timing (property)', async () => {
    const dir = tempDir('sparse-prop');
    dirs.push(dir);
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.record({ topic: fc.constantFrom('A', 'B'), offset: fc.nat(40) }), { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
        async (batches, indexAfter) => {
          run += 1;
          const log = SqliteLog.open({ siteId: 'TOYCO', path: join(dir, `p${run}.sqlite`), indexer: 'inline', retentionIntervalMs: 0 });
          try {
            const expected = new Map<string, Set<number>>([['A', new Set()], ['B', new Set()]]);
            for (let i = 0; i < batches.length; i += 1) {
              const batch = batches[i]!;
              const result = await log.replicate(batch.map(({ topic, offset }) => record(topic, offset)), SPARSE);
              const before = expected.get('A')!.size + expected.get('B')!.size;
              for (const { topic, offset } of batch) expected.get(topic)!.add(offset);
              expect(result.stored).toBe(expected.get('A')!.size + expected.get('B')!.size - before);
              expect(result.stored + result.duplicates).toBe(batch.length);
              if (indexAfter[i] === true) log.indexNow();
            }
            for (const topic of ['A', 'B']) expect(await offsets(log, topic)).toEqual([...expected.get(topic)!].sort((x, y) => x - y));
            expect(verifyLog(log.path).problems).toEqual([]);
          } finally {
            await log.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
