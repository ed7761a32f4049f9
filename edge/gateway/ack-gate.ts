/**
 * Holds each QoS 1 PUBACK until the message it acknowledges is durable, so aedes can go on
 * reading a connection while earlier messages are still being committed.
 *
 * Why: aedes reads a connection's next chunk only once every packet of the previous chunk
 * has been handled, and a PUBLISH is handled when aedes has written its PUBACK, right after
 * `authorizePublish` calls back. Waiting for the commit inside the hook therefore keeps one
 * socket read per connection in flight and serialises each connection on the disk. Instead,
 * the hook admits the message and calls back at once; aedes "writes" the PUBACK, the gate
 * keeps it, and sends it when the commit reports the message durable. PUBACKs leave in the
 * order the PUBLISHes arrived (MQTT 3.1.1 §4.6), since commits complete in that order and a
 * PUBACK never overtakes an earlier one still held.
 *
 * aedes writes packets with mqtt-packet's `writeToStream`; the gate sees them there (the one
 * place a PUBACK is visible as a packet rather than as bytes) and acts only on connections
 * that carry a gate.
 */
import type { Duplex } from 'node:stream';
import mqttPacket, { type Packet } from 'mqtt-packet';

const GATE = Symbol('portcall.ackGate');

type WriteToStream = (packet: Packet, stream: NodeJS.WritableStream, opts?: object) => boolean;

interface Entry {
  readonly messageId: number;
  durable: boolean;
  /** The PUBACK aedes wrote for it, once it has. */
  packet: Packet | undefined;
}

let originalWriteToStream: WriteToStream | undefined;

function install(): WriteToStream {
  if (originalWriteToStream !== undefined) return originalWriteToStream;
  const exports = mqttPacket as unknown as { writeToStream: WriteToStream };
  const original = exports.writeToStream;
  originalWriteToStream = original;
  exports.writeToStream = (packet, stream, opts) => {
    const gate = (stream as unknown as { [GATE]?: AckGate })[GATE];
    if (gate !== undefined && packet.cmd === 'puback' && gate.hold(packet)) return true;
    return original(packet, stream, opts);
  };
  return original;
}

export class AckGate {
  /** Admitted QoS 1 messages whose PUBACK has not been sent, in arrival order. */
  private readonly waiting: Entry[] = [];
  private readonly write: WriteToStream;

  private constructor(private readonly connection: Duplex) {
    this.write = install();
  }

  static of(connection: unknown): AckGate | undefined {
    return (connection as { [GATE]?: AckGate })[GATE];
  }

  static attach(connection: Duplex): AckGate {
    const gate = new AckGate(connection);
    (connection as unknown as { [GATE]: AckGate })[GATE] = gate;
    return gate;
  }

  /** A QoS 1 message was admitted; its PUBACK waits for `durable`, or never comes after `failed`. */
  expect(messageId: number): { durable(): void; failed(error: Error): void } {
    const entry: Entry = { messageId, durable: false, packet: undefined };
    this.waiting.push(entry);
    return {
      durable: () => {
        entry.durable = true;
        this.flush();
      },
      failed: (error) => {
        // Not durable: no PUBACK. Closing the connection makes the device send it again.
        this.waiting.length = 0;
        this.connection.destroy(error);
      },
    };
  }

  /** Takes aedes' PUBACK if a waiting message is its own; false lets it through unheld. */
  hold(packet: Packet): boolean {
    const entry = this.waiting.find((candidate) => candidate.packet === undefined && candidate.messageId === packet.messageId);
    if (entry === undefined) return false;
    entry.packet = packet;
    this.flush();
    return true;
  }

  private flush(): void {
    while (this.waiting.length > 0) {
      const head = this.waiting[0]!;
      if (!head.durable || head.packet === undefined) return;
      this.waiting.shift();
      if (!this.connection.destroyed) this.write(head.packet, this.connection);
    }
  }
}
