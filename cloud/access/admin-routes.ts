/**
 * The admin API, under /v1/access on the site's HTTP port: every change is a signed record
 * appended to the log (who, when), and takes effect once the projector has applied it, which
 * each route waits for before answering. Only a principal with `access-admin` (or the
 * bootstrap token) may call it; every call counts against a fixed window per client address.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { z } from 'zod';
import { PortcallError, RateLimitedError, type RecordAppender } from '../../core/index.js';
import { BOOTSTRAP_PRINCIPAL, ROLE_ORG_KINDS, type AccessPolicy, type Viewer } from './policy.js';
import type { AccessProjector } from './projector.js';
import type { FixedWindowLimiter } from '../../core/rate-limit.js';
import { ORG_KINDS, ROLES, idSchema, signedRecord, type AccessRecord, type CustodyRecord } from './records.js';
import { bearerOf, newToken } from './tokens.js';
import { hashPassword, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from './passwords.js';
import { parseAce } from './ace.js';

export interface AdminRoutesOptions {
  readonly appender: RecordAppender;
  readonly projector: AccessProjector;
  readonly policy: AccessPolicy;
  readonly key: Uint8Array;
  readonly limiter: FixedWindowLimiter;
  readonly now?: () => number;
  readonly registry?: Registry;
}

const isoTime = z.iso.datetime({ offset: true }).transform((text) => Date.parse(text));

const bodies = {
  org: z.strictObject({ id: idSchema, kind: z.enum(ORG_KINDS), name: z.string().max(200).optional(), port: z.string().regex(/^[A-Za-z0-9]{2,16}$/).optional() }),
  principal: z.strictObject({ id: idSchema, org: idSchema, kind: z.enum(['person', 'service']).default('person'), roles: z.array(z.enum(ROLES)).min(1) }),
  group: z.strictObject({ id: idSchema, members: z.array(idSchema).max(10_000) }),
  ace: z.strictObject({ expression: z.string().max(1024).nullable() }),
  token: z.strictObject({ principal: idSchema, expiresAt: isoTime.optional() }),
  password: z.strictObject({
    password: z
      .string()
      .min(MIN_PASSWORD_LENGTH, `must be at least ${MIN_PASSWORD_LENGTH} characters`)
      .max(MAX_PASSWORD_LENGTH, `must be at most ${MAX_PASSWORD_LENGTH} characters`),
  }),
  custody: z.strictObject({
    id: idSchema.optional(),
    container: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/),
    org: idSchema,
    as: z.enum(['owner', 'consignee']).default('owner'),
    from: isoTime,
    to: isoTime.optional(),
  }),
};

class Refused extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function registerAccessAdminRoutes(app: FastifyInstance, options: AdminRoutesOptions): void {
  const now = options.now ?? Date.now;
  const changes = new Counter({
    name: 'portcall_access_changes_total',
    help: 'Access changes written through the admin API, by type',
    labelNames: ['type'] as const,
    registers: options.registry === undefined ? [] : [options.registry],
  });
  const refusals = new Counter({
    name: 'portcall_access_admin_refusals_total',
    help: 'Admin API calls refused, by reason (unauthorized, invalid, rate_limited)',
    labelNames: ['reason'] as const,
    registers: options.registry === undefined ? [] : [options.registry],
  });
  const state = () => options.projector.state;

  /** Rate limit, then an access-admin principal, or a refusal. */
  const admin = (request: FastifyRequest): Viewer => {
    options.limiter.take(request.ip);
    const viewer = options.policy.authenticate(bearerOf(request.headers.authorization));
    if (viewer === undefined || !options.policy.mayAdminister(viewer)) throw new Refused(401, 'UNAUTHORIZED', 'an access-admin bearer token is required');
    return viewer;
  };

  const write = async (record: AccessRecord | CustodyRecord) => {
    await options.appender.append([signedRecord(options.key, record)]);
    await options.projector.catchUp();
    changes.inc({ type: record.type });
  };

  const parse = <T extends z.ZodType>(schema: T, body: unknown): z.infer<T> => {
    const result = schema.safeParse(body ?? {});
    if (!result.success) {
      throw new Refused(400, 'INVALID_INPUT', result.error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`).join('; '));
    }
    return result.data;
  };

  const handle =
    (run: (request: FastifyRequest, viewer: Viewer) => Promise<unknown>) =>
    async (request: FastifyRequest, reply: FastifyReply) => {
      try {
        const viewer = admin(request);
        return await run(request, viewer);
      } catch (error) {
        if (error instanceof RateLimitedError) {
          refusals.inc({ reason: 'rate_limited' });
          return reply.code(429).header('retry-after', String(error.retryAfterSeconds)).send({ code: error.code, message: error.message });
        }
        if (error instanceof Refused) {
          refusals.inc({ reason: error.status === 401 ? 'unauthorized' : 'invalid' });
          return reply.code(error.status).send({ code: error.code, message: error.message });
        }
        // The log cannot take the change now (disk full, store down): nothing was written.
        if (error instanceof PortcallError && error.retriable) {
          return reply.code(503).header('retry-after', '1').send({ code: error.code, message: error.message });
        }
        throw error;
      }
    };

  const audit = (viewer: Viewer) => ({ by: viewer.principal.id, atMs: now() });
  const mustExist = (what: string, id: string, map: ReadonlyMap<string, unknown>) => {
    if (!map.has(id)) throw new Refused(400, 'INVALID_INPUT', `no ${what} "${id}"`);
  };

  app.get(
    '/v1/access/state',
    handle(async () => state().snapshot()),
  );

  app.post(
    '/v1/access/orgs',
    handle(async (request, viewer) => {
      const body = parse(bodies.org, request.body);
      if (body.kind === 'port-authority' && body.port === undefined) throw new Refused(400, 'INVALID_INPUT', 'port: required for a port authority');
      await write({ type: 'org.set', ...body, ...audit(viewer) });
      return { org: body.id };
    }),
  );

  app.post(
    '/v1/access/principals',
    handle(async (request, viewer) => {
      const body = parse(bodies.principal, request.body);
      if (body.id === BOOTSTRAP_PRINCIPAL) throw new Refused(400, 'INVALID_INPUT', `id: "${BOOTSTRAP_PRINCIPAL}" is the bootstrap token's principal`);
      mustExist('organisation', body.org, state().orgs);
      const org = state().orgs.get(body.org)!;
      for (const role of body.roles) {
        if (!ROLE_ORG_KINDS[role].includes(org.kind)) {
          throw new Refused(400, 'INVALID_INPUT', `roles: ${role} is for ${ROLE_ORG_KINDS[role].join(' or ')} organisations; "${org.id}" is a ${org.kind}`);
        }
      }
      if (body.roles.includes('port-authority') && org.port === undefined) {
        throw new Refused(400, 'INVALID_INPUT', `roles: port-authority needs an organisation with a port; "${org.id}" has none`);
      }
      await write({ type: 'principal.set', ...body, ...audit(viewer) });
      return { principal: body.id };
    }),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/access/principals/:id',
    handle(async (request, viewer) => {
      const id = parse(idSchema, (request.params as { id: string }).id);
      mustExist('principal', id, state().principals);
      await write({ type: 'principal.disabled', id, ...audit(viewer) });
      return { principal: id, disabled: true };
    }),
  );

  app.post(
    '/v1/access/groups',
    handle(async (request, viewer) => {
      const body = parse(bodies.group, request.body);
      for (const member of body.members) mustExist('principal', member, state().principals);
      await write({ type: 'group.set', ...body, ...audit(viewer) });
      return { group: body.id };
    }),
  );

  app.put<{ Params: { stream: string } }>(
    '/v1/access/streams/:stream/ace',
    handle(async (request, viewer) => {
      const stream = parse(z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, 'must be a stream name'), (request.params as { stream: string }).stream);
      const body = parse(bodies.ace, request.body);
      if (body.expression !== null) {
        try {
          parseAce(body.expression);
        } catch (error) {
          throw new Refused(400, 'INVALID_INPUT', (error as Error).message);
        }
      }
      await write({ type: 'ace.set', stream, expression: body.expression, ...audit(viewer) });
      return { stream, expression: body.expression };
    }),
  );

  app.post(
    '/v1/access/tokens',
    handle(async (request, viewer) => {
      const body = parse(bodies.token, request.body);
      mustExist('principal', body.principal, state().principals);
      if (body.expiresAt !== undefined && body.expiresAt <= now()) throw new Refused(400, 'INVALID_INPUT', 'expiresAt: must be in the future');
      const token = newToken();
      await write({
        type: 'token.issued',
        tokenId: token.tokenId,
        principal: body.principal,
        sha256: token.sha256,
        ...(body.expiresAt === undefined ? {} : { expiresAtMs: body.expiresAt }),
        ...audit(viewer),
      });
      // The only time the token is shown: it is stored hashed.
      return {
        tokenId: token.tokenId,
        principal: body.principal,
        token: token.token,
        ...(body.expiresAt === undefined ? {} : { expiresAt: new Date(body.expiresAt).toISOString() }),
      };
    }),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/access/tokens/:id',
    handle(async (request, viewer) => {
      const tokenId = parse(z.string().regex(/^[0-9a-f]{16}$/, 'must be a token id (16 hex digits)'), (request.params as { id: string }).id);
      mustExist('token', tokenId, state().tokens);
      await write({ type: 'token.revoked', tokenId, ...audit(viewer) });
      return { tokenId, revoked: true };
    }),
  );

  app.put<{ Params: { id: string } }>(
    '/v1/access/principals/:id/password',
    handle(async (request, viewer) => {
      const principal = parse(idSchema, (request.params as { id: string }).id);
      mustExist('principal', principal, state().principals);
      const body = parse(bodies.password, request.body);
      // Only the scrypt hash is written; the password is neither stored nor logged. A new
      // password ends every session signed in with the old one.
      await write({ type: 'password.set', principal, hash: await hashPassword(body.password), ...audit(viewer) });
      return { principal, password: 'set' };
    }),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/access/principals/:id/password',
    handle(async (request, viewer) => {
      const principal = parse(idSchema, (request.params as { id: string }).id);
      mustExist('principal', principal, state().principals);
      await write({ type: 'password.cleared', principal, ...audit(viewer) });
      return { principal, password: 'cleared' };
    }),
  );

  app.post(
    '/v1/access/custody',
    handle(async (request, viewer) => {
      const body = parse(bodies.custody, request.body);
      mustExist('organisation', body.org, state().orgs);
      if (body.to !== undefined && body.to <= body.from) throw new Refused(400, 'INVALID_INPUT', 'to: must be after from');
      const id = body.id ?? `c-${randomBytes(6).toString('hex')}`;
      if (state().custody.has(id)) throw new Refused(400, 'INVALID_INPUT', `custody window "${id}" exists already`);
      await write({
        type: 'custody.assigned',
        id,
        container: body.container,
        org: body.org,
        as: body.as,
        fromMs: body.from,
        ...(body.to === undefined ? {} : { toMs: body.to }),
        ...audit(viewer),
      });
      return { id, container: body.container, org: body.org, as: body.as };
    }),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/access/custody/:id',
    handle(async (request, viewer) => {
      const id = parse(idSchema, (request.params as { id: string }).id);
      mustExist('custody window', id, state().custody);
      await write({ type: 'custody.withdrawn', id, ...audit(viewer) });
      return { id, withdrawn: true };
    }),
  );
}
