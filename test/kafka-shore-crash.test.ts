/**
 * A real `portcall shore` on the Kafka backend, killed with SIGKILL at random moments while a
 * sender posts batches to it, at least 20 times; afterwards a plain read_committed consumer
 * must find every record of the origin exactly once, in order per container, with its
 * headers, and the site's topic index (kept beside it across all those kills) must serve the
 * same records. After every restart the sender asks where its log stands and resumes from the
 * cursor the site recovered from Kafka (written in the same transactions as the records),
 * which must cover everything acknowledged and nothing never sent.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, expect, it } from 'vitest';

import { KafkaLog } from '../cloud/kafka-log/index.js';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';
import { readBackCommitted } from './support/kafka-readback.js';
import { OriginSender, expectedCount, originRecord, topicOf, verifyExactlyOnce } from './support/origin-sender.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const TARGET_KILLS = 20;
/**
 * The kill phase stops here even if fewer kills fit; CI still requires all. A restart takes
 * about 2 s on a quiet machine and 3–9 s when the whole suite (and more) loads the two cores;
 * measured: 13 of 20 kills fitted in 90 s at a load average of 10, and on a slower machine
 * beside the rest of the suite, with restarts of 5-19 s, 12 fitted in 150 s (2026-11-22).
 * An upper bound only: on CI's machine the 20 kills take 40-100 s.
 */
const KILL_PHASE_BUDGET_MS = 270_000;
/** How long every other kill waits, at most, for the restarted site's first acknowledgement. */
const ACK_WAIT_MS = 3_000;
const TOPICS = 8;
const TOKEN = 'aurora-to-shore-token-0001';

const dataDir = mkdtempSync(join(tmpdir(), 'portcall-kafka-crash-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describeKafka('portcall shore on Kafka, killed with SIGKILL during transfers', () => {
  it(`stores every record exactly once, in order, across ${TARGET_KILLS} kill -9s`, { timeout: 360_000 }, async () => {
    const bootstrap = kafkaBootstrap()!;
    const run = randomBytes(3).toString('hex');
    const site = `CRASH${run}`;
    const topicPrefix = `crash${run}`;
    const config = writeYaml(join(dataDir, 'shore.yaml'), {
      site,
      dataDir,
      log: { backend: 'kafka', kafka: { brokers: [bootstrap], topicPrefix, partitions: 3 } },
      http: { host: '127.0.0.1', port: 0 },
      ingest: { peers: [{ site: 'AURORA', token: TOKEN }] },
    });

    let url: string | undefined;
    let child: PortcallProcess | undefined;
    const startTimesMs: number[] = [];
    const cursorProblems: string[] = [];
    let skippedByCursor = 0;
    const start = async () => {
      const startedAtMs = Date.now();
      child = startPortcall(['shore', '--config', config]);
      const match = await child.waitFor(/HTTP on (http:\/\/[\d.]+:\d+)/, 60_000);
      startTimesMs.push(Date.now() - startedAtMs);
      // The restarted site knows the sender's cursor only from Kafka. Asked before the sender
      // may send again, so nothing moves meanwhile.
      const recovered = (await sender.askPosition(match[1]!)) ?? 0;
      if (recovered < sender.position) cursorProblems.push(`cursor ${recovered} recovered behind the acknowledged ${sender.position}`);
      if (recovered > sender.maxSent) cursorProblems.push(`cursor ${recovered} recovered beyond anything sent (${sender.maxSent})`);
      if (recovered > sender.position) {
        skippedByCursor += recovered - sender.position;
        sender.position = recovered;
      }
      url = match[1];
    };

    let seed = 0x5eed;
    const random = () => {
      // xorshift32: the same kill moments and resends on every run, so a failure repeats.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 0x100000000;
    };
    const sender = new OriginSender({
      url: () => url,
      token: TOKEN,
      topics: TOPICS,
      batchRecords: 400,
      random,
      placement: { stream: 'origin-log', incarnation: `crash-${run}` },
    });

    const phaseStartedAtMs = Date.now();
    await start();
    const sending = sender.run();
    let kills = 0;
    const positionsAtKill: number[] = [];
    let killsMidRequest = 0;
    while (kills < TARGET_KILLS && Date.now() - phaseStartedAtMs < KILL_PHASE_BUDGET_MS) {
      // Every other kill first waits for the restarted site to acknowledge a batch, so that
      // records flow between kills however loaded the machine is (in one CI run restarts took
      // up to 6.4 s, the first acknowledgement after one outlasted the pause below, and 20
      // kills saw 5 batches through); the others land at any moment, in recovery too. The wait
      // is bounded, so that the 20 kills still fit in the phase's budget.
      if (kills % 2 === 1) {
        const acknowledged = sender.stats.accepted;
        const waitUntilMs = Date.now() + ACK_WAIT_MS;
        while (sender.stats.accepted === acknowledged && Date.now() < waitUntilMs) await sleep(20);
      }
      // Transfers run for a random moment: a kill lands before, inside or after a transaction.
      await sleep(100 + Math.floor(random() * 600));
      if (sender.inFlight) killsMidRequest += 1;
      await child!.kill9();
      url = undefined;
      kills += 1;
      positionsAtKill.push(sender.position);
      await start();
    }
    const killPhaseMs = Date.now() - phaseStartedAtMs;
    const limit = sender.finishAt();
    await Promise.race([
      sending,
      sleep(60_000).then(() => {
        throw new Error(`sender did not finish: at ${sender.position} of ${limit}`);
      }),
    ]);
    await child!.stop();
    url = undefined;

    process.stderr.write(
      `[kafka-crash] ${kills} kill -9s in ${(killPhaseMs / 1000).toFixed(1)} s; restarts took ` +
        `${Math.min(...startTimesMs)}-${Math.max(...startTimesMs)} ms; ${limit} records, ${sender.stats.accepted} batches acknowledged, ` +
        `${sender.stats.duplicates} duplicates dropped, ${sender.stats.connectionErrors} connection errors, ${sender.stats.unavailable} refusals (503); ` +
        `${killsMidRequest} kills while a batch was in flight; ${skippedByCursor} records not resent thanks to the cursor recovered from Kafka\n`,
    );
    if (kills < TARGET_KILLS) {
      const message = `only ${kills} of ${TARGET_KILLS} kills fit in ${KILL_PHASE_BUDGET_MS} ms (restarts: ${startTimesMs.join(', ')} ms)`;
      if (process.env.CI === 'true') throw new Error(message);
      process.stderr.write(`\n*** [kafka-crash] ${message}; outside CI the run continues ***\n\n`);
    }
    expect(sender.stats.unexpected).toEqual([]);
    expect(cursorProblems).toEqual([]);
    // Kills landed while a batch was on its way, and while records were flowing (acknowledged
    // positions moved between kills), not all at the start or the end.
    expect(killsMidRequest).toBeGreaterThan(kills / 2);
    expect(new Set(positionsAtKill).size).toBeGreaterThan(kills / 4);

    const read = [
      ...(await readBackCommitted(bootstrap, `${topicPrefix}.containers`)),
      ...(await readBackCommitted(bootstrap, `${topicPrefix}.ships`)),
    ];
    expect(verifyExactlyOnce(read, TOPICS, limit)).toEqual([]);
    expect(read).toHaveLength(limit);

    // The topic index the killed processes kept beside the site serves the same records.
    const log = await KafkaLog.open({
      siteId: site,
      brokers: [bootstrap],
      topicPrefix,
      streams: ['alerts', 'manifests', 'ships', 'containers'],
      indexPath: join(dataDir, site, 'kafka-index.sqlite'),
      indexWaitMs: 60_000,
    });
    try {
      for (let t = 0; t < TOPICS; t++) {
        const { stream, topic } = topicOf(t, TOPICS);
        const count = expectedCount(t, TOPICS, limit);
        const records = await log.readTopic(stream, topic, 0, { maxRecords: count + 10, maxBytes: 64 * 1024 * 1024 });
        expect(records.map((r) => r.offset)).toEqual([...Array(count).keys()]);
        const middle = Math.floor(count / 2);
        const [one] = await log.readTopic(stream, topic, middle, { maxRecords: 1 });
        expect(Buffer.from(one!.payload).toString()).toBe(Buffer.from(originRecord(middle * TOPICS + t, TOPICS).payload).toString());
      }
    } finally {
      await log.close();
    }
  });
});
