/**
 * The Kafka broker under a running `portcall shore` dies in the middle of a transfer and comes
 * back: the site stops acknowledging (503, so the sender keeps its backlog), says why on
 * /readyz and /healthz, and once the broker is back everything resumes by itself; in the end
 * every record is in Kafka exactly once.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, expect, it } from 'vitest';

import { startKafkaBroker, type KafkaBroker } from '../tools/kafka/index.js';
import { describeKafka } from './support/kafka.js';
import { readBackCommitted } from './support/kafka-readback.js';
import { OriginSender, verifyExactlyOnce } from './support/origin-sender.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const TOPICS = 6;
const TOKEN = 'aurora-to-shore-token-0002';

const dataDir = mkdtempSync(join(tmpdir(), 'portcall-kafka-outage-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  rmSync(dataDir, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => Promise<T> | T, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

interface Health {
  httpStatus: number;
  status: string;
  reasons?: string[];
}

async function health(url: string, path: '/healthz' | '/readyz'): Promise<Health> {
  const response = await fetch(new URL(path, url), { signal: AbortSignal.timeout(5_000) });
  return { httpStatus: response.status, ...((await response.json()) as { status: string; reasons?: string[] }) };
}

describeKafka('portcall shore on Kafka when the broker dies mid-transfer', () => {
  it('refuses with 503 and says why while Kafka is down, then resumes by itself with nothing lost or doubled', { timeout: 180_000 }, async () => {
    const broker: KafkaBroker = await startKafkaBroker({ heapMb: 384, startTimeoutMs: 60_000, quickJit: true });
    cleanups.push(() => broker.stop());
    const run = randomBytes(3).toString('hex');
    const topicPrefix = `outage${run}`;
    const config = writeYaml(join(dataDir, 'shore.yaml'), {
      site: `OUTAGE${run}`,
      dataDir,
      log: { backend: 'kafka', kafka: { brokers: [broker.bootstrap], topicPrefix, partitions: 3 } },
      http: { host: '127.0.0.1', port: 0 },
      ingest: { peers: [{ site: 'AURORA', token: TOKEN }] },
    });
    const child: PortcallProcess = startPortcall(['shore', '--config', config]);
    cleanups.push(() => child.stop());
    const url = (await child.waitFor(/HTTP on (http:\/\/[\d.]+:\d+)/, 60_000))[1]!;
    expect(await health(url, '/readyz')).toMatchObject({ httpStatus: 200, status: 'ok' });

    const sender = new OriginSender({ url: () => url, token: TOKEN, topics: TOPICS, batchRecords: 300 });
    const sending = sender.run();
    await until('records before the outage', () => sender.position, (position) => position >= 3_000, 30_000);

    const outageAtMs = Date.now();
    broker.kill9();
    const ready = await until('readiness during the outage', () => health(url, '/readyz'), (h) => h.httpStatus === 503, 30_000);
    const detectedMs = Date.now() - outageAtMs;
    expect(ready.status).toBe('unavailable');
    expect(ready.reasons?.join(' ')).toMatch(/kafka-log: .*(Kafka|broker|connect)/i);
    // Liveness stays 200: the process is fine and must not be restarted for Kafka's sake.
    expect(await health(url, '/healthz')).toMatchObject({ httpStatus: 200, status: 'unavailable' });
    // Batches are refused, not acknowledged: the sender keeps them.
    await until('a 503 to a batch', () => sender.stats.unavailable, (n) => n > 0, 60_000);
    const positionInOutage = sender.position;
    await sleep(1_000);
    expect(sender.position).toBe(positionInOutage);

    const restartAtMs = Date.now();
    await broker.restart();
    await until('readiness after the restart', () => health(url, '/readyz').catch(() => ({ httpStatus: 0, status: 'down' })), (h) => h.httpStatus === 200, 60_000);
    const readyAtMs = Date.now();
    await until('transfers resumed', () => sender.position, (position) => position >= positionInOutage + 3_000, 60_000);
    const recoveredMs = Date.now() - restartAtMs;
    // Every part of the site well again, the topic index included (an outage that left a
    // transaction's outcome unknown sends it back to Kafka to catch up).
    const healthy = await until('health ok after the restart', () => health(url, '/healthz'), (h) => h.status === 'ok', 60_000);
    const healthyAfterReadyMs = Date.now() - readyAtMs;

    const limit = sender.finishAt();
    await Promise.race([
      sending,
      sleep(60_000).then(() => {
        throw new Error(`sender did not finish: at ${sender.position} of ${limit}`);
      }),
    ]);
    expect(sender.stats.unexpected).toEqual([]);
    process.stderr.write(
      `[kafka-outage] readiness 503 ${detectedMs} ms after the kill; transfers resumed ${recoveredMs} ms after the restart began; health ok ${healthyAfterReadyMs} ms after readiness (${JSON.stringify(healthy.reasons ?? [])}); ` +
        `${limit} records, ${sender.stats.unavailable} refusals (503), ${sender.stats.duplicates} duplicates dropped\n`,
    );

    const read = [
      ...(await readBackCommitted(broker.bootstrap, `${topicPrefix}.containers`)),
      ...(await readBackCommitted(broker.bootstrap, `${topicPrefix}.ships`)),
    ];
    expect(verifyExactlyOnce(read, TOPICS, limit)).toEqual([]);
    expect(read).toHaveLength(limit);
  });
});
