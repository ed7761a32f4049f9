/**
 * The site composition root and access control: without an `access:` section the site stays
 * open and says so (log and /healthz); with one, reads want a token; the section is validated.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../core/index.js';
import { parseSiteConfig, startSite, type RunningSite } from '../site/index.js';

const dirs: string[] = [];
const sites: RunningSite[] = [];
afterEach(async () => {
  for (const site of sites.splice(0)) await site.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-access-site-'));
  dirs.push(dir);
  return dir;
}

function recordingLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
  return { logger, lines };
}

describe('site access wiring', () => {
  it('without access: the read API is open, with a loud warning at start and on /healthz', async () => {
    const dir = tempDir();
    const { logger, lines } = recordingLogger();
    const site = await startSite(parseSiteConfig({ site: 'HQ', dataDir: dir, http: { port: 0 } }), { logger });
    sites.push(site);
    expect(lines.join('')).toContain('access control is off');
    const health = (await (await fetch(new URL('/healthz', site.httpUrl))).json()) as { status: string; warnings: string[] };
    expect(health.status).toBe('ok');
    expect(health.warnings[0]).toContain('access control is off');
    expect((await fetch(new URL('/v1/streams/containers/topics/Z99/latest', site.httpUrl))).status).toBe(404);
  });

  it('with access: reads want a token, the admin API is up, and /healthz has no warning', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'key'), 'k'.repeat(40));
    writeFileSync(join(dir, 'admin'), 'a'.repeat(40));
    const { logger, lines } = recordingLogger();
    const site = await startSite(
      parseSiteConfig({ site: 'HQ', dataDir: dir, http: { port: 0 }, access: { keyFile: join(dir, 'key'), bootstrapTokenFile: join(dir, 'admin') } }),
      { logger },
    );
    sites.push(site);
    expect(lines.join('')).not.toContain('access control is off');
    const health = (await (await fetch(new URL('/healthz', site.httpUrl))).json()) as { warnings?: string[] };
    expect(health.warnings).toBeUndefined();
    const state = await fetch(new URL('/v1/access/state', site.httpUrl), { headers: { authorization: `Bearer ${'a'.repeat(40)}` } });
    expect(state.status).toBe(200);
    expect((await fetch(new URL('/v1/access/state', site.httpUrl))).status).toBe(401);
  });

  it('refuses an access: section that is incomplete, or a key that is too short', async () => {
    expect(() => parseSiteConfig({ site: 'HQ', access: {} })).toThrow(/access\.keyFile/);
    expect(() => parseSiteConfig({ site: 'HQ', access: { keyFile: 'k', readRateLimit: { requests: 0 } } })).toThrow(/access\.readRateLimit\.requests/);
    expect(() => parseSiteConfig({ site: 'HQ', access: { keyFile: 'k', colour: 'blue' } })).toThrow(/colour/);
    const config = parseSiteConfig({ site: 'HQ', access: { keyFile: 'k' } });
    expect(config.access).toEqual({ keyFile: 'k', readRateLimit: { requests: 600, windowSeconds: 60 }, adminRateLimit: { requests: 60, windowSeconds: 60 }, signInRateLimit: { requests: 10, windowSeconds: 60 }, sessionHours: 8, maxScanRecords: 100_000 });
    const dir = tempDir();
    writeFileSync(join(dir, 'short'), 'too-short');
    await expect(startSite(parseSiteConfig({ site: 'HQ', dataDir: dir, http: { port: 0 }, access: { keyFile: join(dir, 'short') } }), { logger: pino({ level: 'silent' }) })).rejects.toThrow(
      ConfigError,
    );
  });
});
