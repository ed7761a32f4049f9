/** The chaos run's report as a table for people (JSON is the report object itself). */
import type { ChaosReport } from './run.js';
import { FAULT_KINDS } from './schedule.js';

const seconds = (ms: number | null) => (ms === null ? '-' : `${(ms / 1000).toFixed(1)} s`);

export function formatChaosReport(report: ChaosReport): string {
  const lines: string[] = [];
  const row = (cells: readonly (string | number)[], widths: readonly number[]) =>
    cells.map((cell, index) => (index === 0 ? String(cell).padEnd(widths[index]!) : String(cell).padStart(widths[index]!))).join('  ');
  lines.push(
    `chaos: seed ${report.seed}, ${report.rate} messages/s, ${report.faultsPerMinute} faults/min, ship disk ${report.shipDisk}${report.shipDiskUsedMb === null ? '' : ` (${report.shipDiskUsedMb} MiB used at the end)`}`,
  );
  lines.push(
    `  wall time ${seconds(report.timingsMs.total)} (setup ${seconds(report.timingsMs.setup)}, load and faults ${seconds(report.timingsMs.faults)}, quiescence ${seconds(report.timingsMs.quiesce)}, read-back ${seconds(report.timingsMs.readBack)})`,
  );
  lines.push('');
  lines.push(`records generated     ${report.generated}`);
  lines.push(`  acknowledged        ${report.acknowledged}  (PUBACK received)`);
  lines.push(`  not acknowledged    ${report.unacknowledged}  (connection lost before the PUBACK; may or may not be stored, never resent)`);
  lines.push('');
  const widths = [30, 9, 9, 13, 6, 10, 9, 5];
  lines.push(row(['site', 'records', 'delivered', 'of them unack', 'lost', 'duplicated', 'misplaced', 'gaps'], widths));
  for (const site of report.sites) lines.push(row([site.site, site.records, site.delivered, site.deliveredUnacknowledged, site.lost, site.duplicated, site.misplaced, site.gaps], widths));
  lines.push('');
  lines.push(`LOST        ${report.lost}  (acknowledged, missing at one site or more; must be 0)`);
  lines.push(`DUPLICATED  ${report.duplicated}  (same identity twice, or one message under two identities, summed over sites; must be 0)`);
  if (report.gaps > 0) lines.push(`GAPS        ${report.gaps}  (offsets missing inside topics, summed over sites)`);
  if (report.misplaced > 0) lines.push(`MISPLACED   ${report.misplaced}  (a message under another stream or topic than its MQTT topic maps to)`);
  if (report.verifyDifferences !== null) {
    lines.push(
      report.verifyDifferences.length === 0
        ? `portcall verify --sites: ${report.verifiedSites.join(', ')} identical (${report.verifyTopics} topics by content hash)`
        : `portcall verify --sites: ${report.verifyDifferences.length} topics differ:\n${report.verifyDifferences.slice(0, 10).map((line) => `    ${line}`).join('\n')}`,
    );
  }
  lines.push('');
  const faultWidths = [14, 8, 9, 8, 7, 10, 10];
  lines.push(row(['fault', 'planned', 'injected', 'skipped', 'failed', 'fastest', 'slowest'], faultWidths));
  let total = 0;
  for (const kind of FAULT_KINDS) {
    const entry = report.faultsByKind[kind];
    total += entry.injected;
    if (entry.planned === 0) continue;
    lines.push(row([kind, entry.planned, entry.injected, entry.skipped, entry.failed, seconds(entry.minTookMs), seconds(entry.maxTookMs)], faultWidths));
  }
  lines.push(`${total} faults injected (fastest/slowest: from the fault to its end, restart or restore included)`);
  for (const fault of report.faults.filter((entry) => entry.detail !== undefined).slice(0, 30)) {
    lines.push(`  at ${((fault.startedAtMs ?? fault.atMs) / 1000).toFixed(1)} s ${fault.kind} ${fault.target} (${fault.outcome}): ${fault.detail}`);
  }
  const examples = report.sites.flatMap((site) => site.examples);
  if (examples.length > 0) lines.push('', 'examples:', ...examples.slice(0, 20).map((line) => `  ${line}`));
  for (const problem of report.problems) lines.push(`problem: ${problem}`);
  lines.push('', report.ok ? 'OK: nothing acknowledged was lost, nothing was duplicated' : `FAILED: see above; the work directory is kept: ${report.workDir}`);
  return `${lines.join('\n')}\n`;
}

/** The schedule as lines: when, what, on what, for how long. */
export function formatSchedule(faults: readonly { atMs: number; kind: string; target: string; holdMs: number; skewMs?: number }[]): string {
  return faults
    .map((fault) => `${(fault.atMs / 1000).toFixed(1).padStart(8)} s  ${fault.kind.padEnd(14)} ${fault.target.padEnd(16)} hold ${(fault.holdMs / 1000).toFixed(1)} s${fault.skewMs === undefined ? '' : `, skew ${(fault.skewMs / 3_600_000).toFixed(1)} h`}`)
    .join('\n');
}
