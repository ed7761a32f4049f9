/**
 * `portcall gateway hash-secret` and `portcall gateway add-device`: the operator's way to
 * write the gateway's credentials file without ever storing a device secret in clear.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isSeq, parseDocument } from 'yaml';
import { ConfigError } from '../core/index.js';
import { DeviceDirectory, hashSecret } from '../edge/gateway/index.js';

export async function readSecret(options: { secretStdin?: boolean }, input: NodeJS.ReadableStream): Promise<string | undefined> {
  if (!options.secretStdin) return undefined;
  let text = '';
  for await (const chunk of input) text += chunk.toString();
  return text.replace(/\r?\n$/, '');
}

export interface AddDeviceOptions {
  readonly credentials: string;
  readonly id: string;
  readonly profile?: string;
  readonly attribute: readonly string[];
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
  readonly certificateCommonName?: string;
  /** When absent, a random secret is generated and returned for the operator to hand over once. */
  readonly secret?: string;
  /** No secret at all: the device authenticates with its TLS certificate only. */
  readonly certificateOnly?: boolean;
}

/** Adds the device (refusing a duplicate id) and checks the whole file still loads. */
export async function addDevice(options: AddDeviceOptions): Promise<{ generatedSecret: string | undefined }> {
  const attributes: Record<string, string> = {};
  for (const pair of options.attribute) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new ConfigError(`--attribute ${pair}: expected name=value, e.g. container=Y01`);
    attributes[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const generatedSecret = options.secret === undefined && !options.certificateOnly ? randomBytes(18).toString('base64url') : undefined;
  const secret = options.secret ?? generatedSecret;
  const entry: Record<string, unknown> = { id: options.id };
  if (options.profile !== undefined) entry.profile = options.profile;
  if (Object.keys(attributes).length > 0) entry.attributes = attributes;
  if (secret !== undefined) entry.secret = await hashSecret(secret);
  if (options.certificateCommonName !== undefined) entry.certificateCommonName = options.certificateCommonName;
  if (options.publish.length > 0) entry.publish = [...options.publish];
  if (options.subscribe.length > 0) entry.subscribe = [...options.subscribe];

  // Edit the YAML document rather than re-serialising data, so comments survive.
  const text = existsSync(options.credentials) ? readFileSync(options.credentials, 'utf8') : '';
  const document = parseDocument(text === '' ? 'profiles: {}\ndevices: []\n' : text);
  const devices = (document.toJS() as { devices?: { id?: string }[] } | null)?.devices ?? [];
  if (devices.some((device) => device.id === options.id)) {
    throw new ConfigError(`${options.credentials}: device "${options.id}" is already listed`);
  }
  if (!document.has('devices')) document.set('devices', document.createNode([]));
  document.addIn(['devices'], document.createNode(entry));
  // `devices: []` is a flow sequence; entries read better one per block.
  const list = document.get('devices', true);
  if (isSeq(list)) list.flow = false;
  const updated = document.toString();
  DeviceDirectory.parse(updated, options.credentials);
  const temporary = `${options.credentials}.tmp-${process.pid}`;
  writeFileSync(temporary, updated, { mode: 0o600 });
  renameSync(temporary, options.credentials);
  return { generatedSecret };
}

