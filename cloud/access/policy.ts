/**
 * The one policy module: every path out of the site asks it who a caller is and what of a
 * record that caller may see. It reads the AccessState the projector keeps (never a copy),
 * so a change takes effect on the next question.
 *
 * A record is admitted for a principal when all of these hold:
 *   1. the principal is known, not disabled, its organisation is known, and the token it
 *      presented is neither revoked nor expired (or the session it signed in with by
 *      password has not expired and that password is still the principal's);
 *   2. the stream is not `access` (access records never leave through a read path), and the
 *      topic is not `manifests/custody` unless the principal has `carrier-ops`;
 *   3. the stream's expression (ACE) admits the principal (DEFAULT_ACES when none is set);
 *   4. one of its roles grants the record:
 *        carrier-ops     every record, in full;
 *        customer        records of CONTAINER_STREAMS whose topic is a container in an
 *                        `owner` custody window of its organisation, with an event time
 *                        inside that window; in full;
 *        port-authority  `manifests` records of type arrived, departed or unloaded whose
 *                        `port` is its organisation's port; projected to the movement;
 *        consignee       `manifests` records of a container in any custody window of its
 *                        organisation, event time inside the window, of a movement type;
 *                        projected to a status (in-transit, arrived, lost), port and time.
 *      When several roles grant it, the fullest form wins (the order above).
 * Anything else is not admitted, and the read paths answer exactly as for a record, topic or
 * stream that does not exist.
 */
import type { LogRecord, ReadAccess, RecordFilter, TopicReader } from '../../core/index.js';
import { evaluateAce, parseAce, type Ace, type AceSubject } from './ace.js';
import { EMPTY_READER, FilteredTopicReader } from './filtered-reader.js';
import type { FixedWindowLimiter } from '../../core/rate-limit.js';
import { ACCESS_STREAM, CUSTODY_STREAM, CUSTODY_TOPIC, type Role } from './records.js';
import type { AccessState, Org, Principal } from './state.js';
import { bearerOf, hashToken, tokenIdOf, tokenMatches } from './tokens.js';
import { isSessionToken, issueSession, passwordFingerprint, readSession, verifyPassword, type SessionClaims } from './passwords.js';

/** Streams whose topics are container ids. */
export const CONTAINER_STREAMS: readonly string[] = ['containers', 'alerts', 'manifests'];

/** Who may read a stream when no `ace.set` record says otherwise. */
export const DEFAULT_ACES: Readonly<Record<string, string>> = {
  containers: 'role:carrier-ops | role:customer',
  alerts: 'role:carrier-ops | role:customer',
  manifests: 'role:carrier-ops | role:customer | role:consignee | role:port-authority',
  ships: 'role:carrier-ops',
};
const FALLBACK_ACE = 'role:carrier-ops';

const MOVEMENT_STATUS: Readonly<Record<string, 'in-transit' | 'arrived' | 'lost'>> = {
  loaded: 'in-transit',
  departed: 'in-transit',
  arrived: 'arrived',
  unloaded: 'arrived',
  delivered: 'arrived',
  lost: 'lost',
};
const PORT_MOVEMENTS = new Set(['arrived', 'departed', 'unloaded']);

/** The principal a token stands for, as the policy sees it. */
export interface Viewer {
  readonly principal: Principal;
  readonly org: Org;
  /** The token it presented (absent for the bootstrap token, which only the configuration revokes). */
  readonly tokenId?: string;
  /** The session it presented, when it signed in by password instead. */
  readonly session?: SessionClaims;
  /**
   * Named by the site's own configuration rather than by a presented secret (a link to a
   * customer's endpoint, `links[].filter.principal`): valid while the principal is enabled.
   */
  readonly byName?: true;
}

/** The principal the bootstrap admin token stands for: it may manage access, and read nothing. */
export const BOOTSTRAP_PRINCIPAL = 'bootstrap';

export interface AccessPolicyOptions {
  readonly state: () => AccessState;
  /** SHA-256 of the bootstrap admin token, if one is configured. */
  readonly bootstrapSha256?: Buffer;
  readonly now?: () => number;
  readonly maxScanRecords?: number;
  /** The sites' shared access key: session tokens (sign-in by password) are signed under a key derived from it. Without it, no sessions. */
  readonly key?: Uint8Array;
  /** How long a session lasts (default 8 hours). */
  readonly sessionMs?: number;
}

const DUMMY_HASH = hashToken('pct_0000000000000000_not-a-token');

/** Who the bootstrap admin token stands for: it manages access, and reads nothing. */
const BOOTSTRAP_VIEWER: Viewer = {
  principal: { id: BOOTSTRAP_PRINCIPAL, org: BOOTSTRAP_PRINCIPAL, kind: 'service', roles: ['access-admin'], disabled: false, changedBy: 'config', changedAtMs: 0 },
  org: { id: BOOTSTRAP_PRINCIPAL, kind: 'carrier', changedBy: 'config', changedAtMs: 0 },
};

export class AccessPolicy {
  private readonly now: () => number;
  private readonly defaultAces = new Map<string, Ace>(Object.entries(DEFAULT_ACES).map(([stream, text]) => [stream, parseAce(text)]));
  private readonly fallbackAce = parseAce(FALLBACK_ACE);

  constructor(private readonly options: AccessPolicyOptions) {
    this.now = options.now ?? Date.now;
  }

  private get state(): AccessState {
    return this.options.state();
  }

  /**
   * The principal a bearer token stands for, or undefined. Does the same work (one SHA-256,
   * two constant-time comparisons) whether the token is absent, malformed, unknown, revoked,
   * expired or good.
   */
  authenticate(token: string | undefined): Viewer | undefined {
    if (token !== undefined && isSessionToken(token)) return this.authenticateSession(token);
    const presented = token ?? '';
    const entry = this.state.tokens.get(tokenIdOf(presented) ?? '');
    const matchesIssued = tokenMatches(presented, entry?.sha256 ?? DUMMY_HASH);
    const matchesBootstrap = tokenMatches(presented, this.options.bootstrapSha256 ?? DUMMY_HASH) && this.options.bootstrapSha256 !== undefined;
    if (token === undefined) return undefined;
    if (matchesBootstrap) return BOOTSTRAP_VIEWER;
    if (entry === undefined || !matchesIssued) return undefined;
    return this.current(entry.tokenId);
  }

  /**
   * The principal a session token stands for: its MAC verifies under this site's key, it has
   * not expired, and its principal is known, enabled and still has the password it signed in
   * with (a changed or cleared password ends every session).
   */
  private authenticateSession(token: string): Viewer | undefined {
    if (this.options.key === undefined) return undefined;
    const claims = readSession(this.options.key, token);
    return claims === undefined ? undefined : this.currentSession(claims);
  }

  private currentSession(claims: SessionClaims): Viewer | undefined {
    if (this.options.key === undefined || this.now() >= claims.expiresAtMs) return undefined;
    const password = this.state.passwords.get(claims.principal);
    if (password === undefined || passwordFingerprint(this.options.key, password.hash) !== claims.fingerprint) return undefined;
    const principal = this.state.principals.get(claims.principal);
    if (principal === undefined || principal.disabled) return undefined;
    const org = this.state.orgs.get(principal.org);
    if (org === undefined) return undefined;
    return { principal, org, session: claims };
  }

  /**
   * Sign-in by password: a session token, or undefined, for a wrong password, an unknown or
   * disabled principal or one without a password alike, after the same work (one scrypt).
   * Appends nothing: any site holding the key and the replicated records can answer it.
   */
  async signIn(principalId: string, password: string): Promise<{ token: string; expiresAtMs: number } | undefined> {
    const key = this.options.key;
    const stored = this.state.passwords.get(principalId)?.hash;
    const matches = await verifyPassword(password, stored);
    if (key === undefined || !matches || stored === undefined) return undefined;
    // Asked after the scrypt, against the state as it is now (a record may have arrived meanwhile).
    const claims: SessionClaims = {
      principal: principalId,
      expiresAtMs: this.now() + (this.options.sessionMs ?? 8 * 3_600_000),
      fingerprint: passwordFingerprint(key, stored),
    };
    if (this.currentSession(claims) === undefined) return undefined;
    return { token: issueSession(key, claims), expiresAtMs: claims.expiresAtMs };
  }

  /** The viewer a token stands for now: undefined once it is revoked or expired, or its principal or organisation is gone or disabled. */
  private current(tokenId: string): Viewer | undefined {
    const entry = this.state.tokens.get(tokenId);
    if (entry === undefined || entry.revoked) return undefined;
    if (entry.expiresAtMs !== undefined && this.now() >= entry.expiresAtMs) return undefined;
    const principal = this.state.principals.get(entry.principal);
    if (principal === undefined || principal.disabled) return undefined;
    const org = this.state.orgs.get(principal.org);
    if (org === undefined) return undefined;
    return { principal, org, tokenId };
  }

  /**
   * The viewer a principal stands for when the site's configuration names it (a link to a
   * customer's endpoint): undefined while it is unknown or disabled or its organisation is.
   * Never reached from a request: only a composition root names principals.
   */
  viewerByName(principalId: string): Viewer | undefined {
    const principal = this.state.principals.get(principalId);
    if (principal === undefined || principal.disabled) return undefined;
    const org = this.state.orgs.get(principal.org);
    if (org === undefined) return undefined;
    return { principal, org, byName: true };
  }

  /** The roles that count for the viewer: those its organisation's kind allows (the portal shows operations to carrier-ops). */
  rolesOf(viewer: Viewer): Role[] {
    return effectiveRoles(viewer);
  }

  /** Whether the viewer may change access records. */
  mayAdminister(viewer: Viewer | undefined): boolean {
    return viewer !== undefined && effectiveRoles(viewer).includes('access-admin');
  }

  private subject(viewer: Viewer): AceSubject {
    return {
      user: viewer.principal.id,
      org: viewer.org.id,
      roles: new Set(effectiveRoles(viewer)),
      groups: this.state.groupsOf(viewer.principal.id),
    };
  }

  /** Steps 2 and 3: may the viewer read anything of this stream/topic at all? */
  private streamOpen(viewer: Viewer, subject: AceSubject, stream: string, topic: string): boolean {
    if (stream === ACCESS_STREAM) return false;
    if (stream === CUSTODY_STREAM && topic === CUSTODY_TOPIC && !viewer.principal.roles.includes('carrier-ops')) return false;
    const ace = this.state.aces.get(stream)?.ace ?? this.defaultAces.get(stream) ?? this.fallbackAce;
    return evaluateAce(ace, subject);
  }

  private windows(viewer: Viewer, container: string, ownerOnly: boolean) {
    return this.state.windowsOf(container).filter((window) => window.org === viewer.org.id && (!ownerOnly || window.as === 'owner'));
  }

  private roleMayHold(viewer: Viewer, role: Role, stream: string, topic: string): boolean {
    switch (role) {
      case 'carrier-ops':
        return true;
      case 'customer':
        return CONTAINER_STREAMS.includes(stream) && this.windows(viewer, topic, true).length > 0;
      case 'consignee':
        return stream === CUSTODY_STREAM && this.windows(viewer, topic, false).length > 0;
      case 'port-authority':
        return stream === CUSTODY_STREAM && viewer.org.port !== undefined;
      default:
        return false;
    }
  }

  private roleAdmit(viewer: Viewer, role: Role, record: LogRecord): LogRecord | undefined {
    const inWindow = (ownerOnly: boolean) =>
      this.windows(viewer, record.topic, ownerOnly).some((window) => record.eventTimeMs >= window.fromMs && record.eventTimeMs < window.toMs);
    switch (role) {
      case 'carrier-ops':
        return record;
      case 'customer':
        return CONTAINER_STREAMS.includes(record.stream) && inWindow(true) ? record : undefined;
      case 'port-authority': {
        if (record.stream !== CUSTODY_STREAM || viewer.org.port === undefined) return undefined;
        const movement = movementOf(record);
        if (movement === undefined || !PORT_MOVEMENTS.has(movement.type) || movement.port !== viewer.org.port) return undefined;
        return withPayload(record, {
          type: movement.type,
          port: movement.port,
          container: record.topic,
          ...(movement.ship === undefined ? {} : { ship: movement.ship }),
          ...(movement.voyage === undefined ? {} : { voyage: movement.voyage }),
        });
      }
      case 'consignee': {
        if (record.stream !== CUSTODY_STREAM || !inWindow(false)) return undefined;
        const movement = movementOf(record);
        const status = movement === undefined ? undefined : MOVEMENT_STATUS[movement.type];
        if (movement === undefined || status === undefined) return undefined;
        return withPayload(record, { status, ...(movement.port === undefined ? {} : { port: movement.port }), at: new Date(record.eventTimeMs).toISOString() });
      }
      default:
        return undefined;
    }
  }

  private static readonly ROLE_ORDER: readonly Role[] = ['carrier-ops', 'customer', 'port-authority', 'consignee'];

  /** The viewer's filter; it consults the current state on every call. */
  filterFor(viewer: Viewer): RecordFilter {
    const roles = AccessPolicy.ROLE_ORDER.filter((role) => effectiveRoles(viewer).includes(role));
    // The subject (groups) is derived from the state: recomputed only when the state changed.
    let cached: { version: number; subject: AceSubject } | undefined;
    const subject = () => {
      if (cached?.version !== this.state.version) cached = { version: this.state.version, subject: this.subject(viewer) };
      return cached.subject;
    };
    return {
      mayHold: (stream, topic) => {
        if (!this.live(viewer)) return false;
        return this.streamOpen(viewer, subject(), stream, topic) && roles.some((role) => this.roleMayHold(viewer, role, stream, topic));
      },
      admit: (record) => {
        if (!this.live(viewer)) return undefined;
        if (!this.streamOpen(viewer, subject(), record.stream, record.topic)) return undefined;
        for (const role of roles) {
          const seen = this.roleAdmit(viewer, role, record);
          if (seen !== undefined) return seen;
        }
        return undefined;
      },
    };
  }

  /**
   * A filter stays valid only while its token is (a long-lived path, such as a replication
   * link or a live connection, re-checks on every record): revoked, expired, principal
   * disabled or moved to another organisation, and it admits nothing more.
   */
  private live(viewer: Viewer): boolean {
    if (viewer === BOOTSTRAP_VIEWER) return true;
    const now = viewer.byName === true ? this.viewerByName(viewer.principal.id) : viewer.session !== undefined ? this.currentSession(viewer.session) : viewer.tokenId === undefined ? undefined : this.current(viewer.tokenId);
    return now !== undefined && now.principal.id === viewer.principal.id && now.org.id === viewer.org.id && now.org.kind === viewer.org.kind;
  }

  /** The ReadAccess the read API is handed: rate limit, then authenticate, then a filtered reader. */
  readAccess(reader: TopicReader, limiter?: FixedWindowLimiter): ReadAccess {
    return {
      readerFor: (authorization, client) => {
        limiter?.take(client);
        const viewer = this.authenticate(bearerOf(authorization));
        if (viewer === undefined) return EMPTY_READER;
        return new FilteredTopicReader(reader, this.filterFor(viewer), this.options.maxScanRecords);
      },
    };
  }
}

/** Which organisation kinds may hold a role; a role held in another kind counts for nothing. */
export const ROLE_ORG_KINDS: Readonly<Record<Role, readonly Org['kind'][]>> = {
  'carrier-ops': ['carrier'],
  'access-admin': ['carrier'],
  customer: ['customer'],
  consignee: ['consignee', 'customer'],
  'port-authority': ['port-authority'],
};

/** The viewer's roles that its organisation's kind allows (a customer's principal is never carrier ops). */
function effectiveRoles(viewer: Viewer): Role[] {
  return viewer.principal.roles.filter((role) => ROLE_ORG_KINDS[role].includes(viewer.org.kind));
}

interface Movement {
  readonly type: string;
  readonly port?: string;
  readonly ship?: string;
  readonly voyage?: string;
}

/** A manifests record's movement fields, when its payload is a JSON object with a string `type` (or `event`). */
function movementOf(record: LogRecord): Movement | undefined {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(record.payload.buffer, record.payload.byteOffset, record.payload.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const fields = json as Record<string, unknown>;
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  // `type`, or `event` as the fleet simulation writes it (booked, loaded, unloaded).
  const type = text(fields.type) ?? text(fields.event);
  if (type === undefined) return undefined;
  const port = text(fields.port);
  const ship = text(fields.ship);
  const voyage = text(fields.voyage);
  return { type, ...(port === undefined ? {} : { port }), ...(ship === undefined ? {} : { ship }), ...(voyage === undefined ? {} : { voyage }) };
}

/** The same record (same identity and times) with a projected payload and no headers. */
function withPayload(record: LogRecord, payload: Record<string, unknown>): LogRecord {
  return { ...record, headers: {}, payload: Buffer.from(JSON.stringify(payload)) };
}
