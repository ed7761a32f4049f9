/**
 * Worker thread that checkpoints the records file's WAL every CHECKPOINT_EVERY_MS, at the
 * process's own priority.
 *
 * Why a thread of its own: the indexer thread, which did this between its batches, runs at
 * a lower priority (indexer-worker.ts), and on a machine whose cores are busy it can wait
 * for seconds. Checkpoints must keep their pace whatever the load: a WAL that is not copied
 * grows to the writer's safety-net checkpoint, which runs inside a commit (60-90 ms at 64
 * MiB). With them on the indexer thread at nice 19 and two busy processes beside the log,
 * the WAL restarted once in 8 s instead of every 50-250 ms (test/log-wal-checkpoint.test.ts).
 * A checkpoint is mostly copying and one fsync, so it takes little of the CPU it is given.
 */
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { checkpointWal } from './wal-checkpoint.js';

export interface CheckpointerWorkerData {
  readonly recordsPath: string;
}
export type CheckpointerMessage = { type: 'stop' };
export type CheckpointerReply = { type: 'error'; message: string } | { type: 'stopped' };

/**
 * Often enough that each checkpoint copies little, so the database file's fsync at its end is
 * short: it delays the writer's WAL fsyncs queued behind it on the disk. At every second, the
 * writer's commits waited up to 35 ms; at 250 ms, 16 ms; at 50 ms (about 1 MB a checkpoint at
 * 50,000 msg/s) PUBACK p99 at that rate fell further (docs/LOG.md).
 */
const CHECKPOINT_EVERY_MS = 50;
/** After a failed checkpoint (a full disk, say), the next try waits this long. */
const RETRY_AFTER_FAILURE_MS = 1000;

const port = parentPort!;
const { recordsPath } = workerData as CheckpointerWorkerData;
const records = new Database(recordsPath, { fileMustExist: true });
records.pragma('busy_timeout = 5000');
let timer: NodeJS.Timeout | undefined;

function tick(): void {
  let delayMs = CHECKPOINT_EVERY_MS;
  try {
    checkpointWal(records);
  } catch (error) {
    port.postMessage({ type: 'error', message: (error as Error).message } satisfies CheckpointerReply);
    delayMs = RETRY_AFTER_FAILURE_MS;
  }
  timer = setTimeout(tick, delayMs);
}

port.on('message', (message: CheckpointerMessage) => {
  if (message.type !== 'stop') return;
  clearTimeout(timer);
  records.close();
  port.postMessage({ type: 'stopped' } satisfies CheckpointerReply);
  port.close();
});

tick();
