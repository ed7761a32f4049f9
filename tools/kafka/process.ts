import { spawn } from 'node:child_process';

import { INSTALL_HINT, EXTERNAL_BROKER_HINT, KafkaUnavailableError } from './errors.js';

export interface CommandResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines of stdout and stderr interleaved, kept for error messages. */
  outputTail: string[];
}

export interface RunCommandOptions {
  cwd?: string;
  onLine?: (line: string) => void;
  tailLines?: number;
}

/**
 * Runs a program with an argument vector (never through a shell, so paths with spaces or
 * quotes cannot change the command) and resolves with how it ended. Rejects only when the
 * program could not be started at all, which is how a missing binary (ENOENT) shows up.
 */
export function runCommand(command: string, args: readonly string[], opts: RunCommandOptions = {}): Promise<CommandResult> {
  const tailLines = opts.tailLines ?? 40;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const outputTail: string[] = [];
    const pending = { stdout: '', stderr: '' };
    const emit = (line: string): void => {
      // Debian's mvn wrapper emits ANSI resets even in batch mode; they would garble messages.
      // eslint-disable-next-line no-control-regex -- matching the ESC byte is the point
      const clean = line.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r$/, '');
      if (clean.trim() === '') return;
      outputTail.push(clean);
      if (outputTail.length > tailLines) outputTail.shift();
      opts.onLine?.(clean);
    };
    const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer): void => {
      const lines = (pending[stream] + chunk.toString('utf8')).split('\n');
      pending[stream] = lines.pop() ?? '';
      for (const line of lines) emit(line);
    };
    child.stdout.on('data', onData('stdout'));
    child.stderr.on('data', onData('stderr'));
    child.once('error', reject);
    child.once('close', (exitCode, signal) => {
      emit(pending.stdout);
      emit(pending.stderr);
      resolve({ exitCode, signal, outputTail });
    });
  });
}

function isMissingBinary(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Java 8 can still start a 3.9 broker, but it is deprecated there and untested here. */
const MIN_JAVA_MAJOR = 11;

/** Parses `openjdk version "17.0.15"` and the pre-9 form `java version "1.8.0_392"`. */
export function parseJavaMajor(versionOutput: string): number | null {
  const match = /version "(\d+)(?:\.(\d+))?/.exec(versionOutput);
  if (!match?.[1]) return null;
  const first = Number(match[1]);
  return first === 1 && match[2] !== undefined ? Number(match[2]) : first;
}

export interface JavaRuntime {
  readonly major: number;
  /** What `java -version` printed: names the exact build (a class-data archive is valid for one). */
  readonly description: string;
}

/** Throws `java-missing` unless a usable `java` is on PATH; returns its version. */
export async function requireJava(): Promise<JavaRuntime> {
  let result: CommandResult;
  try {
    result = await runCommand('java', ['-version']);
  } catch (err) {
    if (isMissingBinary(err)) {
      throw new KafkaUnavailableError(
        'java-missing',
        `Kafka needs a Java runtime, but \`java\` is not on PATH. Install one with \`${INSTALL_HINT}\`, ${EXTERNAL_BROKER_HINT}.`,
        { cause: err },
      );
    }
    throw new KafkaUnavailableError('java-missing', `\`java -version\` could not be run: ${String(err)}`, { cause: err });
  }
  const major = parseJavaMajor(result.outputTail.join('\n'));
  if (result.exitCode !== 0 || major === null) {
    throw new KafkaUnavailableError(
      'java-missing',
      `\`java -version\` failed (exit ${String(result.exitCode)}): ${result.outputTail.join(' | ')}. Install a working JRE with \`${INSTALL_HINT}\`.`,
    );
  }
  if (major < MIN_JAVA_MAJOR) {
    throw new KafkaUnavailableError(
      'java-missing',
      `Kafka needs Java ${MIN_JAVA_MAJOR} or newer, but \`java\` on PATH is Java ${major}. Install Java 17 with \`${INSTALL_HINT}\` and put it first on PATH.`,
    );
  }
  return { major, description: result.outputTail.join('\n') };
}

/** Throws `maven-missing` unless `mvn` runs; Maven is only needed for the one-time jar fetch. */
export async function requireMaven(): Promise<void> {
  let result: CommandResult;
  try {
    result = await runCommand('mvn', ['-v']);
  } catch (err) {
    if (isMissingBinary(err)) {
      throw new KafkaUnavailableError(
        'maven-missing',
        `Fetching the Kafka jars from Maven Central needs Maven, but \`mvn\` is not on PATH. Install it with \`${INSTALL_HINT}\`, ${EXTERNAL_BROKER_HINT}.`,
        { cause: err },
      );
    }
    throw new KafkaUnavailableError('maven-missing', `\`mvn -v\` could not be run: ${String(err)}`, { cause: err });
  }
  if (result.exitCode !== 0) {
    throw new KafkaUnavailableError(
      'maven-missing',
      `\`mvn -v\` failed (exit ${String(result.exitCode)}): ${result.outputTail.join(' | ')}. Reinstall with \`${INSTALL_HINT}\`.`,
    );
  }
}

export async function javaAndMavenAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    await requireJava();
    await requireMaven();
    return { ok: true };
  } catch (err) {
    if (err instanceof KafkaUnavailableError) return { ok: false, reason: err.message };
    throw err;
  }
}
