/**
 * Class-data sharing for the broker's JVM. A broker start parses and verifies some 5,000
 * classes, which cost about 6 CPU-seconds of a 2-core machine each time (the test suite starts
 * Kafka brokers and restarts them after kill -9 a dozen times and more). The JVM can instead
 * map them from an archive: a dynamic CDS archive, written once by a broker that exits cleanly
 * (`-XX:ArchiveClassesAtExit`) and used by every later start (`-XX:SharedArchiveFile`);
 * measured on 2026-11-23, a start then took 2.8-3.4 CPU-seconds. Nothing about the broker's
 * behaviour changes, only where its classes come from.
 *
 * Invariants:
 * - An archive is kept per Kafka version (it sits in that version's jar cache) and per JVM
 *   build (its name carries a hash of `java -version`): a JVM refuses another build's archive.
 * - An archive only becomes visible by an atomic rename, and only after the JVM that wrote it
 *   exited by itself; a JVM killed while writing leaves a temporary file, which is deleted.
 * - A missing, stale or unreadable archive costs only the saving: the JVM (`-Xshare:auto`, its
 *   default) says so in the broker's log and loads classes as usual.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

const PREFIX = 'broker-classes-';
const SUFFIX = '.jsa';
let writes = 0;

export interface ClassArchiveUse {
  /** JVM options for this start. */
  readonly jvmOptions: readonly string[];
  /** Call once the JVM has exited: keeps what it wrote (if it exited by itself) or removes it. */
  settle(exitedByItself: boolean): void;
}

export class BrokerClassArchive {
  private constructor(readonly path: string) {}

  /** The archive for brokers run from `libsDir` (a Kafka version's jars) by this JVM build. */
  static for(libsDir: string, javaDescription: string): BrokerClassArchive {
    const build = createHash('sha256').update(javaDescription).digest('hex').slice(0, 16);
    return new BrokerClassArchive(join(dirname(libsDir), `${PREFIX}${build}${SUFFIX}`));
  }

  /** Options for a command that only reads the archive (the storage format tool). */
  readOptions(): readonly string[] {
    return existsSync(this.path) ? [`-XX:SharedArchiveFile=${this.path}`] : [];
  }

  /** Options for a broker start: use the archive, or write it at the JVM's exit if there is none yet. */
  brokerStart(): ClassArchiveUse {
    if (existsSync(this.path)) return { jvmOptions: [`-XX:SharedArchiveFile=${this.path}`], settle: () => {} };
    // Brokers starting at once each write their own file; the last rename wins, and any is whole.
    const temporary = `${this.path}.${process.pid}-${(writes += 1)}.tmp`;
    return {
      jvmOptions: [`-XX:ArchiveClassesAtExit=${temporary}`],
      settle: (exitedByItself) => {
        try {
          if (exitedByItself && existsSync(temporary) && statSync(temporary).size > 0) {
            renameSync(temporary, this.path);
            this.removeOtherBuilds();
          } else {
            rmSync(temporary, { force: true });
          }
        } catch {
          // A cache dir that cannot be written only costs the saving.
          rmSync(temporary, { force: true });
        }
      },
    };
  }

  /** Archives of earlier JVM builds are never used again (about 45 MB each). */
  private removeOtherBuilds(): void {
    const dir = dirname(this.path);
    for (const name of readdirSync(dir)) {
      if (name.startsWith(PREFIX) && name.endsWith(SUFFIX) && join(dir, name) !== this.path) rmSync(join(dir, name), { force: true });
    }
  }
}
