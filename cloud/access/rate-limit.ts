/** A fixed-window rate limit per client: at most `limit` calls per `windowMs`, then `RateLimitedError`. */
import { RateLimitedError } from '../../core/index.js';

export class FixedWindowLimiter {
  private readonly windows = new Map<string, { startMs: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one call by `client`; throws `RateLimitedError` when the window is used up. */
  take(client: string): void {
    const now = this.now();
    let window = this.windows.get(client);
    if (window === undefined || now - window.startMs >= this.windowMs) {
      if (this.windows.size >= 100_000) this.evictExpired(now);
      window = { startMs: now, count: 0 };
      this.windows.set(client, window);
    }
    window.count += 1;
    if (window.count > this.limit) {
      throw new RateLimitedError(Math.max(1, Math.ceil((window.startMs + this.windowMs - now) / 1000)));
    }
  }

  private evictExpired(now: number): void {
    for (const [client, window] of this.windows) if (now - window.startMs >= this.windowMs) this.windows.delete(client);
    // Still full of live windows (a flood of addresses): start over rather than grow without bound.
    if (this.windows.size >= 100_000) this.windows.clear();
  }
}
