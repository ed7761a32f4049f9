/**
 * The whole system of the chaos run, as real processes on loopback:
 *
 *   fleet (MQTT, QoS 1) → AURORA (portcall edge: gateway, SQLite log on a small tmpfs, links)
 *     → TOKYO, SINGAPORE (portcall shore, SQLite; replicating both ways)
 *     → HQ (portcall shore on a real single-node KRaft Kafka broker; a leaf: Kafka sites do not forward)
 *
 * Every link goes through its own fault proxy. The system can inject each fault of the
 * schedule: kill -9 and restart a site, flap, reset or stall a link, fill the ship's disk,
 * crash and restart the Kafka broker; and it knows when everything has been forwarded.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { FaultProxy } from '../fault-proxy/index.js';
import { startKafkaBroker, type KafkaBroker } from '../kafka/index.js';
import { freeLoopbackPort } from '../net/index.js';
import { ChaosSite } from './site-process.js';

export const SHIP = 'AURORA';
export const PORTS = ['TOKYO', 'SINGAPORE'] as const;
export const HQ = 'HQ';
export const SITES = [SHIP, ...PORTS, HQ] as const;
/** Directed links: the ship to both ports, the ports both ways, each port to headquarters. */
export const LINKS: readonly (readonly [string, string])[] = [
  [SHIP, 'TOKYO'],
  [SHIP, 'SINGAPORE'],
  ['TOKYO', 'SINGAPORE'],
  ['SINGAPORE', 'TOKYO'],
  ['TOKYO', HQ],
  ['SINGAPORE', HQ],
];
export const linkName = ([from, to]: readonly [string, string]) => `${from}>${to}`;

/** Links on one machine: notice a dead or stalled connection within seconds, batch little. */
const QUICK_LINK = { connectTimeoutMs: 2000, requestTimeoutMs: 10_000, stallTimeoutMs: 3000, retryInitialMs: 50, retryMaxMs: 1000, maxBatchAgeMs: 100 };

export interface SystemOptions {
  /** Where configurations, logs and the shore sites' data go; a temporary directory by default. */
  readonly workDir?: string;
  /** Size of the tmpfs holding the ship's log. */
  readonly shipDiskMb: number;
  /** Use this broker (host:port) instead of starting one; then the broker cannot be restarted. */
  readonly kafkaBootstrap?: string;
  readonly log: (line: string) => void;
}

export class ChaosSystem {
  readonly sites = new Map<string, ChaosSite>();
  readonly proxies = new Map<string, FaultProxy>();
  broker: KafkaBroker | undefined;
  bootstrap = '';
  readonly kafkaPrefix = `chaos${randomBytes(3).toString('hex')}`;
  /** Why the ship's disk cannot be filled (no tmpfs), or undefined when it can. */
  diskUnavailable: string | undefined;
  mqttPort = 0;
  /** Broker restarts that timed out and were tried again. */
  brokerStartFailures = 0;
  private mountPoint: string | undefined;
  private mounted = false;
  private readonly ownsWorkDir: boolean;
  readonly workDir: string;

  constructor(private readonly options: SystemOptions) {
    this.ownsWorkDir = options.workDir === undefined;
    this.workDir = options.workDir ?? mkdtempSync(join(tmpdir(), 'portcall-chaos-'));
    mkdirSync(this.workDir, { recursive: true });
  }

  get shipDataDir(): string {
    return this.mounted ? this.mountPoint! : join(this.workDir, 'ship-disk');
  }

  site(name: string): ChaosSite {
    return this.sites.get(name)!;
  }

  proxy(link: string): FaultProxy {
    return this.proxies.get(link)!;
  }

  async start(): Promise<void> {
    const log = this.options.log;
    // The ship's disk: a small tmpfs (needs root); without it the run goes on without disk faults.
    this.mountPoint = join(this.workDir, 'ship-disk');
    mkdirSync(this.mountPoint, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${this.options.shipDiskMb}m`, 'tmpfs', this.mountPoint], { stdio: 'pipe' });
      this.mounted = true;
      log(`ship disk: ${this.options.shipDiskMb} MiB tmpfs at ${this.mountPoint}`);
    } catch (error) {
      this.diskUnavailable = ((error as { stderr?: Buffer }).stderr?.toString() || (error as Error).message).trim();
      log(`ship disk: cannot mount a tmpfs (${this.diskUnavailable}); no disk-full faults this run`);
    }

    if (this.options.kafkaBootstrap !== undefined) {
      this.bootstrap = this.options.kafkaBootstrap;
      log(`kafka: using ${this.bootstrap} (not restartable by this run)`);
    } else {
      const startedAt = Date.now();
      // A JVM on a loaded two-core machine can take over a minute to serve after a crash.
      this.broker = await startKafkaBroker({ dataDir: join(this.workDir, 'kafka'), startTimeoutMs: 180_000 });
      this.bootstrap = this.broker.bootstrap;
      log(`kafka: broker up at ${this.bootstrap} in ${((Date.now() - startedAt) / 1000).toFixed(1)} s (pid ${this.broker.pid})`);
    }

    const httpPorts = new Map<string, number>();
    for (const name of SITES) httpPorts.set(name, await freeLoopbackPort());
    this.mqttPort = await freeLoopbackPort();
    for (const link of LINKS) this.proxies.set(linkName(link), await FaultProxy.start({ targetPort: httpPorts.get(link[1])! }));
    const token = (from: string, to: string) => `${from.toLowerCase()}-to-${to.toLowerCase()}-chaos-token`;

    for (const name of SITES) {
      const outgoing = LINKS.filter(([from]) => from === name).map((link) => ({ name: link[1], url: this.proxy(linkName(link)).url(), token: token(link[0], link[1]), ...QUICK_LINK }));
      const peers = LINKS.filter(([, to]) => to === name).map(([from]) => ({ site: from, token: token(from, name) }));
      const config: Record<string, unknown> = { site: name, http: { port: httpPorts.get(name)! } };
      if (name === SHIP) {
        // No disk-pressure drops: a full disk must make appends fail, never drop unforwarded records.
        Object.assign(config, { dataDir: this.shipDataDir, log: { minFreeDiskBytes: 0 }, mqtt: { port: this.mqttPort, auth: { allowAnonymous: true } }, links: outgoing });
      } else if (name === HQ) {
        Object.assign(config, {
          dataDir: this.workDir,
          log: { backend: 'kafka', kafka: { brokers: [this.bootstrap], topicPrefix: this.kafkaPrefix, partitions: 3 } },
          ingest: { peers },
          portal: { enabled: false },
        });
      } else {
        Object.assign(config, { dataDir: this.workDir, ingest: { peers }, links: outgoing, portal: { enabled: false } });
      }
      const configFile = join(this.workDir, `${name.toLowerCase()}.yaml`);
      writeFileSync(configFile, stringify(config));
      this.sites.set(name, new ChaosSite(name, name === SHIP ? 'edge' : 'shore', httpPorts.get(name)!, configFile, join(this.workDir, `${name.toLowerCase()}.log`)));
    }
    await Promise.all([...this.sites.values()].map((site) => site.start()));
    log(`sites: ${[...this.sites.values()].map((site) => `${site.name} ${site.url}`).join(', ')}; MQTT on 127.0.0.1:${this.mqttPort}`);
  }

  async killAndRestart(name: string, downMs: number): Promise<void> {
    const site = this.site(name);
    await site.kill9();
    await sleep(downMs);
    await site.start();
  }

  async flap(link: string, downMs: number): Promise<void> {
    const proxy = this.proxy(link);
    proxy.setDown();
    await sleep(downMs);
    proxy.setUp();
  }

  reset(link: string): void {
    this.proxy(link).reset();
  }

  async stall(link: string, holdMs: number): Promise<void> {
    this.proxy(link).stall(holdMs);
    await sleep(holdMs);
  }

  /** Fills the ship's tmpfs with a ballast file until it is full; `free` deletes it. */
  async fillDisk(): Promise<{ bytes: number; free: () => Promise<void> }> {
    if (!this.mounted) throw new Error(`no tmpfs for the ship's disk: ${this.diskUnavailable}`);
    const ballast = join(this.mountPoint!, 'ballast');
    const chunk = Buffer.alloc(1024 * 1024, 0x5a);
    let written = 0;
    const handle = await open(ballast, 'w');
    try {
      // Bounded: the filesystem is at most shipDiskMb, and each write takes at most 1 MiB.
      for (let i = 0; i <= this.options.shipDiskMb + 1; i += 1) {
        try {
          const { bytesWritten } = await handle.write(chunk, 0, chunk.length);
          written += bytesWritten;
          if (bytesWritten < chunk.length) break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw error;
        }
      }
      // Whatever is smaller than a MiB too.
      for (let i = 0; i < 256; i += 1) {
        try {
          const { bytesWritten } = await handle.write(chunk, 0, 4096);
          written += bytesWritten;
          if (bytesWritten === 0) break;
        } catch {
          break;
        }
      }
    } finally {
      await handle.close();
    }
    return { bytes: written, free: () => unlink(ballast) };
  }

  /** The broker crashes (kill -9), stays down, and is started again on the same data. */
  async restartKafka(downMs: number): Promise<void> {
    if (this.broker === undefined) throw new Error('the broker was given (--kafka-bootstrap); it cannot be restarted');
    this.broker.kill9();
    await sleep(downMs);
    try {
      await this.broker.restart();
    } catch (error) {
      this.brokerStartFailures += 1;
      this.options.log(`  the Kafka broker did not come back (${(error as Error).message.split('\n')[0]}); starting it again`);
      await this.broker.restart();
    }
  }

  /** Bytes used on the ship's tmpfs (its log), or undefined without one. */
  shipDiskUsedBytes(): number | undefined {
    if (!this.mounted) return undefined;
    const stats = statfsSync(this.mountPoint!);
    return (stats.blocks - stats.bfree) * stats.bsize;
  }

  /** Records each forwarding site still has to send, summed over its links; undefined if a site does not answer. */
  async pendingRecords(): Promise<number | undefined> {
    let pending = 0;
    for (const name of [SHIP, ...PORTS]) {
      try {
        const { links } = await this.site(name).getJson<{ links: { lag: { records: number }[] }[] }>('/v1/links', 5000);
        for (const link of links) for (const entry of link.lag) pending += entry.records;
      } catch {
        return undefined;
      }
    }
    return pending;
  }

  /** Stops everything it started and unmounts the tmpfs; safe to call more than once, never throws. */
  async close(keepWorkDir: boolean): Promise<void> {
    for (const site of this.sites.values()) {
      await site.stop().catch(() => undefined);
      site.close();
    }
    for (const proxy of this.proxies.values()) await proxy.close().catch(() => undefined);
    this.proxies.clear();
    if (this.broker !== undefined) await this.broker.stop().catch(() => undefined);
    this.broker = undefined;
    if (this.mounted) {
      try {
        execFileSync('umount', [this.mountPoint!], { stdio: 'pipe' });
      } catch {
        try {
          execFileSync('umount', ['-l', this.mountPoint!], { stdio: 'pipe' });
        } catch {
          // reported below by the caller's check of the mount table
        }
      }
      this.mounted = false;
    }
    if (this.ownsWorkDir && !keepWorkDir) rmSync(this.workDir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
