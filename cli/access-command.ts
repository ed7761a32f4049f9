/**
 * `portcall access ...`: managing who may see what (docs/ACCESS.md), through the site's
 * authenticated admin API (/v1/access/...). Every change becomes an audited record in the
 * site's log; nothing here touches the log directly. The admin token is read from
 * `--token-file` or PORTCALL_ACCESS_TOKEN, never from the command line (where `ps` shows it).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { PortcallError } from '../core/index.js';

interface Connection {
  readonly url: string;
  readonly tokenFile?: string;
}

const ORG_KINDS = ['carrier', 'customer', 'consignee', 'port-authority'];
const ROLES = ['carrier-ops', 'customer', 'consignee', 'port-authority', 'access-admin'];

function adminToken(options: Connection): string {
  if (options.tokenFile !== undefined) {
    try {
      return readFileSync(options.tokenFile, 'utf8').trim();
    } catch (error) {
      throw new PortcallError('USAGE', `--token-file: cannot read ${options.tokenFile}: ${(error as Error).message}`);
    }
  }
  const fromEnv = process.env.PORTCALL_ACCESS_TOKEN;
  if (fromEnv === undefined || fromEnv.trim() === '') {
    throw new PortcallError('USAGE', 'an admin token is needed: --token-file <file> or PORTCALL_ACCESS_TOKEN');
  }
  return fromEnv.trim();
}

async function call(options: Connection, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const token = adminToken(options);
  let response: Response;
  try {
    response = await fetch(new URL(path, options.url), {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new PortcallError('LINK_FAILED', `cannot reach ${options.url}: ${(error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message}`);
  }
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Not JSON: reported as text below.
  }
  if (!response.ok) {
    const why = typeof json.message === 'string' ? json.message : text.slice(0, 200);
    const hint = response.status === 404 ? ' (does the site have an access: section, with the embedded log?)' : '';
    throw new PortcallError('ACCESS_REFUSED', `${method} ${path}: ${response.status} ${why}${hint}`);
  }
  return json;
}

async function readPassword(file: string | undefined): Promise<string> {
  if (file !== undefined) {
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      throw new PortcallError('USAGE', `--password-file: cannot read ${file}: ${(error as Error).message}`);
    }
  }
  if (process.stdin.isTTY === true) process.stderr.write('password (then Enter and Ctrl-D): ');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** An ISO time, or a duration from now such as 90m, 12h, 30d. */
function timeArgument(name: string) {
  return (raw: string): string => {
    const duration = /^(\d{1,6})([mhd])$/.exec(raw);
    if (duration !== null) {
      const unitMs = { m: 60_000, h: 3_600_000, d: 86_400_000 }[duration[2] as 'm' | 'h' | 'd'];
      return new Date(Date.now() + Number(duration[1]) * unitMs).toISOString();
    }
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(raw) || Number.isNaN(Date.parse(raw))) {
      throw new InvalidArgumentError(`${name} must be an ISO time with a zone (2026-03-01T00:00:00Z) or a duration from now (90m, 12h, 30d)`);
    }
    return new Date(Date.parse(raw)).toISOString();
  };
}

const print = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
};

function connection(command: Command): Command {
  return command
    .addOption(new Option('--url <url>', "the site's HTTP address").env('PORTCALL_URL').default('http://127.0.0.1:8080'))
    .option('--token-file <file>', 'file holding an access-admin token (else PORTCALL_ACCESS_TOKEN)');
}

export function registerAccessCommand(program: Command): void {
  const access = program
    .command('access')
    .description("Manage who may see what: organisations, principals, groups, stream expressions, tokens, passwords, custody (the site's admin API)")
    .addHelpText(
      'after',
      '\nEvery change is written as an audited record in the site log. The site needs an access: section\n' +
        '(docs/CONFIGURATION.md); the first admin token is its bootstrapTokenFile. See docs/ACCESS.md.\n' +
        'Example: PORTCALL_ACCESS_TOKEN=$(cat admin.token) portcall access org add toyco --kind customer',
    );

  const org = access.command('org').description('Organisations: the carrier, customers, consignees, port authorities');
  connection(org.command('add').description('Add or replace an organisation').argument('<id>', 'organisation id, e.g. toyco'))
    .addOption(new Option('--kind <kind>', 'what the organisation is').choices(ORG_KINDS).makeOptionMandatory())
    .option('--name <name>', 'display name')
    .option('--port <code>', 'port code (UN/LOCODE) of a port authority, e.g. SGSIN')
    .action(async (id: string, options: Connection & { kind: string; name?: string; port?: string }) => {
      print(await call(options, 'POST', '/v1/access/orgs', { id, kind: options.kind, ...(options.name === undefined ? {} : { name: options.name }), ...(options.port === undefined ? {} : { port: options.port }) }));
    });

  const principal = access.command('principal').description('Principals: people and service accounts, each in an organisation, with roles');
  connection(principal.command('add').description('Add or replace a principal').argument('<id>', 'principal id, e.g. alice@toyco'))
    .requiredOption('--org <org>', 'its organisation')
    .addOption(new Option('--role <role...>', 'its roles').choices(ROLES).makeOptionMandatory())
    .option('--service', 'a service account (a machine), not a person')
    .action(async (id: string, options: Connection & { org: string; role: string[]; service?: boolean }) => {
      print(await call(options, 'POST', '/v1/access/principals', { id, org: options.org, roles: options.role, kind: options.service === true ? 'service' : 'person' }));
    });
  connection(principal.command('disable').description('Disable a principal: its tokens stop working at once').argument('<id>', 'principal id'))
    .action(async (id: string, options: Connection) => print(await call(options, 'DELETE', `/v1/access/principals/${encodeURIComponent(id)}`)));

  const group = access.command('group').description('Groups of principals, for stream expressions (group:<id>)');
  connection(group.command('set').description("Set a group's members").argument('<id>', 'group id').argument('[members...]', 'principal ids'))
    .action(async (id: string, members: string[], options: Connection) => print(await call(options, 'POST', '/v1/access/groups', { id, members })));

  const ace = access.command('ace').description('Per-stream access control expressions, e.g. "role:carrier-ops | (role:customer & !org:redco)"');
  connection(ace.command('set').description("Set a stream's expression").argument('<stream>', 'stream, e.g. containers').argument('<expression>', 'the expression (quote it)'))
    .action(async (stream: string, expression: string, options: Connection) =>
      print(await call(options, 'PUT', `/v1/access/streams/${encodeURIComponent(stream)}/ace`, { expression })),
    );
  connection(ace.command('clear').description('Return a stream to its default expression').argument('<stream>', 'stream'))
    .action(async (stream: string, options: Connection) => print(await call(options, 'PUT', `/v1/access/streams/${encodeURIComponent(stream)}/ace`, { expression: null })));

  const token = access.command('token').description('Bearer tokens: issued (shown once, stored hashed) and revoked');
  connection(token.command('issue').description('Issue a token for a principal and print it (the only time it is shown)').argument('<principal>', 'principal id'))
    .option('--expires <when>', 'ISO time or duration from now (90m, 12h, 30d)', timeArgument('--expires'))
    .option('--only-token', 'print the token alone (for scripts), not the JSON')
    .action(async (principalId: string, options: Connection & { expires?: string; onlyToken?: boolean }) => {
      const issued = await call(options, 'POST', '/v1/access/tokens', { principal: principalId, ...(options.expires === undefined ? {} : { expiresAt: options.expires }) });
      if (options.onlyToken === true) process.stdout.write(`${String(issued.token)}\n`);
      else print(issued);
    });
  connection(token.command('revoke').description('Revoke a token by its id (the hex between "pct_" and the next "_")').argument('<tokenId>', 'token id'))
    .action(async (tokenId: string, options: Connection) => print(await call(options, 'DELETE', `/v1/access/tokens/${encodeURIComponent(tokenId)}`)));

  const password = access.command('password').description('Passwords for signing in to the portal (stored as scrypt hashes; signing in gives a session token)');
  connection(
    password
      .command('set')
      .description("Set a principal's password, read from --password-file or stdin (never from the command line); ends its sessions")
      .argument('<principal>', 'principal id'),
  )
    .option('--password-file <file>', 'file holding the password (else read from stdin; one trailing newline is dropped)')
    .addHelpText('after', '\nExample: printf %s "$PASSWORD" | portcall access password set alice --token-file admin.token\nAt least 12 characters, at most 1024.')
    .action(async (principalId: string, options: Connection & { passwordFile?: string }) => {
      const secret = (await readPassword(options.passwordFile)).replace(/\r?\n$/, '');
      if (secret.length < 12) throw new PortcallError('USAGE', 'the password must be at least 12 characters');
      print(await call(options, 'PUT', `/v1/access/principals/${encodeURIComponent(principalId)}/password`, { password: secret }));
    });
  connection(password.command('clear').description("Clear a principal's password: it can no longer sign in by password; its sessions end").argument('<principal>', 'principal id'))
    .action(async (principalId: string, options: Connection) => print(await call(options, 'DELETE', `/v1/access/principals/${encodeURIComponent(principalId)}/password`)));

  const custody = access.command('custody').description('Custody windows: which organisation may see which container, from when to when');
  connection(custody.command('assign').description('Give an organisation a container for a window of event time').argument('<container>', 'container id (its topic), e.g. Y01'))
    .requiredOption('--org <org>', 'the organisation')
    .requiredOption('--from <when>', 'start of the window (ISO time or duration from now)', timeArgument('--from'))
    .option('--to <when>', 'end of the window, exclusive (open-ended without it)', timeArgument('--to'))
    .addOption(new Option('--as <what>', 'owner sees everything, consignee the status').choices(['owner', 'consignee']).default('owner'))
    .option('--id <id>', 'name of the window (generated without it)')
    .action(async (container: string, options: Connection & { org: string; from: string; to?: string; as: string; id?: string }) => {
      print(
        await call(options, 'POST', '/v1/access/custody', {
          container,
          org: options.org,
          as: options.as,
          from: options.from,
          ...(options.to === undefined ? {} : { to: options.to }),
          ...(options.id === undefined ? {} : { id: options.id }),
        }),
      );
    });
  connection(custody.command('withdraw').description('Withdraw a custody window').argument('<id>', 'window id'))
    .action(async (id: string, options: Connection) => print(await call(options, 'DELETE', `/v1/access/custody/${encodeURIComponent(id)}`)));

  connection(access.command('show').description('Print the access state (no token hashes)')).action(async (options: Connection) =>
    print(await call(options, 'GET', '/v1/access/state')),
  );
}
