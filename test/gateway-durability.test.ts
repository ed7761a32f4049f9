/**
 * Acknowledged means durable, tested the hard way: the real `portcall edge` process, 1,000
 * QoS 1 readings each waited for until PUBACK, then kill -9 and a restart. Every acknowledged
 * reading must be in the log exactly once, in order, and the topic goes on from there.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { readLogTopic, readLogTopics, SITE } from './support/gateway-site.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const CONTAINERS = ['K01', 'K02', 'K03', 'K04', 'K05'];
const READINGS = 1000;

describe('gateway durability across kill -9', () => {
  const processes: PortcallProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function startEdge(config: string): Promise<number> {
    const edge = startPortcall(['edge', '--config', config]);
    processes.push(edge);
    const [, port] = await edge.waitFor(/MQTT on 127\.0\.0\.1:(\d+)/);
    return Number(port);
  }

  it('keeps every acknowledged QoS 1 reading exactly once, and continues the offsets after restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'portcall-durable-'));
    dirs.push(dataDir);
    const config = writeYaml(join(dataDir, 'edge.yaml'), { site: SITE, dataDir, mqtt: { port: 0, auth: { allowAnonymous: true } }, http: { host: '127.0.0.1', port: 0 } });
    const port = await startEdge(config);
    // Run from the bundle (support/portcall-process.ts), the gateway's thread has mqtt-packet's
    // speedups: each entry of the bundle runs cli/preload.ts before anything loads mqtt-packet.
    const [, httpUrl] = await processes.at(-1)!.waitFor(/HTTP on (http:\/\/[\d.]+:\d+)/);
    const metrics = await (await fetch(`${httpUrl!}/metrics`)).text();
    for (const part of ['debug', 'byteReads', 'numberCache']) {
      expect(metrics).toMatch(new RegExp(`portcall_gateway_mqtt_packet_speedups\\{part="${part}",site="${SITE}"\\} 1\n`));
    }

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'durable-sensor', protocolVersion: 4, reconnectPeriod: 0 });
    const acknowledged: number[] = [];
    // Many in flight at once, as a fleet would send them: they share commits.
    for (let start = 0; start < READINGS; start += 250) {
      await Promise.all(
        Array.from({ length: Math.min(250, READINGS - start) }, (_unused, index) => {
          const seq = start + index;
          const container = CONTAINERS[seq % CONTAINERS.length]!;
          return client
            .publishAsync(`bigblue/containers/${container}/reefer`, JSON.stringify({ ts: 1_763_769_600_000 + seq, seq }), { qos: 1 })
            .then(() => acknowledged.push(seq));
        }),
      );
    }
    expect(acknowledged).toHaveLength(READINGS);
    // More in flight when the process dies: these may or may not be stored, but whatever was
    // acknowledged must be, and nothing twice.
    const tail = Array.from({ length: 300 }, (_unused, index) => READINGS + index);
    for (const seq of tail) {
      client.publish(`bigblue/containers/${CONTAINERS[seq % CONTAINERS.length]!}/reefer`, JSON.stringify({ ts: 1_763_769_600_000 + seq, seq }), { qos: 1 }, (error) => {
        if (!error) acknowledged.push(seq);
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 15));
    const acknowledgedBeforeKill = [...acknowledged];
    await processes.pop()!.kill9();
    client.end(true);

    let stored = 0;
    const topics = await readLogTopics(dataDir, 'containers', CONTAINERS);
    for (const [index, container] of CONTAINERS.entries()) {
      const records = topics[index]!;
      const seqs = records.map((record) => (JSON.parse(Buffer.from(record.payload).toString()) as { seq: number }).seq);
      expect(records.map((record) => record.offset)).toEqual(records.map((_record, index) => index));
      // In publish order, no duplicates, and every acknowledged reading among them.
      expect(seqs).toEqual([...new Set(seqs)].sort((a, b) => a - b));
      const mine = new Set(seqs);
      for (const seq of acknowledgedBeforeKill) {
        if (CONTAINERS[seq % CONTAINERS.length] === container) expect(mine.has(seq), `acknowledged reading ${seq} lost`).toBe(true);
      }
      stored += records.length;
    }
    expect(stored).toBeGreaterThanOrEqual(acknowledgedBeforeKill.length);

    const again = await startEdge(config);
    const next = await mqtt.connectAsync(`mqtt://127.0.0.1:${again}`, { clientId: 'durable-sensor', protocolVersion: 4, reconnectPeriod: 0 });
    await next.publishAsync('bigblue/containers/K01/reefer', JSON.stringify({ ts: 1_763_769_700_000, seq: -1 }), { qos: 1 });
    await next.endAsync();
    await processes.pop()!.stop();
    const k01 = await readLogTopic(dataDir, 'containers', 'K01');
    expect(k01.at(-1)).toMatchObject({ offset: k01.length - 1, origin: SITE });
    expect(JSON.parse(Buffer.from(k01.at(-1)!.payload).toString())).toMatchObject({ ts: 1_763_769_700_000 });
  });
});
