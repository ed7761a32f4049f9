/**
 * Worker thread running the topic indexer, so index building uses the second core instead of
 * the thread that appends. (The records file's WAL checkpoints have a thread of their own,
 * checkpointer-worker.ts, at normal priority.)
 *
 * The thread runs at a lower scheduling priority than the rest (`threadNice`, Linux nice 10
 * by default): its batches take a core for 60-150 ms at a time, and while they ran the
 * gateway's and the log's threads, whose work a device's PUBACK waits for, got less of the
 * two cores. Niced, it gets what they leave, and the kernel runs them first when they wake.
 * Why 10 and not 19 (docs/LOG.md, "The indexer yields the CPU"): a batch reads the records
 * file inside one read transaction, which keeps the WAL from restarting until it ends; at 19,
 * beside two busy processes, batches took seconds and the WAL grew to 25 MiB, where at 10 it
 * stayed under 6 MiB (at 0, about 1). Under a load that leaves the thread no CPU for long,
 * the index falls behind (`portcall_log_unindexed_records`): reads scan the unindexed tail
 * meanwhile, and retention, which deletes indexed records only, waits.
 */
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { TopicIndexer, type IndexerOptions } from './topic-indexer.js';

export interface IndexerWorkerData extends IndexerOptions {
  /** Linux nice value (0-19) for this thread; at or below the thread's own, it is left as it was. */
  readonly threadNice: number;
}

export type IndexerMessage = { type: 'poke' } | { type: 'stop' };
export type IndexerReply =
  | { type: 'indexed'; records: number }
  | { type: 'error'; message: string }
  | { type: 'stopped'; synced: boolean }
  /** The thread's nice value once set, or why it was left as it was. */
  | { type: 'priority'; nice: number; problem?: string };

/** How often an idle indexer looks for records nobody woke it for (the log wakes it per batch). */
const IDLE_POLL_MS = 250;

const port = parentPort!;
const data = workerData as IndexerWorkerData;
port.postMessage(lowerPriority(data.threadNice) satisfies IndexerReply);
const indexer = new TopicIndexer(data);
let poked = true;
let stopping = false;
let wake: (() => void) | undefined;

port.on('message', (message: IndexerMessage) => {
  if (message.type === 'stop') stopping = true;
  poked = true;
  wake?.();
});

/**
 * On Linux, setpriority(PRIO_PROCESS, 0) changes the calling thread alone (threads are tasks
 * with their own nice value); elsewhere it would lower the whole process, gateway included,
 * so it is left alone there. Raising the nice value needs no privilege.
 */
function lowerPriority(nice: number): IndexerReply {
  const current = getPriority(0);
  // Only ever lowered: a process started at a lower priority than asked stays there.
  if (nice <= current) return { type: 'priority', nice: current };
  if (process.platform !== 'linux') return { type: 'priority', nice: current, problem: `per-thread priority is Linux only (here: ${process.platform})` };
  try {
    setPriority(0, nice);
    return { type: 'priority', nice: getPriority(0) };
  } catch (error) {
    return { type: 'priority', nice: current, problem: (error as Error).message };
  }
}

async function loop(): Promise<void> {
  while (!stopping) {
    if (!poked) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, IDLE_POLL_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    try {
      poked = false;
      let total = 0;
      for (;;) {
        const indexed = indexer.runOnce();
        total += indexed;
        // Only a full batch means more is waiting; otherwise sleep until the log wakes us
        // with the next batch's worth (or the idle poll), rather than chasing each commit
        // with a small batch that rewrites as many index pages as a large one.
        if (indexed < indexer.batchRecords || stopping) break;
      }
      indexer.reconcileRetention();
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
