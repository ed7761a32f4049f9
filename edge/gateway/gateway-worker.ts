/**
 * Entry of the gateway's own thread (see gateway-thread.ts): aedes, the MQTT parsing, the
 * checks and the bridge run here; appends go to the log's thread over the record channel.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { MqttBridge } from './bridge.js';
import { DeviceDirectory } from './credentials.js';
import { MqttGateway } from './mqtt-gateway.js';
import { ChannelAppender, type ChannelReply } from './record-channel.js';
import type { FromGatewayThread, GatewayThreadData, ToGatewayThread } from './gateway-thread-protocol.js';

const port = parentPort!;
const data = workerData as GatewayThreadData;
const send = (message: FromGatewayThread, transfer?: ArrayBuffer[]) => port.postMessage(message, transfer ?? []);

// Log lines go to the site's logger on the main thread, which knows where logs are kept.
const logger = pino({ level: data.logLevel, base: undefined, timestamp: false }, {
  write: (line: string) => send({ type: 'log', line }),
});
const registry = new Registry();
const appender = new ChannelAppender(port);

let gateway: MqttGateway | undefined;
let bridge: MqttBridge | undefined;

port.on('message', (message: ToGatewayThread | ChannelReply) => {
  switch (message.type) {
    case 'appended':
    case 'append-failed':
    case 'append-refused':
      appender.settle(message);
      break;
    case 'metrics':
      void registry.getMetricsAsJSON().then((metrics) => send({ type: 'metrics', requestId: message.requestId, metrics }));
      break;
    case 'close':
      void (async () => {
        await bridge?.stop();
        await gateway?.close();
        send({ type: 'closed' });
      })();
      break;
  }
});

try {
  const devices = data.credentials === undefined ? undefined : DeviceDirectory.parse(data.credentials.text, data.credentials.source);
  gateway = await MqttGateway.start({
    ...data.gateway,
    ...(devices === undefined ? {} : { devices }),
    appender,
    logger,
    registry,
  });
  if (data.bridge !== undefined) {
    bridge = new MqttBridge(gateway.intake, { ...data.bridge, logger: logger.child({ component: 'bridge' }), registry });
    bridge.start();
  }
  const started = gateway;
  const reportStats = () => send({ type: 'stats', stats: { ...started.stats() }, bridgeState: bridge?.state });
  setInterval(reportStats, 50).unref();
  send({
    type: 'ready',
    ports: { tcp: gateway.port, tls: gateway.tlsPort, websocket: gateway.webSocketPort },
  });
} catch (error) {
  send({
    type: 'start-failed',
    message: (error as Error).message,
    code: (error as { code?: string }).code,
    port: (error as { port?: number }).port,
  });
}
