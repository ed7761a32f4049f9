/**
 * The gateway's changes to how mqtt-packet runs (edge/gateway/mqtt-packet-speedups.ts) change
 * nothing it parses: packets split across socket reads anywhere come out as generated, the
 * byte reads agree with a Buffer's on every offset of every split, and debug output is still
 * there when DEBUG asks for it.
 */
// First, as in the gateway's own modules: before mqtt-packet loads.
import { mqttPacketSpeedups } from '../edge/gateway/mqtt-packet-speedups.js';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const parserPath = require.resolve('mqtt-packet/parser.js');
const bl = createRequire(parserPath)('bl') as (() => { append(buf: Buffer): void; readUInt8(offset?: number): number; readUInt16BE(offset?: number): number }) & {
  BufferList: new () => { append(buf: Buffer): void; readUInt8(offset?: number): number; readUInt16BE(offset?: number): number };
};

/** Splits `bytes` at the given cut points (taken modulo its length, sorted, deduplicated). */
function split(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  if (bytes.length === 0) return [];
  const points = [...new Set(cuts.map((cut) => cut % bytes.length))].filter((cut) => cut > 0).sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    pieces.push(bytes.subarray(from, point));
    from = point;
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

const publishPacket = fc.record({
  topic: fc.string({ minLength: 1, maxLength: 40 }).filter((topic) => !topic.includes('+') && !topic.includes('#') && !topic.includes('\u0000')),
  payload: fc.uint8Array({ maxLength: 300 }).map((array) => Buffer.from(array)),
  qos: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
  messageId: fc.integer({ min: 1, max: 65_535 }),
  retain: fc.boolean(),
  dup: fc.boolean(),
});

describe('mqtt-packet speedups', () => {
  it('are installed when imported before mqtt-packet', () => {
    expect(mqttPacketSpeedups).toEqual({ debug: 'installed', byteReads: 'installed', numberCache: 'installed' });
  });

  it('builds the writer’s packet-id cache at load, before the first device is served', () => {
    const { cache } = createRequire(import.meta.url)('mqtt-packet/numbers.js') as { cache: Record<number, Buffer> };
    expect(Object.keys(cache)).toHaveLength(65_536);
    expect([...cache[0x1234]!]).toEqual([0x12, 0x34]);
  });

  it('parse packets split across reads anywhere exactly as they were generated', () => {
    fc.assert(
      fc.property(fc.array(publishPacket, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (packets, cuts) => {
        const generated = packets.map((packet) => ({ cmd: 'publish' as const, ...packet, ...(packet.qos === 0 ? { messageId: undefined } : {}) }));
        const stream = Buffer.concat(generated.map((packet) => mqttPacket.generate(packet as Packet)));
        const parser = mqttPacket.parser();
        const parsed: Packet[] = [];
        const errors: Error[] = [];
        parser.on('packet', (packet: Packet) => parsed.push(packet));
        parser.on('error', (error: Error) => errors.push(error));
        for (const piece of split(stream, cuts)) parser.parse(piece);
        expect(errors).toEqual([]);
        expect(parsed.map((packet) => ({ ...(packet as object) }))).toEqual(
          generated.map((packet) => expect.objectContaining({ topic: packet.topic, payload: packet.payload, qos: packet.qos, retain: packet.retain, dup: packet.dup, ...(packet.qos > 0 ? { messageId: packet.messageId } : {}) })),
        );
      }),
      { numRuns: 500 },
    );
  });

  it('read bytes and 16-bit numbers as a Buffer of the same bytes does, and throw where it throws', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.array(fc.nat(), { maxLength: 6 }), fc.boolean(), (array, cuts, stream) => {
        const bytes = Buffer.from(array);
        const list = stream ? bl() : new bl.BufferList();
        for (const piece of split(bytes, cuts)) list.append(piece);
        for (let offset = 0; offset <= bytes.length + 2; offset++) {
          if (offset < bytes.length) expect(list.readUInt8(offset)).toBe(bytes.readUInt8(offset));
          else expect(() => list.readUInt8(offset)).toThrow();
          if (offset + 1 < bytes.length) expect(list.readUInt16BE(offset)).toBe(bytes.readUInt16BE(offset));
          else expect(() => list.readUInt16BE(offset)).toThrow();
        }
      }),
      { numRuns: 500 },
    );
  });

  it('leave disabled mqtt-packet debug namespaces silent and every other one as debug made it', () => {
    const createDebug = createRequire(parserPath)('debug') as (namespace: string) => { enabled: boolean; toString(): string };
    const quiet = createDebug('mqtt-packet:parser');
    expect(quiet.enabled).toBe(false);
    expect(quiet.toString()).not.toContain('enabled');
    const other = createDebug('portcall:test');
    expect(other.toString()).toContain('enabled');
  });

  it('still print mqtt-packet debug output when DEBUG enables it', () => {
    // A process of its own: DEBUG is read when mqtt-packet loads. The built module, as the
    // gateway runs it (npm test builds first).
    const speedups = fileURLToPath(new URL('../dist/edge/gateway/mqtt-packet-speedups.js', import.meta.url));
    const script = [
      `await import(${JSON.stringify(speedups)});`,
      "const { createRequire } = await import('node:module');",
      "const mqttPacket = createRequire(import.meta.url)('mqtt-packet');",
      "const parser = mqttPacket.parser();",
      "parser.on('packet', (packet) => console.log('parsed', packet.topic));",
      "parser.parse(mqttPacket.generate({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 1, messageId: 7 }));",
    ].join('\n');
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, DEBUG: 'mqtt-packet:parser' },
      encoding: 'utf8',
    });
    expect(result.stdout).toContain('parsed a/b');
    expect(result.stderr).toContain('mqtt-packet:parser');
    expect(result.stderr).toContain('_parseString: result: a/b');
  });
});
