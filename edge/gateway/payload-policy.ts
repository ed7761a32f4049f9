/**
 * What a stream accepts as payload, and the event time a record gets from it:
 * - `json-reading`: a JSON object; `ts`, if present, is epoch milliseconds or an ISO 8601
 *   string and becomes the record's event time. Sensor readings (containers, ships).
 * - `json`: any JSON document (manifests, alerts); an object's `ts` is used the same way.
 * - `binary`: stored as it came, stamped with ingest time (codecs the gateway does not read).
 */
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

export function checkPayload(kind: PayloadKind, payload: Buffer): PayloadVerdict {
  if (kind === 'binary') return { ok: true, eventTimeMs: undefined, document: undefined };
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
