/**
 * Runs the gateway on its own thread, so MQTT parsing and aedes use one core while the
 * thread that owns the log inserts and commits on the other. The log stays where it was
 * opened (SQLite connections are per thread); the gateway sends it batches over the record
 * channel and acknowledges devices when the log's thread answers "durable".
 *
 * The site sees the same surface as an in-thread `MqttGateway`: ports, stats, metrics on
 * its registry (read from the gateway's thread at scrape time) and log lines on its logger.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';
import { StoreUnavailableError, type RecordAppender } from '../../core/index.js';
import type { BridgeOptions, BridgeState } from './bridge.js';
import type { FromGatewayThread, GatewayThreadData, ToGatewayThread } from './gateway-thread-protocol.js';
import type { GatewayOptions, GatewayStats } from './mqtt-gateway.js';
import { AppendServer } from './record-channel.js';

export interface GatewayThreadOptions extends Omit<GatewayOptions, 'appender' | 'devices' | 'logger' | 'registry'> {
  readonly appender: RecordAppender;
  /** Path of the credentials file; read here, parsed and checked on the gateway's thread. */
  readonly credentialsFile?: string;
  readonly bridge?: Omit<BridgeOptions, 'logger' | 'registry'>;
  readonly logger: Logger;
  readonly registry?: Registry;
}

/** An error from the gateway's thread at start, with the code and port a listener failed on. */
export class GatewayStartError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly port: number | undefined,
  ) {
    super(message);
  }
}

function workerUrl(): URL {
  const compiled = new URL('./gateway-worker.js', import.meta.url);
  // Under vitest this module is the TypeScript source; the worker must be the compiled twin.
  if (existsSync(fileURLToPath(compiled))) return compiled;
  return new URL(compiled.href.replace(/\/edge\/gateway\//, '/dist/edge/gateway/'));
}

const YOUNG_GENERATION_MB = 64;

const LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

export class GatewayThread {
  private statsValue: GatewayStats = { clientsConnected: 0, messagesStored: 0, messagesRefused: 0 };
  private bridgeStateValue: BridgeState | undefined;
  private nextMetricsRequest = 1;
  private readonly metricsWaiting = new Map<number, (metrics: MetricObjectWithValues<MetricValue<string>>[]) => void>();
  private closed: Promise<void> | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly ports: { tcp: number; tls: number | undefined; websocket: number | undefined },
  ) {}

  static async start(options: GatewayThreadOptions): Promise<GatewayThread> {
    const { appender, credentialsFile, bridge, logger, registry, ...gateway } = options;
    const data: GatewayThreadData = {
      gateway,
      ...(credentialsFile === undefined ? {} : { credentials: { text: readFileSync(credentialsFile, 'utf8'), source: credentialsFile } }),
      ...(bridge === undefined ? {} : { bridge }),
      logLevel: logger.level,
    };
    const worker = new Worker(workerUrl(), {
      workerData: data,
      // Every message allocates (aedes' packets, parsed payloads) and nearly all of it dies
      // young: a larger young generation means fewer scavenges and less wrongly promoted.
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
    });
    let thread: GatewayThread | undefined;
    const appends = new AppendServer(appender, (reply) => worker.postMessage(reply));
    const ready = new Promise<GatewayThread>((resolve, reject) => {
      worker.on('message', (message: FromGatewayThread) => {
        switch (message.type) {
          case 'append':
            appends.serve(message);
            break;
          case 'log': {
            const { level, msg, ...fields } = JSON.parse(message.line) as { level: number; msg?: string };
            logger[LEVELS[level] ?? 'info'](fields, msg);
            break;
          }
          case 'stats':
            if (thread !== undefined) {
              thread.statsValue = message.stats;
              thread.bridgeStateValue = message.bridgeState;
            }
            break;
          case 'metrics':
            thread?.metricsWaiting.get(message.requestId)?.(message.metrics);
            thread?.metricsWaiting.delete(message.requestId);
            break;
          case 'ready':
            thread = new GatewayThread(worker, message.ports);
            resolve(thread);
            break;
          case 'start-failed':
            reject(new GatewayStartError(message.message, message.code, message.port));
            break;
          case 'closed':
            break;
        }
      });
      worker.once('error', (error) => reject(error));
      worker.once('exit', (code) => reject(new StoreUnavailableError(`gateway thread exited (${code}) before it was ready`)));
    });
    try {
      const started = await ready;
      if (registry !== undefined) await started.mirrorMetrics(registry);
      worker.on('error', (error) => logger.fatal({ err: error.stack ?? error.message }, 'gateway thread failed'));
      worker.once('exit', (code) => {
        if (started.closed !== undefined) return;
        // A site that looks up but takes no MQTT is worse than one that is seen to fail: exit
        // as an uncaught error on an in-thread gateway would, for the supervisor to restart.
        logger.fatal({ code }, 'gateway thread exited; stopping the site');
        process.exit(70);
      });
      return started;
    } catch (error) {
      await worker.terminate();
      throw error;
    }
  }

  /**
   * Registers each of the gateway thread's metrics on the site's registry as a metric whose
   * value is read from that thread when scraped, so `/metrics` shows them like any other.
   */
  private async mirrorMetrics(registry: Registry): Promise<void> {
    const initial = await this.readMetrics();
    let pending: Promise<Map<string, MetricObjectWithValues<MetricValue<string>>>> | undefined;
    // One scrape reads every mirrored metric; ask the thread once per scrape, not per metric.
    const snapshot = () => {
      pending ??= this.readMetrics()
        .then((metrics) => new Map(metrics.map((metric) => [metric.name, metric])))
        .finally(() => setImmediate(() => (pending = undefined)));
      return pending;
    };
    for (const metric of initial) {
      const name = metric.name;
      registry.registerMetric({
        name,
        help: metric.help,
        type: metric.type,
        aggregator: metric.aggregator,
        get: async () => (await snapshot()).get(name) ?? { ...metric, values: [] },
        reset: () => undefined,
      } as unknown as Parameters<Registry['registerMetric']>[0]);
    }
  }

  private readMetrics(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    if (this.closed !== undefined) return Promise.resolve([]);
    const requestId = this.nextMetricsRequest;
    this.nextMetricsRequest += 1;
    return new Promise((resolve) => {
      this.metricsWaiting.set(requestId, resolve);
      this.worker.postMessage({ type: 'metrics', requestId } satisfies ToGatewayThread);
    });
  }

  get port(): number {
    return this.ports.tcp;
  }

  get tlsPort(): number | undefined {
    return this.ports.tls;
  }

  get webSocketPort(): number | undefined {
    return this.ports.websocket;
  }

  get bridgeState(): BridgeState | undefined {
    return this.bridgeStateValue;
  }

  /** As of the gateway thread's last report (every 50 ms). */
  stats(): Readonly<GatewayStats> {
    return this.statsValue;
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
      const closedByThread = new Promise<void>((resolve) =>
        this.worker.on('message', (message: FromGatewayThread) => {
          if (message.type === 'closed') resolve();
        }),
      );
      this.worker.postMessage({ type: 'close' } satisfies ToGatewayThread);
      // The thread's close waits for its appends, which this thread must keep serving.
      await Promise.race([closedByThread, exited]);
      for (const resolve of this.metricsWaiting.values()) resolve([]);
      this.metricsWaiting.clear();
      await this.worker.terminate();
    })();
    return this.closed;
  }
}
