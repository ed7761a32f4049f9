/**
 * Access control expressions (ACEs), in the spirit of MapR's: a boolean combination of terms
 * naming who may read a stream.
 *
 *   expression := or
 *   or         := and { ("|" | "or") and }
 *   and        := unary { ("&" | "and") unary }
 *   unary      := ("!" | "not") unary | "(" expression ")" | term
 *   term       := kind ":" name        kind := "user" | "group" | "role" | "org"
 *   name       := [A-Za-z0-9][A-Za-z0-9._@-]{0,127}
 *
 * `not` binds tightest, then `and`, then `or`. Parsing is strict: an unknown kind, an empty
 * name, a dangling operator, unbalanced parentheses, more than 1024 characters or nesting
 * deeper than 32 are refused with a message naming the position; nothing is guessed.
 */
import { InvalidInputError } from '../../core/index.js';

export type AceTermKind = 'user' | 'group' | 'role' | 'org';

export type Ace =
  | { readonly op: 'term'; readonly kind: AceTermKind; readonly name: string }
  | { readonly op: 'not'; readonly operand: Ace }
  | { readonly op: 'and' | 'or'; readonly operands: readonly Ace[] };

/** Who is asking, as far as an expression can tell. */
export interface AceSubject {
  readonly user: string;
  readonly org: string;
  readonly roles: ReadonlySet<string>;
  readonly groups: ReadonlySet<string>;
}

export const MAX_ACE_LENGTH = 1024;
const MAX_DEPTH = 32;
const KINDS: readonly AceTermKind[] = ['user', 'group', 'role', 'org'];
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

type Token = { kind: 'open' | 'close' | 'and' | 'or' | 'not'; at: number } | { kind: 'term'; at: number; term: AceTermKind; name: string };

function refuse(text: string, at: number, why: string): never {
  throw new InvalidInputError('bad-ace', `access control expression ${JSON.stringify(text)}: ${why} at position ${at + 1}`);
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t') {
      i += 1;
    } else if (c === '(' || c === ')') {
      tokens.push({ kind: c === '(' ? 'open' : 'close', at: i });
      i += 1;
    } else if (c === '&' || c === '|' || c === '!') {
      tokens.push({ kind: c === '&' ? 'and' : c === '|' ? 'or' : 'not', at: i });
      i += 1;
    } else {
      const match = /^[A-Za-z0-9._@:-]+/.exec(text.slice(i));
      if (match === null) refuse(text, i, `unexpected character ${JSON.stringify(c)}`);
      const word = match[0];
      if (word === 'and' || word === 'or' || word === 'not') {
        tokens.push({ kind: word, at: i });
      } else {
        const colon = word.indexOf(':');
        if (colon < 0) refuse(text, i, `"${word}" is not a term (write user:, group:, role: or org: before a name)`);
        const kind = word.slice(0, colon);
        const name = word.slice(colon + 1);
        if (!(KINDS as readonly string[]).includes(kind)) refuse(text, i, `unknown term kind "${kind}" (user, group, role or org)`);
        if (!NAME.test(name)) refuse(text, i + colon + 1, `"${name}" is not a valid name`);
        tokens.push({ kind: 'term', at: i, term: kind as AceTermKind, name });
      }
      i += word.length;
    }
  }
  return tokens;
}

/** Parses an expression, or throws `InvalidInputError` (reason `bad-ace`) saying where it is wrong. */
export function parseAce(text: string): Ace {
  if (text.length > MAX_ACE_LENGTH) refuse(text.slice(0, 40), 0, `longer than ${MAX_ACE_LENGTH} characters`);
  const tokens = tokenize(text);
  let position = 0;
  const peek = () => tokens[position];
  const where = () => peek()?.at ?? text.length;

  const parseOr = (depth: number): Ace => {
    const operands = [parseAnd(depth)];
    while (peek()?.kind === 'or') {
      position += 1;
      operands.push(parseAnd(depth));
    }
    return operands.length === 1 ? operands[0]! : { op: 'or', operands };
  };
  const parseAnd = (depth: number): Ace => {
    const operands = [parseUnary(depth)];
    while (peek()?.kind === 'and') {
      position += 1;
      operands.push(parseUnary(depth));
    }
    return operands.length === 1 ? operands[0]! : { op: 'and', operands };
  };
  const parseUnary = (depth: number): Ace => {
    if (depth > MAX_DEPTH) refuse(text, where(), `nested deeper than ${MAX_DEPTH}`);
    const token = peek();
    if (token === undefined) refuse(text, text.length, 'expression ends where a term was expected');
    if (token.kind === 'not') {
      position += 1;
      return { op: 'not', operand: parseUnary(depth + 1) };
    }
    if (token.kind === 'open') {
      position += 1;
      const inner = parseOr(depth + 1);
      if (peek()?.kind !== 'close') refuse(text, where(), 'expected ")"');
      position += 1;
      return inner;
    }
    if (token.kind === 'term') {
      position += 1;
      return { op: 'term', kind: token.term, name: token.name };
    }
    return refuse(text, token.at, `unexpected "${token.kind === 'close' ? ')' : token.kind}" where a term was expected`);
  };

  const ace = parseOr(0);
  if (position < tokens.length) refuse(text, where(), 'unexpected text after the expression');
  return ace;
}

export function evaluateAce(ace: Ace, subject: AceSubject): boolean {
  switch (ace.op) {
    case 'term':
      switch (ace.kind) {
        case 'user':
          return subject.user === ace.name;
        case 'org':
          return subject.org === ace.name;
        case 'role':
          return subject.roles.has(ace.name);
        case 'group':
          return subject.groups.has(ace.name);
      }
      break;
    case 'not':
      return !evaluateAce(ace.operand, subject);
    case 'and':
      return ace.operands.every((operand) => evaluateAce(operand, subject));
    case 'or':
      return ace.operands.some((operand) => evaluateAce(operand, subject));
  }
  return false;
}

/** The canonical text of an expression (fully parenthesised), for display and round trips. */
export function formatAce(ace: Ace): string {
  switch (ace.op) {
    case 'term':
      return `${ace.kind}:${ace.name}`;
    case 'not':
      return `!${formatAce(ace.operand)}`;
    default:
      return `(${ace.operands.map(formatAce).join(ace.op === 'and' ? ' & ' : ' | ')})`;
  }
}
