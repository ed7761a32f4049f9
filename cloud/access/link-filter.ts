/**
 * The filter of a replication link to a customer's own endpoint (docs/ACCESS.md, "Replication
 * to a customer's endpoint"): what one audience (a service principal named by the site's
 * configuration, or the principal of a token) may see, record by record, plus what lets the
 * link send records it left out earlier once custody is widened.
 *
 * Why a mark and not a version number: the state's version counts records applied since the
 * process started, so it means nothing after a restart; the next offsets of the two access
 * topics mean the same records at every start, so the link can keep the mark it accounted
 * for durably (as named cursors) and, after a crash mid-rescan, find the same changes again.
 */
import type { AccessMark, LinkFilter, LogRecord, RecordFilter, TopicReader, Widening } from '../../core/index.js';
import type { AccessPolicy, Viewer } from './policy.js';
import type { AccessProjector } from './projector.js';
import { ACCESS_STREAM, ACCESS_TOPIC, CUSTODY_STREAM, CUSTODY_TOPIC } from './records.js';
import { tokenIdOf } from './tokens.js';

/** Whom the link's filter stands for. */
export type LinkAudience = { readonly principal: string } | { readonly token: string };

export interface LinkFilterOptions {
  readonly policy: AccessPolicy;
  readonly projector: AccessProjector;
  readonly reader: TopicReader;
  readonly audience: LinkAudience;
}

const PAGE = 1000;

/** The payload of an access record as loose JSON (a record that does not parse widens nothing). */
function fieldsOf(record: LogRecord): Record<string, unknown> | undefined {
  try {
    const json: unknown = JSON.parse(Buffer.from(record.payload.buffer, record.payload.byteOffset, record.payload.byteLength).toString('utf8'));
    return typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function linkFilter(options: LinkFilterOptions): LinkFilter {
  const { policy, projector, reader, audience } = options;
  const resolve = (): Viewer | undefined => ('principal' in audience ? policy.viewerByName(audience.principal) : policy.authenticate(audience.token));
  // The viewer (and its roles) are derived from the state: resolved again whenever it changed,
  // so a principal given roles, or a token issued after the link started, counts at once.
  let cached: { version: number; filter: RecordFilter | undefined } | undefined;
  const current = (): RecordFilter | undefined => {
    const version = projector.state.version;
    if (cached?.version !== version) {
      const viewer = resolve();
      cached = { version, filter: viewer === undefined ? undefined : policy.filterFor(viewer) };
    }
    return cached.filter;
  };
  const mark = (): AccessMark => [projector.state.accessOffset, projector.state.custodyOffset];

  const read = async (stream: string, topic: string, from: number, to: number): Promise<LogRecord[]> => {
    const records: LogRecord[] = [];
    let next = from;
    for (let pages = 0; next < to && pages < 1_000_000; pages += 1) {
      const page = await reader.readTopic(stream, topic, next, { maxRecords: PAGE });
      if (page.length === 0) break;
      for (const record of page) if (record.offset < to) records.push(record);
      next = page.at(-1)!.offset + 1;
    }
    return records;
  };

  return {
    mayHold: (stream, topic) => current()?.mayHold(stream, topic) ?? false,
    admit: (record) => current()?.admit(record),
    mark,
    widenedSince: async (since): Promise<Widening> => {
      const upTo = mark();
      const viewer = resolve();
      const topics = new Set<string>();
      // Nobody to widen for (unknown, disabled, revoked): nothing is admitted now, and the
      // record that makes the audience valid again is itself a change a later mark covers.
      if (viewer === undefined) return { topics, mark: upTo };
      const tokenId = 'token' in audience ? tokenIdOf(audience.token) : undefined;
      for (const record of await read(ACCESS_STREAM, ACCESS_TOPIC, since[0] ?? 0, upTo[0]!)) {
        const fields = fieldsOf(record);
        if (fields === undefined) continue;
        const type = fields.type;
        // Changes that can widen what this audience sees of any topic; the rest (another
        // principal, a password, a revocation) cannot, and narrowing needs no rescan.
        const widensAll =
          type === 'ace.set' ||
          type === 'group.set' ||
          (type === 'principal.set' && fields.id === viewer.principal.id) ||
          (type === 'org.set' && fields.id === viewer.org.id) ||
          (type === 'token.issued' && tokenId !== undefined && fields.tokenId === tokenId);
        if (widensAll) return { topics: 'all', mark: upTo };
      }
      for (const record of await read(CUSTODY_STREAM, CUSTODY_TOPIC, since[1] ?? 0, upTo[1]!)) {
        const fields = fieldsOf(record);
        if (fields?.type === 'custody.assigned' && fields.org === viewer.org.id && typeof fields.container === 'string') topics.add(fields.container);
      }
      return { topics, mark: upTo };
    },
  };
}
