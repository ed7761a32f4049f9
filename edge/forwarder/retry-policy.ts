/**
 * The one place that decides what happens after a batch fails: how long to wait, whether
 * the batch must shrink, and how to name the failure in metrics.
 *
 * - A failure the link calls retriable (connection refused or reset, a stall, a timeout, the
 *   receiver's store unavailable, a gap caused by an earlier batch of the same window that
 *   failed) is retried after an exponential back-off with jitter, so a fleet of ships does
 *   not reconnect in lockstep after a shore outage.
 * - A batch the receiver finds too large (`too-large`, `too-many-records`) is halved and
 *   retried at once: limits differ between sites and a link must not stall on them.
 * - Anything else (a refusal that will repeat as sent: wrong token, a fork, a gap at the
 *   very front of the window) waits the longest back-off: an operator has to act, and the
 *   link must not hammer the peer meanwhile.
 */
import { LinkError, PortcallError } from '../../core/index.js';

export interface RetryPolicyOptions {
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Random share of each delay, 0..1. */
  readonly jitter?: number;
  readonly random?: () => number;
}

export interface RetryDecision {
  readonly delayMs: number;
  /** Halve the batch size before trying again. */
  readonly shrink: boolean;
  /** Stable label for metrics and logs. */
  readonly reason: string;
  /** Trying again as sent cannot succeed without someone acting. */
  readonly permanent: boolean;
}

const SHRINK_REASONS = new Set(['too-large', 'too-many-records']);

export function failureReason(error: unknown): string {
  if (error instanceof LinkError) return error.reason;
  if (error instanceof PortcallError) return error.code.toLowerCase().replaceAll('_', '-');
  return 'unexpected';
}

export class RetryPolicy {
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly jitter: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(options: RetryPolicyOptions = {}) {
    this.initialDelayMs = options.initialDelayMs ?? 200;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.jitter = options.jitter ?? 0.3;
    this.random = options.random ?? Math.random;
  }

  /**
   * @param afterEarlierFailure the batch was sent behind another that failed first, so a
   *   refusal such as a gap is a consequence, not a problem of its own.
   */
  onFailure(error: unknown, afterEarlierFailure = false): RetryDecision {
    const reason = failureReason(error);
    if (SHRINK_REASONS.has(reason)) return { delayMs: 0, shrink: true, reason, permanent: false };
    const retriable = afterEarlierFailure || (error instanceof PortcallError ? error.retriable : true);
    this.attempt += 1;
    const exponential = Math.min(this.maxDelayMs, this.initialDelayMs * 2 ** Math.min(this.attempt - 1, 20));
    const base = retriable ? exponential : this.maxDelayMs;
    const delayMs = Math.round(base * (1 - this.jitter + this.jitter * this.random()));
    return { delayMs, shrink: false, reason, permanent: !retriable };
  }

  onSuccess(): void {
    this.attempt = 0;
  }
}
