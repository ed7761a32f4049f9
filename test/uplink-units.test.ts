/**
 * Unit tests of the uplink's parts, each on its own: the pacer, the retry policy, the link
 * policy, and the forwarder's window against a scripted sender over a real SQLite log.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { LinkError, type LogRecord } from '../core/index.js';
import {
  DispatchTurns,
  Forwarder,
  LinkPolicy,
  RetryPolicy,
  forwardCursorName,
  parseSwitch,
  windowContains,
  type BatchSender,
  type SendOptions,
  type SendReport,
} from '../edge/forwarder/index.js';
import { Pacer, type BodySink } from '../edge/link/pacer.js';
import { Http2Link, SLOW_LINK_BYTES_PER_SECOND } from '../edge/link/index.js';
import { SqliteLog } from '../edge/log/index.js';
import { EventLoopTurns } from './support/event-loop-turns.js';

class RecordingSink extends EventEmitter implements BodySink {
  destroyed = false;
  ended = false;
  constructor(
    readonly name: string,
    private readonly writes: string[],
  ) {
    super();
  }
  write(chunk: Buffer): boolean {
    this.writes.push(`${this.name}:${chunk.length}`);
    return true;
  }
  end(): void {
    this.ended = true;
  }
}

describe('link compression', () => {
  it("picks brotli's best quality on a slow, capped link and a fast one elsewhere, unless configured", async () => {
    const link = new Http2Link({ url: 'http://127.0.0.1:9', sender: 'AURORA', token: 'x'.repeat(20) });
    expect(link.compressionQuality).toBe(5);
    link.setBandwidthLimit(SLOW_LINK_BYTES_PER_SECOND);
    expect(link.compressionQuality).toBe(11);
    link.setBandwidthLimit(SLOW_LINK_BYTES_PER_SECOND + 1);
    expect(link.compressionQuality).toBe(5);
    link.setBandwidthLimit(undefined);
    expect(link.compressionQuality).toBe(5);
    const fixed = new Http2Link({ url: 'http://127.0.0.1:9', sender: 'AURORA', token: 'x'.repeat(20), compressionQuality: 7, bandwidthBytesPerSecond: 10_000 });
    expect(fixed.compressionQuality).toBe(7);
    await link.close();
    await fixed.close();
  });
});

describe('pacer', () => {
  it('writes at the cap, in pieces, and puts an urgent body ahead of the bulk still waiting', async () => {
    const writes: string[] = [];
    const pacer = new Pacer(100_000); // 2,000-byte pieces (20 ms of the link)
    const startedAt = performance.now();
    const bulk = pacer.send(new RecordingSink('bulk', writes), Buffer.alloc(20_000), false);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const urgent = pacer.send(new RecordingSink('urgent', writes), Buffer.alloc(3000), true);
    await urgent;
    const urgentDoneAt = performance.now();
    await bulk;
    const seconds = (performance.now() - startedAt) / 1000;
    expect(seconds).toBeGreaterThan(0.17); // 23,000 bytes at 100,000 B/s, less one piece of burst
    expect(urgentDoneAt - startedAt).toBeLessThan(seconds * 1000 * 0.7);
    const firstUrgent = writes.findIndex((write) => write.startsWith('urgent'));
    expect(firstUrgent).toBeGreaterThan(0);
    expect(writes.slice(firstUrgent, firstUrgent + 2)).toEqual(['urgent:2000', 'urgent:1000']);
    expect(writes.filter((write) => write.startsWith('bulk')).length).toBe(10);
  });

  it('writes bulk bodies one after another, in order', async () => {
    const writes: string[] = [];
    const pacer = new Pacer(undefined);
    await Promise.all([1, 2, 3].map((index) => pacer.send(new RecordingSink(`b${index}`, writes), Buffer.alloc(40_000), false)));
    expect(writes.map((write) => write.split(':')[0])).toEqual(['b1', 'b1', 'b1', 'b2', 'b2', 'b2', 'b3', 'b3', 'b3']);
  });
});

describe('retry policy', () => {
  it('backs off exponentially with jitter, halves too-large batches at once, waits longest for refusals that will repeat', () => {
    const policy = new RetryPolicy({ initialDelayMs: 100, maxDelayMs: 10_000, jitter: 0, random: () => 0.5 });
    const reset = new LinkError('reset', { retriable: true, reason: 'reset' });
    expect([1, 2, 3, 4].map(() => policy.onFailure(reset).delayMs)).toEqual([100, 200, 400, 800]);
    policy.onSuccess();
    expect(policy.onFailure(reset)).toEqual({ delayMs: 100, shrink: false, reason: 'reset', permanent: false });
    expect(policy.onFailure(new LinkError('big', { retriable: false, status: 413, reason: 'too-large' }))).toMatchObject({ delayMs: 0, shrink: true });
    const gap = new LinkError('gap', { retriable: false, status: 409, reason: 'offset-gap' });
    expect(policy.onFailure(gap)).toMatchObject({ delayMs: 10_000, permanent: true, reason: 'offset-gap' });
    // A gap behind a batch that failed first is that failure's consequence.
    expect(policy.onFailure(gap, true)).toMatchObject({ permanent: false });
  });
});

describe('link policy', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('reads the switch file format', () => {
    expect(parseSwitch('metered\n')).toEqual({ state: 'metered' });
    expect(parseSwitch(' UP 250000 ')).toEqual({ state: 'up', bandwidthBytesPerSecond: 250_000 });
    expect(() => parseSwitch('sideways')).toThrow(/up.*down.*metered/);
    expect(() => parseSwitch('up fast')).toThrow(/bandwidth/);
  });

  it('schedule windows: by time of day in UTC, over midnight, on given days', () => {
    const at = (iso: string) => Date.parse(iso);
    const night = { fromMinute: 22 * 60, toMinute: 6 * 60, state: 'up' as const };
    expect(windowContains(night, at('2026-03-02T23:30:00Z'))).toBe(true);
    expect(windowContains(night, at('2026-03-03T05:59:00Z'))).toBe(true);
    expect(windowContains(night, at('2026-03-03T06:00:00Z'))).toBe(false);
    // Sunday night's window, still on Monday morning; not Monday night.
    const sundayNight = { ...night, days: [0] };
    expect(windowContains(sundayNight, at('2026-03-01T23:00:00Z'))).toBe(true);
    expect(windowContains(sundayNight, at('2026-03-02T03:00:00Z'))).toBe(true);
    expect(windowContains(sundayNight, at('2026-03-02T23:00:00Z'))).toBe(false);
  });

  it('override, then switch file, then schedule, then default; an override can lapse', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-policy-'));
    dirs.push(dir);
    const file = join(dir, 'switch');
    let now = Date.parse('2026-03-02T12:00:00Z');
    const policy = new LinkPolicy({
      state: 'metered',
      bandwidthBytesPerSecond: 1000,
      schedule: [{ fromMinute: 11 * 60, toMinute: 13 * 60, state: 'up', bandwidthBytesPerSecond: 5000 }],
      switchFile: file,
      now: () => now,
      pollIntervalMs: 60_000,
    });
    await policy.start();
    const changes: string[] = [];
    policy.onChange((condition) => changes.push(`${condition.state}/${condition.source}`));
    try {
      expect(policy.current()).toEqual({ state: 'up', bandwidthBytesPerSecond: 5000, source: 'schedule' });
      now = Date.parse('2026-03-02T14:00:00Z');
      policy.refresh();
      expect(policy.current()).toEqual({ state: 'metered', bandwidthBytesPerSecond: 1000, source: 'default' });
      writeFileSync(file, 'down');
      policy.stop();
      await policy.start();
      expect(policy.current()).toMatchObject({ state: 'down', source: 'switch-file' });
      writeFileSync(file, 'garbage that is not a state');
      policy.stop();
      await policy.start();
      expect(policy.current()).toMatchObject({ state: 'down', source: 'switch-file' }); // the last good value stays
      policy.setOverride({ state: 'up', untilMs: now + 1000 });
      expect(policy.current()).toMatchObject({ state: 'up', source: 'override', bandwidthBytesPerSecond: 1000 });
      now += 2000;
      policy.refresh();
      expect(policy.current()).toMatchObject({ state: 'down', source: 'switch-file' });
      expect(changes).toEqual(['metered/default', 'down/switch-file', 'up/override', 'down/switch-file']);
    } finally {
      policy.stop();
    }
  });
});

/** A destination scripted batch by batch, storing what it accepts. */
class ScriptedSender implements BatchSender {
  readonly destination = 'scripted';
  readonly held = new Set<string>();
  readonly sent: { stream: string; count: number; urgent: boolean; turn: number }[] = [];
  failNext = 0;
  delayMs = 5;
  /** Which turn of the event loop it is, when something counts them (see support/event-loop-turns.ts). */
  turnOf: () => number = () => 0;
  async send(records: readonly LogRecord[], options: SendOptions): Promise<SendReport> {
    this.sent.push({ stream: records[0]!.stream, count: records.length, urgent: options.urgent, turn: this.turnOf() });
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.failNext > 0) {
      this.failNext -= 1;
      throw new LinkError('connection reset', { retriable: true, reason: 'reset' });
    }
    let duplicates = 0;
    for (const record of records) {
      const key = `${record.stream}/${record.topic}/${record.offset}`;
      if (this.held.has(key)) duplicates += 1;
      this.held.add(key);
    }
    return { stored: records.length - duplicates, duplicates, highWater: [] };
  }
}

describe('forwarder window', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['on its own', false],
    ['sharing dispatch turns', true],
  ])('sends everything through failures, resends only from the acknowledged cursor, alerts in their own lane (%s)', async (_name, shared) => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-forwarder-'));
    dirs.push(dir);
    const log = SqliteLog.open({ siteId: 'AURORA', path: join(dir, 'log.sqlite') });
    await log.append(Array.from({ length: 5000 }, (_unused, index) => ({ stream: 'containers', topic: `C${index % 50}`, payload: Buffer.from(`{"i":${index}}`) })));
    await log.append([{ stream: 'alerts', topic: 'C1', payload: Buffer.from('{"kind":"shock"}') }]);
    const sender = new ScriptedSender();
    sender.failNext = 2;
    const forwarder = new Forwarder({
      linkName: 'TOKYO',
      source: log,
      sender,
      streams: ['alerts', 'containers'],
      maxBatchRecords: 400,
      maxBatchAgeMs: 0,
      maxInFlightBatches: 4,
      retry: { initialDelayMs: 1, maxDelayMs: 5 },
      ...(shared ? { turns: new DispatchTurns() } : {}),
    });
    await forwarder.start();
    const deadline = Date.now() + 20_000;
    while (sender.held.size < 5001 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    await forwarder.stop();
    expect(sender.held.size).toBe(5001);
    expect(sender.sent.filter((batch) => batch.stream === 'alerts').every((batch) => batch.urgent)).toBe(true);
    expect(sender.sent.filter((batch) => batch.stream === 'containers').every((batch) => !batch.urgent)).toBe(true);
    // The failed window was resent, but never more than a window's worth each time.
    const sentRecords = sender.sent.reduce((sum, batch) => sum + batch.count, 0);
    expect(sentRecords).toBeGreaterThan(5001);
    expect(sentRecords).toBeLessThanOrEqual(5001 + 2 * 4 * 400 + 1);
    expect(await log.getCursor(forwardCursorName('TOKYO', 'containers'))).toBe(log.streamStats('containers')!.lastPosition);
    expect(forwarder.stats()).toMatchObject({ recordsForwarded: 5001, failures: 2, lastFailureReason: 'reset' });
    await log.close();
  });
});

describe('dispatch turns', () => {
  it('grants one lane per turn of the event loop, alert lanes first, each lane in the order it asked', async () => {
    const turns = new DispatchTurns();
    const loop = new EventLoopTurns();
    const order: string[] = [];
    const at = new Map<string, number>();
    const ask = (name: string, urgent: boolean) =>
      turns.take(urgent).then(() => {
        order.push(name);
        at.set(name, loop.count);
      });
    await Promise.all([ask('bulk-1', false), ask('bulk-2', false), ask('urgent-1', true), ask('bulk-3', false), ask('urgent-2', true)]);
    loop.stop();
    expect(order).toEqual(['urgent-1', 'urgent-2', 'bulk-1', 'bulk-2', 'bulk-3']);
    // Each grant in a turn of its own.
    const turnsSeen = order.map((name) => at.get(name)!);
    for (let index = 1; index < turnsSeen.length; index += 1) expect(turnsSeen[index]).toBeGreaterThan(turnsSeen[index - 1]!);
    expect(turns.granted).toBe(5);
    expect(turns.waiting).toBe(0);
  });

  it('links sharing turns send everything, never two batches in one turn', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-forwarder-'));
    const log = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'log.sqlite') });
    try {
      await log.append(Array.from({ length: 6000 }, (_unused, index) => ({ stream: 'containers', topic: `C${index % 40}`, payload: Buffer.from(`{"i":${index}}`) })));
      await log.append([{ stream: 'alerts', topic: 'C1', payload: Buffer.from('{"kind":"shock"}') }]);
      const turns = new DispatchTurns();
      const loop = new EventLoopTurns();
      const senders = ['HQ', 'SINGAPORE', 'SYDNEY'].map(() => new ScriptedSender());
      const forwarders = senders.map(
        (sender, index) =>
          new Forwarder({
            linkName: ['HQ', 'SINGAPORE', 'SYDNEY'][index]!,
            source: log,
            sender,
            streams: ['alerts', 'containers'],
            maxBatchRecords: 300,
            maxBatchAgeMs: 0,
            maxInFlightBatches: 8,
            turns,
          }),
      );
      for (const sender of senders) sender.turnOf = () => loop.count;
      for (const forwarder of forwarders) await forwarder.start();
      const deadline = Date.now() + 20_000;
      while (senders.some((sender) => sender.held.size < 6001) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      for (const forwarder of forwarders) await forwarder.stop();
      loop.stop();
      for (const sender of senders) expect(sender.held.size).toBe(6001);
      const sends = senders.flatMap((sender) => sender.sent);
      expect(sends.length).toBeGreaterThanOrEqual(3 * 21);
      expect(new Set(sends.map((send) => send.turn)).size).toBe(sends.length);
      expect(turns.granted).toBeGreaterThanOrEqual(sends.length);
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a failure while a lane waits for its turn still backs off and resends from the acknowledged position', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcall-forwarder-'));
    const log = SqliteLog.open({ siteId: 'TOKYO', path: join(dir, 'log.sqlite') });
    try {
      await log.append(Array.from({ length: 8000 }, (_unused, index) => ({ stream: 'containers', topic: `C${index % 40}`, payload: Buffer.from(`{"i":${index}}`) })));
      const sends: { atMs: number; from: number }[] = [];
      let failedAtMs: number | undefined;
      const held = new Set<string>();
      // Each batch answered a millisecond later (a timer, as a socket would); the tenth fails.
      const sender: BatchSender = {
        destination: 'timed',
        send: (records: readonly LogRecord[]) => {
          sends.push({ atMs: performance.now(), from: records[0]!.offset });
          const failing = sends.length === 10;
          return new Promise((resolve, reject) =>
            setTimeout(() => {
              if (failing) {
                failedAtMs = performance.now();
                reject(new LinkError('connection reset', { retriable: true, reason: 'reset' }));
                return;
              }
              for (const record of records) held.add(`${record.topic}/${record.offset}`);
              resolve({ stored: records.length, duplicates: 0, highWater: [] });
            }, 1),
          );
        },
      };
      const forwarder = new Forwarder({
        linkName: 'HQ',
        source: log,
        sender,
        streams: ['containers'],
        maxBatchRecords: 50,
        maxBatchAgeMs: 0,
        maxInFlightBatches: 64,
        retry: { initialDelayMs: 100, maxDelayMs: 100, jitter: 0.3 },
        turns: new DispatchTurns(),
      });
      await forwarder.start();
      const deadline = Date.now() + 20_000;
      while (held.size < 8000 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      await forwarder.stop();
      expect(held.size).toBe(8000);
      expect(failedAtMs).toBeDefined();
      // Nothing is sent between the failure and the end of its backoff (at least 70 ms).
      const early = sends.filter((send) => send.atMs > failedAtMs! && send.atMs < failedAtMs! + 70);
      expect(early).toEqual([]);
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
