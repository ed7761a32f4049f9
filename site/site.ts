/**
 * Composition root of a site: the one place that wires stages together. Ship, port and
 * headquarters all start here; the configuration decides which stages run.
 *
 *   devices → [gateway] → log → [forwarder → link] → peer's [ingest] → log / Kafka → [read API]
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import {
  ConfigError,
  PortInUseError,
  type CursorStore,
  type HealthSource,
  type RecordAppender,
  type ReplicaSink,
  type StreamSource,
  type TopicReader,
} from '../core/index.js';
import type { TopicCatalog } from '../core/holdings.js';
import { SqliteLog, type StreamPolicy, type TopicStats } from '../edge/log/index.js';
import type { StreamBacklog } from '../edge/forwarder/forwarder.js';
import type { RunningGateway } from '../edge/gateway/index.js';
import { DispatchTurns, Forwarder, LinkPolicy, forwardCursorName, registerLinkRoutes, topicMatcher, type LinkControl, type ScheduleWindow } from '../edge/forwarder/index.js';
import { Http2Link } from '../edge/link/index.js';
import { registerHoldingsRoute, registerIngestRoutes, type IngestStats } from '../cloud/ingest/index.js';
import { registerReadRoutes, registerSummaryRoutes } from '../cloud/read-api/index.js';
import { DEFAULT_DROP_PRIORITY, DEFAULT_STREAM_PRIORITY, WEEKDAYS, type LinkConfig, type SiteConfig } from './config.js';
import { siteServerFactory, type SiteHttpTls } from './http-server.js';
import { registerHandoffRoute } from './handoff-route.js';
import { WriterGuard } from './writer-guard.js';
import { ACCESS_OFF_WARNING, RESERVED_ACCESS_TOPICS, startSiteAccess } from './access.js';

/** Access control as the site runs it. */
type RunningAccess = Awaited<ReturnType<typeof startSiteAccess>>;
import { startSitePortal } from './portal.js';
import { startCustomerTopics } from './customer-topics.js';
import type { KafkaLog } from '../cloud/kafka-log/index.js';
import { registerStatusRoute } from './status-route.js';
import { watchEventLoop } from './loop-watch.js';

export interface SiteStats {
  readonly gatewayMessagesStored: number;
  readonly gatewayClients: number;
  readonly bridgeState: string | undefined;
  readonly ingest: IngestStats | undefined;
  readonly links: readonly { name: string; state: string; recordsForwarded: number; wireBytes: number; lastError: string | undefined }[];
}

export interface RunningSite {
  readonly name: string;
  readonly httpUrl: string | undefined;
  readonly mqttPort: number | undefined;
  readonly mqttTlsPort: number | undefined;
  readonly mqttWebSocketPort: number | undefined;
  readonly registry: Registry;
  stats(): SiteStats;
  close(): Promise<void>;
}

/** Retention policy per stream: configured values, default priorities, and the forwarding cursors TTL must wait for. */
function streamPolicies(config: SiteConfig): Record<string, StreamPolicy> {
  const names = new Set([...DEFAULT_STREAM_PRIORITY, ...Object.keys(config.streams), ...config.links.flatMap((link) => link.streams)]);
  const policies: Record<string, StreamPolicy> = {};
  for (const stream of names) {
    const configured = config.streams[stream];
    const mustForward = configured?.mustForward ?? true;
    policies[stream] = {
      ...(configured?.ttlHours === undefined ? {} : { ttlMs: configured.ttlHours * 3_600_000 }),
      ...(configured?.maxBytes === undefined ? {} : { maxBytes: configured.maxBytes }),
      priority: configured?.priority ?? DEFAULT_DROP_PRIORITY[stream] ?? 10,
      requireCursors: mustForward
        ? config.links.filter((link) => link.streams.includes(stream)).map((link) => forwardCursorName(link.name, stream))
        : [],
    };
  }
  return policies;
}

function readPemFile(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError(`${field}: cannot read ${path}: ${(error as Error).message}`);
  }
}

function readHttpTls(tls: NonNullable<NonNullable<SiteConfig['ingest']>['tls']>): SiteHttpTls {
  return {
    cert: readPemFile(tls.certFile, 'ingest.tls.certFile'),
    key: readPemFile(tls.keyFile, 'ingest.tls.keyFile'),
    ...(tls.caFile === undefined ? {} : { ca: readPemFile(tls.caFile, 'ingest.tls.caFile') }),
    requireClientCertificate: tls.requireClientCertificate,
  };
}

function minutesOf(clock: string): number {
  const [hours, minutes] = clock.split(':').map(Number);
  return hours! * 60 + minutes!;
}

/**
 * What links, the portal and the holdings and summary routes read, whichever backend the log
 * is on (the embedded log, or the Kafka log with its stream journals: docs/KAFKA.md).
 */
interface SiteStreams {
  readonly source: StreamSource & CursorStore;
  readonly catalog: TopicCatalog & { listStreams(): string[] };
  readonly appender: RecordAppender;
  /** Records past a position, for lag; only where positions are dense (the embedded log). */
  readonly backlog?: (stream: string) => StreamBacklog | undefined;
  /** The same where they are not (the Kafka log's journal positions). */
  readonly recordsAfter?: (stream: string, afterPosition: number) => number | undefined;
}

/** One link: its policy (state, cap, schedule, switch file), its HTTP/2 sender and its forwarder. */
function linkFor(
  link: LinkConfig,
  config: SiteConfig,
  log: SiteStreams,
  logger: Logger,
  registry: Registry,
  access: RunningAccess | undefined,
  reader: TopicReader,
  turns: DispatchTurns,
) {
  const linkLogger = logger.child({ component: 'forwarder', link: link.name });
  const schedule: ScheduleWindow[] = link.schedule.map((window) => ({
    ...(window.days === undefined ? {} : { days: window.days.map((day) => WEEKDAYS.indexOf(day)) }),
    fromMinute: minutesOf(window.from),
    toMinute: minutesOf(window.to),
    state: window.state,
    ...(window.bandwidthBytesPerSecond === undefined ? {} : { bandwidthBytesPerSecond: window.bandwidthBytesPerSecond }),
  }));
  const policy = new LinkPolicy({
    state: link.state,
    ...(link.bandwidthBytesPerSecond === undefined ? {} : { bandwidthBytesPerSecond: link.bandwidthBytesPerSecond }),
    schedule,
    ...(link.switchFile === undefined ? {} : { switchFile: link.switchFile }),
    logger: linkLogger,
  });
  const field = `links.${link.name}.tls`;
  const sender = new Http2Link({
    url: link.url,
    sender: config.site,
    token: link.token,
    ...(link.tls === undefined
      ? {}
      : {
          tls: {
            ...(link.tls.caFile === undefined ? {} : { ca: readPemFile(link.tls.caFile, `${field}.caFile`) }),
            ...(link.tls.certFile === undefined ? {} : { cert: readPemFile(link.tls.certFile, `${field}.certFile`) }),
            ...(link.tls.keyFile === undefined ? {} : { key: readPemFile(link.tls.keyFile, `${field}.keyFile`) }),
          },
        }),
    wireVersion: link.wireVersion,
    compressionQuality: link.compressionQuality,
    connectTimeoutMs: link.connectTimeoutMs,
    requestTimeoutMs: link.requestTimeoutMs,
    stallTimeoutMs: link.stallTimeoutMs,
  });
  const wanted = link.filter?.topics === undefined ? undefined : topicMatcher(link.filter.topics);
  // A customer's endpoint: what its principal (or token) may see, judged by the access policy.
  const audienceOf = link.filter?.principal !== undefined ? { principal: link.filter.principal } : link.filter?.tokenFile !== undefined ? { token: readLinkToken(link.filter.tokenFile, link.name) } : undefined;
  if (audienceOf !== undefined && access === undefined) throw new ConfigError(`links.${link.name}.filter: principal and tokenFile need an access: section`);
  const audience = audienceOf === undefined ? undefined : access!.linkFilter(audienceOf);
  const forwarder = new Forwarder({
    linkName: link.name,
    source: log.source,
    sender,
    streams: link.streams,
    urgentStreams: link.urgentStreams,
    summaryStreams: link.summaryStreams,
    policy,
    maxBatchRecords: link.maxBatchRecords,
    maxBatchBytes: link.maxBatchBytes,
    maxBatchAgeMs: link.maxBatchAgeMs,
    maxInFlightBatches: link.maxInFlightBatches,
    turns,
    retry: { initialDelayMs: link.retryInitialMs, maxDelayMs: link.retryMaxMs },
    ...(log.backlog === undefined ? {} : { backlog: log.backlog }),
    ...(log.recordsAfter === undefined ? {} : { recordsAfter: log.recordsAfter }),
    // Split horizon: the peer is the origin of its own records and holds them already; and a
    // filtered link (a customer's endpoint) carries only the topics it names.
    include: wanted === undefined ? (record) => record.origin !== link.name : (record) => record.origin !== link.name && wanted(record.topic),
    ...(audience === undefined
      ? // The destination may hold this site's records already, from another site: resume there.
        { catalog: log.catalog }
      : // A customer's endpoint holds only what it may see: no digest of this site's topics matches it.
        // Custody widened for a container: its topics are read again by offset.
        { audience, topicReader: reader }),
    logger: linkLogger,
    registry,
  });
  return { forwarder, policy };
}

/** The token a link to a customer's endpoint stands for (`links[].filter.tokenFile`). */
function readLinkToken(path: string, link: string): string {
  try {
    const token = readFileSync(path, 'utf8').trim();
    if (token.length === 0) throw new Error('empty file');
    return token;
  } catch (error) {
    throw new ConfigError(`links.${link}.filter.tokenFile: cannot read ${path}: ${(error as Error).message}`);
  }
}

/** A part of the site that takes longer than this to stop is named in the log. */
const SLOW_STOP_MS = 10_000;

export interface StartSiteOptions {
  readonly logger: Logger;
}

export async function startSite(config: SiteConfig, options: StartSiteOptions): Promise<RunningSite> {
  const logger = options.logger.child({ site: config.site });
  const startedAtMs = Date.now();
  const registry = new Registry();
  registry.setDefaultLabels({ site: config.site });
  collectDefaultMetrics({ register: registry });
  /** What to stop, each named so that a stop that hangs says which part it waits for. */
  const closers: [string, () => Promise<void>][] = [];
  const closeAll = async () => {
    for (const [name, close] of closers.reverse()) {
      const slow = setTimeout(() => logger.warn({ part: name }, `still stopping ${name} after ${SLOW_STOP_MS / 1000} s`), SLOW_STOP_MS);
      try {
        await close();
      } catch (error) {
        logger.error({ err: (error as Error).message, part: name }, 'error while stopping');
      } finally {
        clearTimeout(slow);
      }
    }
  };

  try {
    let sqliteLog: SqliteLog | undefined;
    /** Components whose health /healthz and /readyz report; the Kafka log when the site runs on it. */
    const healthSources: HealthSource[] = [];
    let sink: ReplicaSink;
    let reader: TopicReader;
    let streams: SiteStreams;
    let guarded: ConstructorParameters<typeof WriterGuard>[0];
    /** The Kafka log, for per-customer topics (started once access control is). */
    let kafkaLogForCustomers: KafkaLog | undefined;
    if (config.log.backend === 'kafka' && config.log.kafka !== undefined) {
      const kafka = config.log.kafka;
      // Loaded only on Kafka-backed sites, so a ship never loads the Kafka client.
      const { KafkaLog } = await import('../cloud/kafka-log/index.js');
      const hoursToMs = (hours: number | undefined) => (hours === undefined ? undefined : Math.round(hours * 3_600_000));
      const kafkaLog = await KafkaLog.open({
        siteId: config.site,
        brokers: kafka.brokers,
        topicPrefix: kafka.topicPrefix,
        partitions: kafka.partitions,
        replicationFactor: kafka.replicationFactor,
        minInsyncReplicas: kafka.minInsyncReplicas,
        retentionMs: hoursToMs(kafka.retentionHours),
        retentionBytes: kafka.retentionBytesPerPartition,
        streamTopics: Object.fromEntries(
          Object.entries(kafka.streams).map(([stream, own]) => [
            stream,
            {
              partitions: own.partitions,
              replicationFactor: own.replicationFactor,
              minInsyncReplicas: own.minInsyncReplicas,
              retentionMs: hoursToMs(own.retentionHours),
              retentionBytes: own.retentionBytesPerPartition,
              contentType: own.contentType,
            },
          ]),
        ),
        // With access control, its records (the `access` stream) are in the log too.
        streams: [
          ...new Set([
            ...DEFAULT_STREAM_PRIORITY,
            ...Object.keys(config.streams),
            ...Object.keys(kafka.streams),
            ...(config.access === undefined ? [] : RESERVED_ACCESS_TOPICS.map(({ stream }) => stream)),
          ]),
        ],
        indexPath: kafka.indexPath ?? join(config.dataDir, config.site, 'kafka-index.sqlite'),
        maxPendingRecords: kafka.maxPendingRecords,
        compression: kafka.compression,
        logger: logger.child({ component: 'kafka-log' }),
      });
      closers.push(['the Kafka log', () => kafkaLog.close()]);
      kafkaLogForCustomers = kafkaLog;
      sink = kafkaLog;
      reader = kafkaLog;
      healthSources.push(kafkaLog);
      // Links, the portal, holdings and summaries read the stream journals (docs/KAFKA.md).
      streams = { source: kafkaLog, catalog: kafkaLog, appender: kafkaLog, recordsAfter: (stream, position) => kafkaLog.recordsAfter(stream, position) };
      guarded = {
        append: (records) => kafkaLog.append(records),
        latest: (stream, topic) => kafkaLog.latest(stream, topic),
        // The writer guard reads only nextOffset; Kafka keeps no per-topic counts or first offset.
        topicStats: (stream, topic): TopicStats | undefined => {
          const held = kafkaLog.topicHighWater(stream, topic);
          return held === undefined ? undefined : { stream, topic, firstOffset: 0, nextOffset: held.nextOffset, count: held.nextOffset, bytes: 0, lastAppendMs: undefined };
        },
      };
    } else {
      const log = SqliteLog.open({
        siteId: config.site,
        path: join(config.dataDir, config.site, 'log.sqlite'),
        streams: streamPolicies(config),
        ...(config.log.maxBytes === undefined ? {} : { maxLogBytes: config.log.maxBytes }),
        minFreeDiskBytes: config.log.minFreeDiskBytes,
        indexerNice: config.log.indexerNice,
        logger: logger.child({ component: 'log' }),
        registry,
      });
      closers.push(['the log', () => log.close()]);
      sqliteLog = log;
      sink = log;
      reader = log;
      streams = { source: log, catalog: log, appender: log, backlog: (stream) => log.streamStats(stream) };
      guarded = log;
    }

    // The site's own writes go through the writer guard: one writer per topic, with handoff.
    const writerGuard = new WriterGuard(guarded, config.site, logger.child({ component: 'writers' }), registry, config.handoffOnlyStreams);

    let gateway: RunningGateway | undefined;
    if (config.mqtt !== undefined && sqliteLog !== undefined) {
      const mqtt = config.mqtt;
      const readPem = (path: string, field: string) => {
        try {
          return readFileSync(path);
        } catch (error) {
          throw new ConfigError(`mqtt.tls.${field}: cannot read ${path}: ${(error as Error).message}`);
        }
      };
      if (mqtt.auth.allowAnonymous) {
        logger.warn('MQTT gateway accepts anonymous clients (mqtt.auth.allowAnonymous); use a credentials file on a ship');
      }
      const upstream = mqtt.bridge === undefined ? undefined : new URL(mqtt.bridge.url);
      // Loaded only on sites with devices, so a shore site never loads the MQTT broker (and
      // restarts faster: aedes and its dependencies are the largest part of the start-up).
      const { startGateway } = await import('../edge/gateway/index.js');
      gateway = await startGateway({
        ownThread: mqtt.ownThread,
        // One writer per topic: readings for a topic another site writes are refused (writer-guard.ts).
        appender: writerGuard,
        topicRules: mqtt.topicRules,
        // Access records are written only through the access admin API, never by a device.
        reservedTopics: RESERVED_ACCESS_TOPICS,
        streams: mqtt.streams,
        host: mqtt.host,
        port: mqtt.port,
        ...(mqtt.tls === undefined
          ? {}
          : {
              tls: {
                host: mqtt.tls.host ?? mqtt.host,
                port: mqtt.tls.port,
                cert: readPem(mqtt.tls.certFile, 'certFile'),
                key: readPem(mqtt.tls.keyFile, 'keyFile'),
                ...(mqtt.tls.caFile === undefined ? {} : { ca: readPem(mqtt.tls.caFile, 'caFile') }),
                requireClientCertificate: mqtt.tls.requireClientCertificate,
              },
            }),
        ...(mqtt.websocket === undefined
          ? {}
          : { websocket: { host: mqtt.websocket.host ?? mqtt.host, port: mqtt.websocket.port, path: mqtt.websocket.path } }),
        maxTopicLength: mqtt.maxTopicLength,
        maxTopicLevels: mqtt.maxTopicLevels,
        maxPacketBytes: mqtt.maxPacketBytes,
        maxPendingRecords: mqtt.maxPendingRecords,
        ...(mqtt.auth.credentialsFile === undefined ? {} : { credentialsFile: mqtt.auth.credentialsFile }),
        allowAnonymous: mqtt.auth.allowAnonymous,
        failedConnects: mqtt.auth.failedConnects,
        livenessCheckIntervalMs: mqtt.liveness.checkIntervalMs,
        ...(mqtt.bridge === undefined || upstream === undefined
          ? {}
          : {
              bridge: {
                host: upstream.hostname,
                port: upstream.port === '' ? 1883 : Number(upstream.port),
                clientId: mqtt.bridge.clientId ?? `portcall-${config.site}-bridge`,
                ...(mqtt.bridge.username === undefined ? {} : { username: mqtt.bridge.username }),
                ...(mqtt.bridge.password === undefined ? {} : { password: mqtt.bridge.password }),
                topics: mqtt.bridge.topics,
                maxInFlight: mqtt.bridge.maxInFlight,
              },
            }),
        logger: logger.child({ component: 'gateway' }),
        registry,
      }).catch((error: unknown) => {
        if ((error as { code?: string }).code !== 'EADDRINUSE') throw error;
        const port = (error as { port?: number }).port;
        const [what, field] =
          port !== undefined && port === mqtt.tls?.port
            ? ['TLS', 'mqtt.tls.port']
            : port !== undefined && port === mqtt.websocket?.port
              ? ['WebSocket', 'mqtt.websocket.port']
              : ['TCP', 'mqtt.port or PORTCALL_MQTT__PORT'];
        throw new PortInUseError('mqtt', `site ${config.site} MQTT gateway (${what})`, mqtt.host, port ?? mqtt.port, `Pick another with ${field}.`);
      });
      const started = gateway;
      closers.push(['the MQTT gateway', () => started.close()]);
      const logDir = join(config.dataDir, config.site);
      new Gauge({
        name: 'portcall_gateway_log_file_bytes',
        help: 'Size of the log the gateway appends to (SQLite files and WAL)',
        registers: [registry],
        collect() {
          let bytes = 0;
          try {
            for (const name of readdirSync(logDir)) {
              if (name.includes('.sqlite')) bytes += statSync(join(logDir, name)).size;
            }
          } catch {
            // No log directory yet: nothing written.
          }
          this.set(bytes);
        },
      });
      logger.info({ port: gateway.port, tlsPort: gateway.tlsPort, webSocketPort: gateway.webSocketPort }, 'MQTT gateway listening');
    }

    if (config.detectors?.enabled === true && sqliteLog !== undefined) {
      const { DetectorRunner } = await import('../edge/detectors/index.js');
      const settings = config.detectors;
      const runner = new DetectorRunner({
        source: sqliteLog,
        appender: sqliteLog,
        detectors: {
          shockG: settings.shockG,
          divergeNm: settings.divergeNm,
          divergeWindowMs: settings.divergeWindowMinutes * 60_000,
          silenceMs: settings.silenceMinutes * 60_000,
          excursionC: settings.excursionC,
          excursionMs: settings.excursionMinutes * 60_000,
        },
        logger: logger.child({ component: 'detectors' }),
        registry,
      });
      await runner.start();
      closers.push(['the detectors', () => runner.close()]);
    }

    // Access control (docs/ACCESS.md) starts before the links: a link to a customer's endpoint
    // (links[].filter.principal or tokenFile) carries what the policy admits.
    const linksNeedAccess = config.links.some((link) => link.filter?.principal !== undefined || link.filter?.tokenFile !== undefined);
    const access =
      config.access === undefined || (config.http === undefined && !linksNeedAccess)
        ? undefined
        : await startSiteAccess(config.access, { reader, appender: streams.appender, source: streams.source }, logger, registry);
    if (access !== undefined) closers.push(['access control', async () => access.close()]);

    const forwarders: { name: string; forwarder: Forwarder; control: LinkControl }[] = [];
    // One batch of one link per turn of the event loop, however many links (dispatch-turns.ts).
    const turns = new DispatchTurns();
    // Every site forwards its whole log over its links, whichever log it is on.
    for (const link of config.links) {
      const { forwarder, policy } = linkFor(link, config, streams, logger, registry, access, reader, turns);
      await policy.start();
      closers.push([`link ${link.name}'s policy`, async () => policy.stop()]);
      await forwarder.start();
      closers.push([`link ${link.name}`, () => forwarder.stop()]);
      const control: LinkControl = {
        name: link.name,
        policy,
        controlToken: link.controlToken,
        status: () => {
          const stats = forwarder.stats();
          return {
            lag: forwarder.lag(),
            recordsForwarded: stats.recordsForwarded,
            wireBytes: stats.wireBytes,
            rawBytes: stats.rawBytes,
            lastAck: stats.lastAckAtMs === undefined ? null : new Date(stats.lastAckAtMs).toISOString(),
            lastError: stats.lastError ?? null,
            lastFailureReason: stats.lastFailureReason ?? null,
          };
        },
      };
      forwarders.push({ name: link.name, forwarder, control });
    }

    let app: FastifyInstance | undefined;
    let ingestStats: (() => IngestStats) | undefined;
    let httpUrl: string | undefined;
    if (config.http !== undefined) {
      const tls = config.ingest?.tls;
      app = Fastify({ logger: false, serverFactory: siteServerFactory(tls === undefined ? undefined : readHttpTls(tls)) });
      if (forwarders.length > 0) registerLinkRoutes(app, forwarders.map(({ control }) => control), { registry });
      if (config.handoffToken !== undefined) registerHandoffRoute(app, { guard: writerGuard, site: config.site, token: config.handoffToken });
      if (config.ingest !== undefined) {
        ingestStats = registerIngestRoutes(app, {
          sink,
          peers: config.ingest.peers,
          limits: config.ingest,
          registry,
        }).stats;
        registerHoldingsRoute(app, { catalog: streams.catalog, peers: config.ingest.peers, registry });
      }
      // Access control (docs/ACCESS.md, started above): every read asks the policy; without an access: section the site is open, loudly.
      if (access === undefined) logger.warn(ACCESS_OFF_WARNING);
      access?.registerAdminRoutes(app);
      // Per-customer Kafka topics (docs/ACCESS.md): what each customer's token admits, exactly once.
      if (access !== undefined && kafkaLogForCustomers !== undefined && (config.log.kafka?.customerTopics?.length ?? 0) > 0) {
        const stage = await startCustomerTopics(config.log.kafka!, kafkaLogForCustomers, access, logger, registry);
        closers.push(['the customer topics', () => stage.stop()]);
        healthSources.push(stage);
      }
      registerReadRoutes(app, { reader, registry, ...(access === undefined ? {} : { access: access.readAccess }) });
      // Per-topic summaries for `portcall verify --sites` (either log lists its topics: the
      // Kafka log from its high water); under access control each caller is summarised only
      // what its token may read.
      registerSummaryRoutes(app, { site: config.site, reader, listing: streams.catalog, registry, ...(access === undefined ? {} : { access: access.readAccess }) });
      const healthBody = () => {
        const components = healthSources.map((source) => source.health());
        const status = components.some((c) => c.status === 'unavailable')
          ? 'unavailable'
          : components.some((c) => c.status === 'degraded')
            ? 'degraded'
            : 'ok';
        const reasons = components.filter((c) => c.reason !== undefined).map((c) => `${c.component}: ${c.reason}`);
        return {
          status,
          site: config.site,
          backend: config.log.backend,
          ...(reasons.length === 0 ? {} : { reasons }),
          ...(access === undefined ? { warnings: [ACCESS_OFF_WARNING] } : {}),
          components,
        };
      };
      // Liveness: 200 while the process serves, whatever its backends do, so an orchestrator
      // does not restart a site that is only waiting for Kafka; the body says what is wrong.
      app.get('/healthz', async () => healthBody());
      // Readiness: 503 while batches would be refused (a backend down or behind), with why.
      app.get('/readyz', async (_request, reply) => {
        const body = healthBody();
        return reply.code(body.status === 'unavailable' ? 503 : 200).send(body);
      });
      // One screen of the site for `portcall status` (site/status-route.ts).
      const statusLogDir = join(config.dataDir, config.site);
      registerStatusRoute(app, {
        site: config.site,
        backend: config.log.backend,
        log: sqliteLog,
        fileBytes: () => {
          let bytes = 0;
          try {
            for (const name of readdirSync(statusLogDir)) if (name.includes('.sqlite')) bytes += statSync(join(statusLogDir, name)).size;
          } catch {
            // No log directory (a Kafka site without its index yet).
          }
          return bytes;
        },
        health: healthBody,
        ingest: ingestStats === undefined ? undefined : () => ({ ...ingestStats!() }),
        peers: config.ingest?.peers.map((peer) => peer.site) ?? [],
        links: () => forwarders.map(({ name, forwarder, control }) => ({ name, state: forwarder.condition().state, ...control.status() })),
        registry,
        startedAtMs,
      });
      // The customer portal (docs/PORTAL.md): on by default at shore sites on the embedded log;
      // on a Kafka-backed site when asked (portal.enabled: true), since it rebuilds its read
      // model by reading the whole of Kafka's streams at every start.
      if (config.portal?.enabled ?? (config.ingest !== undefined && config.log.backend === 'sqlite')) {
        const portal = startSitePortal(app, {
          source: streams.source,
          // Series points are kept as numbers; their records are read back from the log for a page.
          reader,
          access,
          operations: () => ({
            health: healthBody(),
            ingest: ingestStats?.() ?? null,
            links: forwarders.map(({ name, forwarder, control }) => ({ name, state: forwarder.condition().state, ...control.status() })),
          }),
          logger,
          registry,
        });
        closers.push(['the portal', async () => portal.stop()]);
      }
      app.get('/metrics', async (_request, reply) => {
        reply.header('content-type', registry.contentType);
        return registry.metrics();
      });
      try {
        await app.listen({ host: config.http.host, port: config.http.port });
      } catch (error) {
        if ((error as { code?: string }).code === 'EADDRINUSE') {
          throw new PortInUseError(
            'http',
            `site ${config.site} HTTP`,
            config.http.host,
            config.http.port,
            'Pick another with http.port in the config file or PORTCALL_HTTP__PORT.',
          );
        }
        throw error;
      }
      const address = app.server.address();
      const boundPort = typeof address === 'object' && address !== null ? address.port : config.http.port;
      httpUrl = `${tls === undefined ? 'http' : 'https'}://${config.http.host}:${boundPort}`;
      const started = app;
      // Stop taking batches before the log closes beneath the handlers.
      closers.push(['the HTTP server', () => started.close()]);
      logger.info({ url: httpUrl }, 'HTTP listening');
    }
    // Once the site serves: its start-up (modules, schemas, the log's open) holds the loop by design.
    const loopWatch = watchEventLoop({ logger, registry });
    closers.push(['the event loop watch', async () => loopWatch.stop()]);

    return {
      name: config.site,
      httpUrl,
      mqttPort: gateway?.port,
      mqttTlsPort: gateway?.tlsPort,
      mqttWebSocketPort: gateway?.webSocketPort,
      registry,
      stats: () => ({
        gatewayMessagesStored: gateway?.stats().messagesStored ?? 0,
        gatewayClients: gateway?.stats().clientsConnected ?? 0,
        bridgeState: gateway?.bridgeState,
        ingest: ingestStats?.(),
        links: forwarders.map(({ name, forwarder }) => ({
          name,
          state: forwarder.condition().state,
          recordsForwarded: forwarder.stats().recordsForwarded,
          wireBytes: forwarder.stats().wireBytes,
          lastError: forwarder.stats().lastError,
        })),
      }),
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
