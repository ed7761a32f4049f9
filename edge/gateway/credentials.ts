/**
 * Device credentials and access rules, as data: a YAML or JSON file listing each device, its
 * scrypt-hashed secret and/or the TLS client certificate that identifies it, and the topics
 * it may publish (and subscribe) to. Rules are MQTT filters in which `{id}` and the device's
 * attributes are substituted, so one profile serves a thousand containers:
 *
 *   profiles:
 *     reefer: { publish: ["bigblue/containers/{container}/+"] }
 *   devices:
 *     - id: Y01-reefer
 *       profile: reefer
 *       attributes: { container: Y01 }
 *       secret: "scrypt$16384$8$1$<salt>$<hash>"     # portcall gateway hash-secret
 *
 * Identities and attribute values are refused if they contain `+`, `#`, `/` or NUL: a value
 * like `#` substituted into a rule would grant every topic.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, hashScrypt, parseScryptHash, parseStrictYaml, scryptMatches } from '../../core/index.js';
import { isSafeIdentity, substitute, topicMatches } from './topic-filter.js';

/** `scrypt$N$r$p$<salt base64>$<key base64>`, the form stored in credentials files. */
export async function hashSecret(secret: string, cost?: number): Promise<string> {
  if (secret.length < 8) throw new ConfigError('a device secret must be at least 8 characters');
  return hashScrypt(secret, cost);
}

export async function verifySecret(secret: Buffer | string, stored: string): Promise<boolean> {
  const parsed = parseScryptHash(stored);
  if (parsed === undefined) return false;
  return scryptMatches(typeof secret === 'string' ? secret : secret.toString('utf8'), parsed);
}

const identity = z
  .string()
  .min(1)
  .max(128)
  .refine(isSafeIdentity, 'must not contain "+", "#", "/" or NUL (they would widen topic rules)');
const topicFilter = z
  .string()
  .min(1)
  .refine((filter) => !filter.includes('\u0000'), 'must not contain NUL')
  .refine(
    (filter) => filter.split('/').every((level, index, levels) => (level === '#' ? index === levels.length - 1 : !/[#]/.test(level) && (level === '+' || !level.includes('+')))),
    'wildcards must be whole levels, "#" only last',
  );
const rules = {
  publish: z.array(topicFilter).default([]),
  subscribe: z.array(topicFilter).default([]),
};

export const credentialsFileSchema = z.strictObject({
  profiles: z.record(identity, z.strictObject(rules)).default({}),
  devices: z
    .array(
      z.strictObject({
        id: identity,
        /** `scrypt$…` from `portcall gateway hash-secret`. */
        secret: z
          .string()
          .refine((value) => parseScryptHash(value) !== undefined, 'must be a "scrypt$N$r$p$salt$key" hash (portcall gateway hash-secret)')
          .optional(),
        /** Subject common name of the TLS client certificate that identifies this device. */
        certificateCommonName: z.string().min(1).optional(),
        profile: identity.optional(),
        attributes: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/), identity).default({}),
        ...{ publish: rules.publish.optional(), subscribe: rules.subscribe.optional() },
      }),
    )
    .default([]),
});

export type CredentialsFile = z.infer<typeof credentialsFileSchema>;

/** A device as the gateway knows it once its credentials check out. */
export interface DeviceIdentity {
  readonly id: string;
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

interface DeviceEntry extends DeviceIdentity {
  readonly secret: string | undefined;
  readonly certificateCommonName: string | undefined;
}

export type AuthenticationResult =
  | { readonly ok: true; readonly device: DeviceIdentity }
  | { readonly ok: false; readonly reason: 'unknown-device' | 'bad-credentials' | 'certificate-mismatch' };

export class DeviceDirectory {
  private readonly devices = new Map<string, DeviceEntry>();
  private readonly byCertificate = new Map<string, DeviceEntry>();

  constructor(file: CredentialsFile, source = 'credentials') {
    for (const [index, device] of file.devices.entries()) {
      const where = `${source}: devices[${index}] (${device.id})`;
      if (this.devices.has(device.id)) throw new ConfigError(`${where}: id is listed twice`);
      if (device.secret === undefined && device.certificateCommonName === undefined) {
        throw new ConfigError(`${where}: needs a secret or a certificateCommonName, or it could never connect`);
      }
      const profile = device.profile === undefined ? undefined : file.profiles[device.profile];
      if (device.profile !== undefined && profile === undefined) {
        throw new ConfigError(`${where}: profile "${device.profile}" is not defined under profiles`);
      }
      const values = { ...device.attributes, id: device.id };
      const expand = (filters: readonly string[], field: string) =>
        filters.map((filter) => {
          const expanded = substitute(filter, values);
          const missing = /\{([A-Za-z][A-Za-z0-9_]*)\}/.exec(expanded);
          if (missing) throw new ConfigError(`${where}: ${field} rule "${filter}" uses {${missing[1]}}, which this device has no attribute for`);
          return expanded;
        });
      const entry: DeviceEntry = {
        id: device.id,
        secret: device.secret,
        certificateCommonName: device.certificateCommonName,
        publish: expand([...(profile?.publish ?? []), ...(device.publish ?? [])], 'publish'),
        subscribe: expand([...(profile?.subscribe ?? []), ...(device.subscribe ?? [])], 'subscribe'),
      };
      this.devices.set(device.id, entry);
      if (device.certificateCommonName !== undefined) {
        if (this.byCertificate.has(device.certificateCommonName)) {
          throw new ConfigError(`${where}: certificateCommonName "${device.certificateCommonName}" is used by two devices`);
        }
        this.byCertificate.set(device.certificateCommonName, entry);
      }
    }
  }

  static load(path: string): DeviceDirectory {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read credentials file ${path}: ${(error as Error).message}`);
    }
    return DeviceDirectory.parse(text, path);
  }

  static parse(text: string, source: string): DeviceDirectory {
    let document: unknown;
    try {
      document = parseStrictYaml(text) ?? {};
    } catch (error) {
      throw new ConfigError(`${source}: not valid YAML or JSON: ${(error as Error).message}`);
    }
    const result = credentialsFileSchema.safeParse(document);
    if (!result.success) {
      throw new ConfigError(
        result.error.issues.map((issue) => `${source}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`).join('\n'),
      );
    }
    return new DeviceDirectory(result.data, source);
  }

  get size(): number {
    return this.devices.size;
  }

  /**
   * Who is connecting. `certificateCommonName` is set only when TLS verified the client's
   * certificate against the configured CA; a username must then name the same device.
   */
  async authenticate(
    username: string | undefined,
    password: Buffer | undefined,
    certificateCommonName: string | undefined,
  ): Promise<AuthenticationResult> {
    if (certificateCommonName !== undefined) {
      const device = this.byCertificate.get(certificateCommonName);
      if (device === undefined) return { ok: false, reason: 'unknown-device' };
      if (username !== undefined && username !== device.id) return { ok: false, reason: 'certificate-mismatch' };
      return { ok: true, device };
    }
    if (username === undefined) return { ok: false, reason: 'unknown-device' };
    const device = this.devices.get(username);
    if (device === undefined) return { ok: false, reason: 'unknown-device' };
    if (device.secret === undefined || password === undefined) return { ok: false, reason: 'bad-credentials' };
    return (await verifySecret(password, device.secret)) ? { ok: true, device } : { ok: false, reason: 'bad-credentials' };
  }
}

export function mayPublish(device: DeviceIdentity, topic: string): boolean {
  return device.publish.some((filter) => topicMatches(filter, topic));
}

/** A subscription is allowed if it is no wider than one of the device's subscribe rules. */
export function maySubscribe(device: DeviceIdentity, filter: string): boolean {
  return device.subscribe.some((allowed) => filterCovers(allowed, filter));
}

function filterCovers(allowed: string, requested: string): boolean {
  const allowedLevels = allowed.split('/');
  const requestedLevels = requested.split('/');
  for (let i = 0; i < allowedLevels.length; i += 1) {
    const level = allowedLevels[i]!;
    if (level === '#') return true;
    const asked = requestedLevels[i];
    if (asked === undefined || asked === '#') return false;
    if (level !== '+' && (asked === '+' || asked !== level)) return false;
  }
  return allowedLevels.length === requestedLevels.length;
}
