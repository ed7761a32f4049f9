/**
 * How a component tells the site whether it can do its job now. The composition root collects
 * these from the components it wired and serves them on `/healthz` and `/readyz`; no stage
 * imports another to ask.
 */

/**
 * - `ok`: working.
 * - `degraded`: working, with something an operator should know (slow, rebuilding an index).
 * - `unavailable`: cannot do its job now (a backend is down); callers get retriable refusals.
 */
export type HealthStatus = 'ok' | 'degraded' | 'unavailable';

export interface HealthReport {
  /** Short stable name, e.g. "kafka-log". */
  readonly component: string;
  readonly status: HealthStatus;
  /** Why it is not ok, in words an operator can act on; absent when ok. */
  readonly reason?: string;
  /** Since when (epoch ms) the status has been what it is. */
  readonly sinceMs: number;
  /** Figures behind the status (queue depth, last commit), for dashboards and humans. */
  readonly details?: Readonly<Record<string, unknown>>;
}

export interface HealthSource {
  health(): HealthReport;
}
