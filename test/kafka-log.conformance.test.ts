import { randomBytes } from 'node:crypto';
import { describe } from 'vitest';
import { KafkaLog } from '../cloud/kafka-log/index.js';
import { kafkaBootstrap } from './support/kafka.js';
import { replicaSinkConformance } from './conformance/replica-sink.js';
import { siteLogConformance } from './conformance/site-log.js';

const bootstrap = kafkaBootstrap();
const run = randomBytes(3).toString('hex');

describe.skipIf(bootstrap === null)('Kafka log', () => {
  replicaSinkConformance('KafkaLog', {
    open: (name) =>
      KafkaLog.open({
        siteId: `conf-${run}-${name}`,
        brokers: [bootstrap!],
        topicPrefix: `conf${run}${name}`,
        streams: ['containers'],
        partitions: 2,
      }),
    detectsForks: false,
    latestLagMs: 15_000,
  });
  // The whole SiteLog contract: own appends, the stream order (journal), onDurable, named cursors.
  siteLogConformance('KafkaLog', {
    open: (name, siteId) =>
      KafkaLog.open({
        siteId,
        brokers: [bootstrap!],
        topicPrefix: `sl${run}${name}`,
        streams: ['containers', 'alerts'],
        partitions: 3,
      }),
  });
});
