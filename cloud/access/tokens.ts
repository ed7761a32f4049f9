/**
 * Bearer tokens: `pct_<tokenId>_<secret>`, the secret 256 random bits (base64url). Only the
 * SHA-256 of the whole token is stored (a record of the access stream); a 256-bit secret
 * cannot be guessed, so an unsalted fast hash is enough, and the comparison is constant-time.
 * The token is shown once, when issued.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface NewToken {
  readonly tokenId: string;
  readonly token: string;
  readonly sha256: string;
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function newToken(): NewToken {
  const tokenId = randomBytes(8).toString('hex');
  const token = `pct_${tokenId}_${randomBytes(32).toString('base64url')}`;
  return { tokenId, token, sha256: hashToken(token).toString('hex') };
}

const TOKEN = /^pct_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$/;

/** The token id a presented token claims, or undefined when it is not shaped like one. */
export function tokenIdOf(token: string): string | undefined {
  return TOKEN.exec(token)?.[1];
}

/** Constant-time comparison of a presented token with a stored SHA-256 (both always hashed). */
export function tokenMatches(presented: string, storedSha256: Buffer): boolean {
  return timingSafeEqual(hashToken(presented), storedSha256);
}

/** The bearer token of an `Authorization: Bearer …` header, or undefined. */
export function bearerOf(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const match = /^Bearer ([\x21-\x7e]{1,512})$/i.exec(authorization.trim());
  return match?.[1];
}
