import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

import { KafkaUnavailableError } from './errors.js';
import { requireJava, requireMaven, runCommand } from './process.js';
import {
  KAFKA_SCALA_VERSION,
  KAFKA_VERSION,
  MAVEN_DEPENDENCY_PLUGIN,
  RELOAD4J_VERSION,
  SLF4J_VERSION,
} from './version.js';

/** Written as the last step, so its presence means every jar beside it is complete. */
const COMPLETE_MARKER = '.portcall-complete.json';
const LIBS_DIR = 'libs';
const TMP_PREFIX = '.libs-tmp-';

/**
 * Outside the repository so `git clean`, fresh clones and worktrees share one download, and
 * versioned so bumping KAFKA_VERSION never mixes jars of two releases on one classpath.
 */
export function kafkaCacheDir(): string {
  const explicit = process.env.PORTCALL_CACHE_DIR?.trim();
  const xdg = process.env.XDG_CACHE_HOME?.trim();
  // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
  const base = explicit ? resolve(explicit) : xdg && isAbsolute(xdg) ? join(xdg, 'portcall') : join(homedir(), '.cache', 'portcall');
  return join(base, `kafka-${KAFKA_VERSION}`);
}

function kafkaLibsDir(): string {
  return join(kafkaCacheDir(), LIBS_DIR);
}

function isComplete(libsDir: string): boolean {
  return existsSync(join(libsDir, COMPLETE_MARKER));
}

/**
 * kafka-tools brings ProducerPerformance for the benchmark, but also connect-runtime and with
 * it Jetty, Jersey and HK2 (42 more jars) that no tool we run touches, so it is excluded.
 * kafka_2.13 itself declares no slf4j binding (kafka-tools only happens to), and without one
 * the broker logs nothing at all; the versions match the libs/ of the official 3.9 tarball.
 */
export function kafkaPomXml(): string {
  const dep = (groupId: string, artifactId: string, version: string, extra = ''): string =>
    `    <dependency><groupId>${groupId}</groupId><artifactId>${artifactId}</artifactId><version>${version}</version>${extra}</dependency>`;
  const noConnect =
    '<exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion></exclusions>';
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<project xmlns="http://maven.apache.org/POM/4.0.0">',
    '  <modelVersion>4.0.0</modelVersion>',
    '  <groupId>local.portcall</groupId>',
    '  <artifactId>kafka-classpath</artifactId>',
    '  <version>1</version>',
    '  <packaging>pom</packaging>',
    '  <dependencies>',
    dep('org.apache.kafka', `kafka_${KAFKA_SCALA_VERSION}`, KAFKA_VERSION),
    dep('org.apache.kafka', 'kafka-tools', KAFKA_VERSION, noConnect),
    dep('org.apache.kafka', 'kafka-storage', KAFKA_VERSION),
    dep('org.slf4j', 'slf4j-reload4j', SLF4J_VERSION),
    dep('ch.qos.reload4j', 'reload4j', RELOAD4J_VERSION),
    '  </dependencies>',
    '</project>',
    '',
  ].join('\n');
}

/**
 * Maven logs a "Downloading" and a "Downloaded" line for every pom and jar, several hundred on
 * a fresh machine; one short line per downloaded jar shows progress without the noise.
 */
export function progressLineFromMaven(rawLine: string): string | null {
  const line = rawLine.replace(/^\[INFO\] /, '');
  const downloaded = /^Downloaded from [^:]+: \S*\/([^/\s]+\.jar)(?: \((.*)\))?$/.exec(line);
  if (downloaded) return `downloaded ${downloaded[1]}${downloaded[2] ? ` (${downloaded[2]})` : ''}`;
  if (line.startsWith('[WARNING]') || line.startsWith('[ERROR]')) return line;
  return null;
}

function pidIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Temp dirs of fetches whose process died (Ctrl-C, OOM) would otherwise pile up forever. */
async function removeAbandonedTempDirs(cacheDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(cacheDir);
  } catch {
    return;
  }
  for (const entry of entries) {
    if (!entry.startsWith(TMP_PREFIX)) continue;
    const pid = Number(entry.slice(TMP_PREFIX.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && !pidIsAlive(pid)) {
      await rm(join(cacheDir, entry), { recursive: true, force: true });
    }
  }
}

/**
 * Returns a directory whose `*` is the complete Kafka classpath, fetching it from Maven
 * Central on first use. The jars land in a temp sibling that is renamed into place only once
 * complete, so an interrupted or concurrent fetch never leaves a half classpath behind.
 */
export async function ensureKafkaJars(opts: { onProgress?: (line: string) => void } = {}): Promise<string> {
  const libsDir = kafkaLibsDir();
  if (isComplete(libsDir)) return libsDir;

  const progress = opts.onProgress ?? ((): void => {});
  await requireJava();
  await requireMaven();

  const cacheDir = kafkaCacheDir();
  await mkdir(cacheDir, { recursive: true });
  await removeAbandonedTempDirs(cacheDir);

  const stagingDir = join(cacheDir, `${TMP_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  const pomDir = await mkdtemp(join(tmpdir(), 'portcall-kafka-pom-'));
  const startedAtMs = Date.now();
  try {
    await writeFile(join(pomDir, 'pom.xml'), kafkaPomXml());
    progress(`fetching Kafka ${KAFKA_VERSION} jars from Maven Central into ${libsDir} (first run only, about 50 MB)`);
    const result = await runCommand(
      'mvn',
      [
        '-B',
        '-Dstyle.color=never',
        '-f',
        join(pomDir, 'pom.xml'),
        `${MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies`,
        `-DoutputDirectory=${stagingDir}`,
        '-DincludeScope=runtime',
      ],
      {
        cwd: pomDir,
        onLine: (line) => {
          const shown = progressLineFromMaven(line);
          if (shown !== null) progress(shown);
        },
      },
    );
    if (result.exitCode !== 0) {
      throw new KafkaUnavailableError(
        'fetch-failed',
        `mvn could not fetch the Kafka ${KAFKA_VERSION} jars from Maven Central (exit ${String(result.exitCode ?? result.signal)}). ` +
          'Check that https://repo.maven.apache.org/maven2/ is reachable (or the mirror in ~/.m2/settings.xml, if any); ' +
          `then run again. Last Maven output:\n${result.outputTail.join('\n')}`,
      );
    }
    const jars = (await readdir(stagingDir)).filter((name) => name.endsWith('.jar'));
    if (!jars.some((name) => name.startsWith(`kafka_${KAFKA_SCALA_VERSION}-`))) {
      throw new KafkaUnavailableError(
        'fetch-failed',
        `mvn finished but ${stagingDir} holds no kafka_${KAFKA_SCALA_VERSION} jar; Maven output:\n${result.outputTail.join('\n')}`,
      );
    }
    await writeFile(
      join(stagingDir, COMPLETE_MARKER),
      `${JSON.stringify({ kafkaVersion: KAFKA_VERSION, jarCount: jars.length, fetchedAt: new Date().toISOString() }, null, 2)}\n`,
    );
    await publish(stagingDir, libsDir);
    progress(`Kafka jars ready: ${jars.length} jars in ${libsDir} (${((Date.now() - startedAtMs) / 1000).toFixed(1)} s)`);
    return libsDir;
  } finally {
    await rm(pomDir, { recursive: true, force: true });
    await rm(stagingDir, { recursive: true, force: true });
  }
}

async function publish(stagingDir: string, libsDir: string): Promise<void> {
  try {
    await rename(stagingDir, libsDir);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
  // A concurrent fetch won the rename; its copy is as good as ours.
  if (isComplete(libsDir)) return;
  // Only a hand-edited cache gets here: the rename above never publishes a partial dir.
  await rm(libsDir, { recursive: true, force: true });
  await rename(stagingDir, libsDir);
}
