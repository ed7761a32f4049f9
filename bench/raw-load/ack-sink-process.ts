/**
 * A broker that does nothing but answer: CONNACK, PUBACK, PINGRESP, straight from the byte
 * stream. Driving it shows the load generator's own ceiling, so a broker figure close to
 * that ceiling reads as "the generator ran out", not "the broker did".
 */
import { createServer } from 'node:net';
import { PACKET_CONNECT, PACKET_PINGREQ, PACKET_PUBLISH, PINGRESP, concat, forEachFrame } from './frames.js';

const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let tail: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    const buffer = concat(tail, chunk);
    const replies: Buffer[] = [];
    let acks: Buffer | undefined;
    let ackCount = 0;
    const ackIds: number[] = [];
    tail = forEachFrame(buffer, (type, flags, start) => {
      if (type === PACKET_PUBLISH && (flags & 0x06) !== 0) {
        const topicLength = buffer[start]! * 256 + buffer[start + 1]!;
        const idAt = start + 2 + topicLength;
        ackIds.push(buffer[idAt]! * 256 + buffer[idAt + 1]!);
      } else if (type === PACKET_CONNECT) replies.push(CONNACK);
      else if (type === PACKET_PINGREQ) replies.push(PINGRESP);
    });
    if (ackIds.length > 0) {
      acks = Buffer.alloc(ackIds.length * 4);
      for (const id of ackIds) {
        acks[ackCount * 4] = 0x40;
        acks[ackCount * 4 + 1] = 0x02;
        acks[ackCount * 4 + 2] = id >> 8;
        acks[ackCount * 4 + 3] = id & 0xff;
        ackCount += 1;
      }
      replies.push(acks);
    }
    if (replies.length > 0) socket.write(replies.length === 1 ? replies[0]! : Buffer.concat(replies));
  });
  socket.on('error', () => socket.destroy());
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send!({ kind: 'ready', port: typeof address === 'object' && address !== null ? address.port : 0 });
});
process.on('disconnect', () => process.exit(0));
