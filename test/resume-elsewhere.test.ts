/**
 * The voyage, step 3: Singapore holds the ship's records through Tokyo before the ship
 * arrives; when the ship's link to Singapore comes up, the ship resumes where Singapore
 * stands instead of resending its backlog. Real processes: the ship (`portcall edge`),
 * Tokyo and Singapore (`portcall shore`), real SQLite files.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';
import { links, linkToken, metricSamples, QUICK_LINK } from './support/sites.js';
import { digestDifferences, digestLog, eventually, freeLoopbackPort, logFile, seedShipLog, SHIP, tempDir, voyageRecords } from './support/uplink.js';

const AT_TOKYO = 40_000;
const AT_SEA = 2_000;

describe('a ship resumes where the next port stands', () => {
  const processes: PortcallProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function start(args: string[]): Promise<{ process: PortcallProcess; url: string }> {
    const process = startPortcall(args);
    processes.push(process);
    const [, url] = await process.waitFor(/HTTP on (http:\/\/\S+) /, 60_000);
    return { process, url: url! };
  }

  it(`sends a small fraction of a ${(AT_TOKYO + AT_SEA).toLocaleString('en-US')}-record backlog to a port that got most of it through another port`, { timeout: 120_000 }, async () => {
    const dir = tempDir('resume-elsewhere');
    dirs.push(dir);
    const records = voyageRecords({ containers: 1000 });
    const loaded = await seedShipLog(dir, records, AT_TOKYO);
    const tokyoPort = await freeLoopbackPort();
    const singaporePort = await freeLoopbackPort();
    const shore = (site: string, port: number, peers: string[], siteLinks: { name: string; port: number }[]) =>
      writeYaml(join(dir, `${site}.yaml`), {
        site,
        dataDir: dir,
        http: { port },
        ingest: { peers: peers.map((peer) => ({ site: peer, token: linkToken(peer, site) })) },
        links: siteLinks.map((link) => ({ name: link.name, url: `http://127.0.0.1:${link.port}`, token: linkToken(site, link.name), ...QUICK_LINK })),
      });
    const ship = (destination: string, port: number) =>
      writeYaml(join(dir, `aurora-${destination}.yaml`), {
        site: SHIP,
        dataDir: dir,
        http: { port: 0 },
        mqtt: { port: 0, auth: { allowAnonymous: true } },
        links: [{ name: destination, url: `http://127.0.0.1:${port}`, token: linkToken(SHIP, destination), ...QUICK_LINK }],
      });
    const tokyo = await start(['shore', '--config', shore('TOKYO', tokyoPort, [SHIP], [{ name: 'SINGAPORE', port: singaporePort }])]);
    const singapore = await start(['shore', '--config', shore('SINGAPORE', singaporePort, ['TOKYO', SHIP], [])]);

    // Docked at Tokyo: the ship's log goes to Tokyo, and from Tokyo to Singapore.
    const atTokyo = await start(['edge', '--config', ship('TOKYO', tokyoPort)]);
    const quiet = async (url: string) => (await links(url)).every((link) => link.lag.every((entry) => entry.records === 0));
    await eventually(async () => (await quiet(atTokyo.url)) && (await quiet(tokyo.url)), 60_000, async () => JSON.stringify(await links(tokyo.url)), 200);
    const toTokyo = (await links(atTokyo.url))[0]! as unknown as { wireBytes: number; recordsForwarded: number };
    // What the whole backlog costs on the wire (a batch whose acknowledgement was lost is not
    // counted as forwarded, so scale by the records the wire bytes carried).
    const tokyoWireBytes = Math.round((toTokyo.wireBytes / toTokyo.recordsForwarded) * AT_TOKYO);
    expect(toTokyo.recordsForwarded).toBeGreaterThan(0);
    await atTokyo.process.stop();

    // At sea: more readings pile up on board.
    const atSea = await seedShipLog(dir, records, AT_SEA);

    // Singapore: the ship's link comes up for the first time.
    const atSingapore = await start(['edge', '--config', ship('SINGAPORE', singaporePort)]);
    await eventually(() => quiet(atSingapore.url), 60_000, async () => JSON.stringify(await links(atSingapore.url)), 200);
    const toSingapore = (await links(atSingapore.url))[0]! as unknown as { wireBytes: number; recordsForwarded: number };
    const skipped = [...(await metricSamples(atSingapore.url, 'portcall_link_resync_skipped_records_total')).values()].reduce((sum, value) => sum + value, 0);
    process.stdout.write(
      `resume at Singapore: ${toSingapore.wireBytes} wire bytes for ${toSingapore.recordsForwarded} records ` +
        `(the ${AT_TOKYO} records at Tokyo take ${tokyoWireBytes}); ${skipped} records not resent\n`,
    );
    // Only the records from sea went (and at most a scan page of those already there).
    expect(toSingapore.recordsForwarded).toBeLessThanOrEqual(AT_SEA + 5000);
    expect(skipped).toBeGreaterThanOrEqual(AT_TOKYO - 5000);
    expect(toSingapore.wireBytes).toBeLessThan(tokyoWireBytes * 0.2);

    // And Singapore holds exactly the ship's records.
    await atSingapore.process.stop();
    await singapore.process.stop();
    await tokyo.process.stop();
    const destination = await digestLog(logFile(dir, 'SINGAPORE'), 'SINGAPORE');
    const shipLog = await digestLog(logFile(dir, SHIP), SHIP);
    expect(loaded.records + atSea.records).toBe(AT_TOKYO + AT_SEA);
    expect(shipLog.records).toBe(AT_TOKYO + AT_SEA);
    expect(destination.problems).toEqual([]);
    expect(digestDifferences(shipLog, destination)).toEqual([]);
    expect(destination.records).toBe(shipLog.records);
  });
});

