/**
 * Wires access control into a site (composition root helper): reads the key and bootstrap
 * token files of the `access:` section and starts the policy over the site's log.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ConfigError, type RecordAppender, type StreamSource, type TopicReader } from '../core/index.js';
import { ACCESS_STREAM, CUSTODY_STREAM, CUSTODY_TOPIC, startAccess, type RunningAccess } from '../cloud/access/index.js';
import type { AccessConfig } from './config.js';

/** Said at start and on /healthz when a site with a read API has no `access:` section. */
export const ACCESS_OFF_WARNING =
  'access control is off (no access: section): every topic on this site is readable by anyone who can reach its HTTP port';

/**
 * Log topics only the site writes (through the access admin API): the whole `access` stream
 * and `manifests/custody`. The gateway refuses device and bridge messages mapped there, at
 * every site, whether or not it enforces access itself (the records replicate to those that do).
 */
export const RESERVED_ACCESS_TOPICS: readonly { stream: string; topic?: string }[] = [{ stream: ACCESS_STREAM }, { stream: CUSTODY_STREAM, topic: CUSTODY_TOPIC }];

function readSecret(path: string, field: string, minLength: number): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new ConfigError(`access.${field}: cannot read ${path}: ${(error as Error).message}`);
  }
  const trimmed = Buffer.from(bytes.toString('utf8').trim(), 'utf8');
  if (trimmed.length < minLength) throw new ConfigError(`access.${field}: ${path} must hold at least ${minLength} characters`);
  return trimmed;
}

export async function startSiteAccess(
  config: AccessConfig,
  log: { reader: TopicReader; appender?: RecordAppender; source?: Pick<StreamSource, 'onDurable'> },
  logger: Logger,
  registry: Registry,
): Promise<RunningAccess> {
  const key = readSecret(config.keyFile, 'keyFile', 32);
  const bootstrapToken = config.bootstrapTokenFile === undefined ? undefined : readSecret(config.bootstrapTokenFile, 'bootstrapTokenFile', 32).toString('utf8');
  return startAccess({
    key,
    ...(bootstrapToken === undefined ? {} : { bootstrapToken }),
    reader: log.reader,
    ...(log.appender === undefined ? {} : { appender: log.appender }),
    ...(log.source === undefined ? {} : { source: log.source }),
    readRateLimit: { requests: config.readRateLimit.requests, windowMs: config.readRateLimit.windowSeconds * 1000 },
    adminRateLimit: { requests: config.adminRateLimit.requests, windowMs: config.adminRateLimit.windowSeconds * 1000 },
    signInRateLimit: { requests: config.signInRateLimit.requests, windowMs: config.signInRateLimit.windowSeconds * 1000 },
    sessionMs: config.sessionHours * 3_600_000,
    maxScanRecords: config.maxScanRecords,
    logger: logger.child({ component: 'access' }),
    registry,
  });
}
