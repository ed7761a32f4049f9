/**
 * The writer guard on a real SQLite log: a write for a topic another site writes is refused
 * record by record (the rest of the call stored), and a site whose containers come by handoff
 * only (a port's terminal) refuses a container it has not been handed instead of creating it.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordsRefusedError } from '../core/index.js';
import { SqliteLog } from '../edge/log/index.js';
import { WriterGuard } from '../site/writer-guard.js';
import { tempDir } from './support/uplink.js';

const reading = (stream: string, topic: string) => ({ stream, topic, payload: Buffer.from(JSON.stringify({ ts: 1, tempC: 4 })) });

describe('writer guard', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0)) await step();
  });

  async function open(site: string): Promise<SqliteLog> {
    const dir = tempDir(`writer-guard-${site}`);
    const log = SqliteLog.open({ siteId: site, path: join(dir, 'log.sqlite'), indexer: 'inline', retentionIntervalMs: 0 });
    cleanup.push(async () => {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return log;
  }

  it('refuses only the records of topics another site writes, naming them by index; stores the rest', async () => {
    const tokyo = await open('TOKYO');
    const [first] = await tokyo.append([reading('containers', 'Y01')]);
    const singapore = await open('SINGAPORE');
    await singapore.replicate([first!]);
    const guard = new WriterGuard(singapore, 'SINGAPORE');
    const refusal = await guard.append([reading('containers', 'R09'), reading('containers', 'Y01'), reading('containers', 'R09')]).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(RecordsRefusedError);
    const refused = (refusal as RecordsRefusedError).refused;
    expect([...refused.keys()]).toEqual([1]);
    expect(refused.get(1)!.message).toMatch(/topic containers\/Y01 is written by TOKYO, not SINGAPORE/);
    expect((refusal as RecordsRefusedError).stored).toBe(2);
    expect((await singapore.latest('containers', 'R09'))?.offset).toBe(1);
    expect((await singapore.latest('containers', 'Y01'))?.origin).toBe('TOKYO');
  });

  it('with handoff-only streams, a topic never handed here is refused, not created; once handed, written', async () => {
    const ship = await open('AURORA');
    const port = await open('SINGAPORE');
    const guard = new WriterGuard(port, 'SINGAPORE', undefined, undefined, ['containers']);
    const refusal = await guard.append([reading('containers', 'R01'), reading('ships', 'CRANE7')]).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(RecordsRefusedError);
    expect([...(refusal as RecordsRefusedError).refused.keys()]).toEqual([0]);
    expect((refusal as RecordsRefusedError).refused.get(0)!.message).toMatch(/written by nobody yet \(it must be handed to this site first\), not SINGAPORE/);
    expect(await port.latest('containers', 'R01')).toBeUndefined();
    expect((await port.latest('ships', 'CRANE7'))?.origin).toBe('SINGAPORE');
    // The ship writes R01 and hands it over; the port writes it once it holds the handoff.
    const shipGuard = new WriterGuard(ship, 'AURORA');
    await shipGuard.append([reading('containers', 'R01')]);
    await shipGuard.handoff('containers', 'R01', 'SINGAPORE', Date.parse('2026-03-10T00:00:00Z'));
    await port.replicate(await ship.readTopic('containers', 'R01', 0, { maxRecords: 10, maxBytes: 1 << 20 }));
    const [stored] = await guard.append([reading('containers', 'R01')]);
    expect(stored).toMatchObject({ origin: 'SINGAPORE', offset: 2 });
    expect((await port.readTopic('containers', 'R01', 1, { maxRecords: 1, maxBytes: 1 << 20 }))[0]!.eventTimeMs).toBe(Date.parse('2026-03-10T00:00:00Z'));
  });
});
