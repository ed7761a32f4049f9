/**
 * ingest: messages per second into the edge gateway, 150-byte JSON readings over 1,000
 * container topics, QoS 0 and QoS 1 — portcall acknowledging only after the durable commit —
 * against Debian's Mosquitto (in memory, default settings) driven by the same load generator
 * in the same run; then PUBACK latency at half of each broker's maximum QoS 1 rate (or, with
 * PORTCALL_INGEST_PACED_RATE, only the latency, both brokers at the rate named).
 *
 * The generator (bench/raw-load) runs in its own process and sends pre-encoded packets over
 * several raw sockets; its ceiling is measured against a sink that only acknowledges, so a
 * broker figure close to it would mean the generator, not the broker, was the limit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseSiteConfig, startSite, type RunningSite } from '../../site/index.js';
import { startMosquitto } from '../../tools/mosquitto/index.js';
import { optionalWholeNumberFromEnvironment, wholeNumberFromEnvironment, type BenchContext, type Figure, type Scenario } from '../harness.js';
import { runLoad, startAckSink, type LoadResult } from '../raw-load/index.js';

const CONTAINERS = 1000;
const CONNECTIONS = 8;
const WINDOW_PER_CONNECTION = 1000;
/** Paced runs: this long at the rate before latencies count (the broker warms up: JIT, caches, topics created), then measured. */
const WARMUP_SECONDS = 2;
const PACED_SECONDS = 5;
const TOPIC_PREFIX = 'bigblue/containers';

/**
 * How many times each broker's paced latency is measured (`PORTCALL_INGEST_PACED_RUNS`,
 * default 1), the brokers taking turns, each run on a fresh broker; the run with the median
 * p99 is reported. One 5 s window's p99 moved 3-4x between runs on the same machine
 * (docs/GATEWAY.md), so a decision wants several.
 */
function pacedRuns(): number {
  return wholeNumberFromEnvironment('PORTCALL_INGEST_PACED_RUNS', 1, 1, 9);
}

/**
 * `PORTCALL_INGEST_PACED_RATE=80000`: only the paced latency, both brokers at that rate (msg/s)
 * instead of half of each one's maximum, and no maximum runs; unset, the scenario as usual.
 */
function pacedRate(): number | undefined {
  return optionalWholeNumberFromEnvironment('PORTCALL_INGEST_PACED_RATE', 1_000, 1_000_000);
}

/** The run whose steady p99 is the median (the middle one of an odd count, the lower middle of an even one). */
function medianRun(results: readonly LoadResult[]): LoadResult {
  return [...results].sort((a, b) => a.steady!.p99Ms - b.steady!.p99Ms)[Math.floor((results.length - 1) / 2)]!;
}

interface Target {
  readonly name: string;
  /** Starts a fresh broker; `storedCount` tells how many messages it made durable (portcall). */
  start(): Promise<{ port: number; storedCount?: () => number; stop(): Promise<void> }>;
}

async function startPortcallTarget(ownThread: boolean): Promise<{ port: number; storedCount: () => number; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'portcall-bench-ingest-'));
  const site: RunningSite = await startSite(
    parseSiteConfig({ site: 'BENCH', dataDir, mqtt: { port: 0, auth: { allowAnonymous: true }, ownThread } }),
    { logger: pino({ level: 'error' }, pino.destination(2)) },
  );
  return {
    port: site.mqttPort!,
    storedCount: () => site.stats().gatewayMessagesStored,
    stop: async () => {
      await site.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const portcall: Target = { name: 'portcall', start: () => startPortcallTarget(true) };
/** The same with the gateway on the log's thread (`mqtt.ownThread: false`), to show what the second thread buys. */
const portcallOneThread: Target = { name: 'portcall (one thread)', start: () => startPortcallTarget(false) };
const mosquitto: Target = {
  name: 'mosquitto',
  start: async () => {
    const broker = await startMosquitto();
    return { port: broker.port, stop: () => broker.stop() };
  },
};

/** The 1-minute load average, printed beside every figure: other tenants of a 2-core machine move them 2-3×. */
function load(): string {
  return `(load ${loadavg()[0]!.toFixed(2)})`;
}

function check(result: LoadResult, what: string): LoadResult {
  if (result.error !== undefined) throw new Error(`${what}: ${result.error}`);
  return result;
}

/** Messages per second, best of `repeats` fresh runs (other tenants of a small machine add noise). */
async function maxRate(target: Target, qos: 0 | 1, messages: number, repeats: number, context: BenchContext): Promise<number> {
  let best = 0;
  for (let run = 0; run < repeats; run += 1) {
    const broker = await target.start();
    try {
      const startedAt = performance.now();
      const result = check(
        await runLoad({
          port: broker.port,
          connections: CONNECTIONS,
          messages,
          containers: CONTAINERS,
          topicPrefix: TOPIC_PREFIX,
          qos,
          windowPerConnection: WINDOW_PER_CONNECTION,
          ratePerSecond: 0,
          timeoutMs: 180_000,
        }),
        `${target.name} QoS ${qos}`,
      );
      let elapsedMs = result.elapsedMs;
      if (broker.storedCount !== undefined) {
        // QoS 0 is counted when durable too, not when the socket took it.
        const deadline = Date.now() + 60_000;
        while (broker.storedCount() < messages && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
        elapsedMs = Math.max(elapsedMs, performance.now() - startedAt);
      }
      const rate = messages / (elapsedMs / 1000);
      context.progress(`ingest: ${target.name} QoS ${qos} run ${run + 1}: ${Math.round(rate).toLocaleString('en-US')} msg/s ${load()}`);
      best = Math.max(best, rate);
    } finally {
      await broker.stop();
    }
  }
  return best;
}

async function pacedLatency(target: Target, ratePerSecond: number, context: BenchContext): Promise<LoadResult> {
  const broker = await target.start();
  try {
    const result = check(
      await runLoad({
        port: broker.port,
        connections: CONNECTIONS,
        messages: Math.round(ratePerSecond * (WARMUP_SECONDS + PACED_SECONDS)),
        containers: CONTAINERS,
        topicPrefix: TOPIC_PREFIX,
        qos: 1,
        windowPerConnection: WINDOW_PER_CONNECTION,
        ratePerSecond,
        timeoutMs: 120_000,
        measureAfterMs: WARMUP_SECONDS * 1000,
      }),
      `${target.name} paced`,
    );
    const steady = result.steady!;
    context.progress(
      `ingest: ${target.name} at ${Math.round(ratePerSecond).toLocaleString('en-US')} msg/s: PUBACK p50 ${steady.p50Ms.toFixed(2)} ms, p99 ${steady.p99Ms.toFixed(2)} ms, max ${steady.maxMs.toFixed(1)} ms after ${WARMUP_SECONDS} s (from the start: p99 ${result.latencyP99Ms.toFixed(2)} ms) ${load()}`,
    );
    return result;
  } finally {
    await broker.stop();
  }
}

/** Both brokers' paced PUBACK latency, `runs` times each, taking turns; the median run of each, and its figures. */
async function pacedFigures(
  runs: number,
  rateOf: (target: Target) => number,
  at: string,
  context: BenchContext,
): Promise<Figure[]> {
  const results: Record<string, LoadResult[]> = { [mosquitto.name]: [], [portcall.name]: [] };
  // Taking turns, so a machine whose speed drifts during the runs moves both alike.
  for (let run = 0; run < runs; run += 1) {
    for (const target of [mosquitto, portcall]) results[target.name]!.push(await pacedLatency(target, rateOf(target), context));
  }
  const latency: Record<string, LoadResult> = {};
  for (const [name, ofTarget] of Object.entries(results)) {
    latency[name] = medianRun(ofTarget);
    if (runs > 1) {
      const p99s = ofTarget.map((result) => result.steady!.p99Ms.toFixed(1)).join(', ');
      context.progress(`ingest: ${name} PUBACK p99 at ${at} over ${runs} runs: ${p99s} ms (median ${latency[name]!.steady!.p99Ms.toFixed(1)} ms)`);
    }
  }
  const ofRuns = runs > 1 ? `; the run with the median p99 of ${runs}` : '';
  const portcallRun = latency[portcall.name]!;
  const mosquittoRun = latency[mosquitto.name]!;
  return [
    versus(`PUBACK p50 at ${at} (${PACED_SECONDS} s after ${WARMUP_SECONDS} s at that rate${ofRuns})`, portcallRun.steady!.p50Ms, mosquittoRun.steady!.p50Ms, 'ms'),
    versus(`PUBACK p99 at ${at} (${PACED_SECONDS} s after ${WARMUP_SECONDS} s at that rate${ofRuns})`, portcallRun.steady!.p99Ms, mosquittoRun.steady!.p99Ms, 'ms'),
    versus(`PUBACK p99 at ${at}, from a fresh start (whole run${ofRuns})`, portcallRun.latencyP99Ms, mosquittoRun.latencyP99Ms, 'ms'),
  ];
}

function versus(metric: string, value: number, baselineValue: number, unit: string): Figure {
  return { scenario: 'ingest', metric, value, unit, baseline: 'mosquitto (in memory, default settings)', baselineValue };
}

export const ingestScenario: Scenario = {
  name: 'ingest',
  description: 'Gateway msgs/s (QoS 0, QoS 1 durable) and PUBACK p99 at half max rate, vs Mosquitto in memory, same raw-socket generator',
  async run(context: BenchContext): Promise<Figure[]> {
    // Sustained: long enough that a fresh broker's first second (JIT, topic creation) is a
    // small part of the figure, for every broker alike.
    const messages = Math.round(500_000 * context.scale);
    const repeats = 2;
    // Read first: a bad value stops the scenario before a minute of work, not after it.
    const runs = pacedRuns();
    const fixedRate = pacedRate();
    // Other processes on a 2-core machine move these figures; the load says how much.
    context.progress(`ingest: load average at start ${loadavg().map((load) => load.toFixed(2)).join(' ')}`);
    if (fixedRate !== undefined) {
      // Latency at a rate the user names (a fleet's, say), both brokers alike; no maximum runs.
      const figures = await pacedFigures(runs, () => fixedRate, `${fixedRate.toLocaleString('en-US')} msg/s QoS 1`, context);
      context.progress(`ingest: load average at end ${loadavg().map((load) => load.toFixed(2)).join(' ')}`);
      return figures;
    }

    context.progress(`ingest: generator ceiling against an ack-only sink (${messages} QoS 1 messages, ${CONNECTIONS} connections)…`);
    const sink = await startAckSink();
    let ceiling: number;
    try {
      const result = check(
        await runLoad({
          port: sink.port,
          connections: CONNECTIONS,
          messages,
          containers: CONTAINERS,
          topicPrefix: TOPIC_PREFIX,
          qos: 1,
          windowPerConnection: WINDOW_PER_CONNECTION,
          ratePerSecond: 0,
          timeoutMs: 60_000,
        }),
        'ack sink',
      );
      ceiling = result.acknowledged / (result.elapsedMs / 1000);
      context.progress(`ingest: generator ceiling ${Math.round(ceiling).toLocaleString('en-US')} msg/s ${load()}`);
    } finally {
      await sink.stop();
    }

    const rates: Record<string, Record<0 | 1, number>> = {};
    for (const target of [mosquitto, portcall]) {
      rates[target.name] = {
        0: await maxRate(target, 0, messages, repeats, context),
        1: await maxRate(target, 1, messages, repeats, context),
      };
    }
    const oneThread = await maxRate(portcallOneThread, 1, messages, repeats, context);
    const latency = await pacedFigures(runs, (target) => rates[target.name]![1] / 2, 'half of own max QoS 1 rate', context);

    context.progress(`ingest: load average at end ${loadavg().map((load) => load.toFixed(2)).join(' ')}`);
    return [
      { scenario: 'ingest', metric: 'load generator ceiling (QoS 1, ack-only sink)', value: ceiling, unit: 'msg/s' },
      versus('QoS 0 (portcall: until durable)', rates.portcall![0], rates.mosquitto![0], 'msg/s'),
      versus('QoS 1 (portcall: PUBACK after durable commit)', rates.portcall![1], rates.mosquitto![1], 'msg/s'),
      versus('QoS 1, gateway on the log\'s thread (mqtt.ownThread: false)', oneThread, rates.mosquitto![1], 'msg/s'),
      ...latency,
    ];
  },
};
