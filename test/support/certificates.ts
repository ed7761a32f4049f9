/**
 * Test certificates made on the spot with the openssl command line: a CA, a server
 * certificate for 127.0.0.1, and client certificates for devices (CN = device id) signed by
 * the CA, plus one signed by a CA the gateway does not trust.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertificateFiles {
  readonly dir: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Device certificate and key paths by common name. */
  readonly devices: Readonly<Record<string, { certFile: string; keyFile: string }>>;
  /** A client certificate from an unknown CA. */
  readonly rogue: { certFile: string; keyFile: string };
  read(path: string): Buffer;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function issue(dir: string, name: string, subject: string, caName: string, extensions?: string): { certFile: string; keyFile: string } {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  const args = ['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.crt`];
  if (extensions !== undefined) args.push('-extfile', extensions);
  openssl(args, dir);
  return { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
}

function makeCa(dir: string, name: string): void {
  openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`],
    dir,
  );
}

export function makeCertificates(deviceNames: readonly string[]): CertificateFiles {
  const dir = mkdtempSync(join(tmpdir(), 'portcall-certs-'));
  makeCa(dir, 'test-ca');
  makeCa(dir, 'rogue-ca');
  const extensions = join(dir, 'server.ext');
  writeFileSync(extensions, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  const server = issue(dir, 'server', '/CN=localhost', 'test-ca', extensions);
  const devices: Record<string, { certFile: string; keyFile: string }> = {};
  for (const name of deviceNames) devices[name] = issue(dir, `device-${name}`, `/CN=${name}`, 'test-ca');
  const rogue = issue(dir, 'rogue', `/CN=${deviceNames[0] ?? 'rogue'}`, 'rogue-ca');
  return {
    dir,
    caFile: join(dir, 'test-ca.crt'),
    certFile: server.certFile,
    keyFile: server.keyFile,
    devices,
    rogue,
    read: (path) => readFileSync(path),
  };
}
