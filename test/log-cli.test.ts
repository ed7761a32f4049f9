/**
 * `portcall log stats|inspect|tail|verify`, run as an operator would: the built command line
 * as a child process, against a real log file — including one another process is writing.
 */
import Database from 'better-sqlite3';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLog } from '../edge/log/index.js';
import { PORTCALL_BIN, startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const run = promisify(execFile);

async function portcall(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [PORTCALL_BIN, ...args], { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('portcall log', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-log-cli-'));
  const path = join(dir, 'AURORA', 'log.sqlite');
  const started: PortcallProcess[] = [];
  beforeAll(async () => {
    const log = SqliteLog.open({ siteId: 'AURORA', path, retentionIntervalMs: 0, indexer: 'inline' });
    for (let i = 0; i < 30; i += 1) await log.append([{ stream: 'containers', topic: 'Y01', payload: json({ n: i, tempC: 4.5 }) }]);
    await log.append([
      { stream: 'containers', topic: 'Y02', eventTimeMs: Date.UTC(2026, 0, 2, 3, 4, 5), headers: { unit: 'C' }, payload: json({ tempC: -18 }) },
      { stream: 'containers', topic: 'Y03', payload: Buffer.from([0, 255, 1, 254]) },
      { stream: 'alerts', topic: 'Y07', payload: json({ kind: 'overboard' }) },
    ]);
    await log.replicate([
      { origin: 'TOKYO', stream: 'manifests', topic: 'TYO', offset: 0, eventTimeMs: 1, ingestTimeMs: 2, headers: {}, payload: json({ load: 'Y01' }) },
    ]);
    await log.close();
  });
  afterEach(async () => {
    for (const child of started.splice(0)) await child.stop();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('has --help for the command and each subcommand', async () => {
    const top = await portcall(['log', '--help']);
    expect(top.code).toBe(0);
    for (const sub of ['stats', 'inspect', 'tail', 'verify']) {
      expect(top.stdout).toContain(sub);
      const help = await portcall(['log', sub, '--help']);
      expect(help.code, sub).toBe(0);
      expect(help.stdout, sub).toContain(`Usage: portcall log ${sub}`);
      expect(help.stdout, sub).toContain('--path');
      expect(help.stdout, sub).toContain('--config');
    }
    expect((await portcall(['--help'])).stdout).toMatch(/\blog\b/);
  });

  it('stats: per stream topics, records, bytes and last position, and the used bytes', async () => {
    const result = await portcall(['log', 'stats', '--path', path, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { usedBytes: number; streams: { stream: string; topics: number; records: number; bytes: number; lastPosition: number }[] };
    expect(report.usedBytes).toBeGreaterThan(0);
    expect(report.streams.map((s) => [s.stream, s.topics, s.records, s.lastPosition])).toEqual([
      ['alerts', 1, 1, 1],
      ['containers', 3, 32, 32],
      ['manifests', 1, 1, 1],
    ]);
    const table = await portcall(['log', 'stats', '--path', path]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/3 streams, 5 topics, 34 records/);
    expect(table.stdout).toMatch(/containers\s+3\s+32\s/);
  });

  it('stats finds the log from the site configuration', async () => {
    const config = writeYaml(join(dir, 'aurora.yaml'), { site: 'AURORA', dataDir: dir });
    const result = await portcall(['log', 'stats', '--config', config, '--json']);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ path: join(dir, 'AURORA', 'log.sqlite') });
    const missing = writeYaml(join(dir, 'tokyo.yaml'), { site: 'TOKYO', dataDir: dir });
    const refused = await portcall(['log', 'stats', '--config', missing]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`no log at ${join(dir, 'TOKYO', 'log.sqlite')}`);
  });

  it('inspect: the topics of a stream, then a topic\'s records', async () => {
    const topics = await portcall(['log', 'inspect', 'containers', '--path', path]);
    expect(topics.code, topics.stderr).toBe(0);
    expect(topics.stdout).toMatch(/^Y01\s+0\s+30\s+30\s/m);
    expect(topics.stdout).toMatch(/^Y02\s+0\s+1\s+1\s.*\d{4}-\d\d-\d\dT/m);
    const topicsJson = (await portcall(['log', 'inspect', 'containers', '--path', path, '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(topicsJson[0]).toMatchObject({ topic: 'Y01', firstOffset: 0, nextOffset: 30, count: 30 });

    // Default: the last 20 records.
    const last = (await portcall(['log', 'inspect', 'containers', 'Y01', '--path', path, '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(last.map((r: { offset: number }) => r.offset)).toEqual(Array.from({ length: 20 }, (_u, i) => 10 + i));
    const page = (await portcall(['log', 'inspect', 'containers', 'Y01', '--path', path, '--from', '3', '--limit', '2', '--json'])).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(page).toEqual([
      expect.objectContaining({ origin: 'AURORA', stream: 'containers', topic: 'Y01', offset: 3, payloadEncoding: 'json', payload: { n: 3, tempC: 4.5 } }),
      expect.objectContaining({ offset: 4, payload: { n: 4, tempC: 4.5 } }),
    ]);

    const text = await portcall(['log', 'inspect', 'containers', 'Y02', '--path', path]);
    expect(text.stdout).toContain('containers/Y02 @ 0  origin AURORA');
    expect(text.stdout).toContain('event 2026-01-02T03:04:05.000Z');
    expect(text.stdout).toContain('headers: {"unit":"C"}');
    expect(text.stdout).toMatch(/"tempC": -18/);
    const binary = await portcall(['log', 'inspect', 'containers', 'Y03', '--path', path]);
    expect(binary.stdout).toContain('base64');
    expect(binary.stdout).toContain(Buffer.from([0, 255, 1, 254]).toString('base64'));
    const replicated = await portcall(['log', 'inspect', 'manifests', 'TYO', '--path', path, '--json']);
    expect(JSON.parse(replicated.stdout)).toMatchObject({ origin: 'TOKYO', offset: 0, ingestTime: '1970-01-01T00:00:00.002Z' });
  });

  it('inspect refuses an unknown stream or topic, naming what exists', async () => {
    const stream = await portcall(['log', 'inspect', 'ships', '--path', path]);
    expect(stream.code).toBe(2);
    expect(stream.stderr).toContain('has no stream "ships"; its streams: alerts, containers, manifests');
    const topic = await portcall(['log', 'inspect', 'containers', 'Y99', '--path', path]);
    expect(topic.code).toBe(2);
    expect(topic.stderr).toContain('no topic "Y99"');
    const bad = await portcall(['log', 'inspect', 'containers', 'Y01', '--path', path, '--from', '-1']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--from must be a whole number');
  });

  it('tail follows a stream another process is appending to, new topics included', async () => {
    const tail = startPortcall(['log', 'tail', 'containers', '--path', path]);
    started.push(tail);
    await tail.waitFor(/following containers/);
    const writer = SqliteLog.open({ siteId: 'AURORA', path, retentionIntervalMs: 0, indexer: 'inline' });
    try {
      await writer.append([{ stream: 'containers', topic: 'Y01', payload: json({ live: 1 }) }]);
      await writer.append([{ stream: 'containers', topic: 'NEW1', headers: { k: 'v' }, payload: json({ live: 2 }) }]);
      await writer.append([{ stream: 'alerts', topic: 'Y07', payload: json({ live: 3 }) }]);
    } finally {
      await writer.close();
    }
    await tail.waitFor(/containers\/NEW1@0 AURORA \{"k":"v"\} \{"live":2\}/, 10_000);
    expect(tail.output()).toMatch(/containers\/Y01@30 AURORA \{"live":1\}/);
    // Only the followed stream, and only what was appended after it started.
    expect(tail.output()).not.toContain('"live":3');
    expect(tail.output()).not.toContain('Y01@29');
    expect(await tail.stop()).toBe(0);

    const fromStart = startPortcall(['log', 'tail', 'alerts', '--path', path, '--from-start', '--json']);
    started.push(fromStart);
    await fromStart.waitFor(/"live":3/);
    expect(fromStart.output()).toContain('"kind":"overboard"');
  });

  it('verify: OK with progress on stderr, exit 1 naming the problem when offsets have a gap', async () => {
    const ok = await portcall(['log', 'verify', '--path', path]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^OK: .* 3 streams, 6 topics, \d+ records checked/);
    expect(ok.stderr).toContain('verify: SQLite integrity check');

    // Damage a copy behind the log's back: remove a record from the middle of topic Y01.
    const damaged = join(dir, 'damaged.sqlite');
    const source = new Database(path, { readonly: true });
    await source.backup(damaged);
    source.close();
    const db = new Database(damaged);
    const topicId = db.prepare(`SELECT id FROM topics WHERE name = 'Y01'`).pluck().get() as number;
    const streamId = db.prepare(`SELECT stream_id FROM topics WHERE id = ?`).pluck().get(topicId) as number;
    db.prepare(`DELETE FROM records_${streamId} WHERE topic_id = ? AND topic_offset = 5`).run(topicId);
    db.close();
    const bad = await portcall(['log', 'verify', '--path', damaged]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('PROBLEMS');
    expect(bad.stdout).toContain('containers/Y01: offsets 5..5 missing');
  });
});
