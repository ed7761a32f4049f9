/**
 * Wires per-customer Kafka topics into a Kafka-backed site (composition root helper): each
 * configured customer's filter is the access policy's filter for the customer's service
 * principal, named or by its token (asked again every round, so a principal or token accepted
 * later starts the customer and one disabled or revoked holds it), and the sink is the Kafka
 * log's transactional customer topic writer.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ConfigError, type RecordFilter } from '../core/index.js';
import { CustomerTopicStage } from '../cloud/customer-topics/index.js';
import type { KafkaLog } from '../cloud/kafka-log/index.js';
import type { RunningAccess } from '../cloud/access/index.js';
import type { SiteConfig } from './config.js';

type KafkaConfig = NonNullable<SiteConfig['log']['kafka']>;

export async function startCustomerTopics(
  kafka: KafkaConfig,
  log: KafkaLog,
  access: RunningAccess,
  logger: Logger,
  registry: Registry,
): Promise<CustomerTopicStage> {
  const specs = (kafka.customerTopics ?? []).map((customer, index) => {
    let token: string | undefined;
    if (customer.tokenFile !== undefined) {
      const field = `log.kafka.customerTopics.${index}.tokenFile`;
      try {
        token = readFileSync(customer.tokenFile, 'utf8').trim();
      } catch (error) {
        throw new ConfigError(`${field}: cannot read ${customer.tokenFile}: ${(error as Error).message}`);
      }
      if (token === '') throw new ConfigError(`${field}: ${customer.tokenFile} is empty; it must hold the customer's service token`);
    }
    const principal = customer.principal;
    // The same audience as the link filter of a customer endpoint: says what an access change may have widened.
    const widening = access.linkFilter(principal !== undefined ? { principal } : { token: token! });
    return {
      id: customer.id,
      kafkaTopic: customer.topic ?? `customer.${customer.id}`,
      streams: customer.streams,
      // Asked every round (a few lookups, and one SHA-256 for a token); the filter itself
      // re-checks its principal or token on every record (the policy's liveness check), so a
      // revocation or a disabled principal stops the next record. A viewer of another
      // organisation is held too: customer.toyco never gets RedCo's view.
      filter: (): RecordFilter | undefined => {
        const viewer = principal !== undefined ? access.policy.viewerByName(principal) : access.policy.authenticate(token);
        return viewer === undefined || viewer.org.id !== customer.id ? undefined : access.policy.filterFor(viewer);
      },
      widening,
    };
  });
  const sink = log.customerTopicWriter({
    topics: new Map(specs.map(({ id, kafkaTopic }) => [id, kafkaTopic])),
    partitions: kafka.partitions,
    // The site's retention, unless none: the customer's topic is its contract (docs/ACCESS.md).
    ...(kafka.retentionHours === undefined ? {} : { retentionMs: Math.round(kafka.retentionHours * 3_600_000) }),
  });
  const stage = new CustomerTopicStage({
    source: log,
    sink,
    customers: specs,
    recordsAfter: (stream, position) => log.recordsAfter(stream, position),
    logger: logger.child({ component: 'customer-topics' }),
    registry,
  });
  await stage.start();
  logger.info({ customers: specs.map(({ id, kafkaTopic }) => `${id} → ${kafkaTopic}`) }, 'customer Kafka topics started');
  return stage;
}
