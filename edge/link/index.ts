export { HttpUplink, type HttpUplinkOptions, type SendReport } from './http-uplink.js';
export { encodeBatch, decodeBatch, BATCH_CONTENT_TYPE, Compression, type Batch, type DecodeLimits } from './wire.js';
