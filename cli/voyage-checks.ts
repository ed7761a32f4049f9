/**
 * The voyage's seven steps (DESIGN.md) checked against the sites once the voyage is over,
 * through their read APIs with each audience's token: what the demo prints under
 * "voyage: the seven steps" and test/voyage.test.ts asserts step by step. Observations made
 * while sailing (what a port knew before the ship arrived, how fast the alert came) are
 * handed in by the driver.
 */
import { FleetModel, type Scenario, type VoyageTimeline } from '../devices/fleet/index.js';
import { distanceNm } from '../devices/sea-lanes/index.js';
import type { SiteProcess } from './voyage-sites.js';

export interface StepCheck {
  readonly step: number;
  readonly what: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface RecordJson {
  readonly origin: string;
  readonly offset: number;
  readonly eventTime: string;
  readonly ingestTime: string;
  readonly headers: Record<string, string>;
  readonly payload: unknown;
}

/** fetch, again after a dropped keep-alive connection ("other side closed") or a refused one: at most 3 tries. */
async function fetchAgain(url: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<Response> {
  const { timeoutMs = 30_000, ...rest } = init;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fetch(url, { ...rest, signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      if (attempt >= 3 || !(error instanceof TypeError)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

/** A whole topic (or from `from`) as one audience reads it at a site, page by page. */
export async function readTopic(site: SiteProcess, stream: string, topic: string, token: string | undefined, from = 0, until = Number.POSITIVE_INFINITY): Promise<RecordJson[]> {
  const records: RecordJson[] = [];
  let next = from;
  for (;;) {
    const response = await fetchAgain(`${site.url}/v1/streams/${stream}/topics/${topic}/records?from=${next}&maxRecords=1000`, {
      ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
    });
    if (response.status === 404) return records;
    if (!response.ok) throw new Error(`${site.name} ${stream}/${topic} from ${next}: HTTP ${response.status}`);
    const page = (await response.json()) as { nextOffset: number; records: RecordJson[] };
    for (const record of page.records) {
      if (record.offset >= until) return records;
      records.push(record);
    }
    if (page.records.length === 0 || page.nextOffset === next) return records;
    next = page.nextOffset;
  }
}

async function status(site: SiteProcess, path: string, token: string | undefined): Promise<number> {
  const response = await fetchAgain(`${site.url}${path}`, { ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }) });
  await response.arrayBuffer();
  return response.status;
}

/** Topic names of a stream an audience is summarised at a site. */
async function topicsSeen(site: SiteProcess, stream: string, token: string | undefined): Promise<string[]> {
  const names: string[] = [];
  let after: string | null = '';
  while (after !== null) {
    const response = await fetchAgain(`${site.url}/v1/summaries/${stream}?after=${encodeURIComponent(after)}&maxTopics=5000`, { timeoutMs: 60_000, ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }) });
    if (response.status === 404) return names;
    if (!response.ok) throw new Error(`${site.name} summaries of ${stream}: HTTP ${response.status}`);
    const page = (await response.json()) as { topics: { topic: string; records: number }[]; after: string | null };
    for (const topic of page.topics) if (topic.records > 0) names.push(topic.topic);
    after = page.after;
  }
  return names.sort();
}

const sameRecord = (a: RecordJson, b: RecordJson) =>
  a.origin === b.origin && a.offset === b.offset && a.eventTime === b.eventTime && a.ingestTime === b.ingestTime && JSON.stringify(a.headers) === JSON.stringify(b.headers) && JSON.stringify(a.payload) === JSON.stringify(b.payload);

/**
 * The ship's records of each of its containers topics are the first records of that topic at
 * the shore site, identical (a topic handed over at a port goes on there, written by the port).
 */
export async function shipTopicsArePrefixes(ship: SiteProcess, shore: SiteProcess, topics: readonly string[], token: string, shoreTopics: ReadonlyMap<string, readonly RecordJson[]> = new Map()): Promise<string[]> {
  const differences: string[] = [];
  for (const topic of topics) {
    // From the first record the ship still holds (retention aboard removes a topic's oldest, forwarded ones).
    const aboard = await readTopic(ship, 'containers', topic, token);
    const first = aboard[0]?.offset ?? 0;
    const known = shoreTopics.get(topic);
    const ashore = known === undefined ? await readTopic(shore, 'containers', topic, token, first, first + aboard.length) : known.filter((record) => record.offset >= first && record.offset < first + aboard.length);
    const at = aboard.findIndex((record, index) => record.offset !== first + index || ashore[index] === undefined || !sameRecord(record, ashore[index]!));
    if (at >= 0 || ashore.length !== aboard.length) differences.push(`containers/${topic}: ${ship.name} holds ${aboard.length} records from offset ${first}, ${shore.name} ${ashore.length} of them${at >= 0 ? `, first different at offset ${first + at}` : ''}`);
  }
  return differences;
}

export interface VoyageObservations {
  /** Seconds from the ship leaving its first port to its loading there being at every other shore site. */
  firstPortReplicationS: number | undefined;
  firstPortReplicationDetail: string;
  /** At each later port, before the link came up: did that port hold the earlier loadings? */
  knewBeforeArrival: { site: string; ok: boolean; detail: string }[];
  /** At the last port before the link came up: did it hold the earlier port's writes? */
  portWritesAheadOfShip: { site: string; ok: boolean; detail: string }[];
  /** Records waiting on the link each time it was cut. */
  dropsMidTransfer: { site: string; lag: number }[];
  killed: { atSimMs: number; pid: number | undefined } | undefined;
  handoffs: { container: string; to: string; offset: number }[];
  /** When the overboard alert first showed at a shore site: the latest reading of the container there then. */
  alertAheadOfBacklog: { site: string; latestReadingAt: string | undefined } | undefined;
  alertLatencyMs: Record<string, number | undefined>;
  /** Records the ship still had to send a port's site when it sailed from there (-1: unknown). */
  lagAtDeparture: Record<string, number>;
  /** The ship's containers topics' next offsets when it sailed from its first port, everything sent there. */
  shipAtFirstSailing: Map<string, number> | undefined;
  /** The same once its link to that port stopped sending readings: nothing past these went over that link. */
  shipAtFirstLinkDown: Map<string, number> | undefined;
}

export interface CheckContext {
  readonly scenario: Scenario;
  readonly timeline: VoyageTimeline;
  readonly ship: SiteProcess;
  readonly shores: ReadonlyMap<string, SiteProcess>;
  /** Site at each port code. */
  readonly portSites: ReadonlyMap<string, string>;
  readonly tokens: Record<string, string>;
  readonly observations: VoyageObservations;
  /** The shore sites hold identical records at identical offsets (per-topic hashes). */
  readonly shoresIdentical: { ok: boolean; detail: string };
  readonly shipIdentical: { ok: boolean; detail: string };
  readonly faults: boolean;
  /** A customer's own endpoint fed by a shore site through the access policy, and that customer's token there. */
  readonly customerEndpoint?: { readonly site: SiteProcess; readonly from: string; readonly token: string; readonly streams: readonly string[] };
  /** Every container's whole topic at HQ, if already read (by carrier operations). */
  readonly histories?: ReadonlyMap<string, RecordJson[]>;
  /** The TTL of the ship's containers stream (retention aboard, step 7); undefined: none configured. */
  readonly shipContainersTtlMs: number | undefined;
}

/** Retention runs about once a second on marks stamped about once a second: a record past its TTL is gone within this. */
const RETENTION_SLACK_MS = 5000;
/** How long the check waits for retention aboard to have removed what is due. */
const RETENTION_WAIT_MS = 60_000;

interface TopicSummary {
  readonly topic: string;
  readonly firstOffset: number;
  readonly nextOffset: number;
  readonly records: number;
}

/**
 * Step 7's last clause: retention on the ship removes what was forwarded and expired, never what
 * was not yet forwarded. "Forwarded" is the log's rule: past the cursor of every link that carries
 * the stream (mustForward; docs/LOG.md). The ship's link to its first port stops sending readings
 * when it sails, so what the ship held then (everything sent, its backlog 0) is forwarded once the
 * later ports' links have passed it, and nothing written after that link stopped can be. Checked
 * against HQ's copy of every record (its ingest time aboard) and the ship's own link cursors.
 */
async function checkShipRetention(context: CheckContext, histories: ReadonlyMap<string, RecordJson[]>, check: (step: number, what: string, ok: boolean, detail: string) => void): Promise<void> {
  const { ship, observations: seen } = context;
  const ttlMs = context.shipContainersTtlMs;
  if (ttlMs === undefined) return;
  const forwardedBelow = seen.shipAtFirstSailing;
  const unforwardedFrom = seen.shipAtFirstLinkDown;
  if (forwardedBelow === undefined || unforwardedFrom === undefined) {
    check(7, `retention on the ship removes what was forwarded and expired, never what was not yet forwarded`, false, `not measured: ${forwardedBelow === undefined ? 'what the ship held when it sailed from its first port' : 'what it held when that link stopped'} is unknown`);
    return;
  }
  const summaries = async () => new Map((await ship.getJson<{ topics: TopicSummary[] }>('/v1/summaries/containers?maxTopics=5000', context.tokens.ops, 60_000)).topics.map((topic) => [topic.topic, topic]));
  // The ship's part of each topic at HQ: its records up to the handoff, if any.
  const aboardOnce = (id: string) => (histories.get(id) ?? []).filter((record) => record.origin === ship.name);
  let held = await summaries();
  let nowMs = Date.now();
  /** Forwarded (below what the ship held when it sailed from its first port) and past the TTL by the slack, yet still aboard. */
  const overdue = () => {
    let count = 0;
    for (const [id, below] of forwardedBelow) {
      const first = held.get(id)?.firstOffset ?? 0;
      count += aboardOnce(id).filter((record) => record.offset >= first && record.offset < below && Date.parse(record.ingestTime) < nowMs - ttlMs - RETENTION_SLACK_MS).length;
    }
    return count;
  };
  const deadline = Date.now() + RETENTION_WAIT_MS;
  while (overdue() > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    held = await summaries();
    nowMs = Date.now();
  }
  let removed = 0;
  let removedUnexpired = 0;
  let removedUnforwarded = 0;
  let unforwarded = 0;
  let unforwardedExpired = 0;
  let unforwardedMissing = 0;
  for (const [id, topic] of held) {
    const written = aboardOnce(id);
    removed += topic.firstOffset;
    for (const record of written) {
      if (record.offset < topic.firstOffset) {
        // Removed: it must have been expired (its TTL measured from its ingest aboard) and forwarded.
        if (Date.parse(record.ingestTime) > nowMs - ttlMs + 1000) removedUnexpired += 1;
        if (record.offset >= (unforwardedFrom.get(id) ?? 0)) removedUnforwarded += 1;
      } else if (record.offset >= (unforwardedFrom.get(id) ?? 0)) {
        unforwarded += 1;
        if (Date.parse(record.ingestTime) < nowMs - ttlMs) unforwardedExpired += 1;
      }
    }
    // Nothing past the first port's link is gone: the ship still holds every such record, densely.
    const from = unforwardedFrom.get(id) ?? 0;
    if (topic.firstOffset > from) unforwardedMissing += Math.min(topic.firstOffset, topic.nextOffset) - from;
    if (topic.nextOffset - topic.firstOffset !== topic.records) unforwardedMissing += topic.nextOffset - topic.firstOffset - topic.records;
  }
  const stillDue = overdue();
  // The ship's own view: each link's records past its cursor (its lag) are all still aboard.
  const links = (await ship.getJson<{ links: { name: string; lag: { stream: string; records: number }[] }[] }>('/v1/links')).links;
  const lags = links.map((link) => ({ name: link.name, records: link.lag.find((entry) => entry.stream === 'containers')?.records }));
  const heldRecords = [...held.values()].reduce((sum, topic) => sum + topic.records, 0);
  const maxLag = Math.max(0, ...lags.map((lag) => lag.records ?? 0));
  check(
    7,
    `retention on the ship removed what was forwarded and expired`,
    removed > 0 && stillDue === 0 && removedUnexpired === 0 && removedUnforwarded === 0,
    `${removed} containers records removed aboard (TTL ${ttlMs / 1000} s), ${removedUnexpired} of them before their TTL, ${removedUnforwarded} written after the first port's link stopped; ${stillDue} forwarded and past their TTL still aboard`,
  );
  check(
    7,
    `retention on the ship never removed what was not yet forwarded`,
    unforwarded > 0 && unforwardedExpired > 0 && unforwardedMissing === 0 && removedUnforwarded === 0 && heldRecords >= maxLag,
    `${unforwarded} records not yet forwarded over every link all still aboard (${unforwardedExpired} of them past their TTL), ${unforwardedMissing} missing; ${heldRecords} held aboard ≥ every link's backlog (${lags.map((lag) => `${lag.name} ${lag.records ?? 'n/a'}`).join(', ')})`,
  );
}

/** Every check of the seven steps, in order. */
export async function checkSteps(context: CheckContext): Promise<StepCheck[]> {
  const { scenario, timeline, ship, shores, tokens, observations: seen } = context;
  const checks: StepCheck[] = [];
  const check = (step: number, what: string, ok: boolean, detail: string) => checks.push({ step, what, ok, detail });
  const hq = shores.get('HQ')!;
  const shipTimeline = timeline.ships.get(ship.name)!;
  const calls = shipTimeline.calls;
  const siteAt = (code: string) => context.portSites.get(code);
  const ops = tokens.ops!;

  // What the ship's gateway heard (QoS 1 readings and events of containers): all of it must be at HQ.
  const model = new FleetModel(scenario, { onlyAboard: ship.name });
  const expected = new Map<string, Set<string>>();
  for (const message of model.advanceTo(model.endMs)) {
    if (message.kind !== 'readings' && message.kind !== 'events') continue;
    const id = message.topic.split('/')[2]!;
    if (!expected.has(id)) expected.set(id, new Set());
    expected.get(id)!.add(JSON.stringify(JSON.parse(message.payload)));
  }
  const whole = new FleetModel(scenario);
  whole.advanceTo(whole.endMs);
  const histories = new Map<string, RecordJson[]>();
  for (const container of timeline.containers) histories.set(container.id, context.histories?.get(container.id) ?? (await readTopic(hq, 'containers', container.id, ops)));

  // 1. The first port: loading, and the same records at the same offsets everywhere, once each.
  const first = calls[0]!;
  const loadedFirst = timeline.containers.filter((container) => container.moves[0]?.load.code === first.port.code && container.moves[0]?.ship === ship.name);
  check(1, `${loadedFirst.length} containers loaded at ${first.port.name}, each its own topic from offset 0`, loadedFirst.length > 0 && loadedFirst.every((container) => histories.get(container.id)?.[0]?.offset === 0), loadedFirst.map((container) => container.id).join(' '));
  check(1, `${first.port.name}'s records at every other shore site within seconds of departure`, seen.firstPortReplicationS !== undefined && seen.firstPortReplicationS < 30, seen.firstPortReplicationDetail);
  check(1, 'every shore site holds the same records at the same offsets, once each (per-topic content hashes)', context.shoresIdentical.ok, context.shoresIdentical.detail);
  const endpoint = context.customerEndpoint;
  if (endpoint !== undefined) {
    // What the customer reads at the feeding site is exactly what its endpoint holds: same records, same offsets; nothing else.
    const from = shores.get(endpoint.from)!;
    let records = 0;
    let topics = 0;
    const differ: string[] = [];
    for (const stream of endpoint.streams) {
      const visible = await topicsSeen(from, stream, endpoint.token);
      const held = await topicsSeen(endpoint.site, stream, undefined);
      for (const topic of held.filter((name) => !visible.includes(name))) differ.push(`${stream}/${topic} at ${endpoint.site.name}, not the customer's`);
      for (const topic of visible) {
        const expectedRecords = await readTopic(from, stream, topic, endpoint.token);
        const got = await readTopic(endpoint.site, stream, topic, undefined);
        topics += 1;
        records += got.length;
        if (got.length !== expectedRecords.length || got.some((record, index) => !sameRecord(record, expectedRecords[index]!))) differ.push(`${stream}/${topic}: ${got.length} at ${endpoint.site.name}, ${expectedRecords.length} read at ${endpoint.from}`);
      }
    }
    const others = await topicsSeen(endpoint.site, 'ships', undefined);
    if (others.length > 0) differ.push(`ships: ${others.join(' ')} at ${endpoint.site.name}`);
    check(1, `${endpoint.from} passes the customer's subset to its own endpoint: ${endpoint.site.name} holds exactly what the customer reads at ${endpoint.from}, at the same offsets`, differ.length === 0 && records > 0, `${records} records in ${topics} topics of ${endpoint.streams.join(', ')}; ${differ.length === 0 ? 'nothing else (no ships, no one else\'s)' : differ.slice(0, 5).join('; ')}`);
  }

  // 2. At sea: kill -9 of the ship's gateway; nothing acknowledged lost, no offset skipped.
  check(2, `the ship's gateway was killed -9 at sea and restarted`, !context.faults || (seen.killed !== undefined && shipTimeline.whereabouts(seen.killed.atSimMs).kind === 'at-sea'), seen.killed === undefined ? 'no kill (faults off)' : `at ${new Date(seen.killed.atSimMs).toISOString().slice(0, 16)} simulated, pid ${seen.killed.pid ?? '?'}`);
  let missing = 0;
  let duplicates = 0;
  let gaps = 0;
  let heard = 0;
  for (const [id, payloads] of expected) {
    heard += payloads.size;
    const records = histories.get(id) ?? [];
    records.forEach((record, index) => {
      if (record.offset !== index) gaps += 1;
    });
    const stored = records.filter((record) => record.origin === ship.name && record.headers['pc-handoff-to'] === undefined).map((record) => JSON.stringify(record.payload));
    const storedSet = new Set(stored);
    duplicates += stored.length - storedSet.size;
    for (const payload of payloads) if (!storedSet.has(payload)) missing += 1;
  }
  check(2, `every reading and event the ship's gateway heard is at HQ (nothing acknowledged lost)`, missing === 0 && heard > 0, `${heard} messages heard aboard, ${missing} missing, ${duplicates} stored twice (QoS 1 resent after the kill)`);
  check(2, 'no offset skipped: every container topic is dense from 0', gaps === 0, `${[...histories.values()].reduce((sum, records) => sum + records.length, 0)} records in ${histories.size} topics, ${gaps} out of place`);

  // 3. The second port: knew, resumed, converged, handoffs, new topics, access.
  const second = calls[1];
  const secondSite = second === undefined ? undefined : siteAt(second.port.code);
  for (const known of seen.knewBeforeArrival.filter((entry) => entry.site === secondSite)) check(3, `${known.site} knew the ${first.port.name} loading before the ship arrived`, known.ok, known.detail);
  if (context.faults) check(3, `the link to ${secondSite} dropped twice mid-transfer`, seen.dropsMidTransfer.length >= 2 && seen.dropsMidTransfer.every((drop) => drop.lag > 0), seen.dropsMidTransfer.map((drop) => `${drop.lag} records waiting`).join(', '));
  const leftBehind = secondSite === undefined ? undefined : seen.lagAtDeparture[secondSite];
  check(3, `after the drops the transfer settled: ${secondSite} held every record of the ship an hour before it sailed`, leftBehind === 0, `${leftBehind ?? 'unknown'} records left to send then`);
  check(3, `${secondSite} holds exactly the ship's records: no gaps, no duplicates, same offsets (AURORA's topics identical at every shore site)`, context.shipIdentical.ok && context.shoresIdentical.ok, context.shipIdentical.detail);
  for (const container of timeline.containers) {
    const move = container.moves.find((candidate) => candidate.ship === ship.name && candidate.unload.code === second?.port.code);
    if (move === undefined || secondSite === undefined) continue;
    const records = histories.get(container.id) ?? [];
    const handoffs = records.filter((record) => record.headers['pc-handoff-to'] !== undefined);
    const handoff = handoffs[0];
    const after = handoff === undefined ? [] : records.slice(handoff.offset + 1);
    const ok =
      handoffs.length === 1 &&
      handoff!.origin === ship.name &&
      handoff!.headers['pc-handoff-to'] === secondSite &&
      records.slice(0, handoff!.offset).every((record) => record.origin === ship.name) &&
      after.length > 0 &&
      after.every((record) => record.origin === secondSite) &&
      records.every((record, index) => record.offset === index);
    check(3, `${container.id} handed over to ${secondSite} at unloading: offsets continue, written by ${secondSite} afterwards`, ok, handoff === undefined ? 'no handoff record' : `handoff at offset ${handoff.offset} by ${handoff.origin}, then ${after.length} readings ashore by ${[...new Set(after.map((record) => record.origin))].join(', ')}; ${records.length} records, dense`);
  }
  const loadedSecond = timeline.containers.filter((container) => container.moves.some((move) => move.ship === ship.name && move.load.code === second?.port.code));
  for (const container of loadedSecond) {
    const firstRecord = histories.get(container.id)?.[0];
    check(3, `${container.id} loaded at ${second!.port.name}: a new topic`, firstRecord !== undefined && firstRecord.offset === 0 && Date.parse(firstRecord.eventTime) >= second!.arriveMs, firstRecord === undefined ? 'no records' : `offset 0 at ${firstRecord.eventTime}`);
  }
  const owned = (owner: string) => timeline.containers.filter((container) => container.owner === owner).map((container) => container.id).sort();
  for (const [who, owner] of [
    ['redco', 'RedCo'],
    ['toyco', 'ToyCo'],
  ] as const) {
    const token = tokens[who]!;
    const containers = await topicsSeen(hq, 'containers', token);
    const ships = await topicsSeen(hq, 'ships', token);
    const mine = owned(owner);
    check(3, `${owner} reads its containers and nothing else: no one else's, not the ships`, JSON.stringify(containers) === JSON.stringify(mine) && ships.length === 0, `containers ${containers.join(' ')}; ships ${ships.length === 0 ? 'none' : ships.join(' ')}`);
  }
  const redcoContainers = owned('RedCo');
  const toycoDenied = await Promise.all(redcoContainers.map((id) => status(hq, `/v1/streams/containers/topics/${id}/latest`, tokens.toyco)));
  check(3, `ToyCo cannot read ${redcoContainers.join(', ')} or the ships stream`, toycoDenied.every((code) => code === 404) && (await status(hq, `/v1/streams/ships/topics/${ship.name}/latest`, tokens.toyco)) === 404, `HTTP ${toycoDenied.join(', ')}`);

  // 4. Updates made at the second port reach the next port before the ship.
  for (const ahead of seen.portWritesAheadOfShip) check(4, `${secondSite}'s updates were at ${ahead.site} before the ship arrived`, ahead.ok, ahead.detail);

  // 5. Overboard.
  const overboard = scenario.events.find((event) => event.kind === 'overboard');
  if (overboard !== undefined) {
    const id = overboard.container;
    const shockAtMs = shipTimeline.resolve(overboard.at);
    for (const site of ['SYDNEY', 'HQ']) {
      const latency = seen.alertLatencyMs[site];
      check(5, `${id}'s overboard alert at ${site} within seconds of being made durable aboard`, latency !== undefined && latency < 5000, latency === undefined ? 'not received' : `${(latency / 1000).toFixed(1)} s`);
    }
    const ahead = seen.alertAheadOfBacklog;
    check(5, 'the alert went first, ahead of the backlog of readings', ahead !== undefined && ahead.latestReadingAt !== undefined && Date.parse(ahead.latestReadingAt) < shockAtMs, ahead === undefined ? 'not seen' : `when it reached ${ahead.site}, ${id}'s latest reading there was from ${ahead.latestReadingAt ?? 'never'}, the shock at ${new Date(shockAtMs).toISOString()}`);
    const alert = (await readTopic(hq, 'alerts', id, ops)).find((record) => (record.payload as { kind?: string }).kind === 'overboard');
    const lastSeen = (alert?.payload as { lastSeen?: { ts: string; lat: number; lon: number } } | undefined)?.lastSeen;
    const truth = lastSeen === undefined ? undefined : whole.containerPosition(id, Date.parse(lastSeen.ts));
    const offNm = lastSeen === undefined || truth === undefined ? Number.NaN : distanceNm(lastSeen, truth);
    check(5, `the alert carries ${id}'s last-seen position and time`, lastSeen !== undefined && Date.parse(lastSeen.ts) >= shockAtMs && offNm < 1, lastSeen === undefined ? 'no lastSeen' : `last seen ${lastSeen.ts} at ${lastSeen.lat.toFixed(3)}, ${lastSeen.lon.toFixed(3)} (${offNm.toFixed(2)} nm from where the simulation had it)`);
    const toyco = await status(hq, `/v1/streams/alerts/topics/${id}/latest`, tokens.toyco);
    const redco = await status(hq, `/v1/streams/alerts/topics/${id}/latest`, tokens.redco);
    check(5, `ToyCo sees ${id} lost overboard, RedCo nothing of it`, toyco === 200 && redco === 404, `ToyCo HTTP ${toyco}, RedCo HTTP ${redco}`);
  }

  // 6. The last port: whole history for the owner; the consignee a coarse status.
  const last = calls.at(-1)!;
  const through = timeline.containers.find((container) => container.owner === 'ToyCo' && container.moves.at(-1)?.unload.code === last.port.code && container.id !== overboard?.container);
  if (through !== undefined) {
    const history = await readTopic(hq, 'containers', through.id, tokens.toyco);
    const all = histories.get(through.id) ?? [];
    const times = history.map((record) => Date.parse(record.eventTime));
    const during = (call: { arriveMs: number; departMs: number }) => times.some((time) => time >= call.arriveMs && time < call.departMs);
    const atSea = shipTimeline.legs.every((leg) => times.some((time) => time >= leg.departMs && time < leg.arriveMs));
    check(6, `ToyCo reads ${through.id}'s whole history: loading at ${first.port.name}, at sea, ${calls.slice(1).map((call) => call.port.name).join(', ')}`, history.length === all.length && history.length > 0 && calls.every(during) && atSea, `${history.length} of ${all.length} records, ${history[0]?.eventTime ?? '-'} to ${history.at(-1)?.eventTime ?? '-'}`);
    const consigneeReadings = await status(hq, `/v1/streams/containers/topics/${through.id}/latest`, tokens.duckmart);
    const manifests = await readTopic(hq, 'manifests', through.id, tokens.duckmart);
    const coarse = manifests.length > 0 && manifests.every((record) => Object.keys(record.payload as object).every((key) => ['status', 'port', 'at'].includes(key)));
    const lastStatus = (manifests.at(-1)?.payload as { status?: string } | undefined)?.status;
    check(6, `the consignee sees only ${through.id}'s coarse status (in transit, arrived, lost)`, consigneeReadings === 404 && coarse && lastStatus === 'arrived', `readings HTTP ${consigneeReadings}; statuses ${manifests.map((record) => (record.payload as { status?: string }).status).join(' → ')}`);
  }

  // 7. Afterwards: identical everywhere; a consumer moves between ports without gap or duplicate.
  check(7, 'every shore site holds identical records at identical offsets', context.shoresIdentical.ok, context.shoresIdentical.detail);
  check(7, `the ship's records are identical at HQ`, context.shipIdentical.ok, context.shipIdentical.detail);
  await checkShipRetention(context, histories, check);
  if (through !== undefined && secondSite !== undefined) {
    const lastSite = siteAt(last.port.code);
    const all = histories.get(through.id) ?? [];
    const half = Math.floor(all.length / 2);
    const before = await readTopic(shores.get(secondSite)!, 'containers', through.id, tokens.toyco, 0, half);
    const afterSwitch = lastSite === undefined ? [] : await readTopic(shores.get(lastSite)!, 'containers', through.id, tokens.toyco, before.length);
    const read = [...before, ...afterSwitch];
    const ok = read.length === all.length && read.every((record, index) => sameRecord(record, all[index]!));
    check(7, `a consumer reading ${through.id} at ${secondSite} switches to ${lastSite} and continues with no gap or duplicate`, ok, `${before.length} records at ${secondSite}, then from offset ${before.length} ${afterSwitch.length} at ${lastSite}: ${read.length} of ${all.length}`);
  }
  return checks;
}
