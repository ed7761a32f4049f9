/**
 * The Kafka log's topic index remembers each topic's last span so that extending it costs no
 * SELECT. Model-based: any sequence of `record` calls (runs that extend a span, jump, change
 * partition, outgrow the span limit, or repeat older runs as a re-index after a crash does)
 * leaves the file exactly as an index that reads every last span from the file would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { TopicIndex, type Run } from '../cloud/kafka-log/topic-index.js';

const dir = mkdtempSync(join(tmpdir(), 'portcall-topic-index-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MAX_SPAN = 50;
let files = 0;

function spansOf(path: string): unknown[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare(`SELECT * FROM spans ORDER BY stream, topic, first_offset`).all();
  } finally {
    db.close();
  }
}

/** What a step of a topic does to its next run, relative to the topic's last one. */
const stepArbitrary = fc.record({
  topic: fc.constantFrom('Y01', 'Y02', 'B01'),
  records: fc.integer({ min: 1, max: 8 }),
  offsetJump: fc.constantFrom(0, 0, 0, 1, 5, -3),
  kafkaGap: fc.integer({ min: 1, max: 30 }),
  partition: fc.constantFrom(0, 0, 0, 1),
});

/** Turns steps into runs: each topic's offsets and each partition's Kafka offsets move forward, except where a step goes back. */
function runsOf(steps: readonly (typeof stepArbitrary extends fc.Arbitrary<infer T> ? T : never)[][]): Run[][] {
  const nextOffset = new Map<string, number>();
  const kafkaEnd = new Map<number, bigint>();
  return steps.map((call) =>
    call.map((step) => {
      const firstOffset = Math.max(0, (nextOffset.get(step.topic) ?? 0) + step.offsetJump);
      const lastOffset = firstOffset + step.records - 1;
      nextOffset.set(step.topic, lastOffset + 1);
      const firstKafkaOffset = (kafkaEnd.get(step.partition) ?? 0n) + BigInt(step.kafkaGap);
      const lastKafkaOffset = firstKafkaOffset + BigInt(step.records - 1);
      kafkaEnd.set(step.partition, lastKafkaOffset);
      return { stream: 'containers', topic: step.topic, firstOffset, lastOffset, kafkaTopic: 'data', partition: step.partition, firstKafkaOffset, lastKafkaOffset };
    }),
  );
}

describe('topic index: remembered last spans', () => {
  it('writes the same spans as an index that reads every last span from the file', () => {
    fc.assert(
      fc.property(fc.array(fc.array(stepArbitrary, { minLength: 0, maxLength: 6 }), { minLength: 1, maxLength: 12 }), (steps) => {
        const fresh = runsOf(steps);
        // Now and then a call is indexed again verbatim, as a catch-up after a crash does.
        const calls = fresh.flatMap((runs, at) => (at % 4 === 3 ? [runs, fresh[at - 2]!] : [runs]));
        files += 1;
        const rememberingPath = join(dir, `remembering-${files}.sqlite`);
        const readingPath = join(dir, `reading-${files}.sqlite`);
        const remembering = new TopicIndex({ path: rememberingPath, identity: 'test', maxSpanKafkaOffsets: MAX_SPAN });
        try {
          for (const runs of calls) {
            remembering.record(runs, []);
            // The model: an index opened afresh for every call, so it reads every last span from the file.
            const reading = new TopicIndex({ path: readingPath, identity: 'test', maxSpanKafkaOffsets: MAX_SPAN });
            try {
              reading.record(runs, []);
            } finally {
              reading.close();
            }
          }
        } finally {
          remembering.close();
        }
        expect(spansOf(rememberingPath)).toEqual(spansOf(readingPath));
      }),
      { numRuns: 300 },
    );
  });
});
