import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SqliteLog } from '../edge/log/index.js';
import { replicaSinkConformance } from './conformance/replica-sink.js';
import { siteLogConformance } from './conformance/site-log.js';

const root = mkdtempSync(join(tmpdir(), 'portcall-conformance-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

for (const indexer of ['thread', 'inline'] as const) {
  const open = (name: string, siteId: string) =>
    SqliteLog.open({ siteId, path: join(root, indexer, name, 'log.sqlite'), indexer, retentionIntervalMs: 0 });
  siteLogConformance(`SqliteLog (${indexer} indexer)`, { open: async (name, siteId) => open(name, siteId) });
  replicaSinkConformance(`SqliteLog (${indexer} indexer)`, {
    open: async (name) => open(name, 'TOKYO'),
    detectsForks: true,
    latestLagMs: 0,
  });
}
