/**
 * `log.kafka.customerTopics` (docs/ACCESS.md, per-customer Kafka topics): defaults, and every
 * refusal names the field and says why, before anything starts.
 */
import { describe, expect, it } from 'vitest';

import { ConfigError } from '../core/index.js';
import { parseSiteConfig } from '../site/config.js';

const site = (customerTopics: unknown, extra: Record<string, unknown> = { access: { keyFile: '/etc/portcall/access.key' }, http: {} }) => ({
  site: 'HQ',
  log: { backend: 'kafka', kafka: { brokers: ['127.0.0.1:9092'], customerTopics } },
  ...extra,
});

describe('log.kafka.customerTopics configuration', () => {
  it('defaults: none; an entry reads containers, alerts and manifests into customer.<id>', () => {
    expect(parseSiteConfig({ site: 'HQ', log: { backend: 'kafka', kafka: { brokers: ['127.0.0.1:9092'] } } }).log.kafka!.customerTopics).toBeUndefined();
    const config = parseSiteConfig(site([{ id: 'toyco', tokenFile: '/etc/portcall/toyco.token' }, { id: 'duck', principal: 'kafka@duck', streams: ['manifests'], topic: 'customer.duck.2' }]));
    expect(config.log.kafka!.customerTopics).toEqual([
      { id: 'toyco', tokenFile: '/etc/portcall/toyco.token', streams: ['containers', 'alerts', 'manifests'] },
      { id: 'duck', principal: 'kafka@duck', streams: ['manifests'], topic: 'customer.duck.2' },
    ]);
  });

  it.each([
    ['neither principal nor token file', [{ id: 'toyco' }], /log\.kafka\.customerTopics\.0: give principal or tokenFile \(whose view the topic holds\), exactly one/],
    ['both principal and token file', [{ id: 'toyco', principal: 'kafka@toyco', tokenFile: '/t' }], /log\.kafka\.customerTopics\.0: give principal or tokenFile/],
    ['a principal that is no principal id', [{ id: 'toyco', principal: 'kafka toyco' }], /log\.kafka\.customerTopics\.0\.principal: must be a principal id/],
    ['an id that is no organisation id', [{ id: 'toy co', tokenFile: '/t' }], /log\.kafka\.customerTopics\.0\.id: must be letters, digits/],
    ['the access stream', [{ id: 'toyco', tokenFile: '/t', streams: ['containers', 'access'] }], /log\.kafka\.customerTopics\.0\.streams\.1: access records never leave a site/],
    ['no streams', [{ id: 'toyco', tokenFile: '/t', streams: [] }], /log\.kafka\.customerTopics\.0\.streams: /],
    ['a name Kafka refuses', [{ id: 'toyco', tokenFile: '/t', topic: 'customer/toyco' }], /log\.kafka\.customerTopics\.0\.topic: must be a Kafka topic name/],
    ['a topic under the site prefix', [{ id: 'toyco', tokenFile: '/t', topic: 'portcall.toyco' }], /log\.kafka\.customerTopics\.0\.topic: must not start with the site's topicPrefix \(portcall\.\)/],
    ['a customer listed twice', [{ id: 'toyco', tokenFile: '/t' }, { id: 'toyco', tokenFile: '/u' }], /log\.kafka\.customerTopics\.1\.id: toyco is listed twice/],
    ['two customers on one topic', [{ id: 'toyco', tokenFile: '/t' }, { id: 'redco', tokenFile: '/u', topic: 'customer.toyco' }], /log\.kafka\.customerTopics\.1\.topic: customer\.toyco is written for another customer already/],
    ['an unknown field', [{ id: 'toyco', tokenFile: '/t', token: 'pct_…' }], /log\.kafka\.customerTopics\.0: Unrecognized key: "token"/],
  ])('refuses %s, naming the field', (_case, customerTopics, message) => {
    expect(() => parseSiteConfig(site(customerTopics), 'hq.yaml')).toThrow(ConfigError);
    expect(() => parseSiteConfig(site(customerTopics), 'hq.yaml')).toThrow(message);
  });

  it('needs access control and HTTP (the filter is the access policy), and the Kafka log', () => {
    const entry = [{ id: 'toyco', tokenFile: '/t' }];
    expect(() => parseSiteConfig(site(entry, { http: {} }), 'hq.yaml')).toThrow(/hq\.yaml: log\.kafka\.customerTopics: needs an access: section and http:/);
    expect(() => parseSiteConfig(site(entry, { access: { keyFile: '/k' } }))).toThrow(/log\.kafka\.customerTopics: needs an access: section and http:/);
    expect(() =>
      parseSiteConfig({ site: 'HQ', log: { backend: 'sqlite', kafka: { brokers: ['127.0.0.1:9092'], customerTopics: entry } }, access: { keyFile: '/k' }, http: {} }),
    ).toThrow(/log\.kafka\.customerTopics: needs log\.backend "kafka"/);
  });
});
