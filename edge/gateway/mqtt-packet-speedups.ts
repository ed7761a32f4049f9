/**
 * Three changes to how mqtt-packet (which aedes parses and writes every packet with) runs.
 * The first two were found by sampling the gateway's allocations: 5,464 bytes per QoS 1
 * message at 40,000 msg/s (2026-11-23), most of them young garbage that makes the gateway's
 * thread scavenge every 100 ms and promote enough for a major collection every few seconds.
 * The third by profiling a fresh gateway's first second. None changes what is parsed or
 * written.
 *
 * 1. **Disabled debug calls do nothing.** The parser calls `debug(...)` about ten times per
 *    packet, with arguments, even when its namespaces are off: each call builds an argument
 *    array before `debug` finds it has nothing to do (659 bytes a message). An `mqtt-packet:*`
 *    namespace that is disabled when mqtt-packet loads gets a function that does nothing.
 *    `DEBUG=mqtt-packet:*` in the environment still enables them; enabling them later from
 *    code (`debug.enable()`) no longer does, and nothing here does that. Every other
 *    namespace gets `debug`'s own function.
 * 2. **Byte reads read the byte.** The parser reads the fixed header, the remaining length,
 *    string lengths and packet ids with bl's `readUInt8` / `readUInt16BE`, which bl implements
 *    as `slice` (a new Buffer view, and an array for the position) and a read of that: about
 *    five Buffer views a packet (about 1,000 bytes a message, with the payload's own view).
 *    These two read from the buffer holding the bytes, and fall back to bl's own (same answer,
 *    same errors) when the bytes straddle two buffers or lie outside the list.
 * 3. **The packet-id cache is built at start-up.** mqtt-packet's writer builds its cache of all
 *    65,536 two-byte packet ids (a Buffer each) on the first packet it writes: on a fresh
 *    gateway that is the first CONNACK, when eight devices connect at once with QoS 1
 *    backlogs. Profiled in `portcall bench ingest`'s paced run (60,000 msg/s from a fresh
 *    start, 2026-11-23): 50-70 ms of the gateway's thread, and the collections that followed,
 *    before its first PUBACK; the first 100 ms of PUBACKs had a p99 of 347-432 ms with the
 *    build there, 285-301 ms with it here. Built at load, it costs the same once, before any
 *    device is served.
 *
 * Imported for its effect, before aedes or mqtt-packet, by every gateway module that uses
 * them. Loaded too late (mqtt-packet already loaded), it changes nothing; the byte reads are
 * per prototype and apply whenever.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface DebugFunction {
  (...args: unknown[]): void;
  namespace: string;
  enabled: boolean;
  extend(namespace: string, delimiter?: string): DebugFunction;
  destroy(): boolean;
  log(...args: unknown[]): void;
}

interface CreateDebug {
  (namespace: string): DebugFunction;
  enabled(namespace: string): boolean;
}

const QUIETED_PREFIX = 'mqtt-packet:';

function silent(namespace: string, createDebug: CreateDebug): DebugFunction {
  const quiet = (() => undefined) as unknown as DebugFunction;
  quiet.namespace = namespace;
  quiet.enabled = false;
  quiet.extend = (more: string, delimiter = ':') => createDebug(`${namespace}${delimiter}${more}`);
  quiet.destroy = () => false;
  quiet.log = () => undefined;
  return quiet;
}

type InstallResult = 'installed' | 'too-late' | 'not-found';

function quietDebug(parserPath: string): InstallResult {
  let debugPath: string;
  try {
    debugPath = createRequire(parserPath).resolve('debug');
  } catch {
    return 'not-found';
  }
  if (require.cache[parserPath] !== undefined) return 'too-late';
  const original = require(debugPath) as CreateDebug & { portcallQuiet?: true };
  const entry = require.cache[debugPath];
  if (entry === undefined) return 'not-found';
  if (original.portcallQuiet === true) return 'installed';
  const wrapped: CreateDebug = Object.assign(
    (namespace: string): DebugFunction =>
      namespace.startsWith(QUIETED_PREFIX) && !original.enabled(namespace) ? silent(namespace, wrapped) : original(namespace),
    original,
    { portcallQuiet: true as const },
  );
  entry.exports = wrapped;
  return 'installed';
}

interface BufferListLike {
  _bufs: Uint8Array[];
  length: number;
  readUInt8(offset?: number): number;
  readUInt16BE(offset?: number): number;
}

/**
 * Replaces bl's byte reads on what mqtt-packet parses with: its list is a `BufferListStream`,
 * whose prototype got copies of `BufferList`'s methods when bl loaded, so both are patched.
 */
function directByteReads(parserPath: string): InstallResult {
  let prototypes: (BufferListLike & { portcallDirectReads?: true })[];
  try {
    const bl = createRequire(parserPath)('bl') as { prototype: BufferListLike; BufferList: { prototype: BufferListLike } };
    prototypes = [bl.prototype, bl.BufferList.prototype];
  } catch {
    return 'not-found';
  }
  for (const prototype of prototypes) {
    if (prototype.portcallDirectReads === true) continue;
    const readUInt8 = prototype.readUInt8;
    const readUInt16BE = prototype.readUInt16BE;
    if (typeof readUInt8 !== 'function' || typeof readUInt16BE !== 'function') return 'not-found';
    prototype.readUInt8 = function (this: BufferListLike, offset = 0) {
      if (Number.isInteger(offset) && offset >= 0) {
        let at = offset;
        for (const buf of this._bufs) {
          if (at < buf.length) return buf[at]!;
          at -= buf.length;
        }
      }
      return readUInt8.call(this, offset);
    };
    prototype.readUInt16BE = function (this: BufferListLike, offset = 0) {
      if (Number.isInteger(offset) && offset >= 0) {
        let at = offset;
        for (const buf of this._bufs) {
          if (at < buf.length) {
            if (at + 1 < buf.length) return (buf[at]! << 8) | buf[at + 1]!;
            break; // straddles two buffers: bl's own
          }
          at -= buf.length;
        }
      }
      return readUInt16BE.call(this, offset);
    };
    prototype.portcallDirectReads = true;
  }
  return 'installed';
}

/** Writes one PINGRESP to nowhere: the first packet mqtt-packet writes builds its number cache. */
function buildNumberCache(): InstallResult {
  let writeToStream: ((packet: { cmd: string }, stream: { write(chunk: Uint8Array): boolean }) => boolean) | undefined;
  try {
    writeToStream = (require('mqtt-packet') as { writeToStream?: typeof writeToStream }).writeToStream;
  } catch {
    return 'not-found';
  }
  if (typeof writeToStream !== 'function') return 'not-found';
  writeToStream({ cmd: 'pingresp' }, { write: () => true });
  return 'installed';
}

function install(): { readonly debug: InstallResult; readonly byteReads: InstallResult; readonly numberCache: InstallResult } {
  let parserPath: string;
  try {
    parserPath = require.resolve('mqtt-packet/parser.js');
  } catch {
    return { debug: 'not-found', byteReads: 'not-found', numberCache: 'not-found' };
  }
  // The debug wrapper first: loading the writer loads mqtt-packet, after which it is too late.
  const debug = quietDebug(parserPath);
  const byteReads = directByteReads(parserPath);
  return { debug, byteReads, numberCache: buildNumberCache() };
}

/** What was installed in this thread (tests check it). */
export const mqttPacketSpeedups = install();
