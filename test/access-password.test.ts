/**
 * Sign-in by password (issue 9 "Sign in (token or password)", issue 11 "rate limits on
 * sign-in") over a real SqliteLog, the admin API and the read API: passwords are scrypt
 * hashes in access records; signing in appends nothing and returns a stateless session token
 * that any site holding the access key and the replicated records accepts, until it expires,
 * the password changes or the principal is disabled.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ACCESS_STREAM, ACCESS_TOPIC } from '../cloud/access/index.js';
import { issueSession, passwordFingerprint } from '../cloud/access/passwords.js';
import { SqliteLog } from '../edge/log/index.js';
import { ACCESS_KEY, accessSite, type AccessSite } from './support/access-site.js';

const T0 = Date.parse('2025-06-01T00:00:00Z');
const PASSWORD = 'correct horse battery staple';

async function cast(site: AccessSite) {
  await site.admin('POST', '/v1/access/orgs', { id: 'toyco', kind: 'customer', name: 'ToyCo' });
  await site.admin('POST', '/v1/access/principals', { id: 'alice', org: 'toyco', roles: ['customer'] });
  await site.admin('POST', '/v1/access/principals', { id: 'nopass', org: 'toyco', roles: ['customer'] });
  await site.admin('POST', '/v1/access/principals', { id: 'gone', org: 'toyco', roles: ['customer'] });
  await site.admin('POST', '/v1/access/custody', { id: 'y01', container: 'Y01', org: 'toyco', from: new Date(T0).toISOString() });
  await site.admin('PUT', '/v1/access/principals/alice/password', { password: PASSWORD });
  await site.admin('PUT', '/v1/access/principals/gone/password', { password: PASSWORD });
  await site.admin('DELETE', '/v1/access/principals/gone');
  await site.log.append([{ stream: 'containers', topic: 'Y01', eventTimeMs: T0, payload: Buffer.from('{"tempC":4}') }]);
}

const latest = async (site: AccessSite, token: string) =>
  (await site.app.inject({ url: '/v1/streams/containers/topics/Y01/latest', headers: { authorization: `Bearer ${token}` } })).statusCode;

describe('sign-in by password', () => {
  let site: AccessSite;
  beforeAll(async () => {
    site = await accessSite({ signInRequests: 1000 });
    await cast(site);
  });
  afterAll(async () => site.close());

  it('set a password, sign in, read with the session token; the session is not stored anywhere', async () => {
    const before = (await site.log.readTopic(ACCESS_STREAM, ACCESS_TOPIC, 0, { maxRecords: 10_000 })).length;
    const session = await site.access.signIn('alice', PASSWORD, '10.0.0.1');
    expect(session).toBeDefined();
    expect(session!.token).toMatch(/^pcs_[A-Za-z0-9_-]+_[A-Za-z0-9_-]{43}$/);
    expect(session!.expiresAtMs).toBe(site.clock.nowMs + 8 * 3_600_000);
    expect(await latest(site, session!.token)).toBe(200);
    expect(site.access.policy.authenticate(session!.token)?.principal.id).toBe('alice');
    // Signing in appended nothing; the log holds the hash, never the password or the session.
    const records = await site.log.readTopic(ACCESS_STREAM, ACCESS_TOPIC, 0, { maxRecords: 10_000 });
    expect(records).toHaveLength(before);
    const text = records.map((record) => Buffer.from(record.payload).toString()).join('\n');
    expect(text).toMatch(/"type":"password.set","principal":"alice","hash":"scrypt\$16384\$8\$1\$/);
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain(session!.token.slice(4, 40));
    const state = await site.app.inject({ url: '/v1/access/state', headers: { authorization: 'Bearer bootstrap-admin-token-for-tests-0123456789' } });
    expect(state.body).toContain('"passwords":[{"principal":"alice"');
    expect(state.body).not.toContain('scrypt$');
  });

  it('wrong password, unknown principal, disabled principal, principal without password: all refused alike', async () => {
    for (const [principal, password] of [
      ['alice', 'not the password at all'],
      ['alice', ''],
      ['nobody', PASSWORD],
      ['gone', PASSWORD],
      ['nopass', PASSWORD],
      ['bootstrap', PASSWORD],
    ] as const) {
      expect(await site.access.signIn(principal, password, '10.0.0.2'), principal).toBeUndefined();
    }
    const counted = await site.registry.getSingleMetricAsString('portcall_access_sign_ins_total');
    expect(counted).toContain('outcome="refused"} 6');
  });

  it('the admin API checks the password length and the principal; clearing a password ends its sessions', async () => {
    const put = async (principal: string, password: unknown) =>
      (await site.app.inject({ method: 'PUT', url: `/v1/access/principals/${principal}/password`, payload: { password }, headers: { authorization: 'Bearer bootstrap-admin-token-for-tests-0123456789' } })).statusCode;
    expect(await put('nopass', 'short')).toBe(400);
    expect(await put('nopass', 'x'.repeat(1025))).toBe(400);
    expect(await put('nobody', 'long enough password')).toBe(400);
    expect((await site.app.inject({ method: 'PUT', url: '/v1/access/principals/nopass/password', payload: { password: 'long enough password' } })).statusCode).toBe(401);
    expect(await put('nopass', 'long enough password')).toBe(200);
    const session = await site.access.signIn('nopass', 'long enough password', '10.0.0.3');
    expect(await latest(site, session!.token)).toBe(200);
    await site.admin('DELETE', '/v1/access/principals/nopass/password');
    expect(site.access.policy.authenticate(session!.token)).toBeUndefined();
    expect(await site.access.signIn('nopass', 'long enough password', '10.0.0.3')).toBeUndefined();
  });
});

describe('sessions end', () => {
  let site: AccessSite;
  afterEach(async () => site.close());

  it('a changed password refuses the old session (also on a long-lived filter); the new one works', async () => {
    site = await accessSite();
    await cast(site);
    const old = (await site.access.signIn('alice', PASSWORD, 'c'))!.token;
    const filter = site.access.filterForToken(old)!;
    expect(filter.mayHold('containers', 'Y01')).toBe(true);
    await site.admin('PUT', '/v1/access/principals/alice/password', { password: 'a brand new passphrase' });
    expect(await latest(site, old)).toBe(404);
    expect(filter.mayHold('containers', 'Y01')).toBe(false);
    expect(await site.access.signIn('alice', PASSWORD, 'c')).toBeUndefined();
    const fresh = (await site.access.signIn('alice', 'a brand new passphrase', 'c'))!.token;
    expect(await latest(site, fresh)).toBe(200);
    // Even the same password set again is a new hash (new salt): sessions end.
    await site.admin('PUT', '/v1/access/principals/alice/password', { password: 'a brand new passphrase' });
    expect(await latest(site, fresh)).toBe(404);
  });

  it('an expired session is refused; disabling the principal ends its sessions', async () => {
    site = await accessSite();
    await cast(site);
    const token = (await site.access.signIn('alice', PASSWORD, 'c'))!.token;
    site.clock.nowMs += 8 * 3_600_000 - 1;
    expect(await latest(site, token)).toBe(200);
    site.clock.nowMs += 1;
    expect(await latest(site, token)).toBe(404);
    const again = (await site.access.signIn('alice', PASSWORD, 'c'))!.token;
    expect(await latest(site, again)).toBe(200);
    await site.admin('DELETE', '/v1/access/principals/alice');
    expect(await latest(site, again)).toBe(404);
  });

  it('a tampered payload, or a session signed under another access key, is refused', async () => {
    site = await accessSite();
    await cast(site);
    const token = (await site.access.signIn('alice', PASSWORD, 'c'))!.token;
    const [, payload, mac] = /^pcs_(.+)_([A-Za-z0-9_-]{43})$/.exec(token)!;
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as { p: string; e: number; f: string };
    const forged = (changed: Record<string, unknown>) => `pcs_${Buffer.from(JSON.stringify({ ...claims, ...changed })).toString('base64url')}_${mac!}`;
    expect(await latest(site, forged({ e: claims.e + 86_400_000 }))).toBe(404);
    expect(await latest(site, forged({ p: 'nopass' }))).toBe(404);
    // A MAC changed in its first character: every bit of it counts (the last one's low two bits are
    // base64url padding, so changing only those left the same MAC: this test failed 1 run in 16).
    const macAt = token.length - 43;
    expect(await latest(site, `${token.slice(0, macAt)}${token[macAt] === 'A' ? 'B' : 'A'}${token.slice(macAt + 1)}`)).toBe(404);
    // Well-formed claims (right principal, live fingerprint) MACed under another key: refused; the same under this site's key: accepted.
    const hash = site.access.projector.state.passwords.get('alice')!.hash;
    const other = Buffer.from('o'.repeat(48));
    const claimsOf = (key: Buffer) => ({ principal: 'alice', expiresAtMs: site.clock.nowMs + 60_000, fingerprint: passwordFingerprint(key, hash) });
    expect(await latest(site, issueSession(other, claimsOf(other)))).toBe(404);
    expect(await latest(site, issueSession(other, claimsOf(ACCESS_KEY)))).toBe(404);
    expect(await latest(site, issueSession(ACCESS_KEY, claimsOf(ACCESS_KEY)))).toBe(200);
  });

  it('sign-in is rate limited per client address and per principal: 429 past N, counted', async () => {
    site = await accessSite({ signInRequests: 3 });
    await cast(site);
    for (let i = 0; i < 3; i += 1) expect(await site.access.signIn('alice', 'wrong password!', 'attacker')).toBeUndefined();
    await expect(site.access.signIn('alice', PASSWORD, 'attacker')).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 60 });
    // From another address, alice's own limit is used up too (3 attempts at her name this minute).
    await expect(site.access.signIn('alice', PASSWORD, 'alice-laptop')).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    // Another principal from a fresh address is not affected.
    expect(await site.access.signIn('nopass', PASSWORD, 'someone')).toBeUndefined();
    site.clock.nowMs += 60_000;
    expect(await site.access.signIn('alice', PASSWORD, 'alice-laptop')).toBeDefined();
    const counted = await site.registry.getSingleMetricAsString('portcall_access_sign_ins_total');
    expect(counted).toContain('outcome="limited"} 2');
    expect(counted).toContain('outcome="refused"} 4');
    expect(counted).toContain('outcome="ok"} 1');
  });
});

describe('a session across sites', () => {
  const dirs: string[] = [];
  const sites: AccessSite[] = [];
  afterAll(async () => {
    for (const site of sites) await site.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** A port: its own log, holding the access records replicated from headquarters. */
  async function port(hq: AccessSite, key: Buffer) {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-access-port-'));
    dirs.push(dir);
    const log = SqliteLog.open({ siteId: 'SYD', path: join(dir, 'log.sqlite') });
    for (const record of await hq.log.readTopic(ACCESS_STREAM, ACCESS_TOPIC, 0, { maxRecords: 10_000 })) {
      await log.append([{ stream: record.stream, topic: record.topic, eventTimeMs: record.eventTimeMs, headers: record.headers, payload: record.payload }]);
    }
    for (const record of await hq.log.readTopic('manifests', 'custody', 0, { maxRecords: 10_000 })) {
      await log.append([{ stream: record.stream, topic: record.topic, eventTimeMs: record.eventTimeMs, headers: record.headers, payload: record.payload }]);
    }
    await log.append([{ stream: 'containers', topic: 'Y01', eventTimeMs: T0, payload: Buffer.from('{"tempC":5}') }]);
    const site = await accessSite({ key, log });
    site.clock.nowMs = hq.clock.nowMs;
    sites.push(site);
    return site;
  }

  it('a session issued at headquarters works at a port holding the same key and the replicated records, and one signed in at the port works at headquarters', async () => {
    const hq = await accessSite();
    sites.push(hq);
    await cast(hq);
    const sydney = await port(hq, ACCESS_KEY);
    const atHq = (await hq.access.signIn('alice', PASSWORD, 'c'))!.token;
    expect(await latest(sydney, atHq)).toBe(200);
    const atPort = (await sydney.access.signIn('alice', PASSWORD, 'c'))!.token;
    expect(await latest(hq, atPort)).toBe(200);
    // A port whose records are not signed under its key holds no principal: nothing is accepted there.
    const stranger = await port(hq, Buffer.from('s'.repeat(48)));
    expect(await latest(stranger, atHq)).toBe(404);
    expect(await stranger.access.signIn('alice', PASSWORD, 'c')).toBeUndefined();
  });
});
