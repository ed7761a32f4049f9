/**
 * The gateway against MQTT software nobody here wrote: Debian's mosquitto_pub and
 * mosquitto_sub (QoS 0/1/2, retained, will), mqtt.js over WebSocket, and a raw mqtt-packet
 * client for what the command-line tools cannot do on purpose (a QoS 2 retransmission).
 * What is stored is read back through the site's read API.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { startGatewaySite, type GatewaySite } from './support/gateway-site.js';
import { mosquittoPub, mosquittoSub } from './support/mosquitto-clients.js';

// No keep-alive: an idle kept-alive connection would hold the site's HTTP close for seconds.
const NO_KEEP_ALIVE = { headers: { connection: 'close' } };

let gateway: GatewaySite;
let port: number;
let httpUrl: string;

async function latest(stream: string, topic: string): Promise<{ offset: number; payload: unknown; headers: Record<string, string> } | undefined> {
  const response = await fetch(`${httpUrl}/v1/streams/${stream}/topics/${topic}/latest`, NO_KEEP_ALIVE);
  if (response.status === 404) return undefined;
  expect(response.status).toBe(200);
  return (await response.json()) as { offset: number; payload: unknown; headers: Record<string, string> };
}

async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A bare MQTT connection: packets in, packets out, nothing done behind the test's back. */
async function rawClient(clientId: string, clean: boolean) {
  const socket: Socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const received: Packet[] = [];
  parser.on('packet', (packet: Packet) => received.push(packet));
  socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  const send = (packet: Packet) => socket.write(mqttPacket.generate(packet));
  const waitFor = (predicate: (packet: Packet) => boolean, what: string) =>
    eventually(async () => received.find(predicate), what);
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean, keepalive: 30 });
  await waitFor((packet) => packet.cmd === 'connack', 'CONNACK');
  return { socket, received, send, waitFor };
}

describe('gateway interop with mosquitto_pub/mosquitto_sub, mqtt.js over WebSocket and raw packets', () => {
  beforeAll(async () => {
    gateway = await startGatewaySite(
      {
        auth: { allowAnonymous: true },
        websocket: { port: 0 },
        streams: {
          containers: { payload: 'json-reading', silenceAlertMs: 1000 },
          ships: { payload: 'json-reading' },
          alerts: { payload: 'json' },
          manifests: { payload: 'binary' },
        },
        liveness: { checkIntervalMs: 100 },
      },
      { http: { port: 0 } },
    );
    port = gateway.site.mqttPort!;
    httpUrl = gateway.site.httpUrl!;
  });
  afterAll(async () => {
    await gateway.stop();
    gateway.remove();
  });

  it('stores what mosquitto_pub sends at QoS 0, 1 and 2, once each, with the device time', async () => {
    for (const qos of [0, 1, 2]) {
      const body = { ts: 1_763_769_600_000 + qos, tempC: -18.5, qos };
      const run = await mosquittoPub(['-p', String(port), '-i', `pub-qos${qos}`, '-q', String(qos), '-t', `bigblue/containers/Q${qos}/reefer`, '-m', JSON.stringify(body)]);
      expect(run.code, run.stderr).toBe(0);
    }
    for (const qos of [0, 1, 2]) {
      const record = await eventually(() => latest('containers', `Q${qos}`), `Q${qos} stored`);
      expect(record).toMatchObject({ offset: 0, payload: { qos }, headers: { 'mqtt-topic': `bigblue/containers/Q${qos}/reefer` } });
      expect((record as unknown as { eventTime: string }).eventTime).toBe(new Date(1_763_769_600_000 + qos).toISOString());
    }
  });

  it('appends a QoS 2 retransmission (DUP, same id, before PUBREL) once, also across a reconnect', async () => {
    const client = await rawClient('raw-qos2', false);
    const publish = (messageId: number, dup: boolean, seq: number): Packet => ({
      cmd: 'publish',
      topic: 'bigblue/containers/D01/reefer',
      payload: Buffer.from(JSON.stringify({ ts: 1_763_769_600_000, seq })),
      qos: 2,
      dup,
      retain: false,
      messageId,
    });
    client.send(publish(7, false, 1));
    client.send(publish(7, true, 1));
    await eventually(async () => (client.received.filter((packet) => packet.cmd === 'pubrec').length >= 2 ? true : undefined), 'two PUBRECs');
    client.send({ cmd: 'pubrel', messageId: 7 });
    await client.waitFor((packet) => packet.cmd === 'pubcomp', 'PUBCOMP');
    // The id is free again after PUBCOMP: the same id now carries a new message.
    client.send(publish(7, false, 2));
    await eventually(async () => (client.received.filter((packet) => packet.cmd === 'pubrec').length >= 3 ? true : undefined), 'third PUBREC');
    // PUBREL never sent: the device drops off and retransmits on its persistent session.
    client.socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const again = await rawClient('raw-qos2', false);
    again.send(publish(7, true, 2));
    await again.waitFor((packet) => packet.cmd === 'pubrec', 'PUBREC after reconnect');
    again.send({ cmd: 'pubrel', messageId: 7 });
    await again.waitFor((packet) => packet.cmd === 'pubcomp', 'PUBCOMP after reconnect');
    again.socket.destroy();

    const record = await eventually(() => latest('containers', 'D01'), 'D01 stored');
    expect(record).toMatchObject({ offset: 1, payload: { seq: 2 } });
  });

  it('sends QoS 1 PUBACKs in the order the PUBLISHes came, many in flight on one connection', async () => {
    const client = await rawClient('raw-qos1-order', true);
    const count = 600;
    const publishes = Array.from({ length: count }, (_unused, index) =>
      mqttPacket.generate({
        cmd: 'publish',
        topic: `bigblue/containers/O${String(index % 7).padStart(2, '0')}/reefer`,
        // Every 50th is refused (not a JSON object): acknowledged and dropped, in its place.
        payload: Buffer.from(index % 50 === 0 ? '[0]' : JSON.stringify({ ts: 1_763_769_600_000, seq: index })),
        qos: 1,
        dup: false,
        retain: false,
        messageId: index + 1,
      }),
    );
    client.socket.write(Buffer.concat(publishes));
    await eventually(async () => (client.received.filter((packet) => packet.cmd === 'puback').length >= count ? true : undefined), 'every PUBACK', 15_000);
    const order = client.received.filter((packet) => packet.cmd === 'puback').map((packet) => packet.messageId);
    expect(order).toEqual(Array.from({ length: count }, (_unused, index) => index + 1));
    client.socket.destroy();
    let stored = 0;
    for (let container = 0; container < 7; container += 1) stored += ((await latest('containers', `O0${container}`))?.offset ?? -1) + 1;
    expect(stored).toBe(count - count / 50);
  });

  it('keeps a retained reading for a later mosquitto_sub, and delivers a dead client\'s will', async () => {
    const retained = { ts: 1_763_769_600_000, tempC: -17.9 };
    const pub = await mosquittoPub(['-p', String(port), '-i', 'pub-retained', '-q', '1', '-r', '-t', 'bigblue/containers/R01/reefer', '-m', JSON.stringify(retained)]);
    expect(pub.code, pub.stderr).toBe(0);
    const reader = mosquittoSub(['-p', String(port), '-i', 'sub-retained', '-q', '1', '-C', '1', '-t', 'bigblue/containers/R01/#']);
    expect(JSON.parse((await reader.waitForLines(1))[0]!)).toEqual(retained);
    await reader.exited;

    // -d makes each print "received SUBACK" once subscribed: the moment the will can matter.
    const watcher = mosquittoSub(['-d', '-p', String(port), '-i', 'sub-will', '-q', '1', '-C', '1', '-t', 'bigblue/alerts/#']);
    const dying = mosquittoSub([
      '-d', '-p', String(port), '-i', 'device-W01', '-t', 'bigblue/none',
      '--will-topic', 'bigblue/alerts/W01', '--will-payload', '{"kind":"offline","device":"W01"}', '--will-qos', '1',
    ]);
    for (const client of [watcher, dying]) {
      await eventually(async () => (client.lines().some((line) => line.includes('SUBACK')) ? true : undefined), 'SUBACK');
    }
    dying.kill9();
    const payloadLine = await eventually(async () => watcher.lines().find((line) => line.startsWith('{')), 'will delivered');
    expect(JSON.parse(payloadLine)).toEqual({ kind: 'offline', device: 'W01' });
    await watcher.exited;
    // The will is a message like any other: it is in the log too.
    expect(await eventually(() => latest('alerts', 'W01'), 'will stored')).toMatchObject({ offset: 0, payload: { kind: 'offline' } });
  });

  it('takes MQTT over WebSocket (mqtt.js) the same way', async () => {
    const client = await mqtt.connectAsync(`ws://127.0.0.1:${gateway.site.mqttWebSocketPort!}/mqtt`, { clientId: 'ws-sensor', protocolVersion: 4, reconnectPeriod: 0 });
    await client.publishAsync('bigblue/ships/AURORA/position', JSON.stringify({ ts: 1_763_769_600_000, lat: 35.4, lon: 139.7 }), { qos: 1 });
    await client.endAsync();
    expect(await latest('ships', 'AURORA')).toMatchObject({ offset: 0, payload: { lat: 35.4 } });
  });

  it('acknowledges and drops a bad message, counted by reason, and keeps serving the same connection', async () => {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'sloppy-sensor', protocolVersion: 4, reconnectPeriod: 0 });
    await client.publishAsync('bigblue/containers/B01/reefer', 'not json', { qos: 1 });
    await client.publishAsync('bigblue/containers/B01/reefer', '[1,2,3]', { qos: 1 });
    await client.publishAsync('bigblue/containers/B01/reefer', '{"ts":"yesterday"}', { qos: 1 });
    await client.publishAsync('bigblue/nowhere/B01', '{}', { qos: 1 });
    await client.publishAsync(`bigblue/containers/${'x'.repeat(300)}/reefer`, '{}', { qos: 1 });
    await client.publishAsync('bigblue/containers/B01/reefer', '{"ts":1763769600000,"tempC":4}', { qos: 1 });
    // Binary passthrough where the stream says so.
    await client.publishAsync('bigblue/manifests/M01', Buffer.from([0, 1, 2, 255]), { qos: 1 });
    expect(client.connected).toBe(true);
    await client.endAsync();
    expect(await latest('containers', 'B01')).toMatchObject({ offset: 0, payload: { tempC: 4 } });
    expect(await latest('manifests', 'M01')).toMatchObject({ offset: 0 });

    const metrics = await (await fetch(`${httpUrl}/metrics`, NO_KEEP_ALIVE)).text();
    for (const reason of ['payload-not-json', 'payload-not-object', 'payload-bad-ts', 'unmapped-topic', 'topic-too-long']) {
      expect(metrics).toMatch(new RegExp(`portcall_gateway_refusals_total\\{reason="${reason}",site="AURORA"\\} 1`));
    }
    expect(metrics).toMatch(/portcall_gateway_messages_total\{qos="1",outcome="stored",source="device",site="AURORA"\} \d+/);
    expect(metrics).toMatch(/portcall_gateway_commit_seconds_count\{site="AURORA"\} \d+/);
    expect(metrics).toMatch(/portcall_gateway_clients\{site="AURORA"\} \d+/);
    expect(metrics).toMatch(/portcall_gateway_log_file_bytes\{site="AURORA"\} [1-9]\d*/);
  });

  it('raises one durable silence alert when a reporting container stops, with its last reading', async () => {
    const lastReading = { ts: 1_763_769_600_000, tempC: -18.1, lat: -33.9, lon: 151.2 };
    const run = await mosquittoPub(['-p', String(port), '-i', 'pub-Y07', '-q', '1', '-t', 'bigblue/containers/Y07/reefer', '-m', JSON.stringify(lastReading)]);
    expect(run.code, run.stderr).toBe(0);
    const alert = await eventually(() => latest('alerts', 'Y07'), 'silence alert', 5000);
    expect(alert).toMatchObject({
      offset: 0,
      headers: { 'alert-kind': 'silence', 'alert-source': 'containers/Y07' },
      payload: { kind: 'silence', stream: 'containers', topic: 'Y07', thresholdMs: 1000, lastReading },
    });
    // Once per silence: no second alert while it stays silent.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect((await latest('alerts', 'Y07'))!.offset).toBe(0);
  });
});
