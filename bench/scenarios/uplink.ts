/**
 * uplink: the ship-to-shore link, each figure next to what it is judged against, measured
 * in the same run. Sites run as real `portcall` processes (`edge`, `shore`) on real SQLite
 * files; the link between them is the fault proxy (tools/fault-proxy) shaped like a ship's.
 *
 * 1. Bytes on the wire per reading, the standard emulated reefer fleet (2,000 containers,
 *    one reading a minute each, bench/uplink-fleet.ts), 10,000-reading batches: version 2
 *    against gzip'd JSON lines of the same readings, and of the same records (identity,
 *    times, headers and reading: what a batch carries).
 * 2. Goodput at 2 Mbit/s and 600 ms RTT: encoded batch bytes acknowledged per second against
 *    the link's rate. The backlog is incompressible (2 KiB binary manifests) so that the
 *    link, not the CPU, is what is measured; the link's cap is set to 97% of its rate, as an
 *    operator would set it for a link of known speed.
 * 3. Alert latency over that link while a backlog of fleet readings drains: publish over
 *    MQTT on the ship → durable at the shore. The backlog is 1 GB of readings (counted as
 *    JSON, ~10 million readings) at scale 1, as issue 5 names it; `--scale 0.1` makes it 100 MB.
 * 4. Time to drain a day at sea (2,000 containers × 1 reading a minute × 24 h = 2,880,000
 *    readings) over a 10 Mbit/s link, version 2 against version 1 (gzip'd JSON) in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import type { LogRecord } from '../../core/index.js';
import { encodeBatch, encodeBatchV2 } from '../../edge/link/index.js';
import { SqliteLog } from '../../edge/log/index.js';
import { portcallEntry } from '../../tools/build-layout/index.js';
import { FaultProxy } from '../../tools/fault-proxy/index.js';
import { freeLoopbackPort } from '../../tools/net/index.js';
import type { BenchContext, Figure, Scenario } from '../harness.js';
import { fleetRecords, take } from '../uplink-fleet.js';

const PORTCALL_BIN = portcallEntry();
const SHIP = 'AURORA';
const SHORE = 'TOKYO';
const TOKEN = 'bench-uplink-token-0000001';
const CONTAINERS = 2000;
const BATCH_READINGS = 10_000;
const SATELLITE_BYTES_PER_SECOND = 2_000_000 / 8;
const SATELLITE_ONE_WAY_MS = 300;
const PORT_BYTES_PER_SECOND = 10_000_000 / 8;
/** What an operator sets as the link's cap for a link of known rate. */
const CAP_SHARE = 0.97;

interface SiteProcess {
  readonly child: ChildProcess;
  readonly httpUrl: string;
  readonly mqttPort: number | undefined;
  stop(): Promise<void>;
}

async function startSiteProcess(kind: 'edge' | 'shore', dir: string, config: Record<string, unknown>): Promise<SiteProcess> {
  const file = join(dir, `${String(config.site)}-${kind}.yaml`);
  writeFileSync(file, stringify(config));
  const child = spawn(process.execPath, [PORTCALL_BIN, kind, '--config', file], { env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const up = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} site did not start:\n${output}`)), 120_000);
    const check = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /is up.*HTTP on (http:\/\/\S+) /.exec(output);
      if (match !== null) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => reject(new Error(`${kind} site exited (${String(code)}):\n${output}`)));
  });
  const mqttPort = /MQTT on [\d.]+:(\d+)/.exec(output)?.[1];
  return {
    child,
    httpUrl: up[1]!,
    mqttPort: mqttPort === undefined ? undefined : Number(mqttPort),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

async function seed(dir: string, records: Iterator<LogRecord>, count: number): Promise<void> {
  const log = SqliteLog.open({ siteId: SHIP, path: join(dir, SHIP, 'log.sqlite') });
  try {
    for (let written = 0; written < count; ) {
      const batch = take(records, Math.min(20_000, count - written));
      if (batch.length === 0) break;
      await log.replicate(batch);
      written += batch.length;
    }
  } finally {
    await log.close();
  }
}

interface LinkView {
  readonly lag: { stream: string; records: number }[];
  readonly wireBytes: number;
  readonly recordsForwarded: number;
}

async function linkView(shipUrl: string, link = SHORE): Promise<LinkView> {
  return (await (await fetch(`${shipUrl}/v1/links/${link}`)).json()) as LinkView;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string, pollMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

function shoreConfig(dir: string, port: number): Record<string, unknown> {
  return { site: SHORE, dataDir: dir, http: { port }, ingest: { peers: [{ site: SHIP, token: TOKEN }] } };
}

function shipConfig(dir: string, links: Record<string, unknown>[]): Record<string, unknown> {
  return { site: SHIP, dataDir: dir, http: { port: 0 }, mqtt: { port: 0, auth: { allowAnonymous: true } }, links };
}

function bytesPerReading(context: BenchContext): Figure[] {
  const batches = Math.max(3, Math.round(20 * context.scale));
  context.progress(`uplink: encoding ${batches} batches of ${BATCH_READINGS} fleet readings (version 2 at brotli 11 and 5, gzip'd JSON lines)…`);
  const source = fleetRecords({ containers: CONTAINERS });
  take(source, CONTAINERS); // the first minute: every container's first reading
  let satellite = 0;
  let fast = 0;
  let readingLines = 0;
  let recordLines = 0;
  let version1 = 0;
  for (let batch = 0; batch < batches; batch += 1) {
    const records = take(source, BATCH_READINGS);
    // What compression 'auto' picks: quality 11 on a link capped at ≤ 1 Mbit/s, 5 otherwise.
    satellite += encodeBatchV2({ sender: SHIP, records }, { quality: 11 }).length;
    fast += encodeBatchV2({ sender: SHIP, records }, { quality: 5 }).length;
    version1 += encodeBatch({ sender: SHIP, records }).length;
    readingLines += gzipSync(Buffer.from(records.map((record) => `${Buffer.from(record.payload).toString()}\n`).join(''))).length;
    const lines = records.map(
      (record) =>
        `${JSON.stringify({ origin: record.origin, stream: record.stream, topic: record.topic, offset: record.offset, eventTimeMs: record.eventTimeMs, ingestTimeMs: record.ingestTimeMs, headers: record.headers, reading: JSON.parse(Buffer.from(record.payload).toString()) as unknown })}\n`,
    );
    recordLines += gzipSync(Buffer.from(lines.join(''))).length;
  }
  const readings = batches * BATCH_READINGS;
  const metric = (link: string) => `wire bytes per reading (fleet, 10k batches, ${link})`;
  return [
    { scenario: 'uplink', metric: metric('satellite link ≤ 1 Mbit/s: brotli 11'), value: satellite / readings, unit: 'B', baseline: "gzip'd JSON lines of the readings", baselineValue: readingLines / readings },
    { scenario: 'uplink', metric: metric('faster link: brotli 5'), value: fast / readings, unit: 'B', baseline: "gzip'd JSON lines of the readings", baselineValue: readingLines / readings },
    { scenario: 'uplink', metric: metric('satellite link ≤ 1 Mbit/s: brotli 11'), value: satellite / readings, unit: 'B', baseline: "gzip'd JSON lines of the records (identity, times, headers, reading)", baselineValue: recordLines / readings },
    { scenario: 'uplink', metric: metric('faster link: brotli 5'), value: fast / readings, unit: 'B', baseline: 'wire format v1 (gzip JSON, base64 payloads)', baselineValue: version1 / readings },
  ];
}

/** Incompressible manifests: the link is the bottleneck, never the CPU. */
function* binaryBacklog(): Generator<LogRecord> {
  let state = 12345;
  for (let index = 0; ; index += 1) {
    const payload = Buffer.allocUnsafe(2048);
    for (let byte = 0; byte < payload.length; byte += 4) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      payload.writeUInt32LE(state, byte);
    }
    yield { origin: SHIP, stream: 'manifests', topic: `M${index % 16}`, offset: Math.floor(index / 16), eventTimeMs: 1_767_225_600_000 + index, ingestTimeMs: 1_767_225_600_000 + index, headers: {}, payload };
  }
}

async function goodput(context: BenchContext, dir: string): Promise<Figure[]> {
  const seconds = Math.max(10, Math.round(30 * context.scale));
  const records = Math.ceil((SATELLITE_BYTES_PER_SECOND * seconds) / 2048);
  context.progress(`uplink: goodput at 2 Mbit/s, 600 ms RTT: ${records} incompressible 2 KiB records (${seconds} s of link)…`);
  await seed(dir, binaryBacklog(), records);
  const port = await freeLoopbackPort();
  const shore = await startSiteProcess('shore', dir, shoreConfig(dir, port));
  const proxy = await FaultProxy.start({ targetPort: port, latencyMs: SATELLITE_ONE_WAY_MS, bandwidthBytesPerSecond: SATELLITE_BYTES_PER_SECOND });
  let ship: SiteProcess | undefined;
  try {
    ship = await startSiteProcess('edge', dir, shipConfig(dir, [{ name: SHORE, url: proxy.url(), token: TOKEN, bandwidthBytesPerSecond: Math.floor(SATELLITE_BYTES_PER_SECOND * CAP_SHARE) }]));
    const shipUrl = ship.httpUrl;
    // Steady state: from the first acknowledgement to the last, by the link's own counters.
    await waitFor(async () => (await linkView(shipUrl)).recordsForwarded > 0, 60_000, 'first acknowledgement', 20);
    const first = { atMs: performance.now(), wireBytes: (await linkView(shipUrl)).wireBytes };
    let last = first;
    await waitFor(
      async () => {
        const view = await linkView(shipUrl);
        if (view.wireBytes > last.wireBytes) last = { atMs: performance.now(), wireBytes: view.wireBytes };
        return view.lag.every((entry) => entry.records === 0);
      },
      seconds * 4000 + 60_000,
      'the backlog to drain',
      20,
    );
    const rate = (last.wireBytes - first.wireBytes) / ((last.atMs - first.atMs) / 1000);
    return [{ scenario: 'uplink', metric: 'goodput at 2 Mbit/s, 600 ms RTT (batch bytes acknowledged)', value: rate, unit: 'B/s', baseline: 'link rate', baselineValue: SATELLITE_BYTES_PER_SECOND }];
  } finally {
    await ship?.stop();
    await shore.stop();
    await proxy.close();
  }
}

async function alertLatency(context: BenchContext, dir: string): Promise<Figure[]> {
  const backlogBytes = 1024 * 1024 * 1024 * context.scale;
  const readings = Math.round(backlogBytes / 107);
  context.progress(`uplink: alert latency while ${(backlogBytes / 2 ** 20).toFixed(0)} MB of readings (${readings}) drain over 2 Mbit/s, 600 ms RTT: seeding…`);
  await seed(dir, fleetRecords({ containers: CONTAINERS, origin: SHIP }), readings);
  const port = await freeLoopbackPort();
  const shore = await startSiteProcess('shore', dir, shoreConfig(dir, port));
  const proxy = await FaultProxy.start({ targetPort: port, latencyMs: SATELLITE_ONE_WAY_MS, bandwidthBytesPerSecond: SATELLITE_BYTES_PER_SECOND });
  let ship: SiteProcess | undefined;
  const latencies: number[] = [];
  let client: mqtt.MqttClient | undefined;
  try {
    ship = await startSiteProcess('edge', dir, shipConfig(dir, [{ name: SHORE, url: proxy.url(), token: TOKEN, bandwidthBytesPerSecond: Math.floor(SATELLITE_BYTES_PER_SECOND * CAP_SHARE) }]));
    const shipUrl = ship.httpUrl;
    await waitFor(async () => (await linkView(shipUrl)).recordsForwarded > 0, 120_000, 'the backlog to start moving');
    client = await mqtt.connectAsync(`mqtt://127.0.0.1:${ship.mqttPort!}`, { protocolVersion: 4, clientId: 'bench-alerts' });
    const alerts = 20;
    context.progress(`uplink: ${alerts} alerts, one every 500 ms…`);
    for (let alert = 0; alert < alerts; alert += 1) {
      const sentAt = performance.now();
      await client.publishAsync('bigblue/alerts/Y07', JSON.stringify({ ts: Date.now(), container: 'Y07', kind: 'shock', seq: alert }), { qos: 1 });
      await waitFor(
        async () => {
          const response = await fetch(`${shore.httpUrl}/v1/streams/alerts/topics/Y07/latest`);
          return response.ok && ((await response.json()) as { offset: number }).offset >= alert;
        },
        30_000,
        `alert ${alert}`,
        5,
      );
      latencies.push(performance.now() - sentAt);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const lag = (await linkView(shipUrl)).lag.reduce((sum, entry) => sum + entry.records, 0);
    context.progress(`uplink: ${lag} readings still to send after the last alert`);
    latencies.sort((left, right) => left - right);
    const target = 1000 + 2 * SATELLITE_ONE_WAY_MS;
    return [
      { scenario: 'uplink', metric: `alert latency p50, ${(backlogBytes / 2 ** 20).toFixed(0)} MB backlog draining, 2 Mbit/s 600 ms RTT`, value: latencies[Math.floor(latencies.length / 2)]!, unit: 'ms', baseline: 'target: 1 s + one RTT', baselineValue: target },
      { scenario: 'uplink', metric: `alert latency max, ${(backlogBytes / 2 ** 20).toFixed(0)} MB backlog draining, 2 Mbit/s 600 ms RTT`, value: latencies.at(-1)!, unit: 'ms', baseline: 'target: 1 s + one RTT', baselineValue: target },
    ];
  } finally {
    await client?.endAsync();
    await ship?.stop();
    await shore.stop();
    await proxy.close();
  }
}

async function dayAtSea(context: BenchContext, dir: string): Promise<Figure[]> {
  const readings = Math.round(CONTAINERS * 24 * 60 * context.scale);
  context.progress(`uplink: a day at sea, ${readings} readings: seeding the ship's log…`);
  await seed(dir, fleetRecords({ containers: CONTAINERS, origin: SHIP }), readings);
  const drain = async (wireVersion: 1 | 2) => {
    const shoreDir = mkdtempSync(join(tmpdir(), `portcall-bench-uplink-shore${wireVersion}-`));
    const port = await freeLoopbackPort();
    const shore = await startSiteProcess('shore', shoreDir, shoreConfig(shoreDir, port));
    const proxy = await FaultProxy.start({ targetPort: port, latencyMs: 10, bandwidthBytesPerSecond: PORT_BYTES_PER_SECOND });
    const name = `${SHORE}V${wireVersion}`;
    const startedAt = performance.now();
    const ship = await startSiteProcess(
      'edge',
      dir,
      shipConfig(dir, [{ name, url: proxy.url(), token: TOKEN, wireVersion, bandwidthBytesPerSecond: Math.floor(PORT_BYTES_PER_SECOND * CAP_SHARE) }]),
    );
    try {
      context.progress(`uplink: draining over 10 Mbit/s with wire format v${wireVersion}…`);
      await waitFor(async () => (await linkView(ship.httpUrl, name)).lag.every((entry) => entry.records === 0), 3_600_000, `the day to drain (v${wireVersion})`, 200);
      return { seconds: (performance.now() - startedAt) / 1000, wireBytes: (await linkView(ship.httpUrl, name)).wireBytes };
    } finally {
      await ship.stop();
      await shore.stop();
      await proxy.close();
      rmSync(shoreDir, { recursive: true, force: true });
    }
  };
  const version2 = await drain(2);
  const version1 = await drain(1);
  context.progress(`uplink: v2 put ${version2.wireBytes} bytes on the wire, v1 ${version1.wireBytes}`);
  return [
    { scenario: 'uplink', metric: `drain a day at sea (${readings} readings) over 10 Mbit/s, ship start to all acknowledged`, value: version2.seconds, unit: 's', baseline: 'wire format v1 (gzip JSON), same link', baselineValue: version1.seconds },
    { scenario: 'uplink', metric: 'bytes on the wire for the day', value: version2.wireBytes, unit: 'B', baseline: 'wire format v1 (gzip JSON)', baselineValue: version1.wireBytes },
  ];
}

export const uplinkScenario: Scenario = {
  name: 'uplink',
  description: 'Ship-to-shore link: bytes/reading vs gzip JSON lines, goodput and alert latency at 2 Mbit/s 600 ms RTT, a day at sea at 10 Mbit/s',
  async run(context: BenchContext): Promise<Figure[]> {
    const figures: Figure[] = [...bytesPerReading(context)];
    for (const part of [goodput, alertLatency, dayAtSea]) {
      const dir = mkdtempSync(join(tmpdir(), 'portcall-bench-uplink-'));
      try {
        figures.push(...(await part(context, dir)));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return figures;
  },
};
