/**
 * Debian's `kcat` (librdkafka) as the third-party consumer of the Kafka tests: what a customer
 * or an operator would read, not this project's own client.
 */
import { spawnSync } from 'node:child_process';

export interface KcatMessage {
  topic?: string;
  partition: number;
  offset: number;
  key: string | null;
  payload: string | null;
  /** Name, value, name, value, … as kcat -J prints them. */
  headers?: string[];
}

export const kcatAvailable = spawnSync('kcat', ['-V'], { encoding: 'utf8' }).status === 0;

/** `kcat -C ... -e -J`: every message of the topic from the beginning to its end, as JSON lines. */
export function kcatConsume(bootstrap: string, topic: string, isolation: 'read_committed' | 'read_uncommitted' = 'read_committed'): KcatMessage[] {
  const result = spawnSync('kcat', ['-C', '-b', bootstrap, '-t', topic, '-o', 'beginning', '-e', '-q', '-J', '-X', `isolation.level=${isolation}`, '-m', '10'], {
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 256 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`kcat exited ${String(result.status)}: ${result.stderr}`);
  return result.stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as KcatMessage);
}

export function headerMap(message: KcatMessage): Map<string, string> {
  const pairs = message.headers ?? [];
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < pairs.length; i += 2) map.set(pairs[i]!, pairs[i + 1]!);
  return map;
}
