/**
 * Bounded fuzzing of site configuration: random YAML text through `loadSiteConfig`, valid
 * site configurations (config/*.yaml and richer ones) with a field replaced by any value,
 * deleted, or renamed, through `parseSiteConfig`, and random PORTCALL_ overrides. Every input
 * either gives a configuration or a ConfigError whose every line names the source and a field
 * path ("file: links.0.token: …", or "(top level)"); never another exception.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse as parseYaml } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../core/index.js';
import { loadSiteConfig, parseSiteConfig } from '../site/index.js';

const dir = mkdtempSync(join(tmpdir(), 'portcall-config-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RICH = {
  site: 'AURORA',
  dataDir: '/var/lib/portcall',
  log: { maxBytes: 1_000_000_000, minFreeDiskBytes: 100_000_000 },
  streams: { containers: { ttlHours: 24, maxBytes: 1_000_000, priority: 20, mustForward: true } },
  http: { host: '127.0.0.1', port: 8081 },
  mqtt: {
    port: 1884,
    auth: { allowAnonymous: true },
    maxTopicLength: 128,
    streams: { containers: { payload: 'json-reading', silenceAlertMs: 60_000 } },
    bridge: { url: 'mqtt://127.0.0.1:1883', username: 'u', password: 'p', topics: ['bigblue/#'] },
  },
  ingest: { peers: [{ site: 'TOKYO', token: 'tokyo-to-aurora-token-01' }], maxRecordsPerBatch: 1000 },
  links: [
    {
      name: 'TOKYO',
      url: 'http://127.0.0.1:8080',
      token: 'aurora-to-tokyo-token-01',
      controlToken: 'control-token-0123456',
      streams: ['alerts', 'containers'],
      schedule: [{ days: ['mon'], from: '22:00', to: '06:00', state: 'metered', bandwidthBytesPerSecond: 20_000 }],
      filter: { topics: ['Y*'] },
      wireVersion: 2,
    },
  ],
  detectors: { shockG: 5 },
  handoffToken: 'handoff-token-0123456',
};

const VALID: Record<string, unknown>[] = [
  ...['aurora.yaml', 'tokyo.yaml', 'tokyo-kafka.yaml'].map((name) => parseYaml(readFileSync(join('config', name), 'utf8')) as Record<string, unknown>),
  RICH,
];

/** Every path (as keys) to a value inside a document. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const result: (string | number)[][] = [prefix];
  if (Array.isArray(value)) value.forEach((item, index) => result.push(...paths(item, [...prefix, index])));
  else if (value !== null && typeof value === 'object') for (const [key, item] of Object.entries(value)) result.push(...paths(item, [...prefix, key]));
  return result;
}

/** A ConfigError each of whose lines is "<source>: <field path or (top level)>: <message>". */
function expectConfigOutcome(run: () => unknown, source: string): 'ok' | 'refused' {
  try {
    run();
    return 'ok';
  } catch (error) {
    expect(error, String((error as Error)?.stack ?? error)).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    // A YAML syntax error quotes the offending lines after its first; every other line is one issue.
    const lines = message.startsWith(`${source}: not valid YAML: `) ? [message.split('\n')[0]!] : message.split('\n');
    for (const line of lines) {
      expect(line.startsWith(`${source}: `), line).toBe(true);
      // The field path (its keys as written, "(top level)", or "not valid YAML"), then what is wrong.
      expect(line.slice(source.length + 2), line).toMatch(/^(\(top level\)|not valid YAML|[^:]+|.*?): \S/s);
      expect(line.slice(source.length + 2), line).not.toMatch(/^(undefined|null)\b/);
    }
    return 'refused';
  }
}

const anyValue = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(null, '', -1, 0, 1.5, 2 ** 53, Number.MAX_VALUE, true, [], {}, 'x'.repeat(5000), '0.0.0.0', '{placeholder}', '../../etc/passwd'),
);

describe('configuration under fuzzing (bounded)', () => {
  it('valid configurations with one field replaced, deleted or renamed', { timeout: 15_000 }, () => {
    const seen = { ok: 0, refused: 0 };
    fc.assert(
      fc.property(fc.nat(VALID.length - 1), fc.nat(), fc.constantFrom('replace', 'delete', 'rename'), anyValue, fc.string({ maxLength: 12 }), (which, pick, how, value, name) => {
        const document = structuredClone(VALID[which]!);
        const all = paths(document).filter((path) => path.length > 0);
        const path = all[pick % all.length]!;
        let parent: Record<string | number, unknown> = document;
        for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
        const last = path[path.length - 1]!;
        if (how === 'replace') parent[last] = value;
        else if (how === 'delete') {
          if (Array.isArray(parent)) parent.splice(Number(last), 1);
          else delete parent[last];
        } else if (!Array.isArray(parent)) {
          parent[name === '' ? '_' : name] = parent[last];
          delete parent[last];
        }
        seen[expectConfigOutcome(() => parseSiteConfig(document, 'fuzz.yaml'), 'fuzz.yaml')] += 1;
      }),
      { numRuns: 2500 },
    );
    expect(seen.ok).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
  });

  it('random YAML text and whole random documents', { timeout: 15_000 }, () => {
    const file = join(dir, 'random.yaml');
    const yamlish = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.array(fc.constantFrom('site: X', 'http:', '  port: 80', '- a', ': :', '&a [*a]', '!!binary AAAA', '"\\u0000"', 'links: [{name: A}]', '\t', '{', '---', 'mqtt: {port: 99999}', '<<: *b'), { maxLength: 8 }).map((lines) => lines.join('\n')),
    );
    fc.assert(
      fc.property(yamlish, (text) => {
        writeFileSync(file, text);
        expectConfigOutcome(() => loadSiteConfig(file, {}), file);
      }),
      { numRuns: 800 },
    );
    fc.assert(
      fc.property(fc.anything({ maxDepth: 3 }), (document) => {
        expectConfigOutcome(() => parseSiteConfig(document, 'doc'), 'doc');
      }),
      { numRuns: 1500 },
    );
  });

  it('random PORTCALL_ environment overrides on a valid file', { timeout: 15_000 }, () => {
    const file = join(dir, 'tokyo.yaml');
    writeFileSync(file, readFileSync(join('config', 'tokyo.yaml')));
    const variable = fc.constantFrom('PORTCALL_HTTP__PORT', 'PORTCALL_SITE', 'PORTCALL_LOG__BACKEND', 'PORTCALL_LINKS', 'PORTCALL_INGEST__PEERS', 'PORTCALL_HTTP', 'PORTCALL_LOG__KAFKA__BROKERS', 'PORTCALL_MQTT__PORT', 'PORTCALL_STREAMS__X__TTL_HOURS', 'PORTCALL_HTTP__PORT__DEEPER');
    fc.assert(
      fc.property(fc.dictionary(variable, fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('[', '{a: 1}', '- x', '8080', 'null', '~', 'kafka', '[1, 2]'))), (env) => {
        expectConfigOutcome(() => loadSiteConfig(file, env), file);
      }),
      { numRuns: 800 },
    );
  });
});
