/**
 * `portcall status`: a real `portcall shore` and a real `portcall edge` linked to it, a real
 * MQTT client publishing readings and an alert, a forged batch refused at the shore; the
 * command (text and --json, by --url and by --config) shows each site's name, backend,
 * health, log streams and counts, ingest peers and refusals, the link with its state and
 * lag, the alert of the last hour, and the warn/error log lines of the last hour.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { runPortcall, startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';
import { freeLoopbackPort, tempDir } from './support/uplink.js';

const run = (args: string[]) => runPortcall(args);

const TOKEN = 'aurora-to-tokyo-status-token-01';

describe('portcall status', () => {
  const processes: PortcallProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('summarizes a shore and an edge site from their HTTP APIs', { timeout: 60_000 }, async () => {
    const dir = tempDir('status');
    dirs.push(dir);
    const shorePort = await freeLoopbackPort();
    const edgeHttpPort = await freeLoopbackPort();
    const mqttPort = await freeLoopbackPort();
    const shoreConfig = writeYaml(join(dir, 'tokyo.yaml'), { site: 'TOKYO', dataDir: dir, http: { port: shorePort }, ingest: { peers: [{ site: 'AURORA', token: TOKEN }] } });
    const shore = startPortcall(['shore', '--config', shoreConfig]);
    processes.push(shore);
    await shore.waitFor(/HTTP on /, 30_000);
    const edge = startPortcall([
      'edge',
      '--config',
      writeYaml(join(dir, 'aurora.yaml'), {
        site: 'AURORA',
        dataDir: dir,
        mqtt: { port: mqttPort, auth: { allowAnonymous: true } },
        http: { port: edgeHttpPort },
        links: [{ name: 'TOKYO', url: `http://127.0.0.1:${shorePort}`, token: TOKEN, maxBatchAgeMs: 50 }],
      }),
    ]);
    processes.push(edge);
    await edge.waitFor(/HTTP on /, 30_000);

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'status-test', reconnectPeriod: 0 });
    for (let index = 0; index < 20; index += 1) {
      await client.publishAsync(`bigblue/containers/Y0${index % 4}/temp`, JSON.stringify({ c: 4 + index / 10 }), { qos: 1 });
    }
    await client.publishAsync('bigblue/alerts/Y07', JSON.stringify({ type: 'overboard', container: 'Y07' }), { qos: 1 });
    // Refused at the gateway (on its own thread): counted, shown by the edge's status.
    await client.publishAsync('nowhere/Y07', '{}', { qos: 1 });
    await client.publishAsync('bigblue/manifests/custody', '{}', { qos: 1 });
    await client.endAsync();

    // A batch under a wrong token: refused (unauthenticated) and counted at the shore.
    const forged = await fetch(`http://127.0.0.1:${shorePort}/v1/batches`, {
      method: 'POST',
      headers: { authorization: 'Bearer not-a-peer-token-000000', 'content-type': 'application/vnd.portcall.batch' },
      body: Buffer.from('garbage'),
    });
    expect(forged.status).toBe(401);

    // Wait until the link has carried everything: lag 0 and the shore holds the 21 records.
    const deadline = Date.now() + 20_000;
    let shoreStatus: Record<string, unknown> = {};
    for (;;) {
      const result = await run(['status', '--url', `http://127.0.0.1:${shorePort}`, '--json']);
      expect(result.code, result.stderr).toBe(0);
      shoreStatus = JSON.parse(result.stdout) as Record<string, unknown>;
      const streams = (shoreStatus.log as { streams: { stream: string; records: number }[] }).streams;
      const records = streams.reduce((sum, s) => sum + s.records, 0);
      if (records === 21) break;
      if (Date.now() > deadline) throw new Error(`shore holds ${records} records: ${result.stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(shoreStatus).toMatchObject({
      site: 'TOKYO',
      backend: 'sqlite',
      health: { status: 'ok' },
      ingest: { peers: ['AURORA'], batchesRefused: 1, refusedByReason: { unauthenticated: 1 } },
      links: [],
      alertsLastHour: { count: 1, byType: { overboard: 1 }, complete: true },
      logLinesLastHour: { counted: true },
    });
    const streams = (shoreStatus.log as { streams: { stream: string; topics: number; records: number }[] }).streams;
    expect(streams.find((s) => s.stream === 'containers')).toMatchObject({ topics: 4, records: 20 });
    expect(streams.find((s) => s.stream === 'alerts')).toMatchObject({ topics: 1, records: 1 });
    // The open site's warning is a warn line logged at start (LOG_LEVEL=warn still logs it).
    expect((shoreStatus.logLinesLastHour as { warnLines: number }).warnLines).toBeGreaterThanOrEqual(1);

    // The text screen, by --config.
    const text = await run(['status', '--config', shoreConfig]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^site TOKYO \(sqlite\) at http:\/\/127\.0\.0\.1:\d+/);
    expect(text.stdout).toContain('health: ok');
    expect(text.stdout).toMatch(/log: .* used, .* on disk; \d+ streams, 5 topics, 21 records/);
    expect(text.stdout).toMatch(/containers\s+4\s+20/);
    expect(text.stdout).toContain('ingest: peers AURORA; ');
    expect(text.stdout).toContain('refused batches since start: 1 (unauthenticated 1)');
    expect(text.stdout).toContain('links: none');
    expect(text.stdout).toContain('alerts stored in the last hour: 1 (overboard 1)');
    expect(text.stdout).toMatch(/errors in the last hour: \d+ error and [1-9]\d* warn log lines/);
    expect(text.stdout).not.toContain(TOKEN);

    // The edge: its link with state and lag 0, no ingest.
    const edgeText = await run(['status', '--url', `http://127.0.0.1:${edgeHttpPort}/`]);
    expect(edgeText.code, edgeText.stderr).toBe(0);
    expect(edgeText.stdout).toMatch(/^site AURORA \(sqlite\)/);
    expect(edgeText.stdout).toContain('ingest: none');
    expect(edgeText.stdout).toMatch(/TOKYO\s+up\s+0\s+0 B\s+21\s+\d{4}-/);
    expect(edgeText.stdout).toContain('alerts stored in the last hour: 1 (overboard 1)');
    expect(edgeText.stdout).toContain('gateway refusals since start: publishes unmapped-topic 1, reserved-log-topic 1; connections none');
    expect(edgeText.stdout).not.toContain(TOKEN);
  });

  it('exits 2 naming the site it cannot ask, and explains itself in --help', { timeout: 30_000 }, async () => {
    const port = await freeLoopbackPort();
    const down = await run(['status', '--url', `http://127.0.0.1:${port}`]);
    expect(down.code).toBe(2);
    expect(down.stderr).toContain(`portcall status: cannot ask http://127.0.0.1:${port}`);
    const neither = await run(['status']);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('give exactly one of --url or --config');
    const help = await run(['status', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--url <url>');
    expect(help.stdout).toContain('--json');
    expect(help.stdout).toContain('warn and error lines');
  });
});
