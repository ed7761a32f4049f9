/**
 * Where a link can resume a stream when the destination does not remember this sender's
 * positions but may already hold its records, received from another site (a ship arriving at
 * Singapore, which got the ship's records through Tokyo). See core/holdings.ts for the digest.
 *
 * The sender scans its own stream from the link's cursor to the end (locally, no payload
 * crosses the link), asks the destination for one digest per origin of the records it holds,
 * and computes the same sum over every prefix of its stream. For each origin, the last prefix
 * whose sum equals the destination's says the destination holds exactly that origin's records
 * of the prefix; the link resumes just before the first record, of any origin, past its
 * origin's match. Records the link leaves out (split horizon, a filter) do not count.
 * When nothing matches, the cursor stays where it was, which is always safe.
 */
import type { LogRecord, StreamSource } from '../../core/index.js';
import { DIGEST_MASK, topicWeight, type HoldingsDigest, type TopicCatalog, type TopicOrigins } from '../../core/holdings.js';

export interface ResumePointOptions {
  readonly source: StreamSource;
  readonly catalog: TopicCatalog;
  readonly origins: TopicOrigins;
  readonly stream: string;
  /** The link's acknowledged cursor: the scan starts after it. */
  readonly cursor: number;
  readonly include?: (record: LogRecord) => boolean;
  /** Asks the destination for its digests of these origins in the stream. */
  readonly ask: (origins: readonly string[], seed: string) => Promise<Record<string, HoldingsDigest> | undefined>;
  /** Records scanned at most (the scan reads the log, never the link). */
  readonly maxRecords?: number;
}

export interface ResumePoint {
  /** The position to resume after (≥ cursor). */
  readonly position: number;
  readonly scanned: number;
  readonly origins: number;
}

interface Step {
  /** A position after which a resend starts at this record or earlier. */
  readonly before: number;
  readonly topic: number;
  readonly origin: number;
  readonly offset: number;
}

export async function findResumePoint(options: ResumePointOptions): Promise<ResumePoint> {
  const { stream, include } = options;
  const listed = options.catalog.listTopics(stream);
  const steps: Step[] = [];
  const topicIds = new Map<string, number>();
  const topicNames: string[] = [];
  const originIds = new Map<string, number>();
  const originNames: string[] = [];
  const idOf = (map: Map<string, number>, names: string[], name: string) => {
    let id = map.get(name);
    if (id === undefined) {
      id = names.length;
      map.set(name, id);
      names.push(name);
    }
    return id;
  };
  // The first record of each topic past the cursor: its offset is where the topic stood at the cursor.
  const firstAfter = new Map<number, { offset: number; origin: number }>();
  let position = options.cursor;
  let end = options.cursor;
  const maxRecords = options.maxRecords ?? 1_000_000;
  const seed = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let checked = false;
  while (steps.length < maxRecords) {
    const page = await options.source.readStream(stream, position, { maxRecords: Math.min(5000, maxRecords - steps.length), maxBytes: 64 * 1024 * 1024 });
    if (page.records.length === 0) break;
    // Positions are not returned per record: where the page's positions are consecutive each
    // record's is known; otherwise a resend of any of its records starts with the page.
    const dense = page.nextPosition - position === page.records.length;
    for (let index = 0; index < page.records.length; index += 1) {
      const record = page.records[index]!;
      if (include !== undefined && !include(record)) continue;
      const topic = idOf(topicIds, topicNames, record.topic);
      const origin = idOf(originIds, originNames, record.origin);
      if (!firstAfter.has(topic)) firstAfter.set(topic, { offset: record.offset, origin });
      steps.push({ before: dense ? position + index : position, topic, origin, offset: record.offset });
    }
    position = page.nextPosition;
    end = page.nextPosition;
    if (!checked && originNames.length > 0) {
      // Before scanning a long backlog: does the destination hold anything of these origins?
      checked = true;
      const first = await options.ask(originNames, seed);
      if (first === undefined || originNames.every((name) => (first[name]?.records ?? 0) === 0)) {
        return { position: options.cursor, scanned: steps.length, origins: originNames.length };
      }
    }
  }
  if (steps.length === 0) return { position: end, scanned: 0, origins: 0 };

  // Where each topic stood at the cursor, and the origin of its last record there.
  const standing = new Map<number, { next: number; origin: number }>();
  for (const [topic, first] of firstAfter) standing.set(topic, { next: first.offset, origin: first.origin });
  for (const { topic: name, nextOffset } of listed) {
    if (nextOffset === 0) continue;
    const id = topicIds.get(name);
    if (id !== undefined && firstAfter.has(id)) continue;
    const last = await options.origins.last(stream, name, nextOffset);
    if (last === undefined || (include !== undefined && !include(last))) continue;
    standing.set(idOf(topicIds, topicNames, name), { next: last.offset + 1, origin: idOf(originIds, originNames, last.origin) });
  }

  const digests = await options.ask(originNames, seed);
  if (digests === undefined) return { position: options.cursor, scanned: steps.length, origins: originNames.length };
  const wanted = originNames.map((name) => {
    const digest = digests[name]?.digest;
    return digest === undefined || !/^[0-9a-f]{16}$/.test(digest) ? undefined : BigInt(`0x${digest}`);
  });

  const weights = topicNames.map((name) => topicWeight(seed, stream, name));
  const sums = originNames.map(() => 0n);
  for (const [topic, { next, origin }] of standing) sums[origin] = (sums[origin]! + weights[topic]! * BigInt(next)) & DIGEST_MASK;
  // The last step index (−1: at the cursor) at which each origin's prefix sum matched.
  const matchedAt: (number | undefined)[] = originNames.map((_name, origin) => (sums[origin] === wanted[origin] ? -1 : undefined));
  for (let index = 0; index < steps.length; index += 1) {
    const step = steps[index]!;
    const state = standing.get(step.topic) ?? { next: 0, origin: step.origin };
    const weight = weights[step.topic]!;
    sums[state.origin] = (sums[state.origin]! - weight * BigInt(state.next)) & DIGEST_MASK;
    sums[step.origin] = (sums[step.origin]! + weight * BigInt(step.offset + 1)) & DIGEST_MASK;
    if (sums[state.origin] === wanted[state.origin]) matchedAt[state.origin] = index;
    if (sums[step.origin] === wanted[step.origin]) matchedAt[step.origin] = index;
    standing.set(step.topic, { next: step.offset + 1, origin: step.origin });
  }
  // Resume just before the first record past its own origin's match.
  for (let index = 0; index < steps.length; index += 1) {
    const step = steps[index]!;
    const matched = matchedAt[step.origin];
    if (matched === undefined || index > matched) {
      return { position: Math.max(options.cursor, step.before), scanned: steps.length, origins: originNames.length };
    }
  }
  return { position: end, scanned: steps.length, origins: originNames.length };
}
