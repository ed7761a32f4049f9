/**
 * Publishes an emulator's messages over one mqtt.js client until each is acknowledged, and
 * counts them: what the fleet's shards and a vehicle's devices share.
 *
 * A publish mqtt.js gives up on is published again, as a device keeps a reading until it is
 * acknowledged: after a reconnect with a persistent session mqtt.js first resends the
 * session's messages one at a time, queues new publishes behind them, and fails the queued
 * ones ("Connection closed") if the connection drops before they are sent, which a gateway
 * refusing a reading (closing the connection, docs/GATEWAY.md) makes happen again and again.
 * They never reached the broker, so sending them again stores nothing twice.
 */
import type { MqttClient } from 'mqtt';

export interface PublishedMessage {
  readonly topic: string;
  readonly payload: string;
  readonly qos: 0 | 1 | 2;
}

export class AckedPublisher<Message extends PublishedMessage> {
  /** Handed to the client and not failed by it: acknowledged, or in flight. */
  published = 0;
  acknowledged = 0;
  /** Messages mqtt.js failed before sending them: published again first. */
  private readonly retry: Message[] = [];

  constructor(private readonly events: { acknowledged?: (message: Message) => void; failed?: (error: Error) => void } = {}) {}

  get inFlight(): number {
    return this.published - this.acknowledged;
  }

  /** Messages waiting to be published again. */
  get retrying(): number {
    return this.retry.length;
  }

  publish(client: MqttClient, message: Message): void {
    this.published += 1;
    client.publish(message.topic, message.payload, { qos: message.qos }, (error) => {
      if (error === undefined || error === null) {
        this.acknowledged += 1;
        this.events.acknowledged?.(message);
      } else {
        this.events.failed?.(error);
        this.published -= 1;
        this.retry.push(message);
      }
    });
  }

  /** Publishes again what mqtt.js failed, oldest first, within the in-flight window. */
  sendRetries(client: MqttClient, maxInFlight: number): void {
    while (this.retry.length > 0 && client.connected && this.inFlight < maxInFlight) this.publish(client, this.retry.shift()!);
  }

  /** Waits up to `drainMs` for everything published (and to be published again) to be acknowledged. */
  async drain(client: MqttClient | undefined, maxInFlight: number, drainMs: number): Promise<void> {
    const deadline = Date.now() + drainMs;
    while ((this.inFlight > 0 || this.retry.length > 0) && Date.now() < deadline) {
      if (client !== undefined) this.sendRetries(client, maxInFlight);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
