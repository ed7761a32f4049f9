/**
 * `portcall verify --sites`: three real shore sites on real SQLite logs, two identical and one
 * that is short of records in one topic, holds another byte for byte different, and has a
 * topic of its own; the command names exactly those topics and exits 1.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LogRecord } from '../core/index.js';
import { SqliteLog } from '../edge/log/index.js';
import { PORTCALL_BIN, startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';
import { freeLoopbackPort, tempDir } from './support/uplink.js';

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [PORTCALL_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('portcall verify --sites', () => {
  const processes: PortcallProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const process of processes.splice(0)) await process.kill9();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('prints every topic that differs and exits 1; identical sites exit 0', { timeout: 90_000 }, async () => {
    const dir = tempDir('verify');
    dirs.push(dir);
    const tokyo = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'TOKYO', 'log.sqlite') });
    for (let round = 0; round < 10; round += 1) {
      await tokyo.append(Array.from({ length: 21 }, (_unused, index) => ({ stream: 'containers', topic: `C${index + 1}`, payload: Buffer.from(`{"t":${round + index / 10}}`) })));
    }
    await tokyo.append([{ stream: 'alerts', topic: 'C1', payload: Buffer.from('{"kind":"door"}') }]);
    const all: LogRecord[] = [];
    for (const stream of tokyo.listStreams()) all.push(...(await tokyo.readStream(stream, 0, { maxRecords: 10_000 })).records);
    await tokyo.close();
    const singapore = SqliteLog.open({ siteId: 'SINGAPORE', path: join(dir, 'SINGAPORE', 'log.sqlite') });
    await singapore.replicate(all);
    await singapore.close();
    const sydney = SqliteLog.open({ siteId: 'SYDNEY', path: join(dir, 'SYDNEY', 'log.sqlite') });
    await sydney.replicate(
      all
        .filter((record) => !(record.topic === 'C3' && record.offset >= 8))
        .map((record) => (record.topic === 'C5' && record.offset === 4 ? { ...record, payload: Buffer.from('{"t":99}') } : record)),
    );
    await sydney.append([{ stream: 'containers', topic: 'X9', payload: Buffer.from('{}') }]);
    await sydney.close();

    const urls: string[] = [];
    for (const site of ['TOKYO', 'SINGAPORE', 'SYDNEY']) {
      const port = await freeLoopbackPort();
      const process = startPortcall(['shore', '--config', writeYaml(join(dir, `${site}.yaml`), { site, dataDir: dir, http: { port }, ingest: { peers: [] } })]);
      processes.push(process);
      await process.waitFor(/HTTP on /, 60_000);
      urls.push(`http://127.0.0.1:${port}`);
    }

    // Summaries page by name.
    const names: string[] = [];
    let after: string | null = '';
    for (let pages = 0; after !== null && pages < 10; pages += 1) {
      const page = (await (await fetch(`${urls[0]}/v1/summaries/containers?maxTopics=8&after=${after}`)).json()) as { topics: { topic: string }[]; after: string | null };
      expect(page.topics.length).toBeLessThanOrEqual(8);
      names.push(...page.topics.map((topic) => topic.topic));
      after = page.after;
    }
    expect(names).toEqual([...names].sort());
    expect(new Set(names).size).toBe(21);
    expect((await fetch(`${urls[0]}/v1/summaries/containers?maxTopics=0`)).status).toBe(400);

    const same = await run(['verify', '--sites', `${urls[0]},${urls[1]}`]);
    expect(same.stdout).toContain('identical: 2 streams, 22 topics compared across 2 sites (TOKYO, SINGAPORE)');
    expect(same.code).toBe(0);

    const different = await run(['verify', '--sites', urls.join(',')]);
    expect(different.code).toBe(1);
    const lines = different.stdout.trim().split('\n');
    expect(lines.slice(0, -1).map((line) => line.split(':')[0])).toEqual(['containers/C3', 'containers/C5', 'containers/X9']);
    expect(lines[0]).toContain('SYDNEY');
    expect(lines[0]).toMatch(/TOKYO \(http:\/\/127\.0\.0\.1:\d+\) offsets 0\.\.9 \(10 records\)/);
    expect(lines[0]).toMatch(/SYDNEY \(http:\/\/127\.0\.0\.1:\d+\) offsets 0\.\.7 \(8 records\)/);
    expect(lines[2]).toMatch(/TOKYO \(http:\/\/127\.0\.0\.1:\d+\) missing/);
    expect(lines.at(-1)).toBe('3 topics differ: 2 streams, 23 topics compared across 3 sites (TOKYO, SINGAPORE, SYDNEY)');

    const unreachable = await run(['verify', '--sites', `${urls[0]},http://127.0.0.1:1`]);
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr).toContain('cannot ask');

    const help = await run(['verify', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--sites <urls>');
    const bad = await run(['verify', '--sites', urls[0]!]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('at least two URLs');
  });
});
