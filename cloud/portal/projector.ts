/**
 * Keeps the portal's read model up to date with the site's log: reads the portal's streams
 * from the start at `start()` (rebuild, see index.ts), then follows them, woken by
 * `onDurable` and polling as a fallback, and tells live listeners about each record folded in.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { LogRecord, StreamSource, TopicReader } from '../../core/index.js';
import { PortalReadModel } from './read-model.js';

export const PORTAL_STREAMS: readonly string[] = ['manifests', 'ships', 'containers', 'alerts'];

export interface PortalProjectorOptions {
  readonly source: StreamSource;
  readonly model?: PortalReadModel;
  /** Where the default model reads its series' records back from (the site's log); see ReadModelOptions. */
  readonly reader?: Pick<TopicReader, 'readTopic'>;
  readonly pageRecords?: number;
  readonly pollIntervalMs?: number;
  readonly logger?: Logger;
}

export type LiveListener = (records: readonly LogRecord[]) => void;

export class PortalProjector {
  readonly model: PortalReadModel;
  private readonly positions = new Map<string, number>();
  private readonly listeners = new Set<LiveListener>();
  private readonly dirty = new Set<string>();
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly options: PortalProjectorOptions) {
    this.model = options.model ?? new PortalReadModel(options.reader === undefined ? {} : { reader: options.reader });
  }

  /**
   * Follows the log from now on and reads everything held in the background; the returned
   * promise resolves once what was held at the call has been folded in (pages served before
   * then show what has been read so far).
   */
  start(): Promise<void> {
    for (const stream of PORTAL_STREAMS) this.dirty.add(stream);
    const caughtUp = this.catchUp();
    this.unsubscribe = this.options.source.onDurable((stream) => {
      if (!PORTAL_STREAMS.includes(stream)) return;
      this.dirty.add(stream);
      void this.catchUp();
    });
    this.timer = setInterval(() => {
      for (const stream of PORTAL_STREAMS) this.dirty.add(stream);
      void this.catchUp();
    }, this.options.pollIntervalMs ?? 1000);
    this.timer.unref();
    return caughtUp;
  }

  /** Calls the listener with every batch of records folded in from now on; returns an unsubscribe. */
  onRecords(listener: LiveListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves when every record durable before the call has been folded in. */
  async catchUp(): Promise<void> {
    while (this.running !== undefined) await this.running;
    if (this.dirty.size === 0 || this.stopped) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
    });
    await this.running;
  }

  private async drain(): Promise<void> {
    const pageRecords = this.options.pageRecords ?? 5000;
    while (this.dirty.size > 0 && !this.stopped) {
      const stream = this.dirty.values().next().value as string;
      this.dirty.delete(stream);
      for (;;) {
        const after = this.positions.get(stream) ?? 0;
        let page;
        try {
          page = await this.options.source.readStream(stream, after, { maxRecords: pageRecords });
        } catch (error) {
          this.options.logger?.warn({ err: (error as Error).message, stream }, 'portal projector: read failed; retrying on the next poll');
          break;
        }
        if (page.records.length === 0) break;
        for (const record of page.records) this.model.apply(record);
        this.positions.set(stream, page.nextPosition);
        for (const listener of this.listeners) {
          try {
            listener(page.records);
          } catch (error) {
            this.options.logger?.warn({ err: (error as Error).message }, 'portal live listener failed');
          }
        }
        if (page.records.length < pageRecords) break;
        // The embedded log reads synchronously, so its promise is already settled: without
        // giving the event loop a turn, catching up on millions of records would run as one
        // chain of microtasks and the site would answer no request (not even /healthz) until
        // it ended (seen: 405 s at 10 million records).
        await nextTurn();
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer !== undefined) clearInterval(this.timer);
    this.listeners.clear();
  }
}
