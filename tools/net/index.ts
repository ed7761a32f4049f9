import { createServer } from 'node:net';

/**
 * A loopback port that was free a moment ago. Another process can take it before the caller
 * binds it; callers that can bind port 0 themselves should do that instead.
 */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
