/**
 * Messages between the benchmark process and its load generator / ack-sink child processes
 * (Node IPC). Kept in one place so both sides agree on the shape.
 */
export interface LoadRequest {
  readonly kind: 'load';
  readonly port: number;
  readonly connections: number;
  readonly messages: number;
  readonly containers: number;
  readonly topicPrefix: string;
  readonly qos: 0 | 1;
  /** Unacknowledged QoS 1 messages allowed per connection. */
  readonly windowPerConnection: number;
  /** Messages per second over all connections; 0 = as fast as the broker takes them. */
  readonly ratePerSecond: number;
  readonly username?: string;
  readonly password?: string;
  /** Gives up (and reports what it got) after this long. */
  readonly timeoutMs: number;
  /** Also report PUBACK latency per slice of this many ms of sending time (diagnosis). */
  readonly timelineSliceMs?: number;
  /** Also report PUBACK latency of the messages sent after this many ms (`steady…`): the broker is warm by then. */
  readonly measureAfterMs?: number;
}

export interface LoadResult {
  readonly kind: 'result';
  readonly sent: number;
  readonly acknowledged: number;
  readonly elapsedMs: number;
  /** PUBACK latencies in ms (QoS 1 only), percentiles over every message. */
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly latencyMaxMs: number;
  /** With `measureAfterMs`: the same over the messages sent after it, and how many those were. */
  readonly steady?: { readonly count: number; readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number };
  /** With `timelineSliceMs`: per slice of sending time, how many were sent then and their PUBACK latencies. */
  readonly timeline?: readonly { readonly startMs: number; readonly count: number; readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number }[];
  readonly error?: string;
}

export interface SinkReady {
  readonly kind: 'ready';
  readonly port: number;
}
