/**
 * What happens to a PUBLISH once its sender is known to be allowed to send it, whether it
 * came from a device or through the bridge: topic limits, mapping to (stream, topic), the
 * stream's payload policy, then the durable append through the commit batcher. Refusals are
 * returned (and counted) synchronously; acceptance is reported when the record is durable.
 */
import type { NewRecord } from '../../core/index.js';
import type { CommitBatcher, CommitCallback } from './commit-batcher.js';
import type { LivenessWatch } from './liveness.js';
import type { GatewayMetrics } from './metrics.js';
import { checkPayload, type PayloadKind } from './payload-policy.js';
import type { TopicMapper } from './topic-mapper.js';

export interface IntakeLimits {
  readonly maxTopicLength: number;
  readonly maxTopicLevels: number;
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

  /** Checks the message; if it passes, appends it and calls `done` once it is durable. */
  admit(topic: string, payload: Buffer, qos: number, source: 'device' | 'bridge', done: CommitCallback): Refusal | undefined {
    const destination = this.destinationOf(topic);
    if ('reason' in destination) return this.refuse(destination, qos, source);
    const verdict = checkPayload(destination.kind, payload);
    if (!verdict.ok) return this.refuse(verdict, qos, source);
    this.liveness.record(destination.stream, destination.topic, verdict.document);
    const record: NewRecord = {
      stream: destination.stream,
      topic: destination.topic,
      eventTimeMs: verdict.eventTimeMs,
      headers: destination.headers,
      payload,
    };
    this.batcher.add(record, (error) => {
      this.metrics.countMessage(qos, error === undefined ? 'stored' : 'store-failed', source);
      done(error);
    });
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
    return {
      stream: mapped.stream,
      topic: mapped.topic,
      kind: this.payloadKinds.get(mapped.stream) ?? 'json-reading',
      headers: Object.freeze({ 'mqtt-topic': topic }),
    };
  }
}

interface Destination {
  readonly stream: string;
  readonly topic: string;
  readonly kind: PayloadKind;
  readonly headers: Readonly<Record<string, string>>;
}

const MAX_CACHED_TOPICS = 200_000;
