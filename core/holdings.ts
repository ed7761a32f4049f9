/**
 * Holdings digests: how a sender learns, in a few bytes, how far a destination already holds
 * its stream, when the destination got those records some other way (a ship's records that
 * reached Singapore through Tokyo before the ship did).
 *
 * Every topic gets a 64-bit weight, a hash of (seed, stream, topic) with a seed the sender
 * picks per question. A site's *holdings* of an origin in a stream are summed up as
 *
 *     digest(origin) = Σ weight(topic) × nextOffset(topic)   (mod 2^64)
 *
 * over the topics whose last record has that origin. Offsets are dense, so a topic's next
 * offset says exactly which of its records a site holds, and two sites' sums are equal (but
 * for a chance of 2^-64 per comparison) only when they hold the same topics to the same
 * offsets. The sender computes the same sum over each prefix of its own stream, one step per
 * record (a record of topic X moves X's next offset by one), and where its prefix sum equals
 * the destination's digest, the destination holds exactly that prefix: the sender resumes
 * there. One number per (stream, origin) crosses the link, however many topics.
 */
import { createHash } from 'node:crypto';
import type { LogRecord, TopicHighWater } from './record.js';

export const DIGEST_MASK = (1n << 64n) - 1n;

/** What the forwarder and the holdings endpoint need of a log besides reading its stream. */
export interface TopicCatalog {
  /** Every topic of the stream with its next offset (in memory for the embedded log). */
  listTopics(stream: string): TopicHighWater[];
  latest(stream: string, topic: string): Promise<LogRecord | undefined>;
}

/** One origin's holdings in one stream. */
export interface HoldingsDigest {
  readonly topics: number;
  /** Σ next offsets: how many records (held or since removed by retention). */
  readonly records: number;
  /** Σ weight × next offset mod 2^64, 16 hex digits. */
  readonly digest: string;
}

export function topicWeight(seed: string, stream: string, topic: string): bigint {
  const hash = createHash('sha256').update(seed).update('\u0000').update(stream).update('\u0000').update(topic).digest();
  // An even weight would lose the top bit of the product's information; odd ones are invertible mod 2^64.
  return hash.readBigUInt64BE(0) | 1n;
}

export function digestHex(sum: bigint): string {
  return (sum & DIGEST_MASK).toString(16).padStart(16, '0');
}

/**
 * The origin of each topic's last record, cached by the topic's next offset so that asking
 * again reads only the topics that moved since.
 */
export class TopicOrigins {
  private readonly cache = new Map<string, { nextOffset: number; record: LogRecord | undefined }>();

  constructor(private readonly catalog: TopicCatalog) {}

  /** The topic's last record (undefined when retention removed it), as of `nextOffset`. */
  async last(stream: string, topic: string, nextOffset: number): Promise<LogRecord | undefined> {
    const key = `${stream}\u0000${topic}`;
    const cached = this.cache.get(key);
    if (cached !== undefined && cached.nextOffset === nextOffset) return cached.record;
    let record = await this.catalog.latest(stream, topic);
    // Drop the payload: only the identity (and what a link's filter looks at) is kept.
    if (record !== undefined) record = { ...record, payload: new Uint8Array(0) };
    this.cache.set(key, { nextOffset: record === undefined ? nextOffset : record.offset + 1, record });
    return record;
  }
}

/**
 * A site's holdings digest per origin for one stream (the destination's side), over the
 * topics whose last record has one of `origins`.
 */
export async function holdingsDigests(
  catalog: TopicCatalog,
  origins: TopicOrigins,
  stream: string,
  wanted: readonly string[],
  seed: string,
): Promise<Record<string, HoldingsDigest>> {
  const sums = new Map<string, { topics: number; records: number; sum: bigint }>();
  for (const origin of wanted) sums.set(origin, { topics: 0, records: 0, sum: 0n });
  for (const { topic, nextOffset } of catalog.listTopics(stream)) {
    if (nextOffset === 0) continue;
    const last = await origins.last(stream, topic, nextOffset);
    if (last === undefined) continue;
    const entry = sums.get(last.origin);
    if (entry === undefined) continue;
    entry.topics += 1;
    entry.records += nextOffset;
    entry.sum = (entry.sum + topicWeight(seed, stream, topic) * BigInt(nextOffset)) & DIGEST_MASK;
  }
  const result: Record<string, HoldingsDigest> = {};
  for (const [origin, entry] of sums) result[origin] = { topics: entry.topics, records: entry.records, digest: digestHex(entry.sum) };
  return result;
}
