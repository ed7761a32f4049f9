/**
 * portal: the customer portal at a shore site holding 10 million records (issue 9).
 *
 * The dataset is what headquarters holds after a few days of one big ship: the fleet
 * simulation (devices/fleet) runs AURORA from Tokyo with 2,000 containers reporting once a
 * minute (200 ToyCo reefers, 200 RedCo dry boxes, 1,600 of the carrier's reefers), plus the
 * ship's position and environment and the manifests, mapped to streams as the gateway maps
 * them and replicated into the site's log with AURORA as origin — until the log holds
 * 10 million records (× --scale). Built once and kept under the cache directory
 * (~/.cache/portcall/bench/), since writing it takes minutes; a changed generator gets a new
 * directory (DATASET_VERSION).
 *
 * Figures, each with a baseline measured in the same run:
 * - projector replay: records/s folded into the read model from position 0, against a plain
 *   scan of the same streams through the same StreamSource with no fold;
 * - at a real `portcall shore` process with access control: time from start until the
 *   portal has caught up (the site serves at once; pages fill as the model is read);
 * - container history queries over HTTP through access control, p50/p99: the portal's
 *   container page (whole history as a chart, its timeline and alerts) for ToyCo and for
 *   carrier operations, and 500-record pages of the raw history from random offsets (the read
 *   API) for ToyCo; against `/healthz` on the same connection (the HTTP floor);
 * - time to first render of the map page in Debian's Chromium, ToyCo and carrier operations,
 *   against the same page's sign-in form (static assets only, no data);
 * - the site process's RSS with the read model built.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { homedir, loadavg, tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { LogRecord } from '../../core/index.js';
import { PORTAL_STREAMS, PortalProjector } from '../../cloud/portal/index.js';
import { FleetModel, parseScenario } from '../../devices/fleet/index.js';
import { SqliteLog } from '../../edge/log/index.js';
import { SiteProcess } from '../../cli/voyage-sites.js';
import { freeLoopbackPort } from '../../tools/net/index.js';
import type { BenchContext, Figure, Scenario } from '../harness.js';

const DATASET_VERSION = 1;
const BASE_RECORDS = 10_000_000;
const CONTAINERS = 2000;
const ORIGIN = 'AURORA';
const SITE = 'HQ';
const CHROMIUM = '/usr/bin/chromium';
const PEER_TOKEN = 'aurora-ingest-token-for-the-portal-bench';
const ADMIN_TOKEN = 'bootstrap-admin-token-for-the-portal-bench';
/** ToyCo's containers: the customer whose queries are measured. */
const TOYCO = { first: 1, last: 200 };
const HISTORY_QUERIES = 1000;
const RENDERS = 5;
const FLEET_QUERIES = 100;

const containerId = (index: number) => `C${String(index).padStart(5, '0')}`;

function cacheBase(): string {
  const explicit = process.env.PORTCALL_CACHE_DIR?.trim();
  const xdg = process.env.XDG_CACHE_HOME?.trim();
  return explicit ? resolve(explicit) : xdg && isAbsolute(xdg) ? join(xdg, 'portcall') : join(homedir(), '.cache', 'portcall');
}

interface DatasetFacts {
  readonly records: number;
  /** Offset of the last reading (not an event) of each container, to know when the portal has caught up. */
  readonly lastReadingOffset: Record<string, number>;
  readonly buildSeconds: number;
}

/** The fleet's records as headquarters stores them, in the order the gateway stored them, until `limit`. */
function* fleetRecords(limit: number): Generator<LogRecord & { kind: string }> {
  const scenario = parseScenario(
    {
      name: 'portal-bench',
      seed: 11,
      ships: [{ id: ORIGIN, speedKnots: 18, calls: [{ port: 'JPTYO', dwellHours: 2 }, { port: 'SGSIN', dwellHours: 12 }, { port: 'AUSYD', dwellHours: 12 }] }],
      containers: [
        { ids: `${containerId(TOYCO.first)}-${containerId(TOYCO.last)}`, owner: 'ToyCo', kind: 'reefer', setpointC: 4, cargo: 'chocolate', moves: [{ ship: ORIGIN, load: 'JPTYO', unload: 'AUSYD' }] },
        { ids: `${containerId(201)}-${containerId(400)}`, owner: 'RedCo', kind: 'dry', cargo: 'bicycles', moves: [{ ship: ORIGIN, load: 'JPTYO', unload: 'SGSIN' }] },
        { ids: `${containerId(401)}-${containerId(CONTAINERS)}`, owner: 'BigBlue', kind: 'reefer', setpointC: -18, cargo: 'frozen fish', moves: [{ ship: ORIGIN, load: 'JPTYO', unload: 'AUSYD' }] },
      ],
    },
    'portal-bench',
  );
  const model = new FleetModel(scenario);
  const offsets = new Map<string, number>();
  let produced = 0;
  let timeMs = model.timeline.startMs;
  while (timeMs < model.endMs) {
    timeMs += 10 * 60_000;
    for (const message of model.advanceTo(timeMs)) {
      // The gateway's default mapping: <prefix>/containers/<id>/<sensor> → containers/<id>, and so on.
      const [, kind, subject] = message.topic.split('/') as [string, string, string];
      const stream = kind === 'containers' ? 'containers' : kind === 'ships' ? 'ships' : kind === 'manifests' ? 'manifests' : 'alerts';
      const key = `${stream}\u0000${subject}`;
      const offset = offsets.get(key) ?? 0;
      offsets.set(key, offset + 1);
      yield {
        kind: message.kind,
        origin: ORIGIN,
        stream,
        topic: subject,
        offset,
        eventTimeMs: message.timeMs,
        ingestTimeMs: message.timeMs + 5,
        headers: { 'mqtt-topic': message.topic },
        payload: Buffer.from(message.payload),
      };
      produced += 1;
      if (produced >= limit) return;
    }
  }
}

/** Builds the dataset (or finds it built) and returns where its site data lives. */
async function dataset(records: number, context: BenchContext): Promise<{ dataDir: string; facts: DatasetFacts }> {
  const dir = join(cacheBase(), 'bench', `portal-v${DATASET_VERSION}-${records}`);
  const factsFile = join(dir, 'facts.json');
  const dataDir = join(dir, 'data');
  if (existsSync(factsFile)) {
    context.progress(`portal: reusing the dataset in ${dir}`);
    return { dataDir, facts: JSON.parse(readFileSync(factsFile, 'utf8')) as DatasetFacts };
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dataDir, SITE), { recursive: true });
  context.progress(`portal: building ${records.toLocaleString('en-US')} records in ${dir} (once; kept for later runs)`);
  const startedAt = performance.now();
  const log = SqliteLog.open({ siteId: SITE, path: join(dataDir, SITE, 'log.sqlite') });
  const lastReadingOffset: Record<string, number> = {};
  let batch: LogRecord[] = [];
  let written = 0;
  try {
    for (const record of fleetRecords(records)) {
      if (record.kind === 'readings') lastReadingOffset[record.topic] = record.offset;
      const { kind: _kind, ...logRecord } = record;
      batch.push(logRecord);
      if (batch.length === 5000) {
        await log.replicate(batch);
        written += batch.length;
        batch = [];
        if (written % 1_000_000 === 0) context.progress(`portal: ${written.toLocaleString('en-US')} records written`);
      }
    }
    if (batch.length > 0) {
      await log.replicate(batch);
      written += batch.length;
    }
  } finally {
    await log.close();
  }
  const facts: DatasetFacts = { records: written, lastReadingOffset, buildSeconds: (performance.now() - startedAt) / 1000 };
  writeFileSync(factsFile, JSON.stringify(facts));
  return { dataDir, facts };
}

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]!;
}

/** Request times, sorted; `first` is the first request's (before anything it reads is cached). */
async function timed(count: number, request: (index: number) => Promise<void>): Promise<number[] & { first?: number }> {
  const times: number[] = [];
  for (let index = 0; index < count; index += 1) {
    const startedAt = performance.now();
    await request(index);
    times.push(performance.now() - startedAt);
  }
  return Object.assign([...times].sort((a, b) => a - b), { first: times[0] });
}

/** Folds the portal's streams from position 0, and scans them without folding (the baseline). */
async function replay(dataDir: string, context: BenchContext): Promise<{ foldRate: number; scanRate: number; records: number }> {
  const log = SqliteLog.open({ siteId: SITE, path: join(dataDir, SITE, 'log.sqlite') });
  try {
    let scanned = 0;
    let startedAt = performance.now();
    for (const stream of PORTAL_STREAMS) {
      let after = 0;
      for (;;) {
        const page = await log.readStream(stream, after, { maxRecords: 5000 });
        if (page.records.length === 0) break;
        scanned += page.records.length;
        after = page.nextPosition;
      }
    }
    const scanSeconds = (performance.now() - startedAt) / 1000;
    context.progress(`portal: stream scan of ${scanned.toLocaleString('en-US')} records in ${scanSeconds.toFixed(1)} s`);
    let folded = 0;
    const projector = new PortalProjector({ source: log, pollIntervalMs: 3_600_000 });
    projector.onRecords((records) => (folded += records.length));
    startedAt = performance.now();
    await projector.start();
    const foldSeconds = (performance.now() - startedAt) / 1000;
    projector.stop();
    context.progress(`portal: projector replay of ${folded.toLocaleString('en-US')} records in ${foldSeconds.toFixed(1)} s`);
    return { foldRate: folded / foldSeconds, scanRate: scanned / scanSeconds, records: folded };
  } finally {
    await log.close();
  }
}

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? Number.NaN : Number(match[1]) * 1024;
}

async function firstRenders(url: string, tokens: Record<string, string>, figures: Figure[], context: BenchContext): Promise<void> {
  if (!existsSync(CHROMIUM)) {
    context.progress(`portal: ${CHROMIUM} is missing (apt-get install -y chromium); first-render figures skipped`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    // Each render in a fresh context: no cached assets, as for a visitor's first page.
    const render = async (token: string | undefined): Promise<number> => {
      const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
      try {
        if (token !== undefined) await page.addInitScript(`sessionStorage.setItem('portcall-token', ${JSON.stringify(token)})`);
        const startedAt = performance.now();
        await page.goto(`${url}/portal/#/map`);
        if (token === undefined) await page.getByLabel('Access token').waitFor({ timeout: 60_000 });
        else await page.locator('#map [data-container]').first().waitFor({ timeout: 60_000 });
        return performance.now() - startedAt;
      } finally {
        await page.context().close();
      }
    };
    const median = async (token: string | undefined) => {
      const times: number[] = [];
      for (let round = 0; round < RENDERS; round += 1) times.push(await render(token));
      return percentile(times.sort((a, b) => a - b), 0.5);
    };
    const floor = await median(undefined);
    for (const [who, token] of Object.entries(tokens)) {
      const value = await median(token);
      context.progress(`portal: map first render for ${who}: ${value.toFixed(0)} ms (sign-in form ${floor.toFixed(0)} ms)`);
      figures.push({ scenario: 'portal', metric: `map page first render, ${who} (median of ${RENDERS})`, value, unit: 'ms', baseline: 'sign-in form, no data', baselineValue: floor });
    }
  } finally {
    await browser.close();
  }
}

async function run(context: BenchContext): Promise<Figure[]> {
  const records = Math.max(10_000, Math.round(BASE_RECORDS * context.scale));
  const { dataDir, facts } = await dataset(records, context);
  const figures: Figure[] = [];
  const load = () => loadavg()[0]!.toFixed(1);
  const bytes = readdirSync(join(dataDir, SITE)).reduce((sum, name) => sum + statSync(join(dataDir, SITE, name)).size, 0);
  context.progress(`portal: ${facts.records.toLocaleString('en-US')} records, ${(bytes / 1e9).toFixed(2)} GB on disk (built in ${facts.buildSeconds.toFixed(0)} s); load ${load()}`);

  const replayed = await replay(dataDir, context);
  figures.push({ scenario: 'portal', metric: `projector replay, ${replayed.records.toLocaleString('en-US')} records`, value: replayed.foldRate, unit: 'records/s', baseline: 'stream scan, no fold', baselineValue: replayed.scanRate });

  const work = mkdtempSync(join(tmpdir(), 'portcall-bench-portal-'));
  writeFileSync(join(work, 'access.key'), 'a-key-for-the-portal-bench-0123456789abcdef\n');
  writeFileSync(join(work, 'admin.token'), `${ADMIN_TOKEN}\n`);
  const httpPort = await freeLoopbackPort();
  const site = new SiteProcess(SITE, 'shore', httpPort, {
    site: SITE,
    dataDir,
    http: { host: '127.0.0.1', port: httpPort },
    ingest: { peers: [{ site: ORIGIN, token: PEER_TOKEN }] },
    access: {
      keyFile: join(work, 'access.key'),
      bootstrapTokenFile: join(work, 'admin.token'),
      readRateLimit: { requests: 1_000_000, windowSeconds: 60 },
      adminRateLimit: { requests: 1_000_000, windowSeconds: 60 },
    },
  }, work);
  try {
    const startedAt = performance.now();
    await site.start(120_000);
    const admin = async (path: string, body: unknown) => {
      const response = await fetch(`${site.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
      return (await response.json()) as Record<string, unknown>;
    };
    await admin('/v1/access/orgs', { id: 'bigblue', kind: 'carrier', name: 'Big Blue' });
    await admin('/v1/access/orgs', { id: 'toyco', kind: 'customer', name: 'ToyCo' });
    await admin('/v1/access/principals', { id: 'ops', org: 'bigblue', roles: ['carrier-ops'] });
    await admin('/v1/access/principals', { id: 'alice', org: 'toyco', roles: ['customer'] });
    for (let n = TOYCO.first; n <= TOYCO.last; n += 1) await admin('/v1/access/custody', { container: containerId(n), org: 'toyco', from: '2026-01-01T00:00:00Z' });
    const tokens = { toyco: String((await admin('/v1/access/tokens', { principal: 'alice' })).token), operations: String((await admin('/v1/access/tokens', { principal: 'ops' })).token) };

    // Caught up when the last container's latest reading is the last one written.
    const last = containerId(CONTAINERS);
    const deadline = Date.now() + 30 * 60_000;
    for (;;) {
      const response = await fetch(`${site.url}/portal/api/containers/${last}`, { headers: { authorization: `Bearer ${tokens.operations}` } });
      if (response.ok && ((await response.json()) as { latest?: { offset?: number } }).latest?.offset === facts.lastReadingOffset[last]) break;
      if (!response.ok) await response.arrayBuffer();
      if (Date.now() > deadline) throw new Error('the portal did not catch up within 30 minutes');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const caughtUpSeconds = (performance.now() - startedAt) / 1000;
    const rss = rssBytes(site.pid!);
    context.progress(`portal: site caught up ${caughtUpSeconds.toFixed(1)} s after start; RSS ${(rss / 1e6).toFixed(0)} MB; load ${load()}`);
    figures.push({ scenario: 'portal', metric: 'site start → portal caught up', value: caughtUpSeconds, unit: 's' });
    figures.push({ scenario: 'portal', metric: `site RSS, read model of ${CONTAINERS.toLocaleString('en-US')} containers`, value: rss / 1e6, unit: 'MB' });

    const get = async (path: string, token: string) => {
      const response = await fetch(`${site.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      if (response.status !== 200) throw new Error(`${path}: HTTP ${response.status}`);
      await response.arrayBuffer();
    };
    const toyco = (index: number) => containerId(TOYCO.first + ((index * 7919) % (TOYCO.last - TOYCO.first + 1)));
    const any = (index: number) => containerId(1 + ((index * 7919) % CONTAINERS));
    const floor = await timed(HISTORY_QUERIES, () => get('/healthz', tokens.toyco));
    const measured: [string, number[] & { first?: number }][] = [
      ['portal container page (whole history), ToyCo', await timed(HISTORY_QUERIES, (index) => get(`/portal/api/containers/${toyco(index)}`, tokens.toyco))],
      ['portal container page (whole history), operations', await timed(HISTORY_QUERIES, (index) => get(`/portal/api/containers/${any(index)}`, tokens.operations))],
      [
        'raw history, 500 records from a random offset, ToyCo',
        await timed(HISTORY_QUERIES, (index) => {
          const id = toyco(index);
          const from = (index * 104_729) % Math.max(1, facts.lastReadingOffset[id]! - 500);
          return get(`/v1/streams/containers/topics/${id}/records?from=${from}&maxRecords=500`, tokens.toyco);
        }),
      ],
      // Whole-fleet answers: their cost grows with the containers a visitor may see.
      ['map data (fleet), ToyCo', await timed(FLEET_QUERIES, () => get('/portal/api/fleet', tokens.toyco))],
      [`map data (fleet), operations, ${CONTAINERS.toLocaleString('en-US')} containers`, await timed(FLEET_QUERIES, () => get('/portal/api/fleet', tokens.operations))],
      [`container list, operations, ${CONTAINERS.toLocaleString('en-US')} containers`, await timed(FLEET_QUERIES, () => get('/portal/api/containers', tokens.operations))],
    ];
    // Pages read series records back from the log: what the site holds once they have.
    const rssAfter = rssBytes(site.pid!);
    context.progress(`portal: site RSS after the queries ${(rssAfter / 1e6).toFixed(0)} MB`);
    figures.push({ scenario: 'portal', metric: 'site RSS after the history and map queries', value: rssAfter / 1e6, unit: 'MB' });
    for (const [what, times] of measured) {
      context.progress(`portal: ${what}: p50 ${percentile(times, 0.5).toFixed(1)} ms, p99 ${percentile(times, 0.99).toFixed(1)} ms, first ${times.first?.toFixed(1)} ms; load ${load()}`);
      figures.push({ scenario: 'portal', metric: `${what}, p50`, value: percentile(times, 0.5), unit: 'ms', baseline: '/healthz', baselineValue: percentile(floor, 0.5) });
      figures.push({ scenario: 'portal', metric: `${what}, p99${what.startsWith('map') || what.startsWith('container list') ? '' : ' (target ≤ 50 ms)'}`, value: percentile(times, 0.99), unit: 'ms', baseline: '/healthz', baselineValue: percentile(floor, 0.99) });
    }
    await firstRenders(site.url, tokens, figures, context);
  } finally {
    await site.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return figures;
}

export const portalScenario: Scenario = {
  name: 'portal',
  description: 'Portal at 10 M records: projector replay vs a plain scan, history query p50/p99 vs /healthz, map first render vs the sign-in form',
  run,
};
