/**
 * Offline check of a site log: SQLite's own integrity check on both files, then the log's
 * invariants, record by record.
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { indexTable, recordsTable } from './schema.js';
import { indexPathFor } from './sqlite-log.js';

export interface VerifyReport {
  readonly ok: boolean;
  readonly problems: string[];
  readonly streams: number;
  readonly topics: number;
  readonly records: number;
  /** Topics written by a sparse sender (checked for unique offsets, not dense ones). */
  readonly sparseTopics: number;
}

const MAX_PROBLEMS = 100;

/** Verifies the log at `path`. Safe to run while the log is open elsewhere (reads only). */
export function verifyLog(path: string, onProgress?: (line: string) => void): VerifyReport {
  const problems: string[] = [];
  const problem = (text: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push(text);
  };
  const db = new Database(path, { readonly: true, fileMustExist: true });
  const indexPath = indexPathFor(path);
  const index = existsSync(indexPath) ? new Database(indexPath, { readonly: true }) : undefined;
  let records = 0;
  let topicsCount = 0;
  let streamsCount = 0;
  let sparseTopics = 0;
  try {
    // One snapshot per file, the index's taken first: a site writing meanwhile (new topics,
    // retention) then cannot show up half-seen as problems, and every index entry refers to
    // a record the records snapshot holds or retention removed.
    index?.exec('BEGIN');
    index?.prepare(`SELECT count(*) FROM sqlite_master`).get();
    db.exec('BEGIN');
    db.prepare(`SELECT count(*) FROM sqlite_master`).get();
    onProgress?.('verify: SQLite integrity check of the records file…');
    for (const row of db.pragma('integrity_check') as { integrity_check: string }[]) {
      if (row.integrity_check !== 'ok') problem(`records file: ${row.integrity_check}`);
    }
    const streams = db.prepare(`SELECT id, name FROM streams ORDER BY id`).all() as { id: number; name: string }[];
    streamsCount = streams.length;
    const topics = new Map(
      (db.prepare(`SELECT id, stream_id, name, first_offset FROM topics`).all() as {
        id: number;
        stream_id: number;
        name: string;
        first_offset: number;
      }[]).map((row) => [row.id, row]),
    );
    topicsCount = topics.size;
    const sites = new Set((db.prepare(`SELECT id FROM sites`).pluck().all() as number[]));
    // Topics a sparse sender wrote (a filtered feed to a customer's endpoint): offsets must
    // still be unique and the origin's, but may skip, and a late record sits after later ones.
    const hasSparse = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sparse_topics'`).get() !== undefined;
    const sparse = new Set(hasSparse ? (db.prepare(`SELECT topic_id FROM sparse_topics`).pluck().all() as number[]) : []);
    sparseTopics = sparse.size;
    for (const stream of streams) {
      onProgress?.(`verify: stream ${stream.name}: dense offsets and unique identities…`);
      const exists = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(recordsTable(stream.id));
      if (exists === undefined) continue;
      // Ordered by (topic, offset): each topic must run first_offset, first_offset+1, … with
      // no gap and no repeat, and positions must increase with offsets (a sparse topic: no
      // repeat only).
      const rows = db
        .prepare(`SELECT topic_id, topic_offset, position, origin_id FROM ${recordsTable(stream.id)} ORDER BY topic_id, topic_offset`)
        .iterate() as IterableIterator<{ topic_id: number; topic_offset: number; position: number; origin_id: number }>;
      let currentTopic = -1;
      let expected = 0;
      let lastPosition = 0;
      for (const row of rows) {
        records += 1;
        const topic = topics.get(row.topic_id);
        if (topic === undefined || topic.stream_id !== stream.id) {
          problem(`stream ${stream.name}: record at position ${row.position} belongs to no topic of this stream (topic id ${row.topic_id})`);
          continue;
        }
        if (!sites.has(row.origin_id)) problem(`${stream.name}/${topic.name}@${row.topic_offset}: unknown origin id ${row.origin_id}`);
        const isSparse = sparse.has(row.topic_id);
        if (row.topic_id !== currentTopic) {
          currentTopic = row.topic_id;
          // A sparse topic's late record may sit below where retention cut the topic (it
          // arrived after the cut, at a later position): only a repeat is a problem there.
          expected = isSparse ? -1 : topic.first_offset;
          lastPosition = 0;
        }
        if (row.topic_offset < expected) {
          problem(`${stream.name}/${topic.name}: offset ${row.topic_offset} stored twice`);
        } else if (isSparse) {
          // Sparse: a skip is what the feed left out; positions follow arrival, not offsets.
          expected = row.topic_offset + 1;
          continue;
        } else if (row.topic_offset > expected) {
          problem(`${stream.name}/${topic.name}: offsets ${expected}..${row.topic_offset - 1} missing`);
        }
        if (row.position <= lastPosition) {
          problem(`${stream.name}/${topic.name}@${row.topic_offset}: position ${row.position} not after the previous offset's ${lastPosition}`);
        }
        lastPosition = row.position;
        expected = row.topic_offset + 1;
      }
    }
    if (index !== undefined) {
      onProgress?.('verify: topic index against the records…');
      for (const row of index.pragma('integrity_check') as { integrity_check: string }[]) {
        if (row.integrity_check !== 'ok') problem(`index file (derived, rebuildable): ${row.integrity_check}`);
      }
      for (const stream of streams) {
        const hasIndex = index.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(indexTable(stream.id));
        if (hasIndex === undefined) continue;
        const lookup = db.prepare(`SELECT topic_id, topic_offset FROM ${recordsTable(stream.id)} WHERE position = ?`);
        for (const entry of index.prepare(`SELECT topic_id, topic_offset, position FROM ${indexTable(stream.id)}`).iterate() as IterableIterator<{
          topic_id: number;
          topic_offset: number;
          position: number;
        }>) {
          const topic = topics.get(entry.topic_id);
          if (topic !== undefined && entry.topic_offset < topic.first_offset) continue; // retention already removed it
          const record = lookup.get(entry.position) as { topic_id: number; topic_offset: number } | undefined;
          if (record === undefined || record.topic_id !== entry.topic_id || record.topic_offset !== entry.topic_offset) {
            problem(`index: ${stream.name} topic ${entry.topic_id}@${entry.topic_offset} points at position ${entry.position}, which holds ${record === undefined ? 'nothing' : `${record.topic_id}@${record.topic_offset}`}`);
          }
        }
      }
    }
  } finally {
    index?.close();
    db.close();
  }
  return { ok: problems.length === 0, problems, streams: streamsCount, topics: topicsCount, records, sparseTopics };
}
