/**
 * Link policy, alerts first, and TLS, with real processes: a ship (`portcall edge`, MQTT
 * gateway and forwarder) and a shore (`portcall shore`), sensors publishing over MQTT.
 */
import { request as httpsRequest } from 'node:https';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultProxy } from '../tools/fault-proxy/index.js';
import type { LogRecord } from '../core/index.js';
import { makeCertificates } from './support/certificates.js';
import type { PortcallProcess } from './support/portcall-process.js';
import {
  CONTROL_TOKEN,
  eventually,
  freeLoopbackPort,
  linkStatus,
  seedShipLog,
  SHIP,
  SHORE,
  startShip,
  startShore,
  tempDir,
} from './support/uplink.js';

async function publish(mqttPort: number, topic: string, body: unknown): Promise<number> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { protocolVersion: 4, clientId: `test-${Math.random()}` });
  try {
    await client.publishAsync(topic, JSON.stringify(body), { qos: 1 });
    return performance.now();
  } finally {
    await client.endAsync();
  }
}

/** The offset of the latest record of a topic at the shore, or -1. */
async function latestOffset(shoreUrl: string, stream: string, topic: string): Promise<number> {
  const response = await fetch(`${shoreUrl}/v1/streams/${stream}/topics/${topic}/latest`);
  if (response.status === 404) return -1;
  return ((await response.json()) as { offset: number }).offset;
}

async function setState(shipUrl: string, body: unknown, token = CONTROL_TOKEN, method = 'PUT'): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${shipUrl}/v1/links/${SHORE}/state`, {
    method,
    headers: { ...(method === 'PUT' ? { 'content-type': 'application/json' } : {}), authorization: `Bearer ${token}` },
    ...(method === 'PUT' ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('uplink policy, alerts first, TLS', () => {
  const processes: PortcallProcess[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function dir(prefix: string): string {
    const path = tempDir(prefix);
    cleanups.push(() => rmSync(path, { recursive: true, force: true }));
    return path;
  }

  async function ship(dataDir: string, link: Record<string, unknown>) {
    const process = startShip(dataDir, link, { http: { port: 0 } });
    processes.push(process);
    const [, mqttPort] = await process.waitFor(/MQTT on 127\.0\.0\.1:(\d+)/, 60_000);
    const [, url] = await process.waitFor(/HTTP on (https?:\/\/\S+) /, 60_000);
    return { process, mqttPort: Number(mqttPort), url: url! };
  }

  async function shore(dataDir: string, options: Parameters<typeof startShore>[1]) {
    const process = startShore(dataDir, options);
    processes.push(process);
    const [, url] = await process.waitFor(/HTTP on (https?:\/\/\S+) /, 60_000);
    return { process, url: url! };
  }

  it('an alert overtakes a large backlog on a 2 Mbit/s, 600 ms link: within 1 s plus one round trip', { timeout: 120_000 }, async () => {
    const dataDir = dir('uplink-alerts');
    // Backlog: 6 MB of incompressible manifests, about 25 s of this link.
    const random = () => Math.floor(Math.random() * 256);
    const backlog = Array.from({ length: 3000 }, (_unused, offset): LogRecord => ({
      origin: SHIP,
      stream: 'manifests',
      topic: `M${offset % 10}`,
      offset: Math.floor(offset / 10),
      eventTimeMs: Date.now(),
      ingestTimeMs: Date.now() - 60_000,
      headers: {},
      payload: Buffer.from(Array.from({ length: 2048 }, random)),
    }));
    await seedShipLog(dataDir, backlog[Symbol.iterator](), backlog.length);
    const port = await freeLoopbackPort();
    const { url: shoreUrl } = await shore(dataDir, { port });
    const proxy = await FaultProxy.start({ targetPort: port, latencyMs: 300, bandwidthBytesPerSecond: 250_000 });
    cleanups.push(() => proxy.close());
    // The cap is what the operator configures for a 2 Mbit/s link: just under its rate.
    const { mqttPort, url: shipUrl } = await ship(dataDir, { url: proxy.url(), bandwidthBytesPerSecond: 240_000, stallTimeoutMs: 5000 });
    await eventually(async () => (await linkStatus(shipUrl)).recordsForwarded > 0, 30_000, () => 'the backlog did not start moving');

    const latencies: number[] = [];
    for (let alert = 0; alert < 5; alert += 1) {
      const sentAt = await publish(mqttPort, 'bigblue/alerts/Y07', { ts: Date.now(), container: 'Y07', kind: 'shock', seq: alert });
      await eventually(async () => (await latestOffset(shoreUrl, 'alerts', 'Y07')) >= alert, 15_000, () => `alert ${alert} did not arrive`, 20);
      latencies.push(performance.now() - sentAt);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const lag = (await linkStatus(shipUrl)).lag.find((entry) => entry.stream === 'manifests')!.records;
    process.stderr.write(`[uplink] alert latencies with ${lag} backlog records still to send: ${latencies.map((ms) => Math.round(ms)).join(', ')} ms\n`);
    // The backlog was still draining when the last alert arrived: alerts went ahead of it.
    expect(lag).toBeGreaterThan(500);
    const sorted = [...latencies].sort((left, right) => left - right);
    expect(sorted[2]).toBeLessThan(1600);
    // Every one of them, with room for a test machine busy with other suites.
    expect(sorted[4]).toBeLessThan(3000);
  });

  it('metered sends only alerts; a switch file and an authenticated HTTP call change the state; metrics per link', { timeout: 120_000 }, async () => {
    const dataDir = dir('uplink-policy');
    const switchFile = join(dataDir, 'link-TOKYO');
    writeFileSync(switchFile, 'metered\n');
    const port = await freeLoopbackPort();
    // The ship starts before the shore: its first attempts fail and are counted.
    const { mqttPort, url: shipUrl } = await ship(dataDir, { url: `http://127.0.0.1:${port}`, switchFile, controlToken: CONTROL_TOKEN, retryMaxMs: 500 });
    await eventually(async () => (await linkStatus(shipUrl)).lastFailureReason !== null, 20_000, () => 'no failed attempt');
    const { url: shoreUrl } = await shore(dataDir, { port });

    expect(await linkStatus(shipUrl)).toMatchObject({ state: 'metered', source: 'switch-file' });
    await publish(mqttPort, 'bigblue/containers/C1/reefer', { ts: Date.now(), tempC: -18.2 });
    await publish(mqttPort, 'bigblue/alerts/C1', { ts: Date.now(), kind: 'door-open' });
    await eventually(async () => (await latestOffset(shoreUrl, 'alerts', 'C1')) === 0, 20_000, () => 'the alert did not arrive while metered');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await latestOffset(shoreUrl, 'containers', 'C1')).toBe(-1);

    // Over HTTP: refused without the right token, counted; accepted with it.
    expect((await setState(shipUrl, { state: 'down' }, 'wrong-token-wrong-token')).status).toBe(401);
    expect((await setState(shipUrl, { state: 'sideways' })).status).toBe(400);
    const down = await setState(shipUrl, { state: 'down' });
    expect(down).toMatchObject({ status: 200, body: { state: 'down', source: 'override' } });
    await publish(mqttPort, 'bigblue/alerts/C1', { ts: Date.now(), kind: 'door-closed' });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await latestOffset(shoreUrl, 'alerts', 'C1')).toBe(0);

    expect((await setState(shipUrl, { state: 'up', bandwidthBytesPerSecond: 1_000_000 })).body).toMatchObject({ state: 'up', bandwidthBytesPerSecond: 1_000_000 });
    await eventually(async () => (await latestOffset(shoreUrl, 'containers', 'C1')) === 0 && (await latestOffset(shoreUrl, 'alerts', 'C1')) === 1, 20_000, () => 'not everything arrived once up');

    // Dropping the override gives the switch file back its say; the file can carry a cap.
    expect((await setState(shipUrl, undefined, CONTROL_TOKEN, 'DELETE')).body).toMatchObject({ state: 'metered', source: 'switch-file' });
    writeFileSync(switchFile, 'up 50000\n');
    await eventually(async () => (await linkStatus(shipUrl)).state === 'up', 10_000, () => 'the switch file was not read');
    expect(await linkStatus(shipUrl)).toMatchObject({ source: 'switch-file', bandwidthBytesPerSecond: 50_000 });

    const metrics = await (await fetch(`${shipUrl}/metrics`)).text();
    expect(metrics).toMatch(/portcall_link_state\{[^}]*link="TOKYO"[^}]*state="up"[^}]*\} 1/);
    expect(metrics).toMatch(/portcall_link_lag_records\{[^}]*stream="containers"[^}]*\} 0/);
    expect(metrics).toMatch(/portcall_link_wire_bytes_total\{[^}]*link="TOKYO"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/portcall_link_raw_bytes_total\{[^}]*link="TOKYO"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/portcall_link_last_ack_timestamp_seconds\{[^}]*link="TOKYO"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/portcall_link_retries_total\{[^}]*reason="connect-failed"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/portcall_link_control_refused_total\{[^}]*reason="unauthenticated"[^}]*\} 1/);
  });

  it('TLS with certificates: the shore verifies the ship’s certificate names the site its token belongs to', { timeout: 120_000 }, async () => {
    const certificates = makeCertificates([SHIP, 'SINGAPORE']);
    cleanups.push(() => rmSync(certificates.dir, { recursive: true, force: true }));
    const shoreDir = dir('uplink-tls-shore');
    const port = await freeLoopbackPort();
    const { url: shoreUrl } = await shore(shoreDir, {
      port,
      tls: { certFile: certificates.certFile, keyFile: certificates.keyFile, caFile: certificates.caFile, requireClientCertificate: true },
    });
    expect(shoreUrl).toBe(`https://127.0.0.1:${port}`);

    const good = await ship(dir('uplink-tls-ship'), {
      url: shoreUrl,
      tls: { caFile: certificates.caFile, ...certificates.devices[SHIP] },
    });
    await publish(good.mqttPort, 'bigblue/containers/C2/reefer', { ts: Date.now(), tempC: -17.9 });
    // The read API answers HTTP/1.1 over the same TLS port.
    const readLatest = () =>
      new Promise<number>((resolve, reject) => {
        const request = httpsRequest(`${shoreUrl}/v1/streams/containers/topics/C2/latest`, { ca: certificates.read(certificates.caFile), ...readClient() }, (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        });
        request.on('error', reject);
        request.end();
      });
    const readClient = () => ({ cert: certificates.read(certificates.devices[SHIP]!.certFile), key: certificates.read(certificates.devices[SHIP]!.keyFile) });
    await eventually(async () => (await readLatest()) === 200, 20_000, () => 'the reading did not arrive over TLS');

    // AURORA's token over SINGAPORE's certificate: refused, whatever the token says.
    const impostor = await ship(dir('uplink-tls-impostor'), { url: shoreUrl, tls: { caFile: certificates.caFile, ...certificates.devices.SINGAPORE } });
    await publish(impostor.mqttPort, 'bigblue/containers/C3/reefer', { ts: Date.now(), tempC: -17.9 });
    await eventually(async () => (await linkStatus(impostor.url)).lastFailureReason === 'wrong-certificate', 20_000, async () => JSON.stringify(await linkStatus(impostor.url)));

    // A ship that does not trust the shore's CA does not send at all.
    const untrusting = await ship(dir('uplink-tls-untrusting'), { url: shoreUrl, tls: { ...certificates.devices[SHIP] } });
    await publish(untrusting.mqttPort, 'bigblue/containers/C4/reefer', { ts: Date.now(), tempC: -17.9 });
    await eventually(async () => (await linkStatus(untrusting.url)).lastFailureReason === 'tls', 20_000, async () => JSON.stringify(await linkStatus(untrusting.url)));
  });
});
