/* global process, Buffer, URL */
// The writer half of the crash test (test/log-crash.test.ts): plain Node, no test runner.
//
// Opens the site log at argv[2] with the COMPILED log (dist/, built by `npm test`), then
// appends as fast as it can until the parent kills it with SIGKILL:
// - many concurrent appends of one record (some of a few) to CONTAINER_TOPICS topics of
//   the `containers` stream, this site (AURORA) being the origin;
// - replicate() calls continuing REPLICA_TOPICS topics of the `ships` stream whose origin is
//   the site OTHER, each now and then resending records the log already holds.
//
// stdout protocol, one line per fact, each written only after the log resolved the call
// (stdout to a pipe is a synchronous write on Linux, so a line written is a line the parent
// reads, kill or no kill):
//   R <json>                                   opened; json = { highWater: { "<stream>/<topic>": next } }
//   A <stream> <topic> <offset> <origin> <hash> this record was acknowledged (durable)
//   X <message>                                the log misbehaved while alive; the parent fails
import { createHash, randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const CONTAINER_TOPICS = 300;
const REPLICA_TOPICS = 24;
const APPENDERS = 48;
const REPLICATORS = 4;

const [path, roundArg = '0'] = process.argv.slice(2);
if (path === undefined) {
  process.stderr.write('usage: log-crash-child.mjs <log.sqlite> [round]\n');
  process.exit(2);
}
const round = Number(roundArg);
// A mutated copy of the log can be put here to check that the test catches its bug.
const moduleUrl = process.env.PORTCALL_CRASH_LOG_MODULE
  ? pathToFileURL(process.env.PORTCALL_CRASH_LOG_MODULE).href
  : new URL('../../dist/edge/log/index.js', import.meta.url).href;
const { SqliteLog } = await import(moduleUrl);

const hash = (bytes) => createHash('sha256').update(bytes).digest('hex').slice(0, 16);
const write = (text) => process.stdout.write(text);
const fail = (message) => {
  write(`X ${message.replace(/\n/g, ' ')}\n`);
  process.exit(3);
};

const containerTopic = (i) => `C${String(i).padStart(3, '0')}`;
const replicaTopic = (i) => `S${String(i).padStart(2, '0')}`;

/** A replicated record's payload is a function of its identity, so a resend is an exact copy. */
function replicaPayload(topic, offset) {
  return Buffer.from(JSON.stringify({ t: topic, o: offset, origin: 'OTHER', fill: createHash('sha256').update(`${topic}:${offset}`).digest('hex') }));
}

const log = SqliteLog.open({ siteId: 'AURORA', path, retentionIntervalMs: 0 });

const highWater = {};
for (let i = 0; i < CONTAINER_TOPICS; i += 1) highWater[`containers/${containerTopic(i)}`] = await log.highWater('containers', containerTopic(i));
for (let i = 0; i < REPLICA_TOPICS; i += 1) highWater[`ships/${replicaTopic(i)}`] = await log.highWater('ships', replicaTopic(i));
write(`R ${JSON.stringify({ highWater })}\n`);

let sequence = 0;
function newRecord() {
  const topic = containerTopic(Math.floor(Math.random() * CONTAINER_TOPICS));
  const payload = Buffer.from(
    JSON.stringify({ t: topic, r: round, n: (sequence += 1), x: randomBytes(4 + Math.floor(Math.random() * 120)).toString('base64') }),
  );
  return { stream: 'containers', topic, headers: { r: String(round) }, payload };
}

async function appender() {
  for (;;) {
    const batch = Math.random() < 0.1 ? Array.from({ length: 2 + Math.floor(Math.random() * 4) }, newRecord) : [newRecord()];
    const stored = await log.append(batch);
    let lines = '';
    for (let i = 0; i < stored.length; i += 1) {
      const record = stored[i];
      if (record.topic !== batch[i].topic || record.origin !== 'AURORA') fail(`append returned ${record.topic}/${record.origin} for ${batch[i].topic}`);
      lines += `A containers ${record.topic} ${record.offset} AURORA ${hash(batch[i].payload)}\n`;
    }
    write(lines);
  }
}

async function replicator(index) {
  const owned = [];
  for (let i = index; i < REPLICA_TOPICS; i += REPLICATORS) owned.push(replicaTopic(i));
  const next = new Map(owned.map((topic) => [topic, highWater[`ships/${topic}`]]));
  for (;;) {
    const topic = owned[Math.floor(Math.random() * owned.length)];
    const start = next.get(topic);
    const count = 1 + Math.floor(Math.random() * 5);
    const resend = start > 0 && Math.random() < 0.3 ? Math.min(start, 1 + Math.floor(Math.random() * 3)) : 0;
    const records = [];
    for (let offset = start - resend; offset < start + count; offset += 1) {
      records.push({
        origin: 'OTHER',
        stream: 'ships',
        topic,
        offset,
        eventTimeMs: 1_700_000_000_000 + offset,
        ingestTimeMs: 1_700_000_000_000 + offset,
        headers: {},
        payload: replicaPayload(topic, offset),
      });
    }
    const result = await log.replicate(records);
    if (result.stored !== count || result.duplicates !== resend) {
      fail(`replicate ${topic} ${start - resend}..${start + count - 1}: stored ${result.stored}, duplicates ${result.duplicates}; expected ${count} and ${resend}`);
    }
    let lines = '';
    for (let offset = start; offset < start + count; offset += 1) lines += `A ships ${topic} ${offset} OTHER ${hash(replicaPayload(topic, offset))}\n`;
    write(lines);
    next.set(topic, start + count);
  }
}

const loops = [...Array.from({ length: APPENDERS }, appender), ...Array.from({ length: REPLICATORS }, (_u, i) => replicator(i))];
await Promise.all(loops).catch((error) => fail(`${error?.name}: ${error?.message}`));
