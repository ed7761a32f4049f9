/**
 * The broker JVM's class-data archive (tools/kafka/class-archive.ts): which options a start
 * gets, and which files a start leaves behind, without a JVM. The JVM's side (it writes the
 * archive at a clean exit and maps it at the next start) is in kafka-broker.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerClassArchive } from '../tools/kafka/index.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function libsDir(): string {
  const cache = mkdtempSync(join(tmpdir(), 'portcall-class-archive-'));
  dirs.push(cache);
  mkdirSync(join(cache, 'libs'));
  return join(cache, 'libs');
}

/** What a JVM run with these options would leave: the file ArchiveClassesAtExit names. */
function writeAsJvm(options: readonly string[]): string {
  const option = options.find((entry) => entry.startsWith('-XX:ArchiveClassesAtExit='));
  if (option === undefined) throw new Error(`no archive to write in ${options.join(' ')}`);
  const path = option.slice('-XX:ArchiveClassesAtExit='.length);
  writeFileSync(path, 'classes');
  return path;
}

describe('broker class archive', () => {
  it('is written by the first start that exits by itself and used by every start after it', () => {
    const libs = libsDir();
    const archive = BrokerClassArchive.for(libs, 'openjdk version "17.0.15"');
    expect(archive.readOptions()).toEqual([]);

    // Killed while writing: the partial file goes, and the next start writes again.
    const killed = archive.brokerStart();
    const partial = writeAsJvm(killed.jvmOptions);
    killed.settle(false);
    expect(existsSync(partial)).toBe(false);
    expect(existsSync(archive.path)).toBe(false);

    // Two at once: each writes its own file; whichever is renamed last is the archive.
    const first = archive.brokerStart();
    const second = archive.brokerStart();
    const firstFile = writeAsJvm(first.jvmOptions);
    const secondFile = writeAsJvm(second.jvmOptions);
    expect(firstFile).not.toBe(secondFile);
    first.settle(true);
    second.settle(true);
    expect(existsSync(archive.path)).toBe(true);
    expect(readdirSync(join(libs, '..')).sort()).toEqual([archive.path.split('/').pop(), 'libs'].sort());

    expect(archive.brokerStart().jvmOptions).toEqual([`-XX:SharedArchiveFile=${archive.path}`]);
    expect(archive.readOptions()).toEqual([`-XX:SharedArchiveFile=${archive.path}`]);
  });

  it('is kept per JVM build, and a new build’s archive replaces the old one', () => {
    const libs = libsDir();
    const old = BrokerClassArchive.for(libs, 'openjdk version "17.0.14"');
    const current = BrokerClassArchive.for(libs, 'openjdk version "17.0.15"');
    expect(current.path).not.toBe(old.path);
    const writeOld = old.brokerStart();
    writeAsJvm(writeOld.jvmOptions);
    writeOld.settle(true);

    const writeCurrent = current.brokerStart();
    expect(writeCurrent.jvmOptions[0]).toMatch(/^-XX:ArchiveClassesAtExit=/);
    writeAsJvm(writeCurrent.jvmOptions);
    writeCurrent.settle(true);
    expect(existsSync(current.path)).toBe(true);
    expect(existsSync(old.path)).toBe(false);
  });
});
