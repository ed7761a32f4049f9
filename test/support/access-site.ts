/**
 * A site with access control for tests: a real SqliteLog, the policy and its projector, the
 * admin API and the read API on one fastify instance (driven with `inject`), and a clock the
 * test moves.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { registerReadRoutes } from '../../cloud/read-api/index.js';
import { startAccess, type RunningAccess } from '../../cloud/access/index.js';
import { SqliteLog } from '../../edge/log/index.js';

export const ACCESS_KEY = Buffer.from('k'.repeat(48));
export const BOOTSTRAP = 'bootstrap-admin-token-for-tests-0123456789';

export interface AccessSite {
  readonly app: FastifyInstance;
  readonly log: SqliteLog;
  readonly access: RunningAccess;
  readonly registry: Registry;
  readonly clock: { nowMs: number };
  /** Calls the admin API as the bootstrap admin; throws unless 200. */
  admin(method: 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown): Promise<Record<string, unknown>>;
  /** Issues a token for a principal and returns it. */
  token(principal: string, expiresAt?: string): Promise<string>;
  close(): Promise<void>;
}

export async function accessSite(
  options: { readRequests?: number; adminRequests?: number; signInRequests?: number; maxScanRecords?: number; maxPageRecords?: number; key?: Buffer; log?: SqliteLog } = {},
): Promise<AccessSite> {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-access-'));
  const log = options.log ?? SqliteLog.open({ siteId: 'HQ', path: join(dir, 'log.sqlite') });
  const clock = { nowMs: Date.parse('2026-01-01T00:00:00Z') };
  const registry = new Registry();
  const access = await startAccess({
    key: options.key ?? ACCESS_KEY,
    bootstrapToken: BOOTSTRAP,
    reader: log,
    appender: log,
    source: log,
    readRateLimit: { requests: options.readRequests ?? 1_000_000, windowMs: 60_000 },
    adminRateLimit: { requests: options.adminRequests ?? 1_000_000, windowMs: 60_000 },
    signInRateLimit: { requests: options.signInRequests ?? 1_000_000, windowMs: 60_000 },
    ...(options.maxScanRecords === undefined ? {} : { maxScanRecords: options.maxScanRecords }),
    now: () => clock.nowMs,
    registry,
  });
  const app = Fastify({ logger: false });
  access.registerAdminRoutes(app);
  registerReadRoutes(app, { reader: log, registry, access: access.readAccess, ...(options.maxPageRecords === undefined ? {} : { maxPageRecords: options.maxPageRecords }) });
  await app.ready();
  const admin = async (method: 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown) => {
    const response = await app.inject({ method, url, headers: { authorization: `Bearer ${BOOTSTRAP}` }, ...(payload === undefined ? {} : { payload: payload as object }) });
    if (response.statusCode !== 200) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
    return response.json<Record<string, unknown>>();
  };
  return {
    app,
    log,
    access,
    registry,
    clock,
    admin,
    token: async (principal, expiresAt) =>
      (await admin('POST', '/v1/access/tokens', { principal, ...(expiresAt === undefined ? {} : { expiresAt }) })).token as string,
    close: async () => {
      await app.close();
      access.close();
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
