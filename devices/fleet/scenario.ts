/**
 * A fleet scenario: ships with their port calls, containers with their owners and moves,
 * the events that happen to them, the ships' link windows and the faults to inject. Written as YAML, validated here with messages that
 * name the bad field; the voyage of DESIGN.md is the default (`voyageScenario()`).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { PORTS } from '../sea-lanes/index.js';
import { parseStrictYaml } from '../../core/index.js';

const portCode = z
  .string()
  .transform((code) => code.toUpperCase())
  .refine((code) => PORTS.has(code), { message: `unknown port; known: ${[...PORTS.keys()].join(', ')}` });

const entityId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" or "-", at most 64, not starting with a symbol');

/** `Y01-Y10` → Y01 … Y10 (same prefix and width); anything else is one id. */
export function expandIds(spec: string): string[] {
  const range = /^([A-Za-z_-]*)(\d+)-\1(\d+)$/.exec(spec);
  if (range === null) return [spec];
  const [, prefix, first, last] = range as unknown as [string, string, string, string];
  const width = first.length;
  const from = Number(first);
  const to = Number(last);
  if (to < from || to - from > 100_000) throw new RangeError(`bad id range ${spec}`);
  return Array.from({ length: to - from + 1 }, (_unused, index) => `${prefix}${String(from + index).padStart(width, '0')}`);
}

const whenSchema = z.union([
  z.strictObject({ ship: entityId, afterDepartureFrom: portCode, hours: z.number().nonnegative() }),
  z.strictObject({ ship: entityId, beforeArrivalAt: portCode, hours: z.number().nonnegative() }),
]);
export type When = z.infer<typeof whenSchema>;

const qos = z.union([z.literal(0), z.literal(1), z.literal(2)]);

const siteName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, '1-64 of A-Z a-z 0-9 - _ (a site name)');
/**
 * What a ship's link to a site can do in a window: `docked` (port Wi-Fi: everything goes),
 * `satellite` (alerts and the summary streams only), `none` (nothing).
 */
const linkWindow = z.enum(['docked', 'satellite', 'none']);
export type LinkWindow = z.infer<typeof linkWindow>;

export const scenarioSchema = z.strictObject({
  name: z.string().min(1).default('scenario'),
  seed: z.number().int().default(1),
  /** Simulated time at which the scenario starts (the first ship's first call). */
  start: z.iso.datetime({ offset: true }).default('2026-03-02T00:00:00Z'),
  topicPrefix: z
    .string()
    .min(1)
    .refine((prefix) => !/[#+]/.test(prefix) && !prefix.includes(String.fromCharCode(0)), 'no MQTT wildcards or NUL')
    .default('bigblue'),
  /** Simulated seconds between two readings of one container. */
  readingIntervalS: z.number().positive().default(60),
  /** Simulated seconds between two position/environment reports of a ship. */
  shipReportIntervalS: z.number().positive().default(60),
  qos: z
    .strictObject({ readings: qos.default(1), ships: qos.default(0), manifests: qos.default(2), events: qos.default(1) })
    .default({ readings: 1, ships: 0, manifests: 2, events: 1 }),
  ships: z
    .array(
      z.strictObject({
        id: entityId,
        speedKnots: z.number().positive().max(40).default(18),
        /** Port calls in order; the ship starts berthed at the first. */
        calls: z.array(z.strictObject({ port: portCode, dwellHours: z.number().positive().max(24 * 30).default(12) })).min(1),
      }),
    )
    .min(1),
  containers: z
    .array(
      z.strictObject({
        /** One id, or a range `Y01-Y10`. */
        ids: z.union([z.string(), z.array(z.string())]),
        owner: z.string().min(1),
        kind: z.enum(['reefer', 'dry']).default('dry'),
        setpointC: z.number().min(-40).max(30).default(-18),
        cargo: z.string().default('general cargo'),
        /** Where the container goes: loaded onto `ship` at `load`, unloaded at `unload`. */
        moves: z.array(z.strictObject({ ship: entityId, load: portCode, unload: portCode })).min(1),
      }),
    )
    .default([]),
  events: z
    .array(
      z.discriminatedUnion('kind', [
        z.strictObject({ kind: z.literal('door-open'), container: entityId, at: whenSchema, minutes: z.number().positive().default(20) }),
        z.strictObject({
          kind: z.literal('reefer-failure'),
          container: entityId,
          at: whenSchema,
          /** compressor: stops cooling; power: unplugged, runs on its battery; sensor: stuck value. */
          mode: z.enum(['compressor', 'power', 'sensor']).default('compressor'),
        }),
        z.strictObject({
          kind: z.literal('overboard'),
          container: entityId,
          at: whenSchema,
          /** Minutes the container's unit keeps reporting after it went over, before silence. */
          reportsForMinutes: z.number().nonnegative().default(10),
        }),
      ]),
    )
    .default([]),
  /**
   * A ship's links to sites, and which window each is in as the ship sails: berthed at the
   * link's `port`, `docked`; at sea within `coastalRangeNm` of it, `coastal`; anywhere else,
   * `elsewhere`. A link without a port (headquarters, over the satellite) is `elsewhere` all along.
   */
  links: z
    .array(
      z.strictObject({
        ship: entityId,
        site: siteName,
        port: portCode.optional(),
        docked: linkWindow.default('docked'),
        coastal: linkWindow.default('satellite'),
        elsewhere: linkWindow.default('none'),
        coastalRangeNm: z.number().nonnegative().max(2000).default(150),
      }),
    )
    .default([]),
  /** Faults to inject (by the voyage demo): a ship's gateway killed -9, a link dropped mid-transfer. */
  faults: z
    .array(
      z.discriminatedUnion('kind', [
        /** kill -9 of the ship's site process (gateway, log, links) at a moment of its voyage, restarted at once. */
        z.strictObject({ kind: z.literal('kill-gateway'), ship: entityId, at: whenSchema }),
        /** The ship's link to `site`, when it comes up docked at `port`, cut this many wall-clock ms later (each once). */
        z.strictObject({
          kind: z.literal('link-drop'),
          ship: entityId,
          site: siteName,
          port: portCode,
          afterLinkUpMs: z.array(z.number().int().nonnegative().max(600_000)).min(1),
        }),
      ]),
    )
    .default([]),
});

/** The state a link is put in for a window: everything, the urgent and summary streams only, nothing. */
export function linkStateOf(window: LinkWindow): 'up' | 'metered' | 'down' {
  return window === 'docked' ? 'up' : window === 'satellite' ? 'metered' : 'down';
}

export type Scenario = z.infer<typeof scenarioSchema>;
export type ScenarioInput = z.input<typeof scenarioSchema>;

export class ScenarioError extends Error {
  readonly code = 'BAD_SCENARIO';
}

function describeIssues(source: string, error: z.ZodError): string {
  return error.issues.map((issue) => `${source}: ${issue.path.length > 0 ? issue.path.join('.') : '(top)'}: ${issue.message}`).join('\n');
}

/** Validates a scenario document, and its cross-references (ships, ports, containers). */
export function parseScenario(document: unknown, source = 'scenario'): Scenario {
  const result = scenarioSchema.safeParse(document);
  if (!result.success) throw new ScenarioError(describeIssues(source, result.error));
  const scenario = result.data;
  const ships = new Map(scenario.ships.map((ship) => [ship.id, ship]));
  if (ships.size !== scenario.ships.length) throw new ScenarioError(`${source}: ships: ship ids must be unique`);
  const containers = new Set<string>();
  scenario.containers.forEach((group, index) => {
    for (const spec of Array.isArray(group.ids) ? group.ids : [group.ids]) {
      let ids: string[];
      try {
        ids = expandIds(spec);
      } catch (error) {
        throw new ScenarioError(`${source}: containers.${index}.ids: ${(error as Error).message}`);
      }
      for (const id of ids) {
        if (!entityId.safeParse(id).success) throw new ScenarioError(`${source}: containers.${index}.ids: bad container id ${JSON.stringify(id)}`);
        if (containers.has(id)) throw new ScenarioError(`${source}: containers.${index}.ids: container ${id} appears twice`);
        containers.add(id);
      }
    }
    group.moves.forEach((move, moveIndex) => {
      const ship = ships.get(move.ship);
      const where = `${source}: containers.${index}.moves.${moveIndex}`;
      if (ship === undefined) throw new ScenarioError(`${where}.ship: no ship ${move.ship} in ships`);
      const loadCall = ship.calls.findIndex((call) => call.port === move.load);
      if (loadCall < 0) throw new ScenarioError(`${where}.load: ${move.ship} does not call at ${move.load}`);
      if (!ship.calls.slice(loadCall + 1).some((call) => call.port === move.unload)) {
        throw new ScenarioError(`${where}.unload: ${move.ship} does not call at ${move.unload} after ${move.load}`);
      }
    });
  });
  scenario.events.forEach((event, index) => {
    const where = `${source}: events.${index}`;
    if (!containers.has(event.container)) throw new ScenarioError(`${where}.container: no container ${event.container}`);
    const ship = ships.get(event.at.ship);
    if (ship === undefined) throw new ScenarioError(`${where}.at.ship: no ship ${event.at.ship}`);
    const port = 'afterDepartureFrom' in event.at ? event.at.afterDepartureFrom : event.at.beforeArrivalAt;
    if (!ship.calls.some((call) => call.port === port)) throw new ScenarioError(`${where}.at: ${ship.id} does not call at ${port}`);
  });
  const linked = new Set<string>();
  scenario.links.forEach((link, index) => {
    const where = `${source}: links.${index}`;
    const ship = ships.get(link.ship);
    if (ship === undefined) throw new ScenarioError(`${where}.ship: no ship ${link.ship} in ships`);
    if (link.port !== undefined && !ship.calls.some((call) => call.port === link.port)) throw new ScenarioError(`${where}.port: ${link.ship} does not call at ${link.port}`);
    const key = `${link.ship}>${link.site}`;
    if (linked.has(key)) throw new ScenarioError(`${where}.site: ${link.ship} already has a link to ${link.site}`);
    linked.add(key);
  });
  scenario.faults.forEach((fault, index) => {
    const where = `${source}: faults.${index}`;
    const ship = ships.get(fault.ship);
    if (ship === undefined) throw new ScenarioError(`${where}.ship: no ship ${fault.ship} in ships`);
    if (fault.kind === 'kill-gateway') {
      if (fault.at.ship !== fault.ship) throw new ScenarioError(`${where}.at.ship: must be ${fault.ship}, the ship whose gateway is killed`);
      const port = 'afterDepartureFrom' in fault.at ? fault.at.afterDepartureFrom : fault.at.beforeArrivalAt;
      if (!ship.calls.some((call) => call.port === port)) throw new ScenarioError(`${where}.at: ${ship.id} does not call at ${port}`);
      return;
    }
    const link = scenario.links.find((candidate) => candidate.ship === fault.ship && candidate.site === fault.site);
    if (link === undefined) throw new ScenarioError(`${where}.site: ${fault.ship} has no link to ${fault.site} in links`);
    if (link.port !== fault.port) throw new ScenarioError(`${where}.port: the link ${fault.ship} → ${fault.site} is docked at ${link.port ?? 'no port'}, not ${fault.port}`);
  });
  return scenario;
}

export function loadScenarioFile(path: string): Scenario {
  let document: unknown;
  try {
    document = parseStrictYaml(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ScenarioError(`${path}: ${(error as Error).message}`);
  }
  return parseScenario(document, path);
}

/**
 * The voyage of DESIGN.md: AURORA loads ToyCo's Y01–Y10 and the carrier's B01–B05 in Tokyo,
 * unloads Y01–Y04 and loads RedCo's R01–R03 in Singapore, and unloads the rest in Sydney;
 * Y07 goes overboard six hours before Sydney.
 */
export function voyageScenario(): Scenario {
  return parseScenario(
    {
      name: 'voyage',
      seed: 20260302,
      start: '2026-03-02T00:00:00Z',
      ships: [{ id: 'AURORA', speedKnots: 18, calls: [{ port: 'JPTYO', dwellHours: 12 }, { port: 'SGSIN', dwellHours: 18 }, { port: 'AUSYD', dwellHours: 12 }] }],
      containers: [
        { ids: 'Y01-Y04', owner: 'ToyCo', kind: 'dry', cargo: 'plastic toy ducks', moves: [{ ship: 'AURORA', load: 'JPTYO', unload: 'SGSIN' }] },
        { ids: 'Y05-Y10', owner: 'ToyCo', kind: 'dry', cargo: 'plastic toy ducks', moves: [{ ship: 'AURORA', load: 'JPTYO', unload: 'AUSYD' }] },
        { ids: 'B01-B05', owner: 'BigBlue', kind: 'reefer', setpointC: -18, cargo: 'frozen fish', moves: [{ ship: 'AURORA', load: 'JPTYO', unload: 'AUSYD' }] },
        { ids: 'R01-R03', owner: 'RedCo', kind: 'reefer', setpointC: 2, cargo: 'fruit', moves: [{ ship: 'AURORA', load: 'SGSIN', unload: 'AUSYD' }] },
      ],
      events: [
        { kind: 'door-open', container: 'B02', at: { ship: 'AURORA', afterDepartureFrom: 'JPTYO', hours: 30 }, minutes: 25 },
        { kind: 'reefer-failure', container: 'B04', at: { ship: 'AURORA', afterDepartureFrom: 'SGSIN', hours: 40 }, mode: 'compressor' },
        { kind: 'overboard', container: 'Y07', at: { ship: 'AURORA', beforeArrivalAt: 'AUSYD', hours: 6 }, reportsForMinutes: 10 },
      ],
      // Port Wi-Fi when docked, alerts only within 150 nm of a port; headquarters over the satellite all along.
      links: [
        { ship: 'AURORA', site: 'TOKYO', port: 'JPTYO' },
        { ship: 'AURORA', site: 'SINGAPORE', port: 'SGSIN' },
        { ship: 'AURORA', site: 'SYDNEY', port: 'AUSYD' },
        { ship: 'AURORA', site: 'HQ', elsewhere: 'satellite' },
      ],
      faults: [
        // Mid-way to Singapore (the leg is 171 h): the ship's gateway killed -9 with a backlog aboard.
        { kind: 'kill-gateway', ship: 'AURORA', at: { ship: 'AURORA', afterDepartureFrom: 'JPTYO', hours: 77 } },
        // Singapore's port Wi-Fi drops the ship's backlog transfer twice.
        { kind: 'link-drop', ship: 'AURORA', site: 'SINGAPORE', port: 'SGSIN', afterLinkUpMs: [400, 1500] },
      ],
    },
    'voyage',
  );
}
