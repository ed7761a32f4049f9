/**
 * Rebuilds the high-water map by reading the compacted high-water topic from its beginning
 * to the end it had when the read started.
 *
 * Knowing where "the end" is, is the hard part. The topic is written by transactions, so the
 * last offset of a partition is usually a commit (or abort) control marker, and kafkajs
 * never hands a control record to eachMessage/eachBatch; waiting to *see* offset `end - 1`
 * would wait forever. Instead this tracks the consumer's position, the way kafkajs itself
 * advances it (node_modules/kafkajs/src/consumer/runner.js, handleBatch):
 *
 * - Every fetched batch that holds records at or after the fetch offset, whether user
 *   records, aborted records or control records, ends in an END_BATCH_PROCESS
 *   instrumentation event whose `lastOffset` is the offset of its last raw record,
 *   control records included (batch.js lastOffset() reads `messagesWithinOffset`, which is
 *   filtered for aborted transactions and control records only later, into `messages`).
 *   A batch that is empty *because of* that filtering takes the "isEmptyDueToFiltering"
 *   branch, which resolves and emits the same event without calling eachBatch; a batch with
 *   user records emits it after eachBatch has returned, so the map already holds them.
 * - A fetch that returned nothing emits no event, so the position is never claimed past
 *   records not yet read.
 * - kafkajs then fetches from `lastOffset + 1`. So once an event says `lastOffset + 1 >= end`
 *   for a partition, every record below `end` was either delivered to eachBatch or was one
 *   kafkajs filtered out (control, aborted), which is exactly what a committed reader must see.
 *
 * `end` comes from ListOffsets with isolation READ_COMMITTED (kafkajs admin.fetchTopicOffsets
 * uses it), i.e. the last stable offset: the furthest a read_committed consumer can get. The
 * caller takes it after the producer registered its transactional id, which makes the
 * coordinator finish any transaction of ours left open, so no transaction of ours straddles
 * the end. Offset `end - 1` lies in the active segment, which the log cleaner never touches,
 * so compaction cannot remove the record the position has to reach.
 *
 * The one shape this cannot pass: the cleaner may keep an empty batch header (all its
 * records compacted away) to preserve producer state, and kafkajs neither delivers nor
 * resolves a fetch made only of such headers, so it would fetch the same offset again.
 * Records after such a header arrive in the same fetch and move the position on, so this
 * needs a fetch's worth of consecutive empty headers; the timeout turns it into an error.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Admin, Kafka } from 'kafkajs';
import type { Logger } from 'pino';

import { StoreUnavailableError } from '../../core/index.js';
import { decodeHighWater, type HeldTopic } from './codec.js';

export interface ReadHighWaterOptions {
  readonly kafka: Kafka;
  readonly admin: Admin;
  readonly topic: string;
  /** A fresh consumer group is made from this; it commits nothing and is deleted after. */
  readonly groupIdPrefix: string;
  readonly timeoutMs: number;
  readonly logger?: Logger;
}

/** Kept short so the consumer's disconnect, which waits for a pending fetch, is quick. */
const FETCH_MAX_WAIT_MS = 200;
const RETRY_DELAY_MS = 100;

/**
 * kafkajs's fetchTopicOffsets retries only UNKNOWN_TOPIC_OR_PARTITION and gives up at once on
 * the other retriable errors, such as NOT_LEADER_FOR_PARTITION, which a topic created moments
 * ago answers while its leader is still being announced.
 */
async function fetchEndOffsets(admin: Admin, topic: string, deadlineMs: number): ReturnType<Admin['fetchTopicOffsets']> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await admin.fetchTopicOffsets(topic);
    } catch (error) {
      if ((error as { retriable?: unknown }).retriable !== true || Date.now() + RETRY_DELAY_MS > deadlineMs) throw error;
      await sleep(Math.min(RETRY_DELAY_MS * attempt, 1_000));
      // Refreshes the admin client's metadata, which is what stale leader errors need.
      await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => {});
    }
  }
}

export async function readHighWater(options: ReadHighWaterOptions): Promise<Map<string, HeldTopic>> {
  const { kafka, admin, topic, timeoutMs } = options;
  const startedAtMs = Date.now();
  const held = new Map<string, HeldTopic>();

  /** Partition → the offset the position has to reach. */
  const behind = new Map<number, number>();
  for (const { partition, low, high } of await fetchEndOffsets(admin, topic, startedAtMs + timeoutMs)) {
    if (Number(high) > Number(low)) behind.set(partition, Number(high));
  }
  if (behind.size === 0) return held;
  const ends = new Map(behind);

  const groupId = `${options.groupIdPrefix}-${randomUUID()}`;
  const consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
  });

  let settle: { resolve: () => void; reject: (error: unknown) => void } | undefined;
  const reachedEnd = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  // Settled by listeners that may fire before anyone awaits it; the await below still sees it.
  reachedEnd.catch(() => {});
  let entries = 0;
  const removeEndListener = consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.topic !== topic) return;
    const end = behind.get(payload.partition);
    if (end !== undefined && Number(payload.lastOffset) + 1 >= end) {
      behind.delete(payload.partition);
      if (behind.size === 0) settle?.resolve();
    }
  });
  const removeCrashListener = consumer.on(consumer.events.CRASH, ({ payload }) => {
    // kafkajs restarts the consumer by itself on retriable errors; only a final crash is ours.
    if (!payload.restart) settle?.reject(payload.error);
  });

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const lagging = [...behind].map(([partition, end]) => `partition ${partition} (end ${end})`).join(', ');
      reject(
        new StoreUnavailableError(
          `reading the high-water topic ${topic} to its end did not finish within ${timeoutMs} ms; ` +
            `still behind on ${lagging}. The broker may be unreachable, or a transaction of another ` +
            `writer may hold the last stable offset back`,
        ),
      );
    }, timeoutMs);
  });

  const work = (async () => {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        try {
          for (const message of batch.messages) {
            const { key, held: entry } = decodeHighWater(message);
            entries += 1;
            // One key lives in one partition, read in order: the last entry wins, as after compaction.
            if (entry === undefined) held.delete(key);
            else held.set(key, entry);
          }
        } catch (error) {
          settle?.reject(
            new StoreUnavailableError(`high-water topic ${topic} partition ${batch.partition}: ${(error as Error).message}`, error),
          );
        }
      },
    });
    await reachedEnd;
  })();
  // Whichever loses the race below still settles later; that must not surface as unhandled.
  work.catch(() => {});
  try {
    await Promise.race([work, timedOut]);
  } finally {
    clearTimeout(timer);
    removeEndListener();
    removeCrashListener();
    await consumer.disconnect().catch(() => {});
    await admin.deleteGroups([groupId]).catch(() => {});
  }
  options.logger?.info(
    {
      topic,
      partitions: ends.size,
      entries,
      topics: held.size,
      durationMs: Date.now() - startedAtMs,
    },
    'high water recovered from Kafka',
  );
  return held;
}
