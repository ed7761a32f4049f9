/**
 * Compression of the record batches the Kafka log writes, and the LZ4 codec kafkajs lacks.
 *
 * Why compress at all: the broker validates every record of an uncompressed batch by
 * parsing it whole, key and each of our nine headers included, which made records of our
 * shape cost it 1.6-2x the CPU of ProducerPerformance's bare ones. A compressed batch it
 * keeps as it came (the topic's `compression.type` is `producer`), and it then checks only
 * each record's offset and time, skipping keys, values and headers.
 * Measured with Kafka's own Java producer and our record shape (2026-11-24, 1,000,000
 * records): broker 2.2-3.6 µs/record uncompressed, 0.8-1.7 with LZ4, and the producer's rate
 * 178,000-194,000 against 293,000-335,000 records/s. LZ4 and snappy did best (snappy 1.2
 * µs/record, 324,000 records/s; gzip left the producer slower, zstd the broker busier); LZ4
 * is the default, and gzip, which kafkajs has built in, is offered too. Compressed batches
 * also take less disk and replication traffic: 100,000 readings took 391 bytes a record
 * uncompressed, 68 with LZ4, 40 with gzip (docs/KAFKA.md).
 *
 * kafkajs looks codecs up in a table it exports (`CompressionCodecs`), for its own encoding
 * and for decoding fetched batches, so registering LZ4 there makes every reader in this
 * process (the topic index's catch-up, topic reads, the journals) read LZ4 batches, whoever
 * wrote them: the Java client and librdkafka (kcat) write the same LZ4 frame format.
 */
import { createRequire } from 'node:module';

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

interface Lz4Napi {
  compressFrame(data: Uint8Array): Promise<Buffer>;
  decompressFrame(data: Uint8Array): Promise<Buffer>;
}

/**
 * lz4-napi ships prebuilt binaries for the usual platforms; where none loads, LZ4 is missing
 * (the reason kept for the error), and a log configured for it refuses to open.
 */
const lz4 = ((): Lz4Napi | Error => {
  try {
    return require('lz4-napi') as Lz4Napi;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
})();

/** Why this process cannot write or read LZ4 batches, or undefined when it can. */
export const lz4Unavailable: string | undefined = lz4 instanceof Error ? lz4.message.split('\n')[0] : undefined;

interface CompressionModule {
  readonly Codecs: Record<number, () => KafkajsCodec>;
  readonly lookupCodec: (type: number) => KafkajsCodec | null;
}

/** kafkajs's codec table: the same object `kafkajs.CompressionCodecs` is. */
const compressionModule = require('kafkajs/src/protocol/message/compression/index.js') as CompressionModule;
const lz4Codec: KafkajsCodec | undefined =
  lz4 instanceof Error
    ? undefined
    : {
        compress: async (encoder) => lz4.compressFrame(encoder.buffer),
        decompress: async (buffer) => lz4.decompressFrame(buffer),
      };

/**
 * Makes sure kafkajs's codec table has an LZ4 codec: ours, unless one is there already
 * (another package's, or a wrapper of ours), which is left in place. Done when this module
 * loads, for the Kafka log. Any other kafkajs client in the process reading the Kafka log's
 * topics needs it too, as a third party's kafkajs consumer needs a codec package:
 * tools/kafka/readback.ts calls it. False when there is none and ours cannot load here
 * (`lz4Unavailable` says why).
 */
export function registerLz4Codec(): boolean {
  if (codecFor(COMPRESSION_CODEC_IDS.lz4) !== undefined) return true;
  if (lz4Codec === undefined) return false;
  compressionModule.Codecs[COMPRESSION_CODEC_IDS.lz4] = () => lz4Codec;
  return true;
}

/** The codec kafkajs would use for a record batch's codec number, if it has one. */
export function codecFor(codecId: number): KafkajsCodec | undefined {
  try {
    return compressionModule.lookupCodec(codecId) ?? undefined;
  } catch {
    // kafkajs's placeholders for codecs it does not have throw KafkaJSNotImplemented.
    return undefined;
  }
}

registerLz4Codec();
