/**
 * AccessState: what the access records say, materialised. A pure fold: `applyAccess` and
 * `applyCustody` are total (a record that does not parse is counted and ignored) and
 * idempotent per record (every change is a "set" of a whole entity or a flag), so replaying
 * the topics from offset 0 always yields the same state, and a record applied twice changes
 * nothing the second time.
 */
import type { Ace } from './ace.js';
import { parseAce } from './ace.js';
import type { AccessRecord, CustodyRecord, Role } from './records.js';
import { ORG_KINDS } from './records.js';

export interface Org {
  readonly id: string;
  readonly kind: (typeof ORG_KINDS)[number];
  readonly name?: string;
  readonly port?: string;
  readonly changedBy: string;
  readonly changedAtMs: number;
}

export interface Principal {
  readonly id: string;
  readonly org: string;
  readonly kind: 'person' | 'service';
  readonly roles: readonly Role[];
  readonly disabled: boolean;
  readonly changedBy: string;
  readonly changedAtMs: number;
}

export interface TokenEntry {
  readonly tokenId: string;
  readonly principal: string;
  readonly sha256: Buffer;
  readonly expiresAtMs?: number;
  readonly revoked: boolean;
  readonly issuedBy: string;
  readonly issuedAtMs: number;
}

export interface PasswordEntry {
  readonly principal: string;
  /** `scrypt$…` of the password. */
  readonly hash: string;
  readonly setBy: string;
  readonly setAtMs: number;
}

export interface CustodyWindow {
  readonly id: string;
  readonly container: string;
  readonly org: string;
  readonly as: 'owner' | 'consignee';
  readonly fromMs: number;
  readonly toMs: number;
  readonly withdrawn: boolean;
  readonly by: string;
  readonly atMs: number;
}

export class AccessState {
  readonly orgs = new Map<string, Org>();
  readonly principals = new Map<string, Principal>();
  readonly groups = new Map<string, ReadonlySet<string>>();
  readonly aces = new Map<string, { text: string; ace: Ace }>();
  readonly tokens = new Map<string, TokenEntry>();
  /** Password hashes by principal (a cleared password is absent). */
  readonly passwords = new Map<string, PasswordEntry>();
  readonly custody = new Map<string, CustodyWindow>();
  /** Custody windows by container, rebuilt lazily after a change. */
  private byContainer: Map<string, CustodyWindow[]> | undefined;
  /** Offsets applied so far (the next offset to read) of each topic. */
  accessOffset = 0;
  custodyOffset = 0;
  ignored = 0;
  /** Changes with every record applied: lets callers cache what they derive from the state. */
  version = 0;

  applyAccess(record: AccessRecord): void {
    this.version += 1;
    switch (record.type) {
      case 'org.set':
        this.orgs.set(record.id, {
          id: record.id,
          kind: record.kind,
          ...(record.name === undefined ? {} : { name: record.name }),
          ...(record.port === undefined ? {} : { port: record.port }),
          changedBy: record.by,
          changedAtMs: record.atMs,
        });
        break;
      case 'principal.set':
        this.principals.set(record.id, {
          id: record.id,
          org: record.org,
          kind: record.kind,
          roles: [...new Set(record.roles)].sort(),
          disabled: false,
          changedBy: record.by,
          changedAtMs: record.atMs,
        });
        break;
      case 'principal.disabled': {
        const principal = this.principals.get(record.id);
        if (principal !== undefined) this.principals.set(record.id, { ...principal, disabled: true, changedBy: record.by, changedAtMs: record.atMs });
        break;
      }
      case 'group.set':
        this.groups.set(record.id, new Set(record.members));
        break;
      case 'ace.set':
        if (record.expression === null) this.aces.delete(record.stream);
        else this.aces.set(record.stream, { text: record.expression, ace: parseAce(record.expression) });
        break;
      case 'token.issued':
        // A token id is issued once; a second issue with the same id (a replay) changes nothing.
        if (!this.tokens.has(record.tokenId)) {
          this.tokens.set(record.tokenId, {
            tokenId: record.tokenId,
            principal: record.principal,
            sha256: Buffer.from(record.sha256, 'hex'),
            ...(record.expiresAtMs === undefined ? {} : { expiresAtMs: record.expiresAtMs }),
            revoked: false,
            issuedBy: record.by,
            issuedAtMs: record.atMs,
          });
        }
        break;
      case 'token.revoked': {
        const token = this.tokens.get(record.tokenId);
        if (token !== undefined) this.tokens.set(record.tokenId, { ...token, revoked: true });
        break;
      }
      case 'password.set':
        this.passwords.set(record.principal, { principal: record.principal, hash: record.hash, setBy: record.by, setAtMs: record.atMs });
        break;
      case 'password.cleared':
        this.passwords.delete(record.principal);
        break;
    }
  }

  applyCustody(record: CustodyRecord): void {
    this.version += 1;
    if (record.type === 'custody.assigned') {
      // A window is assigned once; reassigning the same id (a replay) changes nothing.
      if (!this.custody.has(record.id)) {
        this.custody.set(record.id, {
          id: record.id,
          container: record.container,
          org: record.org,
          as: record.as,
          fromMs: record.fromMs,
          toMs: record.toMs ?? Number.POSITIVE_INFINITY,
          withdrawn: false,
          by: record.by,
          atMs: record.atMs,
        });
      }
    } else {
      const window = this.custody.get(record.id);
      if (window !== undefined) this.custody.set(record.id, { ...window, withdrawn: true });
    }
    this.byContainer = undefined;
  }

  /** The live (not withdrawn) custody windows of a container. */
  windowsOf(container: string): readonly CustodyWindow[] {
    if (this.byContainer === undefined) {
      const index = new Map<string, CustodyWindow[]>();
      for (const window of this.custody.values()) {
        if (window.withdrawn) continue;
        const list = index.get(window.container) ?? [];
        list.push(window);
        index.set(window.container, list);
      }
      this.byContainer = index;
    }
    return this.byContainer.get(container) ?? [];
  }

  /** Groups a principal belongs to. */
  groupsOf(principal: string): Set<string> {
    const groups = new Set<string>();
    for (const [id, members] of this.groups) if (members.has(principal)) groups.add(id);
    return groups;
  }

  /** A comparable snapshot (no buffers, sorted), for tests and `portcall access show`. */
  snapshot(): Record<string, unknown> {
    const sorted = <T>(map: Map<string, T>) => [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, value]) => value);
    return {
      orgs: sorted(this.orgs),
      principals: sorted(this.principals),
      groups: sorted(new Map([...this.groups].map(([id, members]) => [id, { id, members: [...members].sort() }]))),
      aces: sorted(new Map([...this.aces].map(([stream, { text }]) => [stream, { stream, expression: text }]))),
      tokens: sorted(this.tokens).map(({ sha256: _hash, ...token }) => token),
      passwords: sorted(this.passwords).map(({ hash: _hash, ...password }) => password),
      custody: sorted(this.custody).map((window) => ({ ...window, toMs: Number.isFinite(window.toMs) ? window.toMs : null })),
    };
  }
}
