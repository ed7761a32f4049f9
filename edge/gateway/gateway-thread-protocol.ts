/** Messages between the site's thread and the gateway's own thread. */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { BridgeOptions, BridgeState } from './bridge.js';
import type { ChannelRequest } from './record-channel.js';
import type { GatewayOptions, GatewayStats } from './mqtt-gateway.js';

export interface GatewayThreadData {
  readonly gateway: Omit<GatewayOptions, 'appender' | 'logger' | 'registry' | 'devices'>;
  /** The credentials file's text, parsed on the gateway's thread. */
  readonly credentials?: { readonly text: string; readonly source: string };
  readonly bridge?: Omit<BridgeOptions, 'logger' | 'registry'>;
  readonly logLevel: string;
}

export type ToGatewayThread = { readonly type: 'metrics'; readonly requestId: number } | { readonly type: 'close' };

export type FromGatewayThread =
  | ChannelRequest
  | { readonly type: 'ready'; readonly ports: { tcp: number; tls: number | undefined; websocket: number | undefined } }
  | { readonly type: 'start-failed'; readonly message: string; readonly code: string | undefined; readonly port: number | undefined }
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'stats'; readonly stats: GatewayStats; readonly bridgeState: BridgeState | undefined }
  | { readonly type: 'metrics'; readonly requestId: number; readonly metrics: MetricObjectWithValues<MetricValue<string>>[] }
  | { readonly type: 'closed' };
