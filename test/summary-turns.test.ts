/**
 * A topic's summary (what `portcall verify` and the voyage compare) reads the whole topic. The
 * embedded log reads synchronously, so without a turn of the event loop between pages a
 * summary of a stream held the site for seconds, answering neither its peers nor its devices.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { summarizeTopic } from '../cloud/read-api/index.js';
import { SqliteLog } from '../edge/log/index.js';
import { EventLoopTurns } from './support/event-loop-turns.js';

it('lets the event loop turn between the pages of a topic it summarizes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-summary-'));
  const log = SqliteLog.open({ siteId: 'HQ', path: join(dir, 'log.sqlite') });
  try {
    await log.append(Array.from({ length: 4500 }, (_unused, index) => ({ stream: 'containers', topic: 'Y01', payload: Buffer.from(`{"i":${index}}`) })));
    const loop = new EventLoopTurns();
    const summary = await summarizeTopic(log, 'containers', 'Y01', 4500);
    loop.stop();
    expect(summary).toMatchObject({ topic: 'Y01', firstOffset: 0, nextOffset: 4500, records: 4500 });
    expect(summary.hash).toMatch(/^[0-9a-f]{64}$/);
    // Five pages of 1,000: a turn after each.
    expect(loop.count).toBeGreaterThanOrEqual(4);
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
