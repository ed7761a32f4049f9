/**
 * The `log.kafka` section: topic settings for all streams and per stream, refused when they
 * would make every write fail, and overridable from the environment like any field.
 */
import { describe, expect, it } from 'vitest';

import { ConfigError } from '../core/index.js';
import { applyEnvOverrides, parseSiteConfig } from '../site/index.js';

const kafkaSite = (kafka: Record<string, unknown>) => ({ site: 'TOKYO', log: { backend: 'kafka', kafka: { brokers: ['127.0.0.1:9092'], ...kafka } } });

describe('log.kafka configuration', () => {
  it('takes topic settings for all streams and per stream, with defaults', () => {
    const config = parseSiteConfig(
      kafkaSite({
        replicationFactor: 3,
        minInsyncReplicas: 2,
        retentionHours: 720,
        streams: { containers: { partitions: 12, retentionBytesPerPartition: 1_000_000_000 }, alerts: { contentType: 'application/vnd.portcall.alert+json' } },
      }),
    );
    expect(config.log.kafka).toEqual({
      brokers: ['127.0.0.1:9092'],
      topicPrefix: 'portcall',
      partitions: 6,
      replicationFactor: 3,
      minInsyncReplicas: 2,
      retentionHours: 720,
      streams: { containers: { partitions: 12, retentionBytesPerPartition: 1_000_000_000 }, alerts: { contentType: 'application/vnd.portcall.alert+json' } },
      maxPendingRecords: 200_000,
      compression: 'lz4',
    });
  });

  it('takes the compression of the batches written, and refuses one Kafka and this site do not both have, naming the field', () => {
    expect(parseSiteConfig(kafkaSite({ compression: 'none' })).log.kafka?.compression).toBe('none');
    expect(parseSiteConfig(kafkaSite({ compression: 'gzip' })).log.kafka?.compression).toBe('gzip');
    expect(() => parseSiteConfig(kafkaSite({ compression: 'zstd' }), 'hq.yaml')).toThrow(/hq\.yaml: log\.kafka\.compression: .*"lz4"\|"gzip"\|"none"/);
  });

  it('refuses min.insync.replicas above the replication factor, naming where', () => {
    expect(() => parseSiteConfig(kafkaSite({ replicationFactor: 2, minInsyncReplicas: 3 }), 'hq.yaml')).toThrow(
      /hq\.yaml: log\.kafka\.minInsyncReplicas: must not exceed the replication factor \(2\)/,
    );
    expect(() => parseSiteConfig(kafkaSite({ replicationFactor: 3, streams: { ships: { replicationFactor: 1, minInsyncReplicas: 2 } } }))).toThrow(
      /log\.kafka\.streams\.ships\.minInsyncReplicas: must not exceed the replication factor \(1\)/,
    );
  });

  it('refuses unknown settings and malformed content types', () => {
    expect(() => parseSiteConfig(kafkaSite({ streams: { containers: { compaction: true } } }))).toThrow(ConfigError);
    expect(() => parseSiteConfig(kafkaSite({ streams: { alerts: { contentType: 'json' } } }))).toThrow(/contentType: must be a MIME type/);
  });

  it('reads overrides from the environment', () => {
    const document = applyEnvOverrides(kafkaSite({}), {
      PORTCALL_LOG__KAFKA__MIN_INSYNC_REPLICAS: '1',
      PORTCALL_LOG__KAFKA__RETENTION_HOURS: '48',
      PORTCALL_LOG__KAFKA__MAX_PENDING_RECORDS: '5000',
      PORTCALL_LOG__KAFKA__COMPRESSION: 'gzip',
    });
    expect(parseSiteConfig(document).log.kafka).toMatchObject({ minInsyncReplicas: 1, retentionHours: 48, maxPendingRecords: 5000, compression: 'gzip' });
  });
});
