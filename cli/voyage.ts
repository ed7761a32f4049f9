/**
 * The voyage of the product brief (DESIGN.md) as a demo: five sites as real processes on this machine — ship
 * AURORA (`portcall edge`: gateway, log, detectors, links) and the shore sites TOKYO,
 * SINGAPORE, SYDNEY and HQ (`portcall shore`) — with Tokyo↔Singapore and Singapore↔Sydney
 * replicating both ways and every port replicating to HQ; the fleet simulation publishing
 * to AURORA's gateway, accelerated; and the ship's links following the voyage:
 *
 * The scenario (default: the voyage of DESIGN.md, `voyageScenario()`; or a YAML file) says
 * everything that happens: the fleet, the port calls, the ship's link windows (docked: up;
 * satellite: metered, alerts and summary only; none: down) and the faults (a kill -9 of the
 * ship's gateway at sea, a port link dropped mid-transfer). The ship's links to the ports go
 * through fault proxies.
 *
 * Port calls drive handoffs, as a terminal operating system would: when a container is
 * unloaded at a port with a site, the demo asks the ship (`POST /v1/streams/containers/topics/
 * <id>/handoff`) to hand the container's topic to that port's site once everything the ship
 * heard of it is durable aboard; from then on the container reports to the port's gateway (a
 * second emulator plays the terminal's devices), which stores its readings once the handoff
 * has reached it (until then it refuses them unacknowledged, and the devices send them again).
 *
 * It ends by checking what the voyage promises, step by step (voyage-checks.ts). Composition
 * root: it wires processes, proxies and the emulators, nothing else.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PortcallError } from '../core/index.js';
import { HANDOFF_HEADER } from '../core/writership.js';
import { FleetEmulator } from '../devices/emulator/index.js';
import { buildTimeline, linkStateOf, voyageScenario, type Scenario, type VoyageTimeline } from '../devices/fleet/index.js';
import { distanceNm, portByCode } from '../devices/sea-lanes/index.js';
import { FaultProxy } from '../tools/fault-proxy/index.js';
import { freeLoopbackPort } from '../tools/net/index.js';
import { verifySites } from './verify-command.js';
import { checkSteps, readTopic, shipTopicsArePrefixes, type RecordJson, type StepCheck, type VoyageObservations } from './voyage-checks.js';
import { SiteProcess } from './voyage-sites.js';

/**
 * Longest wall time the ship waits in port, an hour before sailing, for the port to hold the
 * handoff records of the containers unloaded there. A handoff record the port does not hold when
 * the ship sails never reaches it (the port link is down at sea), and the port then refuses the
 * container's ashore readings for the rest of the voyage (twice in CI: the fleet's clock stopped
 * at day 9.7). So the ship never sails without them: past this bound the voyage fails, saying
 * which records the port lacks, instead of sailing on into a stall.
 */
const SAILING_HOLD_MAX_MS = 300_000;
/**
 * Once the port holds the handoff records, how long the ship also waits for the rest of its
 * backlog to that port (what step 3 checks: nothing left when it sailed). Past it the ship sails
 * and the backlog left is noted (and that check fails), but the voyage goes on.
 */
const SAILING_BACKLOG_MAX_MS = 240_000;
/** How often, while the ship is held in port, the port is asked whether it holds the handoff records. */
const HANDOFF_ASK_EVERY_MS = 1000;
/**
 * Longest wall time a terminal's devices may have messages unacknowledged without any being
 * acknowledged while the port holds every handoff record made to it: a port that refuses a
 * container's readings then would otherwise have its devices resend them for ever and the
 * voyage never finish. (Before the handoff records arrive the refusals are expected.)
 */
const TERMINAL_STALL_MAX_MS = 120_000;
/**
 * Longest wall time the ship's gateway may leave the fleet's messages unacknowledged without
 * acknowledging any (outside a restart of the ship). The emulator never runs its clock ahead
 * of the gateway, so a gateway that stops acknowledging stops the fleet's clock, and with it
 * every port call and every other bound of the voyage but the last one (VOYAGE_MAX_MS).
 */
const FLEET_STALL_MAX_MS = 90_000;
/**
 * Retention aboard (DESIGN step 7): the ship's containers readings expire after this long (wall
 * time, as the log's TTL runs), so that in a voyage of a few minutes the ship removes what it
 * has forwarded and keeps what it has not. "Forwarded" is the log's rule (mustForward): every
 * link that carries the stream has it past its cursor (docs/LOG.md, Retention).
 */
const SHIP_CONTAINERS_TTL_HOURS = 0.01;
/** The whole voyage, start to verification, in wall time: past it the demo fails instead of running on. */
const VOYAGE_MAX_MS = 30 * 60_000;

/** The voyage could not go on: a stalled port, a handoff that never arrived. */
export class VoyageStalledError extends PortcallError {
  constructor(message: string) {
    super('VOYAGE_STALLED', message);
  }
}
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
/**
 * ToyCo's own endpoint (DESIGN step 1: "Tokyo passes ToyCo's subset to ToyCo's own endpoint"): a
 * site of ToyCo's fed by Tokyo over a link filtered by the access policy as ToyCo's service
 * principal sees it (links[].filter.principal), taking Tokyo as a sparse sender (records at
 * Tokyo's offsets, with gaps where a record is not ToyCo's to see).
 */
const CUSTOMER_ENDPOINT = { site: 'TOYCO', from: 'TOKYO', principal: 'toyco-endpoint', org: 'toyco', streams: ['alerts', 'manifests', 'containers'] } as const;
/** What headquarters sends the ports: the access records and the custody it assigns. */
const HQ_STREAMS = ['access', 'manifests'];
const STEP_NAMES = ['', 'Tokyo, docked, link up', 'At sea', 'Singapore', 'Singapore → Sydney', 'Overboard', 'Sydney', 'Afterwards'];
/** Links between sites on one machine: notice a dead connection fast, batch little. */
const QUICK_LINK = { connectTimeoutMs: 2000, requestTimeoutMs: 10_000, stallTimeoutMs: 3000, retryInitialMs: 50, retryMaxMs: 1000, maxBatchAgeMs: 100 };

export interface VoyageOptions {
  /** Simulated seconds per wall-clock second; 10,000 sails the 18.5 days in about 160 s. */
  readonly acceleration: number;
  /** Inject the scenario's faults (the voyage's: kill -9 the ship at sea, drop the Singapore transfer twice). */
  readonly faults: boolean;
  /** Default: the voyage of DESIGN.md. Its ship links must name the demo's shore sites. */
  readonly scenario?: Scenario;
  readonly dataDir?: string;
  readonly out: NodeJS.WriteStream;
  /** After the voyage and its checks, keep the sites running until stopped. */
  readonly keepRunning?: boolean;
  /**
   * Put the shore sites' logs on Apache Kafka: those without an MQTT gateway (a Kafka-backed site
   * runs none yet, and the ports where containers are unloaded need one for the terminals' devices).
   * `bootstrap`: a running broker (host:port); without it the demo starts one.
   */
  readonly kafka?: { readonly bootstrap?: string };
}

export interface VoyageReport {
  readonly ok: boolean;
  readonly records: Record<string, number>;
  readonly differences: readonly string[];
  readonly alertLatencyMs: Record<string, number | undefined>;
  readonly faults: readonly string[];
  readonly steps: readonly StepCheck[];
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

/**
 * Records a site holds, by paging through its per-topic summaries; streams already summarised
 * (`known`) are counted from those, since a summary reads and hashes every record of its topic.
 */
async function recordsHeld(site: SiteProcess, token: string | undefined, known: ReadonlyMap<string, ReadonlyMap<string, { records: number }>> = new Map()): Promise<number> {
  const listing = await site.getJson<{ streams: { stream: string }[] }>('/v1/summaries', token);
  let total = 0;
  for (const { stream } of listing.streams) {
    const summarised = known.get(stream);
    if (summarised !== undefined) {
      for (const topic of summarised.values()) total += topic.records;
      continue;
    }
    let after: string | null = '';
    while (after !== null) {
      const page: { topics: { records: number }[]; after: string | null } = await site.getJson(`/v1/summaries/${stream}?after=${encodeURIComponent(after)}&maxTopics=5000`, token, 120_000);
      for (const topic of page.topics) total += topic.records;
      after = page.after;
    }
  }
  return total;
}

/** Runs `work` over the items, at most `concurrency` at once (reads from several sites overlap). */
async function inPool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next]!;
        next += 1;
        await work(item);
      }
    }),
  );
}

type ShipLink = Scenario['links'][number];

/** Each of the ship's links' state at a moment, from the scenario's link windows. */
function desiredStates(timeline: VoyageTimeline, ship: string, links: readonly ShipLink[], simTimeMs: number): Record<string, 'up' | 'metered' | 'down'> {
  const where = timeline.ships.get(ship)!.whereabouts(simTimeMs);
  const states: Record<string, 'up' | 'metered' | 'down'> = {};
  for (const link of links) {
    let window = link.elsewhere;
    if (link.port !== undefined) {
      if (where.kind === 'berthed' && where.port.code === link.port) window = link.docked;
      else if (where.kind === 'at-sea' && distanceNm(where.position, portByCode(link.port)) <= link.coastalRangeNm) window = link.coastal;
    }
    states[link.site] = linkStateOf(window);
  }
  return states;
}

/** A link none of whose windows is docked (up): it only ever sends alerts, or nothing. */
function neverUp(link: ShipLink): boolean {
  const windows = link.port === undefined ? [link.elsewhere] : [link.docked, link.coastal, link.elsewhere];
  return windows.every((window) => linkStateOf(window) !== 'up');
}

/** The demo's fixed sites against the scenario: one ship, links only to the demo's shore sites. */
function demoLinks(scenario: Scenario): { ship: string; links: ShipLink[] } {
  const ship = scenario.ships[0]!.id;
  if (scenario.ships.length !== 1) throw new PortcallError('BAD_SCENARIO', `demo: the voyage demo sails one ship; the scenario has ${scenario.ships.length}`);
  const links = scenario.links.filter((link) => link.ship === ship);
  links.forEach((link) => {
    if (!(SHORE_SITES as readonly string[]).includes(link.site)) throw new PortcallError('BAD_SCENARIO', `demo: links.${scenario.links.indexOf(link)}.site: ${link.site} is not one of the demo's shore sites (${SHORE_SITES.join(', ')})`);
  });
  if (links.length === 0) throw new PortcallError('BAD_SCENARIO', `demo: links: the scenario gives ${ship} no links; the demo's shore sites are ${SHORE_SITES.join(', ')}`);
  return { ship, links };
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
  // Each kind at once (a principal names its organisation, custody its organisation): HQ commits them together.
  await Promise.all(orgs.map((org) => call('/v1/access/orgs', org)));
  const people = [
    { id: 'ops', org: 'bigblue', roles: ['carrier-ops'] },
    { id: 'toyco', org: 'toyco', roles: ['customer'] },
    { id: 'redco', org: 'redco', roles: ['customer'] },
    { id: 'duckmart', org: 'duckmart', roles: ['consignee'] },
    { id: 'sydney-port', org: 'sydney-port', roles: ['port-authority'] },
  ];
  // ToyCo's endpoint reads as ToyCo's service principal: what it may see is what Tokyo passes it.
  await Promise.all([...people, { id: CUSTOMER_ENDPOINT.principal, org: CUSTOMER_ENDPOINT.org, kind: 'service', roles: ['customer'] }].map((person) => call('/v1/access/principals', person)));
  // Custody from the bookings: each customer sees its containers from the start of the voyage.
  const from = new Date(timeline.startMs - 86_400_000).toISOString();
  const custody: Record<string, unknown>[] = [];
  for (const container of timeline.containers) {
    const org = container.owner === 'ToyCo' ? 'toyco' : container.owner === 'RedCo' ? 'redco' : undefined;
    if (org !== undefined) custody.push({ container: container.id, org, as: 'owner', from });
    // DuckMart in Sydney receives ToyCo's containers unloaded there: a consignee's coarse view.
    if (org === 'toyco' && container.moves.at(-1)?.unload.code === 'AUSYD') custody.push({ container: container.id, org: 'duckmart', as: 'consignee', from });
  }
  await Promise.all(custody.map((window) => call('/v1/access/custody', window)));
  const issued = await Promise.all(people.map(async (person) => [person.id, String((await call('/v1/access/tokens', { principal: person.id })).token)] as const));
  return Object.fromEntries(issued);
}

/** What each audience may read at a site, checked through its read API: [description, passed]. */
async function accessChecks(site: SiteProcess, tokens: Record<string, string>, lost: string): Promise<[string, boolean][]> {
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
    [`ToyCo reads ${lost} and its overboard alert`, latest('alerts', lost), tokens.toyco, 200],
    ['ToyCo reads Y01’s readings', latest('containers', 'Y01'), tokens.toyco, 200],
    ['ToyCo finds nothing of RedCo’s R01', latest('containers', 'R01'), tokens.toyco, 404],
    ['ToyCo finds nothing of the ships stream', latest('ships', 'AURORA'), tokens.toyco, 404],
    ['RedCo reads R01', latest('containers', 'R01'), tokens.redco, 200],
    [`RedCo finds nothing of ${lost}`, latest('alerts', lost), tokens.redco, 404],
    [`RedCo finds nothing of ${lost}’s readings`, latest('containers', lost), tokens.redco, 404],
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
  mkdirSync(dataDir, { recursive: true });
  // Reefer monitoring reports every few minutes; every 5 simulated minutes keeps the voyage's
  // 18.5 days at about 100,000 records, so the demo's sites replicate them in seconds.
  const scenario = options.scenario ?? { ...voyageScenario(), readingIntervalS: 300, shipReportIntervalS: 300 };
  const { ship: SHIP, links: scenarioLinks } = demoLinks(scenario);
  const timeline = buildTimeline(scenario);
  /** Port code → the site there, and back. */
  const portSites = new Map(scenarioLinks.filter((link) => link.port !== undefined).map((link) => [link.port!, link.site]));
  // Ports where containers are unloaded: their gateways hear those containers ashore.
  const unloadPorts = new Set(timeline.containers.flatMap((container) => container.moves.filter((move) => move.ship === SHIP && portSites.has(move.unload.code)).map((move) => move.unload.code)));
  const handoffToken = randomBytes(24).toString('hex');
  /**
   * What to stop, by stage: the devices first, then every site at once (each SIGTERM with its own
   * grace: one after the other they took tens of seconds on a loaded machine), then the proxies,
   * then a broker the demo started.
   */
  const stoppers: { stage: 'broker' | 'proxies' | 'sites' | 'devices'; stop: () => Promise<void> }[] = [];
  let stopped = false;
  let removeData = true;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const stage of ['devices', 'sites', 'proxies', 'broker'] as const) {
      await Promise.all(stoppers.filter((stopper) => stopper.stage === stage).map((stopper) => stopper.stop().catch(() => undefined)));
    }
    if (temporaryDir !== undefined && removeData) rmSync(temporaryDir, { recursive: true, force: true });
  };

  const sites = new Map<string, SiteProcess>();
  try {
    let kafkaBrokers: string[] | undefined;
    if (options.kafka !== undefined) {
      if (options.kafka.bootstrap !== undefined) kafkaBrokers = [options.kafka.bootstrap];
      else {
        const { ensureKafkaJars, startKafkaBroker } = await import('../tools/kafka/index.js');
        const progress = (line: string) => out.write(`kafka: ${line}\n`);
        await ensureKafkaJars({ onProgress: progress });
        const broker = await startKafkaBroker({ onProgress: progress });
        stoppers.push({ stage: 'broker', stop: () => broker.stop() });
        kafkaBrokers = [broker.bootstrap];
        out.write(`kafka: a broker is up at ${broker.bootstrap}\n`);
      }
    }
    // Each Kafka-backed site its own topics on the broker (one broker may serve several voyages).
    const kafkaRun = randomBytes(4).toString('hex');
    const httpPorts = new Map<string, number>();
    for (const name of [...SHORE_SITES, SHIP, CUSTOMER_ENDPOINT.site]) httpPorts.set(name, await freeLoopbackPort());
    const mqttPort = await freeLoopbackPort();
    const portMqtt = new Map<string, number>();
    for (const code of unloadPorts) portMqtt.set(portSites.get(code)!, await freeLoopbackPort());
    const linkTokens = new Map<string, string>();
    const tokenOf = (from: string, to: string) => {
      const key = `${from}>${to}`;
      if (!linkTokens.has(key)) linkTokens.set(key, token(from, to));
      return linkTokens.get(key)!;
    };
    const shipLinks: [string, string][] = scenarioLinks.map((link) => [SHIP, link.site]);
    const allLinks = [...SHORE_LINKS, ...shipLinks];

    // The ship's links to the ports go through fault proxies (the port Wi-Fi that drops).
    const accessKeyFile = join(dataDir, 'access.key');
    writeFileSync(accessKeyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    const bootstrapTokenFile = join(dataDir, 'bootstrap.token');
    const bootstrapToken = randomBytes(32).toString('hex');
    writeFileSync(bootstrapTokenFile, bootstrapToken, { mode: 0o600 });
    const proxies = new Map<string, FaultProxy>();
    for (const site of scenarioLinks.filter((link) => link.port !== undefined).map((link) => link.site)) {
      const proxy = await FaultProxy.start({ targetPort: httpPorts.get(site)! });
      proxies.set(site, proxy);
      stoppers.push({ stage: 'proxies', stop: () => proxy.close() });
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
      if (name === CUSTOMER_ENDPOINT.from) {
        links.push({ name: CUSTOMER_ENDPOINT.site, url: `http://127.0.0.1:${httpPorts.get(CUSTOMER_ENDPOINT.site)!}`, token: tokenOf(name, CUSTOMER_ENDPOINT.site), streams: [...CUSTOMER_ENDPOINT.streams], filter: { principal: CUSTOMER_ENDPOINT.principal }, ...QUICK_LINK } as (typeof links)[number]);
      }
      // Every shore site enforces access with the shared key; only HQ takes the bootstrap token.
      const access = { keyFile: accessKeyFile, ...(name === 'HQ' ? { bootstrapTokenFile } : {}), readRateLimit: { requests: 100_000, windowSeconds: 60 } };
      // A port where containers are unloaded runs a gateway for them ashore (the terminal's devices).
      // Its containers come by handoff only: one it has not been handed is refused, never created there.
      const mqtt = portMqtt.has(name) ? { mqtt: { port: portMqtt.get(name)!, auth: { allowAnonymous: true } }, handoffOnlyStreams: ['containers'] } : {};
      const log = kafkaBrokers !== undefined && !portMqtt.has(name) ? { log: { backend: 'kafka', kafka: { brokers: kafkaBrokers, topicPrefix: `voyage-${kafkaRun}-${name.toLowerCase()}` } } } : {};
      const site = new SiteProcess(name, 'shore', httpPorts.get(name)!, { site: name, dataDir, http: { port: httpPorts.get(name)! }, ingest: { peers }, links, access, handoffToken, ...mqtt, ...log }, dataDir);
      sites.set(name, site);
      stoppers.push({ stage: 'sites', stop: () => site.stop() });
    }
    // ToyCo's endpoint: its own site (no access of the carrier's: it holds only what it was given).
    const endpoint = new SiteProcess(CUSTOMER_ENDPOINT.site, 'shore', httpPorts.get(CUSTOMER_ENDPOINT.site)!, { site: CUSTOMER_ENDPOINT.site, dataDir, http: { port: httpPorts.get(CUSTOMER_ENDPOINT.site)! }, ingest: { peers: [{ site: CUSTOMER_ENDPOINT.from, token: tokenOf(CUSTOMER_ENDPOINT.from, CUSTOMER_ENDPOINT.site), sparse: true }] } }, dataDir);
    stoppers.push({ stage: 'sites', stop: () => endpoint.stop() });
    const controlToken = randomBytes(16).toString('hex');
    const ship = new SiteProcess(
      SHIP,
      'edge',
      httpPorts.get(SHIP)!,
      {
        site: SHIP,
        dataDir,
        http: { port: httpPorts.get(SHIP)! },
        mqtt: { port: mqttPort, auth: { allowAnonymous: true } },
        // Silent means two missed readings (and a minute): 11 minutes at the voyage's 5-minute readings.
        detectors: { silenceMinutes: Math.ceil((2 * scenario.readingIntervalS) / 60) + 1 },
        handoffToken,
        streams: { containers: { ttlHours: SHIP_CONTAINERS_TTL_HOURS } },
        links: shipLinks.map(([, to]) => ({
          name: to,
          url: proxies.get(to)?.url() ?? `http://127.0.0.1:${httpPorts.get(to)!}`,
          token: tokenOf(SHIP, to),
          controlToken,
          // Down until the voyage sets each link's state, also after the kill -9: a ship restarted
          // at sea must not bring up its link to a port it left (its configured state) even for a moment.
          state: 'down',
          // A link that is never up, only metered (headquarters over the satellite), sends alerts
          // and nothing else: it carries only them, or its cursors of the other streams would
          // never move and retention aboard, which waits for every link carrying a stream, would
          // never remove a reading.
          ...(neverUp(scenarioLinks.find((link) => link.site === to)!) ? { streams: ['alerts'] } : {}),
          ...QUICK_LINK,
        })),
      },
      dataDir,
    );
    sites.set(SHIP, ship);
    stoppers.push({ stage: 'sites', stop: () => ship.stop() });

    const startingAt = performance.now();
    out.write(`voyage: starting TOKYO, SINGAPORE, SYDNEY, HQ and AURORA in ${dataDir}\n`);
    if (kafkaBrokers !== undefined) {
      const onKafka = SHORE_SITES.filter((name) => !portMqtt.has(name));
      out.write(`voyage: ${onKafka.join(' and ')} on Apache Kafka at ${kafkaBrokers.join(',')} (log: kafka); ${SHORE_SITES.filter((name) => portMqtt.has(name)).join(' and ')} on the embedded log (they run the terminals' MQTT gateways, which a Kafka-backed site does not yet)\n`);
    }
    await Promise.all([...SHORE_SITES.map((name) => sites.get(name)!.start()), endpoint.start()]);
    await ship.start();
    for (const [name, site] of sites) out.write(`  ${name.padEnd(9)} ${site.url}\n`);
    out.write(`  ${endpoint.name.padEnd(9)} ${endpoint.url} (ToyCo's own endpoint, fed by ${CUSTOMER_ENDPOINT.from} as ToyCo's service principal ${CUSTOMER_ENDPOINT.principal} sees)\n`);
    const sitesUpAt = performance.now();
    const tokens = await setUpAccess(sites.get('HQ')!, bootstrapToken, timeline);
    out.write(`voyage: sites up in ${((sitesUpAt - startingAt) / 1000).toFixed(0)} s, access set up at HQ in ${((performance.now() - sitesUpAt) / 1000).toFixed(0)} s\n`);
    out.write(
      `\nportal: ${sites.get('HQ')!.url}/portal/ (any shore site serves one); sign in with a token:\n` +
        Object.entries(tokens)
          .map(([who, token]) => `  ${who.padEnd(12)} ${token}`)
          .join('\n') +
        '\n\n',
    );

    // The terminals' devices at the ports: containers ashore after unloading report there.
    const portEmulators = new Map<string, FleetEmulator>();
    for (const code of unloadPorts) {
      const site = portSites.get(code)!;
      const port = await FleetEmulator.start({ scenario, brokerUrl: `mqtt://127.0.0.1:${portMqtt.get(site)!}`, acceleration: options.acceleration, shards: 1, clientIdPrefix: `terminal-${code.toLowerCase()}`, onlyAshoreAt: code });
      portEmulators.set(site, port);
      stoppers.push({ stage: 'devices', stop: async () => void (await port.stop(2000)) });
    }
    // A container lost overboard on the way is never unloaded.
    const lostAtMs = new Map(scenario.events.flatMap((event) => (event.kind === 'overboard' ? [[event.container, timeline.ships.get(event.at.ship)!.resolve(event.at)] as const] : [])));
    // The ship's devices last: the voyage's clock starts with them.
    const emulator = await FleetEmulator.start({ scenario, brokerUrl: `mqtt://127.0.0.1:${mqttPort}`, acceleration: options.acceleration, shards: 1, clientIdPrefix: 'voyage', onlyAboard: SHIP });
    stoppers.push({ stage: 'devices', stop: async () => void (await emulator.stop(2000)) });
    const handoffs = timeline.containers
      .flatMap((container) => container.moves.filter((move) => move.ship === SHIP && portSites.has(move.unload.code) && !((lostAtMs.get(container.id) ?? Number.POSITIVE_INFINITY) < move.unloadMs)).map((move) => ({ container: container.id, to: portSites.get(move.unload.code)!, atMs: move.unloadMs, done: false })))
      .sort((a, b) => a.atMs - b.atMs);
    const done = driveSafely({ options, scenario, timeline, sites, ship, proxies, emulator, portEmulators, portSites, scenarioLinks, handoffs, handoffToken, controlToken, applied: {}, dataDir, tokens, endpoint }).then((report) => {
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
  readonly scenario: Scenario;
  readonly timeline: VoyageTimeline;
  readonly portEmulators: ReadonlyMap<string, FleetEmulator>;
  readonly portSites: ReadonlyMap<string, string>;
  readonly scenarioLinks: readonly ShipLink[];
  readonly handoffs: { readonly container: string; readonly to: string; readonly atMs: number; done: boolean }[];
  readonly handoffToken: string;
  readonly sites: ReadonlyMap<string, SiteProcess>;
  readonly ship: SiteProcess;
  readonly proxies: ReadonlyMap<string, FaultProxy>;
  readonly emulator: FleetEmulator;
  readonly controlToken: string;
  readonly applied: Record<string, string>;
  readonly dataDir: string;
  /** Sign-ins by principal (the shore sites enforce access). */
  readonly tokens: Record<string, string>;
  /** ToyCo's own endpoint, fed by Tokyo. */
  readonly endpoint: SiteProcess;
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
    const cause = (error as Error).cause as Error | undefined;
    const code = error instanceof PortcallError ? ` (${error.code})` : '';
    context.options.out.write(`\nvoyage: FAILED${code}: ${(error as Error).message}${cause === undefined ? '' : ` (${cause.message})`}\n${(error as Error).stack ?? ''}\n`);
    context.options.out.write(`  FAILED: the voyage did not hold; the sites' data and logs are in ${context.dataDir}\n`);
    return { ok: false, records: {}, differences: [(error as Error).message], alertLatencyMs: {}, faults: [], steps: [], dataDir: context.dataDir };
  }
}

async function drive(context: DriveContext): Promise<VoyageReport> {
  const { options, scenario, timeline, sites, ship, emulator, portEmulators } = context;
  const SHIP = ship.name;
  const out = options.out;
  const faults: string[] = [];
  const aurora = timeline.ships.get(SHIP)!;
  const emulators = [emulator, ...portEmulators.values()];
  const opsToken = context.tokens.ops!;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  // The scenario's faults, unless turned off.
  const kills = options.faults ? scenario.faults.flatMap((fault) => (fault.kind === 'kill-gateway' && fault.ship === SHIP ? [{ atMs: aurora.resolve(fault.at), done: false }] : [])) : [];
  const drops = options.faults ? scenario.faults.flatMap((fault) => (fault.kind === 'link-drop' && fault.ship === SHIP ? [{ site: fault.site, port: fault.port, afterLinkUpMs: fault.afterLinkUpMs, started: false }] : [])) : [];
  const overboard = scenario.events.find((event) => event.kind === 'overboard');
  const overboardAtMs = overboard === undefined ? Number.POSITIVE_INFINITY : aurora.resolve(overboard.at);
  const lastPortSite = context.portSites.get(aurora.calls.at(-1)!.port.code);
  const alertSites = [...(lastPortSite === undefined ? [] : [lastPortSite]), 'HQ'];
  const alertSeenAt: Record<string, number | undefined> = Object.fromEntries([SHIP, ...alertSites].map((site) => [site, undefined]));
  const observations: VoyageObservations = {
    firstPortReplicationS: undefined,
    firstPortReplicationDetail: 'not measured',
    knewBeforeArrival: [],
    portWritesAheadOfShip: [],
    dropsMidTransfer: [],
    killed: undefined,
    handoffs: [],
    alertAheadOfBacklog: undefined,
    alertLatencyMs: {},
    lagAtDeparture: {},
    shipAtFirstSailing: undefined,
    shipAtFirstLinkDown: undefined,
  };
  const alertLatency = observations.alertLatencyMs;
  const startedAt = performance.now();
  let lastStatusAt = 0;
  let restarting: Promise<void> | undefined;
  let acceleration = options.acceleration;
  const setAcceleration = (value: number) => {
    for (const each of emulators) each.setAcceleration(value);
  };
  /** A topic's latest record at a site; undefined when it has none, or the site did not answer within 30 s (twice). */
  const latestOf = async (site: string, stream: string, topic: string) => {
    for (let attempt = 1; attempt <= 2; attempt += 1) {
      try {
        const response = await fetch(`${sites.get(site)!.url}/v1/streams/${stream}/topics/${topic}/latest`, { signal: AbortSignal.timeout(30_000), headers: { authorization: `Bearer ${opsToken}` } });
        if (!response.ok) return undefined;
        return (await response.json()) as { origin: string; offset: number; eventTime: string; payload: { event?: string; port?: string } };
      } catch {
        // a busy machine: once more
      }
    }
    return undefined;
  };

  const statusLine = async (simTimeMs: number) => {
    const where = aurora.whereabouts(simTimeMs);
    const place = where.kind === 'berthed' ? `berthed at ${where.port.name}` : `at sea ${where.leg.from.name} → ${where.leg.to.name}, ${Math.round(where.position.distanceNm)}/${Math.round(where.leg.route.lengthNm)} nm`;
    let links = '';
    try {
      const views = await linkViews(ship);
      links = views.map((view) => `${view.name} ${view.state}${lagOf(view) > 0 ? ` (lag ${lagOf(view)})` : ''}`).join(', ');
    } catch {
      links = `${SHIP} not answering`;
    }
    const day = ((simTimeMs - timeline.startMs) / 86_400_000).toFixed(1);
    const alerts = Object.entries(alertSeenAt)
      .filter(([, at]) => at !== undefined)
      .map(([site]) => site);
    const line = `day ${day.padStart(4)}  ${new Date(simTimeMs).toISOString().slice(0, 16).replace('T', ' ')}  ${place}${holdNote === '' ? '' : `  |  ${holdNote}`}  |  links: ${links}${alerts.length > 0 ? `  |  ${overboard?.container} overboard alert at ${alerts.join(', ')}` : ''}`;
    out.write(out.isTTY ? `\r${line.slice(0, (out.columns ?? 200) - 1)}\u001b[K` : `${line}\n`);
  };

  const pollAlert = async (site: string) => {
    if (alertSeenAt[site] !== undefined || overboard === undefined) return;
    try {
      const response = await fetch(`${sites.get(site)!.url}/v1/streams/alerts/topics/${overboard.container}/latest`, {
        signal: AbortSignal.timeout(1000),
        headers: { authorization: `Bearer ${opsToken}` },
      });
      if (response.ok) {
        // From when the ship made the alert durable (its ingest time, same machine clock) to now.
        const alert = (await response.json()) as { ingestTime: string };
        alertSeenAt[site] = Date.now();
        alertLatency[site] = Date.now() - Date.parse(alert.ingestTime);
        // The first shore site to see it: how far its readings of the container had come by then.
        if (site !== SHIP && observations.alertAheadOfBacklog === undefined) {
          const reading = await latestOf(site, 'containers', overboard.container);
          observations.alertAheadOfBacklog = { site, latestReadingAt: reading?.eventTime };
        }
      }
    } catch {
      // not there yet
    }
  };

  // Step 1: when the ship leaves its first port, how long until that port's records are everywhere.
  const measureFirstPort = async () => {
    const site = context.portSites.get(aurora.calls[0]!.port.code);
    if (site === undefined) return;
    const loaded = timeline.containers.filter((container) => container.moves[0]?.ship === SHIP && container.moves[0].load.code === aurora.calls[0]!.port.code).map((container) => container.id);
    const held = new Map<string, number>();
    for (const id of loaded) held.set(id, (await latestOf(site, 'containers', id))?.offset ?? -1);
    const others = SHORE_SITES.filter((name) => name !== site);
    const from = performance.now();
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const results = await Promise.all(others.flatMap((other) => [...held].map(async ([id, offset]) => ((await latestOf(other, 'containers', id).catch(() => undefined))?.offset ?? -1) >= offset)));
      if (results.every(Boolean)) {
        observations.firstPortReplicationS = (performance.now() - from) / 1000;
        observations.firstPortReplicationDetail = `${loaded.length} containers' topics as ${site} held them at departure (${[...held.values()].reduce((sum, offset) => sum + offset + 1, 0)} records) at ${others.join(', ')} within ${observations.firstPortReplicationS.toFixed(1)} s`;
        return;
      }
      await sleep(200);
    }
    observations.firstPortReplicationDetail = `not at ${others.join(', ')} within 60 s`;
  };
  let firstPortMeasure: Promise<void> | undefined;

  // On arriving at a port, before its link comes up: what the port already knows.
  const arrivedAt = new Set<number>();
  const onArrival = async (callIndex: number) => {
    const call = aurora.calls[callIndex]!;
    const site = context.portSites.get(call.port.code);
    if (site === undefined) return;
    const earlier = aurora.calls.slice(0, callIndex).map((previous) => previous.port.code);
    const loadedBefore = timeline.containers.filter((container) => container.moves.some((move) => move.ship === SHIP && earlier.includes(move.load.code)));
    const known = await Promise.all(loadedBefore.map(async (container) => ['loaded', 'unloaded'].includes((await latestOf(site, 'manifests', container.id))?.payload.event ?? '')));
    observations.knewBeforeArrival.push({ site, ok: known.length > 0 && known.every(Boolean), detail: `${known.filter(Boolean).length} of ${known.length} containers loaded at ${earlier.join(', ')} in ${site}'s manifests when ${SHIP} arrived` });
    const handedElsewhere = observations.handoffs.filter((handoff) => handoff.to !== site);
    if (handedElsewhere.length > 0) {
      const writers = await Promise.all(handedElsewhere.map(async (handoff) => (await latestOf(site, 'containers', handoff.container))?.origin));
      observations.portWritesAheadOfShip.push({
        site,
        ok: writers.every((writer, index) => writer === handedElsewhere[index]!.to),
        detail: handedElsewhere.map((handoff, index) => `${handoff.container}: latest written by ${writers[index] ?? 'nobody'}`).join(', '),
      });
    }
  };

  /**
   * Asks the ship to hand a container's topic over; the handoff record's offset. A request lost on
   * the way (a reset keep-alive connection, on a loaded machine) is asked again, at most three
   * times: if the first had reached the ship, the ship answers 409 naming the port as the writer,
   * and the handoff record is then the ship's latest record of the topic.
   */
  const handTopicOver = async (handoff: { container: string; to: string; atMs: number }): Promise<number> => {
    for (let attempt = 1; ; attempt += 1) {
      let response: Response;
      try {
        response = await fetch(`${ship.url}/v1/streams/containers/topics/${handoff.container}/handoff`, {
          method: 'POST',
          headers: { authorization: `Bearer ${context.handoffToken}`, 'content-type': 'application/json' },
          // On the fleet's clock: the moment of unloading (the topic's readings are on simulated time).
          body: JSON.stringify({ to: handoff.to, at: new Date(handoff.atMs).toISOString() }),
          signal: AbortSignal.timeout(10_000),
        });
      } catch (error) {
        if (attempt >= 3) throw new VoyageStalledError(`${SHIP} did not answer the handoff of ${handoff.container} to ${handoff.to} (${attempt} tries): ${(error as Error).message}`);
        await sleep(500 * attempt);
        continue;
      }
      if (response.ok) return ((await response.json()) as { offset: number }).offset;
      const body = await response.text();
      if (response.status === 409 && attempt > 1) {
        const latest = await ship.getJson<{ offset: number; origin: string; headers: Record<string, string> }>(`/v1/streams/containers/topics/${handoff.container}/latest`, opsToken, 30_000).catch(() => undefined);
        if (latest?.origin === SHIP && latest.headers[HANDOFF_HEADER] === handoff.to) return latest.offset;
      }
      throw new Error(`${SHIP} refused to hand ${handoff.container} to ${handoff.to}: HTTP ${response.status} ${body}`);
    }
  };

  // Port calls drive handoffs: once everything the ship heard up to the unloading is durable aboard.
  const handOver = async (simTimeMs: number) => {
    const due = context.handoffs.filter((handoff) => !handoff.done && simTimeMs >= handoff.atMs);
    if (due.length === 0) return;
    setAcceleration(0);
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const stats = emulator.stats();
        if (stats.acknowledged === stats.published && stats.simTimeMs >= due.at(-1)!.atMs) break;
        if (Date.now() > deadline) throw new Error(`${SHIP}'s gateway did not acknowledge the fleet's messages within 30 s`);
        await sleep(50);
      }
      for (const handoff of due) {
        const offset = await handTopicOver(handoff);
        handoff.done = true;
        observations.handoffs.push({ container: handoff.container, to: handoff.to, offset });
        out.write(`${out.isTTY ? '\n' : ''}handoff: ${handoff.container} unloaded; ${SHIP} hands containers/${handoff.container} to ${handoff.to} (handoff record at offset ${offset})\n`);
      }
    } finally {
      setAcceleration(acceleration);
    }
  };

  /** Each port call where the ship's sailing is held: since when (wall), when the port held every handoff record, which it holds. */
  const sailingHeld = new Map<number, { sinceMs: number | undefined; handoffsHeldAtMs: number | undefined; askedAtMs: number; held: Set<string> }>();
  /** What holds the ship in port, for the status line. */
  let holdNote = '';
  /** Does the port's site hold this handoff record: at its offset, written by the ship, handing the topic to the port? */
  const portHoldsHandoff = async (site: string, handoff: { container: string; offset: number }) => {
    try {
      const response = await fetch(`${sites.get(site)!.url}/v1/streams/containers/topics/${handoff.container}/records?from=${handoff.offset}&maxRecords=1`, { signal: AbortSignal.timeout(10_000), headers: { authorization: `Bearer ${opsToken}` } });
      if (!response.ok) return false;
      const record = ((await response.json()) as { records: { origin: string; offset: number; headers: Record<string, string> }[] }).records[0];
      return record !== undefined && record.offset === handoff.offset && record.origin === SHIP && record.headers[HANDOFF_HEADER] === site;
    } catch {
      // The port busy: not known to hold it yet; asked again in a second.
      return false;
    }
  };
  const firstPortSite = context.portSites.get(aurora.calls[0]!.port.code);
  /** The ship's containers topics: each one's next offset (what it has written of it). */
  const shipNextOffsets = async () => new Map((await ship.getJson<{ topics: { topic: string; nextOffset: number }[] }>('/v1/summaries/containers?maxTopics=5000', opsToken, 60_000)).topics.map((topic) => [topic.topic, topic.nextOffset]));
  /** Per terminal (port site): acknowledged messages when last seen moving, and when. */
  const terminalProgress = new Map<string, { acknowledged: number; atMs: number }>();
  /** The ship's devices: acknowledged messages when last seen moving, and when. */
  let fleetProgress = { acknowledged: 0, atMs: Date.now() };
  // The overboard alert is polled on its own timer from the moment it can exist, so the
  // latency measured is the alert's, not this loop's (which waits on handoffs and links).
  let alertPoller: NodeJS.Timeout | undefined;
  let polling = false;
  const pollAlerts = () => {
    if (polling) return;
    polling = true;
    void Promise.all([...alertSites, SHIP].map(pollAlert)).finally(() => (polling = false));
  };
  for (;;) {
    const stats = emulator.stats();
    const simTimeMs = stats.simTimeMs;
    const where = aurora.whereabouts(simTimeMs);
    const callIndex = where.kind === 'berthed' ? aurora.calls.findIndex((call) => call.port.code === where.port.code) : -1;
    if (callIndex > 0 && !arrivedAt.has(callIndex)) {
      arrivedAt.add(callIndex);
      await onArrival(callIndex);
    }
    // Once the ship has left its first port (even if the loop first looked after that).
    if (firstPortMeasure === undefined && callIndex !== 0) firstPortMeasure = measureFirstPort();
    // Links follow the ship.
    if (restarting === undefined) {
      const wanted = desiredStates(timeline, SHIP, context.scenarioLinks, simTimeMs);
      for (const [link, state] of Object.entries(wanted)) {
        if (context.applied[link] === state) continue;
        const before = context.applied[link];
        try {
          await setLinkState(context, link, state);
          context.applied[link] = state;
        } catch {
          // the ship restarting; try again next round
          continue;
        }
        // The first port's link no longer sends readings: nothing the ship holds from now on can
        // have been forwarded over it (retention aboard must keep all of that).
        if (link === firstPortSite && before === 'up' && state !== 'up' && observations.shipAtFirstLinkDown === undefined) {
          observations.shipAtFirstLinkDown = await shipNextOffsets().catch(() => undefined);
        }
        // Faults: a port link dropped mid-transfer, so many ms after it came up docked.
        const drop = drops.find((candidate) => !candidate.started && candidate.site === link && state === 'up' && where.kind === 'berthed' && where.port.code === candidate.port);
        if (drop !== undefined) {
          drop.started = true;
          const proxy = context.proxies.get(drop.site)!;
          for (const afterMs of drop.afterLinkUpMs) {
            setTimeout(() => {
              void linkViews(ship)
                .then((views) => lagOf(views.find((view) => view.name === drop.site)))
                .catch(() => -1)
                .then((lag) => {
                  proxy.reset();
                  observations.dropsMidTransfer.push({ site: drop.site, lag });
                  faults.push(`link ${SHIP} → ${drop.site} dropped mid-transfer (${afterMs} ms after it came up, ${lag} records waiting)`);
                  out.write(`\nfault: link ${SHIP} → ${drop.site} dropped mid-transfer\n`);
                });
            }, afterMs);
          }
        }
      }
      await handOver(simTimeMs);
    }
    // Faults: the ship's gateway killed -9.
    const kill = kills.find((candidate) => !candidate.done && simTimeMs >= candidate.atMs);
    if (kill !== undefined && restarting === undefined) {
      kill.done = true;
      observations.killed = { atSimMs: simTimeMs, pid: ship.pid };
      faults.push(`kill -9 of ${SHIP} at sea, ${new Date(simTimeMs).toISOString().slice(0, 16)} (simulated)`);
      out.write(`\nfault: kill -9 ${SHIP} (pid ${ship.pid ?? '?'}) mid-voyage; restarting it\n`);
      restarting = ship.restart().then(async () => {
        // A restarted ship comes back with its configured link states; put them right again.
        for (const link of Object.keys(context.applied)) context.applied[link] = '';
        restarting = undefined;
      });
    }
    if (simTimeMs >= overboardAtMs && alertPoller === undefined) alertPoller = setInterval(pollAlerts, 200);
    // In port the link has hours of simulated time but only seconds of wall time: hold the
    // clock nearly still until the ship's backlog to that port has drained, as it would in hours.
    // And the ship does not sail before the port holds the handoff records of the containers
    // unloaded there (asked at the port, through its read API) and, if it comes within
    // SAILING_BACKLOG_MAX_MS, the rest of the backlog: the clock stops an hour before departure
    // until then, and how much was left is noted.
    if (where.kind === 'berthed' && restarting === undefined) {
      const site = context.portSites.get(where.port.code);
      let backlog = 0;
      try {
        backlog = site === undefined ? 0 : lagOf((await linkViews(ship)).find((view) => view.name === site));
      } catch {
        // The ship not answering (busy, restarting): the backlog is unknown; keep the clock slow.
        backlog = Number.POSITIVE_INFINITY;
      }
      const call = aurora.calls[callIndex]!;
      const holdAtMs = call.departMs - 3_600_000;
      if (site !== undefined && callIndex < aurora.calls.length - 1 && !sailingHeld.has(callIndex)) {
        // The fleet's clock waits an hour before departure.
        sailingHeld.set(callIndex, { sinceMs: undefined, handoffsHeldAtMs: undefined, askedAtMs: 0, held: new Set() });
        for (const each of emulators) each.holdAt(holdAtMs);
      }
      const hold = sailingHeld.get(callIndex);
      if (hold !== undefined && observations.lagAtDeparture[site!] === undefined && simTimeMs >= holdAtMs) {
        hold.sinceMs ??= Date.now();
        const dueHere = context.handoffs.filter((handoff) => handoff.to === site && handoff.atMs <= holdAtMs);
        const madeHere = observations.handoffs.filter((handoff) => handoff.to === site);
        if (dueHere.every((handoff) => handoff.done) && Date.now() - hold.askedAtMs >= HANDOFF_ASK_EVERY_MS) {
          hold.askedAtMs = Date.now();
          for (const handoff of madeHere) if (!hold.held.has(handoff.container) && (await portHoldsHandoff(site!, handoff))) hold.held.add(handoff.container);
        }
        const handoffsHeld = dueHere.every((handoff) => handoff.done) && madeHere.every((handoff) => hold.held.has(handoff.container));
        if (handoffsHeld && hold.handoffsHeldAtMs === undefined) {
          hold.handoffsHeldAtMs = Date.now();
          if (madeHere.length > 0) out.write(`${out.isTTY ? '\n' : ''}port: ${site} holds the handoff records of ${madeHere.map((handoff) => handoff.container).join(', ')} (asked at ${site}), ${((hold.handoffsHeldAtMs - hold.sinceMs) / 1000).toFixed(1)} s into ${SHIP}'s last hour in port\n`);
        }
        const waitedMs = Date.now() - hold.sinceMs;
        holdNote = `holding departure: ${site} holds ${hold.held.size} of ${dueHere.length} handoff records, ${Number.isFinite(backlog) ? backlog : '?'} records left to send (${(waitedMs / 1000).toFixed(0)} s)`;
        // Leaving the first port with nothing left to send it: what the ship holds now has been
        // forwarded there (asked after the snapshot, so nothing in it is still on its way).
        if (callIndex === 0 && backlog === 0 && observations.shipAtFirstSailing === undefined) {
          const held = await shipNextOffsets().catch(() => undefined);
          let after = Number.POSITIVE_INFINITY;
          try {
            after = lagOf((await linkViews(ship)).find((view) => view.name === site));
          } catch {
            // not answering: not known; taken again next round
          }
          if (after === 0) observations.shipAtFirstSailing = held;
          else backlog = after;
        }
        if (handoffsHeld && (backlog === 0 || Date.now() - hold.handoffsHeldAtMs! > SAILING_BACKLOG_MAX_MS)) {
          observations.lagAtDeparture[site!] = Number.isFinite(backlog) ? backlog : -1;
          holdNote = '';
          for (const each of emulators) each.holdAt(undefined);
          out.write(`${out.isTTY ? '\n' : ''}sailing: ${SHIP} leaves ${call.port.name} after ${(waitedMs / 1000).toFixed(1)} s held; ${madeHere.length === 0 ? 'no containers unloaded there' : `${site} holds its ${madeHere.length} handoff records`}, ${Number.isFinite(backlog) ? backlog : 'unknown'} records left to send\n`);
        } else if (!handoffsHeld && waitedMs > SAILING_HOLD_MAX_MS) {
          const missing = dueHere.filter((handoff) => !hold.held.has(handoff.container)).map((handoff) => handoff.container);
          throw new VoyageStalledError(
            `${SHIP} cannot sail from ${call.port.name}: after ${SAILING_HOLD_MAX_MS / 1000} s held in port, ${site} still does not hold the handoff records of ${missing.join(', ')} (${Number.isFinite(backlog) ? backlog : 'unknown'} records left to send on the link ${SHIP} → ${site}); sailing now would leave their ashore readings refused at ${site} for the rest of the voyage`,
          );
        }
      }
      const wanted = backlog > 500 ? Math.min(options.acceleration, 120) : options.acceleration;
      if (wanted !== acceleration) {
        acceleration = wanted;
        setAcceleration(wanted);
      }
    } else if (acceleration !== options.acceleration) {
      acceleration = options.acceleration;
      setAcceleration(acceleration);
    }
    // The ship's gateway acknowledging nothing holds the fleet's clock still: bounded, with the reason.
    const fleet = emulator.stats();
    if (restarting !== undefined || fleet.acknowledged !== fleetProgress.acknowledged || fleet.published === fleet.acknowledged) {
      fleetProgress = { acknowledged: fleet.acknowledged, atMs: Date.now() };
    } else if (Date.now() - fleetProgress.atMs > FLEET_STALL_MAX_MS) {
      const health = await fetch(`${ship.url}/healthz`, { signal: AbortSignal.timeout(5000) }).then(
        async (response) => `its /healthz: HTTP ${response.status} ${(await response.text()).slice(0, 500)}`,
        (error: unknown) => `it does not answer /healthz (${(error as Error).message})`,
      );
      throw new VoyageStalledError(
        `${SHIP}'s gateway has acknowledged none of the fleet's ${fleet.published - fleet.acknowledged} outstanding messages for ${FLEET_STALL_MAX_MS / 1000} s, so the fleet's clock stands still at ${new Date(simTimeMs).toISOString().slice(0, 16)} (the devices: ${fleet.connected ? 'connected' : 'not connected'}, ${fleet.reconnects} reconnects, last error ${fleet.lastError ?? 'none'}; ${SHIP} pid ${ship.pid ?? '?'}, ${health})`,
      );
    }
    // A terminal whose devices' messages stay unacknowledged (its port refuses them) would
    // resend them forever and the voyage would never finish: bounded, with the reason.
    for (const [site, terminal] of portEmulators) {
      const terminalStats = terminal.stats();
      const seen = terminalProgress.get(site);
      if (seen === undefined || terminalStats.acknowledged !== seen.acknowledged || terminalStats.published === terminalStats.acknowledged) {
        terminalProgress.set(site, { acknowledged: terminalStats.acknowledged, atMs: Date.now() });
      } else if (Date.now() - seen.atMs > TERMINAL_STALL_MAX_MS) {
        // Refusals are expected until the port holds the handoff records (they come behind the
        // ship's backlog, which a loaded machine drains slowly; the sailing hold and the voyage's
        // bound limit that wait): only once it holds every one are refusals a fault.
        const handed = observations.handoffs.filter((handoff) => handoff.to === site);
        if (!(await Promise.all(handed.map((handoff) => portHoldsHandoff(site, handoff)))).every(Boolean)) {
          terminalProgress.set(site, { acknowledged: terminalStats.acknowledged, atMs: Date.now() });
          continue;
        }
        const refused = await sites.get(site)!.metric('portcall_writer_refused_records_total').catch(() => Number.NaN);
        throw new VoyageStalledError(
          `the terminal's devices at ${site} have had ${terminalStats.published - terminalStats.acknowledged} messages unacknowledged for ${TERMINAL_STALL_MAX_MS / 1000} s although ${site} holds the handoff records of ${handed.map((handoff) => handoff.container).join(', ') || 'no container'} (${site} has refused ${refused} records as not the writer of their topics; the devices' last error: ${terminalStats.lastError ?? 'none'}): a container's readings ashore cannot be stored there, so the voyage cannot finish`,
        );
      }
    }
    if (performance.now() - startedAt > VOYAGE_MAX_MS) {
      throw new VoyageStalledError(`the voyage did not finish within ${VOYAGE_MAX_MS / 60_000} minutes of wall time (the fleet's clock at day ${((simTimeMs - timeline.startMs) / 86_400_000).toFixed(1)}${holdNote === '' ? '' : `; ${holdNote}`})`);
    }
    if (performance.now() - lastStatusAt > 1000) {
      lastStatusAt = performance.now();
      await statusLine(simTimeMs);
    }
    if (emulators.every((each) => each.stats().finished) && restarting === undefined && context.handoffs.every((handoff) => handoff.done)) break;
    await sleep(200);
  }
  for (const each of emulators) await each.stop(10_000);
  await (firstPortMeasure ?? measureFirstPort());
  out.write(`\nvoyage: the fleet has finished (${((performance.now() - startedAt) / 1000).toFixed(0)} s); waiting for every link to drain…\n`);

  // Quiescence: the ship's link to its last port (berthed) and every shore link have nothing left.
  const drainStartedAt = performance.now();
  const deadline = Date.now() + 180_000;
  for (;;) {
    await Promise.all([SHIP, ...alertSites].map(pollAlert));
    let pending = 0;
    try {
      if (lastPortSite !== undefined) pending += lagOf((await linkViews(ship)).find((view) => view.name === lastPortSite));
      // Every shore site that forwards (HQ only receives).
      for (const name of new Set(SHORE_LINKS.map(([from]) => from))) for (const view of await linkViews(sites.get(name)!)) pending += lagOf(view);
    } catch {
      pending += 1;
    }
    if (pending === 0) break;
    if (Date.now() > deadline) {
      clearInterval(alertPoller);
      out.write(`voyage: links still had ${pending} records to send after 180 s\n`);
      break;
    }
    await sleep(500);
  }
  clearInterval(alertPoller);
  const verifyStartedAt = performance.now();

  // The shore sites compare every stream carrier operations may see; the ship (which holds no
  // access records or custody) compares what it wrote: its ships and alerts whole, and each of
  // its containers topics as the first records of that topic at HQ (a container handed over at
  // a port goes on there).
  const hq = sites.get('HQ')!;
  const shoreUrls = SHORE_SITES.map((name) => sites.get(name)!.url);
  const shores = await verifySites(shoreUrls, { token: opsToken });
  const phaseMs: [string, number][] = [['shores compared', performance.now()]];
  const shipWhole = await verifySites([ship.url, hq.url], { token: opsToken, streams: ['ships', 'alerts'] });
  const topicsOf = async (site: SiteProcess, stream: string) => (await site.getJson<{ topics: { topic: string; firstOffset: number; nextOffset: number; records: number }[] }>(`/v1/summaries/${stream}?maxTopics=5000`, opsToken, 120_000)).topics;
  const shipContainers = await topicsOf(ship, 'containers');
  // Every container's whole topic at HQ, read once: the ship's topics are compared with it and the steps are checked on it.
  const histories = new Map<string, RecordJson[]>();
  await inPool(
    [...new Set([...timeline.containers.map((container) => container.id), ...shipContainers.map((topic) => topic.topic)])],
    4,
    async (id) => void histories.set(id, await readTopic(hq, 'containers', id, opsToken)),
  );
  phaseMs.push(['histories read', performance.now()]);
  const shipPrefixes = await shipTopicsArePrefixes(ship, hq, shipContainers.map((topic) => topic.topic), opsToken, histories);
  const shipDifferences = [...shipWhole.differences, ...shipPrefixes];
  const differences = [...shores.differences, ...shipDifferences];
  const shipTopics = shipWhole.topics + shipContainers.length;
  // The shore sites' counts come from the comparison's summaries; the ship's from what it has been asked already, and the rest.
  const records: Record<string, number> = {};
  for (const name of SHORE_SITES) records[name] = shores.records[name] ?? (await recordsHeld(sites.get(name)!, opsToken));
  records[SHIP] = await recordsHeld(ship, opsToken, new Map([...(shipWhole.summaries.get(ship.url) ?? new Map()), ['containers', new Map(shipContainers.map((topic) => [topic.topic, topic]))]]));
  // What HQ holds beyond the ship's records: readings written ashore after handoffs, and its own.
  // What the ship wrote of each topic (its next offset: retention aboard may have removed the oldest).
  const shipWrote = new Map(shipContainers.map((topic) => [topic.topic, topic.nextOffset]));
  const removedAboard = shipContainers.reduce((sum, topic) => sum + topic.nextOffset - topic.records, 0);
  const hqContainers = shores.summaries.get(hq.url)?.get('containers');
  const writtenAshore = (hqContainers === undefined ? await topicsOf(hq, 'containers') : [...hqContainers.values()]).reduce((sum, topic) => sum + topic.records - (shipWrote.get(topic.topic) ?? 0), 0);
  phaseMs.push(['counts', performance.now()]);
  const checks = await accessChecks(hq, context.tokens, overboard?.container ?? 'Y07');
  phaseMs.push(['access checks', performance.now()]);
  const alertLatencyMs: Record<string, number | undefined> = {};
  for (const site of alertSites) alertLatencyMs[site] = alertLatency[site];
  const steps = await checkSteps({
    scenario,
    timeline,
    ship,
    shores: new Map(SHORE_SITES.map((name) => [name, sites.get(name)!])),
    portSites: context.portSites,
    tokens: context.tokens,
    observations,
    shoresIdentical: { ok: shores.differences.length === 0, detail: `${shores.sites.length} sites, ${shores.topics} topics in ${shores.streams} streams, ${shores.differences.length} differ` },
    shipIdentical: { ok: shipDifferences.length === 0, detail: `${shipTopics} of ${SHIP}'s topics compared with HQ, ${shipDifferences.length} differ` },
    faults: options.faults,
    histories,
    customerEndpoint: { site: context.endpoint, from: CUSTOMER_ENDPOINT.from, token: context.tokens.toyco!, streams: CUSTOMER_ENDPOINT.streams },
    shipContainersTtlMs: SHIP_CONTAINERS_TTL_HOURS * 3_600_000,
  }).catch((error: unknown): StepCheck[] => [{ step: 0, what: 'the seven steps could be checked', ok: false, detail: `${(error as Error).message}${(error as Error).cause === undefined ? '' : ` (${((error as Error).cause as Error).message})`}` }]);
  phaseMs.push(['steps', performance.now()]);
  const ok = differences.length === 0 && alertSites.every((site) => alertLatencyMs[site] !== undefined) && checks.every(([, passed]) => passed) && steps.every((step) => step.ok);
  out.write('\nvoyage: verification\n');
  for (const [name, count] of Object.entries(records)) out.write(`  ${name.padEnd(9)} ${count} records\n`);
  out.write(`  HQ holds ${SHIP}'s records (and ${removedAboard} more it has since removed by retention aboard), ${writtenAshore} written ashore by the ports after handoffs (${observations.handoffs.length} containers handed over) and ${records.HQ! - records[SHIP]! - removedAboard - writtenAshore} of its own (access, custody)\n`);
  out.write(
    differences.length === 0
      ? `  all ${shores.sites.length} shore sites hold identical records at identical offsets: ${shores.topics} topics in ${shores.streams} streams compared by content hash; ${SHIP}'s containers, ships and alerts (${shipTopics} topics) identical at HQ (a container handed over at a port: the ship's part of its topic)\n`
      : `  ${differences.length} topics differ:\n${differences.slice(0, 20).map((line) => `    ${line}`).join('\n')}\n`,
  );
  for (const site of alertSites) {
    const latency = alertLatencyMs[site];
    out.write(`  ${overboard?.container} overboard alert at ${site}: ${latency === undefined ? 'NOT RECEIVED' : `within ${(latency / 1000).toFixed(1)} s of being made durable on board (wall clock, polled every 200 ms)`}\n`);
  }
  out.write(`  access checks at HQ: ${checks.filter(([, passed]) => passed).length} of ${checks.length} passed\n`);
  for (const [what, passed] of checks) out.write(`    ${passed ? 'ok    ' : 'FAILED'} ${what}\n`);
  for (const fault of faults) out.write(`  fault injected: ${fault}\n`);
  out.write(`\nvoyage: the seven steps of the brief (DESIGN.md), checked at the sites\n`);
  for (const step of steps) out.write(`  [step ${step.step}] ${step.ok ? 'ok    ' : 'FAILED'} ${STEP_NAMES[step.step] ?? ''}: ${step.what} (${step.detail})\n`);
  out.write(`  wall time: sailing ${((drainStartedAt - startedAt) / 1000).toFixed(0)} s, links drained in ${((verifyStartedAt - drainStartedAt) / 1000).toFixed(0)} s, verification ${((performance.now() - verifyStartedAt) / 1000).toFixed(0)} s (${phaseMs.map(([phase, at], index) => `${phase} ${((at - (index === 0 ? verifyStartedAt : phaseMs[index - 1]![1])) / 1000).toFixed(0)} s`).join(', ')})\n`);
  const where = ok && options.dataDir === undefined ? 'the sites\' data and logs go when the demo stops (--data-dir keeps them)' : `the sites' data and logs are in ${context.dataDir}`;
  out.write(`  ${ok ? 'OK' : 'FAILED'}: the voyage ${ok ? 'tells its story' : 'did not hold'}; ${where}\n`);
  return { ok, records, differences, alertLatencyMs, faults, steps, dataDir: context.dataDir };
}
