/**
 * A fixed-window rate limit per client (an address, a principal): at most `limit` counted
 * events per `windowMs`. Bounded memory: past 100,000 clients, expired windows are dropped,
 * and if every window is live (a flood of addresses) all are, rather than grow.
 */
import { RateLimitedError } from './errors.js';

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
    const window = this.windowOf(client, now);
    window.count += 1;
    if (window.count > this.limit) {
      throw new RateLimitedError(Math.max(1, Math.ceil((window.startMs + this.windowMs - now) / 1000)));
    }
  }

  /** Counts one event (a failed sign-in, say) against `client` without judging it. */
  note(client: string): void {
    this.windowOf(client, this.now()).count += 1;
  }

  /** Takes back one event noted against `client` (an attempt that turned out well). */
  release(client: string): void {
    const window = this.windows.get(client);
    if (window !== undefined && window.count > 0) window.count -= 1;
  }

  /** Whether `client` has used up its window: the next event would be over the limit. */
  exhausted(client: string): boolean {
    const window = this.windows.get(client);
    return window !== undefined && this.now() - window.startMs < this.windowMs && window.count >= this.limit;
  }

  private windowOf(client: string, now: number): { startMs: number; count: number } {
    let window = this.windows.get(client);
    if (window === undefined || now - window.startMs >= this.windowMs) {
      if (this.windows.size >= 100_000) this.evictExpired(now);
      window = { startMs: now, count: 0 };
      this.windows.set(client, window);
    }
    return window;
  }

  private evictExpired(now: number): void {
    for (const [client, window] of this.windows) if (now - window.startMs >= this.windowMs) this.windows.delete(client);
    // Still full of live windows (a flood of addresses): start over rather than grow without bound.
    if (this.windows.size >= 100_000) this.windows.clear();
  }
}
