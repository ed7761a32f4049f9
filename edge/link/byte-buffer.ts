/**
 * Growable byte writer and bounds-checked reader for the binary wire format (version 2).
 *
 * Integers are LEB128 varints. They are JavaScript numbers, not BigInts: the format only
 * writes integers within ±2^52 through the varint path (columns.ts falls back to raw
 * float64 for anything larger), so every value and every zigzag of one is exact in a double.
 */

/** A body that ends early, claims more than it holds, or carries an impossible value. */
export class MalformedBodyError extends Error {}

/** Largest magnitude written as a (zigzag) varint; beyond it a column stores raw float64. */
export const MAX_VARINT_MAGNITUDE = 2 ** 52;

const TWO_POW_31 = 2 ** 31;

export function zigzag(value: number): number {
  return value >= 0 ? value * 2 : -value * 2 - 1;
}

export function unzigzag(value: number): number {
  return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
}

/** Bytes a uvarint of `value` takes; used to choose an encoding without writing it. */
export function uvarintLength(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  let length = 4;
  let rest = Math.floor(value / 0x10000000);
  while (rest > 0) {
    length += 1;
    rest = Math.floor(rest / 0x80);
  }
  return length;
}

export class ByteWriter {
  private buffer: Buffer;
  private position = 0;

  constructor(initialBytes = 4096) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  get length(): number {
    return this.position;
  }

  private ensure(bytes: number): void {
    if (this.position + bytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.position + bytes) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buffer.copy(grown, 0, 0, this.position);
    this.buffer = grown;
  }

  u8(value: number): void {
    this.ensure(1);
    this.buffer[this.position++] = value;
  }

  /** A non-negative integer up to 2^53. */
  uvarint(value: number): void {
    this.ensure(8);
    const buffer = this.buffer;
    if (value < TWO_POW_31) {
      while (value >= 0x80) {
        buffer[this.position++] = (value & 0x7f) | 0x80;
        value >>>= 7;
      }
      buffer[this.position++] = value;
      return;
    }
    while (value >= 0x80) {
      buffer[this.position++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    buffer[this.position++] = value;
  }

  svarint(value: number): void {
    this.uvarint(zigzag(value));
  }

  f64(value: number): void {
    this.ensure(8);
    this.buffer.writeDoubleLE(value, this.position);
    this.position += 8;
  }

  bytes(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.position);
    this.position += bytes.length;
  }

  /** Length-prefixed bytes. */
  blob(bytes: Uint8Array): void {
    this.uvarint(bytes.length);
    this.bytes(bytes);
  }

  /** The bytes written so far (a view; copy it if the writer is reused). */
  finish(): Buffer {
    return this.buffer.subarray(0, this.position);
  }
}

/** Up to this many bytes, `copyOfBytes` copies byte by byte rather than through a view. */
const SHORT_COPY_BYTES = 256;

export class ByteReader {
  private position = 0;

  constructor(private readonly buffer: Buffer) {}

  get remaining(): number {
    return this.buffer.length - this.position;
  }

  private need(bytes: number): void {
    if (bytes > this.buffer.length - this.position) {
      throw new MalformedBodyError(`body ends early: ${bytes} bytes needed at byte ${this.position}, ${this.remaining} left`);
    }
  }

  u8(): number {
    this.need(1);
    return this.buffer[this.position++]!;
  }

  uvarint(): number {
    let result = 0;
    let scale = 1;
    for (let index = 0; index < 8; index += 1) {
      this.need(1);
      const byte = this.buffer[this.position++]!;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (result > 2 ** 53) throw new MalformedBodyError('varint beyond 2^53');
        return result;
      }
      scale *= 0x80;
    }
    throw new MalformedBodyError('varint longer than 8 bytes');
  }

  svarint(): number {
    return unzigzag(this.uvarint());
  }

  /** A count that must be plausible for what is left: at least `minBytesEach` per item. */
  count(minBytesEach: number, what: string): number {
    const value = this.uvarint();
    if (minBytesEach > 0 && value * minBytesEach > this.remaining) {
      throw new MalformedBodyError(`${what} count ${value} cannot fit in the ${this.remaining} bytes left`);
    }
    return value;
  }

  f64(): number {
    this.need(8);
    const value = this.buffer.readDoubleLE(this.position);
    this.position += 8;
    return value;
  }

  bytes(length: number): Buffer {
    this.need(length);
    const slice = this.buffer.subarray(this.position, this.position + length);
    this.position += length;
    return slice;
  }

  /**
   * The next `length` bytes in a buffer of their own: what a decoded record keeps must not hold
   * the whole decompressed body alive. One allocation, where copying a `bytes()` view made two.
   */
  copyOfBytes(length: number): Buffer {
    this.need(length);
    const copy = Buffer.allocUnsafe(length);
    const from = this.position;
    // Buffer#copy of part of a buffer makes a view of it first; a reading's payload is short.
    if (length <= SHORT_COPY_BYTES) for (let index = 0; index < length; index += 1) copy[index] = this.buffer[from + index]!;
    else this.buffer.copy(copy, 0, from, from + length);
    this.position += length;
    return copy;
  }

  blob(): Buffer {
    return this.bytes(this.uvarint());
  }

  expectEnd(): void {
    if (this.remaining !== 0) throw new MalformedBodyError(`${this.remaining} unexpected bytes after the body`);
  }
}
