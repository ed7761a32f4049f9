/**
 * Worker-thread entry of one fleet shard: starts it with the options in workerData, posts
 * its stats every `statsEveryMs`, and stops on a `stop` message (posting final stats).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FleetShard, type ShardOptions } from './fleet-shard.js';

export type ShardCommand =
  | { readonly type: 'stop'; readonly drainMs: number }
  | { readonly type: 'accelerate'; readonly acceleration: number }
  | { readonly type: 'hold'; readonly atMs: number | null };
export type ShardReport =
  | { readonly type: 'started' }
  | { readonly type: 'stats'; readonly stats: ReturnType<FleetShard['stats']> }
  | { readonly type: 'stopped'; readonly stats: ReturnType<FleetShard['stats']> }
  | { readonly type: 'error'; readonly message: string };

const port = parentPort!;
const { options, statsEveryMs } = workerData as { options: ShardOptions; statsEveryMs: number };
const shard = new FleetShard(options);
shard.start().then(
  () => {
    port.postMessage({ type: 'started' } satisfies ShardReport);
    const timer = setInterval(() => port.postMessage({ type: 'stats', stats: shard.stats() } satisfies ShardReport), statsEveryMs);
    port.on('message', (command: ShardCommand) => {
      if (command.type === 'accelerate') {
        shard.setAcceleration(command.acceleration);
        return;
      }
      if (command.type === 'hold') {
        shard.holdAt(command.atMs ?? undefined);
        return;
      }
      clearInterval(timer);
      void shard.stop(command.drainMs).then((stats) => {
        port.postMessage({ type: 'stopped', stats } satisfies ShardReport);
        port.close();
      });
    });
  },
  (error: unknown) => {
    port.postMessage({ type: 'error', message: (error as Error).message } satisfies ShardReport);
    port.close();
  },
);
