/**
 * The voyage of DESIGN.md end to end, as `npm start` runs it: `portcall demo` with five real
 * site processes, the emulated fleet, links following the voyage, a kill -9 of the ship at
 * sea and two dropped transfers at Singapore. It must end with every site holding identical
 * records at identical offsets and Y07's overboard alert at Sydney and HQ within seconds.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startPortcall } from './support/portcall-process.js';

/** PIDs whose parent is `pid` (the demo's site processes), from /proc. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

describe('the voyage (portcall demo)', () => {
  it('sails Tokyo → Singapore → Sydney through its faults and every site ends with the same records', async () => {
    const demo = startPortcall(['demo', '--acceleration', '20000', '--exit']);
    try {
      // The portal's address and the demo's sign-ins, before the ship sails.
      await demo.waitFor(/portal: http:\/\/127\.0\.0\.1:\d+\/portal\/[^\n]*\n(\s+\S+\s+pct_\S+\n){5}/, 120_000);
      await demo.waitFor(/fault: kill -9 AURORA/, 120_000);
      await demo.waitFor(/fault: link AURORA → SINGAPORE dropped mid-transfer[\s\S]*fault: link AURORA → SINGAPORE dropped mid-transfer/, 120_000);
      const [, sites, topics, shipTopics] = await demo.waitFor(/all (\d+) shore sites hold identical records at identical offsets: (\d+) topics in \d+ streams compared by content hash; AURORA's containers, ships and alerts \((\d+) topics\) identical at HQ/, 240_000);
      expect(Number(sites)).toBe(4);
      expect(Number(topics)).toBeGreaterThanOrEqual(36);
      expect(Number(shipTopics)).toBeGreaterThanOrEqual(18);
      // Access is data at HQ, replicated to the ports: each audience reads exactly its own.
      const [, passed, checks] = await demo.waitFor(/access checks at HQ: (\d+) of (\d+) passed/, 10_000);
      expect(Number(checks)).toBeGreaterThanOrEqual(9);
      expect(Number(passed)).toBe(Number(checks));
      const [, sydney] = await demo.waitFor(/Y07 overboard alert at SYDNEY: within ([\d.]+) s/, 10_000);
      const [, hq] = await demo.waitFor(/Y07 overboard alert at HQ: within ([\d.]+) s/, 10_000);
      expect(Number(sydney)).toBeLessThan(5);
      expect(Number(hq)).toBeLessThan(5);
      await demo.waitFor(/OK: the voyage tells its story/, 10_000);
      const counts = Object.fromEntries([...demo.output().matchAll(/^\s+(TOKYO|SINGAPORE|SYDNEY|HQ|AURORA)\s+(\d+) records$/gm)].map((match) => [match[1], Number(match[2])]));
      expect(Object.keys(counts).sort()).toEqual(['AURORA', 'HQ', 'SINGAPORE', 'SYDNEY', 'TOKYO']);
      // Every shore site holds the same; the ship holds what it wrote, without HQ's custody records.
      expect(new Set([counts.TOKYO, counts.SINGAPORE, counts.SYDNEY, counts.HQ]).size).toBe(1);
      expect(counts.AURORA).toBeGreaterThan(50_000);
      expect(counts.HQ! - counts.AURORA!).toBeGreaterThan(0);
      expect(counts.HQ! - counts.AURORA!).toBeLessThan(100);
      const code = demo.child.exitCode ?? (await new Promise<number | null>((resolve) => demo.child.once('exit', (exitCode) => resolve(exitCode))));
      expect(code).toBe(0);
    } finally {
      // A demo that failed half-way must not leave its five sites running.
      const orphans = childrenOf(demo.pid);
      await demo.kill9();
      for (const pid of orphans) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }, 420_000);
});
