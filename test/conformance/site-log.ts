/**
 * Conformance suite for a full site log (`SiteLog`): the writer path, stream scans, limits,
 * cursors. Every implementation of `SiteLog` runs it.
 */
import { describe, expect, it } from 'vitest';
import type { NewRecord, SiteLog } from '../../core/index.js';

export interface SiteLogFactory {
  open(name: string, siteId: string): Promise<SiteLog>;
}

let counter = 0;
const uniqueName = () => `log${Date.now().toString(36)}${(counter += 1)}`;
const reading = (topic: string, n: number, stream = 'containers', bytes = 0): NewRecord => ({
  stream,
  topic,
  eventTimeMs: 1_700_000_000_000 + n,
  headers: n % 2 === 0 ? { sensor: 'reefer' } : {},
  payload: Buffer.from(bytes > 0 ? 'x'.repeat(bytes) : JSON.stringify({ n })),
});

export function siteLogConformance(implementation: string, factory: SiteLogFactory): void {
  describe(`${implementation}: SiteLog conformance`, () => {
    it('appends with dense offsets per topic, this site as origin, and reads them back exactly', async () => {
      const log = await factory.open(uniqueName(), 'AURORA');
      try {
        const stored = await log.append([reading('Y01', 0), reading('Y02', 1), reading('Y01', 2)]);
        expect(stored.map((r) => [r.topic, r.offset, r.origin])).toEqual([
          ['Y01', 0, 'AURORA'],
          ['Y02', 0, 'AURORA'],
          ['Y01', 1, 'AURORA'],
        ]);
        const concurrent = await Promise.all(Array.from({ length: 40 }, (_u, i) => log.append([reading('Y03', i)])));
        expect(concurrent.flat().map((r) => r.offset)).toEqual(Array.from({ length: 40 }, (_u, i) => i));
        const back = await log.readTopic('containers', 'Y01', 0);
        expect(back.map((r) => ({ ...r, payload: Buffer.from(r.payload).toString() }))).toEqual(
          stored.filter((r) => r.topic === 'Y01').map((r) => ({ ...r, payload: Buffer.from(r.payload).toString() })),
        );
        expect((await log.latest('containers', 'Y03'))?.offset).toBe(39);
        expect(await log.readTopic('containers', 'Y01', 5)).toEqual([]);
        expect(await log.readTopic('containers', 'NOPE', 0)).toEqual([]);
      } finally {
        await log.close();
      }
    });

    it('reads a topic from any offset with record and byte limits, never stalling on a large record', async () => {
      const log = await factory.open(uniqueName(), 'AURORA');
      try {
        for (let i = 0; i < 30; i += 1) await log.append([reading('Y01', i, 'containers', i === 10 ? 5000 : 100)]);
        expect((await log.readTopic('containers', 'Y01', 3, { maxRecords: 4 })).map((r) => r.offset)).toEqual([3, 4, 5, 6]);
        expect((await log.readTopic('containers', 'Y01', 0, { maxBytes: 250 })).map((r) => r.offset)).toEqual([0, 1]);
        expect((await log.readTopic('containers', 'Y01', 10, { maxBytes: 100 })).map((r) => r.offset)).toEqual([10]);
      } finally {
        await log.close();
      }
    });

    it('scans a stream across topics in append order from a position, and not other streams', async () => {
      const log = await factory.open(uniqueName(), 'AURORA');
      try {
        await log.append([reading('Y01', 0), reading('Y02', 1), { stream: 'alerts', topic: 'Y07', payload: Buffer.from('{"overboard":true}') }, reading('Y01', 2)]);
        const all = await log.readStream('containers', 0);
        expect(all.records.map((r) => `${r.topic}@${r.offset}`)).toEqual(['Y01@0', 'Y02@0', 'Y01@1']);
        const firstTwo = await log.readStream('containers', 0, { maxRecords: 2 });
        const rest = await log.readStream('containers', firstTwo.nextPosition);
        expect([...firstTwo.records, ...rest.records].map((r) => `${r.topic}@${r.offset}`)).toEqual(['Y01@0', 'Y02@0', 'Y01@1']);
        expect((await log.readStream('containers', rest.nextPosition)).records).toEqual([]);
        expect((await log.readStream('alerts', 0)).records.map((r) => r.topic)).toEqual(['Y07']);
      } finally {
        await log.close();
      }
    });

    it('notifies listeners after records are durable, per stream', async () => {
      const log = await factory.open(uniqueName(), 'AURORA');
      try {
        const seen: string[] = [];
        const unsubscribe = log.onDurable((stream) => seen.push(stream));
        await log.append([reading('Y01', 0), { stream: 'alerts', topic: 'Y01', payload: Buffer.from('{}') }]);
        unsubscribe();
        await log.append([reading('Y01', 1)]);
        expect(seen.sort()).toEqual(['alerts', 'containers']);
      } finally {
        await log.close();
      }
    });

    it('keeps named cursors durable across reopen, and replays from any position', async () => {
      const name = uniqueName();
      const log = await factory.open(name, 'AURORA');
      await log.append([reading('Y01', 0), reading('Y01', 1), reading('Y01', 2)]);
      const page = await log.readStream('containers', 0, { maxRecords: 2 });
      await log.commitCursor('consumer/portal', page.nextPosition);
      expect(await log.getCursor('never-committed')).toBeUndefined();
      await log.close();
      const reopened = await factory.open(name, 'AURORA');
      try {
        const position = await reopened.getCursor('consumer/portal');
        expect(position).toBe(page.nextPosition);
        expect((await reopened.readStream('containers', position!)).records.map((r) => r.offset)).toEqual([2]);
        expect((await reopened.readStream('containers', 0)).records.map((r) => r.offset)).toEqual([0, 1, 2]);
        expect((await reopened.append([reading('Y01', 3)]))[0]!.offset).toBe(3);
      } finally {
        await reopened.close();
      }
    });
  });
}
