/**
 * What happens to a PUBLISH once its sender is known to be allowed to send it, whether it
 * came from a device or through the bridge: topic limits, mapping to (stream, topic), the
 * stream's payload policy, then the durable append through the commit batcher. Refusals are
 * returned (and counted) synchronously; acceptance is reported when the record is durable.
 */
import type { NewRecord } from '../../core/index.js';
import type { CommitBatcher, CommitCallback, CommitWaiter } from './commit-batcher.js';
import type { LivenessWatch } from './liveness.js';
import type { GatewayMetrics } from './metrics.js';
import { checkPayload, type PayloadKind } from './payload-policy.js';
import type { TopicMapper } from './topic-mapper.js';

export interface IntakeLimits {
  readonly maxTopicLength: number;
  readonly maxTopicLevels: number;
  /**
   * Log topics no device or bridge may write, whatever the topic rules map to them: the
   * access records (written only through the access admin API). Checked once per MQTT topic
   * when its destination is first worked out, never per message.
   */
  readonly reservedTopics?: readonly ReservedTopic[];
}

/** A log topic reserved to the site itself; without `topic`, every topic of the stream. */
export interface ReservedTopic {
  readonly stream: string;
  readonly topic?: string;
}

export interface Refusal {
  readonly reason: string;
  readonly message: string;
}

export class MessageIntake {
  constructor(
    private readonly mapper: TopicMapper,
    private readonly payloadKinds: ReadonlyMap<string, PayloadKind>,
    private readonly limits: IntakeLimits,
    private readonly batcher: CommitBatcher,
    private readonly liveness: LivenessWatch,
    private readonly metrics: GatewayMetrics,
  ) {}

  /**
   * Checks the message; if it passes, appends it and tells `done` once it is durable (or
   * not). Counted as stored or store-failed per batch by the batcher's owner (see `tagOf`).
   */
  admit(topic: string, payload: Buffer, qos: number, source: 'device' | 'bridge', done: CommitWaiter | CommitCallback): Refusal | undefined {
    const destination = this.destinationOf(topic);
    if ('reason' in destination) return this.refuse(destination, qos, source);
    const verdict = checkPayload(destination.kind, payload, destination.watched);
    if (!verdict.ok) return this.refuse(verdict, qos, source);
    if (destination.watched) this.liveness.record(destination.stream, destination.topic, verdict.document);
    const record: NewRecord = {
      stream: destination.stream,
      topic: destination.topic,
      eventTimeMs: verdict.eventTimeMs,
      headers: destination.headers,
      payload,
    };
    this.batcher.add(record, done, tagOf(qos, source));
    return undefined;
  }

  private refuse(refusal: Refusal, qos: number, source: 'device' | 'bridge'): Refusal {
    this.metrics.refusals.inc({ reason: refusal.reason });
    this.metrics.countMessage(qos, 'refused', source);
    return refusal;
  }

  /**
   * Where an MQTT topic goes, or why it may not. Devices publish to the same topics over and
   * over, so the answer is kept per topic (bounded), with one shared headers object each.
   */
  private destinationOf(topic: string): Destination | Refusal {
    let destination = this.destinations.get(topic);
    if (destination === undefined) {
      destination = this.route(topic);
      if (this.destinations.size >= MAX_CACHED_TOPICS) this.destinations.clear();
      this.destinations.set(topic, destination);
    }
    return destination;
  }

  private readonly destinations = new Map<string, Destination | Refusal>();

  private route(topic: string): Destination | Refusal {
    if (topic.length > this.limits.maxTopicLength) {
      return { reason: 'topic-too-long', message: `topic longer than ${this.limits.maxTopicLength} characters` };
    }
    if (topic.split('/').length > this.limits.maxTopicLevels) {
      return { reason: 'topic-too-deep', message: `topic deeper than ${this.limits.maxTopicLevels} levels` };
    }
    if (topic.startsWith('$')) return { reason: 'reserved-topic', message: 'topics starting with "$" are reserved' };
    const mapped = this.mapper.map(topic);
    if (mapped === undefined) return { reason: 'unmapped-topic', message: `no topic rule matches "${topic}"` };
    const reserved = this.limits.reservedTopics?.find((entry) => entry.stream === mapped.stream && (entry.topic === undefined || entry.topic === mapped.topic));
    if (reserved !== undefined) {
      return {
        reason: 'reserved-log-topic',
        message: `"${topic}" maps to ${mapped.stream}/${mapped.topic}, which only the site writes (access records, through the access admin API)`,
      };
    }
    return {
      stream: mapped.stream,
      topic: mapped.topic,
      kind: this.payloadKinds.get(mapped.stream) ?? 'json-reading',
      headers: Object.freeze({ 'mqtt-topic': topic }),
      watched: this.liveness.watches(mapped.stream),
    };
  }
}

interface Destination {
  readonly stream: string;
  readonly topic: string;
  readonly kind: PayloadKind;
  readonly headers: Readonly<Record<string, string>>;
  /** The silence watchdog keeps this stream's last readings: the payload is parsed for it. */
  readonly watched: boolean;
}

/** What a record is counted as once its batch commits (or fails): QoS and source in one number. */
export function tagOf(qos: number, source: 'device' | 'bridge'): number {
  return qos * 2 + (source === 'bridge' ? 1 : 0);
}

/** A record not counted as a PUBLISH (an alert the gateway raised itself). */
export const UNCOUNTED_TAG = -1;

export function countCommitted(metrics: GatewayMetrics, tags: readonly number[], outcome: 'stored' | 'store-failed'): void {
  for (let i = 0; i < tags.length; i += 1) {
    const tag = tags[i]!;
    if (tag >= 0) metrics.countMessage(tag >> 1, outcome, (tag & 1) === 1 ? 'bridge' : 'device');
  }
}

const MAX_CACHED_TOPICS = 200_000;
