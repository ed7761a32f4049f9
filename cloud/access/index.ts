/**
 * Access control (issue 8, DESIGN.md decision 8): per-customer access, as data in the log,
 * decided by one policy module and asked by every path out of the site.
 *
 * Rules and invariants:
 * - The model is records, never code or configuration: organisations, principals, groups,
 *   stream expressions and tokens in `access/changes`; custody windows in `manifests/custody`.
 *   Each names who made the change and when, and is signed with the sites' access key; an
 *   unsigned or badly signed record in those topics is ignored (a device or a peer cannot
 *   grant itself anything).
 * - AccessState is a pure fold of those records (AccessProjector): replaying from offset 0
 *   gives the same state; applying a record twice changes nothing.
 * - One policy (AccessPolicy) decides: who a token stands for, whether a topic can hold
 *   anything for them, and each record's admitted form (full, or a coarser projection). Paths
 *   get a `RecordFilter` or a `ReadAccess` (core/access.ts) and never decide themselves.
 * - Denials reveal nothing: for a read path, a record the policy does not admit does not
 *   exist. A missing, malformed, unknown, revoked or expired token reads an empty site.
 * - Tokens are 256-bit random secrets shown once; only their SHA-256 is stored and compared
 *   in constant time.
 * - Passwords are stored as scrypt hashes (records). Signing in appends nothing: it returns a
 *   stateless session token (HMAC under the access key) that any site holding the key and
 *   the records accepts until it expires or the password changes. Sessions are never stored.
 * - The `access` stream never leaves a site through a read path, whatever the expressions say.
 *
 * See docs/ACCESS.md for the model, the expression grammar and the projections.
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import { RateLimitedError, type LinkFilter, type ReadAccess, type RecordAppender, type RecordFilter, type StreamSource, type TopicReader } from '../../core/index.js';
import { linkFilter, type LinkAudience } from './link-filter.js';
import { registerAccessAdminRoutes } from './admin-routes.js';
import { AccessPolicy, type Viewer } from './policy.js';
import { AccessProjector } from './projector.js';
import { FixedWindowLimiter } from '../../core/rate-limit.js';
import { hashToken } from './tokens.js';

export { parseAce, evaluateAce, formatAce, MAX_ACE_LENGTH, type Ace, type AceSubject, type AceTermKind } from './ace.js';
export { AccessPolicy, BOOTSTRAP_PRINCIPAL, CONTAINER_STREAMS, DEFAULT_ACES, type Viewer, type AccessPolicyOptions } from './policy.js';
export { AccessProjector, applyRecord, type AccessProjectorOptions } from './projector.js';
export { AccessState, type Org, type Principal, type TokenEntry, type CustodyWindow } from './state.js';
export {
  ACCESS_STREAM,
  ACCESS_TOPIC,
  CUSTODY_STREAM,
  CUSTODY_TOPIC,
  MAC_HEADER,
  ORG_KINDS,
  ROLES,
  signedRecord,
  verifyRecord,
  type AccessRecord,
  type CustodyRecord,
  type Role,
} from './records.js';
export { FilteredTopicReader, EMPTY_READER, DEFAULT_MAX_SCAN_RECORDS } from './filtered-reader.js';
export { FixedWindowLimiter } from '../../core/rate-limit.js';
export { newToken, hashToken, bearerOf, tokenIdOf } from './tokens.js';
export { hashPassword, MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH } from './passwords.js';
export { registerAccessAdminRoutes, type AdminRoutesOptions } from './admin-routes.js';
export { linkFilter, type LinkAudience, type LinkFilterOptions } from './link-filter.js';

export interface AccessOptions {
  /** Key every access record is signed with (shared by the sites that enforce access). */
  readonly key: Uint8Array;
  /** The bootstrap admin token, if configured. */
  readonly bootstrapToken?: string;
  readonly reader: TopicReader;
  /** Where admin changes are appended; without it, this site only follows access records replicated to it. */
  readonly appender?: RecordAppender;
  readonly source?: Pick<StreamSource, 'onDurable'>;
  readonly readRateLimit: { readonly requests: number; readonly windowMs: number };
  readonly adminRateLimit: { readonly requests: number; readonly windowMs: number };
  /** Sign-in attempts per client address, and per principal, and window (default 10 a minute). */
  readonly signInRateLimit?: { readonly requests: number; readonly windowMs: number };
  /** How long a session from signing in by password lasts (default 8 hours). */
  readonly sessionMs?: number;
  readonly maxScanRecords?: number;
  readonly pollIntervalMs?: number;
  readonly now?: () => number;
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export interface RunningAccess {
  readonly policy: AccessPolicy;
  readonly projector: AccessProjector;
  /** What the read API is handed. */
  readonly readAccess: ReadAccess;
  /** The filter of the principal a token stands for (replication, live, Kafka paths), or undefined. */
  filterForToken(token: string): RecordFilter | undefined;
  /**
   * The filter of a replication link to a customer's own endpoint: the principal the site's
   * configuration names, or a token's. Unlike `filterForToken` it exists before its audience
   * does (access records may still be on their way) and follows it as it changes, and it
   * says what a change may have widened, so the link can send what it left out earlier.
   */
  linkFilter(audience: LinkAudience): LinkFilter;
  /**
   * Sign-in by password: a session token and its expiry, or undefined (the same for every
   * reason). Throws RateLimitedError past the sign-in rate limit of the client or principal.
   */
  signIn(principal: string, password: string, client: string): Promise<{ token: string; expiresAtMs: number } | undefined>;
  /** Adds /v1/access/... when this site can write access records. */
  registerAdminRoutes(app: FastifyInstance): void;
  close(): void;
}

/** Builds the policy and its projector, and reads every access record held before returning. */
export async function startAccess(options: AccessOptions): Promise<RunningAccess> {
  const projector = new AccessProjector({
    reader: options.reader,
    ...(options.source === undefined ? {} : { source: options.source }),
    key: options.key,
    ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    ...(options.registry === undefined ? {} : { registry: options.registry }),
  });
  await projector.start();
  const policy = new AccessPolicy({
    state: () => projector.state,
    ...(options.bootstrapToken === undefined ? {} : { bootstrapSha256: hashToken(options.bootstrapToken) }),
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.maxScanRecords === undefined ? {} : { maxScanRecords: options.maxScanRecords }),
    key: options.key,
    ...(options.sessionMs === undefined ? {} : { sessionMs: options.sessionMs }),
  });
  const now = options.now ?? Date.now;
  const signInLimit = options.signInRateLimit ?? { requests: 10, windowMs: 60_000 };
  const signInByClient = new FixedWindowLimiter(signInLimit.requests, signInLimit.windowMs, now);
  const signInByPrincipal = new FixedWindowLimiter(signInLimit.requests, signInLimit.windowMs, now);
  const signIns = new Counter({
    name: 'portcall_access_sign_ins_total',
    help: 'Sign-ins by password, by outcome (ok, refused, limited)',
    labelNames: ['outcome'] as const,
    registers: options.registry === undefined ? [] : [options.registry],
  });
  const readLimiter = new FixedWindowLimiter(options.readRateLimit.requests, options.readRateLimit.windowMs, now);
  const adminLimiter = new FixedWindowLimiter(options.adminRateLimit.requests, options.adminRateLimit.windowMs, now);
  return {
    policy,
    projector,
    readAccess: policy.readAccess(options.reader, readLimiter),
    filterForToken: (token) => {
      const viewer: Viewer | undefined = policy.authenticate(token);
      return viewer === undefined ? undefined : policy.filterFor(viewer);
    },
    linkFilter: (audience) => linkFilter({ policy, projector, reader: options.reader, audience }),
    signIn: async (principal, password, client) => {
      try {
        signInByClient.take(client);
        signInByPrincipal.take(principal);
      } catch (error) {
        if (error instanceof RateLimitedError) signIns.inc({ outcome: 'limited' });
        throw error;
      }
      const session = await policy.signIn(principal, password);
      signIns.inc({ outcome: session === undefined ? 'refused' : 'ok' });
      return session;
    },
    registerAdminRoutes: (app) => {
      if (options.appender === undefined) return;
      registerAccessAdminRoutes(app, {
        appender: options.appender,
        projector,
        policy,
        key: options.key,
        limiter: adminLimiter,
        ...(options.now === undefined ? {} : { now: options.now }),
        ...(options.registry === undefined ? {} : { registry: options.registry }),
      });
    },
    close: () => projector.stop(),
  };
}
