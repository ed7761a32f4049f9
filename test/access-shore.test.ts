/**
 * Access control in a real process: `portcall shore` with an `access:` section, managed with
 * `portcall access ...` commands (child processes talking to its admin API), read over HTTP
 * with the tokens they printed.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogRecord } from '../core/index.js';
import { BATCH_CONTENT_TYPE, Compression, encodeBatch } from '../edge/link/index.js';
import { PORTCALL_BIN, startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const run = promisify(execFile);
const T0 = Date.parse('2026-01-10T00:00:00Z');
const PEER_TOKEN = 'aurora-ingest-token-0123456789';

describe('portcall shore with access control, driven by portcall access', () => {
  let dir: string;
  let shore: PortcallProcess;
  let url: string;
  const adminFile = () => join(dir, 'admin.token');

  const access = async (args: string[], tokenFile = adminFile()) => {
    try {
      const { stdout } = await run(process.execPath, [PORTCALL_BIN, 'access', ...args, '--url', url, '--token-file', tokenFile], { timeout: 30_000 });
      return { code: 0, stdout, stderr: '' };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  };
  const read = async (path: string, token?: string) => {
    const response = await fetch(new URL(path, url), token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    const { date: _date, ...headers } = Object.fromEntries(response.headers);
    return { status: response.status, headers, body: await response.text() };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcall-access-shore-'));
    writeFileSync(join(dir, 'access.key'), 'a-key-shared-by-the-carrier-sites-0123456789\n');
    writeFileSync(adminFile(), 'bootstrap-admin-token-0123456789abcdef\n');
    const config = writeYaml(join(dir, 'hq.yaml'), {
      site: 'HQ',
      dataDir: join(dir, 'data'),
      http: { port: 0 },
      ingest: { peers: [{ site: 'AURORA', token: PEER_TOKEN }] },
      access: { keyFile: join(dir, 'access.key'), bootstrapTokenFile: adminFile() },
    });
    shore = startPortcall(['shore', '--config', config]);
    [, url] = (await shore.waitFor(/HTTP on (\S+) /)) as unknown as [string, string];
    const records: LogRecord[] = [];
    for (const topic of ['Y01', 'R01']) {
      for (let offset = 0; offset < 10; offset += 1) {
        records.push({
          origin: 'AURORA',
          stream: 'containers',
          topic,
          offset,
          eventTimeMs: T0 + offset * 60_000,
          ingestTimeMs: T0 + offset * 60_000,
          headers: {},
          payload: Buffer.from(JSON.stringify({ tempC: -18 + offset / 10 })),
        });
      }
    }
    const posted = await fetch(new URL('/v1/batches', url), {
      method: 'POST',
      headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${PEER_TOKEN}` },
      body: encodeBatch({ sender: 'AURORA', records }, Compression.None),
    });
    expect(posted.status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await shore?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every access subcommand has --help', async () => {
    const commands = [[], ['org', 'add'], ['principal', 'add'], ['principal', 'disable'], ['group', 'set'], ['ace', 'set'], ['ace', 'clear'], ['token', 'issue'], ['token', 'revoke'], ['password', 'set'], ['password', 'clear'], ['custody', 'assign'], ['custody', 'withdraw'], ['show']];
    for (const command of commands) {
      const { stdout } = await run(process.execPath, [PORTCALL_BIN, 'access', ...command, '--help'], { timeout: 30_000 });
      expect(stdout, command.join(' ')).toMatch(new RegExp(`Usage: portcall access ${command.join(' ')}`.trim()));
    }
  }, 60_000);

  it('grants, reads, refuses and revokes end to end', async () => {
    for (const args of [
      ['org', 'add', 'toyco', '--kind', 'customer', '--name', 'ToyCo'],
      ['org', 'add', 'redco', '--kind', 'customer'],
      ['principal', 'add', 'alice', '--org', 'toyco', '--role', 'customer'],
      ['custody', 'assign', 'Y01', '--org', 'toyco', '--from', new Date(T0).toISOString(), '--to', new Date(T0 + 5 * 60_000).toISOString(), '--id', 'y01-v1'],
      ['custody', 'assign', 'R01', '--org', 'redco', '--from', new Date(T0).toISOString()],
    ]) {
      const result = await access(args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
    }
    const issued = await access(['token', 'issue', 'alice', '--expires', '30d', '--only-token']);
    expect(issued.code, issued.stderr).toBe(0);
    const token = issued.stdout.trim();
    expect(token).toMatch(/^pct_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);

    const own = await read('/v1/streams/containers/topics/Y01/records?maxRecords=100', token);
    expect(own.status).toBe(200);
    expect((JSON.parse(own.body) as { records: { offset: number }[] }).records.map((r) => r.offset)).toEqual([0, 1, 2, 3, 4]);

    const missing = await read('/v1/streams/containers/topics/Z99/records', token);
    expect(missing.status).toBe(404);
    expect(await read('/v1/streams/containers/topics/R01/records', token)).toEqual(missing);
    expect(await read('/v1/streams/containers/topics/Y01/records')).toEqual(missing);

    // An admin call without an admin token is refused, and says so.
    writeFileSync(join(dir, 'alice.token'), token);
    const refused = await access(['org', 'add', 'evil', '--kind', 'carrier'], join(dir, 'alice.token'));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('401');
    const badAce = await access(['ace', 'set', 'containers', 'role:customer &']);
    expect(badAce.code).toBe(2);
    expect(badAce.stderr).toMatch(/position/);

    const health = JSON.parse((await read('/healthz')).body) as { warnings?: string[] };
    expect(health.warnings).toBeUndefined();

    // A password, from a file or from stdin (never from argv); only its hash is kept.
    writeFileSync(join(dir, 'alice.password'), 'alice has a long password\n');
    const fromFile = await access(['password', 'set', 'alice', '--password-file', join(dir, 'alice.password')]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(JSON.parse(fromFile.stdout)).toEqual({ principal: 'alice', password: 'set' });
    const piped = execFile(process.execPath, [PORTCALL_BIN, 'access', 'password', 'set', 'alice', '--url', url, '--token-file', adminFile()]);
    piped.stdin!.end('short\n');
    const tooShort = await new Promise<number | null>((resolve) => piped.on('exit', resolve));
    expect(tooShort).not.toBe(0);
    const clearedPassword = await access(['password', 'clear', 'alice']);
    expect(clearedPassword.code, clearedPassword.stderr).toBe(0);

    const tokenId = token.split('_')[1]!;
    expect((await access(['token', 'revoke', tokenId])).code).toBe(0);
    expect(await read('/v1/streams/containers/topics/Y01/records?maxRecords=100', token)).toEqual(missing);

    const shown = await access(['show']);
    expect(JSON.parse(shown.stdout)).toMatchObject({ tokens: [{ tokenId, principal: 'alice', revoked: true, issuedBy: 'bootstrap' }], passwords: [] });
    expect(shown.stdout).not.toContain('alice has a long password');
    // The secret is everything after `pct_<16 hex>_` (base64url, which may itself contain "_").
    expect(shown.stdout).not.toContain(token.slice('pct_'.length + 16 + 1));
  }, 120_000);
});
