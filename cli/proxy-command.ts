/**
 * `portcall proxy`: the fault-injecting TCP proxy (tools/fault-proxy) on its own, to put a
 * ship's link between a forwarder and a shore site by hand or in a demo:
 *
 *   portcall proxy --target 127.0.0.1:8080 --listen 127.0.0.1:9080 \
 *     --latency-ms 300 --bandwidth-bps 2000000 --flaps up:60s,down:15s
 *
 * Only the registration loads with the command line; the proxy is imported when it runs.
 */
import { InvalidArgumentError, type Command } from 'commander';

function hostPort(name: string) {
  return (raw: string): { host: string; port: number } => {
    const match = /^([^:\s]+):(\d{1,5})$/.exec(raw);
    const port = Number(match?.[2]);
    if (match === null || port > 65535) throw new InvalidArgumentError(`${name} must be host:port, e.g. 127.0.0.1:8080`);
    return { host: match[1]!, port };
  };
}

function nonNegative(name: string) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) throw new InvalidArgumentError(`${name} must be a number, 0 or more`);
    return value;
  };
}

function byteRange(raw: string): { minBytes: number; maxBytes: number } {
  const match = /^(\d+)(?:-(\d+))?$/.exec(raw);
  if (match === null) throw new InvalidArgumentError('--reset-every-kb must be N or MIN-MAX kilobytes, e.g. 200-400');
  const min = Number(match[1]) * 1024;
  const max = Number(match[2] ?? match[1]) * 1024;
  if (min <= 0 || max < min) throw new InvalidArgumentError('--reset-every-kb: MIN must be above 0 and at most MAX');
  return { minBytes: min, maxBytes: max };
}

export function registerProxyCommand(program: Command): void {
  program
    .command('proxy')
    .description('Run a fault-injecting TCP proxy (latency, bandwidth, stalls, resets, flaps) in front of a site')
    .requiredOption('--target <host:port>', 'where connections go, e.g. the shore site\'s HTTP port', hostPort('--target'))
    .option('--listen <host:port>', 'where the proxy listens (port 0 = any free port)', hostPort('--listen'), { host: '127.0.0.1', port: 0 })
    .option('--latency-ms <ms>', 'one-way delay each direction (RTT is twice this)', nonNegative('--latency-ms'), 0)
    .option('--jitter-ms <ms>', 'extra random one-way delay, up to this much', nonNegative('--jitter-ms'), 0)
    .option('--bandwidth-bps <bits>', 'link rate in bits per second, each direction (0 = unlimited)', nonNegative('--bandwidth-bps'), 0)
    .option('--reset-every-kb <min-max>', 'reset every connection after a random number of kilobytes in this range', byteRange)
    .option('--flaps <phases>', 'repeating phases, e.g. up:60s,down:15s,stall:5s')
    .option('--seed <n>', 'seed of the random choices', nonNegative('--seed'), 1)
    .addHelpText('after', '\nExample (a 2 Mbit/s satellite link with 600 ms RTT in front of a shore site):\n  portcall proxy --target 127.0.0.1:8080 --listen 127.0.0.1:9080 --latency-ms 300 --bandwidth-bps 2000000')
    .action(
      async (options: {
        target: { host: string; port: number };
        listen: { host: string; port: number };
        latencyMs: number;
        jitterMs: number;
        bandwidthBps: number;
        resetEveryKb?: { minBytes: number; maxBytes: number };
        flaps?: string;
        seed: number;
      }) => {
        const { FaultProxy, parseFlaps } = await import('../tools/fault-proxy/index.js');
        let flaps;
        try {
          flaps = options.flaps === undefined ? undefined : parseFlaps(options.flaps);
        } catch (error) {
          throw new InvalidArgumentError((error as Error).message);
        }
        const proxy = await FaultProxy.start({
          targetHost: options.target.host,
          targetPort: options.target.port,
          listenHost: options.listen.host,
          listenPort: options.listen.port,
          latencyMs: options.latencyMs,
          jitterMs: options.jitterMs,
          ...(options.bandwidthBps > 0 ? { bandwidthBytesPerSecond: options.bandwidthBps / 8 } : {}),
          ...(options.resetEveryKb === undefined ? {} : { resetEvery: options.resetEveryKb }),
          seed: options.seed,
        });
        if (flaps !== undefined) proxy.flap(flaps);
        // Listening for the signal before saying it listens: a SIGTERM right after that line must stop it gracefully.
        const stopped = new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        process.stdout.write(`proxy listening on ${proxy.host}:${proxy.port} → ${options.target.host}:${options.target.port}. Ctrl-C stops it.\n`);
        const status = setInterval(() => {
          const stats = proxy.stats();
          process.stderr.write(
            `connections ${stats.openConnections} open / ${stats.connections} total, ${stats.bytesUp} B up, ${stats.bytesDown} B down, ${stats.resets} resets, ${stats.stalls} stalls\n`,
          );
        }, 5000);
        await stopped;
        clearInterval(status);
        await proxy.close();
      },
    );
}
