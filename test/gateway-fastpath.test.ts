/**
 * The gateway's per-message shortcuts must change nothing a device or the log can see: the
 * JSON scanner agrees with JSON.parse whenever it answers, the ack gate sends PUBACKs only
 * for durable messages and in arrival order, and the record channel's compact batches carry
 * the same records.
 */
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { AckGate } from '../edge/gateway/ack-gate.js';
import { publishesSkipped } from '../edge/gateway/aedes-tuning.js';
import { SCAN_OBJECT, SCAN_OTHER, SCAN_UNSURE, scanJson } from '../edge/gateway/json-scan.js';
import { checkPayload, type PayloadKind } from '../edge/gateway/payload-policy.js';
import { readingPayload } from '../bench/mqtt-load.js';
import type { NewRecord } from '../core/index.js';
import { BatchDecoder, BatchEncoder, type EncodedBatch } from '../edge/gateway/record-channel.js';

function withoutDocument(verdict: ReturnType<typeof checkPayload>): unknown {
  if (!verdict.ok) return verdict;
  return { ok: true, eventTimeMs: verdict.eventTimeMs };
}

function slowVerdict(kind: PayloadKind, bytes: Buffer): unknown {
  return withoutDocument(checkPayload(kind, bytes, true));
}

function fastVerdict(kind: PayloadKind, bytes: Buffer): unknown {
  return withoutDocument(checkPayload(kind, bytes, false));
}

const JSON_BYTES = '{}[]",:\\ \t\n\r0123456789-+.eEtruefalsn/u"ts"';

/** JSON text, then bytes inserted, deleted or replaced here and there. */
const mutatedJson = fc
  .tuple(
    fc.jsonValue(),
    fc.array(
      fc.tuple(fc.nat(), fc.constantFrom('insert', 'delete', 'replace'), fc.oneof(fc.constantFrom(...JSON_BYTES.split('').map((c) => c.charCodeAt(0))), fc.integer({ min: 0, max: 255 }))),
      { maxLength: 4 },
    ),
  )
  .map(([value, edits]) => {
    const bytes = [...Buffer.from(JSON.stringify(value) ?? 'null')];
    for (const [at, edit, byte] of edits) {
      const index = bytes.length === 0 ? 0 : at % (bytes.length + 1);
      if (edit === 'insert') bytes.splice(index, 0, byte);
      else if (edit === 'delete') bytes.splice(index, 1);
      else bytes[Math.min(index, bytes.length - 1)] = byte;
    }
    return Buffer.from(bytes);
  });

const tsValue = fc.oneof(
  fc.integer({ min: -5, max: 2 ** 53 }),
  fc.double(),
  fc.constantFrom('2025-11-22T00:00:00Z', '2025-11-22T00:00:00.123+01:00', 'yesterday', '', 'caf\u00e9', '2025-11-22T00:00:00\\u005a'),
  fc.boolean(),
  fc.constant(null),
  fc.jsonValue(),
);

/** Readings with a `ts` of every kind, sometimes twice, with other keys and whitespace around. */
const reading = fc
  .tuple(fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 4 }), fc.array(tsValue, { maxLength: 2 }), fc.constantFrom('', ' ', '\n\t'))
  .map(([others, tsValues, space]) => {
    const parts = Object.entries(others).map(([key, value]) => `${JSON.stringify(key)}:${space}${JSON.stringify(value)}`);
    for (const ts of tsValues) parts.splice(parts.length === 0 ? 0 : 1, 0, `"ts"${space}:${JSON.stringify(ts)}`);
    return Buffer.from(`${space}{${space}${parts.join(`,${space}`)}${space}}${space}`);
  });

describe('JSON scanner', () => {
  it('agrees with JSON.parse on every verdict and event time, for readings and for mutated JSON', () => {
    for (const kind of ['json-reading', 'json'] as const) {
      fc.assert(
        fc.property(reading, (bytes) => {
          expect(fastVerdict(kind, bytes)).toEqual(slowVerdict(kind, bytes));
        }),
        { numRuns: 2000 },
      );
      fc.assert(
        fc.property(mutatedJson, (bytes) => {
          expect(fastVerdict(kind, bytes)).toEqual(slowVerdict(kind, bytes));
        }),
        { numRuns: 3000 },
      );
    }
  });

  it('never calls invalid JSON valid, and knows an object from the rest', () => {
    fc.assert(
      fc.property(fc.oneof(mutatedJson, reading, fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes))), (bytes) => {
        const shape = scanJson(bytes);
        if (shape === SCAN_UNSURE) return;
        const document: unknown = JSON.parse(bytes.toString('utf8'));
        const isObject = typeof document === 'object' && document !== null && !Array.isArray(document);
        expect(shape).toBe(isObject ? SCAN_OBJECT : SCAN_OTHER);
      }),
      { numRuns: 5000 },
    );
  });

  it('answers for ordinary readings itself, so the fast path is the one taken', () => {
    expect(scanJson(readingPayload('C00001', 7))).toBe(SCAN_OBJECT);
    expect(scanJson(Buffer.from('{"ts":"2025-11-22T00:00:00Z","door":"open","nested":{"a":[1,2.5e3,-0.1,true,null]}}'))).toBe(SCAN_OBJECT);
    expect(checkPayload('json-reading', readingPayload('C00001', 7), false)).toEqual({ ok: true, eventTimeMs: 1_760_000_007_000, document: undefined });
    // Ones it leaves to JSON.parse: a key spelled with escapes (it could be "ts"), a ts in escapes, depth.
    expect(scanJson(Buffer.from('{"t\\u0073":5}'))).toBe(SCAN_UNSURE);
    expect(checkPayload('json-reading', Buffer.from('{"t\\u0073":5}'), false)).toMatchObject({ ok: true, eventTimeMs: 5 });
    expect(scanJson(Buffer.from(`${'['.repeat(100)}${']'.repeat(100)}`))).toBe(SCAN_UNSURE);
    expect(checkPayload('json', Buffer.from(`${'['.repeat(100)}${']'.repeat(100)}`), false)).toMatchObject({ ok: true });
  });
});

/** A connection that records what is written to it. */
function fakeConnection(): Duplex & { written: number[][]; destroyedWith: Error | undefined } {
  const written: number[][] = [];
  const connection = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      written.push([...chunk]);
      callback();
    },
  }) as Duplex & { written: number[][]; destroyedWith: Error | undefined };
  connection.written = written;
  connection.destroyedWith = undefined;
  connection.on('error', (error) => (connection.destroyedWith = error));
  return connection;
}

/** The message ids in the PUBACKs written so far. */
function ackedIds(connection: { written: number[][] }): number[] {
  const bytes = connection.written.flat();
  const ids: number[] = [];
  for (let at = 0; at < bytes.length; at += 4) {
    expect(bytes.slice(at, at + 2)).toEqual([0x40, 0x02]);
    ids.push(bytes[at + 2]! * 256 + bytes[at + 3]!);
  }
  return ids;
}

describe('ack gate', () => {
  it('sends a PUBACK only once its message is durable, in arrival order, whatever order commits report in', async () => {
    const connection = fakeConnection();
    const gate = AckGate.attach(connection);
    const entries = [7, 8, 9, 10].map((id) => {
      const entry = gate.expect(id);
      // aedes writes its PUBACK right after the hook calls back; the gate holds it.
      mqttPacket.writeToStream({ cmd: 'puback', messageId: id }, connection);
      return entry;
    });
    expect(ackedIds(connection)).toEqual([]);
    entries[1]!.committed(undefined);
    entries[3]!.committed(undefined);
    expect(ackedIds(connection)).toEqual([]);
    entries[0]!.committed(undefined);
    expect(ackedIds(connection)).toEqual([7, 8]);
    entries[2]!.committed(undefined);
    expect(ackedIds(connection)).toEqual([7, 8, 9, 10]);
    expect(gate.held).toBe(0);
    // A PUBACK for a message the gate does not hold passes through untouched.
    mqttPacket.writeToStream({ cmd: 'puback', messageId: 99 }, connection);
    await new Promise((resolve) => setImmediate(resolve));
    expect(ackedIds(connection)).toEqual([7, 8, 9, 10, 99]);
  });

  it('matches a reused message id to the earliest message still waiting for its PUBACK', () => {
    const connection = fakeConnection();
    const gate = AckGate.attach(connection);
    const first = gate.expect(5);
    mqttPacket.writeToStream({ cmd: 'puback', messageId: 5 }, connection);
    const second = gate.expect(5);
    const third = gate.expect(6);
    mqttPacket.writeToStream({ cmd: 'puback', messageId: 5 }, connection);
    second.committed(undefined);
    third.committed(undefined);
    expect(ackedIds(connection)).toEqual([]);
    // The third's PUBACK has not been written by aedes yet: nothing past the second leaves.
    first.committed(undefined);
    expect(ackedIds(connection)).toEqual([5, 5]);
    mqttPacket.writeToStream({ cmd: 'puback', messageId: 6 }, connection);
    expect(ackedIds(connection)).toEqual([5, 5, 6]);
  });

  it('keeps thousands in flight without falling behind, and sends none after a failed commit', () => {
    const connection = fakeConnection();
    const failures: Error[] = [];
    const gate = AckGate.attach(connection, (error) => failures.push(error));
    const entries = Array.from({ length: 5000 }, (_unused, index) => {
      const entry = gate.expect((index % 65535) + 1);
      mqttPacket.writeToStream({ cmd: 'puback', messageId: (index % 65535) + 1 }, connection);
      return entry;
    });
    for (const entry of entries.slice(0, 3000)) entry.committed(undefined);
    expect(ackedIds(connection)).toHaveLength(3000);
    entries[3000]!.committed(new Error('disk full'));
    for (const entry of entries.slice(3001)) entry.committed(undefined);
    expect(ackedIds(connection)).toHaveLength(3000);
    expect(failures.map((error) => error.message)).toEqual(['disk full']);
    expect(connection.destroyed).toBe(true);
  });
});

describe('record channel batches', () => {
  /** As the intake makes them: one frozen headers object per MQTT topic. */
  const headersOf = new Map<string, Readonly<Record<string, string>>>();
  function reading(container: string, sequence: number): NewRecord {
    const mqttTopic = `bigblue/containers/${container}/reefer`;
    let headers = headersOf.get(mqttTopic);
    if (headers === undefined) {
      headers = Object.freeze({ 'mqtt-topic': mqttTopic });
      headersOf.set(mqttTopic, headers);
    }
    return { stream: 'containers', topic: container, eventTimeMs: 1000 + sequence, headers, payload: readingPayload(container, sequence) };
  }

  function plain(records: readonly NewRecord[]): unknown[] {
    return records.map((record) => ({ ...record, headers: { ...record.headers }, payload: Buffer.from(record.payload).toString('hex') }));
  }

  /** Through a structured clone with the buffers transferred, as postMessage does. */
  function cross(batch: EncodedBatch): EncodedBatch {
    return structuredClone(batch, { transfer: BatchEncoder.transferList(batch) });
  }

  it('sends each destination once, then only numbers, and gives back the same records', () => {
    const encoder = new BatchEncoder();
    const decoder = new BatchDecoder();
    const alert: NewRecord = { stream: 'alerts', topic: 'Y07', eventTimeMs: 5, headers: { 'alert-kind': 'silence' }, payload: Buffer.from('{}') };
    const first = [reading('Y01', 0), reading('Y02', 1), reading('Y01', 2), alert];
    const second = [reading('Y02', 3), reading('Y01', 4), { stream: 'ships', topic: 'AURORA', payload: Buffer.alloc(0) }];
    const firstBatch = encoder.encode(first);
    expect(firstBatch.newTopics).toEqual(['Y01', 'Y02']);
    const secondBatch = encoder.encode(second);
    expect(secondBatch.newTopics).toEqual([]);
    expect(secondBatch.inline).toHaveLength(1);
    const decodedFirst = decoder.decode(cross(firstBatch));
    const decodedSecond = decoder.decode(cross(secondBatch));
    expect(plain(decodedFirst)).toEqual(plain(first));
    expect(plain(decodedSecond)).toEqual(plain([...second.slice(0, 2), { ...second[2]!, headers: {} }]));
    // One shared, frozen headers object per destination on the log's side too.
    expect(decodedSecond[1]!.headers).toBe(decodedFirst[0]!.headers);
    expect(Object.isFrozen(decodedFirst[0]!.headers)).toBe(true);
  });

  it('forgets its destinations on both sides past its limit, and still decodes every record', () => {
    const encoder = new BatchEncoder(3);
    const decoder = new BatchDecoder();
    const batches = [0, 1, 2, 3].map((round) => Array.from({ length: 3 }, (_unused, index) => reading(`R${(round * 2 + index) % 7}`, round * 10 + index)));
    const encoded = batches.map((records) => encoder.encode(records));
    expect(encoded.map((batch) => batch.reset)).toEqual([false, true, true, true]);
    for (const [index, batch] of encoded.entries()) expect(plain(decoder.decode(cross(batch)))).toEqual(plain(batches[index]!));
  });
});

/** A gateway on a free port with one connected sensor; `stored` gets the topic of each record appended. */
async function gatewayWithSensor() {
  const { MqttGateway } = await import('../edge/gateway/index.js');
  const mqtt = (await import('mqtt')).default;
  const stored: string[] = [];
  const gateway = await MqttGateway.start({
    appender: { append: async (records: readonly NewRecord[]) => void stored.push(...records.map((record) => record.topic)) },
    topicRules: [{ pattern: 'bigblue/containers/{container}/{sensor}', stream: 'containers', topic: '{container}' }],
    port: 0,
    allowAnonymous: true,
  });
  const url = `mqtt://127.0.0.1:${gateway.port}`;
  const clients: { endAsync(): Promise<void> }[] = [];
  const close = async () => {
    for (const client of clients) await client.endAsync().catch(() => undefined);
    await gateway.close();
  };
  try {
    const sensor = await mqtt.connectAsync(url, { clientId: 'sensor', protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(sensor);
    const broker = (gateway as unknown as { broker: Parameters<typeof publishesSkipped>[0] }).broker;
    return { mqtt, url, clients, sensor, stored, broker, close };
  } catch (error) {
    await close();
    throw error;
  }
}

describe('remembered unmatched topics', () => {
  it('delivers to live and offline subscribers that arrive after a topic was published to without any', async () => {
    const { mqtt, url, clients, sensor, stored, broker, close } = await gatewayWithSensor();
    try {
      const topic = 'bigblue/containers/Y01/reefer';
      const reading = (seq: number) => JSON.stringify({ ts: 1_763_769_600_000 + seq, seq });
      // Nobody subscribes yet: aedes' look-ups find nothing, and that is remembered; from the
      // second publish on, aedes' publish pipeline is skipped.
      for (let seq = 0; seq < 3; seq += 1) await sensor.publishAsync(topic, reading(seq), { qos: 1 });
      expect(publishesSkipped(broker)).toBe(2);

      // A live subscriber and a persistent session that then goes offline.
      const live = await mqtt.connectAsync(url, { clientId: 'portal', protocolVersion: 4, reconnectPeriod: 0 });
      clients.push(live);
      const liveSeqs: number[] = [];
      live.on('message', (_topic, payload) => liveSeqs.push((JSON.parse(payload.toString()) as { seq: number }).seq));
      await live.subscribeAsync('bigblue/containers/+/reefer', { qos: 1 });
      const offline = await mqtt.connectAsync(url, { clientId: 'archiver', clean: false, protocolVersion: 4, reconnectPeriod: 0 });
      await offline.subscribeAsync(topic, { qos: 1 });
      await offline.endAsync();

      for (let seq = 3; seq < 6; seq += 1) await sensor.publishAsync(topic, reading(seq), { qos: 1 });
      const deadline = Date.now() + 5000;
      while (liveSeqs.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(liveSeqs).toEqual([3, 4, 5]);

      // The offline session got them queued, and gets them on its return.
      const queuedSeqs: number[] = [];
      const back = mqtt.connect(url, { clientId: 'archiver', clean: false, protocolVersion: 4, reconnectPeriod: 0 });
      clients.push(back);
      back.on('message', (_topic, payload) => queuedSeqs.push((JSON.parse(payload.toString()) as { seq: number }).seq));
      while (queuedSeqs.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(queuedSeqs).toEqual([3, 4, 5]);

      // Unsubscribed: nothing more arrives live; the topic is forgotten and looked up again.
      await live.unsubscribeAsync('bigblue/containers/+/reefer');
      await sensor.publishAsync(topic, reading(6), { qos: 1 });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(liveSeqs).toEqual([3, 4, 5]);
      expect(stored).toHaveLength(7);
      expect(publishesSkipped(broker)).toBe(2); // seq 6 looked up again: the unsubscribe forgot the topic
    } finally {
      await close();
    }
  });

  it('still keeps a retained message published to a topic remembered as unmatched', async () => {
    const { mqtt, url, clients, sensor, broker, close } = await gatewayWithSensor();
    try {
      const topic = 'bigblue/containers/Y02/reefer';
      // QoS 0 needs only the live subscriptions' answer remembered, QoS 1 the offline ones' too:
      // the first of each looks up what it needs, the second skips.
      for (const qos of [0, 0, 1, 1] as const) await sensor.publishAsync(topic, JSON.stringify({ ts: 1_763_769_600_000, qos }), { qos });
      expect(publishesSkipped(broker)).toBe(2);
      await sensor.publishAsync(topic, JSON.stringify({ ts: 1_763_769_600_001, last: true }), { qos: 1, retain: true });
      expect(publishesSkipped(broker)).toBe(2);

      const late = await mqtt.connectAsync(url, { clientId: 'late', protocolVersion: 4, reconnectPeriod: 0 });
      clients.push(late);
      const received: { payload: string; retain: boolean }[] = [];
      late.on('message', (_topic, payload, packet) => received.push({ payload: payload.toString(), retain: packet.retain }));
      await late.subscribeAsync(topic, { qos: 1 });
      const deadline = Date.now() + 5000;
      while (received.length < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(received).toEqual([{ payload: JSON.stringify({ ts: 1_763_769_600_001, last: true }), retain: true }]);
    } finally {
      await close();
    }
  });
});
