/**
 * Wires the portal into a site (composition root helper): the read model's projector over
 * the site's log, and the audience of each request from the access policy (cloud/access).
 * The portal itself never imports access control; it is handed this.
 */
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { StreamSource, TopicReader } from '../core/index.js';
import { bearerOf, type RunningAccess } from '../cloud/access/index.js';
import { PortalProjector, registerPortalRoutes, type PortalAudience } from '../cloud/portal/index.js';

const EVERYONE: PortalAudience = {
  principal: 'anyone',
  org: 'open site',
  orgKind: 'carrier',
  roles: ['carrier-ops'],
  filter: { mayHold: () => true, admit: (record) => record },
  operations: true,
};

export function startSitePortal(
  app: FastifyInstance,
  options: { source: StreamSource; reader: TopicReader; access: RunningAccess | undefined; operations: () => unknown; logger: Logger; registry: Registry },
): PortalProjector {
  const projector = new PortalProjector({ source: options.source, reader: options.reader, logger: options.logger.child({ component: 'portal' }) });
  // Rebuilt from the log in the background: the site does not wait for it to start.
  projector.start().catch((error: unknown) => options.logger.error({ err: (error as Error).message }, 'portal: catching up failed'));
  const { access } = options;
  registerPortalRoutes(app, {
    projector,
    // Without access control the site is open to anyone (said at start and on /healthz), the portal too.
    authenticate: (authorization) => {
      if (access === undefined) return EVERYONE;
      const viewer = access.policy.authenticate(bearerOf(authorization));
      if (viewer === undefined) return undefined;
      return {
        principal: viewer.principal.id,
        org: viewer.org.id,
        ...(viewer.org.name === undefined ? {} : { orgName: viewer.org.name }),
        orgKind: viewer.org.kind,
        roles: access.policy.rolesOf(viewer),
        filter: access.policy.filterFor(viewer),
        // Site health and link lag are not records; the carrier's operations role sees them
        // (as the policy counts roles: carrier-ops held in a customer's organisation is nothing).
        operations: access.policy.rolesOf(viewer).includes('carrier-ops'),
      };
    },
    // Sign-in by password: a session token any site holding the access key accepts (nothing is written).
    ...(access === undefined
      ? {}
      : {
          signIn: async (principal: string, password: string, client: string) => {
            const session = await access.signIn(principal, password, client);
            return session === undefined ? undefined : { token: session.token, expiresAt: new Date(session.expiresAtMs).toISOString() };
          },
        }),
    // The read API's rate limit (per client address) counts portal requests too.
    ...(access === undefined ? {} : { charge: (client: string) => void access.readAccess.readerFor(undefined, client) }),
    operations: options.operations,
    registry: options.registry,
  });
  return projector;
}
