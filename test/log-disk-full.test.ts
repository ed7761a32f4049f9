/**
 * The site log when space runs out:
 * - a real full disk (an 8 MiB tmpfs): appends fail cleanly with a retriable
 *   StoreUnavailableError, this process keeps running, nothing acknowledged is lost or
 *   damaged, and appends succeed again once space is freed;
 * - a configured hard limit (maxLogBytes): retention drops by stream priority, lowest first,
 *   alerts last, counts and reports every drop, and appends keep working;
 * - TTL never expires what a required cursor has not passed (nor does a size cap).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError, type LogRecord, type NewRecord } from '../core/index.js';
import { SqliteLog, verifyLog, type RetentionReport, type StreamPolicy } from '../edge/log/index.js';

const hash = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as { value: number; labels: Record<string, string | number> }[];
  return values
    .filter((v) => Object.entries(labels).every(([key, value]) => String(v.labels[key]) === value))
    .reduce((sum, v) => sum + v.value, 0);
}

/** Every record the log acknowledged, to check it is still there, unchanged, at its offset. */
class Acknowledged {
  private readonly byTopic = new Map<string, Map<number, string>>();
  count = 0;
  add(records: readonly LogRecord[]): void {
    for (const record of records) {
      const key = `${record.stream}/${record.topic}`;
      let offsets = this.byTopic.get(key);
      if (offsets === undefined) this.byTopic.set(key, (offsets = new Map()));
      expect(offsets.has(record.offset), `${key}@${record.offset} acknowledged twice`).toBe(false);
      offsets.set(record.offset, hash(record.payload));
      this.count += 1;
    }
  }
  next(stream: string, topic: string): number {
    return this.byTopic.get(`${stream}/${topic}`)?.size ?? 0;
  }
  async expectAllIn(log: SqliteLog): Promise<void> {
    for (const [key, offsets] of this.byTopic) {
      const [stream, topic] = key.split('/') as [string, string];
      const held = new Map<number, string>();
      for (let from = 0; ; ) {
        const page = await log.readTopic(stream, topic, from, { maxRecords: 1000 });
        if (page.length === 0) break;
        for (const record of page) held.set(record.offset, hash(record.payload));
        from = page.at(-1)!.offset + 1;
      }
      // Offsets are dense from 0 and every acknowledged one holds what was acknowledged.
      expect([...held.keys()], `${key} offsets`).toEqual(Array.from({ length: held.size }, (_u, i) => i));
      for (const [offset, digest] of offsets) expect(held.get(offset), `${key}@${offset}`).toBe(digest);
    }
  }
}

describe('site log on a full disk (8 MiB tmpfs)', () => {
  let mountPoint = '';
  let mounted = false;
  let mountError = '';
  beforeAll(() => {
    mountPoint = mkdtempSync(join(tmpdir(), 'portcall-disk-full-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint], { stdio: 'pipe' });
      mounted = true;
    } catch (error) {
      mountError = ((error as { stderr?: Buffer }).stderr?.toString() || (error as Error).message).trim();
    }
  });
  const openLogs: SqliteLog[] = [];
  afterAll(async () => {
    // A failed assertion leaves the log open; its files keep the filesystem busy.
    for (const log of openLogs) await log.close().catch(() => undefined);
    if (mounted) {
      try {
        execFileSync('umount', [mountPoint], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', mountPoint], { stdio: 'pipe' });
      }
    }
    rmSync(mountPoint, { recursive: true, force: true });
  });

  it('fails appends cleanly when full, loses nothing acknowledged, and resumes when space returns', async (context) => {
    if (!mounted) {
      process.stderr.write(`\n*** disk-full test SKIPPED: cannot mount a tmpfs at ${mountPoint} (needs root): ${mountError} ***\n\n`);
      context.skip(`cannot mount a tmpfs: ${mountError}`);
      return;
    }
    const dir = join(mountPoint, 'AURORA');
    mkdirSync(dir);
    // Space to give back later: a file on the same small filesystem.
    const filler = join(mountPoint, 'filler');
    writeFileSync(filler, randomBytes(4 * 1024 * 1024));
    const path = join(dir, 'log.sqlite');
    const registry = new Registry();
    // The production set-up: the indexer thread checkpoints the WAL in the background.
    const log = SqliteLog.open({ siteId: 'AURORA', path, retentionIntervalMs: 0, registry });
    openLogs.push(log);
    const acknowledged = new Acknowledged();
    const batch = (n: number): NewRecord[] =>
      Array.from({ length: n }, (_u, i) => ({ stream: i % 5 === 0 ? 'alerts' : 'containers', topic: `T${i % 37}`, payload: randomBytes(900) }));

    // Fill the disk, a little at a time as a gateway would (so the background checkpoints
    // run), several callers at once so a failing commit carries more than one.
    let failure: unknown;
    for (let round = 0; round < 2000 && failure === undefined; round += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      const results = await Promise.allSettled([log.append(batch(20)), log.append(batch(7)), log.append(batch(1))]);
      for (const result of results) {
        if (result.status === 'fulfilled') acknowledged.add(result.value);
        else failure ??= result.reason;
      }
    }
    expect(failure, 'the 8 MiB filesystem should have filled up').toBeInstanceOf(StoreUnavailableError);
    expect((failure as StoreUnavailableError).retriable).toBe(true);
    expect((failure as Error).message).toMatch(/SQLITE_FULL|disk|full/i);
    expect(acknowledged.count).toBeGreaterThan(500);

    // Still (nearly) full: an append either fails the same way or is acknowledged as usual
    // (a failed commit can leave a few pages free). Reads keep working, nothing is lost.
    let failures = 1;
    for (let i = 0; i < 10; i += 1) {
      try {
        acknowledged.add(await log.append(batch(20)));
      } catch (error) {
        expect(error).toBeInstanceOf(StoreUnavailableError);
        failures += 1;
      }
    }
    expect(failures).toBeGreaterThanOrEqual(5);
    await acknowledged.expectAllIn(log);
    expect(await metricValue(registry, 'portcall_log_append_failures_total', { code: 'SQLITE_FULL' })).toBe(failures);

    // Space returns: appends succeed again, each topic continuing at its next offset (the
    // refused appends took no offsets).
    rmSync(filler);
    const resumed = await log.append([
      { stream: 'containers', topic: 'T1', payload: randomBytes(100) },
      { stream: 'alerts', topic: 'T0', payload: randomBytes(100) },
      { stream: 'containers', topic: 'NEW', payload: randomBytes(100) },
    ]);
    expect(resumed.map((r) => r.offset)).toEqual([acknowledged.next('containers', 'T1'), acknowledged.next('alerts', 'T0'), 0]);
    acknowledged.add(resumed);
    // A little more, well inside the 4 MiB given back (of which the background checkpoint
    // needs up to the WAL's size to move the WAL into the database file).
    for (let i = 0; i < 10; i += 1) acknowledged.add(await log.append(batch(10)));
    await log.close();

    // Reopened: everything acknowledged is there, and the file passes verify.
    const reopened = SqliteLog.open({ siteId: 'AURORA', path, retentionIntervalMs: 0, indexer: 'inline' });
    openLogs.push(reopened);
    try {
      await acknowledged.expectAllIn(reopened);
      const [next] = await reopened.append([{ stream: 'containers', topic: 'T1', payload: randomBytes(10) }]);
      expect(next!.offset).toBe(acknowledged.next('containers', 'T1'));
    } finally {
      await reopened.close();
    }
    const report = verifyLog(path);
    expect(report.problems).toEqual([]);
    expect(report.records).toBe(acknowledged.count + 1);
  });
});

describe('site log retention', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-retention-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  const records = (stream: string, count: number, bytes: number, topics = 20): NewRecord[] =>
    Array.from({ length: count }, (_u, i) => ({ stream, topic: `${stream}-${i % topics}`, payload: randomBytes(bytes) }));

  async function fill(log: SqliteLog, stream: string, count: number, bytes: number): Promise<LogRecord[]> {
    const stored: LogRecord[] = [];
    for (let i = 0; i < count; i += 1000) stored.push(...(await log.append(records(stream, Math.min(1000, count - i), bytes))));
    return stored;
  }

  it('over maxLogBytes drops by priority: lowest stream first, alerts kept, every drop reported', async () => {
    const path = join(tempDir(), 'log.sqlite');
    const registry = new Registry();
    const streams: Record<string, StreamPolicy> = {
      containers: { priority: 1, requireCursors: ['forward/TOKYO/containers'] },
      ships: { priority: 5 },
      alerts: { priority: 100 },
    };
    // Unlimited first, to measure what the records take.
    let log = SqliteLog.open({ siteId: 'AURORA', path, retentionIntervalMs: 0, indexer: 'inline', streams });
    const containers = await fill(log, 'containers', 12_000, 200);
    const alerts = await fill(log, 'alerts', 2_000, 200);
    await fill(log, 'ships', 12_000, 200);
    const full = log.usedBytes();
    const containersBytes = log.streamStats('containers')!.bytes;
    // Forwarded: the first 3,000 records of containers; the rest would be dropped unforwarded.
    const forwardedPosition = 3000;
    await log.commitCursor('forward/TOKYO/containers', forwardedPosition);
    await log.close();

    // A limit that costs all of containers and part of ships, never alerts.
    const maxLogBytes = Math.round(full - containersBytes * 1.4);
    log = SqliteLog.open({ siteId: 'AURORA', path, retentionIntervalMs: 0, indexer: 'inline', streams, maxLogBytes, registry });
    try {
      // Appends keep committing while retention runs (it yields between chunks).
      log.indexNow(); // retention deletes only records the topic index holds
      const retention = log.runRetention();
      const during = await Promise.all(Array.from({ length: 20 }, (_u, i) => log.append([{ stream: 'alerts', topic: 'during', payload: Buffer.from(`{"i":${i}}`) }])));
      const reports: RetentionReport[] = await retention;
      expect(during.flat().map((r) => r.offset)).toEqual(Array.from({ length: 20 }, (_u, i) => i));

      expect(reports.length).toBeGreaterThan(0);
      expect(reports.every((r) => r.reason === 'pressure')).toBe(true);
      expect(reports.map((r) => r.stream)).not.toContain('alerts');
      // Lowest priority first: every containers drop comes before any ships drop, and ships
      // lose records only once containers has none left.
      const firstShips = reports.findIndex((r) => r.stream === 'ships');
      expect(firstShips, 'ships (priority 5) should lose records too under this limit').toBeGreaterThan(0);
      expect(reports.slice(firstShips).every((r) => r.stream === 'ships')).toBe(true);
      expect(log.streamStats('containers')!.records).toBe(0);
      expect(log.streamStats('ships')!.records).toBeGreaterThan(0);
      expect(log.streamStats('ships')!.records).toBeLessThan(12_000);
      expect(log.usedBytes()).toBeLessThanOrEqual(maxLogBytes);

      // Alerts are all there.
      expect(log.streamStats('alerts')!.records).toBe(alerts.length + 20);
      const alertTopic = alerts[0]!.topic;
      expect((await log.readTopic('alerts', alertTopic, 0, { maxRecords: 1 }))[0]!.payload).toEqual(alerts[0]!.payload);

      // Every drop is counted: in the reports, in the metric, and as unforwarded where the
      // required cursor had not passed.
      const dropped = (stream: string) => reports.filter((r) => r.stream === stream).reduce((sum, r) => sum + r.records, 0);
      expect(dropped('containers')).toBe(containers.length);
      expect(await metricValue(registry, 'portcall_log_dropped_records_total', { stream: 'containers', reason: 'pressure' })).toBe(containers.length);
      expect(await metricValue(registry, 'portcall_log_dropped_records_total', { stream: 'ships', reason: 'pressure' })).toBe(dropped('ships'));
      expect(await metricValue(registry, 'portcall_log_dropped_records_total', { stream: 'alerts' })).toBe(0);
      const unforwarded = reports.filter((r) => r.stream === 'containers').reduce((sum, r) => sum + r.unforwarded, 0);
      expect(unforwarded).toBe(containers.length - forwardedPosition);
      expect(await metricValue(registry, 'portcall_log_dropped_unforwarded_records_total', { stream: 'containers' })).toBe(unforwarded);

      // Appends keep working, each topic at its next offset, though its records are gone.
      const topic = containers[0]!.topic;
      const [again] = await log.append([{ stream: 'containers', topic, payload: Buffer.from('{}') }]);
      const nextOffset = containers.filter((r) => r.topic === topic).length;
      expect(again!.offset).toBe(nextOffset);
      expect(log.topicStats('containers', topic)).toMatchObject({ firstOffset: nextOffset, nextOffset: nextOffset + 1, count: 1 });
    } finally {
      await log.close();
    }
    const reopened = SqliteLog.open({ siteId: 'AURORA', path, retentionIntervalMs: 0, indexer: 'inline' });
    try {
      const topic = containers[0]!.topic;
      const nextOffset = containers.filter((r) => r.topic === topic).length + 1;
      expect(await reopened.highWater('containers', topic)).toBe(nextOffset);
      expect((await reopened.append([{ stream: 'containers', topic, payload: Buffer.from('{}') }]))[0]!.offset).toBe(nextOffset);
    } finally {
      await reopened.close();
    }
    expect(verifyLog(path).problems).toEqual([]);
  });

  it('TTL never expires what a required cursor has not passed, and does once it has', async () => {
    const path = join(tempDir(), 'log.sqlite');
    const registry = new Registry();
    const cursor = 'forward/TOKYO/containers';
    const log = SqliteLog.open({
      siteId: 'AURORA',
      path,
      retentionIntervalMs: 0,
      indexer: 'inline',
      registry,
      streams: {
        containers: { ttlMs: 100, requireCursors: [cursor] },
        // The same TTL without a required cursor: shows the TTL itself is due.
        ships: { ttlMs: 100 },
      },
    });
    try {
      const first = await log.append(records('containers', 100, 50, 10));
      await log.append(records('ships', 100, 50, 10));
      // The log marks time about once a second per stream; a second batch gets its own mark.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await log.append(records('containers', 100, 50, 10));
      await log.append(records('ships', 100, 50, 10));
      await new Promise((resolve) => setTimeout(resolve, 300));

      // Everything is past its TTL; nothing of containers is forwarded.
      log.indexNow(); // retention deletes only records the topic index holds
      let reports = await log.runRetention();
      expect(reports.filter((r) => r.stream === 'containers')).toEqual([]);
      expect(reports.filter((r) => r.stream === 'ships').reduce((sum, r) => sum + r.records, 0)).toBe(200);
      expect(log.streamStats('containers')!.records).toBe(200);
      expect((await log.readTopic('containers', first[0]!.topic, 0, { maxRecords: 1 }))[0]!.offset).toBe(0);

      // The cursor passes the first 150 positions: exactly those expire.
      await log.commitCursor(cursor, 150);
      log.indexNow();
      reports = await log.runRetention();
      expect(reports.filter((r) => r.stream === 'containers')).toEqual([
        expect.objectContaining({ stream: 'containers', reason: 'ttl', records: 150, unforwarded: 0 }),
      ]);
      expect(log.streamStats('containers')!.records).toBe(50);
      const page = await log.readStream('containers', 0);
      expect(page.records.length).toBe(50);
      expect(await log.readStream('containers', 150, { maxRecords: 1 })).toMatchObject({ nextPosition: 151 });
      expect(await metricValue(registry, 'portcall_log_dropped_records_total', { stream: 'containers', reason: 'ttl' })).toBe(150);

      // Then all of it.
      await log.commitCursor(cursor, 200);
      log.indexNow();
      await log.runRetention();
      expect(log.streamStats('containers')!.records).toBe(0);
      const [next] = await log.append([{ stream: 'containers', topic: first[0]!.topic, payload: Buffer.from('{}') }]);
      expect(next!.offset).toBe(20);
    } finally {
      await log.close();
    }
    expect(verifyLog(path).problems).toEqual([]);
  });

  it('a size cap never drops what a required cursor has not passed', async () => {
    const path = join(tempDir(), 'log.sqlite');
    const cursor = 'forward/TOKYO/containers';
    const log = SqliteLog.open({
      siteId: 'AURORA',
      path,
      retentionIntervalMs: 0,
      indexer: 'inline',
      streams: { containers: { maxBytes: 10_000, requireCursors: [cursor] }, ships: { maxBytes: 10_000 } },
    });
    try {
      await log.append(records('containers', 1000, 100));
      await log.append(records('ships', 1000, 100));
      log.indexNow(); // retention deletes only records the topic index holds
      let reports = await log.runRetention();
      // The cap applies where nothing needs forwarding…
      expect(reports.filter((r) => r.stream === 'ships').every((r) => r.reason === 'size')).toBe(true);
      expect(log.streamStats('ships')!.bytes).toBeLessThanOrEqual(10_000);
      // …and waits for the forwarder where something does.
      expect(reports.filter((r) => r.stream === 'containers')).toEqual([]);
      expect(log.streamStats('containers')!.records).toBe(1000);
      await log.commitCursor(cursor, 400);
      log.indexNow();
      reports = await log.runRetention();
      expect(reports.filter((r) => r.stream === 'containers').reduce((sum, r) => sum + r.records, 0)).toBe(400);
      expect(log.streamStats('containers')!.records).toBe(600);
      await log.commitCursor(cursor, 1000);
      log.indexNow();
      await log.runRetention();
      expect(log.streamStats('containers')!.bytes).toBeLessThanOrEqual(10_000);
    } finally {
      await log.close();
    }
  });
});
