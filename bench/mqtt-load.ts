/**
 * A simple MQTT load generator shared by scenarios: several mqtt.js connections publishing
 * pre-built reading payloads with a bounded window of unacknowledged QoS 1 messages each.
 * It is the same generator for the product and for its baseline, so the ratio is fair.
 */
import mqtt, { type MqttClient } from 'mqtt';

export interface LoadOptions {
  readonly brokerUrl: string;
  readonly connections: number;
  readonly messages: number;
  readonly containers: number;
  readonly topicPrefix: string;
  readonly qos: 0 | 1;
  readonly windowPerConnection: number;
}

export function readingPayload(container: string, sequence: number): Buffer {
  // About 150 bytes, like a real reefer reading.
  return Buffer.from(
    JSON.stringify({
      ts: 1_760_000_000_000 + sequence * 1000,
      container,
      tempC: -18.25 + (sequence % 7) * 0.01,
      setpointC: -18,
      humidityPct: 81.5,
      door: 'closed',
      battery: 3.61,
      seq: sequence,
    }),
  );
}

async function connect(url: string, clientId: string): Promise<MqttClient> {
  const client = mqtt.connect(url, { clientId, protocolVersion: 4, reconnectPeriod: 0, clean: true });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** Publishes `messages` readings spread over the connections; resolves when all are acked. */
export async function publishLoad(options: LoadOptions): Promise<{ elapsedMs: number }> {
  const clients = await Promise.all(
    Array.from({ length: options.connections }, (_unused, index) =>
      connect(options.brokerUrl, `bench-load-${process.pid}-${index}`),
    ),
  );
  const perConnection = Math.ceil(options.messages / options.connections);
  const startedAt = performance.now();
  await Promise.all(
    clients.map(
      (client, index) =>
        new Promise<void>((resolve, reject) => {
          const first = index * perConnection;
          const last = Math.min(options.messages, first + perConnection);
          let next = first;
          let inFlight = 0;
          let done = first >= last;
          if (done) resolve();
          const pump = () => {
            while (!done && next < last && inFlight < options.windowPerConnection) {
              const sequence = next;
              next += 1;
              inFlight += 1;
              const container = `C${String(sequence % options.containers).padStart(5, '0')}`;
              client.publish(
                `${options.topicPrefix}/${container}/reefer`,
                readingPayload(container, sequence),
                { qos: options.qos },
                (error) => {
                  if (error) {
                    done = true;
                    reject(error);
                    return;
                  }
                  inFlight -= 1;
                  if (next >= last && inFlight === 0) {
                    done = true;
                    resolve();
                  } else pump();
                },
              );
            }
          };
          pump();
        }),
    ),
  );
  const elapsedMs = performance.now() - startedAt;
  await Promise.all(clients.map((client) => client.endAsync()));
  return { elapsedMs };
}
