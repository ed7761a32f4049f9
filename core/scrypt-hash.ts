/**
 * Secrets stored as scrypt hashes in one text form, `scrypt$N$r$p$<salt base64>$<key base64>`:
 * device secrets in the gateway's credentials file and people's passwords in access records.
 * One implementation, so both parse, bound and compare hashes alike.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const SCRYPT_PREFIX = 'scrypt';
/** 2^14: ~30-50 ms a try on a small onboard computer; slow for guessing, fine for a sign-in. */
export const SCRYPT_DEFAULT_COST = 16384;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;
const KEY_BYTES = 32;

export interface ScryptHash {
  readonly cost: number;
  readonly blockSize: number;
  readonly parallelism: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

function options(cost: number, blockSize: number, parallelism: number): ScryptOptions {
  return { N: cost, r: blockSize, p: parallelism, maxmem: 256 * cost * blockSize };
}

function scrypt(secret: string, salt: Buffer, keyBytes: number, scryptOptions: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCallback(secret, salt, keyBytes, scryptOptions, (error, key) => (error ? reject(error) : resolve(key))));
}

/** The stored form of a secret, with a fresh 16-byte salt. */
export async function hashScrypt(secret: string, cost = SCRYPT_DEFAULT_COST): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(secret, salt, KEY_BYTES, options(cost, BLOCK_SIZE, PARALLELISM));
  return [SCRYPT_PREFIX, cost, BLOCK_SIZE, PARALLELISM, salt.toString('base64'), key.toString('base64')].join('$');
}

/** A stored hash, or undefined when it is not one (or its costs are out of bounds: a hash must not make a check take seconds or gigabytes). */
export function parseScryptHash(stored: string): ScryptHash | undefined {
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

/** Whether `secret` hashes to `hash`'s key (constant-time comparison). */
export async function scryptMatches(secret: string, hash: ScryptHash): Promise<boolean> {
  const key = await scrypt(secret, hash.salt, hash.key.length, options(hash.cost, hash.blockSize, hash.parallelism));
  return timingSafeEqual(key, hash.key);
}

/** A hash no secret matches (its key is random), to check against when there is none, so a refusal costs what a check costs. */
export function unmatchableScryptHash(): ScryptHash {
  return { cost: SCRYPT_DEFAULT_COST, blockSize: BLOCK_SIZE, parallelism: PARALLELISM, salt: randomBytes(16), key: randomBytes(KEY_BYTES) };
}
