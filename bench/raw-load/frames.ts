/**
 * Just enough MQTT framing for the load generator and the ack sink: walking the fixed
 * headers of a byte stream. Packets themselves are encoded with mqtt-packet once, up front;
 * the hot loops only copy bytes and patch message ids, which is what lets one process drive
 * a C broker to its limit.
 */

/** Calls `onPacket(type, flags, body start, body end)` for each complete packet; returns the unconsumed tail. */
export function forEachFrame(
  buffer: Buffer,
  onPacket: (type: number, flags: number, bodyStart: number, bodyEnd: number) => void,
): Buffer {
  let position = 0;
  while (position < buffer.length) {
    const first = buffer[position]!;
    let remaining = 0;
    let multiplier = 1;
    let cursor = position + 1;
    let complete = false;
    for (let i = 0; i < 4 && cursor < buffer.length; i += 1) {
      const byte = buffer[cursor]!;
      cursor += 1;
      remaining += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      if ((byte & 0x80) === 0) {
        complete = true;
        break;
      }
    }
    if (!complete || cursor + remaining > buffer.length) break;
    onPacket(first >> 4, first & 0x0f, cursor, cursor + remaining);
    position = cursor + remaining;
  }
  return position === buffer.length ? EMPTY : buffer.subarray(position);
}

const EMPTY = Buffer.alloc(0);

/** Length of the fixed header (type byte plus remaining-length varint) of an encoded packet. */
export function fixedHeaderLength(packet: Buffer): number {
  let index = 1;
  while ((packet[index]! & 0x80) !== 0) index += 1;
  return index + 1;
}

export function concat(tail: Buffer, chunk: Buffer): Buffer {
  return tail.length === 0 ? chunk : Buffer.concat([tail, chunk]);
}

export const PINGREQ = Buffer.from([0xc0, 0x00]);
export const PINGRESP = Buffer.from([0xd0, 0x00]);
export const PACKET_CONNACK = 2;
export const PACKET_PUBLISH = 3;
export const PACKET_PUBACK = 4;
export const PACKET_PINGREQ = 12;
export const PACKET_PINGRESP = 13;
export const PACKET_CONNECT = 1;
