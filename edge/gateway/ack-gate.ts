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
 * that carry a gate. A held PUBACK is not kept as aedes' packet object: the gate writes the
 * 4 bytes itself, all the PUBACKs one commit releases on a connection in one write.
 *
 * Cost per message: one small entry object (no closures), found in O(1) when aedes writes its
 * PUBACK (aedes writes them in the order the hook admitted the messages).
 */
// First: before aedes or mqtt-packet load (see the module).
import './mqtt-packet-speedups.js';
import type { Duplex } from 'node:stream';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { CommitWaiter } from './commit-batcher.js';

const GATE = Symbol('portcall.ackGate');

type WriteToStream = (packet: Packet, stream: NodeJS.WritableStream, opts?: object) => boolean;

let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  const exports = mqttPacket as unknown as { writeToStream: WriteToStream };
  const original = exports.writeToStream;
  exports.writeToStream = (packet, stream, opts) => {
    const gate = (stream as unknown as { [GATE]?: AckGate })[GATE];
    if (gate !== undefined && packet.cmd === 'puback' && gate.hold(packet.messageId!)) return true;
    return original(packet, stream, opts);
  };
}

/** One admitted QoS 1 message of a connection; told by the commit batcher when it is durable. */
export class AckEntry implements CommitWaiter {
  durable = false;
  /** aedes has written (and the gate holds) the PUBACK of this message. */
  acknowledged = false;

  constructor(
    private readonly gate: AckGate,
    readonly messageId: number,
  ) {}

  committed(error: Error | undefined): void {
    if (error === undefined) {
      this.durable = true;
      this.gate.flush();
    } else this.gate.fail(error);
  }
}

export class AckGate {
  /** Admitted QoS 1 messages whose PUBACK has not been sent, in arrival order, from `head`. */
  private waiting: AckEntry[] = [];
  private head = 0;
  /** Index of the first entry whose PUBACK aedes has not written yet. */
  private firstUnacknowledged = 0;

  private constructor(
    private readonly connection: Duplex,
    private readonly onFailure: (error: Error) => void,
  ) {
    install();
  }

  static of(connection: unknown): AckGate | undefined {
    return (connection as { [GATE]?: AckGate })[GATE];
  }

  /** `onFailure` is told (once per failed commit) before the connection is closed. */
  static attach(connection: Duplex, onFailure: (error: Error) => void = () => undefined): AckGate {
    const gate = new AckGate(connection, onFailure);
    (connection as unknown as { [GATE]: AckGate })[GATE] = gate;
    return gate;
  }

  /** A QoS 1 message was admitted; its PUBACK waits until the entry is `committed`, or never comes after a failure. */
  expect(messageId: number): AckEntry {
    const entry = new AckEntry(this, messageId);
    this.waiting.push(entry);
    return entry;
  }

  /** Messages admitted whose PUBACK has not left yet. */
  get held(): number {
    return this.waiting.length - this.head;
  }

  /** Takes aedes' PUBACK if a waiting message is its own; false lets it through unheld. */
  hold(messageId: number): boolean {
    const waiting = this.waiting;
    // aedes writes PUBACKs in the order the hook admitted their messages: the first entry
    // still without one is nearly always it. A client reusing an id still in flight gets
    // its PUBACKs matched in arrival order, as before.
    let index = this.firstUnacknowledged;
    while (index < waiting.length && (waiting[index]!.acknowledged || waiting[index]!.messageId !== messageId)) index += 1;
    if (index >= waiting.length) return false;
    waiting[index]!.acknowledged = true;
    if (index === this.firstUnacknowledged) {
      let next = index + 1;
      while (next < waiting.length && waiting[next]!.acknowledged) next += 1;
      this.firstUnacknowledged = next;
    }
    this.flush();
    return true;
  }

  /** Sends every PUBACK at the head whose message is durable, in one write. */
  flush(): void {
    const waiting = this.waiting;
    let end = this.head;
    while (end < waiting.length && waiting[end]!.durable && waiting[end]!.acknowledged) end += 1;
    const count = end - this.head;
    if (count === 0) return;
    if (!this.connection.destroyed) {
      const bytes = Buffer.allocUnsafe(count * 4);
      for (let i = 0, at = 0; i < count; i += 1, at += 4) {
        const id = waiting[this.head + i]!.messageId;
        bytes[at] = 0x40;
        bytes[at + 1] = 0x02;
        bytes[at + 2] = id >> 8;
        bytes[at + 3] = id & 0xff;
      }
      this.connection.write(bytes);
    }
    this.head = end;
    if (this.head === waiting.length) {
      this.waiting = [];
      this.head = 0;
      this.firstUnacknowledged = 0;
    } else if (this.head >= 1024 && this.head * 2 >= waiting.length) {
      this.waiting = waiting.slice(this.head);
      this.firstUnacknowledged -= this.head;
      this.head = 0;
    }
  }

  /** Not durable: no PUBACK for it or anything after it. Closing the connection makes the device send them again. */
  fail(error: Error): void {
    if (this.waiting.length === 0 && this.connection.destroyed) return;
    this.waiting = [];
    this.head = 0;
    this.firstUnacknowledged = 0;
    this.onFailure(error);
    this.connection.destroy(error);
  }
}
