/**
 * Column codecs of wire format version 2: sequences of integers, numbers and strings, each
 * written contiguously so that brotli, which runs over the whole body afterwards, sees
 * similar bytes next to each other.
 *
 * Every codec is lossless for every input it accepts, and says so by construction rather
 * than by hope: numbers are stored as scaled integers only after checking that dividing the
 * integer back gives the very same double (so `-18.13` comes back as `-18.13`, never as
 * `-18.129999999999999`), and anything that does not fit (NaN, -0, ±Infinity, 1e308,
 * subnormals, integers beyond ±2^52) is stored as raw float64.
 */
import { ByteReader, ByteWriter, MalformedBodyError, MAX_VARINT_MAGNITUDE, uvarintLength, zigzag } from './byte-buffer.js';

// ----- integer sequences -------------------------------------------------------------------

/** How an integer sequence is turned into small numbers before it is packed. */
const enum IntTransform {
  Raw = 0,
  Delta = 1,
  DeltaOfDelta = 2,
}

/**
 * How the small numbers are written: zigzag varints, or (frame of reference) their minimum
 * and then each one's distance from it in a fixed number of bytes, one byte plane after
 * another. Planes suit brotli better when values spread over one or two bytes (a humidity in
 * tenths, 700..900): every symbol is a whole byte of the same meaning.
 */
const enum IntPacking {
  Varint = 0,
  Planes = 1,
}

/** Header byte of a column whose every value is the same (stream ids, dense offsets' steps). */
const CONSTANT = 0xff;
const MAX_PLANES = 7;

function fits(value: number): boolean {
  return value <= MAX_VARINT_MAGNITUDE && value >= -MAX_VARINT_MAGNITUDE;
}

/** The terms a transform turns the values into, or undefined when one would not fit. */
function termsOf(values: readonly number[], transform: IntTransform): number[] | undefined {
  if (transform === IntTransform.Raw) return values as number[];
  const terms = new Array<number>(values.length);
  let previous = 0;
  let previousDelta = 0;
  for (let index = 0; index < values.length; index += 1) {
    const value = values[index]!;
    let term = value;
    if (index > 0) {
      const delta = value - previous;
      term = transform === IntTransform.Delta || index === 1 ? delta : delta - previousDelta;
      previousDelta = delta;
    }
    if (!fits(term)) return undefined;
    terms[index] = term;
    previous = value;
  }
  return terms;
}

function planesNeeded(span: number): number {
  let planes = 1;
  while (span >= 256 ** planes) planes += 1;
  return planes;
}

interface IntPlan {
  readonly transform: IntTransform;
  readonly packing: IntPacking;
  readonly cost: number;
  readonly min: number;
  readonly planes: number;
}

/** Bytes of the sequence under a transform, both packings, in one pass without allocating. */
function planFor(values: readonly number[], transform: IntTransform): IntPlan | undefined {
  if (values.length === 0) return { transform, packing: IntPacking.Varint, cost: 0, min: 0, planes: 1 };
  let varintBytes = 0;
  let min = Infinity;
  let max = -Infinity;
  let previous = 0;
  let previousDelta = 0;
  for (let index = 0; index < values.length; index += 1) {
    const value = values[index]!;
    let term = value;
    if (transform !== IntTransform.Raw && index > 0) {
      const delta = value - previous;
      term = transform === IntTransform.Delta || index === 1 ? delta : delta - previousDelta;
      previousDelta = delta;
      if (!fits(term)) return undefined;
    }
    previous = value;
    const zig = term >= 0 ? term * 2 : -term * 2 - 1;
    varintBytes += zig < 0x80 ? 1 : zig < 0x4000 ? 2 : uvarintLength(zig);
    if (term < min) min = term;
    if (term > max) max = term;
  }
  const planes = planesNeeded(max - min);
  const planeBytes = planes <= MAX_PLANES ? values.length * planes + uvarintLength(zigzag(min)) + 1 : Infinity;
  // Ties go to planes: fixed-width symbols compress better.
  return planeBytes <= varintBytes
    ? { transform, packing: IntPacking.Planes, cost: planeBytes, min, planes }
    : { transform, packing: IntPacking.Varint, cost: varintBytes, min, planes };
}

function bestPlan(values: readonly number[]): IntPlan {
  let best = planFor(values, IntTransform.Raw)!;
  for (const transform of [IntTransform.Delta, IntTransform.DeltaOfDelta]) {
    const plan = planFor(values, transform);
    if (plan !== undefined && plan.cost < best.cost) best = plan;
  }
  return best;
}

/** Integers within ±2^52 (callers check); picks the transform and packing with the fewest bytes. */
export function writeInts(writer: ByteWriter, values: readonly number[]): void {
  const first = values[0];
  if (first !== undefined && values.length > 1 && values.every((value) => value === first)) {
    writer.u8(CONSTANT);
    writer.svarint(first);
    return;
  }
  const plan = bestPlan(values);
  const terms = termsOf(values, plan.transform)!;
  writer.u8(plan.transform | (plan.packing << 4));
  if (plan.packing === IntPacking.Varint) {
    for (const term of terms) writer.svarint(term);
    return;
  }
  writer.svarint(plan.min);
  writer.u8(plan.planes);
  const count = terms.length;
  const planes = Buffer.allocUnsafe(count * plan.planes);
  for (let index = 0; index < count; index += 1) {
    let rest = terms[index]! - plan.min;
    for (let plane = 0; plane < plan.planes; plane += 1) {
      planes[plane * count + index] = rest % 256;
      rest = Math.floor(rest / 256);
    }
  }
  writer.bytes(planes);
}

export function readInts(reader: ByteReader, count: number): number[] {
  const header = reader.u8();
  if (header === CONSTANT) return new Array<number>(count).fill(reader.svarint());
  const transform = header & 0x0f;
  const packing = header >> 4;
  if (transform > IntTransform.DeltaOfDelta || packing > IntPacking.Planes) {
    throw new MalformedBodyError(`unknown integer column header ${header}`);
  }
  // Every term takes at least one byte: refuse a count the body cannot hold before allocating.
  if (count > reader.remaining) throw new MalformedBodyError(`${count} integers cannot fit in ${reader.remaining} bytes`);
  const terms = new Array<number>(count);
  if (packing === IntPacking.Varint) {
    for (let index = 0; index < count; index += 1) terms[index] = reader.svarint();
  } else {
    const min = reader.svarint();
    const planeCount = reader.u8();
    if (planeCount < 1 || planeCount > MAX_PLANES) throw new MalformedBodyError(`${planeCount} byte planes`);
    const planes = reader.bytes(count * planeCount);
    for (let index = 0; index < count; index += 1) {
      let value = 0;
      let scale = 1;
      for (let plane = 0; plane < planeCount; plane += 1) {
        value += planes[plane * count + index]! * scale;
        scale *= 256;
      }
      terms[index] = min + value;
    }
  }
  if (transform === IntTransform.Raw) return terms;
  const values = new Array<number>(count);
  let previous = 0;
  let previousDelta = 0;
  for (let index = 0; index < count; index += 1) {
    const term = terms[index]!;
    let value: number;
    if (index === 0) {
      value = term;
    } else if (transform === IntTransform.Delta || index === 1) {
      value = previous + term;
      previousDelta = term;
    } else {
      previousDelta += term;
      value = previous + previousDelta;
    }
    values[index] = value;
    previous = value;
  }
  return values;
}

/** Non-negative references (dictionary indexes, ids) below `limit`. */
export function readRefs(reader: ByteReader, count: number, limit: number, what: string): number[] {
  const refs = readInts(reader, count);
  for (const ref of refs) {
    if (!Number.isInteger(ref) || ref < 0 || ref >= limit) throw new MalformedBodyError(`${what} ${ref} out of range (0..${limit - 1})`);
  }
  return refs;
}

// ----- per-topic series --------------------------------------------------------------------

const enum SeriesMode {
  Flat = 0,
  PerTopic = 1,
}

/** Lengths of the runs of equal consecutive keys: the topics of records grouped by topic. */
export function runLengths(keys: readonly string[]): number[] {
  const runs: number[] = [];
  for (let index = 0; index < keys.length; index += 1) {
    if (index > 0 && keys[index] === keys[index - 1]) runs[runs.length - 1]! += 1;
    else runs.push(1);
  }
  return runs;
}

function headsAndSteps(values: readonly number[], runs: readonly number[]): { heads: number[]; steps: number[] } | undefined {
  const heads: number[] = [];
  const steps: number[] = [];
  let row = 0;
  for (const size of runs) {
    heads.push(values[row]!);
    for (let index = 1; index < size; index += 1) {
      const step = values[row + index]! - values[row + index - 1]!;
      if (!fits(step)) return undefined;
      steps.push(step);
    }
    row += size;
  }
  return row === values.length ? { heads, steps } : undefined;
}

/**
 * Integers (within ±2^52) that may form one series per topic: offsets, event times, a
 * container's temperature. With `runs` (records grouped by topic), the first value of each
 * topic is written, then the steps inside each topic, when that is smaller than the flat
 * column: dense offsets become one constant step, readings every minute steps of 60,000 ±
 * jitter, a device's clock skew is paid once per topic.
 */
function writeSeries(writer: ByteWriter, values: readonly number[], runs: readonly number[] | undefined): void {
  const split = runs === undefined || runs.length === values.length ? undefined : headsAndSteps(values, runs);
  if (split !== undefined && intCost(split.heads) + intCost(split.steps) < intCost(values)) {
    writer.u8(SeriesMode.PerTopic);
    writeInts(writer, split.heads);
    writeInts(writer, split.steps);
    return;
  }
  writer.u8(SeriesMode.Flat);
  writeInts(writer, values);
}

function readSeries(reader: ByteReader, count: number, runs: readonly number[] | undefined): number[] {
  const mode = reader.u8();
  if (mode === SeriesMode.Flat) return readInts(reader, count);
  if (mode !== SeriesMode.PerTopic || runs === undefined) throw new MalformedBodyError(`unknown series mode ${mode}`);
  const heads = readInts(reader, runs.length);
  const steps = readInts(reader, count - runs.length);
  const values = new Array<number>(count);
  let row = 0;
  let step = 0;
  runs.forEach((size, run) => {
    values[row] = heads[run]!;
    row += 1;
    for (let index = 1; index < size; index += 1, row += 1) values[row] = values[row - 1]! + steps[step++]!;
  });
  return values;
}

// ----- numbers -----------------------------------------------------------------------------

const enum NumberMode {
  /** 8 bytes little-endian each: anything a double can be. */
  Float64 = 0,
  /** value = integer / 10^decimals, integers written by writeInts. */
  Scaled = 1,
  /** Each value equals the reference (a record's event time, say): nothing else written. */
  SameAsReference = 2,
  /** value = reference + integer: ingest time against event time, a `ts` a little off. */
  MinusReference = 3,
}

const POW10 = Array.from({ length: 16 }, (_unused, exponent) => 10 ** exponent);
const MAX_DECIMALS = POW10.length - 1;

/** Fewest decimals that represent the double exactly as integer / 10^d, or -1. */
function decimalsOf(value: number): number {
  if (!Number.isFinite(value) || Object.is(value, -0)) return -1;
  for (let decimals = 0; decimals <= MAX_DECIMALS; decimals += 1) {
    const scale = POW10[decimals]!;
    const scaled = Math.round(value * scale);
    if (fits(scaled) && scaled / scale === value) return decimals;
    if (!fits(scaled)) return -1;
  }
  return -1;
}

/** The scaled integers of every value at one common precision, or undefined if one does not survive. */
function scaledIntegers(values: readonly number[]): { decimals: number; integers: number[] } | undefined {
  let decimals = 0;
  for (const value of values) {
    const needed = decimalsOf(value);
    if (needed < 0) return undefined;
    if (needed > decimals) decimals = needed;
  }
  const scale = POW10[decimals]!;
  const integers = new Array<number>(values.length);
  for (let index = 0; index < values.length; index += 1) {
    const value = values[index]!;
    const scaled = Math.round(value * scale);
    // A value exact at fewer decimals is exact at more unless the integer outgrows 2^52.
    if (!fits(scaled) || scaled / scale !== value) return undefined;
    integers[index] = scaled;
  }
  return { decimals, integers };
}

/** Bytes writeInts would take, to choose between encodings. */
function intCost(values: readonly number[]): number {
  const first = values[0];
  if (first !== undefined && values.every((value) => value === first)) return 1 + uvarintLength(zigzag(first));
  return bestPlan(values).cost;
}

export interface NumberContext {
  /** One number per value that values are likely equal or close to (a record's event time). */
  readonly reference?: readonly number[];
  /** Run lengths of the topics of the values (records grouped by topic); see writeSeries. */
  readonly runs?: readonly number[];
}

/**
 * Any doubles. Values equal to their reference, or a whole number away from it, cost
 * almost nothing; decimals become integers at the column's precision.
 */
export function writeNumbers(writer: ByteWriter, values: readonly number[], context: NumberContext = {}): void {
  const { reference, runs } = context;
  if (reference !== undefined && values.every((value, index) => Object.is(value, reference[index]))) {
    writer.u8(NumberMode.SameAsReference);
    return;
  }
  let bestMode = NumberMode.Float64;
  let bestCost = values.length * 8;
  let bestIntegers: number[] | undefined;
  let bestDecimals = 0;
  const scaled = scaledIntegers(values);
  if (scaled !== undefined) {
    const cost = intCost(scaled.integers) + 1;
    if (cost < bestCost) {
      bestMode = NumberMode.Scaled;
      bestCost = cost;
      bestIntegers = scaled.integers;
      bestDecimals = scaled.decimals;
    }
  }
  if (reference !== undefined) {
    const differences = new Array<number>(values.length);
    let usable = true;
    for (let index = 0; index < values.length && usable; index += 1) {
      const value = values[index]!;
      const base = reference[index]!;
      const difference = value - base;
      usable = Number.isInteger(value) && Number.isInteger(base) && fits(value) && fits(base) && fits(difference) && !Object.is(value, -0);
      differences[index] = difference;
    }
    // A constant offset from the reference (a device clock's skew) is cheap either way;
    // prefer it when it is at least as small.
    if (usable && intCost(differences) <= bestCost) {
      bestMode = NumberMode.MinusReference;
      bestIntegers = differences;
    }
  }
  writer.u8(bestMode);
  if (bestMode === NumberMode.Float64) {
    for (const value of values) writer.f64(value);
  } else {
    if (bestMode === NumberMode.Scaled) writer.u8(bestDecimals);
    writeSeries(writer, bestIntegers!, runs);
  }
}

export function readNumbers(reader: ByteReader, count: number, context: NumberContext = {}): number[] {
  const { reference, runs } = context;
  const mode = reader.u8();
  switch (mode) {
    case NumberMode.Float64: {
      if (count * 8 > reader.remaining) throw new MalformedBodyError(`${count} doubles cannot fit in ${reader.remaining} bytes`);
      const values = new Array<number>(count);
      for (let index = 0; index < count; index += 1) values[index] = reader.f64();
      return values;
    }
    case NumberMode.Scaled: {
      const decimals = reader.u8();
      if (decimals > MAX_DECIMALS) throw new MalformedBodyError(`${decimals} decimals is more than ${MAX_DECIMALS}`);
      const scale = POW10[decimals]!;
      return readSeries(reader, count, runs).map((integer) => integer / scale);
    }
    case NumberMode.SameAsReference:
    case NumberMode.MinusReference: {
      if (reference === undefined || reference.length !== count) throw new MalformedBodyError('number column refers to a missing reference');
      if (mode === NumberMode.SameAsReference) return reference.slice();
      return readSeries(reader, count, runs).map((difference, index) => reference[index]! + difference);
    }
    default:
      throw new MalformedBodyError(`unknown number column mode ${mode}`);
  }
}

// ----- strings -----------------------------------------------------------------------------

/**
 * The batch's strings, each stored once, sorted so that similar names (C00001, C00002, …)
 * sit together for brotli. Entries are UTF-8, or UTF-16 for strings UTF-8 cannot carry
 * (lone surrogates, which JSON and JavaScript allow).
 */
export class StringDictionary {
  private readonly seen = new Set<string>();
  private indexes: Map<string, number> | undefined;

  add(value: string): void {
    this.seen.add(value);
  }

  ref(value: string): number {
    const index = this.indexes?.get(value);
    if (index === undefined) throw new Error(`string not added to the dictionary before writing: ${JSON.stringify(value)}`);
    return index;
  }

  write(writer: ByteWriter): void {
    const entries = [...this.seen].sort();
    this.indexes = new Map(entries.map((entry, index) => [entry, index]));
    writer.uvarint(entries.length);
    for (const entry of entries) {
      const utf8 = Buffer.from(entry, 'utf8');
      if (utf8.toString('utf8') === entry) {
        writer.uvarint(utf8.length * 2);
        writer.bytes(utf8);
      } else {
        const utf16 = Buffer.from(entry, 'utf16le');
        writer.uvarint(utf16.length * 2 + 1);
        writer.bytes(utf16);
      }
    }
  }

  static read(reader: ByteReader): string[] {
    const count = reader.count(1, 'dictionary entry');
    const entries = new Array<string>(count);
    for (let index = 0; index < count; index += 1) {
      const header = reader.uvarint();
      const bytes = reader.bytes(Math.floor(header / 2));
      if (header % 2 === 1 && bytes.length % 2 === 1) throw new MalformedBodyError('UTF-16 dictionary entry of odd length');
      entries[index] = bytes.toString(header % 2 === 0 ? 'utf8' : 'utf16le');
    }
    return entries;
  }
}

/** Marks where a string held its record's topic name (`bigblue/containers/\0/reefer`). */
const TOPIC_MARK = '\u0000';

function templated(value: string, topic: string): string | undefined {
  if (topic.length === 0 || value.includes(TOPIC_MARK)) return undefined;
  const at = value.indexOf(topic);
  return at < 0 ? undefined : value.slice(0, at) + TOPIC_MARK + value.slice(at + topic.length);
}

/**
 * A string column prepared in two steps, because dictionary indexes are known only once
 * every string of the batch has been added: `prepare` adds the strings, `write` writes refs.
 * When every value contains its record's topic name, the column stores the value with the
 * name cut out, so `bigblue/containers/C00042/reefer` is one dictionary entry for the fleet.
 */
export class StringColumn {
  private readonly stored: string[];
  readonly templated: boolean;

  constructor(values: readonly string[], topics: readonly string[], dictionary: StringDictionary) {
    const forms = values.map((value, index) => templated(value, topics[index]!));
    this.templated = values.length > 0 && forms.every((form) => form !== undefined);
    this.stored = this.templated ? (forms as string[]) : values.slice();
    for (const value of this.stored) dictionary.add(value);
  }

  write(writer: ByteWriter, dictionary: StringDictionary): void {
    writer.u8(this.templated ? 1 : 0);
    writeInts(writer, this.stored.map((value) => dictionary.ref(value)));
  }

  static read(reader: ByteReader, count: number, topics: readonly string[], dictionary: readonly string[]): string[] {
    const mode = reader.u8();
    if (mode > 1) throw new MalformedBodyError(`unknown string column mode ${mode}`);
    const refs = readRefs(reader, count, dictionary.length, 'string reference');
    if (mode === 0) return refs.map((ref) => dictionary[ref]!);
    // Records of a topic are consecutive: the last expansion is usually the next one too.
    let lastRef = -1;
    let lastTopic: string | undefined;
    let lastValue = '';
    return refs.map((ref, index) => {
      const topic = topics[index]!;
      if (ref === lastRef && topic === lastTopic) return lastValue;
      const template = dictionary[ref]!;
      const at = template.indexOf(TOPIC_MARK);
      if (at < 0) throw new MalformedBodyError('templated string without its topic mark');
      lastRef = ref;
      lastTopic = topic;
      lastValue = template.length === 1 ? topic : template.slice(0, at) + topic + template.slice(at + 1);
      return lastValue;
    });
  }
}
