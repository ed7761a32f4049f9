/** What travels between sites, whatever the wire format version. */
import type { LogRecord } from '../../core/index.js';

export const BATCH_CONTENT_TYPE = 'application/vnd.portcall.batch';

export interface Batch {
  /** The site that sends the batch (which may relay records of other origins). */
  readonly sender: string;
  readonly records: readonly LogRecord[];
}

export interface DecodedBatch extends Batch {
  /** Wire format version the batch came in. */
  readonly version: 1 | 2;
}

export interface DecodeLimits {
  readonly maxDecompressedBytes: number;
  readonly maxRecords: number;
}
