/**
 * The gateway as a site starts it: on its own thread (the default, so parsing and the log's
 * commits use both cores) or on the caller's thread, with the bridge when one is configured.
 * Both give the same surface.
 */
import { MqttBridge, type BridgeState } from './bridge.js';
import { DeviceDirectory } from './credentials.js';
import { GatewayThread, type GatewayThreadOptions } from './gateway-thread.js';
import { MqttGateway, type GatewayStats } from './mqtt-gateway.js';

export interface RunningGateway {
  readonly port: number;
  readonly tlsPort: number | undefined;
  readonly webSocketPort: number | undefined;
  readonly bridgeState: BridgeState | undefined;
  stats(): Readonly<GatewayStats>;
  close(): Promise<void>;
}

export interface StartGatewayOptions extends GatewayThreadOptions {
  /** Run aedes and the MQTT parsing on a thread of their own. */
  readonly ownThread: boolean;
}

export async function startGateway(options: StartGatewayOptions): Promise<RunningGateway> {
  if (options.ownThread) return GatewayThread.start(options);
  const { credentialsFile, bridge: bridgeOptions, ownThread: _ownThread, ...rest } = options;
  const devices = credentialsFile === undefined ? undefined : DeviceDirectory.load(credentialsFile);
  const gateway = await MqttGateway.start({ ...rest, ...(devices === undefined ? {} : { devices }) });
  let bridge: MqttBridge | undefined;
  if (bridgeOptions !== undefined) {
    bridge = new MqttBridge(gateway.intake, {
      ...bridgeOptions,
      logger: options.logger.child({ component: 'bridge' }),
      ...(options.registry === undefined ? {} : { registry: options.registry }),
    });
    bridge.start();
  }
  return {
    port: gateway.port,
    tlsPort: gateway.tlsPort,
    webSocketPort: gateway.webSocketPort,
    get bridgeState() {
      return bridge?.state;
    },
    stats: () => gateway.stats(),
    close: async () => {
      await bridge?.stop();
      await gateway.close();
    },
  };
}
