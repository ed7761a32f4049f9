/**
 * The links and ingest sections of the site configuration: link policy, TLS, and the
 * refusals that name the field.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/index.js';
import { applyEnvOverrides, parseSiteConfig } from '../site/index.js';

const TOKEN = 'aurora-to-tokyo-token-0001';
const link = (extra: Record<string, unknown> = {}) => ({ name: 'TOKYO', url: 'https://tokyo.example:8443', token: TOKEN, ...extra });

function messageOf(input: unknown): string {
  try {
    parseSiteConfig(input, 'aurora.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('site configuration: links and ingest', () => {
  it('fills a link’s defaults: up, alerts urgent, version 2, 10,000-record batches, eight in flight', () => {
    const config = parseSiteConfig({ site: 'AURORA', links: [link()] });
    expect(config.links[0]).toMatchObject({
      state: 'up',
      streams: ['alerts', 'manifests', 'ships', 'containers'],
      urgentStreams: ['alerts'],
      summaryStreams: [],
      schedule: [],
      wireVersion: 2,
      maxBatchRecords: 10_000,
      maxInFlightBatches: 8,
    });
  });

  it('takes a policy: state, cap, schedule, switch file, control token, TLS', () => {
    const config = parseSiteConfig({
      site: 'AURORA',
      links: [
        link({
          state: 'metered',
          bandwidthBytesPerSecond: 30_000,
          schedule: [{ days: ['sat', 'sun'], from: '22:00', to: '06:00', state: 'up', bandwidthBytesPerSecond: 250_000 }],
          switchFile: '/run/portcall/link-TOKYO',
          controlToken: 'ship-systems-control-token',
          summaryStreams: ['ships'],
          tls: { caFile: 'ca.crt', certFile: 'aurora.crt', keyFile: 'aurora.key' },
        }),
      ],
    });
    expect(config.links[0]!.schedule[0]).toEqual({ days: ['sat', 'sun'], from: '22:00', to: '06:00', state: 'up', bandwidthBytesPerSecond: 250_000 });
  });

  it('refuses a bad policy, naming the field', () => {
    const message = messageOf({
      site: 'AURORA',
      links: [
        link({
          state: 'sometimes',
          schedule: [{ from: '25:00', to: '06:00', state: 'up' }],
          tls: { certFile: 'aurora.crt' },
          wireVersion: 3,
        }),
      ],
    });
    expect(message).toContain('aurora.yaml: links.0.state');
    expect(message).toContain('links.0.schedule.0.from: must be HH:MM (UTC)');
    expect(message).toContain('links.0.tls.keyFile: certFile and keyFile go together');
    expect(message).toContain('links.0.wireVersion');
    // Checks across fields, once each field is valid on its own.
    const crossed = messageOf({ site: 'AURORA', links: [link({ summaryStreams: ['weather'], controlToken: TOKEN })] });
    expect(crossed).toContain(`links.0.summaryStreams.0: "weather" is not in this link's streams`);
    expect(crossed).toContain('links.0.controlToken: must differ from token');
  });

  it('ingest TLS: a client certificate requirement needs a CA', () => {
    expect(messageOf({ site: 'TOKYO', http: {}, ingest: { peers: [], tls: { certFile: 'c', keyFile: 'k', requireClientCertificate: true } } })).toContain(
      'ingest.tls.caFile: required when requireClientCertificate is true',
    );
    const config = parseSiteConfig({ site: 'TOKYO', http: {}, ingest: { peers: [], tls: { certFile: 'c', keyFile: 'k' } } });
    expect(config.ingest!.tls).toEqual({ certFile: 'c', keyFile: 'k', requireClientCertificate: false });
  });

  it('links can be switched by environment, e.g. a whole list', () => {
    const document = applyEnvOverrides({ site: 'AURORA' }, { PORTCALL_LINKS: `[{name: TOKYO, url: "http://127.0.0.1:8080", token: ${TOKEN}, state: down}]` });
    expect(parseSiteConfig(document).links[0]).toMatchObject({ name: 'TOKYO', state: 'down' });
  });
});
