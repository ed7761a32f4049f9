/**
 * The Kafka log's topic index: "container X from offset N" without scanning whole Kafka
 * topics, kept in a file beside the site and rebuilt from Kafka when it is lost or behind.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Kafka, logLevel } from 'kafkajs';
import { afterAll, afterEach, expect, it } from 'vitest';

import { KafkaLog, type KafkaLogOptions } from '../cloud/kafka-log/index.js';
import { StoreUnavailableError, type LogRecord } from '../core/index.js';
import { containerRecord, countFetches, describeKafka, kafkaBootstrap } from './support/kafka.js';

const dir = mkdtempSync(join(tmpdir(), 'portcall-kafka-index-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

const rec = containerRecord;

async function open(options: Partial<KafkaLogOptions> & { siteId: string; topicPrefix: string }): Promise<KafkaLog> {
  const log = await KafkaLog.open({ brokers: [kafkaBootstrap()!], streams: ['containers'], partitions: 2, recoveryTimeoutMs: 20_000, ...options });
  cleanups.push(() => log.close());
  return log;
}

function unique(): { siteId: string; topicPrefix: string } {
  const run = randomBytes(3).toString('hex');
  return { siteId: `IX${run}`, topicPrefix: `ix${run}` };
}

/**
 * Reads a topic from offset 0 until it returns `count` records, or 20 s pass, and returns the
 * last read: a catch-up from Kafka may be under way, and until then reads are refused or short.
 */
async function readOnceComplete(log: KafkaLog, topic: string, count: number): Promise<LogRecord[]> {
  const deadline = Date.now() + 20_000;
  let read: LogRecord[] = [];
  while (Date.now() < deadline) {
    read = await log.readTopic('containers', topic, 0).catch(() => []);
    if (read.length === count) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return read;
}

/** Fault injection: the index's next write fails, as it would on a full disk; later ones are real. */
function failNextIndexWrite(log: KafkaLog): void {
  const index = (log as unknown as { index: { record: (...args: unknown[]) => void } }).index;
  const record = index.record.bind(index);
  let calls = 0;
  index.record = (...args: unknown[]) => {
    if (calls++ === 0) throw new Error('SQLITE_FULL: database or disk is full');
    record(...args);
  };
}

const offsets = (records: LogRecord[]) => records.map((r) => r.offset);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_unused, i) => from + i);

describeKafka('Kafka log topic index', () => {
  it('rebuilds a lost index from Kafka, catches up one that is behind, and discards one of other topics', { timeout: 90_000 }, async () => {
    const names = unique();
    const indexPath = join(dir, `${names.siteId}.sqlite`);
    const first = await open({ ...names, indexPath });
    for (let batch = 0; batch < 6; batch++) {
      await first.replicate(['A', 'B', 'C'].flatMap((topic) => range(batch * 5, batch * 5 + 5).map((offset) => rec(topic, offset))));
    }
    await first.close();
    const behindCopy = join(dir, `${names.siteId}-behind.sqlite`);
    copyFileSync(indexPath, behindCopy);

    const second = await open({ ...names, indexPath });
    for (let batch = 6; batch < 10; batch++) {
      await second.replicate(['A', 'B'].flatMap((topic) => range(batch * 5, batch * 5 + 5).map((offset) => rec(topic, offset))));
    }
    expect(offsets(await second.readTopic('containers', 'A', 28, { maxRecords: 5 }))).toEqual([28, 29, 30, 31, 32]);
    await second.close();

    // Behind: the file from before the second run knows nothing of its commits.
    copyFileSync(behindCopy, indexPath);
    for (const suffix of ['-wal', '-shm']) if (existsSync(indexPath + suffix)) unlinkSync(indexPath + suffix);
    const caughtUp = await open({ ...names, indexPath });
    expect(caughtUp.health()).toMatchObject({ status: 'ok' });
    expect(offsets(await caughtUp.readTopic('containers', 'A', 0, { maxRecords: 100 }))).toEqual(range(0, 50));
    expect(offsets(await caughtUp.readTopic('containers', 'C', 27, { maxRecords: 100 }))).toEqual([27, 28, 29]);
    expect(await caughtUp.latest('containers', 'B')).toMatchObject({ offset: 49, headers: { seq: '49' } });
    await caughtUp.close();

    // Lost: no file at all.
    rmSync(indexPath, { force: true });
    for (const suffix of ['-wal', '-shm']) rmSync(indexPath + suffix, { force: true });
    const rebuilt = await open({ ...names, indexPath });
    expect(offsets(await rebuilt.readTopic('containers', 'B', 10, { maxRecords: 100 }))).toEqual(range(10, 50));
    const [record] = await rebuilt.readTopic('containers', 'C', 12, { maxRecords: 1 });
    expect(record).toEqual(rec('C', 12));
    await rebuilt.close();

    // Foreign: a file indexing another prefix's topics is discarded, not trusted.
    const other = unique();
    const foreign = await open({ ...other, indexPath });
    await foreign.replicate(range(0, 3).map((offset) => rec('A', offset)));
    expect(offsets(await foreign.readTopic('containers', 'A', 0))).toEqual([0, 1, 2]);
    await foreign.close();
    const back = await open({ ...names, indexPath });
    expect(offsets(await back.readTopic('containers', 'A', 45))).toEqual(range(45, 50));
  });

  it('rebuilds an index that is ahead of Kafka (the data topic deleted and re-created), and only then', { timeout: 90_000 }, async () => {
    const names = unique();
    const indexPath = join(dir, `${names.siteId}.sqlite`);
    const first = await open({ ...names, indexPath });
    await first.replicate(range(0, 10).map((offset) => rec('Y01', offset)));
    const kafka = new Kafka({ clientId: 'index-test', brokers: [kafkaBootstrap()!], logLevel: logLevel.NOTHING });
    const dataTopic = `${names.topicPrefix}.containers`;

    // An index that counts a partition complete past its last stable offset is not ahead of
    // Kafka. Another producer's transaction, open in both partitions, holds the last stable
    // offset back while this site commits past it (as a commit's own markers do for a moment):
    // a catch-up then must wait, not rebuild the index.
    const stray = kafka.producer({ transactionalId: `${names.topicPrefix}-stray`, idempotent: true, maxInFlightRequests: 1 });
    await stray.connect();
    cleanups.push(() => stray.disconnect());
    const strayTransaction = await stray.transaction();
    await strayTransaction.send({ topic: dataTopic, messages: [0, 1].map((partition) => ({ partition, key: 'stray', value: 'not a record' })) });
    await first.replicate(range(10, 12).map((offset) => rec('Y01', offset)));
    const internals = first as unknown as { startCatchUp: () => Promise<void>; index: { clear: () => void } };
    let clears = 0;
    const clear = internals.index.clear.bind(internals.index);
    internals.index.clear = () => {
      clears += 1;
      clear();
    };
    const catchingUp = internals.startCatchUp();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(clears).toBe(0);
    await strayTransaction.abort();
    await catchingUp;
    expect(clears).toBe(0);
    expect(offsets(await first.readTopic('containers', 'Y01', 0))).toEqual(range(0, 12));
    await first.close();

    const admin = kafka.admin();
    await admin.connect();
    cleanups.push(() => admin.disconnect());
    await admin.deleteTopics({ topics: [dataTopic] });
    for (const deadline = Date.now() + 30_000; (await admin.listTopics()).includes(dataTopic); ) {
      if (Date.now() > deadline) throw new Error(`${dataTopic} still listed 30 s after its deletion`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    // Kafka now has fewer records than the index knows: the index is discarded and rebuilt
    // (the site re-creates the topic), and reads say the records are gone, as after retention.
    const reopened = await open({ ...names, indexPath });
    const deadline = Date.now() + 20_000;
    let read: LogRecord[] | undefined;
    while (read === undefined && Date.now() < deadline) {
      read = await reopened.readTopic('containers', 'Y01', 0).catch(() => undefined);
      if (read === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(read).toEqual([]);
    await reopened.replicate(range(12, 14).map((offset) => rec('Y01', offset)));
    expect(offsets(await reopened.readTopic('containers', 'Y01', 0))).toEqual([12, 13]);
  });

  it('reads a rarely written container among busy ones with a few fetches, not a scan of the topic', { timeout: 90_000 }, async () => {
    const names = unique();
    // One partition: every container shares it, the worst case for a read by key.
    const log = await open({ ...names, partitions: 1 });
    const busy = range(0, 40).map((i) => `BUSY${i}`);
    let rare = 0;
    for (let batch = 0; batch < 10; batch++) {
      const records = busy.flatMap((topic) => range(batch * 25, batch * 25 + 25).map((offset) => rec(topic, offset, 1_000)));
      // The rare container appears in three of the ten transactions.
      if (batch % 4 === 1) records.splice(records.length / 2, 0, rec('RARE', rare++, 1_000));
      await log.replicate(records);
    }
    // About 10 MB in the partition; reading all of it takes at least ten 1 MB fetches.
    const counter = countFetches(log);
    expect(offsets(await log.readTopic('containers', 'RARE', 0))).toEqual([0, 1, 2]);
    expect(counter.fetches).toBeLessThanOrEqual(3);
    expect(counter.messages).toBeLessThan(3 * 1_500);

    counter.fetches = 0;
    expect(await log.latest('containers', 'BUSY17')).toMatchObject({ offset: 249 });
    expect(counter.fetches).toBe(1);

    counter.fetches = 0;
    const middle = await log.readTopic('containers', 'BUSY3', 110, { maxRecords: 30 });
    expect(offsets(middle)).toEqual(range(110, 140));
    expect(counter.fetches).toBeLessThanOrEqual(4);
  });

  it('reads a container with a span in every transaction in a few fetches, not one per span', { timeout: 90_000 }, async () => {
    const names = unique();
    // Small spans, so that each container's records make many of them.
    const log = await open({ ...names, partitions: 1, maxSpanKafkaOffsets: 300 });
    const containers = range(0, 40).map((i) => `BUSY${i}`);
    for (let batch = 0; batch < 30; batch++) {
      await log.replicate(containers.flatMap((topic) => range(batch * 5, batch * 5 + 5).map((offset) => rec(topic, offset))));
    }
    const spans = (log as unknown as { index: { db: { prepare(sql: string): { get(...args: unknown[]): { n: number } } } } }).index.db
      .prepare(`SELECT count(*) AS n FROM spans WHERE topic = ?`)
      .get('BUSY7').n;
    expect(spans).toBeGreaterThanOrEqual(10);

    const counter = countFetches(log);
    const whole = await log.readTopic('containers', 'BUSY7', 0);
    expect(offsets(whole)).toEqual(range(0, 150));
    expect(whole.every((record) => record.topic === 'BUSY7' && Buffer.from(record.payload).toString().startsWith('{"topic":"BUSY7","offset":'))).toBe(true);
    expect(counter.fetches).toBeLessThanOrEqual(3);

    // From the middle of a span, a page that ends in the middle of another, and the last record.
    counter.fetches = 0;
    expect(offsets(await log.readTopic('containers', 'BUSY7', 37, { maxRecords: 41 }))).toEqual(range(37, 78));
    expect(counter.fetches).toBeLessThanOrEqual(2);
    counter.fetches = 0;
    expect(await log.latest('containers', 'BUSY7')).toMatchObject({ offset: 149 });
    expect(counter.fetches).toBe(1);
  });

  it('reads its own writes at once: a read right after a commit waits for the commit markers', { timeout: 60_000 }, async () => {
    const log = await open({ ...unique(), partitions: 3 });
    for (let offset = 0; offset < 40; offset++) {
      await log.replicate([rec('Y01', offset), rec('Y02', offset)]);
      expect((await log.latest('containers', 'Y01'))?.offset).toBe(offset);
      expect(offsets(await log.readTopic('containers', 'Y02', offset))).toEqual([offset]);
    }
  });

  it('catches up after a commit it could not index, and serves reads again by itself', { timeout: 60_000 }, async () => {
    const names = unique();
    const log = await open({ ...names, indexPath: join(dir, `${names.siteId}.sqlite`) });
    await log.replicate(range(0, 5).map((offset) => rec('Y01', offset)));
    // The next index write fails (a full disk under the index file, say), after Kafka committed.
    failNextIndexWrite(log);
    expect(await log.replicate(range(5, 10).map((offset) => rec('Y01', offset)))).toMatchObject({ stored: 5 });
    // Until the catch-up has read the commit back from Kafka, a read of it waits rather than skipping it.
    expect(offsets(await readOnceComplete(log, 'Y01', 10))).toEqual(range(0, 10));
    expect(log.health().status).toBe('ok');
  });

  it('does not count a partition complete past a commit whose index write failed, when later writes waited with it', { timeout: 60_000 }, async () => {
    const names = unique();
    const log = await open({ ...names, partitions: 1, indexPath: join(dir, `${names.siteId}.sqlite`) });
    await log.replicate(range(0, 5).map((offset) => rec('Y01', offset)), { sender: 'A' });
    // Fault injection: index writes are held back (as they are while the lane moves on), two
    // commits queue theirs, and the first of them fails (a full disk). Kafka and the file are real.
    const internals = log as unknown as { writePendingIndex: () => void; indexDirty: boolean };
    // From a complete index (the catch-up at open done, the first commit's write made), so the
    // commits below count partitions complete themselves rather than leave it to a catch-up.
    for (const deadline = Date.now() + 20_000; internals.indexDirty && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(offsets(await log.readTopic('containers', 'Y01', 0))).toEqual(range(0, 5));
    expect(internals.indexDirty).toBe(false);
    internals.writePendingIndex = () => {};
    await log.replicate(range(5, 10).map((offset) => rec('Y01', offset)), { sender: 'A' });
    await log.replicate(range(0, 5).map((offset) => rec('Y02', offset)), { sender: 'B' });
    delete (internals as { writePendingIndex?: unknown }).writePendingIndex;
    failNextIndexWrite(log);
    internals.writePendingIndex();
    // The second commit's write went through, but it may not have counted the partition
    // complete past the first one's records: the catch-up reads them back from Kafka.
    expect(offsets(await readOnceComplete(log, 'Y01', 10))).toEqual(range(0, 10));
    expect(offsets(await log.readTopic('containers', 'Y02', 0))).toEqual(range(0, 5));
  });

  it(
    'indexes a commit whose outcome it did not learn, when another sender committed past it meanwhile',
    { timeout: 90_000 },
    async () => {
      // The chaos run's hole: Kafka restarted while sender A's EndTxn was out, so A's commit
      // ended "unknown" although Kafka committed it; sender B's commit, further on in the same
      // partition, had landed meanwhile. The catch-up read to the last stable offset (still
      // before A's records, whose markers were not written yet) and then took B's end as
      // indexed, so A's records were in Kafka and in no span: reads skipped them.
      const names = unique();
      const log = await open({ ...names, partitions: 1, indexPath: join(dir, `${names.siteId}.sqlite`) });
      await log.replicate(range(0, 5).map((offset) => rec('Y01', offset)), { sender: 'A' });
      await log.replicate(range(0, 5).map((offset) => rec('Y02', offset)), { sender: 'B' });

      // Fault injection, on A's producer only; the broker and its transactions are real. A's
      // next EndTxn is held back and reported as a lost connection; the real commit is made
      // when the log disconnects that producer, after the test lets it.
      type Tx = { commit: () => Promise<void> };
      const internals = log as unknown as {
        lanes: Map<string, { producer: { transaction: () => Promise<Tx>; disconnect: () => Promise<void> } | undefined }>;
        indexDirty: boolean;
        indexError: string | undefined;
      };
      const producer = internals.lanes.get('A')!.producer!;
      const deferred = () => {
        let resolve!: () => void;
        const promise = new Promise<void>((done) => (resolve = done));
        return { promise, resolve };
      };
      const atCommit = deferred();
      const otherCommitted = deferred();
      const commitNow = deferred();
      let realCommit: (() => Promise<void>) | undefined;
      const originalTransaction = producer.transaction.bind(producer);
      producer.transaction = async () => {
        const transaction = await originalTransaction();
        const commit = transaction.commit.bind(transaction);
        transaction.commit = async () => {
          atCommit.resolve();
          await otherCommitted.promise;
          realCommit = commit;
          throw Object.assign(new Error('Closed connection'), { name: 'KafkaJSConnectionClosedError', retriable: true });
        };
        return transaction;
      };
      const originalDisconnect = producer.disconnect.bind(producer);
      producer.disconnect = async () => {
        await commitNow.promise;
        await realCommit?.();
        await originalDisconnect();
      };

      const uncertain = log.replicate(range(5, 10).map((offset) => rec('Y01', offset)), { sender: 'A' });
      await atCommit.promise;
      // B's records go after A's in the partition, and B's commit succeeds while A's is out.
      expect(await log.replicate(range(5, 10).map((offset) => rec('Y02', offset)), { sender: 'B' })).toMatchObject({ stored: 5 });
      otherCommitted.resolve();
      await expect(uncertain).rejects.toBeInstanceOf(StoreUnavailableError);

      // The catch-up has run once (it finished, or found it cannot finish yet) before A's
      // transaction commits, as in the outage.
      const deadline = Date.now() + 20_000;
      while (internals.indexDirty && internals.indexError === undefined && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      commitNow.resolve();

      // A resends what it got no answer for: Kafka holds it, so it is all duplicates.
      let resent: Awaited<ReturnType<KafkaLog['replicate']>> | undefined;
      for (let attempt = 0; resent === undefined; attempt++) {
        try {
          resent = await log.replicate(range(5, 10).map((offset) => rec('Y01', offset)), { sender: 'A' });
        } catch (error) {
          if (!(error instanceof StoreUnavailableError) || attempt >= 40) throw error;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
      expect(resent).toMatchObject({ stored: 0, duplicates: 5 });

      expect(offsets(await readOnceComplete(log, 'Y01', 10))).toEqual(range(0, 10));
      for (const deadline = Date.now() + 20_000; internals.indexDirty && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(offsets(await log.readTopic('containers', 'Y02', 0))).toEqual(range(0, 10));
      expect(log.health().status).toBe('ok');
    },
  );
});
