import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/index.js';
import { applyEnvOverrides, loadSiteConfig, parseSiteConfig } from '../site/index.js';

function errorOf(action: () => unknown): ConfigError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('site configuration', () => {
  it('fills defaults for a minimal shore site', () => {
    const config = parseSiteConfig({ site: 'TOKYO', http: {}, ingest: { peers: [] } });
    expect(config.log.backend).toBe('sqlite');
    expect(config.http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.links).toEqual([]);
  });

  it('names the bad field and the allowed values', () => {
    const error = errorOf(() => parseSiteConfig({ site: 'TOKYO', log: { backend: 'mysql' } }, 'tokyo.yaml'));
    expect(error.message).toContain('tokyo.yaml: log.backend');
    expect(error.message).toContain('"sqlite"');
    expect(error.message).toContain('"kafka"');
  });

  it('refuses unknown fields, naming them', () => {
    const error = errorOf(() => parseSiteConfig({ site: 'TOKYO', http: { prot: 8080 } }, 'tokyo.yaml'));
    expect(error.message).toMatch(/tokyo\.yaml: http: .*prot/);
  });

  it('reports every problem at once, with its path', () => {
    const error = errorOf(() =>
      parseSiteConfig({ site: 'bad name!', http: { port: 70000 }, links: [{ name: 'X', url: 'ftp://x', token: 'short' }] }),
    );
    expect(error.message).toContain('site:');
    expect(error.message).toContain('http.port:');
    expect(error.message).toContain('links.0.url:');
    expect(error.message).toContain('links.0.token: must be at least 16 characters');
  });

  it('requires kafka settings for the kafka backend', () => {
    const error = errorOf(() => parseSiteConfig({ site: 'HQ', log: { backend: 'kafka' } }));
    expect(error.message).toContain('log.kafka: required when log.backend is "kafka"');
  });

  it('applies PORTCALL_ environment overrides by field path, typed as YAML', () => {
    const document = applyEnvOverrides(
      { site: 'TOKYO', http: { port: 8080 } },
      {
        PORTCALL_HTTP__PORT: '9090',
        PORTCALL_LOG__BACKEND: 'kafka',
        PORTCALL_LOG__KAFKA__BROKERS: '[127.0.0.1:9092, 127.0.0.1:9093]',
        PORTCALL_MQTT__MAX_TOPIC_LENGTH: '128',
        PORTCALL_CACHE_DIR: '/not/a/config/field',
      },
    );
    expect(document).toEqual({
      site: 'TOKYO',
      http: { port: 9090 },
      log: { backend: 'kafka', kafka: { brokers: ['127.0.0.1:9092', '127.0.0.1:9093'] } },
      mqtt: { maxTopicLength: 128 },
    });
  });

  it('takes the gateway\'s back-pressure limit, bounded, also from the environment', () => {
    const mqtt = (extra: Record<string, unknown>) => parseSiteConfig({ site: 'AURORA', mqtt: { auth: { allowAnonymous: true }, ...extra } }).mqtt!;
    expect(mqtt({}).maxPendingRecords).toBe(100_000);
    expect(mqtt({ maxPendingRecords: 5000 }).maxPendingRecords).toBe(5000);
    expect(errorOf(() => mqtt({ maxPendingRecords: 10 })).message).toContain('mqtt.maxPendingRecords');
    expect(errorOf(() => mqtt({ maxPendingRecords: 1.5 })).message).toContain('mqtt.maxPendingRecords');
    expect(applyEnvOverrides({ site: 'AURORA' }, { PORTCALL_MQTT__MAX_PENDING_RECORDS: '20000' })).toEqual({ site: 'AURORA', mqtt: { maxPendingRecords: 20_000 } });
  });

  it('loads a YAML file and says which file is wrong', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-config-'));
    const good = join(dir, 'good.yaml');
    writeFileSync(good, 'site: SYDNEY\nhttp:\n  port: 0\n');
    expect(loadSiteConfig(good, {}).site).toBe('SYDNEY');
    expect(loadSiteConfig(good, { PORTCALL_SITE: 'HQ' }).site).toBe('HQ');

    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'site: [unclosed\n');
    expect(errorOf(() => loadSiteConfig(broken, {})).message).toContain(`${broken}: not valid YAML`);
    // An unknown tag is refused rather than read as a plain string (and nothing is printed).
    const tagged = join(dir, 'tagged.yaml');
    writeFileSync(tagged, 'site: !secret AURORA\n');
    expect(errorOf(() => loadSiteConfig(tagged, {})).message).toMatch(new RegExp(`${tagged}: not valid YAML: .*!secret`));
    // In an environment override it is the string given, and validated as one.
    expect(errorOf(() => loadSiteConfig(good, { PORTCALL_SITE: '!x' })).message).toMatch(/site: must be 1-64 letters/);
    expect(errorOf(() => loadSiteConfig(join(dir, 'missing.yaml'), {})).message).toContain('cannot read config file');
  });
});
