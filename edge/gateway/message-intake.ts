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
    const refusal = this.check(topic, payload);
    if ('reason' in refusal) {
      this.metrics.refusals.inc({ reason: refusal.reason });
      this.metrics.countMessage(qos, 'refused', source);
      return refusal;
    }
    this.liveness.record(refusal.record.stream, refusal.record.topic, refusal.document);
    this.batcher.add(refusal.record, (error) => {
      this.metrics.countMessage(qos, error === undefined ? 'stored' : 'store-failed', source);
      done(error);
    });
    return undefined;
  }

  private check(topic: string, payload: Buffer): Refusal | { record: NewRecord; document: unknown } {
    if (topic.length > this.limits.maxTopicLength) {
      return { reason: 'topic-too-long', message: `topic longer than ${this.limits.maxTopicLength} characters` };
    }
    let levels = 1;
    for (let i = 0; i < topic.length; i += 1) if (topic.charCodeAt(i) === 0x2f /* / */) levels += 1;
    if (levels > this.limits.maxTopicLevels) {
      return { reason: 'topic-too-deep', message: `topic deeper than ${this.limits.maxTopicLevels} levels` };
    }
    if (topic.startsWith('$')) return { reason: 'reserved-topic', message: 'topics starting with "$" are reserved' };
    const mapped = this.mapper.map(topic);
    if (mapped === undefined) return { reason: 'unmapped-topic', message: `no topic rule matches "${topic}"` };
    const verdict = checkPayload(this.payloadKinds.get(mapped.stream) ?? 'json-reading', payload);
    if (!verdict.ok) return { reason: verdict.reason, message: verdict.message };
    return {
      record: {
        stream: mapped.stream,
        topic: mapped.topic,
        ...(verdict.eventTimeMs === undefined ? {} : { eventTimeMs: verdict.eventTimeMs }),
        headers: { 'mqtt-topic': topic },
        payload,
      },
      document: verdict.document,
    };
  }
}
