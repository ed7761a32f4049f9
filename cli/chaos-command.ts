/**
 * `portcall chaos` (`npm run chaos`): the chaos suite of issue 11 (tools/chaos). The whole
 * system under load while a seeded schedule of faults runs, then the accounting: generated,
 * acknowledged, delivered per site, lost and duplicated (both must be 0; exit 1 otherwise).
 *
 * Only the registration loads with the command line; the suite is imported when it runs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';

/** `90s`, `5m`, `30m`, `1h` or plain seconds → milliseconds. */
export function parseDuration(raw: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (match === null) throw new InvalidArgumentError(`"${raw}" is not a duration; use e.g. 90s, 5m, 30m or 1h`);
  const value = Number(match[1]) * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's'] ?? 1000);
  if (value < 10_000 || value > 24 * 3_600_000) throw new InvalidArgumentError(`"${raw}": the fault phase must last from 10 s to 24 h`);
  return value;
}

function positive(name: string, max: number) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isFinite(value) || value <= 0 || value > max) throw new InvalidArgumentError(`${name} must be a number above 0 and at most ${max}`);
    return value;
  };
}

function integer(name: string) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new InvalidArgumentError(`${name} must be an integer from 0 to 4294967295`);
    return value;
  };
}

interface ChaosCommandOptions {
  duration: number;
  seed: number;
  faults: string;
  rate: number;
  messagesPerSecond: number;
  schedule?: string;
  printSchedule?: boolean;
  quiesceTimeout: number;
  shipDiskMb: number;
  kafkaBootstrap?: string;
  workDir?: string;
  keep?: boolean;
  json?: boolean;
  reportFile?: string;
}

export function registerChaosCommand(program: Command): void {
  program
    .command('chaos')
    .description(
      'The chaos suite: fleet → ship AURORA → ports TOKYO and SINGAPORE → headquarters HQ on Kafka, as real processes under load, while a seeded schedule kills sites with kill -9, flaps, resets and stalls links, fills the ship\u2019s disk, restarts the Kafka broker and skews device clocks; then every site is read back. Exit 1 when a record was lost or duplicated',
    )
    .addOption(new Option('--duration <time>', 'length of the fault phase (load runs through it), e.g. 90s, 5m, 30m').argParser(parseDuration).default(30 * 60_000, '30m'))
    .option('--seed <n>', 'seed of the schedule and the fleet (same seed, same schedule)', integer('--seed'), 11)
    .option('--faults <mix>', 'relative weight of each fault kind: kill, flap, reset, stall, disk-full, kafka-restart, clock-skew', 'kill=30,flap=14,reset=18,stall=10,disk-full=10,kafka-restart=6,clock-skew=12')
    .option('--rate <n>', 'faults per minute', positive('--rate', 600), 8)
    .option('--messages-per-second <n>', 'the fleet\u2019s publish rate (QoS 1)', positive('--messages-per-second', 100_000), 200)
    .option('--schedule <file>', 'replay this schedule (JSON: a report\u2019s "faults", or --print-schedule --json) instead of planning one from the seed')
    .option('--print-schedule', 'print the schedule the options give and exit, starting nothing')
    .addOption(new Option('--quiesce-timeout <time>', 'how long to wait, after the faults, for every link to drain').argParser(parseDuration).default(300_000, '5m'))
    .option('--ship-disk-mb <n>', 'size of the tmpfs holding the ship\u2019s log (mounting needs root; without it no disk-full faults)', positive('--ship-disk-mb', 65_536), 512)
    .option('--kafka-bootstrap <host:port>', 'use this Kafka broker instead of starting one (then no kafka-restart faults)')
    .option('--work-dir <dir>', 'configurations, site outputs and shore data here (default: a temporary directory, kept when the run fails)')
    .option('--keep', 'keep the work directory even when the run passes')
    .option('--json', 'print the report as JSON (one object) instead of the table')
    .option('--report-file <file>', 'also write the report as JSON to this file (every fault with its timing, every site\u2019s figures)')
    .addHelpText(
      'after',
      [
        '',
        'The default (30 minutes at 8 faults a minute: about 240 faults) is the run of issue 11; a',
        'short one: portcall chaos --duration 5m. The accounting (docs/RELIABILITY.md):',
        '  lost        messages acknowledged with PUBACK but missing at a site (must be 0)',
        '  duplicated  a record identity twice at a site, or one message under two identities (must be 0)',
        'Exit codes: 0 nothing lost or duplicated and every site identical; 1 otherwise.',
        '',
        'Examples:',
        '  npm run chaos',
        '  portcall chaos --duration 5m --seed 7',
        '  portcall chaos --duration 2m --faults kill=1,kafka-restart=1 --rate 12',
        '  portcall chaos --print-schedule --duration 30m',
      ].join('\n'),
    )
    .action(async (options: ChaosCommandOptions) => {
      const chaos = await import('../tools/chaos/index.js');
      let mix;
      try {
        mix = chaos.parseFaultMix(options.faults);
      } catch (error) {
        throw new InvalidArgumentError(`--faults: ${(error as Error).message}`);
      }
      let schedule;
      if (options.schedule !== undefined) {
        const document = JSON.parse(readFileSync(options.schedule, 'utf8')) as unknown;
        const list = Array.isArray(document) ? document : (document as { faults?: unknown }).faults;
        if (!Array.isArray(list)) throw new InvalidArgumentError(`--schedule: ${options.schedule} holds no list of faults`);
        schedule = (list as { atMs: number; kind: string; target: string; holdMs: number; skewMs?: number }[]).map((fault) => {
          if (!(chaos.FAULT_KINDS as readonly string[]).includes(fault.kind)) throw new InvalidArgumentError(`--schedule: unknown fault kind "${fault.kind}"`);
          return { atMs: fault.atMs, kind: fault.kind as (typeof chaos.FAULT_KINDS)[number], target: fault.target, holdMs: fault.holdMs, ...(fault.skewMs === undefined ? {} : { skewMs: fault.skewMs }) };
        });
      }
      if (options.printSchedule === true) {
        const planned =
          schedule ??
          chaos.planSchedule({ seed: options.seed, durationMs: options.duration, faultsPerMinute: options.rate, mix, sites: chaos.SITES, links: chaos.LINKS.map(chaos.linkName), diskFull: true });
        process.stdout.write(options.json === true ? `${JSON.stringify(planned, null, 2)}\n` : `${chaos.formatSchedule(planned)}\n${planned.length} faults\n`);
        return;
      }
      const { verifySites } = await import('./verify-command.js');
      const log = (line: string) => process.stderr.write(`${line}\n`);
      const report = await chaos.runChaos({
        seed: options.seed,
        durationMs: options.duration,
        faultsPerMinute: options.rate,
        mix,
        rate: options.messagesPerSecond,
        quiesceTimeoutMs: options.quiesceTimeout,
        shipDiskMb: options.shipDiskMb,
        keep: options.keep === true,
        verifySites: (urls) => verifySites(urls),
        log,
        ...(schedule === undefined ? {} : { schedule }),
        ...(options.kafkaBootstrap === undefined ? {} : { kafkaBootstrap: options.kafkaBootstrap }),
        ...(options.workDir === undefined ? {} : { workDir: options.workDir }),
      });
      if (options.reportFile !== undefined) writeFileSync(options.reportFile, `${JSON.stringify(report, null, 2)}\n`);
      process.stdout.write(options.json === true ? `${JSON.stringify(report, null, 2)}\n` : chaos.formatChaosReport(report));
      process.exitCode = report.ok ? 0 : 1;
    });
}
