/**
 * The one way this package opens a transactional producer: the Kafka log's lanes and the
 * per-customer topics writer both need the same settings and the same eager registration.
 */
import { Partitioners, type Kafka, type Producer } from 'kafkajs';

/** The coordinator aborts a transaction of ours left open this long (a crashed process). */
export const TRANSACTION_TIMEOUT_MS = 60_000;
/**
 * Bounded, so a write against a dead broker fails in seconds with a retriable error rather
 * than hanging; kafkajs's default for idempotent producers is to retry forever.
 */
export const PRODUCER_RETRY = { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 };
/**
 * The transactional producers' retries: about as long in all as PRODUCER_RETRY's (25 ms
 * doubling to 1.6 s, 3.2 s, against 100 ms to 1.6 s, 3.1 s), in finer first steps. The
 * common retriable answer in a busy lane is CONCURRENT_TRANSACTIONS: the transaction's first
 * AddPartitionsToTxn arrives while the coordinator still writes the previous transaction's
 * markers, which takes milliseconds. After 100-200 ms it cost 160 and 267 ms in two of 30
 * transactions of one bench run (2026-11-22); Kafka's Java producer waits 20 ms there.
 */
export const TRANSACTION_RETRY = { retries: 7, initialRetryTime: 25, maxRetryTime: 2_000 };

/**
 * Connects a producer under `transactionalId` and registers that id at once (InitProducerId):
 * kafkajs's connect() only fetches an idempotent producer id and registers the transactional
 * id lazily, at the first transaction(). Registering now fences an older instance holding the
 * id and makes the coordinator settle any transaction it left open, before the caller reads
 * the state those transactions would have changed. Aborting a transaction with no partitions
 * sends nothing to the broker.
 */
export async function connectTransactionalProducer(kafka: Kafka, transactionalId: string): Promise<Producer> {
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: TRANSACTION_TIMEOUT_MS,
    allowAutoTopicCreation: false,
    retry: TRANSACTION_RETRY,
  });
  try {
    await producer.connect();
    const registration = await producer.transaction();
    await registration.abort();
  } catch (error) {
    await producer.disconnect().catch(() => undefined);
    throw error;
  }
  return producer;
}
