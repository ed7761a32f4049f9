/**
 * The portal on the site's HTTP port: static pages under /portal/, the vendored browser
 * libraries (uPlot, topojson-client, world-atlas) straight from node_modules, a JSON API
 * under /portal/api/ and live updates as server-sent events (/portal/api/events).
 *
 * Every API answer is computed for the caller's audience (its RecordFilter, from the access
 * policy through the composition root). A caller with no audience (no, bad, revoked or
 * expired token) gets the same 404 as a container that does not exist, except on
 * /portal/api/me, which is where signing in learns that a token is not valid (401).
 * POST /portal/api/sign-in trades a name and password for a session token (the access
 * policy's signIn, handed in); every failure gets the same 401.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, type Registry } from 'prom-client';
import { PortcallError, RateLimitedError, type RecordFilter } from '../../core/index.js';
import type { PortalProjector } from './projector.js';
import { alertsView, containerList, containerView, fleetView, liveEventOf, movementsView } from './views.js';

/** Who a request is, as the access policy says (handed in by the composition root). */
export interface PortalAudience {
  readonly principal: string;
  readonly org: string;
  readonly orgName?: string;
  readonly orgKind: string;
  readonly roles: readonly string[];
  /** The records this audience may see, in the form it may see them. */
  readonly filter: RecordFilter;
  /** Whether it may see the site's operations (link lag, health): carrier operations. */
  readonly operations: boolean;
}

export interface PortalRoutesOptions {
  readonly projector: PortalProjector;
  /** The audience of an `Authorization` header, or undefined. Consults the current access state. */
  authenticate(authorization: string | undefined): PortalAudience | undefined;
  /**
   * Sign-in by password: a session token and its expiry (ISO), or undefined for any failure
   * (the same for every reason). Throws RateLimitedError past the sign-in rate limit. Absent
   * on a site without access control (the route answers 404).
   */
  signIn?(principal: string, password: string, client: string): Promise<{ token: string; expiresAt: string } | undefined>;
  /** Counts a request of this client against the read rate limit; throws RateLimitedError past it. */
  charge?(client: string): void;
  /** Site health and per-link lag, for carrier operations. */
  operations(): unknown;
  /** Live: the most events one burst sends a page before telling it to reload instead. */
  readonly maxLiveEventsPerBurst?: number;
  readonly heartbeatMs?: number;
  readonly registry?: Registry;
}

const here = dirname(fileURLToPath(import.meta.url));
/** The static files: beside the source, or back to the source folder from tsc's dist/cloud/portal or the bundle's dist/bin. */
const STATIC_DIR = [join(here, 'static'), join(here, '..', '..', '..', 'cloud', 'portal', 'static'), join(here, '..', '..', 'cloud', 'portal', 'static')].find((dir) =>
  existsSync(join(dir, 'index.html')),
);

const require = createRequire(import.meta.url);
const packageFile = (name: string, file: string) => join(dirname(require.resolve(`${name}/package.json`)), file);

const VENDOR: Readonly<Record<string, { file: () => string; type: string }>> = {
  'uplot.js': { file: () => packageFile('uplot', 'dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'uplot.css': { file: () => packageFile('uplot', 'dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
  'topojson-client.js': { file: () => packageFile('topojson-client', 'dist/topojson-client.min.js'), type: 'text/javascript; charset=utf-8' },
  'countries-110m.json': { file: () => packageFile('world-atlas', 'countries-110m.json'), type: 'application/json' },
};
const STATIC: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** Pages load only their own files and talk only to their own site; no framing. */
const CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const NOT_FOUND = { code: 'NOT_FOUND', message: 'not found' };
const SIGN_IN_FAILED = { code: 'SIGN_IN_FAILED', message: 'wrong name or password' };

export function registerPortalRoutes(app: FastifyInstance, options: PortalRoutesOptions): void {
  const { projector } = options;
  const requests = options.registry === undefined ? undefined : new Counter({ name: 'portcall_portal_requests_total', help: 'Portal API requests by route and outcome', labelNames: ['route', 'outcome'], registers: [options.registry] });
  const live = options.registry === undefined ? undefined : new Gauge({ name: 'portcall_portal_live_connections', help: 'Open live (server-sent events) connections of the portal', registers: [options.registry] });
  const cache = new Map<string, Buffer>();
  const load = (path: string) => {
    let bytes = cache.get(path);
    if (bytes === undefined) {
      bytes = readFileSync(path);
      cache.set(path, bytes);
    }
    return bytes;
  };

  app.get('/portal', async (_request, reply) => reply.redirect('/portal/'));
  app.get('/portal/', async (_request, reply) => sendStatic(reply, 'index.html'));
  const sendStatic = (reply: FastifyReply, name: string) => {
    const type = STATIC[name];
    if (type === undefined || STATIC_DIR === undefined) return reply.code(404).send(NOT_FOUND);
    return reply
      .header('content-type', type)
      .header('cache-control', 'no-cache')
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .send(load(join(STATIC_DIR, name)));
  };
  app.get('/portal/:file', async (request, reply) => sendStatic(reply, (request.params as { file: string }).file));
  app.get('/portal/vendor/:file', async (request, reply) => {
    const vendor = VENDOR[(request.params as { file: string }).file];
    if (vendor === undefined) return reply.code(404).send(NOT_FOUND);
    return reply.header('content-type', vendor.type).header('cache-control', 'public, max-age=86400').send(load(vendor.file()));
  });

  /** Runs an API handler for the caller's audience; no audience answers as "not found". */
  const api = (route: string, handler: (audience: PortalAudience, request: FastifyRequest) => unknown | Promise<unknown>, onMissing = () => NOT_FOUND) =>
    async (request: FastifyRequest, reply: FastifyReply) => {
      try {
        options.charge?.(request.ip);
      } catch (error) {
        if (error instanceof RateLimitedError) {
          requests?.inc({ route, outcome: 'rate_limited' });
          return reply.code(429).header('retry-after', String(error.retryAfterSeconds)).send({ code: error.code, message: error.message });
        }
        throw error;
      }
      const audience = options.authenticate(request.headers.authorization);
      reply.header('cache-control', 'no-store');
      let body: unknown;
      try {
        body = audience === undefined ? undefined : await handler(audience, request);
      } catch (error) {
        // Pages read their history back from the log: one that cannot answer now says so (503), like the read API.
        if (error instanceof PortcallError && error.retriable) {
          requests?.inc({ route, outcome: 'unavailable' });
          return reply.code(503).header('retry-after', '1').send({ code: error.code, message: error.message });
        }
        requests?.inc({ route, outcome: 'error' });
        throw error;
      }
      if (body === undefined) {
        requests?.inc({ route, outcome: 'not_found' });
        const missing = onMissing();
        return reply.code(missing === NOT_FOUND ? 404 : 401).send(missing);
      }
      requests?.inc({ route, outcome: 'ok' });
      return body;
    };

  app.get(
    '/portal/api/me',
    api(
      'me',
      (audience) => ({
        principal: audience.principal,
        org: audience.org,
        ...(audience.orgName === undefined ? {} : { orgName: audience.orgName }),
        orgKind: audience.orgKind,
        roles: audience.roles,
        operations: audience.operations,
      }),
      () => ({ code: 'UNAUTHENTICATED', message: 'this token is not valid here (unknown, revoked or expired)' }),
    ),
  );
  app.post('/portal/api/sign-in', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    const { signIn } = options;
    if (signIn === undefined) return reply.code(404).send(NOT_FOUND);
    const body = request.body as { principal?: unknown; password?: unknown } | null | undefined;
    if (typeof body !== 'object' || body === null || typeof body.principal !== 'string' || typeof body.password !== 'string') {
      requests?.inc({ route: 'sign-in', outcome: 'invalid' });
      return reply.code(400).send({ code: 'INVALID_INPUT', message: 'a JSON body {"principal": "...", "password": "..."} is required' });
    }
    let session: { token: string; expiresAt: string } | undefined;
    try {
      // Longer than any principal id or password can be: refused without the work (and without filling the limiter's table).
      session = body.principal.length > 128 || body.password.length > 1024 ? undefined : await signIn(body.principal, body.password, request.ip);
    } catch (error) {
      if (error instanceof RateLimitedError) {
        requests?.inc({ route: 'sign-in', outcome: 'rate_limited' });
        return reply
          .code(429)
          .header('retry-after', String(error.retryAfterSeconds))
          .send({ code: error.code, message: `too many sign-in attempts; try again in ${error.retryAfterSeconds} s` });
      }
      throw error;
    }
    requests?.inc({ route: 'sign-in', outcome: session === undefined ? 'refused' : 'ok' });
    if (session === undefined) return reply.code(401).send(SIGN_IN_FAILED);
    return session;
  });
  app.get('/portal/api/containers', api('containers', async (audience) => ({ containers: await containerList(projector.model, audience.filter) })));
  app.get(
    '/portal/api/containers/:id',
    api('container', (audience, request) => containerView(projector.model, audience.filter, (request.params as { id: string }).id, true)),
  );
  app.get('/portal/api/fleet', api('fleet', (audience) => fleetView(projector.model, audience.filter)));
  app.get('/portal/api/alerts', api('alerts', (audience) => ({ alerts: alertsView(projector.model, audience.filter) })));
  app.get('/portal/api/movements', api('movements', (audience) => ({ movements: movementsView(projector.model, audience.filter) })));
  app.get('/portal/api/operations', api('operations', (audience) => (audience.operations ? options.operations() : undefined)));

  const maxBurst = options.maxLiveEventsPerBurst ?? 2000;
  // Live connections never end on their own: end them when the site closes its listener.
  const openStreams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const close of [...openStreams]) close();
  });
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  app.get('/portal/api/events', async (request, reply) => {
    try {
      options.charge?.(request.ip);
    } catch (error) {
      if (error instanceof RateLimitedError) return reply.code(429).header('retry-after', String(error.retryAfterSeconds)).send({ code: error.code, message: error.message });
      throw error;
    }
    const authorization = request.headers.authorization;
    if (options.authenticate(authorization) === undefined) return reply.code(404).send(NOT_FOUND);
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    raw.write(': portcall portal live\n\n');
    live?.inc();
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(heartbeat);
      openStreams.delete(close);
      live?.dec();
      raw.end();
    };
    openStreams.add(close);
    const unsubscribe = projector.onRecords((records) => {
      // Asked again for every burst: a revoked token or an ended window stops the flow at once.
      const audience = options.authenticate(authorization);
      if (audience === undefined) {
        close();
        return;
      }
      const lines: string[] = [];
      for (const record of records) {
        const event = liveEventOf(audience.filter, record);
        if (event === undefined) continue;
        if (lines.length >= maxBurst) {
          lines.length = 0;
          lines.push(`data: ${JSON.stringify({ type: 'resync' })}\n\n`);
          break;
        }
        lines.push(`data: ${JSON.stringify(event)}\n\n`);
      }
      if (lines.length > 0) raw.write(lines.join(''));
    });
    const heartbeat = setInterval(() => raw.write(': keep-alive\n\n'), heartbeatMs);
    heartbeat.unref();
    request.raw.on('close', close);
    raw.on('error', close);
  });
}
