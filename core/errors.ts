/**
 * Typed errors with stable codes. `retriable` tells a caller whether trying the same thing
 * again later can succeed (a full disk, a link down) or cannot (a malformed batch), which is
 * what retry policies and HTTP status mapping key on.
 */
export class PortcallError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  constructor(code: string, message: string, options: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/** A configuration file or override that does not satisfy the schema. */
export class ConfigError extends PortcallError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

/** Input from a device, a peer site or a user that is refused. Never retriable as sent. */
export class InvalidInputError extends PortcallError {
  /** Short stable reason, used as a metric label. */
  readonly reason: string;
  constructor(reason: string, message: string) {
    super('INVALID_INPUT', message);
    this.reason = reason;
  }
}

/** A replicated record does not continue its topic: offsets would skip. */
export class OffsetGapError extends PortcallError {
  constructor(stream: string, topic: string, expectedOffset: number, gotOffset: number) {
    super(
      'OFFSET_GAP',
      `topic ${stream}/${topic}: expected offset ${expectedOffset} next, got ${gotOffset}; records in between are missing`,
    );
  }
}

/** Two sites claim the same offset of a topic with different origins: a fork. */
export class TopicForkError extends PortcallError {
  constructor(stream: string, topic: string, offset: number, heldOrigin: string, offeredOrigin: string) {
    super(
      'TOPIC_FORK',
      `topic ${stream}/${topic} offset ${offset} is held from origin ${heldOrigin}, refused a copy from origin ${offeredOrigin}`,
    );
  }
}

/** The store cannot take writes now (disk full, backend down); the caller must not acknowledge. */
export class StoreUnavailableError extends PortcallError {
  constructor(message: string, cause?: unknown) {
    super('STORE_UNAVAILABLE', message, { retriable: true, cause });
  }
}

/** A link to a peer failed; the batch may or may not have arrived, so it will be resent. */
export class LinkError extends PortcallError {
  readonly status: number | undefined;
  /**
   * Short stable reason, used as a metric label and by the retry policy: `connect-failed`,
   * `timeout`, `stalled`, `reset`, or the receiver's refusal reason (`offset-gap`, `too-large`, …).
   */
  readonly reason: string;
  constructor(message: string, options: { status?: number; retriable: boolean; cause?: unknown; reason?: string }) {
    super('LINK_FAILED', message, options);
    this.status = options.status;
    this.reason = options.reason ?? (options.status === undefined ? 'failed' : `http-${options.status}`);
  }
}

export class ClosedError extends PortcallError {
  constructor(what: string) {
    super('CLOSED', `${what} is closed`);
  }
}

/** A listening port is taken by another process. */
export class PortInUseError extends PortcallError {
  constructor(
    readonly listener: 'http' | 'mqtt',
    readonly what: string,
    readonly host: string,
    readonly port: number,
    howToChange: string,
  ) {
    super('PORT_IN_USE', `${what} cannot listen on ${host}:${port}: the port is taken. ${howToChange}`);
  }
}

/** A client asked more often than its fixed window allows; it may try again after `retryAfterSeconds`. */
export class RateLimitedError extends PortcallError {
  constructor(readonly retryAfterSeconds: number) {
    super('RATE_LIMITED', `too many requests; try again in ${retryAfterSeconds} s`, { retriable: true });
  }
}

/**
 * Some records of one append were refused (each with its own error, by its index in the
 * call); every other record of the call is durable. The caller must not acknowledge the
 * refused ones and may acknowledge the rest (the writer guard refusing readings for a topic
 * another site writes, among other devices' readings in the same group commit).
 */
export class RecordsRefusedError extends PortcallError {
  constructor(
    /** Index in the append call → why that record was refused. */
    readonly refused: ReadonlyMap<number, PortcallError>,
    /** How many records of the call are durable. */
    readonly stored: number,
  ) {
    const first = refused.values().next().value as PortcallError | undefined;
    super(first?.code ?? 'REFUSED', `${refused.size} record(s) refused, ${stored} stored${first === undefined ? '' : `: ${first.message}`}`);
  }
}
