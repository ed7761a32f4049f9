/**
 * `portcall status --url <site> | --config <site.yaml> [--json]`: one screen summarizing a
 * running site from its HTTP API (GET /v1/status, site/status-route.ts): name and backend,
 * health with reasons, log size and streams, ingest peers and refusals, links with state and
 * lag, alerts stored and warn/error log lines in the last hour. Exit 0 when the site answers
 * and is ok, 1 when it is degraded or unavailable, 2 when it cannot be asked.
 */
import { InvalidArgumentError, type Command } from 'commander';

export interface SiteStatus {
  site: string;
  backend: string;
  at: string;
  uptimeSeconds: number;
  health: { status: string; reasons?: string[]; warnings?: string[]; components?: { component: string; status: string; reason?: string }[] };
  log: { usedBytes: number; fileBytes: number; streams: { stream: string; topics: number; records: number; bytes: number }[] } | null;
  ingest: { peers: string[]; batchesAccepted: number; recordsStored: number; duplicatesDropped: number; batchesRefused: number; refusedByReason: Record<string, number> } | null;
  links: { name: string; state: string; lag?: { stream: string; records: number; bytes: number }[]; recordsForwarded?: number; lastAck?: string | null; lastError?: string | null }[];
  gateway: { refusalsByReason: Record<string, number>; connectionsRefusedByReason: Record<string, number> };
  alertsLastHour: { count: number; byType: Record<string, number>; complete: boolean } | null;
  logLinesLastHour: { counted: boolean; warnLines: number; errorLines: number };
}

class StatusUnreachable extends Error {}

function baseUrl(raw: string): string {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new InvalidArgumentError(`--url: ${raw} is not a URL (http://host:port)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new InvalidArgumentError(`--url: ${raw} must be http:// or https://`);
  return raw.replace(/\/+$/, '');
}

/** The site's HTTP URL from its configuration: http(s)://host:port (a wildcard host is asked on loopback). */
async function urlFromConfig(path: string): Promise<string> {
  const { loadSiteConfig } = await import('../site/index.js');
  const config = loadSiteConfig(path);
  if (config.http === undefined) throw new StatusUnreachable(`--config: ${path} has no http section; the site serves no status`);
  if (config.http.port === 0) throw new StatusUnreachable(`--config: ${path} has http.port 0 (any free port); give the site's URL with --url`);
  const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
  const scheme = config.ingest?.tls === undefined ? 'http' : 'https';
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${config.http.port}`;
}

export async function fetchStatus(url: string, timeoutMs = 10_000): Promise<SiteStatus> {
  let response: Response;
  try {
    response = await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    throw new StatusUnreachable(`cannot ask ${url}: ${(error as Error).message}`);
  }
  if (!response.ok) throw new StatusUnreachable(`cannot ask ${url}/v1/status: HTTP ${response.status} ${(await response.text()).slice(0, 200)}`);
  return (await response.json()) as SiteStatus;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function counts(map: Record<string, number>): string {
  const entries = Object.entries(map).filter(([, n]) => n > 0);
  return entries.length === 0 ? 'none' : entries.map(([reason, n]) => `${reason} ${n}`).join(', ');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => `  ${row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ')}`).join('\n');
}

export function formatStatus(status: SiteStatus, url: string): string {
  const lines: string[] = [];
  lines.push(`site ${status.site} (${status.backend}) at ${url}, up ${Math.round(status.uptimeSeconds / 60)} min, as of ${status.at}`);
  lines.push(`health: ${status.health.status}`);
  for (const reason of status.health.reasons ?? []) lines.push(`  reason: ${reason}`);
  for (const warning of status.health.warnings ?? []) lines.push(`  warning: ${warning}`);
  if (status.log === null) {
    lines.push('log: on Kafka (sizes and streams: Kafka\u2019s own tools, docs/KAFKA.md)');
  } else {
    const records = status.log.streams.reduce((sum, s) => sum + s.records, 0);
    const topics = status.log.streams.reduce((sum, s) => sum + s.topics, 0);
    lines.push(`log: ${bytes(status.log.usedBytes)} used, ${bytes(status.log.fileBytes)} on disk; ${status.log.streams.length} streams, ${topics} topics, ${records} records`);
    if (status.log.streams.length > 0) {
      lines.push(table([['stream', 'topics', 'records', 'payload'], ...status.log.streams.map((s) => [s.stream, String(s.topics), String(s.records), bytes(s.bytes)])]));
    }
  }
  if (status.ingest === null) {
    lines.push('ingest: none (this site takes no batches)');
  } else {
    const i = status.ingest;
    lines.push(`ingest: peers ${i.peers.length === 0 ? 'none' : i.peers.join(', ')}; ${i.batchesAccepted} batches, ${i.recordsStored} records stored, ${i.duplicatesDropped} duplicates dropped`);
    lines.push(`  refused batches since start: ${i.batchesRefused} (${counts(i.refusedByReason)})`);
  }
  if (status.links.length === 0) {
    lines.push('links: none');
  } else {
    lines.push('links:');
    lines.push(
      table([
        ['name', 'state', 'lag records', 'lag bytes', 'forwarded', 'last ack', 'last error'],
        ...status.links.map((link) => [
          link.name,
          link.state,
          String((link.lag ?? []).reduce((sum, entry) => sum + entry.records, 0)),
          bytes((link.lag ?? []).reduce((sum, entry) => sum + entry.bytes, 0)),
          String(link.recordsForwarded ?? '?'),
          link.lastAck ?? 'never',
          (link.lastError ?? '-').slice(0, 60),
        ]),
      ]),
    );
  }
  const gatewayRefusals = counts(status.gateway.refusalsByReason);
  const connectionRefusals = counts(status.gateway.connectionsRefusedByReason);
  if (gatewayRefusals !== 'none' || connectionRefusals !== 'none') {
    lines.push(`gateway refusals since start: publishes ${gatewayRefusals}; connections ${connectionRefusals}`);
  }
  if (status.alertsLastHour === null) {
    lines.push('alerts in the last hour: not counted on a Kafka-backed site');
  } else {
    const a = status.alertsLastHour;
    lines.push(`alerts stored in the last hour: ${a.complete ? '' : 'at least '}${a.count}${a.count === 0 ? '' : ` (${counts(a.byType)})`}`);
  }
  const p = status.logLinesLastHour;
  lines.push(p.counted ? `errors in the last hour: ${p.errorLines} error and ${p.warnLines} warn log lines` : 'errors in the last hour: not counted (the site\u2019s logger does not feed the counter)');
  return `${lines.join('\n')}\n`;
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('Summarize a running site on one screen from its HTTP API: health, log, streams, ingest, links and lag, alerts and errors in the last hour')
    .option('--url <url>', 'the site\u2019s HTTP base URL, e.g. http://127.0.0.1:8080', baseUrl)
    .option('-c, --config <file>', 'or the site\u2019s configuration, to take the URL from (http.host, http.port)')
    .option('--json', 'print GET /v1/status as JSON, for machines')
    .addHelpText(
      'after',
      '\n"errors in the last hour" counts the warn and error lines the site logged in the last 60 minutes;\n' +
        'refusals are counted since the site started (Prometheus /metrics has their history).\n' +
        'Exit codes: 0 healthy, 1 degraded or unavailable, 2 the site could not be asked.\n\n' +
        'Examples:\n  portcall status --url http://127.0.0.1:8080\n  portcall status --config config/tokyo.yaml --json',
    )
    .action(async (options: { url?: string; config?: string; json?: boolean }) => {
      if ((options.url === undefined) === (options.config === undefined)) {
        process.stderr.write('portcall status: give exactly one of --url or --config\n');
        process.exitCode = 2;
        return;
      }
      let url = options.url ?? '';
      let status: SiteStatus;
      try {
        if (options.config !== undefined) url = await urlFromConfig(options.config);
        status = await fetchStatus(url);
      } catch (error) {
        if (!(error instanceof StatusUnreachable)) throw error;
        process.stderr.write(`portcall status: ${error.message}\n`);
        process.exitCode = 2;
        return;
      }
      process.stdout.write(options.json === true ? `${JSON.stringify(status)}\n` : formatStatus(status, url));
      if (status.health.status !== 'ok') process.exitCode = 1;
    });
}
