/**
 * The uplink under faults, every hop real: a ship (`portcall edge`) forwards its log to a
 * shore (`portcall shore`) through the fault-injecting TCP proxy, both as child processes on
 * real SQLite files. Afterwards the shore must hold exactly the ship's records: the same
 * identities, offsets, times, headers and payload hashes, nothing missing, nothing twice.
 *
 * PORTCALL_UPLINK_RECORDS sets the size of the first test (default 1,000,000).
 */
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../devices/emulator/index.js';
import { FaultProxy } from '../tools/fault-proxy/index.js';
import type { PortcallProcess } from './support/portcall-process.js';
import {
  digestDifferences,
  digestLog,
  eventually,
  freeLoopbackPort,
  linkStatus,
  logFile,
  seedShipLog,
  SHORE,
  type LogDigest,
  startShip,
  startShore,
  tempDir,
  voyageRecords,
} from './support/uplink.js';

const MILLION = Number(process.env.PORTCALL_UPLINK_RECORDS ?? 1_000_000);

/** Link settings that notice a dead or stalled connection within a couple of seconds. */
const QUICK_LINK = {
  connectTimeoutMs: 3000,
  requestTimeoutMs: 30_000,
  stallTimeoutMs: 4000,
  retryInitialMs: 50,
  retryMaxMs: 1000,
};

describe('uplink under faults: exactly the origin’s records at the destination', () => {
  const processes: PortcallProcess[] = [];
  const proxies: FaultProxy[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const proxy of proxies.splice(0)) await proxy.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** The shore's log against what was seeded into the ship's. */
  async function expectSameRecords(dir: string, origin: LogDigest) {
    const destination = await digestLog(logFile(dir, SHORE), SHORE);
    expect(destination.problems).toEqual([]);
    expect(digestDifferences(origin, destination)).toEqual([]);
    expect(destination.records).toBe(origin.records);
  }

  it(`${MILLION.toLocaleString('en-US')} records through resets every few hundred kilobytes and random stalls`, { timeout: 600_000 }, async () => {
    const dir = tempDir('uplink-million');
    dirs.push(dir);
    const startedAt = Date.now();
    const origin = await seedShipLog(dir, voyageRecords({ containers: 2000 }), MILLION);
    const seeded = origin.records;
    const seededAt = Date.now();

    const shorePort = await freeLoopbackPort();
    const shore = startShore(dir, { port: shorePort });
    processes.push(shore);
    await shore.waitFor(/HTTP on /, 60_000);
    const proxy = await FaultProxy.start({ targetPort: shorePort, resetEvery: { minBytes: 200 * 1024, maxBytes: 400 * 1024 }, seed: 5 });
    proxies.push(proxy);
    const ship = startShip(dir, { url: proxy.url(), ...QUICK_LINK }, { http: { port: 0 } });
    processes.push(ship);
    const [, shipUrl] = await ship.waitFor(/HTTP on (http:\/\/\S+) /, 60_000);

    // Random stalls while the log drains, bounded in count and time.
    const random = seededRandom(9);
    let draining = true;
    let stalls = 0;
    const staller = (async () => {
      while (draining && stalls < 20) {
        await new Promise((resolve) => setTimeout(resolve, 6000 + random() * 6000));
        if (!draining) break;
        proxy.stall(500 + random() * 2000);
        stalls += 1;
      }
    })();
    try {
      await eventually(
        async () => (await linkStatus(shipUrl!)).lag.every((entry) => entry.records === 0),
        420_000,
        async () => JSON.stringify({ link: await linkStatus(shipUrl!).catch((error: unknown) => String(error)), proxy: proxy.stats() }),
        250,
      );
    } finally {
      draining = false;
      proxy.resume();
      await staller;
    }
    const drainedAt = Date.now();
    const status = await linkStatus(shipUrl!);
    expect(await ship.stop()).toBe(0);
    expect(await shore.stop()).toBe(0);

    process.stderr.write(
      `[uplink] ${seeded} records: seeded in ${((seededAt - startedAt) / 1000).toFixed(1)} s, drained in ${((drainedAt - seededAt) / 1000).toFixed(1)} s ` +
        `(${Math.round(seeded / ((drainedAt - seededAt) / 1000))} records/s) through ${proxy.stats().resets} resets and ${stalls} stalls, ` +
        `${proxy.stats().bytesUp} bytes up, ${proxy.stats().bytesDown} bytes down, ${proxy.stats().connections} connections\n`,
    );
    // The faults happened: connections were reset and stalled, and the ship retried.
    expect(proxy.stats().resets).toBeGreaterThanOrEqual(3);
    expect(stalls).toBeGreaterThanOrEqual(1);
    expect(status.lastFailureReason).not.toBeNull();
    await expectSameRecords(dir, origin);
  });

  it('kill -9 of the ship and of the shore at random, 20 times during a transfer', { timeout: 400_000 }, async () => {
    const dir = tempDir('uplink-kill');
    dirs.push(dir);
    const origin = await seedShipLog(dir, voyageRecords({ containers: 500, seed: 21 }), 150_000);
    const shorePort = await freeLoopbackPort();
    // A slow link, so the transfer outlasts the kills; opened up afterwards to finish.
    const proxy = await FaultProxy.start({ targetPort: shorePort, bandwidthBytesPerSecond: 12_000 });
    proxies.push(proxy);
    const shipConfig = { url: proxy.url(), maxBatchRecords: 1000, ...QUICK_LINK };
    let shore = startShore(dir, { port: shorePort });
    let ship = startShip(dir, shipConfig, { http: { port: 0 } });
    processes.push(shore, ship);

    const random = seededRandom(17);
    const kills = { ship: 0, shore: 0 };
    const deadline = Date.now() + 200_000;
    while (kills.ship + kills.shore < 20 && Date.now() < deadline) {
      // Both running, then a random moment of the transfer (a few kills land during a start).
      if (random() < 0.8) await Promise.all([ship.waitFor(/is up/, 60_000), shore.waitFor(/is up/, 60_000)]);
      await new Promise((resolve) => setTimeout(resolve, 300 + random() * 1700));
      if (random() < 0.5) {
        await ship.kill9();
        kills.ship += 1;
        ship = startShip(dir, shipConfig, { http: { port: 0 } });
        processes.push(ship);
      } else {
        await shore.kill9();
        kills.shore += 1;
        shore = startShore(dir, { port: shorePort });
        processes.push(shore);
      }
    }
    expect(kills.ship + kills.shore).toBe(20);
    expect(kills.ship).toBeGreaterThan(0);
    expect(kills.shore).toBeGreaterThan(0);

    const [, shipUrl] = await ship.waitFor(/HTTP on (http:\/\/\S+) /, 60_000);
    await shore.waitFor(/HTTP on /, 60_000);
    // Part of the log had moved and part had not when the kills ended: they fell during the transfer.
    const lagAfterKills = (await linkStatus(shipUrl!)).lag.reduce((sum, entry) => sum + entry.records, 0);
    expect(lagAfterKills).toBeGreaterThan(0);
    expect(lagAfterKills).toBeLessThan(origin.records);
    proxy.setBandwidth(undefined);
    await eventually(
      async () => (await linkStatus(shipUrl!)).lag.every((entry) => entry.records === 0),
      120_000,
      async () => JSON.stringify(await linkStatus(shipUrl!).catch((error: unknown) => String(error))),
      250,
    );
    expect(await ship.stop()).toBe(0);
    expect(await shore.stop()).toBe(0);
    await expectSameRecords(dir, origin);
    process.stderr.write(`[uplink] kill -9: ${kills.ship} of the ship, ${kills.shore} of the shore; ${lagAfterKills} records still to send when the kills ended\n`);
  });
});
