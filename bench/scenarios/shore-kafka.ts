/**
 * shore-kafka: records per second from a shore site's receiving endpoint into Kafka,
 * transactional and exactly once (`portcall shore` on the Kafka backend, fed over HTTP by
 * concurrent senders), next to Kafka's own producer benchmark, ProducerPerformance from the
 * same jars, on the same broker with the same 150-byte records in the same run.
 *
 * Every batch says where it sits in its sender's log (placement headers), as a forwarder's
 * do, so each transaction also moves the sender's cursor in the cursor topic.
 *
 * Also measured: the same load as one forwarder's link sends it (one HTTP/2 connection, a
 * link's default of 8 batches of 10,000 records in flight, bodies written one after another by
 * the link's own pacer), the same load from four sending sites instead of one (each site's
 * transactions go through its own producer and overlap with the others'), KafkaLog.replicate
 * called directly (no HTTP, no batch decoding), ProducerPerformance with transactions, and
 * Kafka's Java producer sending records shaped like the site's (a key and nine headers,
 * bench/java/KeyedHeaderedProducer.java): ProducerPerformance's records have neither, and
 * the broker validates those far more cheaply. The CPU seconds of the shore process and the
 * broker per 300,000 records are printed too: steadier than records/s on a shared machine.
 */
import { spawn, spawnSync } from 'node:child_process';
import { connect as connectHttp2 } from 'node:http2';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Before kafkajs: the Kafka log replaces some of kafkajs's internals as kafkajs loads them.
import { DEFAULT_KAFKA_COMPRESSION, KAFKA_COMPRESSIONS, KafkaLog, type KafkaCompression } from '../../cloud/kafka-log/index.js';
import { Kafka, logLevel } from 'kafkajs';
import { stringify } from 'yaml';

import { ConfigError, type LogRecord } from '../../core/index.js';
import { BATCH_CONTENT_TYPE, Compression, CompressionV2, decodeBatch, encodeBatch, encodeBatchV2, Pacer, type Batch } from '../../edge/link/index.js';
import { portcallEntry, sourceFile } from '../../tools/build-layout/index.js';
import { ensureKafkaJars, startKafkaBroker, type KafkaBroker } from '../../tools/kafka/index.js';
import { choiceFromEnvironment, wholeNumberFromEnvironment, type BenchContext, type Figure, type Scenario } from '../harness.js';

const RECORD_BYTES = 150;
const PARTITIONS = 6;
/**
 * Containers the records are spread over (`PORTCALL_SHORE_KAFKA_CONTAINERS`, default 1,000).
 * More containers means shorter runs of one container per batch, as a real fleet sends (a
 * container reports now and then, so a 10,000-record batch holds a few records of each):
 * per-run costs (the topic index, high-water entries, record tails) then weigh more.
 */
let containersSetting: number | undefined;
/** Read when the scenario runs, so a bad value fails this scenario and not `bench` of another. */
function containerCount(): number {
  return (containersSetting ??= wholeNumberFromEnvironment('PORTCALL_SHORE_KAFKA_CONTAINERS', 1_000, 1, 100_000));
}

const SENDERS = 4;
/** Each of the SENDERS senders' batch size (half a link's default; see LINK_BATCH_RECORDS). */
const BATCH_RECORDS = 5_000;
/** A link's defaults (site config links[].maxBatchRecords and maxInFlightBatches): what one forwarder sends. */
const LINK_BATCH_RECORDS = 10_000;
const LINK_IN_FLIGHT = 8;
const TOKEN = 'bench-shore-kafka-token-0001';
/** The sending sites of the many-senders run, one per slice of the containers. */
const SITES = ['AURORA', 'BOREALIS', 'CALYPSO', 'DORADO'];
const PORTCALL_BIN = portcallEntry();

function payloadFor(i: number): Uint8Array {
  const body = Buffer.alloc(RECORD_BYTES, 0x20);
  body.write(`{"seq":${i},"tempC":-18.25,"setpointC":-18,"humidityPct":81.5,"door":"closed"}`);
  return body;
}

/** Record i of the origin log: container i % containerCount(), at offset floor(i / containerCount()). */
function originRecord(i: number): LogRecord {
  const container = i % containerCount();
  const topic = `C${String(container).padStart(4, '0')}`;
  return {
    origin: 'AURORA',
    stream: 'containers',
    topic,
    offset: Math.floor(i / containerCount()),
    eventTimeMs: 1_763_769_600_000 + i,
    ingestTimeMs: 1_763_769_600_000 + i,
    headers: { 'mqtt-topic': `bigblue/containers/${topic}/reefer` },
    payload: payloadFor(i),
  };
}

/**
 * The origin log split among senders by container (sender s owns containers c with
 * c % SENDERS === s), each sender's part in order, in batches of BATCH_RECORDS: concurrent
 * senders never race on one container, as concurrent links never do.
 */
function senderBatches(records: number): LogRecord[][][] {
  const perSender: LogRecord[][] = Array.from({ length: SENDERS }, () => []);
  for (let i = 0; i < records; i++) perSender[(i % containerCount()) % SENDERS]!.push(originRecord(i));
  return perSender.map((list) => {
    const batches: LogRecord[][] = [];
    for (let start = 0; start < list.length; start += BATCH_RECORDS) batches.push(list.slice(start, start + BATCH_RECORDS));
    return batches;
  });
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc (Linux; the unit is
 * USER_HZ, 100 on every Linux we run on); undefined where /proc is not there. CPU per record
 * is steadier than records/s on a shared machine: it moves less with the other load.
 */
function cpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (in parentheses, which may contain spaces): utime is the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds per thread group of a process (Linux /proc/PID/task/TID/stat; thread names
 * with their trailing numbers dropped, so "data-plane-kafka-request-handler-3" counts with
 * the other request handlers). For `PORTCALL_SHORE_KAFKA_THREADS=1`: where the broker's CPU
 * goes in each part.
 */
function threadCpuOf(pid: number | undefined): Map<string, number> {
  const groups = new Map<string, number>();
  if (pid === undefined) return groups;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return groups;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/[-#\s]*\d+$/, '').replace(/\d+/g, 'N');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      groups.set(name, (groups.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return groups;
}

/** Starts counting; the returned function says the busiest thread groups since, as text. */
function threadMeter(pid: number | undefined): () => string {
  const start = threadCpuOf(pid);
  return () => {
    const now = threadCpuOf(pid);
    const used = [...now].map(([name, seconds]) => [name, seconds - (start.get(name) ?? 0)] as const).filter(([, seconds]) => seconds >= 0.02);
    used.sort((a, b) => b[1] - a[1]);
    return used.map(([name, seconds]) => `${name} ${seconds.toFixed(2)}`).join(', ');
  };
}

const THREADS = process.env.PORTCALL_SHORE_KAFKA_THREADS === '1';

/** CPU seconds of this process (the bench's senders, or KafkaLog.replicate) so far. */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** CPU used by each named process over a measured stretch. */
type CpuUse = Record<string, number | undefined>;

/**
 * CPU seconds of a JVM's JIT compiler threads so far (HotSpot names them "C1 CompilerThreadN"
 * and "C2 CompilerThreadN"). HotSpot adds and retires compiler threads as it needs them, and a
 * retired thread's CPU leaves the sum: a difference of two readings is a lower bound.
 */
function jitCpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  let seconds = 0;
  for (const [name, used] of threadCpuOf(pid)) if (name.startsWith('CN CompilerThre')) seconds += used;
  return seconds;
}

/**
 * Counts CPU from now on: each named process's, and for the broker its JIT compiler's share
 * (`broker JIT`). A broker a few minutes old still compiles its code as the load reaches it:
 * measured on the seventeenth machine (2026-11-24) it spent 0.45-1.0 of its 1.2-1.7 CPU-s of an
 * endpoint run in C1/C2, on the same two cores as the shore. Printed so a slow run can be told from a slow shore.
 */
function cpuMeter(pids: Record<string, number | undefined>): () => CpuUse {
  const start = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, pid === undefined ? ownCpuSeconds() : cpuSecondsOf(pid)]));
  const jitStart = jitCpuSecondsOf(pids.broker);
  const threads = THREADS ? Object.entries(pids).flatMap(([name, pid]) => (pid === undefined ? [] : [[name, threadMeter(pid)] as const])) : [];
  return () => {
    for (const [name, report] of threads) process.stderr.write(`shore-kafka: ${name} CPU-s by thread: ${report()}\n`);
    const use: CpuUse = Object.fromEntries(
      Object.entries(pids).map(([name, pid]) => {
        const now = pid === undefined ? ownCpuSeconds() : cpuSecondsOf(pid);
        const before = start[name];
        return [name, now === undefined || before === undefined ? undefined : now - before];
      }),
    );
    const jitNow = jitCpuSecondsOf(pids.broker);
    if (jitNow !== undefined && jitStart !== undefined) use['broker JIT'] = Math.max(0, jitNow - jitStart);
    return use;
  };
}

function describeCpu(use: CpuUse, records: number): string {
  return Object.entries(use)
    .map(([name, seconds]) => `${name} ${seconds === undefined ? 'n/a' : `${seconds.toFixed(2)} CPU-s (${((seconds / records) * 1e6).toFixed(1)} µs/record)`}`)
    .join(', ');
}

/** Runs Kafka's ProducerPerformance and parses its summary line into records/s. */
async function producerPerformance(libsDir: string, bootstrap: string, topic: string, records: number, extra: string[]): Promise<number> {
  const args = [
    '-cp',
    join(libsDir, '*'),
    'org.apache.kafka.tools.ProducerPerformance',
    '--topic',
    topic,
    '--num-records',
    String(records),
    '--record-size',
    String(RECORD_BYTES),
    '--throughput',
    '-1',
    '--producer-props',
    `bootstrap.servers=${bootstrap}`,
    'acks=all',
    ...extra,
  ];
  return runJavaProducer('ProducerPerformance', args);
}

/** The Java source of the keyed, headered producer (bench/java; the build does not copy it). */
function keyedProducerSource(): string {
  const path = sourceFile('bench/java/KeyedHeaderedProducer.java');
  if (!existsSync(path)) throw new Error(`${path} not found`);
  return path;
}

/**
 * Kafka's Java producer with records shaped like the Kafka log's (key and nine headers), run
 * from its source file (Java 11+ compiles it in memory) against the broker's jars.
 */
async function keyedProducer(libsDir: string, bootstrap: string, topic: string, records: number, producerProperties: readonly string[] = []): Promise<number> {
  const args = ['-cp', join(libsDir, '*'), keyedProducerSource(), bootstrap, topic, String(records), String(RECORD_BYTES), String(containerCount()), ...producerProperties];
  return runJavaProducer('KeyedHeaderedProducer', args);
}

/** Runs a Java producer benchmark and parses its last "N records sent, X records/sec" line. */
async function runJavaProducer(name: string, args: string[]): Promise<number> {
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn('java', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`${name} exited ${String(code)}:\n${text.slice(-2000)}`))));
  });
  // "1000000 records sent, 102722.136620 records/sec (14.69 MB/sec), 1592.29 ms avg latency, ..."
  const summary = /(\d+) records sent, ([\d.]+) records\/sec/.exec(output.split('\n').filter((line) => line.includes('records sent')).at(-1) ?? '');
  if (summary === null) throw new Error(`no summary line in ${name} output:\n${output.slice(-2000)}`);
  return Number(summary[2]);
}

async function createTopics(bootstrap: string, topics: string[]): Promise<void> {
  const admin = new Kafka({ clientId: 'bench-admin', brokers: [bootstrap], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: topics.map((topic) => ({ topic, numPartitions: PARTITIONS })) });
  } finally {
    await admin.disconnect();
  }
}

/**
 * The senders' wire format: 2, the columnar format links send by default, unless
 * `PORTCALL_SHORE_KAFKA_WIRE=1` (generic JSON with base64 payloads, which this bench sent
 * until 2026-11-22 17:00). Uncompressed either way: the figure is the receiving side's.
 */
function wireVersion(): '1' | '2' {
  return choiceFromEnvironment('PORTCALL_SHORE_KAFKA_WIRE', ['1', '2'] as const, '2');
}

/**
 * How the shore (and `replicate`) compress the batches they write to Kafka
 * (`PORTCALL_SHORE_KAFKA_COMPRESSION`: lz4, the site's default, gzip or none), to compare.
 */
function shoreCompression(): KafkaCompression {
  return choiceFromEnvironment('PORTCALL_SHORE_KAFKA_COMPRESSION', KAFKA_COMPRESSIONS, DEFAULT_KAFKA_COMPRESSION);
}

function encodeBody(batch: Batch): Buffer {
  const version = wireVersion();
  return version === '2' ? encodeBatchV2(batch, { compression: CompressionV2.None }) : encodeBatch(batch, Compression.None);
}

interface ShoreRun {
  readonly rate: number;
  readonly commits: number;
  /** CPU over the measured stretch: the shore (or this process), the broker, the senders. */
  readonly cpu: CpuUse;
}

/**
 * Writes the page cache's dirty pages out before a measured part. Every part before it left
 * hundreds of megabytes of Kafka segments dirty (900 MB after the Java producers' runs,
 * 2026-11-23), and the kernel wrote them back during whatever part came next: that part paid
 * for its predecessor's disk. Each measured part, the baseline's included, starts on a quiet disk.
 */
function settleDisk(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

/** Kafka transactions the shore committed, from its health report. */
async function commitsOf(url: string): Promise<number> {
  const health = (await (await fetch(new URL('/healthz', url))).json()) as { components: { details?: { commits?: number } }[] };
  return health.components[0]?.details?.commits ?? 0;
}

/** The origin log in its own order, in batches of LINK_BATCH_RECORDS, as one forwarder reads it. */
function linkBatches(records: number): LogRecord[][] {
  const batches: LogRecord[][] = [];
  for (let start = 0; start < records; start += LINK_BATCH_RECORDS) {
    const batch: LogRecord[] = [];
    for (let i = start; i < Math.min(records, start + LINK_BATCH_RECORDS); i++) batch.push(originRecord(i));
    batches.push(batch);
  }
  return batches;
}

/**
 * Posts pre-encoded batches the way a forwarder's HTTP/2 link does: one connection, up to
 * LINK_IN_FLIGHT batches in flight in log order, each saying where it sits in the sender's
 * stream and how far the sender's acknowledged prefix reaches. A refused batch (503: Kafka
 * behind) and everything sent after it is sent again from that batch, as the forwarder starts
 * a lane again from its cursor.
 */
async function sendAsLink(url: string, bodies: readonly Buffer[], incarnation: string): Promise<Map<string, number>> {
  const refusals = new Map<string, number>();
  const session = connectHttp2(url);
  session.on('error', () => undefined);
  try {
    // Bodies strictly one after another, as the link's pacer writes them (uncapped here): the
    // receiver then sees a stream's batches complete in the order they were read.
    const pacer = new Pacer(undefined);
    const post = (k: number, acked: number) =>
      new Promise<number>((resolve, reject) => {
        const stream = session.request(
          {
            ':method': 'POST',
            ':path': '/v1/batches',
            'content-type': BATCH_CONTENT_TYPE,
            'content-length': String(bodies[k]!.length),
            authorization: `Bearer ${TOKEN}-AURORA`,
            'pc-stream': 'containers',
            'pc-incarnation': incarnation,
            'pc-from': String(k * LINK_BATCH_RECORDS),
            'pc-to': String((k + 1) * LINK_BATCH_RECORDS),
            'pc-acked': String(acked * LINK_BATCH_RECORDS),
          },
          { endStream: false },
        );
        let status = 0;
        let text = '';
        stream.on('response', (headers) => (status = Number(headers[':status'])));
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => (text += chunk));
        stream.on('end', () => {
          if (status === 200) return resolve(status);
          if (status === 503 || status === 409) {
            const what = `${status} ${text.slice(0, 60)}`;
            refusals.set(what, (refusals.get(what) ?? 0) + 1);
            return resolve(status);
          }
          reject(new Error(`batch refused: HTTP ${status} ${text}`));
        });
        stream.on('error', reject);
        pacer.send(stream, bodies[k]!, false).catch(reject);
      });
    let acked = 0; // batches acknowledged without a gap before them
    let restarts = 0;
    while (acked < bodies.length) {
      const flights: Promise<number>[] = [];
      let next = acked;
      let failed = false;
      // Keep LINK_IN_FLIGHT out; each answer, in order, moves the acknowledged prefix.
      while (!failed && acked < bodies.length) {
        while (next < bodies.length && next - acked < LINK_IN_FLIGHT) flights.push(post(next++, acked));
        const status = await flights.shift()!;
        if (status !== 200) failed = true;
        else acked += 1;
      }
      if (failed) {
        if (++restarts > 200) throw new Error(`the link started again 200 times at batch ${acked} of ${bodies.length}`);
        await Promise.allSettled(flights);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return refusals;
  } finally {
    await new Promise<void>((resolve) => session.close(() => resolve()));
  }
}

/**
 * How `measureEndpoint` feeds the endpoint: `senders`, SENDERS HTTP/1.1 senders of one site with a
 * BATCH_RECORDS-record batch in flight each; `sites`, the same from SENDERS sites; `link`, one
 * site over one HTTP/2 connection with a link's defaults (LINK_IN_FLIGHT batches of
 * LINK_BATCH_RECORDS in flight), as a forwarder sends.
 */
type SenderShape = 'senders' | 'sites' | 'link';

/** `portcall shore` on the Kafka backend in its own process, fed as `shape` says. */
async function measureEndpoint(broker: KafkaBroker, records: number, progress: (line: string) => void, shape: SenderShape): Promise<ShoreRun> {
  const manySites = shape === 'sites';
  const dataDir = mkdtempSync(join(tmpdir(), 'portcall-bench-shore-kafka-'));
  const run = randomBytes(3).toString('hex');
  const config = join(dataDir, 'shore.yaml');
  writeFileSync(
    config,
    stringify({
      site: `BENCH${run}`,
      dataDir,
      log: { backend: 'kafka', kafka: { brokers: [broker.bootstrap], topicPrefix: `bench${run}`, partitions: PARTITIONS, compression: shoreCompression() } },
      http: { host: '127.0.0.1', port: 0 },
      ingest: { peers: (manySites ? SITES : ['AURORA']).map((site) => ({ site, token: `${TOKEN}-${site}` })) },
      // The endpoint into Kafka is what is measured: the portal (on by default at shore sites,
      // Kafka-backed ones too since they offer a StreamSource) would fold every record as well.
      portal: { enabled: false },
    }),
  );
  // `PORTCALL_SHORE_KAFKA_CPU_PROFILE_DIR=DIR`: each shore started writes a V8 CPU profile
  // there when it stops (NODE_OPTIONS refuses --cpu-prof).
  const profileDir = process.env.PORTCALL_SHORE_KAFKA_CPU_PROFILE_DIR?.trim();
  const nodeArgs = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const child = spawn(process.execPath, [...nodeArgs, PORTCALL_BIN, 'shore', '--config', config], {
    env: { ...process.env, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => reject(new Error(`portcall shore did not start:\n${output}`)), 60_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const match = /HTTP on (http:\/\/[\d.]+:\d+)/.exec(output);
        if (match !== null) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => reject(new Error(`portcall shore exited ${String(code)}:\n${output}`)));
    });
    if (shape === 'link') {
      progress(`shore-kafka: encoding ${records} records into batches of ${LINK_BATCH_RECORDS} for one link…`);
      const bodies = linkBatches(records).map((batch) => encodeBody({ sender: 'AURORA', records: batch }));
      progress(`shore-kafka: posting ${records} records to ${url} over one HTTP/2 connection, ${LINK_IN_FLIGHT} batches in flight…`);
      settleDisk();
      const cpu = cpuMeter({ shore: child.pid, broker: broker.pid, senders: undefined });
      const startedAt = performance.now();
      const refusals = await sendAsLink(url, bodies, `bench-${run}`);
      const rate = records / ((performance.now() - startedAt) / 1000);
      const used = cpu();
      // Each refusal made the link send again from the refused batch, as a forwarder does.
      for (const [what, count] of refusals) progress(`shore-kafka: link: ${count} × refused (${what}…), sent again`);
      return { rate, commits: await commitsOf(url), cpu: used };
    }
    progress(`shore-kafka: encoding ${records} records into batches of ${BATCH_RECORDS} for ${SENDERS} senders${manySites ? ' (one site each)' : ''}…`);
    // Encoded before the clock starts: the figure is the receiving side's.
    const bodies = senderBatches(records).map((batches, s) => {
      const site = manySites ? SITES[s]! : 'AURORA';
      return batches.map((batch, k) => ({
        site,
        // Where the batch sits in its sender's log: one position stream per sender loop.
        placement: {
          'pc-stream': `containers-${s}`,
          'pc-incarnation': `bench-${run}`,
          'pc-from': String(k * BATCH_RECORDS),
          'pc-to': String(k * BATCH_RECORDS + batch.length),
          'pc-acked': String(k * BATCH_RECORDS),
        },
        body: encodeBody({ sender: site, records: manySites ? batch.map((record) => ({ ...record, origin: site })) : batch }),
      }));
    });
    progress(`shore-kafka: posting ${records} records to ${url} (portcall shore, Kafka backend)…`);
    settleDisk();
    const cpu = cpuMeter({ shore: child.pid, broker: broker.pid, senders: undefined });
    const startedAt = performance.now();
    await Promise.all(
      bodies.map(async (batches) => {
        for (const { site, placement, body } of batches) {
          for (;;) {
            const response = await fetch(new URL('/v1/batches', url), {
              method: 'POST',
              headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${TOKEN}-${site}`, ...placement },
              body,
            });
            const text = await response.text();
            if (response.status === 200) break;
            // Kafka behind (503): resend, as a forwarder does.
            if (response.status !== 503) throw new Error(`batch refused: HTTP ${response.status} ${text}`);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
      }),
    );
    const rate = records / ((performance.now() - startedAt) / 1000);
    const used = cpu();
    return { rate, commits: await commitsOf(url), cpu: used };
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * The records as the endpoint hands them to the log: each batch through the senders' wire
 * format and back, decoded before the clock starts. Wire format 2 groups a batch's records by
 * topic, as links send them; `senderBatches` interleaves the containers, and fed that order
 * the log built no tail template and hashed a partition per record: 10.4-14.6 µs/record in
 * this process against 6.7-9.2 for the endpoint's shore (2026-11-24).
 */
function decodedSenderBatches(records: number): (readonly LogRecord[])[][] {
  return senderBatches(records).map((batches) =>
    batches.map((batch) => decodeBatch(encodeBody({ sender: 'AURORA', records: batch }), { maxDecompressedBytes: 1 << 30, maxRecords: batch.length }).records),
  );
}

/** KafkaLog.replicate in this process, no HTTP and no batch decoding: the Kafka write path alone. */
async function measureReplicate(broker: KafkaBroker, records: number): Promise<ShoreRun> {
  const run = randomBytes(3).toString('hex');
  const log = await KafkaLog.open({
    siteId: `BENCHDIRECT${run}`,
    brokers: [broker.bootstrap],
    topicPrefix: `benchdirect${run}`,
    streams: ['containers'],
    partitions: PARTITIONS,
    compression: shoreCompression(),
  });
  try {
    const perSender = decodedSenderBatches(records);
    settleDisk();
    const cpu = cpuMeter({ replicate: undefined, broker: broker.pid });
    const startedAt = performance.now();
    await Promise.all(
      perSender.map(async (batches) => {
        for (const batch of batches) await log.replicate(batch);
      }),
    );
    const rate = records / ((performance.now() - startedAt) / 1000);
    return { rate, commits: Number(log.health().details?.commits ?? 0), cpu: cpu() };
  } finally {
    await log.close();
  }
}

/** Containers read at once in the read part, as a portal's users ask for theirs. */
const READERS = 4;

interface ReadRuns {
  /** Every container's whole history through `readTopic`, READERS at a time. */
  readonly histories: { readonly rate: number; readonly cpu: CpuUse };
  /** The stream in the site's commit order through `readStream` (forwarding onward, customer topics). */
  readonly stream: { readonly rate: number; readonly cpu: CpuUse };
  /** Kafka's ConsumerPerformance reading the whole data topic, read_committed (the baseline). */
  readonly consumerPerformance: number;
}

/**
 * Reads back what a Kafka-backed site holds, the ways a site reads: each container's history
 * (the portal, replication onward: the topic index's spans, then fetches that decode every
 * record of the batches they return, other containers' too) and the whole stream in commit
 * order (the journals). The records are written first by `replicate`, not measured. Every
 * read is checked for its count: a rate of a short read would be no figure at all.
 */
async function measureReads(broker: KafkaBroker, libsDir: string, records: number, progress: (line: string) => void): Promise<ReadRuns> {
  const run = randomBytes(3).toString('hex');
  const topicPrefix = `benchread${run}`;
  const log = await KafkaLog.open({
    siteId: `BENCHREAD${run}`,
    brokers: [broker.bootstrap],
    topicPrefix,
    streams: ['containers'],
    partitions: PARTITIONS,
    compression: shoreCompression(),
  });
  try {
    progress(`shore-kafka: writing ${records} records to read back (replicate, not measured)…`);
    await Promise.all(
      decodedSenderBatches(records).map(async (batches) => {
        for (const batch of batches) await log.replicate(batch);
      }),
    );
    const topics = log.listTopics('containers').map((entry) => entry.topic);
    const expectCount = (what: string, count: number) => {
      if (count !== records) throw new Error(`shore-kafka: ${what} read ${count} records of the ${records} written`);
    };

    progress(`shore-kafka: reading ${topics.length} containers' histories, ${READERS} at a time…`);
    settleDisk();
    let cpu = cpuMeter({ shore: undefined, broker: broker.pid });
    let startedAt = performance.now();
    let historyRecords = 0;
    const queue = [...topics];
    await Promise.all(
      Array.from({ length: READERS }, async () => {
        for (let topic = queue.shift(); topic !== undefined; topic = queue.shift()) {
          for (let from = 0; ; ) {
            const page = await log.readTopic('containers', topic, from);
            if (page.length === 0) break;
            historyRecords += page.length;
            from = page[page.length - 1]!.offset + 1;
          }
        }
      }),
    );
    const histories = { rate: historyRecords / ((performance.now() - startedAt) / 1000), cpu: cpu() };
    expectCount('the container histories', historyRecords);

    progress('shore-kafka: reading the stream in commit order…');
    settleDisk();
    cpu = cpuMeter({ shore: undefined, broker: broker.pid });
    startedAt = performance.now();
    let streamRecords = 0;
    for (let position = 0; ; ) {
      const page = await log.readStream('containers', position);
      if (page.records.length === 0) break;
      streamRecords += page.records.length;
      position = page.nextPosition;
    }
    const stream = { rate: streamRecords / ((performance.now() - startedAt) / 1000), cpu: cpu() };
    expectCount('the stream', streamRecords);

    progress('shore-kafka: ConsumerPerformance reading the same topic, read_committed…');
    settleDisk();
    const consumerRate = await consumerPerformance(libsDir, broker.bootstrap, `${topicPrefix}.containers`, records);
    return { histories, stream, consumerPerformance: consumerRate };
  } finally {
    await log.close();
  }
}

/**
 * Runs Kafka's ConsumerPerformance over a whole topic, read_committed, and returns its
 * fetch.nMsg.sec: records/s while fetching, without the consumer group's join before it.
 */
async function consumerPerformance(libsDir: string, bootstrap: string, topic: string, records: number): Promise<number> {
  const configDir = mkdtempSync(join(tmpdir(), 'portcall-consumer-perf-'));
  try {
    const config = join(configDir, 'consumer.properties');
    writeFileSync(config, 'isolation.level=read_committed\n');
    const output = await new Promise<string>((resolve, reject) => {
      const args = ['-cp', join(libsDir, '*'), 'org.apache.kafka.tools.ConsumerPerformance', '--bootstrap-server', bootstrap, '--topic', topic, '--messages', String(records), '--consumer.config', config, '--timeout', '30000'];
      const child = spawn('java', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`ConsumerPerformance exited ${String(code)}:\n${text.slice(-2000)}`))));
    });
    // A header line naming the columns, then one line of values.
    const lines = output.split('\n').map((line) => line.trim());
    const headerIndex = lines.findIndex((line) => line.startsWith('start.time'));
    const names = (lines[headerIndex] ?? '').split(',').map((name) => name.trim());
    const values = (lines[headerIndex + 1] ?? '').split(',').map((value) => value.trim());
    const consumed = Number(values[names.indexOf('data.consumed.in.nMsg')]);
    const rate = Number(values[names.indexOf('fetch.nMsg.sec')]);
    if (headerIndex < 0 || !Number.isFinite(rate) || rate <= 0) throw new Error(`no summary in ConsumerPerformance output:\n${output.slice(-2000)}`);
    if (consumed !== records) throw new Error(`ConsumerPerformance read ${consumed} records of the ${records} written`);
    return rate;
  } finally {
    rmSync(configDir, { recursive: true, force: true });
  }
}

const CPU_PER_RECORDS = 300_000;
/** Records the broker takes before anything is measured. */
const WARMUP_RECORDS = 1_000_000;

/** CPU-s per 300,000 records of the shore and the broker in an endpoint run, the broker's next to its CPU under ProducerPerformance. */
function cpuFigures(use: CpuUse, records: number, baselineBroker: number | undefined, baselineRecords: number, run: string): Figure[] {
  const per = (seconds: number, count: number) => (seconds * CPU_PER_RECORDS) / count;
  const figures: Figure[] = [];
  if (use.shore !== undefined) {
    figures.push({ scenario: 'shore-kafka', metric: `shore process CPU per ${CPU_PER_RECORDS.toLocaleString('en-US')} records (endpoint, ${run})`, value: per(use.shore, records), unit: 'CPU-s' });
  }
  if (use.broker !== undefined) {
    figures.push({
      scenario: 'shore-kafka',
      metric: `broker CPU per ${CPU_PER_RECORDS.toLocaleString('en-US')} records (endpoint, ${run})`,
      value: per(use.broker, records),
      unit: 'CPU-s',
      ...(baselineBroker === undefined ? {} : { baseline: 'broker CPU under ProducerPerformance', baselineValue: per(baselineBroker, baselineRecords) }),
    });
  }
  return figures;
}

/**
 * How many times the endpoint part is measured (`PORTCALL_SHORE_KAFKA_ENDPOINT_RUNS`, default
 * 1), each with its own shore process on the same broker; the figure is the median run's.
 * Single runs of it moved by ±20% on the shared machine.
 */
function endpointRuns(): number {
  return wholeNumberFromEnvironment('PORTCALL_SHORE_KAFKA_ENDPOINT_RUNS', 1, 1, 9);
}

/** The parts of the scenario, all by default; `PORTCALL_SHORE_KAFKA_PARTS=endpoint,sites` runs only those (for profiling one). */
const PARTS = ['producer-performance', 'keyed-headers', 'transactions', 'endpoint', 'link', 'sites', 'replicate', 'read'] as const;
type Part = (typeof PARTS)[number];

function partsToRun(): ReadonlySet<Part> {
  const chosen = process.env.PORTCALL_SHORE_KAFKA_PARTS?.trim();
  if (chosen === undefined || chosen === '') return new Set(PARTS);
  const names = chosen.split(',').map((name) => name.trim());
  const unknown = names.filter((name) => !(PARTS as readonly string[]).includes(name));
  if (unknown.length > 0) throw new ConfigError(`PORTCALL_SHORE_KAFKA_PARTS: unknown part(s) ${unknown.join(', ')}; the parts are ${PARTS.join(', ')}`);
  return new Set(names as Part[]);
}

export const shoreKafkaScenario: Scenario = {
  name: 'shore-kafka',
  description: "Records/s from the receiving endpoint into Kafka (transactional, 150-byte records) vs Kafka's ProducerPerformance on the same broker",
  async run(context: BenchContext): Promise<Figure[]> {
    const records = Math.round(300_000 * context.scale);
    const baselineRecords = Math.round(1_000_000 * context.scale);
    const parts = partsToRun();
    // Every knob read before the broker starts: a bad one stops the run now, not minutes in.
    containerCount();
    endpointRuns();
    wireVersion();
    const compression = shoreCompression();
    const libsDir = await ensureKafkaJars({ onProgress: (line) => context.progress(`shore-kafka: ${line}`) });
    context.progress('shore-kafka: starting a Kafka broker (1 GiB heap)…');
    const broker = await startKafkaBroker({ heapMb: 1024 });
    const figures: Figure[] = [];
    const baseline = 'Kafka ProducerPerformance (Java, acks=all)';
    try {
      await createTopics(broker.bootstrap, ['bench-pp-warmup', 'bench-pp', 'bench-pp-compressed', 'bench-pp-keyed', 'bench-pp-keyed-compressed', 'bench-pp-txn']);
      // A fresh broker runs its produce path interpreted and compiles it as it goes: measured
      // first, ProducerPerformance came out 1.4x below the transactional run that followed it
      // (2026-11-22). Warmed up, the baseline is the broker's real speed.
      if (parts.has('producer-performance') || parts.has('keyed-headers') || parts.has('transactions')) {
        context.progress(`shore-kafka: warming the broker up (ProducerPerformance, ${WARMUP_RECORDS} records, not measured)…`);
        await producerPerformance(libsDir, broker.bootstrap, 'bench-pp-warmup', WARMUP_RECORDS, []);
      }
      /** One Java producer run, measured on a quiet disk with the broker's CPU, announced before and after. */
      const measureJava = async (starting: string, done: string, run: () => Promise<number>): Promise<{ rate: number; brokerCpu: number | undefined }> => {
        context.progress(`shore-kafka: ${starting}…`);
        settleDisk();
        const cpu = cpuMeter({ broker: broker.pid });
        const rate = await run();
        const use = cpu();
        context.progress(`shore-kafka: ${done} ${Math.round(rate)} records/s (${describeCpu(use, baselineRecords)})`);
        return { rate, brokerCpu: use.broker };
      };
      let plain: number | undefined;
      let plainBrokerCpu: number | undefined;
      if (parts.has('producer-performance')) {
        ({ rate: plain, brokerCpu: plainBrokerCpu } = await measureJava(
          `ProducerPerformance, ${baselineRecords} records of ${RECORD_BYTES} bytes, acks=all`,
          'ProducerPerformance',
          () => producerPerformance(libsDir, broker.bootstrap, 'bench-pp', baselineRecords, []),
        ));
      }
      const against = (): Pick<Figure, 'baseline' | 'baselineValue'> => (plain === undefined ? {} : { baseline, baselineValue: plain });
      let compressedFigure: Figure | undefined;
      if (parts.has('producer-performance') && compression !== 'none') {
        // The shore compresses; ProducerPerformance does not by default. Compressed, its random
        // values shrink little, so the producer pays for compressing and gains little: the
        // plain run stays the baseline, and this one shows it.
        const { rate } = await measureJava(`ProducerPerformance with compression.type=${compression}`, `ProducerPerformance, ${compression}:`, () =>
          producerPerformance(libsDir, broker.bootstrap, 'bench-pp-compressed', baselineRecords, [`compression.type=${compression}`]),
        );
        compressedFigure = { scenario: 'shore-kafka', metric: `ProducerPerformance with compression.type=${compression}`, value: rate, unit: 'records/s', ...against() };
      }
      let keyedFigure: Figure | undefined;
      if (parts.has('keyed-headers')) {
        const { rate: keyed, brokerCpu: keyedBrokerCpu } = await measureJava(
          `Kafka's Java producer with records like the Kafka log's (key, nine headers), ${baselineRecords} records`,
          'keyed, headered Java producer',
          () => keyedProducer(libsDir, broker.bootstrap, 'bench-pp-keyed', baselineRecords),
        );
        keyedFigure = { scenario: 'shore-kafka', metric: "Kafka's Java producer, records with the Kafka log's key and nine headers (acks=all)", value: keyed, unit: 'records/s', ...against() };
        if (keyedBrokerCpu !== undefined) {
          figures.push({
            scenario: 'shore-kafka',
            metric: `broker CPU per ${CPU_PER_RECORDS.toLocaleString('en-US')} records (Java producer, key and nine headers)`,
            value: (keyedBrokerCpu * CPU_PER_RECORDS) / baselineRecords,
            unit: 'CPU-s',
            ...(plainBrokerCpu === undefined ? {} : { baseline: 'broker CPU under ProducerPerformance', baselineValue: (plainBrokerCpu * CPU_PER_RECORDS) / baselineRecords }),
          });
        }
      }
      let keyedCompressedFigure: Figure | undefined;
      if (parts.has('keyed-headers') && compression !== 'none') {
        // Like for like with the shore: the same records, compressed as the shore compresses them.
        const { rate: keyed } = await measureJava(
          `the keyed, headered Java producer with compression.type=${compression}`,
          `keyed, headered Java producer, ${compression}:`,
          () => keyedProducer(libsDir, broker.bootstrap, 'bench-pp-keyed-compressed', baselineRecords, [`compression.type=${compression}`]),
        );
        keyedCompressedFigure = {
          scenario: 'shore-kafka',
          metric: `Kafka's Java producer, records with the Kafka log's key and nine headers, compression.type=${compression}`,
          value: keyed,
          unit: 'records/s',
          ...against(),
        };
      }
      let transactionalFigure: Figure | undefined;
      if (parts.has('transactions')) {
        context.progress('shore-kafka: ProducerPerformance with transactions (one per second)…');
        settleDisk();
        const transactional = await producerPerformance(libsDir, broker.bootstrap, 'bench-pp-txn', baselineRecords, [
          '--transactional-id',
          `bench-pp-${randomBytes(3).toString('hex')}`,
          '--transaction-duration-ms',
          '1000',
        ]);
        transactionalFigure = { scenario: 'shore-kafka', metric: 'ProducerPerformance with a transaction per second', value: transactional, unit: 'records/s', ...against() };
      }
      // A broker warmed up by ProducerPerformance is still cold on the paths the Kafka log's
      // writes take and no ProducerPerformance run does (keys, nine headers, transactions, markers, the compacted
      // topics): measured first on a broker warmed by ProducerPerformance only, the endpoint
      // run spent 1.85 of the broker's 3.75 CPU-s in its JIT compiler threads, and the
      // `replicate` run after it 0.64 of 2.66 (2026-11-22, PORTCALL_SHORE_KAFKA_THREADS=1):
      // that, on two cores, is what made the broker's CPU per record 2-5x higher in the
      // endpoint runs than in `replicate`. An unmeasured endpoint run (its own shore process
      // and topics) warms those paths, after the Java producers' runs (before them, a warm-up
      // like it made ProducerPerformance recompile its own). A 300,000-record `replicate` run
      // as the warm-up left the compiler threads 1.23 CPU-s to spend in the endpoint run.
      if (parts.has('endpoint') || parts.has('link') || parts.has('sites') || parts.has('replicate')) {
        context.progress(`shore-kafka: warming the broker's transactional path up (an endpoint run of ${records} records, not measured)…`);
        const warmup = await measureEndpoint(broker, records, () => undefined, 'senders');
        context.progress(`shore-kafka: warm-up endpoint run ${Math.round(warmup.rate)} records/s (${describeCpu(warmup.cpu, records)})`);
      }
      /** `endpointRuns()` runs of one shape, each its own shore process; figures of the median run. */
      const measureShape = async (shape: 'senders' | 'link', label: string, metric: string, cpuRun: string) => {
        const runs: ShoreRun[] = [];
        for (let run = 0; run < endpointRuns(); run++) {
          const one = await measureEndpoint(broker, records, context.progress, shape);
          context.progress(
            `shore-kafka: ${label} ${Math.round(one.rate)} records/s in ${one.commits} transactions (${Math.round(records / Math.max(1, one.commits))} records each; ${describeCpu(one.cpu, records)})`,
          );
          runs.push(one);
        }
        // The run with the median rate (the middle one of an odd count), with its own CPU figures.
        const median = [...runs].sort((a, b) => a.rate - b.rate)[Math.floor((runs.length - 1) / 2)]!;
        figures.push({
          scenario: 'shore-kafka',
          metric: `${metric}${runs.length > 1 ? `, median of ${runs.length} runs` : ''})`,
          value: median.rate,
          unit: 'records/s',
          ...against(),
        });
        figures.push(...cpuFigures(median.cpu, records, plainBrokerCpu, baselineRecords, cpuRun));
      };
      if (parts.has('endpoint')) {
        await measureShape(
          'senders',
          'endpoint',
          `receiving endpoint → Kafka, transactional (${SENDERS} senders × ${BATCH_RECORDS}-record batches, wire format ${wireVersion()}, ${PARTITIONS} partitions, ${containerCount()} containers, ${compression} batches`,
          '1 site',
        );
      }
      if (parts.has('link')) {
        await measureShape(
          'link',
          'link',
          `receiving endpoint → Kafka, transactional (one link as a forwarder sends: HTTP/2, ${LINK_IN_FLIGHT} × ${LINK_BATCH_RECORDS}-record batches in flight, wire format ${wireVersion()}, ${containerCount()} containers, ${compression} batches`,
          'one link',
        );
      }
      if (parts.has('sites')) {
        const sites = await measureEndpoint(broker, records, context.progress, 'sites');
        context.progress(`shore-kafka: ${SENDERS} sites ${Math.round(sites.rate)} records/s in ${sites.commits} transactions (${describeCpu(sites.cpu, records)})`);
        figures.push({
          scenario: 'shore-kafka',
          metric: `receiving endpoint → Kafka, transactional (${SENDERS} sending sites, a batch in flight each)`,
          value: sites.rate,
          unit: 'records/s',
          ...against(),
        });
        figures.push(...cpuFigures(sites.cpu, records, plainBrokerCpu, baselineRecords, `${SENDERS} sites`));
      }
      if (parts.has('replicate')) {
        const direct = await measureReplicate(broker, records);
        context.progress(`shore-kafka: replicate ${Math.round(direct.rate)} records/s in ${direct.commits} transactions (${describeCpu(direct.cpu, records)})`);
        figures.push({
          scenario: 'shore-kafka',
          metric: 'KafkaLog.replicate → Kafka, transactional (no HTTP, no decoding)',
          value: direct.rate,
          unit: 'records/s',
          ...against(),
        });
      }
      if (parts.has('read')) {
        const reads = await measureReads(broker, libsDir, records, context.progress);
        context.progress(
          `shore-kafka: read ${Math.round(reads.histories.rate)} records/s of container histories (${describeCpu(reads.histories.cpu, records)}), ` +
            `${Math.round(reads.stream.rate)} records/s of the stream in commit order (${describeCpu(reads.stream.cpu, records)}); ConsumerPerformance ${Math.round(reads.consumerPerformance)} records/s`,
        );
        const consumerBaseline = { baseline: 'Kafka ConsumerPerformance (Java, read_committed, the whole topic)', baselineValue: reads.consumerPerformance };
        figures.push(
          {
            scenario: 'shore-kafka',
            metric: `reading every container's history from Kafka (KafkaLog.readTopic, ${READERS} containers at a time, ${containerCount()} containers, ${compression} batches)`,
            value: reads.histories.rate,
            unit: 'records/s',
            ...consumerBaseline,
          },
          { scenario: 'shore-kafka', metric: 'reading the stream in commit order from Kafka (KafkaLog.readStream)', value: reads.stream.rate, unit: 'records/s', ...consumerBaseline },
        );
        if (reads.histories.cpu.shore !== undefined) {
          figures.push({
            scenario: 'shore-kafka',
            metric: `reading process CPU per ${CPU_PER_RECORDS.toLocaleString('en-US')} records (container histories)`,
            value: (reads.histories.cpu.shore * CPU_PER_RECORDS) / records,
            unit: 'CPU-s',
          });
        }
      }
      if (keyedFigure !== undefined) figures.push(keyedFigure);
      if (keyedCompressedFigure !== undefined) figures.push(keyedCompressedFigure);
      if (compressedFigure !== undefined) figures.push(compressedFigure);
      if (transactionalFigure !== undefined) figures.push(transactionalFigure);
      return figures;
    } finally {
      await broker.stop();
    }
  },
};
