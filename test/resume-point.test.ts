/**
 * The resume point from holdings digests (edge/forwarder/resume-point.ts) on real logs: never
 * past a record the destination lacks, and exactly where it stands when it holds a prefix.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LogRecord } from '../core/index.js';
import { holdingsDigests, TopicOrigins } from '../core/holdings.js';
import { SqliteLog } from '../edge/log/index.js';
import { findResumePoint } from '../edge/forwarder/resume-point.js';

describe('resume point from holdings digests', () => {
  const dirs: string[] = [];
  const logs: SqliteLog[] = [];
  afterEach(async () => {
    for (const log of logs.splice(0)) await log.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function setup() {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-resume-'));
    dirs.push(dir);
    const sender = SqliteLog.open({ siteId: 'AURORA', path: join(dir, 'aurora.sqlite'), indexer: 'inline' });
    const destination = SqliteLog.open({ siteId: 'SINGAPORE', path: join(dir, 'singapore.sqlite'), indexer: 'inline' });
    logs.push(sender, destination);
    // The sender relays another ship's records too, and the destination writes its own topics.
    await sender.replicate(Array.from({ length: 200 }, (_unused, index) => record('BOREALIS', `B${index % 5}`, Math.floor(index / 5))));
    for (let round = 0; round < 10; round += 1) {
      await sender.append(Array.from({ length: 300 }, (_unused, index) => ({ stream: 'containers', topic: `C${index % 30}`, payload: Buffer.from(`{"r":${round},"i":${index}}`) })));
    }
    await destination.append(Array.from({ length: 50 }, (_unused, index) => ({ stream: 'containers', topic: `S${index % 5}`, payload: Buffer.from('{}') })));
    const all: { position: number; record: LogRecord }[] = [];
    let position = 0;
    for (;;) {
      const page = await sender.readStream('containers', position, { maxRecords: 1 });
      if (page.records.length === 0) break;
      position = page.nextPosition;
      all.push({ position, record: page.records[0]! });
    }
    return { sender, destination, all };
  }

  function record(origin: string, topic: string, offset: number): LogRecord {
    return { origin, stream: 'containers', topic, offset, eventTimeMs: 1, ingestTimeMs: 1, headers: {}, payload: Buffer.from(`${topic}:${offset}`) };
  }

  async function resume(sender: SqliteLog, destination: SqliteLog, cursor = 0) {
    const origins = new TopicOrigins(destination);
    return findResumePoint({
      source: sender,
      catalog: sender,
      origins: new TopicOrigins(sender),
      stream: 'containers',
      cursor,
      maxRecords: 100_000,
      ask: (wanted, seed) => holdingsDigests(destination, origins, 'containers', wanted, seed),
    });
  }

  /** Every record of the sender up to `point` is held by the destination. */
  async function expectHeldUpTo(all: { position: number; record: LogRecord }[], destination: SqliteLog, point: number) {
    for (const { position, record: held } of all) {
      if (position > point) break;
      expect(await destination.highWater('containers', held.topic), `${held.topic}@${held.offset} (position ${position})`).toBeGreaterThan(held.offset);
    }
  }

  it('resumes exactly where the destination holds a prefix of the stream', async () => {
    const { sender, destination, all } = await setup();
    await destination.replicate(all.slice(0, 2100).map((entry) => entry.record));
    const point = await resume(sender, destination);
    expect(point.position).toBe(all[2099]!.position);
    await expectHeldUpTo(all, destination, point.position);
    // From a cursor part of the way, the same.
    expect((await resume(sender, destination, all[1000]!.position)).position).toBe(all[2099]!.position);
    // Holding everything: resume at the end.
    await destination.replicate(all.slice(2100).map((entry) => entry.record));
    expect((await resume(sender, destination)).position).toBe(all.at(-1)!.position);
  });

  it('never resumes past a record the destination lacks, when it holds more than a prefix', async () => {
    const { sender, destination, all } = await setup();
    // A prefix, then later records of every topic but C7 (it got them out of order, another way).
    await destination.replicate(all.slice(0, 1500).map((entry) => entry.record));
    await destination.replicate(all.slice(1500, 2500).filter((entry) => entry.record.topic !== 'C7').map((entry) => entry.record));
    const point = await resume(sender, destination);
    await expectHeldUpTo(all, destination, point.position);
    const firstMissing = all.findIndex((entry, index) => index >= 1500 && entry.record.topic === 'C7');
    expect(point.position).toBeLessThan(all[firstMissing]!.position);
  });

  it('does not skip anything when the destination holds none of it, or answers nothing', async () => {
    const { sender, destination } = await setup();
    expect((await resume(sender, destination)).position).toBe(0);
    const point = await findResumePoint({ source: sender, catalog: sender, origins: new TopicOrigins(sender), stream: 'containers', cursor: 0, ask: async () => undefined });
    expect(point.position).toBe(0);
  });
});
