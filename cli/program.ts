/**
 * The `portcall` command line. Each subcommand is a composition root: it reads its
 * configuration, wires the stages and runs until stopped. Stages are imported lazily so
 * `--help` is instant and `portcall kafka` does not load the MQTT broker.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { devicesCommand } from './devices-command.js';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { PortcallError } from '../core/index.js';
import { createLogger } from './logger.js';
import { registerLogCommand } from './log-command.js';
import { registerProxyCommand } from './proxy-command.js';
import { registerAccessCommand } from './access-command.js';
import { registerVerifyCommand } from './verify-command.js';
import { registerStatusCommand } from './status-command.js';
import { registerChaosCommand } from './chaos-command.js';

function integer(name: string, min: number, max: number) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
    }
    return value;
  };
}

function positiveNumber(name: string) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isFinite(value) || value <= 0) throw new InvalidArgumentError(`${name} must be a number above 0`);
    return value;
  };
}

/** How long a stop may take after SIGINT/SIGTERM before the process exits regardless (code 1). */
const STOP_GRACE_MS = 60_000;

/** Runs until SIGINT/SIGTERM, then calls stop once; a second signal exits at once. */
function untilSignalled(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const onSignal = () => {
      process.once('SIGINT', () => process.exit(130));
      process.stderr.write('\nstopping…\n');
      // Everything acknowledged is durable already; a part that never finishes stopping (the
      // site's log names it after 10 s) must not keep the process from ending.
      setTimeout(() => {
        process.stderr.write(`did not stop within ${STOP_GRACE_MS / 1000} s; exiting anyway\n`);
        process.exit(1);
      }, STOP_GRACE_MS).unref();
      void stop().then(resolve, (error: unknown) => {
        process.stderr.write(`error while stopping: ${(error as Error).message}\n`);
        process.exitCode = 1;
        resolve();
      });
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

async function runSiteCommand(kind: 'edge' | 'shore', options: { config?: string; logLevel?: string }): Promise<void> {
  const { loadSiteConfig, startSite } = await import('../site/index.js');
  const config = loadSiteConfig(options.config);
  if (kind === 'edge' && config.mqtt === undefined) {
    throw new PortcallError('CONFIG_INVALID', `${options.config ?? 'configuration'}: mqtt: an edge site needs an mqtt section (the gateway)`);
  }
  if (kind === 'shore' && (config.http === undefined || config.ingest === undefined)) {
    throw new PortcallError(
      'CONFIG_INVALID',
      `${options.config ?? 'configuration'}: a shore site needs an http section and an ingest section (its receiving endpoint)`,
    );
  }
  const logger = createLogger({ level: options.logLevel });
  const site = await startSite(config, { logger });
  // Listening for the signal before saying the site is up: whoever waits for that line may
  // stop the site the moment it reads it, and a SIGTERM with no listener yet ends the process
  // at once, without a graceful close (seen in a test, one stop in two on a loaded machine).
  const signalled = untilSignalled(() => site.close());
  process.stdout.write(
    `${kind} site ${site.name} is up` +
      (site.mqttPort === undefined ? '' : `; MQTT on ${config.mqtt!.host}:${site.mqttPort}`) +
      (site.mqttTlsPort === undefined ? '' : `; MQTT/TLS on ${config.mqtt!.tls!.host ?? config.mqtt!.host}:${site.mqttTlsPort}`) +
      (site.mqttWebSocketPort === undefined
        ? ''
        : `; MQTT/WebSocket on ws://${config.mqtt!.websocket!.host ?? config.mqtt!.host}:${site.mqttWebSocketPort}${config.mqtt!.websocket!.path}`) +
      (site.httpUrl === undefined ? '' : `; HTTP on ${site.httpUrl} (/healthz, /metrics)`) +
      '. Ctrl-C stops it.\n',
  );
  await signalled;
}

export function buildProgram(): Command {
  const program = new Command('portcall')
    .description(
      'Ship-to-shore container telemetry: edge MQTT gateways with a durable log, exactly-once ' +
        'forwarding to shore sites over flaky links, shore sites on SQLite or Apache Kafka.',
    )
    .showHelpAfterError('(add --help for usage)')
    .configureHelp({ sortSubcommands: false });

  const configHelp =
    '\nConfiguration is a YAML file (--config) plus environment overrides PORTCALL_<FIELD_PATH>,\n' +
    'levels joined by "__", e.g. PORTCALL_HTTP__PORT=8081 or PORTCALL_LOG__BACKEND=kafka.\n' +
    'See docs/CONFIGURATION.md and the examples in config/.';

  program
    .command('edge')
    .description('Run an edge site (ship, truck, train): MQTT gateway → durable log → forwarders to shore')
    .option('-c, --config <file>', 'site configuration (YAML)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error']))
    .addHelpText('after', `${configHelp}\nExample: portcall edge --config config/aurora.yaml`)
    .action((options: { config?: string; logLevel?: string }) => runSiteCommand('edge', options));

  program
    .command('shore')
    .description('Run a shore site (port, headquarters): receiving endpoint → SQLite or Kafka log → read API')
    .option('-c, --config <file>', 'site configuration (YAML)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error']))
    .addHelpText('after', `${configHelp}\nExample: portcall shore --config config/tokyo.yaml`)
    .action((options: { config?: string; logLevel?: string }) => runSiteCommand('shore', options));

  program.addCommand(devicesCommand());

  const gateway = program
    .command('gateway')
    .description('Manage the MQTT gateway\'s device credentials file (scrypt-hashed secrets, access rules)');

  gateway
    .command('hash-secret')
    .description('Print the scrypt hash of a device secret, for the "secret" field of a credentials file')
    .option('--secret-stdin', 'read the secret from standard input (otherwise a random one is generated and printed)')
    .addHelpText('after', '\nExample: printf %s "$SECRET" | portcall gateway hash-secret --secret-stdin')
    .action(async (options: { secretStdin?: boolean }) => {
      const { readSecret } = await import('./gateway-credentials.js');
      const { hashSecret } = await import('../edge/gateway/index.js');
      const given = await readSecret(options, process.stdin);
      const secret = given ?? (await import('node:crypto')).randomBytes(18).toString('base64url');
      if (given === undefined) process.stderr.write(`generated secret (give it to the device, it is not stored): ${secret}\n`);
      process.stdout.write(`${await hashSecret(secret)}\n`);
    });

  const collect = (value: string, previous: string[]) => [...previous, value];
  gateway
    .command('add-device')
    .description('Add a device to a credentials file (created if missing), with a hashed secret and access rules')
    .requiredOption('--credentials <file>', 'the credentials file (YAML), as named by mqtt.auth.credentialsFile')
    .requiredOption('--id <id>', 'device id: its MQTT username and client id (no "+", "#", "/")')
    .option('--profile <name>', 'a profile of the file whose publish/subscribe rules apply')
    .option('--attribute <name=value>', 'substituted for {name} in rules, e.g. container=Y01 (repeatable)', collect, [])
    .option('--publish <filter>', 'topic filter the device may publish to; {id} and {attributes} substituted (repeatable)', collect, [])
    .option('--subscribe <filter>', 'topic filter the device may subscribe to (repeatable)', collect, [])
    .option('--certificate-cn <name>', 'subject CN of the TLS client certificate that identifies the device')
    .option('--secret-stdin', 'read the secret from standard input (otherwise one is generated and printed once)')
    .option('--certificate-only', 'no secret: the device authenticates with its TLS client certificate (--certificate-cn)')
    .addHelpText(
      'after',
      '\nExample: portcall gateway add-device --credentials config/aurora-devices.yaml \\\n' +
        '           --id Y01-reefer --profile reefer --attribute container=Y01',
    )
    .action(
      async (options: {
        credentials: string;
        id: string;
        profile?: string;
        attribute: string[];
        publish: string[];
        subscribe: string[];
        certificateCn?: string;
        secretStdin?: boolean;
        certificateOnly?: boolean;
      }) => {
        if (options.certificateOnly && options.certificateCn === undefined) {
          throw new PortcallError('USAGE', '--certificate-only needs --certificate-cn');
        }
        const { addDevice, readSecret } = await import('./gateway-credentials.js');
        const secret = await readSecret(options, process.stdin);
        const { generatedSecret } = await addDevice({
          credentials: options.credentials,
          id: options.id,
          ...(options.profile === undefined ? {} : { profile: options.profile }),
          attribute: options.attribute,
          publish: options.publish,
          subscribe: options.subscribe,
          ...(options.certificateCn === undefined ? {} : { certificateCommonName: options.certificateCn }),
          ...(secret === undefined ? {} : { secret }),
          certificateOnly: options.certificateOnly === true,
        });
        process.stdout.write(`added ${options.id} to ${options.credentials}\n`);
        if (generatedSecret !== undefined) {
          process.stdout.write(`secret (shown once, give it to the device): ${generatedSecret}\n`);
        }
      },
    );

  program
    .command('demo')
    .description(
      'Run the voyage of the product brief on this machine: ship AURORA and the shore sites TOKYO, SINGAPORE, SYDNEY and HQ as real processes, the emulated fleet, links following the voyage, faults, and a verification at the end. --thin runs the small demo instead: emulated reefers → one ship gateway → one shore site',
    )
    .option('--thin', 'the small demo: one ship, one shore, N reefers (the options below marked [thin])')
    .option('--acceleration <x>', 'voyage: simulated seconds per wall-clock second (30,000: the 18.5 days, port calls included, in about 2 minutes; 10,000 took 3.5)', positiveNumber('--acceleration'), 30_000)
    .option('--no-faults', 'voyage: leave out the scenario\'s faults (the voyage\'s: kill -9 of the ship at sea, two dropped transfers at Singapore)')
    .option('--scenario <file>', 'voyage: a scenario YAML instead of the voyage of DESIGN.md (one ship; its links name the demo\'s sites TOKYO, SINGAPORE, SYDNEY, HQ; see docs/DEVICES.md)')
    .option('--exit', 'voyage: exit after the verification (code 0 when it holds) instead of keeping the sites up')
    .option('--shore-port <port>', '[thin] HTTP port of the shore site (0 = any free port)', integer('--shore-port', 0, 65535), 8080)
    .option('--mqtt-port <port>', '[thin] MQTT port of the ship gateway (0 = any free port)', integer('--mqtt-port', 0, 65535), 1884)
    .option('--edge-http-port <port>', '[thin] HTTP port of the ship site (0 = any free port)', integer('--edge-http-port', 0, 65535), 8081)
    .option('--containers <n>', '[thin] number of emulated reefer containers', integer('--containers', 1, 10_000), 10)
    .option('--interval-ms <ms>', '[thin] time between readings of one container', integer('--interval-ms', 10, 3_600_000), 1000)
    .option('--duration-s <s>', 'stop by itself after this many seconds', positiveNumber('--duration-s'))
    .option('--data-dir <dir>', 'keep the sites\' data here (default: a temporary directory, removed at exit)')
    .option('--kafka', 'run the shore site (voyage: the shore sites without a gateway, TOKYO and HQ) on a real Apache Kafka broker started for the demo')
    .option('--kafka-bootstrap <host:port>', 'voyage, with --kafka: use this running broker instead of starting one')
    .option('--link-latency-ms <ms>', '[thin] put the fault proxy between ship and shore with this one-way delay', integer('--link-latency-ms', 0, 60_000))
    .option('--link-bandwidth-bps <bits>', '[thin] and this link rate in bits per second (the ship caps itself just under it)', integer('--link-bandwidth-bps', 1000, 10_000_000_000))
    .option('--link-flaps <phases>', '[thin] and this repeating schedule, e.g. up:60s,down:15s,stall:5s')
    .action(
      async (options: {
        shorePort: number;
        mqttPort: number;
        edgeHttpPort: number;
        containers: number;
        intervalMs: number;
        durationS?: number;
        dataDir?: string;
        kafka?: boolean;
        linkLatencyMs?: number;
        linkBandwidthBps?: number;
        linkFlaps?: string;
        thin?: boolean;
        acceleration: number;
        faults: boolean;
        scenario?: string;
        exit?: boolean;
        kafkaBootstrap?: string;
      }) => {
        if (options.thin !== true) {
          const { runVoyage } = await import('./voyage.js');
          const { loadScenarioFile } = await import('../devices/fleet/index.js');
          let scenario;
          try {
            scenario = options.scenario === undefined ? undefined : loadScenarioFile(options.scenario);
          } catch (error) {
            throw new PortcallError('BAD_SCENARIO', (error as Error).message);
          }
          const voyage = await runVoyage({
            acceleration: options.acceleration,
            faults: options.faults,
            out: process.stdout,
            ...(scenario === undefined ? {} : { scenario }),
            ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
            ...(options.kafka === true ? { kafka: options.kafkaBootstrap === undefined ? {} : { bootstrap: options.kafkaBootstrap } } : {}),
          });
          let interrupted = false;
          const stopping = untilSignalled(async () => {
            interrupted = true;
            await voyage.stop();
          });
          const report = await Promise.race([voyage.done, stopping.then(() => undefined)]);
          if (interrupted || report === undefined) return;
          process.exitCode = report.ok ? 0 : 1;
          if (options.exit === true) {
            await voyage.stop();
            process.exit();
          }
          process.stdout.write('\nThe sites keep running for a look (URLs above); Ctrl-C stops them.\n');
          await stopping;
          return;
        }
        const { runDemo } = await import('./demo.js');
        let link;
        if (options.linkLatencyMs !== undefined || options.linkBandwidthBps !== undefined || options.linkFlaps !== undefined) {
          const { parseFlaps } = await import('../tools/fault-proxy/index.js');
          let flaps;
          try {
            flaps = options.linkFlaps === undefined ? undefined : parseFlaps(options.linkFlaps);
          } catch (error) {
            throw new InvalidArgumentError((error as Error).message);
          }
          link = {
            latencyMs: options.linkLatencyMs ?? 0,
            bandwidthBytesPerSecond: options.linkBandwidthBps === undefined ? undefined : options.linkBandwidthBps / 8,
            flaps,
          };
        }
        const logFile = join(tmpdir(), `portcall-demo-${process.pid}.log`);
        const demo = await runDemo({
          ...options,
          durationS: options.durationS,
          dataDir: options.dataDir,
          kafka: options.kafka === true,
          ...(link === undefined ? {} : { link }),
          logger: createLogger({ file: logFile }),
          logFile,
          out: process.stdout,
        });
        if (options.durationS !== undefined) {
          await new Promise((resolve) => setTimeout(resolve, options.durationS! * 1000));
          await demo.stop();
          return;
        }
        await untilSignalled(() => demo.stop());
      },
    );

  program
    .command('bench')
    .description('Run named benchmark scenarios; prints a table (or JSON lines) with the baseline measured in the same run')
    .argument('[scenario...]', 'scenario names, or "all"', ['all'])
    .option('--json', 'print one JSON object per figure instead of a table')
    .option('--scale <factor>', 'scale the amount of work (1 = default)', positiveNumber('--scale'), 1)
    .option('--list', 'list the scenarios and exit')
    .addHelpText(
      'after',
      '\ningest reads these from the environment (docs/GATEWAY.md, "Measured"):\n' +
        '  PORTCALL_INGEST_PACED_RUNS=5                paced latency runs per broker, taking turns; the run\n' +
        '                                              with the median p99 reported (1-9)\n' +
        '  PORTCALL_INGEST_PACED_RATE=80000            only the latency, both brokers at this many msg/s\n' +
        '                                              (1000-1000000) instead of half of each one\'s maximum\n' +
        '\nshore-kafka reads these from the environment (docs/KAFKA.md, "Performance"):\n' +
        '  PORTCALL_SHORE_KAFKA_PARTS=endpoint,link    only those parts (producer-performance, keyed-headers,\n' +
        '                                              transactions, endpoint, link, sites, replicate)\n' +
        '  PORTCALL_SHORE_KAFKA_ENDPOINT_RUNS=3        endpoint and link runs, median reported (1-9)\n' +
        '  PORTCALL_SHORE_KAFKA_CONTAINERS=5000        containers the records spread over (default 1000)\n' +
        '  PORTCALL_SHORE_KAFKA_THREADS=1              CPU of each process by thread group\n' +
        '  PORTCALL_SHORE_KAFKA_WIRE=1                 senders use wire format 1 (default 2)\n' +
        '  PORTCALL_SHORE_KAFKA_COMPRESSION=none       batches the shore writes: lz4 (default), gzip, none\n' +
        '  PORTCALL_SHORE_KAFKA_CPU_PROFILE_DIR=DIR    each shore started writes a V8 CPU profile into DIR\n',
    )
    .action(async (names: string[], options: { json?: boolean; scale: number; list?: boolean }) => {
      const { SCENARIOS, formatJsonLines, formatTable } = await import('../bench/index.js');
      if (options.list) {
        for (const scenario of SCENARIOS) process.stdout.write(`${scenario.name.padEnd(16)} ${scenario.description}\n`);
        return;
      }
      const selected = names.includes('all') ? [...SCENARIOS] : names.map((name) => {
        const scenario = SCENARIOS.find((candidate) => candidate.name === name);
        if (scenario === undefined) {
          throw new PortcallError('USAGE', `unknown scenario "${name}"; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
        }
        return scenario;
      });
      const figures = [];
      for (const scenario of selected) {
        figures.push(
          ...(await scenario.run({ scale: options.scale, progress: (line) => process.stderr.write(`${line}\n`) })),
        );
      }
      process.stdout.write(`${options.json ? formatJsonLines(figures) : formatTable(figures)}\n`);
    });

  program
    .command('kafka')
    .description('Start a single-node Apache Kafka (KRaft) on free loopback ports for local runs; Ctrl-C stops it')
    .option('--heap-mb <mb>', 'JVM heap of the broker', integer('--heap-mb', 128, 16384), 512)
    .action(async (options: { heapMb: number }) => {
      const { runKafkaCommand } = await import('../tools/kafka/main.js');
      await runKafkaCommand({ heapMb: options.heapMb });
    });

  registerLogCommand(program);
  registerProxyCommand(program);
  registerAccessCommand(program);
  registerVerifyCommand(program);
  registerStatusCommand(program);
  registerChaosCommand(program);

  return program;
}

