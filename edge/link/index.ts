export { Http2Link, SLOW_LINK_BYTES_PER_SECOND, type BatchPosition, type Http2LinkOptions, type Http2LinkTls, type SendOptions, type SendReport } from './http2-link.js';
export {
  encodeBatch,
  decodeBatch,
  BATCH_CONTENT_TYPE,
  Compression,
  type Batch,
  type DecodedBatch,
  type DecodeLimits,
} from './wire.js';
export { encodeBatchV2, CompressionV2, type EncodeV2Options } from './wire-v2.js';
export { Pacer, type BodySink } from './pacer.js';
