export {
  MqttGateway,
  type GatewayOptions,
  type GatewayStats,
  type StreamPolicy,
  type TlsListenerOptions,
  type WebSocketListenerOptions,
} from './mqtt-gateway.js';
export { MqttBridge, type BridgeOptions, type BridgeState } from './bridge.js';
export { DeviceDirectory, hashSecret, verifySecret, credentialsFileSchema, type CredentialsFile, type DeviceIdentity } from './credentials.js';
export { TopicMapper, type TopicRule, type MappedTopic } from './topic-mapper.js';
export type { PayloadKind } from './payload-policy.js';
export { ALERTS_STREAM, type SilenceAlert } from './liveness.js';
export { startGateway, type RunningGateway, type StartGatewayOptions } from './start-gateway.js';
export { GatewayThread, GatewayStartError, type GatewayThreadOptions } from './gateway-thread.js';
