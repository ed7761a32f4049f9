import { brokerExited, readLogTail, startKafkaBroker } from './broker.js';
import { ensureKafkaJars } from './jars.js';
import { KAFKA_VERSION } from './version.js';

function progress(line: string): void {
  process.stderr.write(`kafka: ${line}\n`);
}

/**
 * `portcall kafka`: a throwaway broker for a developer's terminal. It runs until Ctrl-C or
 * SIGTERM and then shuts down cleanly, so the temp data dir goes with it. If the JVM dies on
 * its own the command fails instead of sitting there advertising a dead address.
 */
export async function runKafkaCommand(opts: { heapMb?: number }): Promise<void> {
  await ensureKafkaJars({ onProgress: progress });
  const broker = await startKafkaBroker({ heapMb: opts.heapMb, onProgress: progress });
  process.stdout.write(
    `Kafka ${KAFKA_VERSION} is up at ${broker.bootstrap} (pid ${broker.pid}, data in ${broker.dataDir}). Ctrl-C stops it.\n`,
  );

  const listeners: Array<[NodeJS.Signals, () => void]> = [];
  const outcome = await new Promise<{ signal: NodeJS.Signals } | { crashed: string }>((resolveOutcome) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const listener = (): void => resolveOutcome({ signal });
      listeners.push([signal, listener]);
      process.once(signal, listener);
    }
    void brokerExited(broker).then(({ exitCode, signal }) =>
      resolveOutcome({ crashed: signal ?? `exit code ${String(exitCode)}` }),
    );
  });
  // A second Ctrl-C during the shutdown below then kills us, and the broker with us.
  for (const [signal, listener] of listeners) process.removeListener(signal, listener);

  if ('crashed' in outcome) {
    // stop() deletes the temp data dir and the log with it, so keep the end of the log first.
    const tail = await readLogTail(broker.logFile);
    await broker.stop();
    throw new Error(`Kafka broker exited unexpectedly (${outcome.crashed}). Last log lines:\n${tail}`);
  }
  progress(`${outcome.signal} received, stopping the broker (up to 15 s)`);
  await broker.stop();
  progress('stopped');
}
