/**
 * The command line as a user meets it: help on every command, clear refusals of bad
 * configuration and taken ports, and the demo showing readings at the shore.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { PORTCALL_BIN, startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const run = promisify(execFile);

async function portcall(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [PORTCALL_BIN, ...args], { timeout: 30_000, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('portcall command line', () => {
  const started: PortcallProcess[] = [];
  const dirs: string[] = [];
  const servers: Server[] = [];
  afterEach(async () => {
    for (const child of started.splice(0)) await child.stop();
    for (const server of servers.splice(0)) server.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('has useful --help for every subcommand', async () => {
    const top = await portcall(['--help']);
    expect(top.code).toBe(0);
    for (const command of ['edge', 'shore', 'devices', 'demo', 'bench', 'kafka']) {
      expect(top.stdout).toContain(command);
      const help = await portcall([command, '--help']);
      expect(help.code, command).toBe(0);
      expect(help.stdout, command).toMatch(new RegExp(`Usage: portcall ${command}`));
    }
    expect((await portcall(['shore', '--help'])).stdout).toContain('PORTCALL_HTTP__PORT');
    expect((await portcall(['bench', '--list'])).stdout).toContain('thin-path');
    // A bad knob of one scenario fails that scenario when it runs, not every other command of bench.
    const listed = await portcall(['bench', '--list'], { PORTCALL_SHORE_KAFKA_CONTAINERS: 'many' });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('shore-kafka');
  });

  it('stops a site on SIGTERM at once, exit code 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-cli-'));
    dirs.push(dir);
    const file = writeYaml(join(dir, 'shore.yaml'), {
      site: 'TOKYO',
      dataDir: join(dir, 'data'),
      http: { port: 0 },
      ingest: { peers: [{ site: 'AURORA', token: 'aurora-to-tokyo-token-0001' }] },
    });
    const shore = startPortcall(['shore', '--config', file]);
    started.push(shore);
    await shore.waitFor(/HTTP on/);
    const stoppingAt = performance.now();
    // Exit code 0, not death by the signal: the site listens for SIGTERM before it says it is up.
    expect(await shore.stop()).toBe(0);
    // The log's indexer thread once left a 5 s timer behind: every stop took 5 s (an operator's
    // restart, each test's). Closing takes a few hundred milliseconds on a loaded machine.
    expect(performance.now() - stoppingAt).toBeLessThan(3000);
  });

  it('refuses a bad config naming the field and the allowed values, exit code 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-cli-'));
    dirs.push(dir);
    const file = writeYaml(join(dir, 'bad.yaml'), { site: 'TOKYO', log: { backend: 'postgres' }, http: { port: 0 } });
    const result = await portcall(['shore', '--config', file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file}: log.backend`);
    expect(result.stderr).toMatch(/"sqlite".*"kafka"/);
  });

  it('says which port is taken and how to pick another', async () => {
    const server = createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as { port: number }).port;
    const dir = mkdtempSync(join(tmpdir(), 'portcall-cli-'));
    dirs.push(dir);
    const file = writeYaml(join(dir, 'tokyo.yaml'), { site: 'TOKYO', dataDir: dir, http: { port }, ingest: { peers: [] } });
    const result = await portcall(['shore', '--config', file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`127.0.0.1:${port}: the port is taken`);
    expect(result.stderr).toContain('PORTCALL_HTTP__PORT');

    const demo = await portcall(['demo', '--thin', '--shore-port', String(port), '--duration-s', '1']);
    expect(demo.code).toBe(2);
    expect(demo.stderr).toContain('--shore-port');
  });

  it('demo: readings reach the shore within 30 seconds, and the read API serves them', async () => {
    const demo = startPortcall(['demo', '--thin', '--shore-port', '0', '--mqtt-port', '0', '--edge-http-port', '0', '--containers', '5', '--interval-ms', '200']);
    started.push(demo);
    const [, url] = await demo.waitFor(/shore read API: (\S+)/);
    await demo.waitFor(/total at shore [1-9]\d*/, 30_000);
    const response = await fetch(url!);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ origin: 'AURORA', stream: 'containers', topic: 'Y01' });
    expect(await demo.stop()).toBe(0);
  });
});
