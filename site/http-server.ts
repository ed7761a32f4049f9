/**
 * The site's HTTP listener: HTTP/2 for links (many batches in flight on one connection) and
 * HTTP/1.1 for everyone else (curl, browsers, fetch) on the same port.
 *
 * - With TLS, ALPN picks the protocol per connection (`h2` or `http/1.1`), optionally with
 *   client certificates.
 * - Without TLS there is no negotiation; links speak HTTP/2 with prior knowledge, whose
 *   first bytes are a fixed preface no HTTP/1 request starts with, so the listener looks at
 *   the first bytes of a connection and hands it to the HTTP/2 or the HTTP/1.1 server.
 *
 * HTTP/2 windows are opened wide: the default 64 KiB would let a link send 64 KiB per round
 * trip, about 100 KiB/s at a satellite's 600 ms, whatever the link's bandwidth.
 */
import { createServer as createHttp1Server, type IncomingMessage, type Server as Http1Server, type ServerResponse } from 'node:http';
import {
  createSecureServer,
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  type Settings,
} from 'node:http2';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';

export interface SiteHttpTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** CA of client certificates; with it, peers may (or must) present one. */
  readonly ca?: Buffer;
  readonly requireClientCertificate: boolean;
}

type Handler = (request: IncomingMessage, response: ServerResponse) => void;
/** fastify's request handler serves HTTP/2 compatibility requests as well (fastify's HTTP2 docs). */
type AnyHandler = (request: IncomingMessage | Http2ServerRequest, response: ServerResponse | Http2ServerResponse) => void;

const WINDOW_BYTES = 16 * 1024 * 1024;
const SETTINGS: Settings = { initialWindowSize: WINDOW_BYTES, maxConcurrentStreams: 256 };
/** How long closing waits for requests in progress before it drops their connections. */
const CLOSE_GRACE_MS = 1500;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** What fastify's serverFactory must return: a listening server with fastify's close hooks. */
export type SiteServer = Server & { closeIdleConnections(): void; closeHttp2Sessions(): void };

function trackSessions(sessions: Set<Http2Session>) {
  return (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.once('connect', () => session.setLocalWindowSize(WINDOW_BYTES));
    if (!session.connecting) session.setLocalWindowSize(WINDOW_BYTES);
  };
}

/** Makes `server` close like fastify expects, and not wait forever on kept-alive connections. */
function closable(server: Server, sockets: Set<Socket>, sessions: Set<Http2Session>, closeIdleHttp1: () => void): SiteServer {
  const site = server as SiteServer;
  site.closeIdleConnections = closeIdleHttp1;
  site.closeHttp2Sessions = () => {
    for (const session of sessions) session.close();
  };
  const close = server.close.bind(server);
  site.close = (callback?: (error?: Error) => void) => {
    close(callback);
    site.closeHttp2Sessions();
    closeIdleHttp1();
    const timer = setTimeout(() => {
      for (const socket of sockets) socket.destroy();
    }, CLOSE_GRACE_MS);
    timer.unref();
    return site;
  };
  return site;
}

/**
 * A fastify `serverFactory`. Typed as an HTTP/1 server for fastify's sake (the routes of every
 * stage take the default FastifyInstance); at run time it is the listener described above.
 */
export function siteServerFactory(tls: SiteHttpTls | undefined): (handler: Handler) => Http1Server {
  return (httpHandler) => buildServer(tls, httpHandler as AnyHandler) as unknown as Http1Server;
}

function buildServer(tls: SiteHttpTls | undefined, handler: AnyHandler): SiteServer {
  {
    const sockets = new Set<Socket>();
    const sessions = new Set<Http2Session>();
    const remember = (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    };
    if (tls !== undefined) {
      const server = createSecureServer(
        {
          cert: tls.cert,
          key: tls.key,
          ...(tls.ca === undefined ? {} : { ca: tls.ca }),
          requestCert: tls.ca !== undefined,
          rejectUnauthorized: tls.requireClientCertificate,
          allowHTTP1: true,
          settings: SETTINGS,
          maxSessionMemory: 128,
        },
        handler,
      );
      server.on('connection', remember);
      server.on('session', trackSessions(sessions));
      return closable(server, sockets, sessions, () => undefined);
    }
    const http1 = createHttp1Server(handler);
    const http2 = createHttp2Server({ settings: SETTINGS, maxSessionMemory: 128 }, handler);
    http2.on('session', trackSessions(sessions));
    const front = createNetServer((socket) => {
      remember(socket);
      const onReadable = () => {
        const chunk = socket.read() as Buffer | null;
        if (chunk === null) return;
        socket.off('readable', onReadable);
        socket.unshift(chunk);
        const compared = Math.min(chunk.length, PREFACE.length);
        const server = chunk.subarray(0, compared).equals(PREFACE.subarray(0, compared)) ? http2 : http1;
        server.emit('connection', socket);
      };
      socket.on('readable', onReadable);
      socket.on('error', () => socket.destroy());
    });
    // fastify listens for clientError on the server it is given; HTTP/1 parse errors come from here.
    http1.on('clientError', (error, socket) => front.emit('clientError', error, socket));
    return closable(front, sockets, sessions, () => http1.closeIdleConnections());
  };
}
