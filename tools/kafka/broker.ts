import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';

import { Kafka, logLevel } from 'kafkajs';

import { KafkaUnavailableError } from './errors.js';
import { ensureKafkaJars } from './jars.js';
import { BrokerClassArchive } from './class-archive.js';
import { requireJava, runCommand } from './process.js';
import { registerForReaping } from './reaper.js';
import { KAFKA_VERSION } from './version.js';

export interface KafkaBroker {
  /** `127.0.0.1:PORT`, for kafkajs `brokers` or any `bootstrap.servers`. */
  readonly bootstrap: string;
  /** The JVM's PID; changes after restart(). */
  readonly pid: number;
  readonly dataDir: string;
  readonly logFile: string;
  /** SIGTERM, up to 15 s for a clean shutdown, then SIGKILL; removes a data dir it created. */
  stop(): Promise<void>;
  /** SIGKILL without waiting, to simulate a crash; restart() brings it back on the same data. */
  kill9(): void;
  /** Starts the broker again on the same ports and data dir and waits until it serves. */
  restart(): Promise<void>;
}

export interface StartKafkaBrokerOptions {
  /** Kept on stop() and reused by later starts; by default a temp dir is created and removed. */
  dataDir?: string;
  heapMb?: number;
  onProgress?: (line: string) => void;
  /** Bounds storage format plus JVM start until the broker serves; not the one-time jar fetch. */
  startTimeoutMs?: number;
  /**
   * Compile with the JVM's quick compiler only (C1, `-XX:TieredStopAtLevel=1`): for a broker
   * that lives for seconds or a few minutes and carries little traffic, as in a test that
   * kills and restarts its own. It starts on less CPU and runs hot code slower, so it is not
   * for a broker that is measured or that carries a whole test run.
   */
  quickJit?: boolean;
}

/** C1 only: for the storage tool's one-second JVM always, and for brokers started with `quickJit`; C2's compiles would not pay back. */
const QUICK_JIT = '-XX:TieredStopAtLevel=1';

const DEFAULT_HEAP_MB = 512;
const DEFAULT_START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 15_000;
const LOG_TAIL_LINES = 30;
const NODE_ID = 1;

/** Binding port 0 makes the kernel pick; holding all sockets until every port is read keeps them distinct. */
async function pickFreeLoopbackPorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolveListen, rejectListen) => {
        server.once('error', rejectListen);
        server.listen(0, '127.0.0.1', resolveListen);
      });
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('loopback listener has no port');
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((done) => server.close(() => done()))));
  }
}

/** Kafka's own generator rejects IDs starting with '-' because CLI parsers read them as flags. */
function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

async function existingClusterId(kraftLogDir: string): Promise<string | null> {
  try {
    const metaProperties = await readFile(join(kraftLogDir, 'meta.properties'), 'utf8');
    return /^cluster\.id=(\S+)$/m.exec(metaProperties)?.[1] ?? null;
  } catch {
    return null;
  }
}

interface BrokerLayout {
  dataDir: string;
  serverProperties: string;
  log4jProperties: string;
  kraftLogDir: string;
  logFile: string;
}

function layoutFor(dataDir: string): BrokerLayout {
  return {
    dataDir,
    serverProperties: join(dataDir, 'server.properties'),
    log4jProperties: join(dataDir, 'log4j.properties'),
    kraftLogDir: join(dataDir, 'kraft-data'),
    logFile: join(dataDir, 'broker.log'),
  };
}

function serverProperties(layout: BrokerLayout, brokerPort: number, controllerPort: number): string {
  return [
    '# Written by portcall tools/kafka; rewritten on every start.',
    'process.roles=broker,controller',
    `node.id=${NODE_ID}`,
    // A static voter set needs no --standalone/--initial-controllers at format time and lets a
    // reused data dir come back on different ports.
    `controller.quorum.voters=${NODE_ID}@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${brokerPort},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${brokerPort}`,
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${layout.kraftLogDir}`,
    'num.partitions=1',
    // With one broker the default replication factor of 3 makes these topics uncreatable, and
    // consumer groups and transactions would hang waiting for their coordinators.
    'offsets.topic.replication.factor=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    // The default 50 partitions each cost a first-use pause of seconds on a laptop.
    'offsets.topic.num.partitions=10',
    'transaction.state.log.num.partitions=10',
    // Tests join fresh groups constantly; the 3 s default would add to each one.
    'group.initial.rebalance.delay.ms=0',
    // After kill -9 the controller refuses the restarted broker (DUPLICATE_BROKER_REGISTRATION)
    // until the dead incarnation's session expires; the 9 s default made every crash test pay
    // it. Four missed heartbeats still fence only a broker that is really gone.
    'broker.heartbeat.interval.ms=1000',
    'broker.session.timeout.ms=4000',
    '',
  ].join('\n');
}

/** Everything to stdout, which the parent points at broker.log; request logs would drown it. */
const LOG4J_PROPERTIES = [
  'log4j.rootLogger=INFO, stdout',
  'log4j.appender.stdout=org.apache.log4j.ConsoleAppender',
  'log4j.appender.stdout.layout=org.apache.log4j.PatternLayout',
  'log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n',
  'log4j.logger.kafka.request.logger=WARN',
  'log4j.logger.kafka.network.RequestChannel$=WARN',
  'log4j.logger.org.apache.kafka.clients=WARN',
  '',
].join('\n');

/** The log written since `fromByte`, capped so a runaway log cannot exhaust memory. */
async function readLogSince(logFile: string, fromByte = 0): Promise<string> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(logFile, 'r');
    const { size } = await handle.stat();
    const start = Math.max(fromByte, size - 1024 * 1024);
    const buffer = Buffer.alloc(size - start);
    await handle.read(buffer, 0, buffer.length, start);
    return buffer.toString('utf8');
  } catch {
    return '';
  } finally {
    await handle?.close();
  }
}

function lastLines(text: string): string {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  return lines.length === 0 ? '(no broker log written)' : lines.slice(-LOG_TAIL_LINES).join('\n');
}

export async function readLogTail(logFile: string, fromByte = 0): Promise<string> {
  return lastLines(await readLogSince(logFile, fromByte));
}

/**
 * A failing broker logs its cause once and then a hundred lines of orderly shutdown, so the
 * last lines alone rarely say why; the first ERROR or FATAL line usually does.
 */
function firstErrorLine(text: string): string | undefined {
  return text.split('\n').find((line) => / (ERROR|FATAL) /.test(line));
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

const privateState = new WeakMap<KafkaBroker, ManagedBroker>();

/** Resolves when the broker's current JVM exits for any reason; for `portcall kafka` to notice a crash. */
export function brokerExited(broker: KafkaBroker): Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }> {
  const managed = privateState.get(broker);
  if (managed === undefined) throw new Error('not a broker started by startKafkaBroker');
  return managed.currentExit();
}

interface Launch {
  child: ChildProcess;
  exited: Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;
  hasExited: () => boolean;
}

class ManagedBroker {
  private launch: Launch | undefined;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private unregister: (() => void) | undefined;
  private readonly bootstrap: string;

  constructor(
    private readonly layout: BrokerLayout,
    private readonly libsDir: string,
    private readonly classArchive: BrokerClassArchive,
    brokerPort: number,
    private readonly heapMb: number,
    private readonly ownsDataDir: boolean,
    private readonly startTimeoutMs: number,
    private readonly progress: (line: string) => void,
    private readonly quickJit: boolean,
  ) {
    this.bootstrap = `127.0.0.1:${brokerPort}`;
  }

  currentExit(): Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }> {
    if (this.launch === undefined) return Promise.resolve({ exitCode: null, signal: null });
    return this.launch.exited;
  }

  handle(): KafkaBroker {
    const currentPid = (): number => this.launch?.child.pid ?? -1;
    const broker: KafkaBroker = {
      bootstrap: this.bootstrap,
      get pid(): number {
        return currentPid();
      },
      dataDir: this.layout.dataDir,
      logFile: this.layout.logFile,
      stop: () => this.stop(),
      kill9: () => this.kill9(),
      restart: () => this.restart(),
    };
    privateState.set(broker, this);
    return broker;
  }

  /** Spawns the JVM and waits for it to serve; on failure the JVM is killed and the error says why. */
  async start(deadlineMs = Date.now() + this.startTimeoutMs): Promise<void> {
    const startedAtMs = Date.now();
    // A port freed by a SIGKILLed JVM is occasionally still held for a moment; retry binds only.
    for (let attempt = 1; ; attempt++) {
      const logOffset = await fileSize(this.layout.logFile);
      await appendFile(this.layout.logFile, `\n=== portcall: starting Kafka ${KAFKA_VERSION} (attempt ${attempt}) at ${new Date().toISOString()} ===\n`);
      const launch = this.spawnJvm();
      this.launch = launch;
      this.progress(`broker JVM started (pid ${String(launch.child.pid)}), waiting for ${this.bootstrap} to serve`);
      try {
        await this.waitUntilServing(launch, deadlineMs);
        this.progress(`broker ready at ${this.bootstrap} after ${((Date.now() - startedAtMs) / 1000).toFixed(1)} s`);
        return;
      } catch (err) {
        const exitedOnItsOwn = launch.hasExited();
        this.killCurrent();
        await launch.exited;
        const launchLog = await readLogSince(this.layout.logFile, logOffset);
        if (exitedOnItsOwn && /Address already in use/.test(launchLog) && Date.now() + 1_000 < deadlineMs) {
          this.progress(`port ${this.bootstrap} or the controller port is still taken; retrying`);
          await sleep(500);
          continue;
        }
        const why = err instanceof Error ? err.message : String(err);
        const firstError = firstErrorLine(launchLog);
        throw new KafkaUnavailableError(
          'start-failed',
          `Kafka ${KAFKA_VERSION} broker did not start: ${why} (full log: ${this.layout.logFile}).` +
            `${firstError === undefined ? '' : `\nFirst error: ${firstError}`}` +
            `\nLast ${LOG_TAIL_LINES} log lines:\n${lastLines(launchLog)}`,
          { cause: err },
        );
      }
    }
  }

  private spawnJvm(): Launch {
    const classes = this.classArchive.brokerStart();
    const args = [
      ...classes.jvmOptions,
      ...(this.quickJit ? [QUICK_JIT] : []),
      `-Xms${this.heapMb}m`,
      `-Xmx${this.heapMb}m`,
      // kafka-run-class.sh's defaults: short GC pauses matter more than throughput for a broker.
      '-XX:+UseG1GC',
      '-XX:MaxGCPauseMillis=20',
      '-XX:InitiatingHeapOccupancyPercent=35',
      '-XX:+ExplicitGCInvokesConcurrent',
      '-Djava.awt.headless=true',
      `-Dlog4j.configuration=${pathToFileURL(this.layout.log4jProperties).href}`,
      '-cp',
      join(this.libsDir, '*'),
      'kafka.Kafka',
      this.layout.serverProperties,
    ];
    // The JVM writes straight into the log file, so its output never depends on our event loop.
    const logFd = openSync(this.layout.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('java', args, { cwd: this.layout.dataDir, stdio: ['ignore', logFd, logFd], detached: false });
    } finally {
      closeSync(logFd);
    }
    let exitedFlag = false;
    const exited = new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
      child.once('exit', (exitCode, signal) => {
        exitedFlag = true;
        classes.settle(signal === null);
        resolveExit({ exitCode, signal });
      });
      child.once('error', (err) => {
        exitedFlag = true;
        void appendFile(this.layout.logFile, `portcall: could not run java: ${err.message}\n`).catch(() => {});
        resolveExit({ exitCode: null, signal: null });
      });
    });
    this.unregister?.();
    this.unregister = registerForReaping({
      pid: () => (exitedFlag ? undefined : child.pid),
      ownedDir: this.ownsDataDir ? this.layout.dataDir : undefined,
    });
    return { child, exited, hasExited: () => exitedFlag };
  }

  /**
   * An open TCP port is not readiness: the KRaft broker accepts connections before it has
   * caught up on metadata and been unfenced. Metadata responses only list unfenced brokers,
   * so seeing our own node in describeCluster means it really serves.
   */
  private async waitUntilServing(launch: Launch, deadlineMs: number): Promise<void> {
    const kafka = new Kafka({
      clientId: 'portcall-readiness',
      brokers: [this.bootstrap],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1_000,
      requestTimeout: 5_000,
      retry: { retries: 0 },
    });
    let lastError = 'no answer yet';
    const exitedEarly = launch.exited.then(({ exitCode, signal }) => {
      throw new Error(`the JVM exited (${signal ?? `code ${String(exitCode)}`}) before serving`);
    });
    exitedEarly.catch(() => {});
    while (Date.now() < deadlineMs) {
      const admin = kafka.admin({ retry: { retries: 0 } });
      const attempt = (async (): Promise<boolean> => {
        try {
          await admin.connect();
          const cluster = await admin.describeCluster();
          if (cluster.brokers.some((b) => b.nodeId === NODE_ID)) return true;
          lastError = 'broker answers but is not registered yet';
          return false;
        } catch (err) {
          lastError = err instanceof Error ? err.message : String(err);
          return false;
        } finally {
          await admin.disconnect().catch(() => {});
        }
      })();
      if (await Promise.race([attempt, exitedEarly])) return;
      await Promise.race([sleep(250), exitedEarly]);
    }
    throw new Error(`not serving within the start timeout of ${this.startTimeoutMs} ms; last readiness error: ${lastError}`);
  }

  private killCurrent(): void {
    const launch = this.launch;
    if (launch === undefined || launch.hasExited() || launch.child.pid === undefined) return;
    try {
      process.kill(launch.child.pid, 'SIGKILL');
    } catch {
      // Exited between the check and the kill.
    }
  }

  kill9(): void {
    this.killCurrent();
  }

  /** SIGTERM runs Kafka's shutdown hook (controlled shutdown, clean log close); SIGKILL only if it hangs. */
  private async terminate(): Promise<void> {
    const launch = this.launch;
    if (launch === undefined || launch.hasExited() || launch.child.pid === undefined) {
      await launch?.exited;
      return;
    }
    try {
      process.kill(launch.child.pid, 'SIGTERM');
    } catch {
      // Already exiting.
    }
    // The grace timer is cancelled once the JVM exits: a pending timer would keep the caller's
    // process (vitest, the CLI) alive for the rest of the 15 s.
    const grace = new AbortController();
    const graceful = await Promise.race([
      launch.exited.then(() => true),
      sleep(STOP_GRACE_MS, false, { signal: grace.signal }).catch(() => false),
    ]);
    grace.abort();
    if (!graceful) {
      this.progress(`broker pid ${launch.child.pid} ignored SIGTERM for ${STOP_GRACE_MS} ms; sending SIGKILL`);
      this.killCurrent();
      await launch.exited;
    }
  }

  /** After a failed first start nobody holds a handle, so nothing may reap the kept data dir. */
  abandon(): void {
    this.stopped = true;
    this.unregister?.();
    this.unregister = undefined;
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopped = true;
      await this.terminate();
      this.unregister?.();
      this.unregister = undefined;
      if (this.ownsDataDir) await rm(this.layout.dataDir, { recursive: true, force: true });
    })();
    return this.stopping;
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error(`broker ${this.bootstrap} was stopped; start a new one instead of restarting it`);
    await this.terminate();
    await this.start();
  }
}

/**
 * Starts a single-node KRaft Kafka (broker and controller in one JVM) on two free loopback
 * ports and resolves once it serves clients. Throws KafkaUnavailableError when Java, Maven or
 * the jars are missing, or the broker fails to come up.
 */
export async function startKafkaBroker(opts: StartKafkaBrokerOptions = {}): Promise<KafkaBroker> {
  const progress = opts.onProgress ?? ((): void => {});
  const heapMb = opts.heapMb ?? DEFAULT_HEAP_MB;
  const startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  if (!Number.isInteger(heapMb) || heapMb < 128) throw new RangeError(`heapMb must be an integer >= 128, got ${heapMb}`);

  const java = await requireJava();
  const libsDir = await ensureKafkaJars({ onProgress: progress });
  const classArchive = BrokerClassArchive.for(libsDir, java.description);

  const ownsDataDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir === undefined ? await mkdtemp(join(tmpdir(), 'portcall-kafka-')) : resolve(opts.dataDir);
  const layout = layoutFor(dataDir);
  const deadlineMs = Date.now() + startTimeoutMs;
  let broker: ManagedBroker | undefined;
  try {
    await mkdir(layout.kraftLogDir, { recursive: true });
    const [brokerPort, controllerPort] = await pickFreeLoopbackPorts(2);
    if (brokerPort === undefined || controllerPort === undefined) throw new Error('could not pick two loopback ports');
    await writeFile(layout.serverProperties, serverProperties(layout, brokerPort, controllerPort));
    await writeFile(layout.log4jProperties, LOG4J_PROPERTIES);

    progress(`formatting KRaft storage in ${layout.kraftLogDir}`);
    // A reused data dir keeps its data only if formatted with its own cluster ID again: 3.9's
    // --ignore-formatted still rejects a different ID instead of skipping.
    const clusterId = (await existingClusterId(layout.kraftLogDir)) ?? newClusterId();
    const format = await runCommand('java', [
      ...classArchive.readOptions(),
      QUICK_JIT,
      `-Dlog4j.configuration=${pathToFileURL(layout.log4jProperties).href}`,
      '-cp',
      join(libsDir, '*'),
      'kafka.tools.StorageTool',
      'format',
      '--cluster-id',
      clusterId,
      '--config',
      layout.serverProperties,
      '--ignore-formatted',
    ]);
    if (format.exitCode !== 0) {
      throw new KafkaUnavailableError(
        'start-failed',
        `formatting Kafka storage in ${layout.kraftLogDir} failed (exit ${String(format.exitCode ?? format.signal)}):\n${format.outputTail.join('\n')}`,
      );
    }

    // restart() gets the full budget again: log recovery after kill9 can outlast a cold start.
    broker = new ManagedBroker(layout, libsDir, classArchive, brokerPort, heapMb, ownsDataDir, startTimeoutMs, progress, opts.quickJit === true);
    await broker.start(deadlineMs);
    return broker.handle();
  } catch (err) {
    broker?.abandon();
    // A failed start keeps its data dir so the log named in the error can still be read.
    if (err instanceof KafkaUnavailableError) throw err;
    throw new KafkaUnavailableError('start-failed', `Kafka ${KAFKA_VERSION} broker did not start: ${String(err)}`, { cause: err });
  }
}
