/**
 * The Kafka log compresses the record batches it writes as configured (LZ4 by default, gzip,
 * or none), and one topic holding batches of all three reads back whole: through the Kafka
 * log's own reads (its topic index rebuilt from Kafka), and through a kafkajs consumer. Which
 * codec a batch carries is seen where a reader decodes it: kafkajs looks a batch's codec up
 * in its codec table by the batch's attributes and calls that codec's `decompress` only for
 * a compressed batch, so the table's entries are wrapped here to count those calls.
 * (test/kafka-kcat.test.ts reads the default, LZ4, with librdkafka.)
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { KafkaLog } from '../cloud/kafka-log/index.js';
import type { LogRecord } from '../core/index.js';
import { containerRecord, describeKafka, kafkaBootstrap } from './support/kafka.js';
import { header, readBackCommitted } from './support/kafka-readback.js';

type Codec = { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> };
const require = createRequire(import.meta.url);
const codecTable = (require('kafkajs/src/protocol/message/compression/index.js') as { Codecs: Record<number, () => Codec> }).Codecs;
const GZIP = 1;
const LZ4 = 3;

const decompressed = { [GZIP]: 0, [LZ4]: 0 };
const originals = new Map<number, () => Codec>();
beforeAll(() => {
  for (const id of [GZIP, LZ4] as const) {
    const original = codecTable[id]!;
    originals.set(id, original);
    codecTable[id] = () => {
      const codec = original();
      return {
        compress: (encoder) => codec.compress(encoder),
        decompress: (buffer) => {
          decompressed[id] += 1;
          return codec.decompress(buffer);
        },
      };
    };
  }
});
afterAll(() => {
  for (const [id, original] of originals) codecTable[id] = original;
});

describeKafka('Kafka log compression', () => {
  it('writes LZ4, gzip or uncompressed batches as configured, and a topic holding all three reads back whole', { timeout: 60_000 }, async () => {
    const bootstrap = kafkaBootstrap()!;
    const topicPrefix = `compress-${randomUUID().slice(0, 8)}`;
    const siteId = `TOKYO-${randomUUID().slice(0, 6)}`;
    const containers = ['MSKU0000001', 'MSKU0000002', 'MSKU0000003'];
    const written: LogRecord[] = [];
    /** What reading the whole data topic back decompresses, per codec. */
    const readWhole = async (): Promise<{ records: number; gzip: number; lz4: number }> => {
      const before = { ...decompressed };
      const read = await readBackCommitted(bootstrap, `${topicPrefix}.containers`);
      return { records: read.length, gzip: decompressed[GZIP] - before[GZIP], lz4: decompressed[LZ4] - before[LZ4] };
    };

    const seen: { records: number; gzip: number; lz4: number }[] = [];
    for (const [phase, compression] of (['lz4', 'gzip', 'none'] as const).entries()) {
      const log = await KafkaLog.open({ siteId, brokers: [bootstrap], streams: ['containers'], partitions: 2, topicPrefix, compression });
      try {
        // Two calls a phase, so a phase writes more than one transaction's batches.
        for (const half of [0, 1]) {
          const records = containers.flatMap((topic) => Array.from({ length: 50 }, (_, i) => containerRecord(topic, phase * 100 + half * 50 + i, 150)));
          expect(await log.replicate(records)).toMatchObject({ stored: records.length, duplicates: 0 });
          written.push(...records);
        }
      } finally {
        await log.close();
      }
      seen.push(await readWhole());
    }

    const [afterLz4, afterGzip, afterNone] = seen as [(typeof seen)[0], (typeof seen)[0], (typeof seen)[0]];
    expect(afterLz4).toMatchObject({ records: 300, gzip: 0 });
    expect(afterLz4.lz4).toBeGreaterThan(0);
    expect(afterGzip.records).toBe(600);
    expect(afterGzip.lz4).toBe(afterLz4.lz4);
    expect(afterGzip.gzip).toBeGreaterThan(0);
    // The uncompressed phase added 300 records and not one compressed batch.
    expect(afterNone).toEqual({ ...afterGzip, records: 900 });

    // Headers survive compression: each record's identity is where a consumer looks for it.
    const read = await readBackCommitted(bootstrap, `${topicPrefix}.containers`);
    const identities = read.map(({ message }) => `${header(message, 'pc-topic') ?? '?'}@${header(message, 'pc-offset') ?? '?'}`).sort();
    expect(identities).toEqual(written.map((record) => `${record.topic}@${record.offset}`).sort());

    // A new instance rebuilds its topic index from all three kinds of batch and reads each container whole.
    const reader = await KafkaLog.open({ siteId: `${siteId}-reader`, brokers: [bootstrap], streams: ['containers'], topicPrefix });
    try {
      for (const topic of containers) {
        expect(await reader.readTopic('containers', topic, 0, { maxRecords: 1000 })).toEqual(written.filter((record) => record.topic === topic));
      }
    } finally {
      await reader.close();
    }
  });
});
