/**
 * Access records: the model as data in the site log. Organisations, principals, groups,
 * stream expressions, tokens and password hashes are records of the `access` stream, topic `changes` (one
 * topic, so one total order); custody windows are records of the `manifests` stream, topic
 * `custody`. Each record says who made the change and when (`by`, `at`): the log is the audit
 * trail. Each carries an HMAC-SHA256 (header `pc-access-mac`) under the sites' shared access
 * key, so a record a device or a peer wrote into those topics is ignored, not obeyed.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { LogRecord, NewRecord } from '../../core/index.js';
import { parseAce } from './ace.js';
import { PASSWORD_HASH } from './passwords.js';

export const ACCESS_STREAM = 'access';
export const ACCESS_TOPIC = 'changes';
export const CUSTODY_STREAM = 'manifests';
export const CUSTODY_TOPIC = 'custody';
export const MAC_HEADER = 'pc-access-mac';

export const ORG_KINDS = ['carrier', 'customer', 'consignee', 'port-authority'] as const;
/**
 * Roles the policy knows: `carrier-ops` sees everything (but the access records), `customer`
 * sees its organisation's containers in full within their custody windows, `consignee` sees
 * the coarse status of the containers consigned to its organisation, `port-authority` sees
 * arrivals, departures and unload manifests at its organisation's port, `access-admin` may
 * change access records (and reads nothing by it).
 */
export const ROLES = ['carrier-ops', 'customer', 'consignee', 'port-authority', 'access-admin'] as const;
export type Role = (typeof ROLES)[number];

export const idSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, 'must be 1-128 letters, digits, ".", "_", "@" or "-", starting with a letter or digit');
const streamSchema = z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, 'must be a stream name');
const topicSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a topic name');
const timeMs = z.number().int().min(0).max(8.64e15);
const audit = { by: z.string().min(1).max(128), atMs: timeMs };

export const accessRecordSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('org.set'),
    id: idSchema,
    kind: z.enum(ORG_KINDS),
    name: z.string().max(200).optional(),
    /** Port code of a port authority (UN/LOCODE, e.g. SGSIN), matched against manifests' `port`. */
    port: z.string().regex(/^[A-Za-z0-9]{2,16}$/).optional(),
    ...audit,
  }),
  z.strictObject({
    type: z.literal('principal.set'),
    id: idSchema,
    org: idSchema,
    kind: z.enum(['person', 'service']),
    roles: z.array(z.enum(ROLES)).max(ROLES.length),
    ...audit,
  }),
  z.strictObject({ type: z.literal('principal.disabled'), id: idSchema, ...audit }),
  z.strictObject({ type: z.literal('group.set'), id: idSchema, members: z.array(idSchema).max(10_000), ...audit }),
  z.strictObject({
    type: z.literal('ace.set'),
    stream: streamSchema,
    /** Unset (null) returns the stream to its default expression. */
    expression: z
      .string()
      .max(1024)
      .nullable()
      .refine((text) => {
        if (text === null) return true;
        try {
          parseAce(text);
          return true;
        } catch {
          return false;
        }
      }, 'must be a valid access control expression'),
    ...audit,
  }),
  z.strictObject({
    type: z.literal('token.issued'),
    tokenId: z.string().regex(/^[0-9a-f]{16}$/),
    principal: idSchema,
    /** SHA-256 of the whole token, hex; the token itself is never stored. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    expiresAtMs: timeMs.optional(),
    ...audit,
  }),
  z.strictObject({ type: z.literal('token.revoked'), tokenId: z.string().regex(/^[0-9a-f]{16}$/), ...audit }),
  z.strictObject({
    type: z.literal('password.set'),
    principal: idSchema,
    /** scrypt of the password, `scrypt$N$r$p$<salt>$<key>` (the gateway's form); the password itself is never stored. */
    hash: z.string().regex(PASSWORD_HASH),
    ...audit,
  }),
  z.strictObject({ type: z.literal('password.cleared'), principal: idSchema, ...audit }),
]);

export type AccessRecord = z.infer<typeof accessRecordSchema>;

export const custodyRecordSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('custody.assigned'),
    /** Names this window, for ending or withdrawing it later. */
    id: idSchema,
    /** The container: its topic in the containers, alerts and manifests streams. */
    container: topicSchema,
    org: idSchema,
    /** `owner`: the booking customer sees everything; `consignee`: status only. */
    as: z.enum(['owner', 'consignee']),
    /** Event times the organisation may see, [fromMs, toMs); open-ended without toMs. */
    fromMs: timeMs,
    toMs: timeMs.optional(),
    ...audit,
  }),
  z.strictObject({ type: z.literal('custody.withdrawn'), id: idSchema, ...audit }),
]).refine((record) => record.type !== 'custody.assigned' || record.toMs === undefined || record.toMs > record.fromMs, {
  message: 'toMs must be after fromMs',
});

export type CustodyRecord = z.infer<typeof custodyRecordSchema>;

function mac(key: Uint8Array, stream: string, topic: string, payload: Uint8Array): Buffer {
  return createHmac('sha256', key).update(`${stream}\u0000${topic}\u0000`).update(payload).digest();
}

/** The log record for a change, signed with the access key. */
export function signedRecord(key: Uint8Array, record: AccessRecord | CustodyRecord): NewRecord {
  const custody = record.type.startsWith('custody.');
  const stream = custody ? CUSTODY_STREAM : ACCESS_STREAM;
  const topic = custody ? CUSTODY_TOPIC : ACCESS_TOPIC;
  const payload = Buffer.from(JSON.stringify(record));
  return {
    stream,
    topic,
    eventTimeMs: record.atMs,
    headers: { [MAC_HEADER]: mac(key, stream, topic, payload).toString('hex') },
    payload,
  };
}

/** Whether a stored record carries a valid MAC under the access key. */
export function verifyRecord(key: Uint8Array, record: LogRecord): boolean {
  const claimed = record.headers[MAC_HEADER];
  if (claimed === undefined || !/^[0-9a-f]{64}$/.test(claimed)) return false;
  return timingSafeEqual(Buffer.from(claimed, 'hex'), mac(key, record.stream, record.topic, record.payload));
}
