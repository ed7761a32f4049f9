/**
 * Enforces the largest MQTT packet a connection may send *before* it is buffered: aedes'
 * parser (mqtt-packet) accumulates a packet until its announced length has arrived, so a
 * client announcing 256 MiB could make the gateway hold 256 MiB. The guard sits between the
 * socket and aedes, walks the fixed headers as bytes pass (no copy, no buffering beyond the
 * at most 5 bytes of a split header), and ends the connection as soon as a header announces
 * more than the limit.
 */
import { Duplex } from 'node:stream';

export class PacketTooLargeError extends Error {
  constructor(readonly announcedBytes: number, readonly maxBytes: number) {
    super(`packet of ${announcedBytes} bytes announced; at most ${maxBytes} allowed`);
  }
}

export class MalformedLengthError extends Error {
  constructor() {
    super('malformed remaining length (more than 4 bytes)');
  }
}

/** Incremental fixed-header walker; `feed` throws on the first violation. */
export class PacketSizeScanner {
  /** Bytes of the current packet's body still to skip. */
  private toSkip = 0;
  /** 0 = expecting a type byte; 1..4 = reading that many-th length byte. */
  private lengthByte = 0;
  private length = 0;
  private multiplier = 1;

  constructor(private readonly maxPacketBytes: number) {}

  feed(chunk: Uint8Array): void {
    let position = 0;
    while (position < chunk.length) {
      if (this.toSkip > 0) {
        const skipped = Math.min(this.toSkip, chunk.length - position);
        this.toSkip -= skipped;
        position += skipped;
        continue;
      }
      const byte = chunk[position]!;
      position += 1;
      if (this.lengthByte === 0) {
        this.lengthByte = 1;
        this.length = 0;
        this.multiplier = 1;
        continue;
      }
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      if ((byte & 0x80) !== 0) {
        this.lengthByte += 1;
        if (this.lengthByte > 4) throw new MalformedLengthError();
        continue;
      }
      // Whole packet = type byte + length bytes + body.
      const total = 1 + this.lengthByte + this.length;
      if (total > this.maxPacketBytes) throw new PacketTooLargeError(total, this.maxPacketBytes);
      this.toSkip = this.length;
      this.lengthByte = 0;
    }
  }
}

const BUSY_RETRY_MS = 2;

/**
 * Guards a connection (a TCP or TLS socket, or a WebSocket stream) in place, for aedes to use
 * as it is: aedes pulls with `read()` on 'readable', so the scanner sees every byte before
 * aedes' parser does, and a violation ends the connection before the body is buffered. No
 * extra stream layer sits in the path of every read and every PUBACK.
 *
 * Writes are corked until the event loop comes round: aedes writes each PUBACK on its own, a
 * commit acknowledges hundreds at once, and this sends them in one system call.
 */
export function guardConnection(
  connection: Duplex,
  maxPacketBytes: number,
  onViolation: (error: Error) => void,
  /** True while the gateway holds too much not yet durable: stop reading, let TCP push back. */
  isBusy: () => boolean = () => false,
): Duplex {
  const scanner = new PacketSizeScanner(maxPacketBytes);
  const read = connection.read.bind(connection);
  let retry: NodeJS.Timeout | undefined;
  const retryRead = () => {
    retry = undefined;
    // aedes reads again on 'readable'; nothing new may arrive to fire it, so fire it here.
    if (!connection.destroyed) connection.emit('readable');
  };
  connection.read = (size?: number) => {
    if (isBusy()) {
      retry ??= setTimeout(retryRead, BUSY_RETRY_MS);
      return null;
    }
    const chunk = read(size) as Buffer | null;
    if (chunk === null || connection.destroyed) return chunk;
    try {
      scanner.feed(chunk);
    } catch (error) {
      onViolation(error as Error);
      connection.destroy(error as Error);
      return null;
    }
    return chunk;
  };
  let corked = false;
  const uncork = () => {
    corked = false;
    connection.uncork();
  };
  const write = connection.write.bind(connection) as (chunk: unknown, ...rest: unknown[]) => boolean;
  connection.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (!corked) {
      corked = true;
      connection.cork();
      setImmediate(uncork);
    }
    return write(chunk, ...rest);
  }) as Duplex['write'];
  return connection;
}
