/**
 * A TopicReader that serves only what a RecordFilter admits, at the records' own identity
 * offsets. Reading a page scans the underlying topic from `from` and skips what is not
 * admitted, so a page holds the first admitted records at or after `from` (and its
 * `nextOffset`, one past the last record returned, never points past a record the reader
 * did not see). `latest` is the last admitted record. Both scan at most `maxScanRecords`
 * records per call; beyond that the answer is what was found so far (never more).
 */
import type { LogRecord, ReadLimits, RecordFilter, TopicReader } from '../../core/index.js';

export const DEFAULT_MAX_SCAN_RECORDS = 100_000;
const CHUNK = 1000;
/** Payload bytes one scan step reads at most (records may be up to the gateway's packet size). */
const CHUNK_BYTES = 4 * 1024 * 1024;

/** A reader that holds nothing: what a missing, unknown or revoked token reads. */
export const EMPTY_READER: TopicReader = {
  latest: () => Promise.resolve(undefined),
  readTopic: () => Promise.resolve([]),
};

export class FilteredTopicReader implements TopicReader {
  constructor(
    private readonly inner: TopicReader,
    private readonly filter: RecordFilter,
    private readonly maxScanRecords = DEFAULT_MAX_SCAN_RECORDS,
  ) {}

  async latest(stream: string, topic: string): Promise<LogRecord | undefined> {
    if (!this.filter.mayHold(stream, topic)) return undefined;
    const last = await this.inner.latest(stream, topic);
    if (last === undefined) return undefined;
    const admitted = this.filter.admit(last);
    if (admitted !== undefined) return admitted;
    // Walk back from the end a chunk at a time, reading each chunk forward.
    let end = last.offset;
    let scanned = 1;
    while (end > 0 && scanned < this.maxScanRecords) {
      const start = Math.max(0, end - CHUNK);
      let found: LogRecord | undefined;
      let from = start;
      let held = true;
      while (from < end) {
        const records = await this.inner.readTopic(stream, topic, from, { maxRecords: end - from, maxBytes: CHUNK_BYTES });
        if (records.length === 0) break;
        // Retention may have removed the start of the topic: nothing older is held.
        if (from === start && records[0]!.offset > start) held = false;
        for (const record of records) {
          if (record.offset >= end) break;
          const seen = this.filter.admit(record);
          if (seen !== undefined) found = seen;
        }
        from = records.at(-1)!.offset + 1;
      }
      scanned += end - start;
      if (found !== undefined) return found;
      if (!held) return undefined;
      end = start;
    }
    return undefined;
  }

  async readTopic(stream: string, topic: string, fromOffset: number, limits: ReadLimits = {}): Promise<LogRecord[]> {
    if (!this.filter.mayHold(stream, topic)) return [];
    const maxRecords = limits.maxRecords ?? Number.POSITIVE_INFINITY;
    const maxBytes = limits.maxBytes ?? Number.POSITIVE_INFINITY;
    const page: LogRecord[] = [];
    let bytes = 0;
    let from = fromOffset;
    let scanned = 0;
    while (scanned < this.maxScanRecords) {
      const want = Math.min(CHUNK, this.maxScanRecords - scanned);
      const records = await this.inner.readTopic(stream, topic, from, { maxRecords: want, maxBytes: CHUNK_BYTES });
      if (records.length === 0) break;
      scanned += records.length;
      for (const record of records) {
        const admitted = this.filter.admit(record);
        if (admitted === undefined) continue;
        if (page.length > 0 && bytes + admitted.payload.byteLength > maxBytes) return page;
        page.push(admitted);
        bytes += admitted.payload.byteLength;
        if (page.length >= maxRecords) return page;
      }
      from = records.at(-1)!.offset + 1;
    }
    return page;
  }
}
