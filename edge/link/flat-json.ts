/**
 * Readings as the telemetry codec sees them: a payload that is a flat JSON object (every
 * value a number, string, boolean or null) whose bytes are exactly what this module writes
 * back from its keys and values. Only such payloads are taken apart into columns; anything
 * else (nested objects, other spacing, `1.0`, `-0`, duplicate keys, binary) travels as its
 * own bytes, so a payload always arrives byte for byte as it was stored.
 */
export type Scalar = number | string | boolean | null;

export interface FlatJson {
  readonly keys: string[];
  readonly values: Scalar[];
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * String(number), faster for what readings hold: whole numbers (timestamps) are written
 * from two small integers, and the few thousand distinct decimals of a batch (-18.13,
 * 81.5, …) are remembered; the shortest-digits conversion of a double is the slow part.
 */
const decimalTexts = new Map<number, string>();

export function numberJson(value: number): string {
  if (Number.isInteger(value) && value < 1e15 && value > -1e15) {
    if (value < 2147483648 && value > -2147483648) return String(value);
    const magnitude = Math.abs(value);
    const low = String(magnitude % 1e8);
    return `${value < 0 ? '-' : ''}${Math.floor(magnitude / 1e8)}${'00000000'.slice(low.length)}${low}`;
  }
  let text = decimalTexts.get(value);
  if (text === undefined) {
    text = String(value);
    if (decimalTexts.size >= 4096) decimalTexts.clear();
    decimalTexts.set(value, text);
  }
  return text;
}

export function scalarJson(value: Scalar): string {
  if (typeof value === 'number') return numberJson(value);
  if (typeof value === 'string') return JSON.stringify(value);
  return value === null ? 'null' : value ? 'true' : 'false';
}

const keyJsonCache = new Map<string, string>();

export function keyJson(key: string): string {
  let json = keyJsonCache.get(key);
  if (json === undefined) {
    json = JSON.stringify(key);
    // Keys of a fleet are few; a stream of unique keys must not grow the cache forever.
    if (keyJsonCache.size < 10_000) keyJsonCache.set(key, json);
  }
  return json;
}

/** The JSON text of an object with these keys and values, compact, keys in this order. */
export function buildFlatJson(keys: readonly string[], values: readonly Scalar[]): string {
  let text = '{';
  for (let index = 0; index < keys.length; index += 1) {
    if (index > 0) text += ',';
    text += keyJson(keys[index]!);
    text += ':';
    text += scalarJson(values[index]!);
  }
  return `${text}}`;
}

/** Keys and values of a flat JSON object payload that rebuilds to the same bytes; else undefined. */
export function shredFlatJson(payload: Uint8Array): FlatJson | undefined {
  if (payload.length < 2 || payload[0] !== OPEN_BRACE || payload[payload.length - 1] !== CLOSE_BRACE) return undefined;
  const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const scanned = scanCanonical(bytes);
  return scanned === UNSURE ? shredByRoundTrip(bytes) : scanned;
}

/** The reference check: parse, write back, compare. About three times slower than the scan. */
function shredByRoundTrip(bytes: Buffer): FlatJson | undefined {
  const text = bytes.toString('utf8');
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) return undefined;
  const keys = Object.keys(document);
  const values = new Array<Scalar>(keys.length);
  for (let index = 0; index < keys.length; index += 1) {
    const value = (document as Record<string, unknown>)[keys[index]!];
    if (typeof value === 'object' && value !== null) return undefined;
    values[index] = value as Scalar;
  }
  // For a flat object JSON.stringify writes exactly what buildFlatJson writes (same key
  // order, same number and string forms).
  const rebuilt = JSON.stringify(document);
  if (rebuilt !== text) return undefined;
  // Equal text is equal bytes only if decoding lost nothing: invalid UTF-8 decodes to U+FFFD
  // (and a truncated 4-byte sequence takes as many bytes as the U+FFFD it becomes).
  if (text.includes('\uFFFD') && !Buffer.from(rebuilt, 'utf8').equals(bytes)) return undefined;
  return { keys, values };
}

/** The scan met something only the round trip can judge (escapes, non-ASCII, exponents, long numbers). */
const UNSURE = Symbol('unsure');

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= ZERO && byte <= NINE;
}

/**
 * The keys of the last payload read, by position: readings of a fleet repeat the same keys
 * in the same order, so most keys are recognised without making a new string.
 */
const recentKeys: string[] = [];

function internKey(bytes: Buffer, start: number, end: number, position: number): string {
  const recent = recentKeys[position];
  if (recent !== undefined && recent.length === end - start) {
    let same = true;
    for (let index = 0; index < recent.length && same; index += 1) same = recent.charCodeAt(index) === bytes[start + index];
    if (same) return recent;
  }
  const key = bytes.toString('latin1', start, end);
  if (position < 64) recentKeys[position] = key;
  return key;
}

/** Powers of ten a fraction can need on the fast path (up to 5 leading zeros + 15 digits). */
const POW10 = Array.from({ length: 23 }, (_unused, exponent) => 10 ** exponent);

/**
 * Reads a payload in the one canonical form buildFlatJson writes, without JSON.parse: this
 * runs for every reading a forwarder sends. Returns undefined for anything that is not
 * that form, and UNSURE where the answer takes the round trip.
 *
 * A number is taken here only in plain notation with at most 15 significant digits, no
 * trailing fractional zero and no leading zero, at least 1e-6 and below 1e21, never -0: such
 * a decimal is the shortest one that reads back as its double (15 digits always round-trip,
 * so no shorter decimal can name the same double), which is exactly what String(double)
 * writes. Its value is `digits / 10^fraction`: both are exact doubles (fewer than 2^53, a
 * power of ten up to 10^22), and the division is correctly rounded like parsing is.
 */
function scanCanonical(bytes: Buffer): FlatJson | undefined | typeof UNSURE {
  const end = bytes.length - 1; // index of the closing brace
  const keys: string[] = [];
  const values: Scalar[] = [];
  let at = 1;
  if (at === end) return { keys, values };
  for (;;) {
    // "key"
    if (bytes[at] !== QUOTE) return undefined;
    const keyStart = at + 1;
    at = keyStart;
    let digitsOnly = true;
    while (at < end && bytes[at] !== QUOTE) {
      const byte = bytes[at]!;
      if (byte === BACKSLASH || byte < 0x20 || byte >= 0x80) return UNSURE;
      if (byte < ZERO || byte > NINE) digitsOnly = false;
      at += 1;
    }
    if (at >= end) return undefined;
    // Index-like keys ("0", "12") are moved to the front by JavaScript objects.
    if (digitsOnly && at > keyStart) return UNSURE;
    const key = internKey(bytes, keyStart, at, keys.length);
    for (const seen of keys) if (seen === key) return UNSURE;
    keys.push(key);
    at += 1;
    if (bytes[at] !== COLON) return undefined;
    at += 1;
    // value
    const first = bytes[at];
    if (first === QUOTE) {
      const valueStart = at + 1;
      at = valueStart;
      while (at < end && bytes[at] !== QUOTE) {
        const byte = bytes[at]!;
        if (byte === BACKSLASH || byte < 0x20 || byte >= 0x80) return UNSURE;
        at += 1;
      }
      if (at >= end) return undefined;
      values.push(bytes.toString('latin1', valueStart, at));
      at += 1;
    } else if (first === MINUS || isDigit(first)) {
      const negative = first === MINUS;
      if (negative) at += 1;
      let digits = 0; // the integer formed by every digit, integer and fraction parts
      let significant = 0; // digits from the first non-zero one on
      let integerDigits = 0;
      let fractionDigits = 0;
      let leadingFractionZeros = 0;
      const integerIsZero = bytes[at] === ZERO;
      if (integerIsZero) {
        at += 1;
        integerDigits = 1;
        if (isDigit(bytes[at])) return undefined; // a leading zero is not JSON
      } else {
        if (!isDigit(bytes[at])) return undefined;
        while (isDigit(bytes[at])) {
          digits = digits * 10 + (bytes[at]! - ZERO);
          significant += 1;
          integerDigits += 1;
          at += 1;
        }
      }
      if (bytes[at] === DOT) {
        at += 1;
        if (!isDigit(bytes[at])) return undefined;
        while (isDigit(bytes[at])) {
          const digit = bytes[at]! - ZERO;
          if (significant === 0 && digit === 0) leadingFractionZeros += 1;
          else significant += 1;
          digits = digits * 10 + digit;
          fractionDigits += 1;
          at += 1;
        }
        if (bytes[at - 1] === ZERO) return undefined; // 1.50 is written 1.5
      }
      const byte = bytes[at];
      if (byte === 0x65 || byte === 0x45) return UNSURE; // exponent
      // Below 1e-6 and from 1e21 on, String() switches to exponent notation.
      if (significant > 15 || integerDigits > 21 || (integerIsZero && leadingFractionZeros > 5)) return UNSURE;
      if (negative && digits === 0) return undefined; // -0 is written 0
      const magnitude = digits / POW10[fractionDigits]!;
      values.push(negative ? -magnitude : magnitude);
    } else if (first === 0x74 /* t */) {
      if (bytes.toString('latin1', at, at + 4) !== 'true') return undefined;
      values.push(true);
      at += 4;
    } else if (first === 0x66 /* f */) {
      if (bytes.toString('latin1', at, at + 5) !== 'false') return undefined;
      values.push(false);
      at += 5;
    } else if (first === 0x6e /* n */) {
      if (bytes.toString('latin1', at, at + 4) !== 'null') return undefined;
      values.push(null);
      at += 4;
    } else {
      return undefined; // nested object or array, whitespace
    }
    if (at === end) return { keys, values };
    if (bytes[at] !== COMMA) return undefined;
    at += 1;
  }
}
