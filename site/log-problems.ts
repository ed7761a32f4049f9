/**
 * Warn and error log lines of this process over the last hour, in one-minute buckets, for
 * `GET /v1/status` ("errors in the last hour"). Fed by the pino hook of cli/logger.ts; a
 * process whose logger does not call `countLogLine` reports zeros and says so (`counted`).
 */
const BUCKET_MS = 60_000;
const BUCKETS = 60;
const warn = new Array<number>(BUCKETS).fill(0);
const error = new Array<number>(BUCKETS).fill(0);
const minuteOf = new Array<number>(BUCKETS).fill(-1);
let counting = false;

function bucket(now: number): number {
  const minute = Math.floor(now / BUCKET_MS);
  const index = minute % BUCKETS;
  if (minuteOf[index] !== minute) {
    minuteOf[index] = minute;
    warn[index] = 0;
    error[index] = 0;
  }
  return index;
}

/** pino level numbers: 40 warn, 50 error, 60 fatal. */
export function countLogLine(level: number, now = Date.now()): void {
  counting = true;
  if (level < 40) return;
  const index = bucket(now);
  if (level >= 50) error[index]! += 1;
  else warn[index]! += 1;
}

/** Marks that this process's logger feeds the counter, even before its first warning. */
export function startCountingLogLines(): void {
  counting = true;
}

export interface LogProblems {
  /** false when no logger of this process feeds the counter (the figures are then meaningless). */
  readonly counted: boolean;
  readonly warnLines: number;
  readonly errorLines: number;
}

/** Warn and error (or fatal) lines logged in the last 60 minutes (whole minutes, the current one included). */
export function logProblemsLastHour(now = Date.now()): LogProblems {
  const current = Math.floor(now / BUCKET_MS);
  let warnLines = 0;
  let errorLines = 0;
  for (let index = 0; index < BUCKETS; index += 1) {
    if (minuteOf[index]! > current - BUCKETS) {
      warnLines += warn[index]!;
      errorLines += error[index]!;
    }
  }
  return { counted: counting, warnLines, errorLines };
}
