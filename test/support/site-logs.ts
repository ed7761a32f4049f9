/**
 * What the voyage's sites warned about, for a demo that failed or hung: the demo names its data
 * directory when it starts, and each site logs there (pino JSON lines, `<site>.log`). A failure
 * seen only as "the demo stopped progressing" needs these to be told apart (a site's event
 * loop held, a slow group commit, a link giving up), and the directory is gone with the machine.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const WARN_LEVEL = 40;

/** The last `perSite` warnings and errors of each site's log, one line each, or why there are none. */
export function siteLogProblems(demoOutput: string, perSite = 25): string {
  const dir = /voyage: starting [^\n]* in (\S+)\n/.exec(demoOutput)?.[1];
  if (dir === undefined || !existsSync(dir)) return 'the demo named no data directory that still exists';
  const sections: string[] = [];
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.log')).sort()) {
    const problems: string[] = [];
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      let entry: { level?: number; time?: number; msg?: string; [key: string]: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      if ((entry.level ?? 0) < WARN_LEVEL) continue;
      const { level, time, msg, pid: _pid, hostname: _hostname, site: _site, ...rest } = entry;
      problems.push(`${new Date(time ?? 0).toISOString().slice(11, 23)} ${level! >= 50 ? 'ERROR' : 'warn '} ${msg ?? ''} ${JSON.stringify(rest)}`);
    }
    sections.push(`--- ${file}: ${problems.length} warnings and errors${problems.length > perSite ? `, the last ${perSite}` : ''}\n${problems.slice(-perSite).join('\n')}`);
  }
  return `site logs in ${dir}\n${sections.join('\n')}`;
}
