/**
 * Rebuilds the high-water map by reading the compacted high-water topic from its beginning
 * to the end it had when the read started.
 *
 * The end of each partition comes from ListOffsets with isolation READ_COMMITTED (kafkajs
 * admin.fetchTopicOffsets uses it), i.e. the last stable offset: the furthest a
 * read_committed reader can get. The caller takes it after the producer registered its
 * transactional id, which makes the coordinator finish any transaction of ours left open, so
 * no transaction of ours straddles the end.
 *
 * The partitions are read with direct Fetch requests (kafkajs-fetch.ts), not a consumer
 * group: a group's first join waits `group.initial.rebalance.delay.ms` (3 s on a default
 * broker), which every start and every resync after an uncertain commit would pay, and a
 * group cannot say when it has reached an offset whose last record is a control marker it
 * never delivers. A fetch says exactly how far it got, control and aborted records included.
 *
 * Compaction can leave a record batch whose records were all removed (its header is kept to
 * preserve producer state); a fetch of such a stretch returns nothing to decode and no
 * progress, while the partition's stable end lies beyond it. The reader then steps over it one
 * offset at a time; such batches are rare (one per producer at most), so this costs a few
 * fetches, and `timeoutMs` bounds the whole read.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type { Admin, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';

import { StoreUnavailableError } from '../../core/index.js';
import { decodeHighWater, type HeldTopic } from './codec.js';
import { OffsetOutOfRangeError, type PartitionFetcher } from './kafkajs-fetch.js';

export interface ReadHighWaterOptions {
  readonly admin: Admin;
  readonly fetcher: PartitionFetcher;
  readonly topic: string;
  readonly timeoutMs: number;
  readonly logger?: Logger;
}

const RETRY_DELAY_MS = 100;
const FETCH_BYTES = 4 * 1024 * 1024;

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
      // kafkajs's admin answers a TypeError (`high.pop()` of nothing) when its metadata lacks the
      // topic for a moment, which concurrent calls for other topics can cause: retried the same.
      const metadataRace = error instanceof TypeError && /partitions/.test(error.message);
      if (((error as { retriable?: unknown }).retriable !== true && !metadataRace) || Date.now() + RETRY_DELAY_MS > deadlineMs) throw error;
      await sleep(Math.min(RETRY_DELAY_MS * attempt, 1_000));
      // Refreshes the admin client's metadata, which is what stale leader errors need.
      await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => {});
    }
  }
}

/**
 * The partitions of `topic` in which a transaction is open, each with its high watermark (the
 * end of what is written, open transactions included); empty when none is. One fetch per
 * partition, from `from` (where the last read of it stopped), all at once. Asked when no
 * transaction of this instance is open, what it finds open is another producer's, or one of
 * this instance's last commits whose markers Kafka is still writing (it answers a commit
 * before it writes them).
 */
export async function openTransactionEnds(options: ReadHighWaterOptions, partitions: number, from: ReadonlyMap<number, bigint>): Promise<Map<number, bigint>> {
  const { admin, fetcher, topic, timeoutMs } = options;
  const open = new Map<number, bigint>();
  await Promise.all(
    Array.from({ length: partitions }, async (_, partition) => {
      let fetched;
      try {
        fetched = await fetcher.fetch(topic, partition, from.get(partition) ?? 0n, 1);
      } catch (error) {
        if (!(error instanceof OffsetOutOfRangeError)) throw error;
        // Compaction moved the log start past the last read: ask at the last stable offset.
        const stable = (await fetchEndOffsets(admin, topic, Date.now() + timeoutMs)).find((entry) => entry.partition === partition);
        fetched = await fetcher.fetch(topic, partition, BigInt(stable?.high ?? 0), 1);
      }
      if (fetched.lastStableOffset < fetched.highWatermark) open.set(partition, fetched.highWatermark);
    }),
  );
  return open;
}

const STABLE_POLL_MIN_MS = 20;
const STABLE_POLL_MAX_MS = 500;

/**
 * Waits until every partition's last stable offset has reached `target` (from
 * `openTransactionEnds`):
 * until each transaction that was open below those ends has committed or aborted, so that a
 * read_committed read to the last stable offset sees everything committed before them.
 *
 * Why: a read_committed read stops at the first open transaction of any producer. What this
 * instance committed behind it (a transaction whose answer a crash or a timeout took) would go
 * unread, and a resend of it would look new. The transaction in the way is usually another
 * instance's, committing in milliseconds, or one a crashed instance left open, which ends when
 * its transactional id is registered again or when Kafka aborts it after its transaction
 * timeout. Throws a (retriable) StoreUnavailableError naming the partition and offset when it
 * has not ended by `deadlineMs`.
 */
export async function waitUntilStable(options: ReadHighWaterOptions & { readonly what: string }, target: ReadonlyMap<number, bigint>, deadlineMs: number): Promise<void> {
  const { fetcher, topic } = options;
  for (const [partition, end] of target) {
    for (let pollMs = STABLE_POLL_MIN_MS; ; pollMs = Math.min(pollMs * 2, STABLE_POLL_MAX_MS)) {
      // A read_committed fetch at an offset the last stable offset has not reached returns no
      // records, only the ends; once it has, one batch at most, and the wait is over.
      const fetched = await fetcher.fetch(topic, partition, end, 1);
      if (fetched.lastStableOffset >= end) break;
      if (Date.now() + pollMs > deadlineMs) {
        throw new StoreUnavailableError(
          `the ${options.what} topic ${topic} partition ${partition} has a transaction open at offset ${fetched.lastStableOffset} ` +
            `that is not this instance's (a crashed instance's, which ends when its sender registers again or when Kafka aborts it ` +
            `after its transaction timeout): what was committed behind it (up to ${end}) cannot be read yet`,
        );
      }
      await sleep(pollMs);
    }
  }
}

export interface CompactedReadResult {
  /** Per partition, the offset the read reached (the last stable offset when it started). */
  readonly reached: Map<number, bigint>;
  readonly entries: number;
  readonly fetches: number;
}

/**
 * Reads a compacted topic from `from` (per partition; the log start where absent) up to the
 * last stable offset it has when the read starts, handing every entry to `apply` in order.
 * Passing the `reached` of an earlier read reads only what was committed since.
 */
export async function readCompacted(
  options: ReadHighWaterOptions & { readonly from?: ReadonlyMap<number, bigint>; readonly what: string },
  apply: (message: Pick<KafkaMessage, 'key' | 'value' | 'offset'>) => void,
): Promise<CompactedReadResult> {
  const { admin, fetcher, topic, timeoutMs } = options;
  const deadlineMs = Date.now() + timeoutMs;
  const reached = new Map<number, bigint>();
  let entries = 0;
  let fetches = 0;
  for (const { partition, low, high } of await fetchEndOffsets(admin, topic, deadlineMs)) {
    const end = BigInt(high);
    const known = options.from?.get(partition);
    let offset = known !== undefined && known > BigInt(low) ? known : BigInt(low);
    while (offset < end) {
      if (Date.now() > deadlineMs) {
        throw new StoreUnavailableError(
          `reading the ${options.what} topic ${topic} to its end did not finish within ${timeoutMs} ms; ` +
            `partition ${partition} is at ${offset} of ${end}. The broker may be unreachable or overloaded`,
        );
      }
      let fetched;
      try {
        fetched = await fetcher.fetch(topic, partition, offset, FETCH_BYTES);
      } catch (error) {
        // The log start moved (segments deleted) since ListOffsets: start over from the new one.
        if (error instanceof OffsetOutOfRangeError) {
          const now = (await fetchEndOffsets(admin, topic, deadlineMs)).find((entry) => entry.partition === partition);
          offset = BigInt(now?.low ?? end);
          continue;
        }
        throw error;
      }
      fetches += 1;
      try {
        for (const message of fetched.messages) {
          if (BigInt(message.offset) >= end) break;
          entries += 1;
          // One key lives in one partition, read in order: the last entry wins, as after compaction.
          apply(message);
        }
      } catch (error) {
        throw new StoreUnavailableError(`${options.what} topic ${topic} partition ${partition}: ${(error as Error).message}`, error);
      }
      if (fetched.nextOffset > offset) offset = fetched.nextOffset;
      else if (fetched.lastStableOffset > offset) offset += 1n; // an emptied batch left by compaction
      else await sleep(RETRY_DELAY_MS);
    }
    reached.set(partition, end > offset ? end : offset);
  }
  return { reached, entries, fetches };
}

/** The whole high-water map, read from the beginning. */
export async function readHighWater(options: ReadHighWaterOptions): Promise<Map<string, HeldTopic>> {
  const startedAtMs = Date.now();
  const held = new Map<string, HeldTopic>();
  const { reached, entries, fetches } = await readCompacted({ ...options, what: 'high-water' }, (message) => {
    const { key, held: entry } = decodeHighWater(message);
    if (entry === undefined) held.delete(key);
    else held.set(key, entry);
  });
  options.logger?.info(
    { topic: options.topic, partitions: reached.size, entries, topics: held.size, fetches, durationMs: Date.now() - startedAtMs },
    'high water recovered from Kafka',
  );
  return held;
}
