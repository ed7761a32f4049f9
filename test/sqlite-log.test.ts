import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OffsetGapError, TopicForkError, type LogRecord } from '../core/index.js';
import { SqliteLog } from '../edge/log/index.js';
import { pino } from 'pino';

const dirs: string[] = [];
function openLog(siteId: string, dir = mkdtempSync(join(tmpdir(), 'portcall-log-'))) {
  dirs.push(dir);
  return { log: SqliteLog.open({ siteId, path: join(dir, 'log.sqlite') }), dir };
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const reading = (topic: string, n: number) => ({ stream: 'containers', topic, payload: Buffer.from(`{"n":${n}}`) });
const copy = (record: LogRecord, changes: Partial<LogRecord> = {}): LogRecord => ({ ...record, ...changes });

describe('SqliteLog (embedded site log)', () => {
  it('assigns dense offsets per topic with this site as origin, across concurrent callers', async () => {
    const { log } = openLog('AURORA');
    const results = await Promise.all(
      Array.from({ length: 50 }, (_u, i) => log.append([reading(i % 2 === 0 ? 'Y01' : 'Y02', i)])),
    );
    const offsetsY01 = results.flat().filter((r) => r.topic === 'Y01').map((r) => r.offset);
    expect(offsetsY01).toEqual(Array.from({ length: 25 }, (_u, i) => i));
    expect(results.flat().every((r) => r.origin === 'AURORA')).toBe(true);
    expect(await log.highWater('containers', 'Y02')).toBe(25);
    await log.close();
  });

  it('stores each record\'s headers: a frozen object shared by many records, and a plain one changed between calls', async () => {
    const { log } = openLog('AURORA');
    const shared = Object.freeze({ 'mqtt-topic': 'bigblue/containers/Y01/temp' });
    const plain: Record<string, string> = { kind: 'first' };
    await Promise.all([
      log.append([{ ...reading('Y01', 0), headers: shared }]),
      log.append([{ ...reading('Y01', 1), headers: plain }]),
      log.append([{ ...reading('Y01', 2), headers: shared }, { ...reading('Y02', 3), headers: shared }]),
    ]);
    // The same plain object, changed after its first commit: stored as it is now.
    plain.kind = 'second';
    await log.append([{ ...reading('Y01', 4), headers: plain }]);
    const held = [...(await log.readTopic('containers', 'Y01', 0)), ...(await log.readTopic('containers', 'Y02', 0))];
    expect(held.map((r) => r.headers)).toEqual([shared, { kind: 'first' }, shared, { kind: 'second' }, shared]);
    await log.close();
  });

  it('keeps what it acknowledged across close and reopen', async () => {
    const { log, dir } = openLog('AURORA');
    await log.append([reading('Y01', 0), reading('Y01', 1)]);
    await log.commitCursor('forward/TOKYO/containers', 2);
    await log.close();
    const reopened = openLog('AURORA', dir).log;
    expect((await reopened.readTopic('containers', 'Y01', 0)).map((r) => r.offset)).toEqual([0, 1]);
    expect((await reopened.append([reading('Y01', 2)]))[0]!.offset).toBe(2);
    expect(await reopened.getCursor('forward/TOKYO/containers')).toBe(2);
    await reopened.close();
  });

  it('replicates at the origin’s offsets, drops duplicates, refuses gaps and forks whole', async () => {
    const origin = openLog('AURORA').log;
    const records = await origin.append([reading('Y01', 0), reading('Y01', 1), reading('Y01', 2)]);
    const shore = openLog('TOKYO').log;

    expect(await shore.replicate(records.slice(0, 2))).toEqual({
      stored: 2,
      duplicates: 0,
      highWater: [{ stream: 'containers', topic: 'Y01', nextOffset: 2 }],
    });
    const again = await shore.replicate(records);
    expect(again).toMatchObject({ stored: 1, duplicates: 2 });

    const gap = copy(records[2]!, { offset: 5 });
    await expect(shore.replicate([gap])).rejects.toBeInstanceOf(OffsetGapError);
    const fork = copy(records[0]!, { origin: 'SINGAPORE' });
    await expect(shore.replicate([fork])).rejects.toBeInstanceOf(TopicForkError);

    const held = await shore.readTopic('containers', 'Y01', 0);
    expect(held.map((r) => [r.origin, r.offset, Buffer.from(r.payload).toString()])).toEqual(
      records.map((r) => [r.origin, r.offset, Buffer.from(r.payload).toString()]),
    );
    await origin.close();
    await shore.close();
  });

  it('checks a duplicate\'s origin wherever the held record is: written in the same group commit, before a reopen, before an origin change', async () => {
    const aurora = openLog('AURORA').log;
    const singapore = openLog('SINGAPORE').log;
    const records = await aurora.append([reading('Y01', 0), reading('Y01', 1), reading('Y01', 2)]);
    const { log: shore, dir } = openLog('TOKYO');
    // Same turn, same transaction: the second call's copies of offsets 0-1 claim another origin.
    const [first, forked] = await Promise.allSettled([
      shore.replicate(records.slice(0, 2)),
      shore.replicate(records.slice(0, 2).map((record) => copy(record, { origin: 'SINGAPORE' }))),
    ]);
    expect(first.status).toBe('fulfilled');
    expect(forked.status === 'rejected' && forked.reason).toBeInstanceOf(TopicForkError);
    // The topic changes hands at offset 2 (a handoff): SINGAPORE writes on from there.
    const handedOver = copy(records[2]!, { origin: 'SINGAPORE' });
    await shore.replicate([handedOver]);
    await expect(shore.replicate([records[2]!])).rejects.toBeInstanceOf(TopicForkError);
    await expect(shore.replicate([copy(records[1]!, { origin: 'SINGAPORE' })])).rejects.toBeInstanceOf(TopicForkError);
    expect(await shore.replicate([records[0]!, records[1]!, handedOver])).toMatchObject({ stored: 0, duplicates: 3 });
    await shore.close();

    // After a reopen the held origins are read back, and the first problem of a batch is the one thrown.
    const reopened = openLog('TOKYO', dir).log;
    expect(await reopened.replicate([records[0]!, handedOver])).toMatchObject({ stored: 0, duplicates: 2 });
    const fork = await reopened.replicate([records[0]!, copy(records[1]!, { origin: 'SYDNEY' }), copy(handedOver, { offset: 9 })]).catch((error: unknown) => error);
    expect(fork).toBeInstanceOf(TopicForkError);
    expect((fork as Error).message).toContain('AURORA');
    await expect(reopened.replicate([records[0]!, copy(handedOver, { offset: 9 }), copy(records[1]!, { origin: 'SYDNEY' })])).rejects.toBeInstanceOf(OffsetGapError);
    expect((await reopened.readTopic('containers', 'Y01', 0)).map((record) => record.origin)).toEqual(['AURORA', 'AURORA', 'SINGAPORE']);
    await reopened.close();
    await aurora.close();
    await singapore.close();
  });

  it('logs a group commit that held the event loop longer than slowCommitMs, with what it did', async () => {
    const origin = openLog('AURORA').log;
    const written = await origin.append([reading('Y01', 0), reading('Y01', 1), reading('Y02', 0)]);
    const handedOver = await origin.append([reading('Y01', 2)]);
    const lines: string[] = [];
    const dir = mkdtempSync(join(tmpdir(), 'portcall-log-'));
    dirs.push(dir);
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const shore = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'log.sqlite'), indexer: 'inline', slowCommitMs: 0, logger });
    await shore.replicate(written);
    // Y01 offset 2 comes from another writer (a handoff), so Y01's offsets 0-1 are no longer in its
    // in-memory run: their duplicates are looked up in the unindexed tail (3 rows, then 4).
    await shore.replicate([copy(handedOver[0]!, { origin: 'SINGAPORE' })]);
    await shore.replicate(written.slice(0, 2));
    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(entries).toHaveLength(3);
    for (const entry of entries) expect(entry.msg).toBe('slow group commit: the event loop was held this long');
    expect(entries[0]).toMatchObject({ callers: { replicate: 1 }, recordsOffered: 3, recordsWritten: 3, unindexedRowsRead: 0 });
    expect(entries[2]).toMatchObject({ callers: { replicate: 1 }, recordsOffered: 2, recordsWritten: 0, unindexedRowsRead: 4 });
    expect(typeof entries[2]!.tookMs).toBe('number');
    // Under the default threshold (a second) a commit this small logs nothing.
    const quiet: string[] = [];
    const dir2 = mkdtempSync(join(tmpdir(), 'portcall-log-'));
    dirs.push(dir2);
    const other = SqliteLog.open({ siteId: 'SYDNEY', path: join(dir2, 'log.sqlite'), logger: pino({ level: 'warn' }, { write: (line: string) => quiet.push(line) }) });
    await other.replicate(written);
    expect(quiet).toEqual([]);
    await Promise.all([origin.close(), shore.close(), other.close()]);
  });

  it('a refused caller in a group commit rolls back alone', async () => {
    const origin = openLog('AURORA').log;
    const y1 = await origin.append([reading('Y01', 0), reading('Y01', 1)]);
    const y2 = await origin.append([reading('Y02', 0)]);
    const shore = openLog('TOKYO').log;
    const [good, bad, alsoGood] = await Promise.allSettled([
      shore.replicate([y1[0]!]),
      // New topic Y03 created, then a gap in Y01: the whole call must vanish, Y03 included.
      shore.replicate([copy(y2[0]!, { topic: 'Y03' }), copy(y1[1]!, { offset: 7 })]),
      shore.replicate(y2),
    ]);
    expect(good.status).toBe('fulfilled');
    expect(bad.status).toBe('rejected');
    expect(alsoGood.status).toBe('fulfilled');
    expect(await shore.highWater('containers', 'Y03')).toBe(0);
    expect(await shore.highWater('containers', 'Y01')).toBe(1);
    expect(await shore.replicate([y1[1]!])).toMatchObject({ stored: 1 });
    await origin.close();
    await shore.close();
  });

  it('reads a stream in append order from a position, with limits, and notifies after commit', async () => {
    const { log } = openLog('AURORA');
    const notified: string[] = [];
    log.onDurable((stream) => notified.push(stream));
    await log.append([reading('Y01', 0), { stream: 'alerts', topic: 'Y01', payload: Buffer.from('{}') }, reading('Y02', 0)]);
    expect(notified.sort()).toEqual(['alerts', 'containers']);
    const first = await log.readStream('containers', 0, { maxRecords: 1 });
    expect(first.records.map((r) => r.topic)).toEqual(['Y01']);
    const second = await log.readStream('containers', first.nextPosition);
    expect(second.records.map((r) => r.topic)).toEqual(['Y02']);
    const none = await log.readStream('containers', second.nextPosition);
    expect(none).toEqual({ records: [], nextPosition: second.nextPosition });
    expect(await log.latest('containers', 'Y02')).toMatchObject({ offset: 0, origin: 'AURORA' });
    expect(await log.latest('containers', 'NOPE')).toBeUndefined();
    await log.close();
  });
});
