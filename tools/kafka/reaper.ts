import { rmSync } from 'node:fs';

/**
 * Brokers must never outlive the process that started them: an orphaned JVM keeps half a
 * gigabyte and two ports, and the next test run silently talks to it. Each live broker
 * registers here, and the parent's exit kills it by PID.
 */
interface Reapable {
  pid: () => number | undefined;
  /** Removed after the kill, best effort; only set for data dirs we created ourselves. */
  ownedDir: string | undefined;
}

const live = new Set<Reapable>();
let installed = false;

function reapAll(): void {
  for (const entry of live) {
    const pid = entry.pid();
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (entry.ownedDir !== undefined) {
      try {
        rmSync(entry.ownedDir, { recursive: true, force: true });
      } catch {
        // The JVM may still be closing files; a leftover temp dir is harmless.
      }
    }
  }
  live.clear();
}

/**
 * Node skips 'exit' listeners when a signal kills it by default, so we also listen for the
 * usual termination signals. If something else in the process handles the signal (the CLI's
 * graceful stop, vitest), we stay out of its way and rely on its eventual exit; if we are the
 * only listener, we reap and then re-raise so the process still dies the way it would have.
 */
function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return;
  reapAll();
  uninstallSignalHandlers();
  process.kill(process.pid, signal);
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const signalHandlers = new Map<NodeJS.Signals, () => void>();

function uninstallSignalHandlers(): void {
  for (const [signal, handler] of signalHandlers) process.removeListener(signal, handler);
  signalHandlers.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', reapAll);
  for (const signal of SIGNALS) {
    const handler = (): void => onSignal(signal);
    signalHandlers.set(signal, handler);
    process.on(signal, handler);
  }
}

export function registerForReaping(entry: Reapable): () => void {
  install();
  live.add(entry);
  return () => {
    live.delete(entry);
  };
}
