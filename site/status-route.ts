/**
 * `GET /v1/status`: one read-only JSON summary of the site for `portcall status`
 * (cli/status-command.ts): the log's size and per-stream counts (the same `streamStats` as
 * `portcall log stats`), ingest peers and refusals, links, alerts and warn/error log lines
 * of the last hour. Operational figures only, like /healthz and /metrics: stream names,
 * counts and peer site names, never a topic name, a record or a token.
 */
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { StreamSource } from '../core/index.js';
import { logProblemsLastHour } from './log-problems.js';

const HOUR_MS = 3_600_000;
/** Alerts looked at, newest first, when counting the last hour's; more is reported as "at least". */
const MAX_ALERTS_SCANNED = 10_000;

export interface StatusLog extends StreamSource {
  listStreams(): string[];
  streamStats(stream: string): { topics: number; records: number; bytes: number; lastPosition: number } | undefined;
  usedBytes(): number;
}

export interface StatusOptions {
  readonly site: string;
  readonly backend: string;
  /** The embedded log; absent on a Kafka-backed site (its figures are in Kafka's own tools). */
  readonly log: StatusLog | undefined;
  /** Bytes of the log's files on disk (records, WAL, topic index). */
  readonly fileBytes: () => number;
  readonly health: () => Record<string, unknown>;
  readonly ingest: (() => Record<string, unknown>) | undefined;
  readonly peers: readonly string[];
  readonly links: () => Record<string, unknown>[];
  readonly registry: Registry;
  readonly startedAtMs: number;
}

/** Sum of a counter's values by label `reason` (or by its only series), since the process started. */
async function counterByReason(registry: Registry, name: string): Promise<Record<string, number>> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return {};
  const { values } = await metric.get();
  const result: Record<string, number> = {};
  for (const value of values) {
    const reason = String(value.labels.reason ?? 'total');
    result[reason] = (result[reason] ?? 0) + value.value;
  }
  return result;
}

/** Alerts the site stored in the last hour (by ingest time), by `type` of their JSON payload. */
async function alertsLastHour(log: StatusLog, now: number) {
  const stats = log.streamStats('alerts');
  if (stats === undefined || stats.lastPosition < 1) return { count: 0, byType: {}, complete: true };
  const cutoff = now - HOUR_MS;
  let after = Math.max(0, stats.lastPosition - MAX_ALERTS_SCANNED);
  const byType: Record<string, number> = {};
  let count = 0;
  for (let pages = 0; pages < 100; pages += 1) {
    const page = await log.readStream('alerts', after, { maxRecords: 1000 });
    for (const record of page.records) {
      if (record.ingestTimeMs < cutoff) continue;
      count += 1;
      let type = 'unknown';
      try {
        const parsed = JSON.parse(Buffer.from(record.payload).toString('utf8')) as { type?: unknown };
        if (typeof parsed.type === 'string' && /^[\w.-]{1,64}$/.test(parsed.type)) type = parsed.type;
      } catch {
        // Not JSON: counted as unknown.
      }
      byType[type] = (byType[type] ?? 0) + 1;
    }
    if (page.nextPosition === after || page.records.length === 0) break;
    after = page.nextPosition;
  }
  // Complete unless the window reaches back past what was scanned.
  const complete = stats.lastPosition <= MAX_ALERTS_SCANNED || count < MAX_ALERTS_SCANNED;
  return { count, byType, complete };
}

export function registerStatusRoute(app: FastifyInstance, options: StatusOptions): void {
  app.get('/v1/status', async () => {
    const now = Date.now();
    const log = options.log;
    return {
      site: options.site,
      backend: options.backend,
      at: new Date(now).toISOString(),
      uptimeSeconds: Math.round((now - options.startedAtMs) / 1000),
      health: options.health(),
      log:
        log === undefined
          ? null
          : {
              usedBytes: log.usedBytes(),
              fileBytes: options.fileBytes(),
              streams: log.listStreams().map((stream) => {
                const stats = log.streamStats(stream)!;
                return { stream, topics: stats.topics, records: stats.records, bytes: stats.bytes };
              }),
            },
      ingest:
        options.ingest === undefined
          ? null
          : {
              peers: options.peers,
              ...options.ingest(),
              refusedByReason: await counterByReason(options.registry, 'portcall_ingest_refused_batches_total'),
            },
      links: options.links(),
      gateway: {
        refusalsByReason: await counterByReason(options.registry, 'portcall_gateway_refusals_total'),
        connectionsRefusedByReason: await counterByReason(options.registry, 'portcall_gateway_connections_refused_total'),
      },
      alertsLastHour: log === undefined ? null : await alertsLastHour(log, now),
      logLinesLastHour: logProblemsLastHour(now),
    };
  });
}
