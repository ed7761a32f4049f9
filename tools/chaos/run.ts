/**
 * One chaos run: start the whole system, load it with the fleet, inject the seeded schedule of
 * faults, stop the faults and the load, wait (bounded) until every link has forwarded
 * everything, read every site back and account for every message.
 */
import { account, readKafka, readSite, type SiteAccount } from './accounting.js';
import { FleetGenerator, type GeneratorStats } from './generator.js';
import { FAULT_KINDS, planSchedule, type FaultKind, type FaultMix, type PlannedFault } from './schedule.js';
import { ChaosSystem, HQ, LINKS, SHIP, SITES, linkName, sleep } from './system.js';

export interface ChaosOptions {
  readonly seed: number;
  /** Length of the fault phase (the load runs through it). */
  readonly durationMs: number;
  readonly faultsPerMinute: number;
  readonly mix: FaultMix;
  /** Messages per second the fleet publishes. */
  readonly rate: number;
  /** A schedule to replay instead of planning one from the seed. */
  readonly schedule?: readonly PlannedFault[];
  /** Bound on the wait for every link to drain after the faults. */
  readonly quiesceTimeoutMs: number;
  readonly shipDiskMb: number;
  readonly kafkaBootstrap?: string;
  readonly workDir?: string;
  /** Keep the work directory (configurations, site logs, shore data) even when the run passes. */
  readonly keep?: boolean;
  /** `portcall verify --sites`, handed in by the composition root: differences between sites. */
  readonly verifySites?: (urls: readonly string[]) => Promise<{ differences: readonly string[]; topics: number }>;
  readonly log: (line: string) => void;
}

export interface InjectedFault extends PlannedFault {
  readonly outcome: 'injected' | 'skipped' | 'failed';
  /** When it started, after the fault phase began (a fault waits for the one before it on the same target). */
  readonly startedAtMs?: number;
  /** How long it took, restart or restore included. */
  readonly tookMs?: number;
  readonly detail?: string;
}

export interface FaultKindSummary {
  readonly planned: number;
  readonly injected: number;
  readonly skipped: number;
  readonly failed: number;
  /** Shortest and longest time from start to restored, in ms. */
  readonly minTookMs: number | null;
  readonly maxTookMs: number | null;
}

export interface ChaosReport {
  readonly ok: boolean;
  readonly seed: number;
  readonly rate: number;
  readonly faultsPerMinute: number;
  readonly generated: number;
  readonly acknowledged: number;
  readonly unacknowledged: number;
  readonly generator: GeneratorStats;
  readonly sites: readonly SiteAccount[];
  /** Acknowledged messages missing at one site or more, each counted once. */
  readonly lost: number;
  /** Extra copies, summed over the sites. */
  readonly duplicated: number;
  readonly misplaced: number;
  /** Offsets missing inside topics, summed over the sites. */
  readonly gaps: number;
  readonly faults: readonly InjectedFault[];
  readonly faultsByKind: Readonly<Record<FaultKind, FaultKindSummary>>;
  readonly quiesced: boolean;
  /** Records still to forward when the quiescence wait ended. */
  readonly pendingAtEnd: number | null;
  readonly verifyDifferences: readonly string[] | null;
  readonly verifyTopics: number | null;
  /** The sites `portcall verify --sites` compared. */
  readonly verifiedSites: readonly string[];
  readonly timingsMs: { readonly setup: number; readonly faults: number; readonly quiesce: number; readonly readBack: number; readonly total: number };
  readonly shipDisk: string;
  /** The ship's log on its tmpfs at the end of the run (MiB), to size --ship-disk-mb. */
  readonly shipDiskUsedMb: number | null;
  readonly workDir: string;
  readonly problems: readonly string[];
}

/** Faults on the same thing wait for each other: a site is not killed while it restarts. */
function lockGroup(fault: PlannedFault): string {
  switch (fault.kind) {
    case 'kill':
      return fault.target;
    case 'disk-full':
      return SHIP;
    case 'kafka-restart':
      return HQ;
    default:
      return fault.target;
  }
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const { log } = options;
  const startedAt = Date.now();
  const system = new ChaosSystem({ shipDiskMb: options.shipDiskMb, log, ...(options.workDir === undefined ? {} : { workDir: options.workDir }), ...(options.kafkaBootstrap === undefined ? {} : { kafkaBootstrap: options.kafkaBootstrap }) });
  let keep = options.keep === true;
  const problems: string[] = [];
  // Interrupted: stop every process, unmount the tmpfs, keep the work directory, then exit.
  // `on`, not `once`: the Kafka tools' reaper kills the broker and re-raises the signal when it
  // finds itself the only listener, which it would during the emit once a `once` listener is gone.
  let stopping = false;
  const interrupted = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log(`chaos: ${signal}; stopping the sites and the broker, unmounting the ship's disk`);
    void system.close(true).finally(() => process.exit(130));
  };
  process.on('SIGINT', interrupted);
  process.on('SIGTERM', interrupted);
  try {
    await system.start();
    const schedule =
      options.schedule ??
      planSchedule({
        seed: options.seed,
        durationMs: options.durationMs,
        faultsPerMinute: options.faultsPerMinute,
        mix: options.kafkaBootstrap === undefined ? options.mix : { ...options.mix, 'kafka-restart': 0 },
        sites: SITES,
        links: LINKS.map(linkName),
        diskFull: system.diskUnavailable === undefined,
      });
    const setupMs = Date.now() - startedAt;
    log(`schedule: ${schedule.length} faults over ${(options.durationMs / 1000).toFixed(0)} s (seed ${options.seed}); fleet at ${options.rate} messages/s`);

    // The load.
    const load = new FleetGenerator({ brokerUrl: `mqtt://127.0.0.1:${system.mqttPort}`, rate: options.rate, seed: options.seed });
    load.start();

    // The faults.
    const phaseStart = Date.now();
    const elapsed = () => Date.now() - phaseStart;
    const locks = new Map<string, Promise<void>>();
    const results: InjectedFault[] = [];
    const execute = async (fault: PlannedFault): Promise<string | undefined> => {
      switch (fault.kind) {
        case 'kill':
          try {
            await system.killAndRestart(fault.target, fault.holdMs);
          } catch (error) {
            // One more try: a start can time out on a loaded machine.
            log(`  ${fault.target} did not come back (${(error as Error).message}); starting it again`);
            await system.site(fault.target).kill9();
            await system.site(fault.target).start();
            return 'restarted on the second try';
          }
          return undefined;
        case 'flap':
          await system.flap(fault.target, fault.holdMs);
          return undefined;
        case 'reset':
          system.reset(fault.target);
          return undefined;
        case 'stall':
          await system.stall(fault.target, fault.holdMs);
          return undefined;
        case 'disk-full': {
          const ballast = await system.fillDisk();
          const before = load.stats().acknowledged;
          try {
            await sleep(fault.holdMs);
          } finally {
            await ballast.free();
          }
          return `ballast ${(ballast.bytes / 1048576).toFixed(1)} MiB; ${load.stats().acknowledged - before} messages acknowledged while full`;
        }
        case 'kafka-restart':
          await system.restartKafka(fault.holdMs);
          return undefined;
        case 'clock-skew':
          load.setSkew(fault.skewMs ?? 0);
          try {
            await sleep(fault.holdMs);
          } finally {
            load.setSkew(0);
          }
          return undefined;
      }
    };
    const tasks = schedule.map(
      (fault) =>
        new Promise<void>((resolve) => {
          setTimeout(() => {
            const group = lockGroup(fault);
            const run = async () => {
              if (elapsed() > options.durationMs) {
                results.push({ ...fault, outcome: 'skipped', detail: 'the fault phase ended while it waited for the fault before it' });
                return;
              }
              const startedAtMs = elapsed();
              try {
                const detail = await execute(fault);
                results.push({ ...fault, outcome: 'injected', startedAtMs, tookMs: elapsed() - startedAtMs, ...(detail === undefined ? {} : { detail }) });
              } catch (error) {
                const why = (error as Error).message.split('\n')[0]!;
                results.push({ ...fault, outcome: 'failed', startedAtMs, tookMs: elapsed() - startedAtMs, detail: why });
                log(`  fault ${fault.kind} ${fault.target} FAILED: ${why}`);
              }
            };
            const next = (locks.get(group) ?? Promise.resolve()).then(run);
            locks.set(group, next);
            void next.then(resolve);
          }, Math.max(0, fault.atMs - elapsed()));
        }),
    );
    const progress = setInterval(() => {
      const stats = load.stats();
      log(`  ${(elapsed() / 1000).toFixed(0).padStart(5)} s  published ${stats.published}, acknowledged ${stats.acknowledged}, in flight ${stats.inFlight}; faults ${results.length}/${schedule.length}`);
    }, 15_000);
    try {
      await sleep(Math.max(0, options.durationMs - elapsed()));
      await Promise.all(tasks);
    } finally {
      clearInterval(progress);
    }
    const faultsMs = Date.now() - phaseStart;
    await load.stop(10_000);
    const stats = load.stats();
    log(`faults: ${results.filter((fault) => fault.outcome === 'injected').length} injected in ${(faultsMs / 1000).toFixed(0)} s; fleet stopped: ${stats.published} published, ${stats.acknowledged} acknowledged`);

    // Quiescence: every site up and every link drained, twice in a row.
    const quiesceStart = Date.now();
    for (const site of system.sites.values()) {
      if (!site.running) {
        problems.push(`${site.name} was not running after the faults; started it again`);
        await site.start();
      }
    }
    let quiesced = false;
    let pending: number | undefined;
    let zeros = 0;
    while (Date.now() - quiesceStart < options.quiesceTimeoutMs) {
      pending = await system.pendingRecords();
      zeros = pending === 0 ? zeros + 1 : 0;
      if (zeros >= 2) {
        quiesced = true;
        break;
      }
      await sleep(1000);
    }
    const quiesceMs = Date.now() - quiesceStart;
    log(quiesced ? `quiesced in ${(quiesceMs / 1000).toFixed(1)} s` : `NOT quiesced after ${(quiesceMs / 1000).toFixed(0)} s: ${pending ?? 'unknown'} records still to forward`);
    if (!quiesced) problems.push(`links had ${pending ?? 'an unknown number of'} records still to forward after ${options.quiesceTimeoutMs} ms`);

    // Read back every site, then compare them with portcall verify, then Kafka itself.
    const readStart = Date.now();
    const topicsByStream = new Map<string, Set<string>>();
    for (const message of load.messages) {
      let topics = topicsByStream.get(message.stream);
      if (topics === undefined) topicsByStream.set(message.stream, (topics = new Set()));
      topics.add(message.topic);
    }
    const streams = [...topicsByStream.keys()];
    const accounts: SiteAccount[] = [];
    const lostSeqs = new Set<number>();
    const tally = (name: string, records: Awaited<ReturnType<typeof readSite>>) => {
      const result = account(name, records, load.messages);
      accounts.push(result);
      return result;
    };
    for (const name of SITES) {
      const records = await readSite(system.site(name), topicsByStream);
      const result = tally(name === HQ ? `${HQ} (read API)` : name, records);
      if (result.lost > 0) {
        const held = new Set(records.map((record) => record.seq));
        for (const message of load.messages) if (message.state === 1 && !held.has(message.seq)) lostSeqs.add(message.seq);
      }
    }
    let verifyDifferences: readonly string[] | null = null;
    let verifyTopics: number | null = null;
    let verifiedSites: readonly string[] = [];
    if (options.verifySites !== undefined) {
      // Every site that serves per-topic summaries (a Kafka-backed site did not before it could forward).
      const summarised: string[] = [];
      for (const name of SITES) if (await system.site(name).servesSummaries()) summarised.push(name);
      const verified = await options.verifySites(summarised.map((name) => system.site(name).url));
      verifyDifferences = verified.differences;
      verifyTopics = verified.topics;
      verifiedSites = summarised;
    }
    const kafkaRecords = await readKafka(system.bootstrap, system.kafkaPrefix, streams);
    const kafkaAccount = tally(`${HQ} (Kafka read_committed)`, kafkaRecords);
    if (kafkaAccount.lost > 0) {
      const held = new Set(kafkaRecords.map((record) => record.seq));
      for (const message of load.messages) if (message.state === 1 && !held.has(message.seq)) lostSeqs.add(message.seq);
    }
    const readBackMs = Date.now() - readStart;
    const shipDiskUsed = system.shipDiskUsedBytes();

    const faultsByKind = Object.fromEntries(
      FAULT_KINDS.map((kind) => {
        const ofKind = results.filter((fault) => fault.kind === kind);
        const took = ofKind.filter((fault) => fault.outcome === 'injected').map((fault) => fault.tookMs ?? 0);
        return [
          kind,
          {
            planned: schedule.filter((fault) => fault.kind === kind).length,
            injected: took.length,
            skipped: ofKind.filter((fault) => fault.outcome === 'skipped').length,
            failed: ofKind.filter((fault) => fault.outcome === 'failed').length,
            minTookMs: took.length === 0 ? null : Math.min(...took),
            maxTookMs: took.length === 0 ? null : Math.max(...took),
          },
        ];
      }),
    ) as Record<FaultKind, FaultKindSummary>;
    if (system.brokerStartFailures > 0) problems.push(`the Kafka broker did not serve within 180 s of a restart ${system.brokerStartFailures} times and was restarted again`);
    for (const site of system.sites.values()) {
      if (site.startFailures > 0) problems.push(`${site.name} exited while starting ${site.startFailures} times and was started again (see ${site.logFile})`);
    }
    const duplicated = accounts.reduce((sum, entry) => sum + entry.duplicated, 0);
    const misplaced = accounts.reduce((sum, entry) => sum + entry.misplaced, 0);
    const gaps = accounts.reduce((sum, entry) => sum + entry.gaps, 0);
    if ((verifyDifferences?.length ?? 0) > 0) problems.push(`portcall verify --sites: ${verifyDifferences!.length} topics differ between the sites`);
    const ok = lostSeqs.size === 0 && duplicated === 0 && misplaced === 0 && gaps === 0 && quiesced && (verifyDifferences?.length ?? 0) === 0;
    if (!ok) keep = true;
    return {
      ok,
      seed: options.seed,
      rate: options.rate,
      faultsPerMinute: options.faultsPerMinute,
      generated: stats.published,
      acknowledged: stats.acknowledged,
      unacknowledged: stats.unacknowledged,
      generator: stats,
      sites: accounts,
      lost: lostSeqs.size,
      duplicated,
      misplaced,
      gaps,
      faults: results.sort((a, b) => a.atMs - b.atMs),
      faultsByKind,
      quiesced,
      pendingAtEnd: pending ?? null,
      verifyDifferences,
      verifyTopics,
      verifiedSites,
      timingsMs: { setup: setupMs, faults: faultsMs, quiesce: quiesceMs, readBack: readBackMs, total: Date.now() - startedAt },
      shipDisk: system.diskUnavailable === undefined ? `${options.shipDiskMb} MiB tmpfs` : `no tmpfs (${system.diskUnavailable}); no disk-full faults`,
      shipDiskUsedMb: shipDiskUsed === undefined ? null : Math.round((shipDiskUsed / 1048576) * 10) / 10,
      workDir: system.workDir,
      problems,
    };
  } catch (error) {
    keep = true;
    throw error;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await system.close(keep);
    if (keep) log(`work directory kept: ${system.workDir} (configurations, each site's output, shore data; the ship's tmpfs is unmounted)`);
  }
}
