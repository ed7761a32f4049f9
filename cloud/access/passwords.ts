/**
 * Passwords and sessions (docs/ACCESS.md, "Passwords and sessions").
 *
 * A password is stored as a `password.set` access record holding its scrypt hash, in the text
 * form the gateway uses for device secrets: `scrypt$N$r$p$<salt base64>$<key base64>`.
 *
 * Signing in appends nothing (a port may not write the access topic): it returns a stateless
 * session token `pcs_<payload>_<mac>`. The payload (base64url JSON) names the principal, the
 * expiry and a fingerprint of the password hash it was issued under; the MAC is HMAC-SHA256
 * under a key derived from the sites' shared access key. Any site holding that key and the
 * replicated records can check it; changing or clearing the password changes the fingerprint
 * and so ends every session issued under the old one. Session tokens are never stored.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { hashScrypt, parseScryptHash, scryptMatches, unmatchableScryptHash, type ScryptHash } from '../../core/index.js';

export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 1024;
/** What a `password.set` record's hash must look like. */
export const PASSWORD_HASH = /^scrypt\$\d{1,8}\$\d{1,3}\$\d{1,3}\$[A-Za-z0-9+/=]{11,88}\$[A-Za-z0-9+/=]{22,88}$/;

/** `scrypt$N$r$p$<salt>$<key>` of a password (length checked by the caller). */
export function hashPassword(password: string, cost?: number): Promise<string> {
  return hashScrypt(password, cost);
}

let dummyHash: ScryptHash | undefined;

/**
 * Whether a password matches a stored hash; with no stored hash (unknown principal, none
 * set) it runs scrypt against a hash no password matches and answers false, in about the same time.
 */
export async function verifyPassword(password: string, stored: string | undefined): Promise<boolean> {
  const real = stored === undefined ? undefined : parseScryptHash(stored);
  const matches = await scryptMatches(password, real ?? (dummyHash ??= unmatchableScryptHash()));
  return matches && real !== undefined;
}

// ---- sessions ----------------------------------------------------------------------------------

export interface SessionClaims {
  readonly principal: string;
  readonly expiresAtMs: number;
  /** Fingerprint of the password hash the session was issued under (hex). */
  readonly fingerprint: string;
}

const SESSION = /^pcs_([A-Za-z0-9_-]{1,700})_([A-Za-z0-9_-]{43})$/;

/** Session tokens are signed under a key derived from the access key, never the access key itself (records and sessions cannot be confused). */
function sessionKey(accessKey: Uint8Array): Buffer {
  return createHmac('sha256', accessKey).update('portcall session key v1').digest();
}

/** Fingerprint of a password hash: keyed, so a session token's payload tells nothing about the hash. */
export function passwordFingerprint(accessKey: Uint8Array, hash: string): string {
  return createHmac('sha256', sessionKey(accessKey)).update('fingerprint\u0000').update(hash).digest().subarray(0, 16).toString('hex');
}

export function issueSession(accessKey: Uint8Array, claims: SessionClaims): string {
  const payload = Buffer.from(JSON.stringify({ p: claims.principal, e: claims.expiresAtMs, f: claims.fingerprint })).toString('base64url');
  const mac = createHmac('sha256', sessionKey(accessKey)).update(payload).digest().toString('base64url');
  return `pcs_${payload}_${mac}`;
}

export function isSessionToken(token: string): boolean {
  return token.startsWith('pcs_');
}

/** The claims of a session token whose MAC verifies under the key (expiry and fingerprint are the caller's to check), or undefined. */
export function readSession(accessKey: Uint8Array, token: string): SessionClaims | undefined {
  const match = SESSION.exec(token);
  if (match === null) return undefined;
  const [, payload, mac] = match as unknown as [string, string, string];
  const expected = createHmac('sha256', sessionKey(accessKey)).update(payload).digest();
  const presented = Buffer.from(mac, 'base64url');
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null) return undefined;
  const { p, e, f } = json as Record<string, unknown>;
  if (typeof p !== 'string' || typeof e !== 'number' || !Number.isFinite(e) || typeof f !== 'string') return undefined;
  return { principal: p, expiresAtMs: e, fingerprint: f };
}
