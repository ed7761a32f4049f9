/**
 * What kafkajs's own log lines become in the site's log: warnings, except the ones it retries
 * by itself that are routine for a transactional producer, and the one it prints on every start.
 */
import { Writable } from 'node:stream';

import { logLevel } from 'kafkajs';
import { pino } from 'pino';
import { expect, it } from 'vitest';

import { kafkajsLogCreator, kafkajsLogLevel } from '../cloud/kafka-log/kafkajs-logging.js';

function capture(): { lines: { level: number; msg: string; error?: string }[]; logger: pino.Logger } {
  const lines: { level: number; msg: string; error?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  return { lines, logger: pino({ level: 'debug' }, sink) };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

it('passes kafkajs errors on as warnings, and its routine retried answers at debug', async () => {
  const { lines, logger } = capture();
  const log = kafkajsLogCreator(logger)(logLevel.WARN);
  const entry = (message: string, extra: Record<string, unknown> = {}) => ({ namespace: 'Connection', level: logLevel.ERROR, label: 'ERROR', log: { timestamp: 'now', message, ...extra } });
  log(entry('Response InitProducerId(key: 22, version: 1)', { error: 'The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing' }));
  log(entry('Response Produce(key: 0, version: 7)', { error: 'This server is not the leader for that topic-partition' }));
  log(entry('Limiting retries for the idempotent producer may invalidate EoS guarantees'));
  await flush();
  expect(lines.map(({ level, msg, error }) => [level, msg, error])).toEqual([
    [20, 'Response InitProducerId(key: 22, version: 1)', 'The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing'],
    [40, 'Response Produce(key: 0, version: 7)', 'This server is not the leader for that topic-partition'],
  ]);
});

it('is silent without a logger', () => {
  expect(kafkajsLogLevel(undefined)).toBe(logLevel.NOTHING);
  expect(() => kafkajsLogCreator(undefined)(logLevel.WARN)({ namespace: 'x', level: logLevel.ERROR, label: 'ERROR', log: { timestamp: 'now', message: 'boom' } })).not.toThrow();
});
