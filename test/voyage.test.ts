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
      await demo.waitFor(/fault: kill -9 AURORA/, 120_000);
      await demo.waitFor(/fault: link AURORA → SINGAPORE dropped mid-transfer[\s\S]*fault: link AURORA → SINGAPORE dropped mid-transfer/, 120_000);
      const [, sites, topics] = await demo.waitFor(/all (\d+) sites hold identical records at identical offsets: (\d+) topics/, 240_000);
      expect(Number(sites)).toBe(5);
      expect(Number(topics)).toBeGreaterThanOrEqual(36);
      const [, sydney] = await demo.waitFor(/Y07 overboard alert at SYDNEY: within ([\d.]+) s/, 10_000);
      const [, hq] = await demo.waitFor(/Y07 overboard alert at HQ: within ([\d.]+) s/, 10_000);
      expect(Number(sydney)).toBeLessThan(5);
      expect(Number(hq)).toBeLessThan(5);
      await demo.waitFor(/OK: the voyage tells its story/, 10_000);
      const counts = [...demo.output().matchAll(/^\s+(TOKYO|SINGAPORE|SYDNEY|HQ|AURORA)\s+(\d+) records$/gm)].map((match) => Number(match[2]));
      expect(counts).toHaveLength(5);
      expect(new Set(counts).size).toBe(1);
      expect(counts[0]).toBeGreaterThan(50_000);
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
