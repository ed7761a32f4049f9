/**
 * customer-link: a carrier site's link to a customer's own endpoint under access control
 * (docs/ACCESS.md, "Replication to a customer's own endpoint"). Real SQLite logs at both ends,
 * the real access policy and forwarder; the link's leg is in process (the endpoint's log
 * takes each batch as from a sparse peer), so the figures are the filter's and the logs', not
 * HTTP's.
 *
 * Figures, each beside the alternative a user would pick today, in the same run:
 * - catch-up: records of the stream judged per second by a link following ToyCo's principal,
 *   against the same link with a topic-pattern filter naming ToyCo's containers
 *   (`links[].filter.topics`, no access check);
 * - widening: custody added for one container's past, time until the endpoint holds its
 *   earlier records (the rescan reads that container's topic and sends its records), against
 *   rewinding the link to the start and resending everything the customer may see (the
 *   endpoint dropping what it holds), and the records each put on the link.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signedRecord, startAccess } from '../../cloud/access/index.js';
import type { LinkFilter, LogRecord } from '../../core/index.js';
import { Forwarder, topicMatcher } from '../../edge/forwarder/index.js';
import { SqliteLog } from '../../edge/log/index.js';
import type { BenchContext, Figure, Scenario } from '../harness.js';

const KEY = Buffer.from('bench-access-key-'.repeat(3));
const T0 = Date.parse('2026-03-01T00:00:00Z');
const MINUTE = 60_000;
const audit = { by: 'bench', atMs: T0 };

async function waitUntil(condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

interface Setup {
  readonly dir: string;
  readonly tokyo: SqliteLog;
  readonly total: number;
  readonly toycoContainers: string[];
}

/** Tokyo's log: `containers` containers × `perContainer` readings; ToyCo owns every tenth, from minute `perContainer / 2` on. */
async function setUp(containers: number, perContainer: number): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-bench-customer-'));
  const tokyo = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'tokyo.sqlite'), retentionIntervalMs: 0 });
  const names = Array.from({ length: containers }, (_, i) => `C${String(i).padStart(5, '0')}`);
  const toycoContainers = names.filter((_, i) => i % 10 === 0);
  const records = [
    signedRecord(KEY, { type: 'org.set', id: 'toyco', kind: 'customer', ...audit }),
    signedRecord(KEY, { type: 'principal.set', id: 'toyco-endpoint', org: 'toyco', kind: 'service', roles: ['customer'], ...audit }),
    ...toycoContainers.map((container) =>
      signedRecord(KEY, { type: 'custody.assigned', id: `${container}-voyage`, container, org: 'toyco', as: 'owner', fromMs: T0 + (perContainer / 2) * MINUTE, ...audit }),
    ),
  ];
  await tokyo.append(records);
  for (let minute = 0; minute < perContainer; minute += 1) {
    await tokyo.append(names.map((topic) => ({ stream: 'containers', topic, eventTimeMs: T0 + minute * MINUTE, payload: Buffer.from(`{"tempC":${-18 + (minute % 10) / 10},"humidity":${60 + (minute % 7)}}`) })));
  }
  tokyo.indexNow();
  return { dir, tokyo, total: containers * perContainer, toycoContainers };
}

/** Runs a link from Tokyo to a fresh endpoint until it has judged the whole stream; records per second judged. */
async function catchUp(setup: Setup, name: string, options: { audience?: LinkFilter; include?: (record: LogRecord) => boolean; byTopic?: boolean }): Promise<{ perSecond: number; endpoint: SqliteLog; forwarder: Forwarder; sent: () => number }> {
  const endpoint = SqliteLog.open({ siteId: 'TOYCO', path: join(setup.dir, `${name}.sqlite`), retentionIntervalMs: 0 });
  let sent = 0;
  const forwarder = new Forwarder({
    linkName: name,
    source: setup.tokyo,
    sender: {
      destination: 'TOYCO',
      send: (records) => {
        sent += records.length;
        return endpoint.replicate(records, { sender: 'TOKYO', sparse: true });
      },
    },
    streams: ['containers'],
    maxBatchAgeMs: 0,
    audiencePollMs: 20,
    backlog: () => {
      const stats = setup.tokyo.streamStats('containers')!;
      return { lastPosition: stats.lastPosition, records: stats.records, bytes: stats.bytes };
    },
    ...(options.audience === undefined ? {} : { audience: options.audience }),
    ...(options.include === undefined ? {} : { include: options.include }),
    ...(options.byTopic === true ? { topicReader: setup.tokyo } : {}),
  });
  const startedAt = performance.now();
  await forwarder.start();
  await waitUntil(() => forwarder.lag().every((entry) => entry.records === 0), 600_000, `${name} to catch up`);
  return { perSecond: setup.total / ((performance.now() - startedAt) / 1000), endpoint, forwarder, sent: () => sent };
}

async function run(context: BenchContext): Promise<Figure[]> {
  const containers = 2000;
  const perContainer = Math.max(20, Math.round(100 * context.scale));
  context.progress(`customer-link: writing ${containers} containers × ${perContainer} readings at Tokyo…`);
  const setup = await setUp(containers, perContainer);
  const access = await startAccess({
    key: KEY,
    reader: setup.tokyo,
    appender: setup.tokyo,
    source: setup.tokyo,
    readRateLimit: { requests: 1e6, windowMs: 60_000 },
    adminRateLimit: { requests: 1e6, windowMs: 60_000 },
    pollIntervalMs: 50,
  });
  try {
    context.progress('customer-link: catch-up through the access policy, and through a topic pattern…');
    const audience = access.linkFilter({ principal: 'toyco-endpoint' });
    const policyLink = await catchUp(setup, 'policy', { audience, byTopic: true });
    const wanted = topicMatcher(setup.toycoContainers);
    const patternLink = await catchUp(setup, 'pattern', { include: (record) => wanted(record.topic) });
    await patternLink.forwarder.stop();
    await patternLink.endpoint.close();

    // Widening: one more ToyCo container, booked for its whole past.
    const widened = 'C00001';
    context.progress('customer-link: widening one container; rescan against rewinding and resending…');
    const heldOf = async (endpoint: SqliteLog, topic: string) => (await endpoint.readTopic('containers', topic, 0, { maxRecords: 1_000_000 })).length;
    const sentBefore = policyLink.sent();
    const widenedAt = performance.now();
    await setup.tokyo.append([signedRecord(KEY, { type: 'custody.assigned', id: 'widened', container: widened, org: 'toyco', as: 'owner', fromMs: T0, ...audit })]);
    await access.projector.catchUp();
    await waitUntil(async () => (await heldOf(policyLink.endpoint, widened)) === perContainer, 600_000, 'the rescan');
    const rescanMs = performance.now() - widenedAt;
    const rescanSent = policyLink.sent() - sentBefore;
    await policyLink.forwarder.stop();

    // The alternative: a link whose cursor starts again from 0 (a new link name) resends
    // everything the customer may see now, and the endpoint drops what it already holds.
    const resendAt = performance.now();
    let resent = 0;
    const rewound = new Forwarder({
      linkName: 'rewound',
      source: setup.tokyo,
      sender: {
        destination: 'TOYCO',
        send: (records) => {
          resent += records.length;
          return policyLink.endpoint.replicate(records, { sender: 'TOKYO', sparse: true });
        },
      },
      streams: ['containers'],
      maxBatchAgeMs: 0,
      backlog: () => {
        const stats = setup.tokyo.streamStats('containers')!;
        return { lastPosition: stats.lastPosition, records: stats.records, bytes: stats.bytes };
      },
      include: (record) => audience.admit(record) !== undefined,
    });
    await rewound.start();
    await waitUntil(() => rewound.lag().every((entry) => entry.records === 0), 600_000, 'the rewound link');
    const resendMs = performance.now() - resendAt;
    await rewound.stop();
    await policyLink.endpoint.close();
    return [
      { scenario: 'customer-link', metric: 'catch-up, records judged per second', value: policyLink.perSecond, unit: 'records/s', baseline: 'topic pattern', baselineValue: patternLink.perSecond },
      { scenario: 'customer-link', metric: 'widening one container: time to deliver its past', value: rescanMs, unit: 'ms', baseline: 'rewind and resend all admitted', baselineValue: resendMs },
      { scenario: 'customer-link', metric: 'widening one container: records sent', value: rescanSent, unit: 'records', baseline: 'rewind and resend all admitted', baselineValue: resent },
    ];
  } finally {
    access.close();
    await setup.tokyo.close();
    rmSync(setup.dir, { recursive: true, force: true });
  }
}

export const customerLinkScenario: Scenario = {
  name: 'customer-link',
  description: "a link to a customer's endpoint through the access policy: catch-up rate, and custody widened for one container (rescan against rewinding)",
  run,
};
