import { PortcallError } from '../../core/errors.js';

export type KafkaUnavailableReason = 'java-missing' | 'maven-missing' | 'fetch-failed' | 'start-failed';

/**
 * Kafka could not be provided on this machine. Callers branch on `reason` (tests skip or fail,
 * the CLI prints the message), and the message always names what is missing and the command
 * that fixes it, because the person reading it is usually a developer on a fresh machine.
 */
export class KafkaUnavailableError extends PortcallError {
  override readonly code = 'KAFKA_UNAVAILABLE';
  readonly reason: KafkaUnavailableReason;
  constructor(reason: KafkaUnavailableReason, message: string, options: { cause?: unknown } = {}) {
    super('KAFKA_UNAVAILABLE', message, { retriable: reason === 'fetch-failed' || reason === 'start-failed', ...options });
    this.reason = reason;
  }
}

export const INSTALL_HINT = 'apt-get install -y openjdk-17-jre-headless maven';
export const EXTERNAL_BROKER_HINT = 'or point the tests at a running broker with PORTCALL_KAFKA_BOOTSTRAP=host:port';
