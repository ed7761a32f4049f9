/**
 * What a stream accepts as payload, and the event time a record gets from it:
 * - `json-reading`: a JSON object; `ts`, if present, is epoch milliseconds or an ISO 8601
 *   string and becomes the record's event time. Sensor readings (containers, ships).
 * - `json`: any JSON document (manifests, alerts); an object's `ts` is used the same way.
 * - `binary`: stored as it came, stamped with ingest time (codecs the gateway does not read).
 */
import { SCAN_OBJECT, SCAN_UNSURE, scanJson, tsFound } from './json-scan.js';

export type PayloadKind = 'json-reading' | 'json' | 'binary';

export type PayloadVerdict =
  | { readonly ok: true; readonly eventTimeMs: number | undefined; readonly document: unknown }
  | { readonly ok: false; readonly reason: 'payload-not-json' | 'payload-not-object' | 'payload-bad-ts'; readonly message: string };

function eventTimeOf(document: unknown): number | undefined | null {
  if (typeof document !== 'object' || document === null || Array.isArray(document)) return undefined;
  const ts = (document as { ts?: unknown }).ts;
  if (ts === undefined) return undefined;
  if (typeof ts === 'number') return Number.isFinite(ts) && ts >= 0 ? Math.trunc(ts) : null;
  if (typeof ts === 'string') {
    const parsed = Date.parse(ts);
    return Number.isNaN(parsed) ? null : parsed;
  }
  return null;
}

/** Largest integer whose decimal digits sum exactly in a double (15 digits stay below 2^53). */
const MAX_EXACT_DIGITS = 15;

/** The event time of a scanned `ts` (see `tsFound`): a number, undefined (none), or null (refused). */
function scannedEventTime(payload: Buffer): number | undefined | null {
  switch (tsFound.kind) {
    case 0:
      return undefined;
    case 1: {
      const { start, end } = tsFound;
      let value = 0;
      let digits = true;
      if (end - start <= MAX_EXACT_DIGITS) {
        for (let i = start; i < end; i += 1) {
          const byte = payload[i]!;
          if (byte < 0x30 || byte > 0x39) {
            digits = false;
            break;
          }
          value = value * 10 + (byte - 0x30);
        }
      } else digits = false;
      // A minus sign, a fraction, an exponent or many digits: as JSON.parse reads it.
      if (!digits) value = Number(payload.toString('latin1', start, end));
      return Number.isFinite(value) && value >= 0 ? Math.trunc(value) : null;
    }
    case 2: {
      // Without escapes; bytes above 0x7f go through UTF-8 decoding, as JSON.parse would see them.
      const parsed = Date.parse(payload.toString('utf8', tsFound.start + 1, tsFound.end - 1));
      return Number.isNaN(parsed) ? null : parsed;
    }
    default:
      return null;
  }
}

const NO_DOCUMENT_NEEDED = { ok: true, eventTimeMs: undefined, document: undefined } as const;

/**
 * `needDocument: false` lets a valid reading through without building its document (the
 * verdict's `document` is then undefined): the bytes are scanned, and parsed only when the
 * scanner is not sure (see json-scan.ts). The verdict is the same either way.
 */
export function checkPayload(kind: PayloadKind, payload: Buffer, needDocument = true): PayloadVerdict {
  if (kind === 'binary') return NO_DOCUMENT_NEEDED;
  if (!needDocument) {
    const shape = scanJson(payload);
    if (shape !== SCAN_UNSURE && (kind === 'json' || shape === SCAN_OBJECT)) {
      const eventTimeMs = shape === SCAN_OBJECT ? scannedEventTime(payload) : undefined;
      if (eventTimeMs !== null) return eventTimeMs === undefined ? NO_DOCUMENT_NEEDED : { ok: true, eventTimeMs, document: undefined };
    }
  }
  let document: unknown;
  try {
    document = JSON.parse(payload.toString('utf8'));
  } catch (error) {
    return { ok: false, reason: 'payload-not-json', message: `payload is not JSON: ${(error as Error).message}` };
  }
  if (kind === 'json-reading' && (typeof document !== 'object' || document === null || Array.isArray(document))) {
    return { ok: false, reason: 'payload-not-object', message: 'a reading must be a JSON object' };
  }
  const eventTimeMs = eventTimeOf(document);
  if (eventTimeMs === null) {
    return { ok: false, reason: 'payload-bad-ts', message: '"ts" must be epoch milliseconds or an ISO 8601 time' };
  }
  return { ok: true, eventTimeMs, document };
}
