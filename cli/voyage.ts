/**
 * The voyage of the product brief (DESIGN.md) as a demo: five sites as real processes on this machine — ship
 * AURORA (`portcall edge`: gateway, log, detectors, links) and the shore sites TOKYO,
 * SINGAPORE, SYDNEY and HQ (`portcall shore`) — with Tokyo↔Singapore and Singapore↔Sydney
 * replicating both ways and every port replicating to HQ; the fleet simulation publishing
 * to AURORA's gateway, accelerated; and the ship's links following the voyage:
 *
 * - berthed at a port: the link to that port is up (port Wi-Fi);
 * - at sea within 150 nm of a port: that link is metered (coastal: alerts only);
 * - at sea: the satellite link to HQ is metered all along (alerts only);
 * - the ship's links to the ports go through the fault proxy; at Singapore it drops the
 *   transfer twice, and mid-voyage the ship's process is killed -9 and restarted.
 *
 * It ends by checking what the voyage promises: every site holds identical records at
 * identical offsets (per-topic hashes), Y07's overboard alert reached Sydney and HQ, and how
 * fast. Composition root: it wires processes, proxies and the emulator, nothing else.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetEmulator } from '../devices/emulator/index.js';
import { buildTimeline, voyageScenario, type VoyageTimeline } from '../devices/fleet/index.js';
import { distanceNm, portByCode } from '../devices/sea-lanes/index.js';
import { FaultProxy } from '../tools/fault-proxy/index.js';
import { freeLoopbackPort } from '../tools/net/index.js';
import { verifySites } from './verify-command.js';
import { SiteProcess } from './voyage-sites.js';

const SHIP = 'AURORA';
const PORT_SITES: Record<string, string> = { TOKYO: 'JPTYO', SINGAPORE: 'SGSIN', SYDNEY: 'AUSYD' };
const SHORE_SITES = ['TOKYO', 'SINGAPORE', 'SYDNEY', 'HQ'] as const;
/** Shore replication: ports both ways along the route, every port to headquarters. */
const SHORE_LINKS: readonly (readonly [string, string])[] = [
  ['TOKYO', 'SINGAPORE'],
  ['SINGAPORE', 'TOKYO'],
  ['SINGAPORE', 'SYDNEY'],
  ['SYDNEY', 'SINGAPORE'],
  ['TOKYO', 'HQ'],
  ['SINGAPORE', 'HQ'],
  ['SYDNEY', 'HQ'],
  // Access is managed at headquarters; its records (and custody, in manifests) go to every port.
  ['HQ', 'TOKYO'],
  ['HQ', 'SINGAPORE'],
  ['HQ', 'SYDNEY'],
];
/** What headquarters sends the ports: the access records and the custody it assigns. */
const HQ_STREAMS = ['access', 'manifests'];
const COASTAL_RANGE_NM = 150;
/** Links between sites on one machine: notice a dead connection fast, batch little. */
const QUICK_LINK = { connectTimeoutMs: 2000, requestTimeoutMs: 10_000, stallTimeoutMs: 3000, retryInitialMs: 50, retryMaxMs: 1000, maxBatchAgeMs: 100 };

export interface VoyageOptions {
  /** Simulated seconds per wall-clock second; 10,000 sails the 18.5 days in about 160 s. */
  readonly acceleration: number;
  /** Kill -9 the ship at sea and drop the Singapore transfer twice. */
  readonly faults: boolean;
  readonly dataDir?: string;
  readonly out: NodeJS.WriteStream;
  /** After the voyage and its checks, keep the sites running until stopped. */
  readonly keepRunning?: boolean;
}

export interface VoyageReport {
  readonly ok: boolean;
  readonly records: Record<string, number>;
  readonly differences: readonly string[];
  readonly alertLatencyMs: Record<string, number | undefined>;
  readonly faults: readonly string[];
  readonly dataDir: string;
}

export interface VoyageHandle {
  readonly sites: ReadonlyMap<string, SiteProcess>;
  readonly done: Promise<VoyageReport>;
  stop(): Promise<void>;
}

function token(from: string, to: string): string {
  return `${from.toLowerCase()}-${to.toLowerCase()}-${randomBytes(12).toString('hex')}`;
}

interface LinkView {
  readonly name: string;
  readonly state: string;
  readonly lag: readonly { readonly stream: string; readonly records: number }[];
}

async function linkViews(site: SiteProcess): Promise<LinkView[]> {
  return (await site.getJson<{ links: LinkView[] }>('/v1/links')).links;
}

const lagOf = (view: LinkView | undefined) => view?.lag.reduce((sum, entry) => sum + entry.records, 0) ?? 0;

/** Records a site holds, by paging through its per-topic summaries. */
async function recordsHeld(site: SiteProcess, token: string | undefined): Promise<number> {
  const listing = await site.getJson<{ streams: { stream: string }[] }>('/v1/summaries', token);
  let total = 0;
  for (const { stream } of listing.streams) {
    let after: string | null = '';
    while (after !== null) {
      const page: { topics: { records: number }[]; after: string | null } = await site.getJson(`/v1/summaries/${stream}?after=${encodeURIComponent(after)}&maxTopics=5000`, token, 120_000);
      for (const topic of page.topics) total += topic.records;
      after = page.after;
    }
  }
  return total;
}

function desiredStates(timeline: VoyageTimeline, simTimeMs: number): Record<string, 'up' | 'metered' | 'down'> {
  const where = timeline.ships.get(SHIP)!.whereabouts(simTimeMs);
  const states: Record<string, 'up' | 'metered' | 'down'> = { HQ: 'metered' };
  for (const [site, code] of Object.entries(PORT_SITES)) {
    if (where.kind === 'berthed') states[site] = where.port.code === code ? 'up' : 'down';
    else states[site] = distanceNm(where.position, portByCode(code)) <= COASTAL_RANGE_NM ? 'metered' : 'down';
  }
  return states;
}

/** The voyage's organisations and people, as data at HQ; returns each sign-in's token. */
async function setUpAccess(hq: SiteProcess, bootstrapToken: string, timeline: VoyageTimeline): Promise<Record<string, string>> {
  const call = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
    const response = await fetch(`${hq.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bootstrapToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    if (!response.ok) throw new Error(`HQ refused ${path}: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()) as Record<string, unknown>;
  };
  const orgs = [
    { id: 'bigblue', kind: 'carrier', name: 'Big Blue (carrier)' },
    { id: 'toyco', kind: 'customer', name: 'ToyCo' },
    { id: 'redco', kind: 'customer', name: 'RedCo' },
    { id: 'duckmart', kind: 'consignee', name: 'DuckMart Sydney' },
    { id: 'sydney-port', kind: 'port-authority', name: 'Port Authority of Sydney', port: 'AUSYD' },
  ];
  for (const org of orgs) await call('/v1/access/orgs', org);
  const people = [
    { id: 'ops', org: 'bigblue', roles: ['carrier-ops'] },
    { id: 'toyco', org: 'toyco', roles: ['customer'] },
    { id: 'redco', org: 'redco', roles: ['customer'] },
    { id: 'duckmart', org: 'duckmart', roles: ['consignee'] },
    { id: 'sydney-port', org: 'sydney-port', roles: ['port-authority'] },
  ];
  for (const person of people) await call('/v1/access/principals', person);
  // Custody from the bookings: each customer sees its containers from the start of the voyage.
  const from = new Date(timeline.startMs - 86_400_000).toISOString();
  for (const container of timeline.containers) {
    const org = container.owner === 'ToyCo' ? 'toyco' : container.owner === 'RedCo' ? 'redco' : undefined;
    if (org !== undefined) await call('/v1/access/custody', { container: container.id, org, as: 'owner', from });
    // DuckMart in Sydney receives ToyCo's containers unloaded there: a consignee's coarse view.
    if (org === 'toyco' && container.moves.at(-1)?.unload.code === 'AUSYD') await call('/v1/access/custody', { container: container.id, org: 'duckmart', as: 'consignee', from });
  }
  const tokens: Record<string, string> = {};
  for (const person of people) tokens[person.id] = String((await call('/v1/access/tokens', { principal: person.id })).token);
  return tokens;
}

/** What each audience may read at a site, checked through its read API: [description, passed]. */
async function accessChecks(site: SiteProcess, tokens: Record<string, string>): Promise<[string, boolean][]> {
  const status = async (path: string, token: string | undefined) => {
    const response = await fetch(`${site.url}${path}`, {
      signal: AbortSignal.timeout(30_000),
      ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
    });
    await response.arrayBuffer();
    return response.status;
  };
  const latest = (stream: string, topic: string) => `/v1/streams/${stream}/topics/${topic}/latest`;
  const checks: [string, string, string | undefined, number][] = [
    ['ToyCo reads Y07 and its overboard alert', latest('alerts', 'Y07'), tokens.toyco, 200],
    ['ToyCo reads Y01’s readings', latest('containers', 'Y01'), tokens.toyco, 200],
    ['ToyCo finds nothing of RedCo’s R01', latest('containers', 'R01'), tokens.toyco, 404],
    ['ToyCo finds nothing of the ships stream', latest('ships', 'AURORA'), tokens.toyco, 404],
    ['RedCo reads R01', latest('containers', 'R01'), tokens.redco, 200],
    ['RedCo finds nothing of Y07', latest('alerts', 'Y07'), tokens.redco, 404],
    ['RedCo finds nothing of Y07’s readings', latest('containers', 'Y07'), tokens.redco, 404],
    ['no token finds nothing at all', latest('containers', 'Y01'), undefined, 404],
    ['carrier operations read the ship', latest('ships', 'AURORA'), tokens.ops, 200],
  ];
  const results: [string, boolean][] = [];
  for (const [what, path, token, expected] of checks) results.push([what, (await status(path, token)) === expected]);
  return results;
}

export async function runVoyage(options: VoyageOptions): Promise<VoyageHandle> {
  const { out } = options;
  const temporaryDir = options.dataDir === undefined ? mkdtempSync(join(tmpdir(), 'portcall-voyage-')) : undefined;
  const dataDir = options.dataDir ?? temporaryDir!;
  // Reefer monitoring reports every few minutes; every 5 simulated minutes keeps the voyage's
  // 18.5 days at about 100,000 records, so the demo's sites replicate them in seconds.
  const scenario = { ...voyageScenario(), readingIntervalS: 300, shipReportIntervalS: 300 };
  const timeline = buildTimeline(scenario);
  const stoppers: (() => Promise<void>)[] = [];
  let stopped = false;
  let removeData = true;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const stopOne of stoppers.reverse()) await stopOne().catch(() => undefined);
    if (temporaryDir !== undefined && removeData) rmSync(temporaryDir, { recursive: true, force: true });
  };

  const sites = new Map<string, SiteProcess>();
  try {
    const httpPorts = new Map<string, number>();
    for (const name of [...SHORE_SITES, SHIP]) httpPorts.set(name, await freeLoopbackPort());
    const mqttPort = await freeLoopbackPort();
    const linkTokens = new Map<string, string>();
    const tokenOf = (from: string, to: string) => {
      const key = `${from}>${to}`;
      if (!linkTokens.has(key)) linkTokens.set(key, token(from, to));
      return linkTokens.get(key)!;
    };
    const shipLinks: [string, string][] = [...Object.keys(PORT_SITES), 'HQ'].map((to) => [SHIP, to]);
    const allLinks = [...SHORE_LINKS, ...shipLinks];

    // The ship's links to the ports go through fault proxies (the port Wi-Fi that drops).
    const accessKeyFile = join(dataDir, 'access.key');
    writeFileSync(accessKeyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    const bootstrapTokenFile = join(dataDir, 'bootstrap.token');
    const bootstrapToken = randomBytes(32).toString('hex');
    writeFileSync(bootstrapTokenFile, bootstrapToken, { mode: 0o600 });
    const proxies = new Map<string, FaultProxy>();
    for (const site of Object.keys(PORT_SITES)) {
      const proxy = await FaultProxy.start({ targetPort: httpPorts.get(site)! });
      proxies.set(site, proxy);
      stoppers.push(() => proxy.close());
    }

    for (const name of SHORE_SITES) {
      const peers = allLinks.filter(([, to]) => to === name).map(([from]) => ({ site: from, token: tokenOf(from, name) }));
      const links = SHORE_LINKS.filter(([from]) => from === name).map(([, to]) => ({
        name: to,
        url: `http://127.0.0.1:${httpPorts.get(to)!}`,
        token: tokenOf(name, to),
        ...(name === 'HQ' ? { streams: HQ_STREAMS } : {}),
        ...QUICK_LINK,
      }));
      // Every shore site enforces access with the shared key; only HQ takes the bootstrap token.
      const access = { keyFile: accessKeyFile, ...(name === 'HQ' ? { bootstrapTokenFile } : {}), readRateLimit: { requests: 100_000, windowSeconds: 60 } };
      const site = new SiteProcess(name, 'shore', httpPorts.get(name)!, { site: name, dataDir, http: { port: httpPorts.get(name)! }, ingest: { peers }, links, access }, dataDir);
      sites.set(name, site);
      stoppers.push(() => site.stop());
    }
    const controlToken = randomBytes(16).toString('hex');
    const states = desiredStates(timeline, timeline.startMs);
    const ship = new SiteProcess(
      SHIP,
      'edge',
      httpPorts.get(SHIP)!,
      {
        site: SHIP,
        dataDir,
        http: { port: httpPorts.get(SHIP)! },
        mqtt: { port: mqttPort, auth: { allowAnonymous: true } },
        // Readings every 5 minutes: silent means two missed readings.
        detectors: { silenceMinutes: 11 },
        links: shipLinks.map(([, to]) => ({
          name: to,
          url: to === 'HQ' ? `http://127.0.0.1:${httpPorts.get(to)!}` : proxies.get(to)!.url(),
          token: tokenOf(SHIP, to),
          controlToken,
          state: states[to],
          ...QUICK_LINK,
        })),
      },
      dataDir,
    );
    sites.set(SHIP, ship);
    stoppers.push(() => ship.stop());

    out.write(`voyage: starting TOKYO, SINGAPORE, SYDNEY, HQ and AURORA in ${dataDir}\n`);
    await Promise.all(SHORE_SITES.map((name) => sites.get(name)!.start()));
    await ship.start();
    for (const [name, site] of sites) out.write(`  ${name.padEnd(9)} ${site.url}\n`);
    const tokens = await setUpAccess(sites.get('HQ')!, bootstrapToken, timeline);
    out.write(
      `\nportal: ${sites.get('HQ')!.url}/portal/ (any shore site serves one); sign in with a token:\n` +
        Object.entries(tokens)
          .map(([who, token]) => `  ${who.padEnd(12)} ${token}`)
          .join('\n') +
        '\n\n',
    );

    const emulator = await FleetEmulator.start({ scenario, brokerUrl: `mqtt://127.0.0.1:${mqttPort}`, acceleration: options.acceleration, shards: 1, clientIdPrefix: 'voyage', onlyAboard: SHIP });
    stoppers.push(async () => {
      await emulator.stop(2000);
    });
    const done = driveSafely({ options, timeline, sites, ship, proxies, emulator, controlToken, applied: { ...states }, dataDir, tokens }).then((report) => {
      // A voyage that did not hold keeps its sites' data and logs for a look.
      if (!report.ok) removeData = false;
      return report;
    });
    return { sites, done, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

interface DriveContext {
  readonly options: VoyageOptions;
  readonly timeline: VoyageTimeline;
  readonly sites: ReadonlyMap<string, SiteProcess>;
  readonly ship: SiteProcess;
  readonly proxies: ReadonlyMap<string, FaultProxy>;
  readonly emulator: FleetEmulator;
  readonly controlToken: string;
  readonly applied: Record<string, string>;
  readonly dataDir: string;
  /** Sign-ins by principal (the shore sites enforce access). */
  readonly tokens: Record<string, string>;
}

async function setLinkState(context: DriveContext, link: string, state: string): Promise<void> {
  const response = await fetch(`${context.ship.url}/v1/links/${link}/state`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${context.controlToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ state }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`AURORA refused ${link} → ${state}: HTTP ${response.status}`);
}

/** The voyage's outcome, also when something broke on the way (then it says what). */
async function driveSafely(context: DriveContext): Promise<VoyageReport> {
  try {
    return await drive(context);
  } catch (error) {
    context.options.out.write(`\nvoyage: FAILED: ${(error as Error).message}\n`);
    return { ok: false, records: {}, differences: [(error as Error).message], alertLatencyMs: {}, faults: [], dataDir: context.dataDir };
  }
}

async function drive(context: DriveContext): Promise<VoyageReport> {
  const { options, timeline, sites, ship, emulator } = context;
  const out = options.out;
  const faults: string[] = [];
  const aurora = timeline.ships.get(SHIP)!;
  const [, singaporeCall] = aurora.calls;
  const firstLeg = aurora.legs[0]!;
  const killAtMs = firstLeg.departMs + (firstLeg.arriveMs - firstLeg.departMs) * 0.45;
  const overboardAtMs = aurora.callAt('AUSYD').arriveMs - 6 * 3_600_000;
  let killed = false;
  let flapsStarted = false;
  const alertSeenAt: Record<string, number | undefined> = { AURORA: undefined, SYDNEY: undefined, HQ: undefined };
  const alertLatency: Record<string, number | undefined> = {};
  const startedAt = performance.now();
  let lastStatusAt = 0;
  let restarting: Promise<void> | undefined;
  let acceleration = options.acceleration;

  const statusLine = async (simTimeMs: number) => {
    const where = aurora.whereabouts(simTimeMs);
    const place = where.kind === 'berthed' ? `berthed at ${where.port.name}` : `at sea ${where.leg.from.name} → ${where.leg.to.name}, ${Math.round(where.position.distanceNm)}/${Math.round(where.leg.route.lengthNm)} nm`;
    let links = '';
    try {
      const views = await linkViews(ship);
      links = views.map((view) => `${view.name} ${view.state}${lagOf(view) > 0 ? ` (lag ${lagOf(view)})` : ''}`).join(', ');
    } catch {
      links = 'AURORA not answering';
    }
    const day = ((simTimeMs - timeline.startMs) / 86_400_000).toFixed(1);
    const alerts = Object.entries(alertSeenAt)
      .filter(([, at]) => at !== undefined)
      .map(([site]) => site);
    const line = `day ${day.padStart(4)}  ${new Date(simTimeMs).toISOString().slice(0, 16).replace('T', ' ')}  ${place}  |  links: ${links}${alerts.length > 0 ? `  |  Y07 overboard alert at ${alerts.join(', ')}` : ''}`;
    out.write(out.isTTY ? `\r${line.slice(0, (out.columns ?? 200) - 1)}\u001b[K` : `${line}\n`);
  };

  const pollAlert = async (site: string) => {
    if (alertSeenAt[site] !== undefined) return;
    try {
      const response = await fetch(`${sites.get(site)!.url}/v1/streams/alerts/topics/Y07/latest`, {
        signal: AbortSignal.timeout(1000),
        headers: { authorization: `Bearer ${context.tokens.ops!}` },
      });
      if (response.ok) {
        // From when the ship made the alert durable (its ingest time, same machine clock) to now.
        const alert = (await response.json()) as { ingestTime: string };
        alertSeenAt[site] = Date.now();
        alertLatency[site] = Date.now() - Date.parse(alert.ingestTime);
      }
    } catch {
      // not there yet
    }
  };

  for (;;) {
    const stats = emulator.stats();
    const simTimeMs = stats.simTimeMs;
    // Links follow the ship.
    if (restarting === undefined) {
      const wanted = desiredStates(timeline, simTimeMs);
      for (const [link, state] of Object.entries(wanted)) {
        if (context.applied[link] === state) continue;
        try {
          await setLinkState(context, link, state);
          context.applied[link] = state;
        } catch {
          // AURORA restarting; try again next round
        }
      }
    }
    // Faults.
    if (options.faults && !killed && simTimeMs >= killAtMs) {
      killed = true;
      faults.push(`kill -9 of AURORA at sea, ${new Date(simTimeMs).toISOString().slice(0, 16)} (simulated)`);
      out.write(`\nfault: kill -9 AURORA (pid ${ship.pid ?? '?'}) mid-voyage; restarting it\n`);
      restarting = ship.restart().then(async () => {
        // A restarted ship comes back with its configured link states; put them right again.
        for (const link of Object.keys(context.applied)) context.applied[link] = '';
        restarting = undefined;
      });
    }
    if (options.faults && !flapsStarted && simTimeMs >= singaporeCall!.arriveMs && aurora.whereabouts(simTimeMs).kind === 'berthed') {
      flapsStarted = true;
      const proxy = context.proxies.get('SINGAPORE')!;
      for (const afterMs of [400, 1500]) {
        setTimeout(() => {
          proxy.reset();
          faults.push(`link AURORA → SINGAPORE dropped mid-transfer (${afterMs} ms after it came up)`);
          out.write(`\nfault: link AURORA → SINGAPORE dropped mid-transfer\n`);
        }, afterMs);
      }
    }
    if (simTimeMs >= overboardAtMs) await Promise.all(['SYDNEY', 'HQ', 'AURORA'].map(pollAlert));
    // In port the link has hours of simulated time but only seconds of wall time: hold the
    // clock nearly still until the ship's backlog to that port has drained, as it would in hours.
    const where = aurora.whereabouts(simTimeMs);
    if (where.kind === 'berthed' && restarting === undefined) {
      const site = Object.entries(PORT_SITES).find(([, code]) => code === where.port.code)?.[0];
      let backlog = 0;
      try {
        backlog = site === undefined ? 0 : lagOf((await linkViews(ship)).find((view) => view.name === site));
      } catch {
        backlog = 1;
      }
      const wanted = backlog > 500 ? Math.min(options.acceleration, 120) : options.acceleration;
      if (wanted !== acceleration) {
        acceleration = wanted;
        emulator.setAcceleration(wanted);
      }
    } else if (acceleration !== options.acceleration) {
      acceleration = options.acceleration;
      emulator.setAcceleration(acceleration);
    }
    if (performance.now() - lastStatusAt > 1000) {
      lastStatusAt = performance.now();
      await statusLine(simTimeMs);
    }
    if (stats.finished && restarting === undefined) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await emulator.stop(10_000);
  out.write(`\nvoyage: the fleet has finished (${((performance.now() - startedAt) / 1000).toFixed(0)} s); waiting for every link to drain…\n`);

  // Quiescence: the ship's link to Sydney (berthed) and every shore link have nothing left.
  const deadline = Date.now() + 180_000;
  for (;;) {
    await Promise.all(['AURORA', 'SYDNEY', 'HQ'].map(pollAlert));
    let pending = 0;
    try {
      pending += lagOf((await linkViews(ship)).find((view) => view.name === 'SYDNEY'));
      // Every shore site that forwards (HQ only receives).
      for (const name of new Set(SHORE_LINKS.map(([from]) => from))) for (const view of await linkViews(sites.get(name)!)) pending += lagOf(view);
    } catch {
      pending += 1;
    }
    if (pending === 0) break;
    if (Date.now() > deadline) {
      out.write(`voyage: links still had ${pending} records to send after 180 s\n`);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }

  // The shore sites compare every stream carrier operations may see; the ship (which holds no
  // access records or custody) compares what it wrote.
  const shoreUrls = SHORE_SITES.map((name) => sites.get(name)!.url);
  const opsToken = context.tokens.ops!;
  const shores = await verifySites(shoreUrls, { token: opsToken });
  const shipToShore = await verifySites([ship.url, sites.get('HQ')!.url], { token: opsToken, streams: ['containers', 'ships', 'alerts'] });
  const report = { ...shores, differences: [...shores.differences, ...shipToShore.differences] };
  const records: Record<string, number> = {};
  for (const [name, site] of sites) records[name] = await recordsHeld(site, opsToken);
  const checks = await accessChecks(sites.get('HQ')!, context.tokens);
  const alertLatencyMs: Record<string, number | undefined> = {};
  for (const site of ['SYDNEY', 'HQ']) alertLatencyMs[site] = alertLatency[site];
  const ok = report.differences.length === 0 && alertLatencyMs.SYDNEY !== undefined && alertLatencyMs.HQ !== undefined && checks.every(([, passed]) => passed);
  out.write('\nvoyage: verification\n');
  for (const [name, count] of Object.entries(records)) out.write(`  ${name.padEnd(9)} ${count} records\n`);
  out.write(
    report.differences.length === 0
      ? `  all ${report.sites.length} shore sites hold identical records at identical offsets: ${report.topics} topics in ${report.streams} streams compared by content hash; AURORA's containers, ships and alerts (${shipToShore.topics} topics) identical at HQ\n`
      : `  ${report.differences.length} topics differ:\n${report.differences.slice(0, 20).map((line) => `    ${line}`).join('\n')}\n`,
  );
  for (const site of ['SYDNEY', 'HQ']) {
    const latency = alertLatencyMs[site];
    out.write(`  Y07 overboard alert at ${site}: ${latency === undefined ? 'NOT RECEIVED' : `within ${(latency / 1000).toFixed(1)} s of being made durable on board (wall clock, polled every 200 ms)`}\n`);
  }
  out.write(`  access checks at HQ: ${checks.filter(([, passed]) => passed).length} of ${checks.length} passed\n`);
  for (const [what, passed] of checks) out.write(`    ${passed ? 'ok    ' : 'FAILED'} ${what}\n`);
  for (const fault of faults) out.write(`  fault injected: ${fault}\n`);
  const where = ok && options.dataDir === undefined ? 'the sites\' data and logs go when the demo stops (--data-dir keeps them)' : `the sites' data and logs are in ${context.dataDir}`;
  out.write(`  ${ok ? 'OK' : 'FAILED'}: the voyage ${ok ? 'tells its story' : 'did not hold'}; ${where}\n`);
  return { ok, records, differences: report.differences, alertLatencyMs, faults, dataDir: context.dataDir };
}
