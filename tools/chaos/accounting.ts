/**
 * The chaos run's accounting: every site read back through its own read API (every stream,
 * every topic, every record by identity offset), and headquarters' Kafka topics read back
 * `read_committed` as a third-party consumer would, then matched against what the fleet
 * generator published and had acknowledged.
 *
 * - lost: a message acknowledged with PUBACK whose record is missing at a site that should
 *   hold it (every site: the ship, both ports, headquarters). Must be 0.
 * - duplicated: a record identity (origin, stream, topic, offset) held twice at a site, or one
 *   message (its `chaosSeq`) held under two identities at a site. Must be 0.
 * - misplaced: a message's record under another stream or topic than its MQTT topic maps to.
 * - gaps: offsets missing inside a topic at a site (offsets are dense from 0 everywhere).
 */
import { header, readBackCommitted } from '../kafka/index.js';
import type { GeneratedMessage } from './generator.js';
import type { ChaosSite } from './site-process.js';

export interface SiteAccount {
  readonly site: string;
  /** Records read back (in the streams the fleet writes). */
  readonly records: number;
  /** Generated messages found, each counted once. */
  readonly delivered: number;
  /** Of those, messages never acknowledged (stored, but the PUBACK was lost to a fault). */
  readonly deliveredUnacknowledged: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly misplaced: number;
  /** Offsets missing inside a topic (offsets are dense from 0 at every site): a record lost whether or not it was acknowledged. */
  readonly gaps: number;
  /** Records not from the generator (no chaosSeq). */
  readonly foreign: number;
  /** A few examples of each problem, for the report. */
  readonly examples: readonly string[];
}

interface ReadRecord {
  readonly origin: string;
  readonly stream: string;
  readonly topic: string;
  readonly offset: number;
  readonly seq: number | undefined;
}

function seqOf(payload: unknown): number | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const seq = (payload as { chaosSeq?: unknown }).chaosSeq;
  return typeof seq === 'number' ? seq : undefined;
}

/**
 * Every record of the given topics at a site, through the read API (…/records?from=, paged by
 * identity offset), plus any other topic of those streams the site lists in GET
 * /v1/summaries (where it serves them).
 */
export async function readSite(site: ChaosSite, topicsByStream: ReadonlyMap<string, ReadonlySet<string>>): Promise<ReadRecord[]> {
  const records: ReadRecord[] = [];
  const wanted = new Map<string, Set<string>>([...topicsByStream].map(([stream, topics]) => [stream, new Set(topics)]));
  if (await site.servesSummaries()) {
    const listing = await site.getJson<{ streams: { stream: string }[] }>('/v1/summaries');
    for (const { stream } of listing.streams) {
      const topics = wanted.get(stream);
      if (topics === undefined) continue;
      for (let after: string | null = '', pages = 0; after !== null && pages < 10_000; pages += 1) {
        const page: { topics: { topic: string }[]; after: string | null } = await site.getJson(`/v1/summaries/${stream}?after=${encodeURIComponent(after)}`, 120_000);
        for (const entry of page.topics) topics.add(entry.topic);
        after = page.after;
      }
    }
  }
  for (const [stream, topics] of wanted) {
    for (const topic of topics) {
      // Bounded: a page holds at least one record, and no topic holds more than 10^8.
      for (let from = 0, pages = 0; pages < 100_000; pages += 1) {
        const page = await site.getJson<{ nextOffset: number; records: { origin: string; stream: string; topic: string; offset: number; payload: unknown }[] } | undefined>(
          `/v1/streams/${stream}/topics/${encodeURIComponent(topic)}/records?from=${from}&maxRecords=1000`,
          120_000,
          true,
        );
        if (page === undefined || page.records.length === 0) break;
        for (const record of page.records) records.push({ origin: record.origin, stream: record.stream, topic: record.topic, offset: record.offset, seq: seqOf(record.payload) });
        from = page.nextOffset;
      }
    }
  }
  return records;
}

/** Every record of headquarters' Kafka topics `<prefix>.<stream>`, read_committed, identity from the headers. */
export async function readKafka(bootstrap: string, prefix: string, streams: readonly string[]): Promise<ReadRecord[]> {
  const records: ReadRecord[] = [];
  for (const stream of streams) {
    const messages = await readBackCommitted(bootstrap, `${prefix}.${stream}`, 600_000);
    for (const { message } of messages) {
      let seq: number | undefined;
      try {
        seq = seqOf(JSON.parse(message.value?.toString('utf8') ?? ''));
      } catch {
        seq = undefined;
      }
      records.push({
        origin: header(message, 'pc-origin') ?? '?',
        stream: header(message, 'pc-stream') ?? '?',
        topic: header(message, 'pc-topic') ?? '?',
        offset: Number(header(message, 'pc-offset') ?? -1),
        seq,
      });
    }
  }
  return records;
}

export function account(site: string, records: readonly ReadRecord[], messages: readonly GeneratedMessage[]): SiteAccount {
  const examples: string[] = [];
  const example = (line: string) => {
    if (examples.length < 10) examples.push(`${site}: ${line}`);
  };
  const identities = new Set<string>();
  const seen = new Map<number, string>();
  let duplicated = 0;
  let misplaced = 0;
  let foreign = 0;
  for (const record of records) {
    const identity = `${record.origin}|${record.stream}|${record.topic}|${record.offset}`;
    if (identities.has(identity)) {
      duplicated += 1;
      example(`identity ${identity} held twice`);
      continue;
    }
    identities.add(identity);
    if (record.seq === undefined) {
      foreign += 1;
      continue;
    }
    const message = messages[record.seq];
    if (message === undefined) {
      foreign += 1;
      continue;
    }
    const earlier = seen.get(record.seq);
    if (earlier !== undefined) {
      duplicated += 1;
      example(`message #${record.seq} (${message.mqttTopic}) held as ${earlier} and as ${identity}`);
      continue;
    }
    seen.set(record.seq, identity);
    if (record.stream !== message.stream || record.topic !== message.topic) {
      misplaced += 1;
      example(`message #${record.seq} (${message.mqttTopic}) held as ${identity}`);
    }
  }
  // Offsets are dense from 0 in every topic at every site: count the holes.
  const offsetsByTopic = new Map<string, number[]>();
  for (const identity of identities) {
    const cut = identity.lastIndexOf('|');
    const key = identity.slice(0, cut);
    let offsets = offsetsByTopic.get(key);
    if (offsets === undefined) offsetsByTopic.set(key, (offsets = []));
    offsets.push(Number(identity.slice(cut + 1)));
  }
  let gaps = 0;
  for (const [key, offsets] of offsetsByTopic) {
    const missing = Math.max(...offsets) + 1 - offsets.length;
    if (missing > 0) {
      gaps += missing;
      example(`${key}: ${missing} offsets missing below ${Math.max(...offsets)}`);
    }
  }
  let lost = 0;
  let deliveredUnacknowledged = 0;
  for (const message of messages) {
    const held = seen.has(message.seq);
    if (message.state === 1 && !held) {
      lost += 1;
      example(`message #${message.seq} (${message.mqttTopic}) acknowledged but missing`);
    }
    if (message.state !== 1 && held) deliveredUnacknowledged += 1;
  }
  return { site, records: records.length, delivered: seen.size, deliveredUnacknowledged, lost, duplicated, misplaced, gaps, foreign, examples };
}
