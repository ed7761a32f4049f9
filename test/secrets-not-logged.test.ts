/**
 * Secrets never reach a site's output: a real `portcall shore` (ingest peer token, handoff
 * token, access key and bootstrap admin token) and a real `portcall edge` (link token, link
 * control token, a device's MQTT password, the bridge's upstream password), both at log level
 * debug, go through failed and successful authentication on every path (batches, MQTT
 * CONNECT, link control, handoff, the access admin API, reads with an issued token, a bridge
 * that cannot reach its broker, a configuration refused for a short token); none of the secret
 * strings, nor the wrong ones presented, appears in anything either process printed.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { hashSecret } from '../edge/gateway/index.js';
import { createLogger } from '../cli/logger.js';
import { runPortcall, startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';
import { freeLoopbackPort, tempDir } from './support/uplink.js';

const SECRETS = {
  peerToken: 'peer-token-SECRET-aurora-to-tokyo-91f3',
  handoffToken: 'handoff-token-SECRET-7c2d9e4a1b',
  accessKey: 'access-key-SECRET-0123456789abcdef0123456789abcdef',
  bootstrapToken: 'bootstrap-token-SECRET-fedcba9876543210fedcba98',
  controlToken: 'control-token-SECRET-5a6b7c8d9e',
  devicePassword: 'device-password-SECRET-Y01-4242',
  bridgePassword: 'bridge-password-SECRET-upstream-77',
  // Wrong ones presented by a caller: a typo of a real secret must not be logged either.
  wrongToken: 'wrong-token-SECRET-almost-right-0000',
  wrongPassword: 'wrong-password-SECRET-Y01-0000',
  shortToken: 'short-SECRET-15',
};

async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  const { code, stdout, stderr } = await runPortcall(args, env);
  return { code, output: `${stdout}${stderr}` };
}

describe('secrets are never logged', () => {
  const processes: PortcallProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('through failed and successful authentication on every path, at log level debug', { timeout: 60_000 }, async () => {
    const dir = tempDir('secrets');
    dirs.push(dir);
    const [shorePort, edgeHttpPort, mqttPort, deadPort] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];
    writeFileSync(join(dir, 'access.key'), SECRETS.accessKey);
    writeFileSync(join(dir, 'admin.token'), SECRETS.bootstrapToken);
    writeFileSync(
      join(dir, 'devices.yaml'),
      stringify({ devices: [{ id: 'Y01-reefer', secret: await hashSecret(SECRETS.devicePassword, 1024), publish: ['bigblue/containers/Y01/+'] }] }),
    );
    const env = { LOG_LEVEL: 'debug' };
    const shoreUrl = `http://127.0.0.1:${shorePort}`;
    const edgeUrl = `http://127.0.0.1:${edgeHttpPort}`;
    const shore = startPortcall(
      [
        'shore',
        '--config',
        writeYaml(join(dir, 'tokyo.yaml'), {
          site: 'TOKYO',
          dataDir: dir,
          http: { port: shorePort },
          ingest: { peers: [{ site: 'AURORA', token: SECRETS.peerToken }] },
          handoffToken: SECRETS.handoffToken,
          access: { keyFile: join(dir, 'access.key'), bootstrapTokenFile: join(dir, 'admin.token') },
        }),
      ],
      env,
    );
    processes.push(shore);
    await shore.waitFor(/HTTP on /, 30_000);
    const edge = startPortcall(
      [
        'edge',
        '--config',
        writeYaml(join(dir, 'aurora.yaml'), {
          site: 'AURORA',
          dataDir: dir,
          mqtt: {
            port: mqttPort,
            auth: { credentialsFile: join(dir, 'devices.yaml') },
            bridge: { url: `mqtt://127.0.0.1:${deadPort}`, username: 'bridge-user', password: SECRETS.bridgePassword },
          },
          http: { port: edgeHttpPort },
          links: [{ name: 'TOKYO', url: shoreUrl, token: SECRETS.peerToken, controlToken: SECRETS.controlToken, maxBatchAgeMs: 50 }],
        }),
      ],
      env,
    );
    processes.push(edge);
    await edge.waitFor(/HTTP on /, 30_000);

    // MQTT: a wrong password is refused, the right one publishes.
    await expect(
      mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'Y01-reefer', username: 'Y01-reefer', password: SECRETS.wrongPassword, reconnectPeriod: 0 }),
    ).rejects.toThrow();
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'Y01-reefer', username: 'Y01-reefer', password: SECRETS.devicePassword, reconnectPeriod: 0 });
    for (let index = 0; index < 5; index += 1) await device.publishAsync('bigblue/containers/Y01/temp', JSON.stringify({ c: 4 + index }), { qos: 1 });
    await device.endAsync();

    const call = (url: string, method: string, token: string, body?: unknown) =>
      fetch(url, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    // Batches under a wrong token.
    expect((await fetch(`${shoreUrl}/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${SECRETS.wrongToken}`, 'content-type': 'application/vnd.portcall.batch' }, body: 'x' })).status).toBe(401);
    // Link control: wrong, then right.
    expect((await call(`${edgeUrl}/v1/links/TOKYO/state`, 'PUT', SECRETS.wrongToken, { state: 'down' })).status).toBe(401);
    expect((await call(`${edgeUrl}/v1/links/TOKYO/state`, 'PUT', SECRETS.controlToken, { state: 'up', forSeconds: 60 })).status).toBe(200);
    // Handoff: wrong, then right (to a site, of a topic the shore does not write: refused for that, not for the token).
    expect((await call(`${shoreUrl}/v1/streams/containers/topics/Y01/handoff`, 'POST', SECRETS.wrongToken, { to: 'SINGAPORE' })).status).toBe(401);
    expect((await call(`${shoreUrl}/v1/streams/containers/topics/Y01/handoff`, 'POST', SECRETS.handoffToken, { to: 'SINGAPORE' })).status).not.toBe(401);
    // Access admin: wrong token, then the bootstrap token sets up a customer and issues a token.
    expect((await call(`${shoreUrl}/v1/access/orgs`, 'POST', SECRETS.wrongToken, { id: 'toyco', kind: 'customer' })).status).toBe(401);
    expect((await call(`${shoreUrl}/v1/access/orgs`, 'POST', SECRETS.bootstrapToken, { id: 'bigblue', kind: 'carrier' })).status).toBe(200);
    expect((await call(`${shoreUrl}/v1/access/principals`, 'POST', SECRETS.bootstrapToken, { id: 'ops@bigblue', org: 'bigblue', roles: ['carrier-ops'] })).status).toBe(200);
    const issued = (await (await call(`${shoreUrl}/v1/access/tokens`, 'POST', SECRETS.bootstrapToken, { principal: 'ops@bigblue' })).json()) as { token: string };
    expect(issued.token).toMatch(/^pct_/);
    // Reads: with the issued token (the readings arrived over the link), and with a wrong one.
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await call(`${shoreUrl}/v1/streams/containers/topics/Y01/latest`, 'GET', issued.token)).status;
      if (status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(status).toBe(200);
    expect((await call(`${shoreUrl}/v1/streams/containers/topics/Y01/latest`, 'GET', SECRETS.wrongToken)).status).toBe(404);
    expect((await call(`${shoreUrl}/v1/streams/containers/topics/Y01/latest`, 'GET', `${issued.token.slice(0, -4)}AAAA`)).status).toBe(404);
    // Let the bridge fail to connect a few times (it retries and logs), then stop both.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await edge.stop();
    await shore.stop();

    // A configuration refused for a too-short token: the error names the field, not the value.
    const refused = await run(['shore', '--config', writeYaml(join(dir, 'bad.yaml'), { site: 'X', dataDir: dir, http: { port: 0 }, ingest: { peers: [{ site: 'A', token: SECRETS.shortToken }] } })]);
    expect(refused.code).not.toBe(0);
    expect(refused.output).toContain('ingest.peers');

    const output = `${shore.output()}\n${edge.output()}\n${refused.output}`;
    // The processes did log about what happened (so the check below has something to look at).
    expect(shore.output()).toContain('HTTP listening');
    expect(edge.output()).toContain('"reason":"bad-credentials"');
    expect(edge.output()).toContain('bridge connection failed');
    expect(edge.output()).toContain('link condition changed');
    for (const [name, secret] of [...Object.entries(SECRETS), ['issuedToken', issued.token]] as const) {
      expect(output.includes(secret), `${name} appears in the output`).toBe(false);
      // Nor its distinctive part, e.g. inside a URL or quoted differently.
      expect(output.includes(secret.slice(-12)), `the end of ${name} appears in the output`).toBe(false);
    }
  });

  it('the site logger redacts token, password, secret and authorization fields, however deep', { timeout: 10_000 }, async () => {
    const dir = tempDir('redact');
    dirs.push(dir);
    const file = join(dir, 'site.log');
    const logger = createLogger({ file, level: 'info' });
    logger.info({ token: SECRETS.peerToken, link: { name: 'TOKYO', token: SECRETS.peerToken, controlToken: SECRETS.controlToken }, bridge: { password: SECRETS.bridgePassword } }, 'config');
    logger.warn({ req: { headers: { authorization: `Bearer ${SECRETS.wrongToken}` } }, device: { secret: SECRETS.devicePassword } }, 'request');
    logger.flush();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const written = readFileSync(file, 'utf8');
    expect(written).toContain('"name":"TOKYO"');
    expect(written.match(/\[redacted\]/g)?.length).toBe(6);
    for (const secret of Object.values(SECRETS)) expect(written).not.toContain(secret);
  });
});
