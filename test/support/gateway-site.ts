/**
 * An edge site with a gateway, run in this process through the site's own composition root
 * (`startSite`), and a way to read back what its log holds once it has stopped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { LogRecord } from '../../core/index.js';
import { SqliteLog } from '../../edge/log/index.js';
import { parseSiteConfig, startSite, type RunningSite } from '../../site/index.js';

export const SITE = 'AURORA';

export interface GatewaySite {
  readonly site: RunningSite;
  readonly dataDir: string;
  readonly mqttUrl: string;
  /** Stops the site (if running) and returns every record of the topic, in offset order. */
  readTopic(stream: string, topic: string): Promise<LogRecord[]>;
  stop(): Promise<void>;
  remove(): void;
}

export function logPath(dataDir: string): string {
  return join(dataDir, SITE, 'log.sqlite');
}

export async function readLogTopic(dataDir: string, stream: string, topic: string): Promise<LogRecord[]> {
  return (await readLogTopics(dataDir, stream, [topic]))[0]!;
}

/** Every record of each topic, in offset order, from one opening of the log. */
export async function readLogTopics(dataDir: string, stream: string, topics: readonly string[]): Promise<LogRecord[][]> {
  const log = SqliteLog.open({ siteId: SITE, path: logPath(dataDir) });
  try {
    const result: LogRecord[][] = [];
    for (const topic of topics) {
      const records: LogRecord[] = [];
      for (;;) {
        const page = await log.readTopic(stream, topic, records.length, { maxRecords: 10_000 });
        if (page.length === 0) break;
        records.push(...page);
      }
      result.push(records);
    }
    return result;
  } finally {
    await log.close();
  }
}

export async function startGatewaySite(mqtt: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<GatewaySite> {
  const dataDir = mkdtempSync(join(tmpdir(), 'portcall-gw-'));
  const site = await startSite(parseSiteConfig({ site: SITE, dataDir, mqtt: { port: 0, ...mqtt }, ...extra }), {
    logger: pino({ level: process.env.LOG_LEVEL ?? 'silent' }),
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await site.close();
  };
  return {
    site,
    dataDir,
    mqttUrl: `mqtt://127.0.0.1:${site.mqttPort!}`,
    stop,
    async readTopic(stream, topic) {
      await stop();
      return readLogTopic(dataDir, stream, topic);
    },
    remove: () => rmSync(dataDir, { recursive: true, force: true }),
  };
}
