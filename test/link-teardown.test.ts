/**
 * A link whose peer stops answering (its event loop held, or the satellite losing lock): the
 * stall watchdog gives the connection up, and every request on it settles then, not only the
 * batches the watchdog was armed for: a GET left waiting (the forwarder's resume asks the
 * peer's positions while the other lane's batches are still out) would hold that lane of the
 * link forever. (It settles because the destroyed stream ends without a response; a stream
 * that is not read would only close, which is why the link reads every one.)
 */
import http2 from 'node:http2';
import { afterEach, expect, it } from 'vitest';
import { LinkError, type LogRecord } from '../core/index.js';
import { Http2Link } from '../edge/link/index.js';
import { FaultProxy } from '../tools/fault-proxy/index.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const record: LogRecord = { origin: 'AURORA', stream: 'containers', topic: 'Y01', offset: 0, eventTimeMs: 1, ingestTimeMs: 1, headers: {}, payload: Buffer.from('{"tempC":4}') };

it('settles a request in flight when the stall watchdog gives the connection up, so the next one reconnects', async () => {
  // A peer that takes requests and answers none of them (until told to): only the proxy's
  // stall keeps its PINGs from coming back.
  let answer = false;
  const waiting: http2.ServerHttp2Stream[] = [];
  const peer = http2.createServer();
  peer.on('stream', (stream, headers) => {
    stream.resume();
    if (!answer) {
      waiting.push(stream);
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/json' });
    stream.end(headers[':path']?.startsWith('/v1/positions') ? JSON.stringify({ positions: { containers: 7 } }) : '{}');
  });
  await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => peer.close(() => resolve())));
  cleanups.push(() => waiting.forEach((stream) => stream.destroy()));
  const proxy = await FaultProxy.start({ targetPort: (peer.address() as { port: number }).port });
  cleanups.push(() => proxy.close());
  const link = new Http2Link({ url: proxy.url(), sender: 'AURORA', token: 't'.repeat(24), stallTimeoutMs: 400, requestTimeoutMs: 60_000 });
  cleanups.push(() => link.close());

  // A batch out (it arms the watchdog), then a GET beside it, as the other lane's resume asks.
  const batch = link.send([record]);
  batch.catch(() => undefined);
  await expect.poll(() => waiting.length, { timeout: 5000 }).toBe(1);
  const positions = link.positions('incarnation-1');
  positions.catch(() => undefined);
  await expect.poll(() => waiting.length, { timeout: 5000 }).toBe(2);
  proxy.stall();
  const startedAt = performance.now();

  const [sent, asked] = await Promise.allSettled([batch, positions]);
  const settledAfterMs = performance.now() - startedAt;
  expect(sent.status).toBe('rejected');
  expect(asked.status).toBe('rejected');
  for (const outcome of [sent, asked]) {
    const error = (outcome as PromiseRejectedResult).reason as LinkError;
    expect(error).toBeInstanceOf(LinkError);
    expect(error.reason).toBe('stalled');
    expect(error.retriable).toBe(true);
  }
  // Given up by the watchdog (400 ms without a PING back), long before the 60 s request timeout.
  expect(settledAfterMs).toBeLessThan(10_000);

  // The peer answers again: the link reconnects and the same questions get answers.
  proxy.resume();
  answer = true;
  expect(await link.positions('incarnation-1')).toEqual({ containers: 7 });
});
