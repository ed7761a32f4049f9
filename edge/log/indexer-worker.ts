/**
 * Worker thread running the topic indexer, so index building and WAL checkpoints use the
 * second core instead of the thread that appends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { TopicIndexer, type IndexerOptions } from './topic-indexer.js';

export type IndexerMessage = { type: 'poke' } | { type: 'stop' };
export type IndexerReply = { type: 'indexed'; records: number } | { type: 'error'; message: string } | { type: 'stopped'; synced: boolean };

/** How often an idle indexer looks for records nobody woke it for (the log wakes it per batch). */
const IDLE_POLL_MS = 250;
/**
 * Often enough that each checkpoint copies little, so the database file's fsync at its end is
 * short: it delays the writer's WAL fsyncs queued behind it on the disk. At every second, the
 * writer's commits waited up to 35 ms; at 250 ms, 16 ms; at 50 ms (about 1 MB a checkpoint at
 * 50,000 msg/s) PUBACK p99 at that rate fell further (docs/LOG.md). Checkpoints keep this
 * pace between index passes too: the index's batches stay large (IDLE_POLL_MS, the log's
 * wake-ups), since small ones rewrite as many index pages as large ones.
 */
const CHECKPOINT_EVERY_MS = 50;

const port = parentPort!;
const indexer = new TopicIndexer(workerData as IndexerOptions);
let poked = true;
let stopping = false;
let wake: (() => void) | undefined;
let lastCheckpointMs = 0;
let lastPassMs = 0;

port.on('message', (message: IndexerMessage) => {
  if (message.type === 'stop') stopping = true;
  poked = true;
  wake?.();
});

function checkpointIfDue(): void {
  if (Date.now() - lastCheckpointMs < CHECKPOINT_EVERY_MS) return;
  indexer.checkpointRecords();
  lastCheckpointMs = Date.now();
}

async function loop(): Promise<void> {
  while (!stopping) {
    if (!poked) {
      const now = Date.now();
      const sleepMs = Math.max(0, Math.min(lastPassMs + IDLE_POLL_MS, lastCheckpointMs + CHECKPOINT_EVERY_MS) - now);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, sleepMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    try {
      if (!poked && !stopping && Date.now() - lastPassMs < IDLE_POLL_MS) {
        // Woken for the checkpoint alone.
        checkpointIfDue();
        continue;
      }
      poked = false;
      let total = 0;
      for (;;) {
        const indexed = indexer.runOnce();
        total += indexed;
        // Under continuous appends the loop may never run dry, so the WAL is checkpointed
        // from inside it; otherwise the WAL would grow without bound.
        checkpointIfDue();
        // Only a full batch means more is waiting; otherwise sleep until the log wakes us
        // with the next batch's worth (or the idle poll), rather than chasing each commit
        // with a small batch that rewrites as many index pages as a large one.
        if (indexed < indexer.batchRecords || stopping) break;
      }
      indexer.reconcileRetention();
      lastPassMs = Date.now();
      if (total > 0) port.postMessage({ type: 'indexed', records: total } satisfies IndexerReply);
    } catch (error) {
      port.postMessage({ type: 'error', message: (error as Error).message } satisfies IndexerReply);
      await new Promise((resolve) => setTimeout(resolve, IDLE_POLL_MS));
    }
  }
  const synced = indexer.close();
  port.postMessage({ type: 'stopped', synced } satisfies IndexerReply);
}

void loop();
