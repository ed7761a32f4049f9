/**
 * `portcall demo`: one shore site and one ship gateway on this machine, an emulated reefer
 * fleet publishing to the gateway, and a live status line of readings per second through
 * each stage. Composition root: it wires devices → edge site → shore site.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { PortInUseError } from '../core/index.js';
import { ReeferFleet } from '../devices/emulator/index.js';
import { parseSiteConfig, startSite, type RunningSite } from '../site/index.js';
import type { KafkaBroker } from '../tools/kafka/index.js';
import type { FlapPhase } from '../tools/fault-proxy/index.js';

export interface DemoOptions {
  readonly shorePort: number;
  readonly mqttPort: number;
  readonly edgeHttpPort: number;
  readonly containers: number;
  readonly intervalMs: number;
  readonly durationS: number | undefined;
  readonly dataDir: string | undefined;
  readonly kafka: boolean;
  /** Put the fault proxy between ship and shore, shaped like a ship's link. */
  readonly link?: { readonly latencyMs: number; readonly bandwidthBytesPerSecond: number | undefined; readonly flaps: readonly FlapPhase[] | undefined };
  readonly logger: Logger;
  readonly logFile: string;
  /** Where the status goes; a TTY gets one line rewritten in place. */
  readonly out: NodeJS.WriteStream;
}

export interface DemoHandle {
  readonly shoreUrl: string;
  readonly mqttUrl: string;
  stop(): Promise<void>;
}

function containerIds(count: number): string[] {
  return Array.from({ length: count }, (_unused, index) => `Y${String(index + 1).padStart(2, '0')}`);
}

export async function runDemo(options: DemoOptions): Promise<DemoHandle> {
  const { out, logger } = options;
  const temporaryDir = options.dataDir === undefined ? mkdtempSync(join(tmpdir(), 'portcall-demo-')) : undefined;
  const dataDir = options.dataDir ?? temporaryDir!;
  const token = randomBytes(24).toString('hex');
  const stoppers: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stoppers.reverse()) await stop().catch(() => undefined);
    if (temporaryDir !== undefined) rmSync(temporaryDir, { recursive: true, force: true });
  };

  try {
    let kafkaBrokers: string[] | undefined;
    if (options.kafka) {
      const { ensureKafkaJars, startKafkaBroker } = await import('../tools/kafka/index.js');
      const progress = (line: string) => out.write(`kafka: ${line}\n`);
      await ensureKafkaJars({ onProgress: progress });
      const broker: KafkaBroker = await startKafkaBroker({ onProgress: progress });
      stoppers.push(() => broker.stop());
      kafkaBrokers = [broker.bootstrap];
      out.write(`Kafka is up at ${broker.bootstrap}\n`);
    }

    const shore: RunningSite = await startSite(
      parseSiteConfig({
        site: 'TOKYO',
        dataDir,
        log: kafkaBrokers === undefined ? { backend: 'sqlite' } : { backend: 'kafka', kafka: { brokers: kafkaBrokers } },
        http: { port: options.shorePort },
        ingest: { peers: [{ site: 'AURORA', token }] },
      }),
      { logger },
    );
    stoppers.push(() => shore.close());

    let linkUrl = shore.httpUrl!;
    if (options.link !== undefined) {
      const { FaultProxy } = await import('../tools/fault-proxy/index.js');
      const proxy = await FaultProxy.start({
        targetPort: Number(new URL(shore.httpUrl!).port),
        latencyMs: options.link.latencyMs,
        ...(options.link.bandwidthBytesPerSecond === undefined ? {} : { bandwidthBytesPerSecond: options.link.bandwidthBytesPerSecond }),
      });
      if (options.link.flaps !== undefined) proxy.flap(options.link.flaps);
      stoppers.push(() => proxy.close());
      linkUrl = proxy.url();
      out.write(`ship → shore link through the fault proxy at ${linkUrl}\n`);
    }

    const edge: RunningSite = await startSite(
      parseSiteConfig({
        site: 'AURORA',
        dataDir,
        // The demo's emulated reefers have no credentials; a ship uses a credentials file.
        mqtt: { port: options.mqttPort, auth: { allowAnonymous: true } },
        http: { port: options.edgeHttpPort },
        links: [
          {
            name: 'TOKYO',
            url: linkUrl,
            token,
            // A capped link is paced just under its rate, so alerts never queue behind readings.
            ...(options.link?.bandwidthBytesPerSecond === undefined ? {} : { bandwidthBytesPerSecond: Math.floor(options.link.bandwidthBytesPerSecond * 0.97) }),
            ...(options.link === undefined ? {} : { stallTimeoutMs: 5000, retryMaxMs: 5000 }),
          },
        ],
      }),
      { logger },
    );
    stoppers.push(() => edge.close());

    const mqttUrl = `mqtt://127.0.0.1:${edge.mqttPort!}`;
    const ids = containerIds(options.containers);
    const fleet = new ReeferFleet({
      brokerUrl: mqttUrl,
      topicPrefix: 'bigblue/containers',
      containerIds: ids,
      intervalMs: options.intervalMs,
      qos: 1,
      seed: 42,
      clientId: 'demo-reefer-fleet',
    });
    await fleet.start();
    stoppers.push(() => fleet.stop());

    const shoreUrl = shore.httpUrl!;
    out.write(
      [
        `portcall demo: ship AURORA → shore TOKYO (${options.kafka ? 'Apache Kafka' : 'embedded SQLite'} log)`,
        `  MQTT gateway:   ${mqttUrl}   (topics bigblue/containers/<id>/<sensor>)`,
        `  shore read API: ${shoreUrl}/v1/streams/containers/topics/${ids[0]}/latest`,
        ...(options.kafka ? [] : [`  portal:         ${shoreUrl}/portal/   (open site: any token signs in)`]),
        `  metrics:        ${shoreUrl}/metrics   ${edge.httpUrl!}/metrics`,
        `  logs:           ${options.logFile}`,
        `Ctrl-C stops everything.`,
        '',
      ].join('\n'),
    );

    const startedAtMs = Date.now();
    let previous = { published: 0, stored: 0, forwarded: 0, shore: 0, atMs: startedAtMs };
    const status = setInterval(() => {
      const nowMs = Date.now();
      const seconds = (nowMs - previous.atMs) / 1000;
      const current = {
        published: fleet.stats().published,
        stored: edge.stats().gatewayMessagesStored,
        forwarded: edge.stats().links[0]?.recordsForwarded ?? 0,
        shore: shore.stats().ingest?.recordsStored ?? 0,
        atMs: nowMs,
      };
      const rate = (now: number, before: number) => ((now - before) / seconds).toFixed(1).padStart(6);
      const link = edge.stats().links[0];
      const linkError = link?.lastError;
      const line =
        `t=${String(Math.round((nowMs - startedAtMs) / 1000)).padStart(4)}s  ` +
        `sensors ${rate(current.published, previous.published)}/s  ` +
        `gateway→log ${rate(current.stored, previous.stored)}/s  ` +
        `forwarded ${rate(current.forwarded, previous.forwarded)}/s  ` +
        `shore stored ${rate(current.shore, previous.shore)}/s  ` +
        `(total at shore ${current.shore}, link ${link?.state ?? '?'}, ${link?.wireBytes ?? 0} B on the wire)` +
        (linkError === undefined ? '' : `  link: ${linkError}`);
      out.write(out.isTTY ? `\r${line}\u001b[K` : `${line}\n`);
      previous = current;
    }, 1000);
    stoppers.push(async () => {
      clearInterval(status);
      if (out.isTTY) out.write('\n');
    });

    return { shoreUrl, mqttUrl, stop: stopAll };
  } catch (error) {
    await stopAll();
    if (error instanceof PortInUseError) {
      const flag =
        error.listener === 'mqtt' ? '--mqtt-port' : error.what.includes('TOKYO') ? '--shore-port' : '--edge-http-port';
      throw new PortInUseError(error.listener, error.what, error.host, error.port, `Pick another with ${flag} N (0 = any free port).`);
    }
    throw error;
  }
}
