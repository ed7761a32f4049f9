/**
 * A stream's append order on Kafka: the `StreamSource` positions of a Kafka-backed site.
 *
 * The problem. A stream's records are spread over the partitions of its data topic, and
 * Kafka orders records only within a partition; several transactions (one per sending site)
 * write the partitions at the same time, so no Kafka offset, nor any arithmetic on the
 * offsets of several partitions, says "every record committed before this one". A forwarder
 * or the portal's projector needs exactly that: a single number it can store and resume
 * from, that never lets a record committed later slip in behind it.
 *
 * The design. Every transaction that stores records of a stream also writes, in the same
 * transaction and after its data, one *journal entry* per stream to the stream's journal
 * topic `<prefix>.<stream>.journal`, which has ONE partition. The entry lists the Kafka
 * ranges (data topic, partition, first offset, count) that the transaction's records of the
 * stream occupy: kafkajs writes one record batch per partition per produce request, and a
 * record batch occupies consecutive offsets, so each range holds exactly this transaction's
 * records and nothing else. The entry also says, per record in the order the site took them,
 * which range holds it (one byte per record), so a transaction's records across partitions
 * come back in the order they were appended. The journal is the order:
 *
 *   position of the k-th record (k from 0) of the entry at journal offset j = j × 2^16 + k + 1
 *
 * (an entry holds at most 2^16 − 1 records; a larger transaction writes several entries).
 * Position 0 is "before everything". Positions increase along the journal but are not dense
 * (a journal offset is skipped by aborted entries and commit markers; lag is not
 * `end − position`). Journal offsets reach 2^37 before positions leave the safe integers:
 * at 100 transactions per second per stream, over 40 years.
 *
 * Invariants, and why they hold:
 * 1. Exactly the committed records. The journal is read read_committed: an entry is seen if
 *    and only if its transaction committed, and then all of its ranges are committed data
 *    (same transaction). Ranges are read at their exact offsets (read_uncommitted there, so a
 *    reader is not held back by another sender's transaction still open on the same data
 *    partition); records outside the ranges are never taken, so aborted copies never are.
 * 2. Durable and resumable. A position names a journal offset and an index within its
 *    entry, both fixed in Kafka forever: a cursor stored anywhere (the consumer-cursor topic,
 *    another process) means the same records after a crash, a restart, a lost topic index or
 *    at another ingest instance of the site.
 * 3. Nothing slips in behind a cursor. read_committed stops at the journal's last stable
 *    offset: an entry of a transaction still open lies at or after it, so a reader never
 *    passes a journal offset whose transaction may still commit. An entry is written just
 *    before the commit, so the journal is held back only for that moment (or, when an ingest
 *    process dies between the two, until its transactional id is registered again by a
 *    restart or another instance, at most `transaction.timeout.ms`, 60 s).
 * 4. Per-topic order. A logical topic's records are written by one transaction at a time at
 *    an instance (transactions claim their topics), and a later transaction's entry is
 *    written after the earlier one committed, so journal order keeps each topic's offset
 *    order; within an entry, records are in the order they were appended.
 * 5. No scan. A read fetches the journal from the position's entry and then only the ranges
 *    it names: it never reads another stream, nor records of the stream outside its page.
 *
 * Records committed before the journal existed (a site upgraded from an earlier version)
 * have no entry and are not part of the stream order; reads by topic still find them.
 */
import type { LogRecord } from '../../core/index.js';

/** Record slots per journal entry; positions are `journalOffset × SLOTS + index + 1`. */
export const JOURNAL_SLOTS = 65_536;
/** The most records one journal entry lists. */
export const MAX_ENTRY_RECORDS = JOURNAL_SLOTS - 1;
export const JOURNAL_FORMAT = 1;

export function journalTopicName(prefix: string, stream: string): string {
  return `${prefix}.${stream}.journal`;
}

/** Consecutive Kafka offsets of one partition holding one transaction's records of a stream. */
export interface JournalRange {
  readonly kafkaTopic: string;
  readonly partition: number;
  readonly firstKafkaOffset: bigint;
  readonly count: number;
}

export interface JournalEntry {
  readonly records: number;
  readonly ranges: readonly JournalRange[];
  /**
   * The range of each record, in the order the site appended them (a range index per record):
   * the records of one transaction go to several partitions, and this keeps their order across
   * partitions (1 byte per record, 2 past 256 ranges).
   */
  readonly order: Uint8Array | Uint16Array;
}

/**
 * A transaction's records of one stream, as entries of at most `maxRecords` records each:
 * `ranges` are where they went, `order` the range of each record in append order (the k-th
 * record of range r is at `firstKafkaOffset + k`).
 */
export function journalEntries(ranges: readonly JournalRange[], order: ArrayLike<number>, maxRecords = MAX_ENTRY_RECORDS): JournalEntry[] {
  const entries: JournalEntry[] = [];
  const used = new Array<number>(ranges.length).fill(0);
  for (let start = 0; start < order.length; start += maxRecords) {
    const end = Math.min(order.length, start + maxRecords);
    const local = new Map<number, number>();
    const localRanges: { kafkaTopic: string; partition: number; firstKafkaOffset: bigint; count: number }[] = [];
    const indexes: number[] = [];
    for (let k = start; k < end; k += 1) {
      const r = order[k]!;
      let l = local.get(r);
      if (l === undefined) {
        l = localRanges.length;
        local.set(r, l);
        const range = ranges[r]!;
        localRanges.push({ kafkaTopic: range.kafkaTopic, partition: range.partition, firstKafkaOffset: range.firstKafkaOffset + BigInt(used[r]!), count: 0 });
      }
      localRanges[l]!.count += 1;
      used[r]! += 1;
      indexes.push(l);
    }
    entries.push({ records: end - start, ranges: localRanges, order: localRanges.length <= 256 ? Uint8Array.from(indexes) : Uint16Array.from(indexes) });
  }
  return entries;
}

export function encodeJournalEntry(entry: JournalEntry): string {
  const width = entry.order instanceof Uint8Array ? 1 : 2;
  const bytes = width === 1 ? Buffer.from(entry.order.buffer, entry.order.byteOffset, entry.order.byteLength) : Buffer.alloc(entry.order.length * 2);
  if (width === 2) entry.order.forEach((value, index) => bytes.writeUInt16LE(value, index * 2));
  return JSON.stringify({
    v: JOURNAL_FORMAT,
    records: entry.records,
    ranges: entry.ranges.map((range) => [range.kafkaTopic, range.partition, range.firstKafkaOffset.toString(), range.count]),
    width,
    order: bytes.toString('base64'),
  });
}

export function decodeJournalEntry(value: Buffer | null, where: string): JournalEntry {
  if (value === null) throw new Error(`journal entry ${where} has no value`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (error) {
    throw new Error(`journal entry ${where} is not JSON: ${(error as Error).message}`);
  }
  const { v, records, ranges, width, order } = (parsed ?? {}) as { v?: unknown; records?: unknown; ranges?: unknown; width?: unknown; order?: unknown };
  if (v !== JOURNAL_FORMAT || typeof records !== 'number' || !Array.isArray(ranges) || (width !== 1 && width !== 2) || typeof order !== 'string') {
    throw new Error(`journal entry ${where} is not a version ${JOURNAL_FORMAT} entry`);
  }
  const decoded = ranges.map((range: unknown) => {
    if (!Array.isArray(range) || range.length !== 4) throw new Error(`journal entry ${where} has a malformed range`);
    const [kafkaTopic, partition, first, count] = range as unknown[];
    if (typeof kafkaTopic !== 'string' || !Number.isSafeInteger(partition) || typeof first !== 'string' || !/^\d+$/.test(first) || !Number.isSafeInteger(count)) {
      throw new Error(`journal entry ${where} has a malformed range`);
    }
    return { kafkaTopic, partition: partition as number, firstKafkaOffset: BigInt(first), count: count as number };
  });
  const bytes = Buffer.from(order, 'base64');
  const indexes = width === 1 ? new Uint8Array(bytes) : Uint16Array.from({ length: bytes.length / 2 }, (_unused, index) => bytes.readUInt16LE(index * 2));
  const counts = new Array<number>(decoded.length).fill(0);
  for (const index of indexes) {
    if (index >= decoded.length) throw new Error(`journal entry ${where}: order names range ${index} of ${decoded.length}`);
    counts[index]! += 1;
  }
  if (indexes.length !== records || records > MAX_ENTRY_RECORDS || decoded.some((range, index) => range.count !== counts[index])) {
    throw new Error(`journal entry ${where}: its order and ranges do not agree with its ${String(records)} records`);
  }
  return { records, ranges: decoded, order: indexes };
}

/** Where reading resumes after `position`: the journal offset of its entry and how many of that entry's records were taken. */
export function splitPosition(position: number): { journalOffset: bigint; taken: number } {
  const safe = Math.max(0, Math.floor(position));
  return { journalOffset: BigInt(Math.floor(safe / JOURNAL_SLOTS)), taken: safe % JOURNAL_SLOTS };
}

/** The position of the record after which `taken` records of the entry at `journalOffset` have been read. */
export function positionOf(journalOffset: bigint, taken: number): number {
  return Number(journalOffset) * JOURNAL_SLOTS + taken;
}

/** A page being filled under record and byte limits (always at least one record). */
export class PageFill {
  readonly records: LogRecord[] = [];
  private bytes = 0;

  constructor(
    private readonly maxRecords: number,
    private readonly maxBytes: number,
  ) {}

  /** False when the record does not fit (nothing taken). */
  take(record: LogRecord): boolean {
    if (this.full()) return false;
    if (this.records.length > 0 && this.bytes + record.payload.byteLength > this.maxBytes) {
      this.bytes = Infinity;
      return false;
    }
    this.records.push(record);
    this.bytes += record.payload.byteLength;
    return true;
  }

  full(): boolean {
    return this.records.length >= this.maxRecords || this.bytes >= this.maxBytes;
  }
}
