/**
 * Record identity and shape, shared by every stage.
 *
 * A record's identity is (origin, stream, topic, offset) and never changes on any copy
 * (DESIGN.md, decision 2). `offset` is dense and increasing within a topic and is assigned
 * only by the site that currently writes the topic; every other site stores the record at
 * the same offset, which is what lets a consumer move between sites.
 */

/** Names of streams the product knows; sites may configure more. */
export const WELL_KNOWN_STREAMS = ['containers', 'ships', 'alerts', 'manifests'] as const;

export interface RecordIdentity {
  /** Site that assigned the offset (the topic's writer when the record was appended). */
  readonly origin: string;
  readonly stream: string;
  /** Logical topic inside the stream, e.g. a container id. */
  readonly topic: string;
  readonly offset: number;
}

export type RecordHeaders = Readonly<Record<string, string>>;

/**
 * The headers of every record that has none: one frozen object, shared. No stage writes to a
 * record's headers, so records may share a headers object (the gateway shares one per MQTT
 * topic, the wire decoder one per run of equal rows).
 */
export const NO_HEADERS: RecordHeaders = Object.freeze({});

export interface LogRecord extends RecordIdentity {
  /** When the reading was taken, as reported by the device (or ingest time if it did not say). */
  readonly eventTimeMs: number;
  /** When the origin site first made the record durable. */
  readonly ingestTimeMs: number;
  readonly headers: RecordHeaders;
  readonly payload: Uint8Array;
}

/** A record offered to its writer site, before an offset is assigned. */
export interface NewRecord {
  readonly stream: string;
  readonly topic: string;
  readonly eventTimeMs?: number;
  readonly headers?: RecordHeaders;
  readonly payload: Uint8Array;
}

/** Where a topic stands at a site: the next offset it will hold. */
export interface TopicHighWater {
  readonly stream: string;
  readonly topic: string;
  /** One past the last offset held; 0 for an empty topic. */
  readonly nextOffset: number;
}

export function identityKey(id: RecordIdentity): string {
  return `${id.origin}\u0000${id.stream}\u0000${id.topic}\u0000${id.offset}`;
}

export function topicKey(stream: string, topic: string): string {
  return `${stream}\u0000${topic}`;
}
