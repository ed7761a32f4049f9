export { MqttGateway, type GatewayOptions, type GatewayStats } from './mqtt-gateway.js';
export { TopicMapper, type TopicRule, type MappedTopic } from './topic-mapper.js';
