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
import { createHmac, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const SCRYPT_PREFIX = 'scrypt';
/** The gateway's cost for device secrets: ~30-50 ms a try on a small computer. */
const DEFAULT_COST = 16384;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;
const KEY_BYTES = 32;
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 1024;
/** What a `password.set` record's hash must look like. */
export const PASSWORD_HASH = /^scrypt\$\d{1,8}\$\d{1,3}\$\d{1,3}\$[A-Za-z0-9+/=]{11,88}\$[A-Za-z0-9+/=]{22,88}$/;

function scrypt(secret: string, salt: Buffer, keyBytes: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCallback(secret, salt, keyBytes, options, (error, key) => (error ? reject(error) : resolve(key))));
}

function options(cost: number, blockSize: number, parallelism: number): ScryptOptions {
  return { N: cost, r: blockSize, p: parallelism, maxmem: 256 * cost * blockSize };
}

/** `scrypt$N$r$p$<salt>$<key>` of a password (length checked by the caller). */
export async function hashPassword(password: string, cost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, KEY_BYTES, options(cost, BLOCK_SIZE, PARALLELISM));
  return [SCRYPT_PREFIX, cost, BLOCK_SIZE, PARALLELISM, salt.toString('base64'), key.toString('base64')].join('$');
}

interface ParsedHash {
  readonly cost: number;
  readonly blockSize: number;
  readonly parallelism: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

function parseHash(stored: string): ParsedHash | undefined {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== SCRYPT_PREFIX) return undefined;
  const [cost, blockSize, parallelism] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![cost, blockSize, parallelism].every((value) => Number.isInteger(value) && value > 0)) return undefined;
  if (cost > 1 << 20 || (cost & (cost - 1)) !== 0 || blockSize > 32 || parallelism > 16) return undefined;
  const salt = Buffer.from(parts[4]!, 'base64');
  const key = Buffer.from(parts[5]!, 'base64');
  if (salt.length < 8 || key.length < 16 || key.length > 64) return undefined;
  return { cost, blockSize, parallelism, salt, key };
}

/** A hash no password matches (its key is random): checked against when there is no real one, so every refusal costs one scrypt. */
let dummyHash: string | undefined;
function dummy(): string {
  dummyHash ??= [SCRYPT_PREFIX, DEFAULT_COST, BLOCK_SIZE, PARALLELISM, randomBytes(16).toString('base64'), randomBytes(KEY_BYTES).toString('base64')].join('$');
  return dummyHash;
}

/**
 * Whether a password matches a stored hash; with no stored hash (unknown principal, none
 * set) it runs scrypt against the dummy hash and answers false, in about the same time.
 */
export async function verifyPassword(password: string, stored: string | undefined): Promise<boolean> {
  const real = stored === undefined ? undefined : parseHash(stored);
  const parsed = real ?? parseHash(dummy())!;
  const key = await scrypt(password, parsed.salt, parsed.key.length, options(parsed.cost, parsed.blockSize, parsed.parallelism));
  return timingSafeEqual(key, parsed.key) && real !== undefined;
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
