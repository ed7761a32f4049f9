/**
 * Checks that bytes are one JSON document and finds a top-level object's `ts`, without
 * building the document: `JSON.parse` of a 150-byte reading allocates its string, an object
 * and every value in it, which at tens of thousands of readings a second is most of what the
 * gateway's garbage collector does.
 *
 * The scanner answers only when it is sure it agrees with `JSON.parse(bytes.toString('utf8'))`
 * (RFC 8259, as V8 parses it); anything it is not sure of (invalid JSON, a key spelled with
 * escapes, a `ts` string with escapes, nesting deeper than it tracks) makes it answer
 * UNSURE, and the caller parses for real. Bytes of 0x80 and above are accepted inside strings
 * only: decoding them (invalid sequences become U+FFFD) never produces a quote, a backslash
 * or a control character, so they cannot change what the ASCII around them means.
 */

export const SCAN_UNSURE = 0;
/** Valid JSON whose top level is an object. */
export const SCAN_OBJECT = 1;
/** Valid JSON whose top level is not an object (array, string, number, literal). */
export const SCAN_OTHER = 2;

/** Where the scanner found the top-level object's last `ts` value (as `JSON.parse` keeps the last). */
export const tsFound = {
  /** 0 = no `ts`; 1 = a number; 2 = a string without escapes; 3 = anything else (true, null, object…). */
  kind: 0,
  start: 0,
  end: 0,
};

const MAX_DEPTH = 64;
/** 1 = inside an object, 2 = inside an array, by depth. */
const stack = new Uint8Array(MAX_DEPTH + 1);

function isWhitespace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

function isHex(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

/** End of the string starting at `at` (the opening quote), just past its closing quote; -1 if invalid. `escaped` tells whether it had escapes. */
let escapedString = false;
function scanString(bytes: Uint8Array, at: number): number {
  escapedString = false;
  let index = at + 1;
  const length = bytes.length;
  while (index < length) {
    const byte = bytes[index]!;
    if (byte === 0x22) return index + 1;
    if (byte === 0x5c) {
      escapedString = true;
      const next = bytes[index + 1];
      if (next === 0x75) {
        if (index + 5 >= length) return -1;
        if (!isHex(bytes[index + 2]!) || !isHex(bytes[index + 3]!) || !isHex(bytes[index + 4]!) || !isHex(bytes[index + 5]!)) return -1;
        index += 6;
        continue;
      }
      if (next === 0x22 || next === 0x5c || next === 0x2f || next === 0x62 || next === 0x66 || next === 0x6e || next === 0x72 || next === 0x74) {
        index += 2;
        continue;
      }
      return -1;
    }
    if (byte < 0x20) return -1;
    index += 1;
  }
  return -1;
}

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x39;
}

/** End of the number starting at `at`, or -1 if it is not a JSON number. */
function scanNumber(bytes: Uint8Array, at: number): number {
  let index = at;
  if (bytes[index] === 0x2d) index += 1;
  if (bytes[index] === 0x30) index += 1;
  else if (isDigit(bytes[index])) {
    while (isDigit(bytes[index])) index += 1;
  } else return -1;
  if (bytes[index] === 0x2e) {
    index += 1;
    if (!isDigit(bytes[index])) return -1;
    while (isDigit(bytes[index])) index += 1;
  }
  if (bytes[index] === 0x65 || bytes[index] === 0x45) {
    index += 1;
    if (bytes[index] === 0x2b || bytes[index] === 0x2d) index += 1;
    if (!isDigit(bytes[index])) return -1;
    while (isDigit(bytes[index])) index += 1;
  }
  return index;
}

function scanLiteral(bytes: Uint8Array, at: number, literal: readonly number[]): number {
  for (let i = 0; i < literal.length; i += 1) if (bytes[at + i] !== literal[i]) return -1;
  return at + literal.length;
}

const TRUE = [0x74, 0x72, 0x75, 0x65];
const FALSE = [0x66, 0x61, 0x6c, 0x73, 0x65];
const NULL = [0x6e, 0x75, 0x6c, 0x6c];

/**
 * Scans `bytes` as one JSON document: SCAN_OBJECT or SCAN_OTHER when it is valid (and then
 * `tsFound` describes a top-level object's `ts`), SCAN_UNSURE otherwise.
 */
export function scanJson(bytes: Uint8Array): number {
  tsFound.kind = 0;
  const length = bytes.length;
  let index = 0;
  let depth = 0;
  let topLevelObject = false;
  /** The value about to be scanned is the top-level object's `ts`. */
  let isTs = false;
  // Expecting a value; after it, a comma/closer at `depth`.
  for (;;) {
    while (index < length && isWhitespace(bytes[index]!)) index += 1;
    if (index >= length) return SCAN_UNSURE;
    const byte = bytes[index]!;
    const valueStart = index;
    let kind = 3;
    if (byte === 0x7b || byte === 0x5b) {
      if (depth === 0 && byte === 0x7b) topLevelObject = true;
      if (isTs) tsFound.kind = 3;
      isTs = false;
      depth += 1;
      if (depth > MAX_DEPTH) return SCAN_UNSURE;
      stack[depth] = byte === 0x7b ? 1 : 2;
      index += 1;
      while (index < length && isWhitespace(bytes[index]!)) index += 1;
      const closer = byte === 0x7b ? 0x7d : 0x5d;
      if (bytes[index] === closer) {
        index += 1;
        depth -= 1;
      } else {
        if (byte === 0x7b) {
          // First key.
          const keyEnd = bytes[index] === 0x22 ? scanString(bytes, index) : -1;
          if (keyEnd < 0) return SCAN_UNSURE;
          if (depth === 1) {
            if (escapedString) return SCAN_UNSURE;
            isTs = keyEnd - index === 4 && bytes[index + 1] === 0x74 && bytes[index + 2] === 0x73;
          }
          index = keyEnd;
          while (index < length && isWhitespace(bytes[index]!)) index += 1;
          if (bytes[index] !== 0x3a) return SCAN_UNSURE;
          index += 1;
        }
        continue;
      }
    } else {
      if (byte === 0x22) {
        index = scanString(bytes, index);
        kind = escapedString ? 3 : 2;
      } else if (byte === 0x74) index = scanLiteral(bytes, index, TRUE);
      else if (byte === 0x66) index = scanLiteral(bytes, index, FALSE);
      else if (byte === 0x6e) index = scanLiteral(bytes, index, NULL);
      else {
        index = scanNumber(bytes, index);
        kind = 1;
      }
      if (index < 0) return SCAN_UNSURE;
      if (isTs) {
        tsFound.kind = kind;
        tsFound.start = valueStart;
        tsFound.end = index;
        isTs = false;
      }
    }
    // After a value: close containers or move to the next element.
    for (;;) {
      while (index < length && isWhitespace(bytes[index]!)) index += 1;
      if (depth === 0) {
        if (index !== length) return SCAN_UNSURE;
        return topLevelObject ? SCAN_OBJECT : SCAN_OTHER;
      }
      const next = bytes[index];
      const inObject = stack[depth] === 1;
      if (next === (inObject ? 0x7d : 0x5d)) {
        index += 1;
        depth -= 1;
        continue;
      }
      if (next !== 0x2c) return SCAN_UNSURE;
      index += 1;
      if (inObject) {
        while (index < length && isWhitespace(bytes[index]!)) index += 1;
        const keyEnd = bytes[index] === 0x22 ? scanString(bytes, index) : -1;
        if (keyEnd < 0) return SCAN_UNSURE;
        if (depth === 1) {
          if (escapedString) return SCAN_UNSURE;
          isTs = keyEnd - index === 4 && bytes[index + 1] === 0x74 && bytes[index + 2] === 0x73;
        }
        index = keyEnd;
        while (index < length && isWhitespace(bytes[index]!)) index += 1;
        if (bytes[index] !== 0x3a) return SCAN_UNSURE;
        index += 1;
      }
      break;
    }
  }
}
