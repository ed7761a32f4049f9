/**
 * Multi-site fixtures: shore sites run as real `portcall shore` processes on fixed ephemeral
 * ports (so a site restarted after kill -9 comes back where its peers and proxies expect it),
 * each replicated link through its own fault-injecting proxy, and a digest of every record a
 * site's log holds, by identity and payload hash.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { LogRecord } from '../../core/index.js';
import { SqliteLog } from '../../edge/log/index.js';
import { FaultProxy } from '../../tools/fault-proxy/index.js';
import { freeLoopbackPort } from '../../tools/net/index.js';
import { startPortcall, writeYaml, type PortcallProcess } from './portcall-process.js';

export function linkToken(from: string, to: string): string {
  return `${from.toLowerCase()}-to-${to.toLowerCase()}-token`;
}

/** Link settings that notice a dead or stalled connection within a couple of seconds. */
export const QUICK_LINK = {
  connectTimeoutMs: 2000,
  requestTimeoutMs: 10_000,
  stallTimeoutMs: 3000,
  retryInitialMs: 50,
  retryMaxMs: 1000,
  maxBatchAgeMs: 100,
};

export interface SiteSpec {
  readonly name: string;
  /** An MQTT gateway on a fixed port, for the site's own devices. */
  readonly mqtt?: boolean;
  readonly extra?: Record<string, unknown>;
  /** Extra settings per outgoing link, by destination. */
  readonly linkExtra?: Record<string, Record<string, unknown>>;
}

export class SiteNet {
  readonly httpPort = new Map<string, number>();
  readonly mqttPort = new Map<string, number>();
  readonly proxies = new Map<string, FaultProxy>();
  readonly processes = new Map<string, PortcallProcess>();
  readonly configFiles = new Map<string, string>();
  /** Every process ever started, so a test can kill them all at the end. */
  readonly started: PortcallProcess[] = [];

  private constructor(
    readonly dir: string,
    readonly sites: readonly SiteSpec[],
    /** Directed links [from, to]. */
    readonly edges: readonly (readonly [string, string])[],
  ) {}

  static async create(dir: string, sites: readonly SiteSpec[], edges: readonly (readonly [string, string])[], options: { proxies?: boolean } = {}): Promise<SiteNet> {
    const net = new SiteNet(dir, sites, edges);
    for (const site of sites) {
      net.httpPort.set(site.name, await freeLoopbackPort());
      if (site.mqtt === true) net.mqttPort.set(site.name, await freeLoopbackPort());
    }
    if (options.proxies !== false) {
      for (const [from, to] of edges) {
        net.proxies.set(`${from}>${to}`, await FaultProxy.start({ targetPort: net.httpPort.get(to)! }));
      }
    }
    for (const site of sites) net.configFiles.set(site.name, net.writeConfig(site));
    return net;
  }

  url(site: string): string {
    return `http://127.0.0.1:${this.httpPort.get(site)!}`;
  }

  proxy(from: string, to: string): FaultProxy {
    return this.proxies.get(`${from}>${to}`)!;
  }

  private writeConfig(site: SiteSpec): string {
    const incoming = this.edges.filter(([, to]) => to === site.name).map(([from]) => ({ site: from, token: linkToken(from, site.name) }));
    const outgoing = this.edges
      .filter(([from]) => from === site.name)
      .map(([, to]) => ({
        name: to,
        url: this.proxies.get(`${site.name}>${to}`)?.url() ?? this.url(to),
        token: linkToken(site.name, to),
        ...QUICK_LINK,
        ...site.linkExtra?.[to],
      }));
    return writeYaml(join(this.dir, `${site.name.toLowerCase()}.yaml`), {
      site: site.name,
      dataDir: this.dir,
      http: { port: this.httpPort.get(site.name)! },
      ...(site.mqtt === true ? { mqtt: { port: this.mqttPort.get(site.name)!, auth: { allowAnonymous: true } } } : {}),
      ingest: { peers: incoming },
      links: outgoing,
      ...site.extra,
    });
  }

  async start(site: string): Promise<PortcallProcess> {
    const process = startPortcall(['shore', '--config', this.configFiles.get(site)!]);
    this.started.push(process);
    this.processes.set(site, process);
    await process.waitFor(/HTTP on /, 60_000);
    return process;
  }

  async startAll(): Promise<void> {
    await Promise.all(this.sites.map((site) => this.start(site.name)));
  }

  async kill9(site: string): Promise<void> {
    await this.processes.get(site)?.kill9();
    this.processes.delete(site);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.processes.values()].map((process) => process.stop()));
    this.processes.clear();
  }

  /** The sites whose current process has exited, with the end of what it printed. */
  exited(): string {
    return [...this.processes]
      .filter(([, process]) => process.child.exitCode !== null || process.child.signalCode !== null)
      .map(([site, process]) => `${site} exited (${process.child.exitCode ?? process.child.signalCode}):\n${process.output().slice(-3000)}`)
      .join('\n');
  }

  async close(): Promise<void> {
    for (const process of this.started) await process.kill9();
    for (const proxy of this.proxies.values()) await proxy.close();
  }

  logPath(site: string): string {
    return join(this.dir, site, 'log.sqlite');
  }
}

/** Calls `visit` with every record a log holds, stream by stream in the log's order. */
async function eachRecord(path: string, siteId: string, visit: (record: LogRecord) => void): Promise<void> {
  const log = SqliteLog.open({ siteId, path, indexer: 'inline', retentionIntervalMs: 0 });
  try {
    for (const stream of log.listStreams()) {
      let position = 0;
      for (;;) {
        const page = await log.readStream(stream, position, { maxRecords: 20_000, maxBytes: 64 * 1024 * 1024 });
        if (page.records.length === 0) break;
        position = page.nextPosition;
        for (const record of page.records) visit(record);
      }
    }
  } finally {
    await log.close();
  }
}

/** Every record a log holds, as `origin|stream|topic|offset|sha256(payload)`. */
export async function recordSet(path: string, siteId: string): Promise<Set<string>> {
  const records = new Set<string>();
  await eachRecord(path, siteId, (record) => records.add(identityLine(record)));
  return records;
}

export function identityLine(record: LogRecord): string {
  return `${record.origin}|${record.stream}|${record.topic}|${record.offset}|${createHash('sha256').update(record.payload).digest('hex').slice(0, 16)}`;
}

/** How many records a log holds (count of stream positions, duplicates included). */
export async function storedCount(path: string, siteId: string): Promise<number> {
  let count = 0;
  await eachRecord(path, siteId, () => (count += 1));
  return count;
}

/** Lines of `a` missing from `b`, at most `limit`. */
export function missingFrom(a: Set<string>, b: Set<string>, limit = 5): string[] {
  const result: string[] = [];
  for (const line of a) {
    if (!b.has(line)) result.push(line);
    if (result.length >= limit) break;
  }
  return result;
}

/** The site's links as it reports them (GET /v1/links). */
export async function links(url: string): Promise<{ name: string; lag: { stream: string; records: number }[]; lastError: string | null; recordsForwarded: number }[]> {
  const response = await fetch(`${url}/v1/links`);
  // A site without links (headquarters) has no link routes.
  if (response.status === 404) return [];
  if (!response.ok) throw new Error(`GET ${url}/v1/links: HTTP ${response.status}`);
  return ((await response.json()) as { links: never[] }).links;
}

/** One metric's samples from a site's /metrics, as label string → value. */
export async function metricSamples(url: string, name: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(name.length, space), Number(line.slice(space + 1)));
  }
  return samples;
}
