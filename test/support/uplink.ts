/**
 * Ship-to-shore uplink fixtures: a ship's log seeded with a fleet's records, a shore and a
 * ship run as real `portcall` processes, and a comparison of two logs record by record.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LogRecord } from '../../core/index.js';
import { SqliteLog } from '../../edge/log/index.js';
import { alertRecord, fleetRecords } from '../../bench/uplink-fleet.js';
import { seededRandom } from '../../devices/emulator/index.js';
import { freeLoopbackPort } from '../../tools/net/index.js';
import { startPortcall, writeYaml, type PortcallProcess } from './portcall-process.js';

export const SHIP = 'AURORA';
export const SHORE = 'TOKYO';
export const TOKEN = 'aurora-to-tokyo-token-0001';
export const CONTROL_TOKEN = 'aurora-link-control-token-01';

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `portcall-${prefix}-`));
}

export function logFile(dataDir: string, site: string): string {
  return join(dataDir, site, 'log.sqlite');
}

/**
 * Records a ship's log holds after a while at sea: fleet readings, and among them alerts
 * (JSON with a nested position), ship positions and binary manifests, which take the
 * generic path of the codec. Offsets are dense per topic.
 */
export function* voyageRecords(options: { containers: number; seed?: number }): Generator<LogRecord> {
  const random = seededRandom(options.seed ?? 11);
  const offsets = new Map<string, number>();
  const next = (stream: string, topic: string) => {
    const key = `${stream}/${topic}`;
    const offset = offsets.get(key) ?? 0;
    offsets.set(key, offset + 1);
    return offset;
  };
  let count = 0;
  for (const reading of fleetRecords({ containers: options.containers, origin: SHIP, seed: options.seed ?? 11 })) {
    yield reading;
    count += 1;
    if (count % 997 === 0) {
      const container = reading.topic;
      yield alertRecord(SHIP, next('alerts', container), container, reading.eventTimeMs);
    }
    if (count % 499 === 0) {
      yield {
        origin: SHIP,
        stream: 'ships',
        topic: SHIP,
        offset: next('ships', SHIP),
        eventTimeMs: reading.eventTimeMs,
        ingestTimeMs: reading.ingestTimeMs,
        headers: { 'mqtt-topic': `bigblue/ships/${SHIP}/position` },
        payload: Buffer.from(JSON.stringify({ ts: reading.eventTimeMs, position: { lat: 35.6 - count / 1e6, lon: 139.7 + count / 1e6 }, speedKn: 18.5 })),
      };
    }
    if (count % 1999 === 0) {
      const bytes = Buffer.alloc(64 + Math.floor(random() * 256));
      for (let index = 0; index < bytes.length; index += 1) bytes[index] = Math.floor(random() * 256);
      yield { origin: SHIP, stream: 'manifests', topic: `M${count % 7}`, offset: next('manifests', `M${count % 7}`), eventTimeMs: reading.eventTimeMs, ingestTimeMs: reading.ingestTimeMs, headers: {}, payload: bytes };
    }
  }
}

export interface LogDigest {
  readonly records: number;
  /** Per stream/topic: count, first and last offset, and a hash over every record in offset order. */
  readonly topics: Map<string, { count: number; first: number; last: number; hash: string }>;
  /** Problems found: an offset that skips or repeats inside a topic. */
  readonly problems: string[];
}

/** Sums up records topic by topic (each topic in offset order), so two logs compare record by record. */
class Digester {
  private readonly topics = new Map<string, { count: number; first: number; last: number; hash: ReturnType<typeof createHash> }>();
  private readonly problems: string[] = [];
  private records = 0;

  add(record: LogRecord): void {
    this.records += 1;
    const key = `${record.stream}/${record.topic}`;
    let topic = this.topics.get(key);
    if (topic === undefined) this.topics.set(key, (topic = { count: 0, first: record.offset, last: record.offset - 1, hash: createHash('sha256') }));
    if (record.offset !== topic.last + 1 && this.problems.length < 20) this.problems.push(`${key}: offset ${record.offset} after ${topic.last}`);
    topic.count += 1;
    topic.last = record.offset;
    topic.hash.update(`${record.origin}\u0000${record.offset}\u0000${record.eventTimeMs}\u0000${record.ingestTimeMs}\u0000${JSON.stringify(record.headers)}\u0000`);
    topic.hash.update(record.payload);
  }

  digest(): LogDigest {
    return {
      records: this.records,
      problems: this.problems,
      topics: new Map([...this.topics].map(([key, topic]) => [key, { count: topic.count, first: topic.first, last: topic.last, hash: topic.hash.digest('hex') }])),
    };
  }
}

/**
 * Writes `count` records into the ship's log as the ship's own (origin AURORA), in batches,
 * and returns the digest of exactly what was written (the origin side of a comparison).
 */
export async function seedShipLog(dataDir: string, records: Iterator<LogRecord>, count: number): Promise<LogDigest> {
  const log = SqliteLog.open({ siteId: SHIP, path: logFile(dataDir, SHIP) });
  const digester = new Digester();
  let written = 0;
  try {
    while (written < count) {
      const batch: LogRecord[] = [];
      while (batch.length < 20_000 && written + batch.length < count) {
        const next = records.next();
        if (next.done === true) break;
        batch.push(next.value);
      }
      if (batch.length === 0) break;
      await log.replicate(batch);
      for (const record of batch) digester.add(record);
      written += batch.length;
    }
  } finally {
    await log.close();
  }
  return digester.digest();
}

/** Reads a whole log and sums it up like seedShipLog does. */
export async function digestLog(path: string, siteId: string): Promise<LogDigest> {
  const log = SqliteLog.open({ siteId, path, indexer: 'inline', retentionIntervalMs: 0 });
  const digester = new Digester();
  try {
    for (const stream of log.listStreams()) {
      let position = 0;
      for (;;) {
        const page = await log.readStream(stream, position, { maxRecords: 20_000, maxBytes: 64 * 1024 * 1024 });
        if (page.records.length === 0) break;
        position = page.nextPosition;
        for (const record of page.records) digester.add(record);
      }
    }
  } finally {
    await log.close();
  }
  return digester.digest();
}

/** The topics whose records differ between two digests (at most `limit` of them). */
export function digestDifferences(origin: LogDigest, destination: LogDigest, limit = 10): string[] {
  const differences: string[] = [];
  for (const [key, topic] of origin.topics) {
    const copy = destination.topics.get(key);
    if (copy === undefined) differences.push(`${key}: missing at the destination`);
    else if (copy.count !== topic.count || copy.hash !== topic.hash || copy.first !== topic.first) {
      differences.push(`${key}: ${copy.count} records (${copy.first}..${copy.last}) at the destination, ${topic.count} (${topic.first}..${topic.last}) at the origin`);
    }
    if (differences.length >= limit) return differences;
  }
  for (const key of destination.topics.keys()) {
    if (!origin.topics.has(key)) differences.push(`${key}: only at the destination`);
    if (differences.length >= limit) break;
  }
  return differences;
}

export interface ShoreOptions {
  readonly port: number;
  readonly tls?: Record<string, unknown>;
  readonly ingest?: Record<string, unknown>;
}

export function startShore(dataDir: string, options: ShoreOptions): PortcallProcess {
  return startPortcall([
    'shore',
    '--config',
    writeYaml(join(dataDir, 'tokyo.yaml'), {
      site: SHORE,
      dataDir,
      http: { port: options.port },
      ingest: { peers: [{ site: SHIP, token: TOKEN }], ...(options.tls === undefined ? {} : { tls: options.tls }), ...options.ingest },
    }),
  ]);
}

export function startShip(dataDir: string, link: Record<string, unknown>, extra: Record<string, unknown> = {}): PortcallProcess {
  return startPortcall([
    'edge',
    '--config',
    writeYaml(join(dataDir, 'aurora.yaml'), {
      site: SHIP,
      dataDir,
      mqtt: { port: 0, auth: { allowAnonymous: true } },
      links: [{ name: SHORE, token: TOKEN, ...link }],
      ...extra,
    }),
  ]);
}

export { freeLoopbackPort };

/** The ship's view of its link (GET /v1/links on the ship's HTTP port). */
export async function linkStatus(shipHttpUrl: string): Promise<{ state: string; lag: { stream: string; records: number }[]; lastFailureReason: string | null; recordsForwarded: number; source: string }> {
  const response = await fetch(`${shipHttpUrl}/v1/links/${SHORE}`);
  if (!response.ok) throw new Error(`GET /v1/links/${SHORE}: HTTP ${response.status}`);
  return (await response.json()) as never;
}

/** Waits until `check` returns true, polling; throws with `describe()` after the deadline. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs: number, describe: () => string | Promise<string>, pollMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not ready yet (a process restarting): try again.
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
