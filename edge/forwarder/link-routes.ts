/**
 * The external switch of a site's links over HTTP, for the ship's own systems:
 *
 *   GET    /v1/links                 every link's condition, lag and last acknowledgement
 *   PUT    /v1/links/<name>/state    {"state": "up"|"metered"|"down", "bandwidthBytesPerSecond"?, "forSeconds"?}
 *   DELETE /v1/links/<name>/state    drops the override; the switch file, schedule or default decide again
 *
 * Changing a link needs `Authorization: Bearer <links[].controlToken>`; a link without a
 * control token cannot be switched over HTTP. Refusals are counted by reason.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { z } from 'zod';
import { LINK_STATES, type LinkPolicy } from './link-policy.js';

export interface LinkControl {
  readonly name: string;
  readonly policy: LinkPolicy;
  readonly controlToken: string | undefined;
  /** What GET reports besides the condition: lag, last acknowledgement, errors. */
  status(): Record<string, unknown>;
}

const stateBody = z.strictObject({
  state: z.enum(LINK_STATES),
  bandwidthBytesPerSecond: z.number().int().positive().optional(),
  forSeconds: z.number().positive().max(366 * 24 * 3600).optional(),
});

function tokensEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

export function registerLinkRoutes(app: FastifyInstance, links: readonly LinkControl[], options: { registry?: Registry } = {}): void {
  const refusals = new Counter({
    name: 'portcall_link_control_refused_total',
    help: 'Link state changes over HTTP that were refused, by reason',
    labelNames: ['reason'],
    registers: options.registry === undefined ? [] : [options.registry],
  });
  const refuse = (reply: FastifyReply, status: number, reason: string, message: string) => {
    refusals.inc({ reason });
    return reply.code(status).send({ code: 'LINK_CONTROL_REFUSED', reason, message });
  };
  const describe = (link: LinkControl) => {
    const condition = link.policy.current();
    const override = link.policy.getOverride();
    return {
      name: link.name,
      state: condition.state,
      source: condition.source,
      bandwidthBytesPerSecond: condition.bandwidthBytesPerSecond ?? null,
      override: override === undefined ? null : { ...override, until: override.untilMs === undefined ? null : new Date(override.untilMs).toISOString() },
      ...link.status(),
    };
  };
  const authorised = (link: LinkControl, header: string | undefined): boolean => {
    const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    return link.controlToken !== undefined && token !== '' && tokensEqual(link.controlToken, token);
  };

  app.get('/v1/links', async () => ({ links: links.map(describe) }));

  app.get<{ Params: { name: string } }>('/v1/links/:name', async (request, reply) => {
    const link = links.find((candidate) => candidate.name === request.params.name);
    if (link === undefined) return reply.code(404).send({ code: 'NOT_FOUND', message: `no link named ${request.params.name}` });
    return describe(link);
  });

  app.put<{ Params: { name: string } }>('/v1/links/:name/state', async (request, reply) => {
    const link = links.find((candidate) => candidate.name === request.params.name);
    if (link === undefined) return refuse(reply, 404, 'unknown-link', `no link named ${request.params.name}`);
    if (link.controlToken === undefined) {
      return refuse(reply, 403, 'control-disabled', `link ${link.name} has no controlToken; it cannot be switched over HTTP`);
    }
    if (!authorised(link, request.headers.authorization)) return refuse(reply, 401, 'unauthenticated', 'missing or wrong control token');
    const parsed = stateBody.safeParse(request.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return refuse(reply, 400, 'bad-body', `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`);
    }
    const { state, bandwidthBytesPerSecond, forSeconds } = parsed.data;
    link.policy.setOverride({
      state,
      ...(bandwidthBytesPerSecond === undefined ? {} : { bandwidthBytesPerSecond }),
      ...(forSeconds === undefined ? {} : { untilMs: Date.now() + forSeconds * 1000 }),
    });
    return describe(link);
  });

  app.delete<{ Params: { name: string } }>('/v1/links/:name/state', async (request, reply) => {
    const link = links.find((candidate) => candidate.name === request.params.name);
    if (link === undefined) return refuse(reply, 404, 'unknown-link', `no link named ${request.params.name}`);
    if (!authorised(link, request.headers.authorization)) return refuse(reply, 401, 'unauthenticated', 'missing or wrong control token');
    link.policy.setOverride(undefined);
    return describe(link);
  });
}
