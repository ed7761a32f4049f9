/**
 * Compression of the record batches the Kafka log writes, and the LZ4 codec kafkajs lacks.
 *
 * Why compress on the shore's own loopback: the broker validates every record of an
 * uncompressed batch by parsing it whole, key and each of our nine headers included, which
 * made records of our shape cost it 1.6-2x the CPU of ProducerPerformance's bare ones. A
 * compressed batch it keeps as it came (the topic's `compression.type` is `producer`), and
 * it then checks only each record's offset and time, skipping keys, values and headers.
 * Measured with Kafka's own Java producer and our record shape (2026-11-24, 1,000,000
 * records): broker 2.2-3.6 µs/record uncompressed, 0.8-1.7 with LZ4, and the producer's rate
 * 178,000-194,000 against 293,000-335,000 records/s. LZ4 is the default: it costs the least
 * CPU on both sides (gzip, which kafkajs has built in, is offered too); the batches also take
 * a fraction of the disk and of the replication traffic.
 *
 * kafkajs looks codecs up in a table it exports (`CompressionCodecs`), for its own encoding
 * and for decoding fetched batches, so registering LZ4 there makes every reader in this
 * process (the topic index's catch-up, topic reads, the journals) read LZ4 batches, whoever
 * wrote them: the Java client and librdkafka (kcat) write the same LZ4 frame format.
 */
import { createRequire } from 'node:module';

import { compressFrame, decompressFrame } from 'lz4-napi';

const require = createRequire(import.meta.url);

/** How the Kafka log compresses the record batches it writes. */
export type KafkaCompression = 'none' | 'gzip' | 'lz4';

export const KAFKA_COMPRESSIONS: readonly KafkaCompression[] = ['none', 'gzip', 'lz4'];

export const DEFAULT_KAFKA_COMPRESSION: KafkaCompression = 'lz4';

/** The codec number in a record batch's attributes (Kafka's, and kafkajs's CompressionTypes). */
export const COMPRESSION_CODEC_IDS: Readonly<Record<KafkaCompression, number>> = { none: 0, gzip: 1, lz4: 3 };

/** kafkajs's codec shape: it hands `compress` its encoder, whose `buffer` holds the records. */
export interface KafkajsCodec {
  compress(encoder: { readonly buffer: Buffer }): Promise<Buffer>;
  decompress(buffer: Buffer): Promise<Buffer>;
}

const lz4Codec: KafkajsCodec = {
  compress: async (encoder) => compressFrame(encoder.buffer),
  decompress: async (buffer) => decompressFrame(buffer),
};

interface CompressionModule {
  readonly Codecs: Record<number, () => KafkajsCodec>;
  readonly lookupCodec: (type: number) => KafkajsCodec | null;
}

/** kafkajs's codec table: the same object `kafkajs.CompressionCodecs` is. */
const compressionModule = require('kafkajs/src/protocol/message/compression/index.js') as CompressionModule;
compressionModule.Codecs[COMPRESSION_CODEC_IDS.lz4] = () => lz4Codec;

/** The codec kafkajs would use for a record batch's codec number, if it has one. */
export function codecFor(codecId: number): KafkajsCodec | undefined {
  try {
    return compressionModule.lookupCodec(codecId) ?? undefined;
  } catch {
    // kafkajs's placeholders for codecs it does not have throw KafkaJSNotImplemented.
    return undefined;
  }
}
