/**
 * How far each sending site's streams have arrived here without a gap, in the sender's own
 * positions, so that a sender reconnecting after a reset or a crash learns in one number
 * per stream which of its unacknowledged batches did arrive, instead of resending them all.
 *
 * A batch tells where it sits (`from` < its records ≤ `to`) and what its sender already had
 * acknowledged (`acked`). Everything up to `acked` is durable here (that is what the
 * acknowledgement said), so the position starts there; it then advances only over a batch
 * that starts at or before where it stands (`advanceSenderPosition` in core), so it is always
 * a prefix with no gap, even when batches of a window are applied out of order or some never
 * arrive.
 *
 * Kept in memory: after a restart this site knows nothing, answers nothing, and senders
 * resend from their own acknowledged cursors (duplicates are dropped by record identity).
 * A sink that keeps senders' cursors durably with the records (the Kafka log, in the same
 * transaction) answers instead, merged with this memory (see ingest-routes.ts).
 * Positions are kept per sender log incarnation, so a sender whose log was rebuilt (its
 * positions starting again) is never told to skip ahead.
 */
import { advanceSenderPosition, type SenderPlacement } from '../../core/index.js';

export type BatchPlacement = SenderPlacement;

const MAX_SENDER_LOGS = 10_000;

export class SenderPositions {
  private readonly logs = new Map<string, Map<string, number>>();

  /** Notes a batch that is now durable here. */
  applied(sender: string, placement: BatchPlacement): void {
    const key = `${sender}\u0000${placement.incarnation}`;
    let streams = this.logs.get(key);
    if (streams === undefined) {
      if (this.logs.size >= MAX_SENDER_LOGS) this.logs.delete(this.logs.keys().next().value!);
      this.logs.set(key, (streams = new Map()));
    }
    streams.set(placement.stream, advanceSenderPosition(streams.get(placement.stream), placement));
  }

  of(sender: string, incarnation: string): Record<string, number> {
    return Object.fromEntries(this.logs.get(`${sender}\u0000${incarnation}`) ?? []);
  }
}

const SAFE_NUMBER = /^\d{1,16}$/;

/** Reads the placement headers of a batch request; undefined if absent or not well formed. */
export function placementFrom(headers: Record<string, string | string[] | undefined>): BatchPlacement | undefined {
  const get = (name: string) => {
    const value = headers[name];
    return typeof value === 'string' ? value : undefined;
  };
  const stream = get('pc-stream');
  const incarnation = get('pc-incarnation');
  const numbers = ['pc-from', 'pc-to', 'pc-acked'].map(get);
  if (stream === undefined || incarnation === undefined || stream.length > 64 || incarnation.length === 0 || incarnation.length > 64) return undefined;
  if (numbers.some((value) => value === undefined || !SAFE_NUMBER.test(value))) return undefined;
  const [from, to, acked] = numbers.map(Number) as [number, number, number];
  if (!Number.isSafeInteger(to) || from > to || acked > from) return undefined;
  return { stream, from, to, acked, incarnation };
}
