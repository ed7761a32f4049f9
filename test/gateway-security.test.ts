/**
 * The gateway facing devices that are not who they say, or do what they may not: wrong
 * secrets, unknown devices, wildcard identities, another device's certificate, another
 * container's topics, an oversized packet. The credentials file is written by the operator's
 * own command (`portcall gateway add-device`), and the clients are Debian's mosquitto_pub,
 * mqtt.js and raw packets.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { hashSecret } from '../edge/gateway/index.js';
import { makeCertificates, type CertificateFiles } from './support/certificates.js';
import { startGatewaySite, type GatewaySite } from './support/gateway-site.js';
import { mosquittoPub } from './support/mosquitto-clients.js';
import { PORTCALL_BIN } from './support/portcall-process.js';

// No keep-alive: an idle kept-alive connection would hold the site's HTTP close for seconds.
const NO_KEEP_ALIVE = { headers: { connection: 'close' } };

let gateway: GatewaySite;
let certs: CertificateFiles;
let port: number;
let tlsPort: number;
let y02Secret: string;
const Y01_SECRET = 'y01-secret-0123456789';
const NAV_SECRET = 'nav-secret-0123456789';

function portcall(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [PORTCALL_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdin.end(stdin ?? '');
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function latestOffset(topic: string, stream = 'containers'): Promise<number | undefined> {
  const response = await fetch(`${gateway.site.httpUrl!}/v1/streams/${stream}/topics/${topic}/latest`, NO_KEEP_ALIVE);
  return response.status === 404 ? undefined : ((await response.json()) as { offset: number }).offset;
}

async function metrics(): Promise<string> {
  return (await fetch(`${gateway.site.httpUrl!}/metrics`, NO_KEEP_ALIVE)).text();
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    bytes.push(byte);
  } while (value > 0);
  return bytes;
}

const reading = (tempC: number) => JSON.stringify({ ts: 1_763_769_600_000, tempC });

describe('gateway security', () => {
  beforeAll(async () => {
    certs = makeCertificates(['Y01-reefer', 'Y02-reefer']);
    const credentials = join(certs.dir, 'devices.yaml');
    writeFileSync(
      credentials,
      [
        '# Devices of ship AURORA',
        'profiles:',
        '  reefer: { publish: ["bigblue/containers/{container}/+"] }',
        '  ship-sensor: { publish: ["bigblue/ships/{ship}/+"] }',
        'devices: []',
        '',
      ].join('\n'),
    );
    const added = [
      await portcall(
        ['gateway', 'add-device', '--credentials', credentials, '--id', 'Y01-reefer', '--profile', 'reefer', '--attribute', 'container=Y01', '--certificate-cn', 'Y01-reefer', '--secret-stdin'],
        Y01_SECRET,
      ),
      await portcall(['gateway', 'add-device', '--credentials', credentials, '--id', 'Y02-reefer', '--profile', 'reefer', '--attribute', 'container=Y02', '--certificate-cn', 'Y02-reefer']),
    ];
    for (const run of added) expect(run.code, run.stderr).toBe(0);
    y02Secret = /secret \(shown once, give it to the device\): (\S+)/.exec(added[1]!.stdout)![1]!;
    // A ship sensor, written into the file by hand as an operator may.
    appendFileSync(
      credentials,
      `  - id: AURORA-nav\n    profile: ship-sensor\n    attributes: { ship: AURORA }\n    subscribe: ["bigblue/ships/AURORA/#"]\n    secret: "${await hashSecret(NAV_SECRET)}"\n`,
    );

    gateway = await startGatewaySite(
      {
        auth: { credentialsFile: credentials },
        tls: { port: 0, certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile },
        maxPacketBytes: 4096,
      },
      { http: { port: 0 } },
    );
    port = gateway.site.mqttPort!;
    tlsPort = gateway.site.mqttTlsPort!;
  });
  afterAll(async () => {
    await gateway?.stop();
    gateway?.remove();
  });

  it('takes devices with the secrets the operator command issued, each on its own topics', async () => {
    const y01 = await mosquittoPub(['-p', String(port), '-i', 'Y01-reefer', '-u', 'Y01-reefer', '-P', Y01_SECRET, '-q', '1', '-t', 'bigblue/containers/Y01/reefer', '-m', reading(-18)]);
    expect(y01.code, y01.stderr).toBe(0);
    const y02 = await mosquittoPub(['-p', String(port), '-i', 'Y02-reefer-1', '-u', 'Y02-reefer', '-P', y02Secret, '-q', '1', '-t', 'bigblue/containers/Y02/door', '-m', reading(-17)]);
    expect(y02.code, y02.stderr).toBe(0);
    const nav = await mosquittoPub(['-p', String(port), '-i', 'AURORA-nav', '-u', 'AURORA-nav', '-P', NAV_SECRET, '-q', '1', '-t', 'bigblue/ships/AURORA/position', '-m', reading(0)]);
    expect(nav.code, nav.stderr).toBe(0);
    expect(await latestOffset('Y01')).toBe(0);
    expect(await latestOffset('Y02')).toBe(0);
    expect(await latestOffset('AURORA', 'ships')).toBe(0);
  });

  it('refuses at CONNECT: wrong secret, unknown device, no credentials, wildcard or NUL identities, another device\'s client id', async () => {
    const attempt = (args: string[]) => mosquittoPub(['-p', String(port), '-q', '1', '-t', 'bigblue/containers/Y01/reefer', '-m', reading(1), ...args]);
    const cases: [string[], RegExp][] = [
      [['-i', 'Y01-reefer', '-u', 'Y01-reefer', '-P', 'wrong-secret'], /bad user name or password/i],
      [['-i', 'Z99', '-u', 'Z99', '-P', 'whatever-secret'], /not authori[sz]ed/i],
      [['-i', 'Y01-reefer'], /not authori[sz]ed/i],
      [['-i', 'Y01-reefer+', '-u', 'Y01-reefer', '-P', Y01_SECRET], /identifier rejected/i],
      [['-i', 'Y01/reefer', '-u', 'Y01-reefer', '-P', Y01_SECRET], /identifier rejected/i],
      [['-i', 'Y0#', '-u', 'Y01-reefer', '-P', Y01_SECRET], /identifier rejected/i],
      [['-i', 'x1', '-u', 'Y01#', '-P', Y01_SECRET], /bad user name or password/i],
      [['-i', 'Y02-reefer', '-u', 'Y01-reefer', '-P', Y01_SECRET], /identifier rejected/i],
    ];
    for (const [args, expected] of cases) {
      const run = await attempt(args);
      expect(run.code, `${args.join(' ')} was accepted`).not.toBe(0);
      expect(run.stderr, args.join(' ')).toMatch(expected);
    }

    // NUL cannot be typed on a command line: a raw CONNECT carries it.
    const socket = connect(port, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const connack = new Promise<Packet>((resolve) => parser.once('packet', resolve));
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'Y01-reefer\u0000', clean: true, keepalive: 10, username: 'Y01-reefer', password: Buffer.from(Y01_SECRET) }));
    expect(await connack).toMatchObject({ cmd: 'connack', returnCode: 2 });
    socket.destroy();

    expect(await latestOffset('Y01')).toBe(0);
    const text = await metrics();
    for (const [reason, count] of [['bad-credentials', 1], ['unknown-device', 2], ['unsafe-identity', 5], ['client-id-mismatch', 1]] as const) {
      expect(text).toContain(`portcall_gateway_connections_refused_total{reason="${reason}",site="AURORA"} ${count}`);
    }
  });

  it('disconnects a device that publishes to another container\'s or ship\'s topics, and stores none of it', async () => {
    const y01 = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'Y01-reefer', username: 'Y01-reefer', password: Y01_SECRET, protocolVersion: 4, reconnectPeriod: 0 });
    const closed = new Promise<void>((resolve) => y01.once('close', () => resolve()));
    y01.publish('bigblue/containers/Y02/reefer', reading(99), { qos: 1 });
    await closed;
    y01.end(true);

    const nav = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'AURORA-nav', username: 'AURORA-nav', password: NAV_SECRET, protocolVersion: 4, reconnectPeriod: 0 });
    // Subscriptions are checked too: outside its rules a filter gets SUBACK failure (128).
    expect((await nav.subscribeAsync('bigblue/ships/AURORA/#', { qos: 1 }))[0]!.qos).toBe(1);
    await expect(nav.subscribeAsync('bigblue/#', { qos: 1 })).rejects.toThrow(/Subscribe error/);
    const navClosed = new Promise<void>((resolve) => nav.once('close', () => resolve()));
    nav.publish('bigblue/ships/BOREALIS/position', reading(0), { qos: 1 });
    await navClosed;
    nav.end(true);

    expect(await latestOffset('Y02')).toBe(0);
    expect(await latestOffset('BOREALIS', 'ships')).toBeUndefined();
    expect(await metrics()).toContain('portcall_gateway_refusals_total{reason="publish-not-authorized",site="AURORA"} 2');
  });

  it('over TLS, identifies a device by its certificate and refuses another device\'s or an untrusted one', async () => {
    const tls = (device: { certFile: string; keyFile: string }, args: string[]) =>
      mosquittoPub(['-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', certs.caFile, '--cert', device.certFile, '--key', device.keyFile, '-q', '1', '-m', reading(-19), ...args]);
    const own = await tls(certs.devices['Y01-reefer']!, ['-i', 'Y01-reefer', '-t', 'bigblue/containers/Y01/reefer']);
    expect(own.code, own.stderr).toBe(0);
    expect(await latestOffset('Y01')).toBe(1);

    // Y02's certificate claiming to be Y01, by username and client id.
    const claimed = await tls(certs.devices['Y02-reefer']!, ['-i', 'Y01-reefer', '-u', 'Y01-reefer', '-P', Y01_SECRET, '-t', 'bigblue/containers/Y01/reefer']);
    expect(claimed.code).not.toBe(0);
    expect(claimed.stderr).toMatch(/not authori[sz]ed/i);
    // Y02's certificate used for Y01's topic: authenticated as Y02, so the publish is refused.
    const crossed = await tls(certs.devices['Y02-reefer']!, ['-i', 'Y02-reefer', '-t', 'bigblue/containers/Y01/reefer']);
    expect(await latestOffset('Y01'), crossed.stderr).toBe(1);
    // A certificate with Y01's name from a CA the gateway does not trust proves nothing.
    const rogue = await tls(certs.rogue, ['-i', 'Y01-reefer', '-t', 'bigblue/containers/Y01/reefer']);
    expect(rogue.code).not.toBe(0);
    expect(await latestOffset('Y01')).toBe(1);
    expect(await metrics()).toContain('portcall_gateway_connections_refused_total{reason="certificate-mismatch",site="AURORA"} 1');
  });

  it('closes a connection that announces an oversized packet before buffering it; other devices carry on', async () => {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    // Read (and ignore) the CONNACK, so the gateway's close can reach this end.
    socket.resume();
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'Y01-reefer', clean: true, keepalive: 10, username: 'Y01-reefer', password: Buffer.from(Y01_SECRET) }));
    // A PUBLISH header announcing 200 MB, then the start of its body.
    const header = Buffer.from([0x30, ...varint(200_000_000)]);
    socket.write(Buffer.concat([header, Buffer.alloc(8192, 0x41)]));
    const startedAt = Date.now();
    await closed;
    expect(Date.now() - startedAt).toBeLessThan(2000);

    const y02 = await mosquittoPub(['-p', String(port), '-i', 'Y02-reefer', '-u', 'Y02-reefer', '-P', y02Secret, '-q', '1', '-t', 'bigblue/containers/Y02/reefer', '-m', reading(-16)]);
    expect(y02.code, y02.stderr).toBe(0);
    expect(await latestOffset('Y02')).toBe(1);
    expect(await metrics()).toContain('portcall_gateway_refusals_total{reason="packet-too-large",site="AURORA"} 1');
  });

  it('answers a flood of failed CONNECTs from one address "server unavailable" without checking them; other addresses carry on', async () => {
    // Its own gateway, with a small limit; the same credentials file.
    const limited = await startGatewaySite(
      { auth: { credentialsFile: join(certs.dir, 'devices.yaml'), failedConnects: { maxPerAddress: 5, windowMs: 60_000 } } },
      { http: { port: 0 } },
    );
    try {
      const connectFrom = (localAddress: string, password: string) =>
        new Promise<number>((resolve, reject) => {
          const socket = connect({ port: limited.site.mqttPort!, host: '127.0.0.1', localAddress });
          const parser = mqttPacket.parser({ protocolVersion: 4 });
          socket.on('data', (chunk: Buffer) => parser.parse(chunk));
          socket.on('error', reject);
          parser.once('packet', (packet: Packet) => {
            socket.destroy();
            resolve(packet.cmd === 'connack' ? packet.returnCode! : -1);
          });
          socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'Y01-reefer', clean: true, keepalive: 10, username: 'Y01-reefer', password: Buffer.from(password) }));
        });
      // Five wrong secrets from 127.0.0.2 are checked and refused (4, bad credentials)...
      for (let i = 0; i < 5; i += 1) expect(await connectFrom('127.0.0.2', `guess-${i}`)).toBe(4);
      // ...then that address is answered 3 (server unavailable) without a check, even with the right secret.
      expect(await connectFrom('127.0.0.2', Y01_SECRET)).toBe(3);
      // Another address is not affected.
      expect(await connectFrom('127.0.0.1', Y01_SECRET)).toBe(0);
      // Twenty guesses at once from a third address: a check in progress counts as failed until
      // it succeeds, so no more than five hashes are computed for them.
      const codes = await Promise.all(Array.from({ length: 20 }, (_unused, i) => connectFrom('127.0.0.3', `parallel-${i}`)));
      expect(codes.filter((code) => code === 4).length).toBeLessThanOrEqual(5);
      expect(codes.filter((code) => code === 3).length).toBeGreaterThanOrEqual(15);
      expect(codes.every((code) => code === 3 || code === 4)).toBe(true);
      const text = await (await fetch(`${limited.site.httpUrl!}/metrics`, NO_KEEP_ALIVE)).text();
      const rateLimited = Number(/portcall_gateway_connections_refused_total\{reason="rate-limited",site="AURORA"\} (\d+)/.exec(text)?.[1]);
      expect(rateLimited).toBe(1 + codes.filter((code) => code === 3).length);
    } finally {
      await limited.stop();
      limited.remove();
    }
  });
});
