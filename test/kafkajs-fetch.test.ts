/**
 * `committedMessages` (cloud/kafka-log/kafkajs-fetch.ts) keeps of a fetch's messages exactly
 * what kafkajs's consumer `Batch` keeps: the same messages, the same objects, in the same
 * order, whatever the mix of fetched offset, aborted transactions, ABORT and COMMIT markers,
 * producers and offsets on either side of 2^53.
 */
import { createRequire } from 'node:module';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { committedMessages, type AbortedTransaction, type FetchedMessage } from '../cloud/kafka-log/kafkajs-fetch.js';

const require = createRequire(import.meta.url);
const Batch = require('kafkajs/src/consumer/batch.js') as new (
  topic: string,
  fetchedOffset: string,
  partitionData: unknown,
) => { messages: FetchedMessage[]; messagesWithinOffset: FetchedMessage[] };

const ABORT = Buffer.from([0, 0, 0, 0]);
const COMMIT = Buffer.from([0, 0, 0, 1]);
const PRODUCERS = ['1000', '1001', '1002'];

/** One fetch's worth: record batches of a few producers, some transactional, some control batches (markers). */
const fetchArbitrary = fc
  .record({
    base: fc.oneof(fc.bigInt({ min: 0n, max: 1_000n }), fc.bigInt({ min: 2n ** 53n - 40n, max: 2n ** 53n + 40n }), fc.bigInt({ min: 10n ** 17n, max: 10n ** 17n + 1000n })),
    batches: fc.array(
      fc.record({
        gapBefore: fc.nat({ max: 3 }),
        producer: fc.constantFrom(...PRODUCERS),
        inTransaction: fc.boolean(),
        control: fc.constantFrom<'none' | 'abort' | 'commit'>('none', 'none', 'abort', 'commit'),
        records: fc.integer({ min: 1, max: 4 }),
        keyed: fc.constantFrom<'none' | 'text' | 'abort-like'>('none', 'text', 'abort-like'),
      }),
      { maxLength: 12 },
    ),
    fetchedAt: fc.nat({ max: 60 }),
    aborted: fc.array(fc.record({ producer: fc.constantFrom(...PRODUCERS), at: fc.nat({ max: 60 }) }), { maxLength: 4 }),
  })
  .map(({ base, batches, fetchedAt, aborted }) => {
    const messages: FetchedMessage[] = [];
    let offset = base;
    for (const batch of batches) {
      offset += BigInt(batch.gapBefore);
      const batchContext = { producerId: batch.producer, inTransaction: batch.inTransaction };
      for (let i = 0; i < (batch.control === 'none' ? batch.records : 1); i += 1) {
        const key =
          batch.control === 'abort' ? ABORT : batch.control === 'commit' ? COMMIT : batch.keyed === 'text' ? Buffer.from(`C${i}`) : batch.keyed === 'abort-like' ? Buffer.from(ABORT) : null;
        messages.push({ offset: offset.toString(), key, value: Buffer.from('v'), isControlRecord: batch.control !== 'none', batchContext });
        offset += 1n;
      }
    }
    const abortedTransactions: AbortedTransaction[] = aborted
      .map(({ producer, at }) => ({ producerId: producer, firstOffset: (base + BigInt(at)).toString() }))
      .sort((a, b) => (BigInt(a.firstOffset) < BigInt(b.firstOffset) ? -1 : 1));
    return { fetchedOffset: base + BigInt(fetchedAt), messages, abortedTransactions };
  });

describe('committedMessages', () => {
  it('keeps what kafkajs Batch keeps (messagesWithinOffset and messages), the same objects in the same order', () => {
    fc.assert(
      fc.property(fetchArbitrary, ({ fetchedOffset, messages, abortedTransactions }) => {
        const theirs = new Batch('t', fetchedOffset.toString(), { partition: 0, highWatermark: '0', abortedTransactions, messages });
        const ours = committedMessages(fetchedOffset, messages, abortedTransactions);
        expect(ours.withinOffset).toStrictEqual(theirs.messagesWithinOffset);
        expect(ours.withinOffset.every((message, i) => message === theirs.messagesWithinOffset[i])).toBe(true);
        expect(ours.committed).toStrictEqual(theirs.messages);
        expect(ours.committed.every((message, i) => message === theirs.messages[i])).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('drops an aborted transaction up to its ABORT marker and keeps the same producer after it', () => {
    const batchContext = (producerId: string, inTransaction = true) => ({ producerId, inTransaction });
    const message = (offset: number, producerId: string, key: Buffer | null = null, isControlRecord = false): FetchedMessage => ({
      offset: String(offset),
      key,
      value: null,
      isControlRecord,
      batchContext: batchContext(producerId),
    });
    const messages = [message(10, 'A'), message(11, 'B'), message(12, 'A'), message(13, 'A', ABORT, true), message(14, 'A'), message(15, 'B', COMMIT, true)];
    const { withinOffset, committed } = committedMessages(11n, messages, [{ producerId: 'A', firstOffset: '10' }]);
    expect(withinOffset.map((m) => m.offset)).toEqual(['11', '12', '13', '14', '15']);
    expect(committed.map((m) => m.offset)).toEqual(['11', '14']);
  });
});
