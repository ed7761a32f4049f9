/**
 * Site configuration: one YAML file plus environment overrides, validated before anything
 * starts. Ship, port and headquarters run the same software; only this differs.
 *
 * Environment overrides: `PORTCALL_<PATH>` where PATH is the field path in upper snake case
 * with `__` between levels, e.g. `PORTCALL_HTTP__PORT=8081`, `PORTCALL_LOG__BACKEND=kafka`,
 * `PORTCALL_LOG__KAFKA__BROKERS='[127.0.0.1:9092]'`. Values are read as YAML scalars or
 * flow collections, so numbers, booleans and lists work.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError, parseStrictYaml } from '../core/index.js';

const siteName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'must be 1-64 letters, digits, "-" or "_", starting with a letter or digit');
const port = z.number().int().min(0).max(65535);
const streamName = z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, 'must be lower case letters, digits, "-" or "_"');

const topicRule = z.strictObject({
  pattern: z.string().min(1),
  stream: streamName,
  topic: z.string().min(1),
});

export const DEFAULT_TOPIC_RULES: z.infer<typeof topicRule>[] = [
  { pattern: 'bigblue/containers/{container}/{sensor}', stream: 'containers', topic: '{container}' },
  { pattern: 'bigblue/ships/{ship}/{sensor}', stream: 'ships', topic: '{ship}' },
  { pattern: 'bigblue/alerts/{subject}', stream: 'alerts', topic: '{subject}' },
  { pattern: 'bigblue/manifests/{subject}', stream: 'manifests', topic: '{subject}' },
];

export const DEFAULT_STREAM_PRIORITY = ['alerts', 'manifests', 'ships', 'containers'];

/** Disk-pressure priority when a stream's policy does not set one: alerts are dropped last. */
export const DEFAULT_DROP_PRIORITY: Readonly<Record<string, number>> = { alerts: 100, manifests: 80, ships: 40, containers: 20 };

const streamPolicy = z.strictObject({
  payload: z.enum(['json-reading', 'json', 'binary']).default('json-reading'),
  silenceAlertMs: z.number().int().min(1000).max(30 * 24 * 3600 * 1000).optional(),
});

/** Payload policy per stream; streams not listed take JSON readings and raise no silence alerts. */
export const DEFAULT_STREAM_POLICIES: Record<string, z.infer<typeof streamPolicy>> = {
  containers: { payload: 'json-reading' },
  ships: { payload: 'json-reading' },
  alerts: { payload: 'json' },
  manifests: { payload: 'json' },
};

const mqttConfig = z
  .strictObject({
    host: z.string().default('127.0.0.1'),
    port: port.default(1883),
    tls: z
      .strictObject({
        host: z.string().optional(),
        port: port.default(8883),
        certFile: z.string().min(1),
        keyFile: z.string().min(1),
        /** CA of device certificates; set it to let devices authenticate with certificates. */
        caFile: z.string().min(1).optional(),
        requireClientCertificate: z.boolean().default(false),
      })
      .optional(),
    websocket: z
      .strictObject({
        host: z.string().optional(),
        port: port.default(8083),
        path: z.string().regex(/^\/[A-Za-z0-9/_-]*$/, 'must be a URL path such as /mqtt').default('/mqtt'),
      })
      .optional(),
    maxTopicLength: z.number().int().min(1).max(65535).default(256),
    maxTopicLevels: z.number().int().min(1).max(100).default(16),
    maxPacketBytes: z.number().int().min(64).max(256 * 1024 * 1024).default(256 * 1024),
    /** Records accepted but not yet durable above which the gateway stops reading connections (back-pressure). */
    maxPendingRecords: z.number().int().min(100).max(10_000_000).default(100_000),
    topicRules: z.array(topicRule).min(1).default(DEFAULT_TOPIC_RULES),
    streams: z.record(streamName, streamPolicy).default(DEFAULT_STREAM_POLICIES),
    auth: z
      .strictObject({
        credentialsFile: z.string().min(1).optional(),
        allowAnonymous: z.boolean().default(false),
        /** CONNECTs with failing credentials per client address and window, then "server unavailable" without checking. */
        failedConnects: z
          .strictObject({
            maxPerAddress: z.number().int().min(1).max(1_000_000).default(60),
            windowMs: z.number().int().min(1000).max(86_400_000).default(60_000),
          })
          .default({ maxPerAddress: 60, windowMs: 60_000 }),
      })
      .default({ allowAnonymous: false, failedConnects: { maxPerAddress: 60, windowMs: 60_000 } }),
    bridge: z
      .strictObject({
        url: z.url({ protocol: /^mqtt$/, error: 'must be mqtt://host:port' }),
        clientId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, "-" or "_"').optional(),
        username: z.string().min(1).optional(),
        password: z.string().min(1).optional(),
        topics: z.array(z.string().min(1)).min(1).default(['bigblue/#']),
        /** Deliveries between arrival and PUBACK at once: the most a crash can store twice. */
        maxInFlight: z.number().int().min(1).max(65_535).default(256),
      })
      .optional(),
    /** Run the gateway (aedes, MQTT parsing) on its own thread, beside the thread that commits the log. */
    ownThread: z.boolean().default(true),
    liveness: z
      .strictObject({ checkIntervalMs: z.number().int().min(100).max(3_600_000).default(1000) })
      .default({ checkIntervalMs: 1000 }),
  })
  .superRefine((mqtt, context) => {
    if (mqtt.auth.credentialsFile === undefined && !mqtt.auth.allowAnonymous) {
      context.addIssue({
        code: 'custom',
        path: ['auth'],
        message: 'set credentialsFile (devices and their access rules), or allowAnonymous: true to accept any client (development only)',
      });
    }
    if (mqtt.tls?.requireClientCertificate === true && mqtt.tls.caFile === undefined) {
      context.addIssue({ code: 'custom', path: ['tls', 'caFile'], message: 'required when requireClientCertificate is true' });
    }
  });

/** How a Kafka topic is created; every field may be set for all streams or per stream. */
const kafkaTopicSettings = {
  partitions: z.number().int().min(1).max(10_000).optional(),
  replicationFactor: z.number().int().min(1).max(32).optional(),
  /** `min.insync.replicas`; default replicationFactor - 1 (at least 1). */
  minInsyncReplicas: z.number().int().min(1).max(32).optional(),
  /** Kafka deletes records older than this (`retention.ms`); unset keeps them forever. */
  retentionHours: z.number().positive().optional(),
  /** Kafka deletes the oldest records of a partition above this size (`retention.bytes`); unset for no limit. */
  retentionBytesPerPartition: z.number().int().positive().optional(),
};

/** One customer's Kafka topic: what the principal of its service token may see, in the form it may see it. */
const customerTopicConfig = z.strictObject({
  /** The customer (its organisation id); names the topic `customer.<id>` unless `topic` says otherwise. */
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be letters, digits, ".", "_" or "-" (an organisation id)'),
  /** The customer's service principal (an access record): the topic holds what it may see, while it is enabled. */
  principal: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, 'must be a principal id of the access records').optional(),
  /** Or a file holding the token of the customer's service principal: the topic holds what that token may read, while it may. */
  tokenFile: z.string().min(1).optional(),
  /** The site's streams it reads (never `access`). */
  streams: z
    .array(streamName.refine((stream) => stream !== 'access', 'access records never leave a site'))
    .min(1)
    .default(['containers', 'alerts', 'manifests']),
  /** The Kafka topic; default `customer.<id>`. */
  topic: z.string().regex(/^[a-zA-Z0-9._-]{1,249}$/, "must be a Kafka topic name (letters, digits, '.', '_', '-')").optional(),
});

const kafkaConfig = z
  .strictObject({
    brokers: z.array(z.string().regex(/^[^:\s]+:\d+$/, 'must be host:port')).min(1),
    topicPrefix: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/).default('portcall'),
    ...kafkaTopicSettings,
    partitions: kafkaTopicSettings.partitions.unwrap().default(6),
    replicationFactor: kafkaTopicSettings.replicationFactor.unwrap().default(1),
    /** Per-stream overrides of the topic settings above, plus the content type written in `pc-content-type`. */
    streams: z
      .record(streamName, z.strictObject({ ...kafkaTopicSettings, contentType: z.string().regex(/^[\w.+-]+\/[\w.+-]+$/, 'must be a MIME type such as application/json').optional() }))
      .default({}),
    /** Topic index file (offsets of each container's records in Kafka); default <dataDir>/<site>/kafka-index.sqlite. */
    indexPath: z.string().min(1).optional(),
    /** Records waiting for Kafka beyond which batches are refused with 503 (Kafka slow). */
    maxPendingRecords: z.number().int().positive().default(200_000),
    /**
     * How the record batches the site writes to Kafka are compressed (docs/KAFKA.md): lz4 costs
     * the broker far less CPU per record than none; Java and librdkafka clients read all three,
     * a kafkajs consumer needs an LZ4 codec registered.
     */
    compression: z.enum(['lz4', 'gzip', 'none']).default('lz4'),
    /**
     * Per-customer Kafka topics (docs/ACCESS.md): what each customer's service token may see of
     * these streams, written to `customer.<id>` exactly once. Needs an `access:` section.
     */
    customerTopics: z.array(customerTopicConfig).optional(),
  })
  .superRefine((kafka, context) => {
    const ids = new Set<string>();
    const topics = new Set<string>();
    (kafka.customerTopics ?? []).forEach((customer, index) => {
      const topic = customer.topic ?? `customer.${customer.id}`;
      if (ids.has(customer.id)) context.addIssue({ code: 'custom', path: ['customerTopics', index, 'id'], message: `${customer.id} is listed twice` });
      if (topics.has(topic)) context.addIssue({ code: 'custom', path: ['customerTopics', index, 'topic'], message: `${topic} is written for another customer already` });
      if ((customer.principal === undefined) === (customer.tokenFile === undefined)) {
        context.addIssue({ code: 'custom', path: ['customerTopics', index], message: 'give principal or tokenFile (whose view the topic holds), exactly one' });
      }
      if (topic.startsWith(`${kafka.topicPrefix}.`)) {
        context.addIssue({ code: 'custom', path: ['customerTopics', index, 'topic'], message: `must not start with the site's topicPrefix (${kafka.topicPrefix}.): customers' ACLs are granted apart from the site's own topics` });
      }
      ids.add(customer.id);
      topics.add(topic);
    });
    const scopes: { path: string[]; settings: { replicationFactor?: number; minInsyncReplicas?: number } }[] = [
      { path: [], settings: kafka },
      ...Object.entries(kafka.streams).map(([name, settings]) => ({ path: ['streams', name], settings })),
    ];
    for (const { path, settings } of scopes) {
      const replicationFactor = settings.replicationFactor ?? kafka.replicationFactor;
      if (settings.minInsyncReplicas !== undefined && settings.minInsyncReplicas > replicationFactor) {
        context.addIssue({
          code: 'custom',
          path: [...path, 'minInsyncReplicas'],
          message: `must not exceed the replication factor (${replicationFactor}), or every write fails`,
        });
      }
    }
  });

const ingestTls = z
  .strictObject({
    certFile: z.string().min(1),
    keyFile: z.string().min(1),
    /** CA of the sending sites' client certificates; with it, a certificate must name the site its token belongs to. */
    caFile: z.string().min(1).optional(),
    requireClientCertificate: z.boolean().default(false),
  })
  .refine((tls) => !tls.requireClientCertificate || tls.caFile !== undefined, {
    path: ['caFile'],
    message: 'required when requireClientCertificate is true',
  });

export const LINK_STATE_NAMES = ['up', 'metered', 'down'] as const;
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

const clockTime = (allowEndOfDay: boolean) =>
  z
    .string()
    .regex(allowEndOfDay ? /^(([01]\d|2[0-3]):[0-5]\d|24:00)$/ : /^([01]\d|2[0-3]):[0-5]\d$/, 'must be HH:MM (UTC)');

const scheduleWindow = z.strictObject({
  /** Days of the week; every day when absent. */
  days: z.array(z.enum(WEEKDAYS)).min(1).optional(),
  from: clockTime(false),
  to: clockTime(true),
  state: z.enum(LINK_STATE_NAMES),
  bandwidthBytesPerSecond: z.number().int().positive().optional(),
});

const linkConfig = z
  .strictObject({
    name: siteName,
    url: z.url({ protocol: /^https?$/ }),
    token: z.string().min(16, 'must be at least 16 characters'),
    /** Trust and identity for https:// peers. */
    tls: z
      .strictObject({
        caFile: z.string().min(1).optional(),
        certFile: z.string().min(1).optional(),
        keyFile: z.string().min(1).optional(),
      })
      .refine((tls) => (tls.certFile === undefined) === (tls.keyFile === undefined), {
        path: ['keyFile'],
        message: 'certFile and keyFile go together',
      })
      .optional(),
    streams: z.array(streamName).min(1).default(DEFAULT_STREAM_PRIORITY),
    /** Own lane, written ahead of everything, and still sent when the link is metered. */
    urgentStreams: z.array(streamName).default(['alerts']),
    /** Also sent when the link is metered (a summary stream the ship produces). */
    summaryStreams: z.array(streamName).default([]),
    state: z.enum(LINK_STATE_NAMES).default('up'),
    bandwidthBytesPerSecond: z.number().int().positive().optional(),
    schedule: z.array(scheduleWindow).default([]),
    /** A file the ship's systems write: up, down or metered, optionally followed by bytes per second. */
    switchFile: z.string().min(1).optional(),
    /** Bearer token for PUT /v1/links/<name>/state on this site's HTTP port. */
    controlToken: z.string().min(16, 'must be at least 16 characters').optional(),
    wireVersion: z.union([z.literal(1), z.literal(2)]).default(2),
    compressionQuality: z.union([z.number().int().min(0).max(11), z.literal('auto')]).default('auto'),
    maxBatchRecords: z.number().int().positive().default(10_000),
    maxBatchBytes: z.number().int().positive().default(2 * 1024 * 1024),
    maxBatchAgeMs: z.number().int().min(0).max(600_000).default(500),
    maxInFlightBatches: z.number().int().min(1).max(64).default(8),
    connectTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
    requestTimeoutMs: z.number().int().min(100).max(3_600_000).default(30_000),
    stallTimeoutMs: z.number().int().min(100).max(3_600_000).default(20_000),
    retryInitialMs: z.number().int().min(1).max(600_000).default(200),
    retryMaxMs: z.number().int().min(1).max(3_600_000).default(30_000),
    /**
     * What goes over a link to a customer's own endpoint (docs/ACCESS.md). `topics`: only
     * records whose topic matches one of these patterns (`*` any run of characters, `?` one
     * character, anything else literal). `principal` (a service principal of the access
     * records) or `tokenFile` (a file holding a token): only what that audience may see, in
     * the form it may see it, judged record by record by the access policy; custody widened
     * later sends the earlier records too. Both may be given (a record must pass both). The
     * endpoint takes this link as a sparse sender (`ingest.peers[].sparse` there).
     */
    filter: z
      .strictObject({
        topics: z
          .array(z.string().min(1).max(200).regex(/^[^\s]+$/, 'must be a topic name or pattern without spaces'))
          .min(1, 'list at least one topic or pattern (e.g. "Y*"); omit filter to send every topic')
          .optional(),
        principal: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, 'must be a principal id of the access records').optional(),
        tokenFile: z.string().min(1).optional(),
      })
      .superRefine((filter, context) => {
        if (filter.topics === undefined && filter.principal === undefined && filter.tokenFile === undefined) {
          context.addIssue({ code: 'custom', path: [], message: 'give topics, principal or tokenFile; omit filter to send every topic' });
        }
        if (filter.principal !== undefined && filter.tokenFile !== undefined) {
          context.addIssue({ code: 'custom', path: ['tokenFile'], message: 'give principal or tokenFile, not both' });
        }
      })
      .optional(),
  })
  .superRefine((link, context) => {
    for (const [field, streams] of [['urgentStreams', link.urgentStreams], ['summaryStreams', link.summaryStreams]] as const) {
      streams.forEach((stream, index) => {
        if (!link.streams.includes(stream) && !(field === 'urgentStreams' && stream === 'alerts')) {
          context.addIssue({ code: 'custom', path: [field, index], message: `"${stream}" is not in this link's streams` });
        }
      });
    }
    if (link.controlToken !== undefined && link.controlToken === link.token) {
      context.addIssue({ code: 'custom', path: ['controlToken'], message: 'must differ from token (the peer knows token)' });
    }
  });

export type LinkConfig = z.infer<typeof linkConfig>;

const rateLimit = (requests: number) =>
  z
    .strictObject({
      requests: z.number().int().min(1).max(1_000_000).default(requests),
      windowSeconds: z.number().int().min(1).max(3600).default(60),
    })
    .default({ requests, windowSeconds: 60 });

/** Access control (docs/ACCESS.md): present, every read endpoint wants a bearer token. */
const accessConfig = z.strictObject({
  /** At least 32 bytes shared by the sites enforcing access: signs and checks access records. */
  keyFile: z.string().min(1),
  /** A file holding the bootstrap admin token (at least 32 characters): it may manage access, and reads nothing. */
  bootstrapTokenFile: z.string().min(1).optional(),
  /** Read API requests per client address and window (every request counts, so it also bounds token guessing). */
  readRateLimit: rateLimit(600),
  /** Admin API (/v1/access/...) requests per client address and window. */
  adminRateLimit: rateLimit(60),
  /** Sign-in attempts by password per client address, and per principal, and window. */
  signInRateLimit: rateLimit(10),
  /** How long a session from signing in by password lasts, in hours (changing the password ends it sooner). */
  sessionHours: z.number().positive().max(720).default(8),
  /** Records one read request may scan past (records the caller may not see) before answering with what it found. */
  maxScanRecords: z.number().int().min(1000).max(10_000_000).default(100_000),
});

export type AccessConfig = z.infer<typeof accessConfig>;

export const siteConfigSchema = z
  .strictObject({
    site: siteName,
    dataDir: z.string().min(1).default('.data'),
    log: z
      .strictObject({
        backend: z.enum(['sqlite', 'kafka']).default('sqlite'),
        kafka: kafkaConfig.optional(),
        /** Hard limit on the embedded log's size; above it, records are dropped by stream priority. */
        maxBytes: z.number().int().positive().optional(),
        /** Keep at least this much disk free; below it, records are dropped by stream priority. */
        minFreeDiskBytes: z.number().int().nonnegative().default(256 * 1024 * 1024),
        /** Linux nice value of the embedded log's indexer thread: above 0, the threads a PUBACK waits for run first (docs/LOG.md). */
        indexerNice: z.number().int().min(0).max(19).default(10),
      })
      .default({ backend: 'sqlite', minFreeDiskBytes: 256 * 1024 * 1024, indexerNice: 10 }),
    streams: z
      .record(
        streamName,
        z.strictObject({
          /** Records stored longer ago than this may be deleted (never before forwarding, see mustForward). */
          ttlHours: z.number().positive().optional(),
          /** The stream is trimmed, oldest first, to stay under this many payload bytes. */
          maxBytes: z.number().int().positive().optional(),
          /** Under disk pressure, lower priorities lose records first. */
          priority: z.number().int().min(0).max(1000).optional(),
          /** TTL waits until every link forwarding this stream has sent the record. */
          mustForward: z.boolean().default(true),
        }),
      )
      .default({}),
    http: z
      .strictObject({
        host: z.string().default('127.0.0.1'),
        port: port.default(8080),
      })
      .optional(),
    mqtt: mqttConfig.optional(),
    ingest: z
      .strictObject({
        peers: z.array(
          z.strictObject({
            site: siteName,
            token: z.string().min(16, 'must be at least 16 characters'),
            /**
             * This sender is a filtered feed (a carrier's link to this customer endpoint): its
             * topics may skip offsets and fill in later; stored as a sparse replica (same
             * identities). Off: gaps are refused, as from any ordinary peer.
             */
            sparse: z.boolean().default(false),
          }),
        ),
        maxBatchBytes: z.number().int().positive().default(16 * 1024 * 1024),
        maxDecompressedBytes: z.number().int().positive().default(64 * 1024 * 1024),
        maxRecordsPerBatch: z.number().int().positive().default(100_000),
        /** The receiving endpoint's certificate: the site's HTTP port then speaks HTTPS (HTTP/2 and HTTP/1.1). */
        tls: ingestTls.optional(),
      })
      .optional(),
    links: z.array(linkConfig).default([]),
    /** Bearer token for POST /v1/streams/<s>/topics/<t>/handoff (one writer per topic); without it topics cannot be handed over here. */
    handoffToken: z.string().min(16, 'must be at least 16 characters').optional(),
    /**
     * Streams whose topics this site writes only once they are handed to it (a port's terminal:
     * containers arrive by handoff from the ship). A topic of these streams that nobody handed
     * here is refused, never created here, even if this site has not seen it yet: the ship may
     * hold records of it that have not arrived, and creating it here would fork it.
     */
    handoffOnlyStreams: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'a stream name')).default([]),
    access: accessConfig.optional(),
    /** Alert detectors over the embedded log (overboard, temperature excursion, door at sea); on when this section is present (`detectors: {}`). */
    detectors: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** A shock of at least this many g (with the next two conditions) starts an overboard. */
        shockG: z.number().positive().default(5),
        /** …then the container's position parts from its ship's by more than this… */
        divergeNm: z.number().positive().default(1),
        divergeWindowMinutes: z.number().positive().default(30),
        /** …then it is silent this long. */
        silenceMinutes: z.number().positive().default(5),
        /** A reefer this far from its setpoint (defrosts excepted)… */
        excursionC: z.number().positive().default(3),
        /** …for this long is a temperature excursion. */
        excursionMinutes: z.number().positive().default(30),
      })
      .optional(),
    /** The customer portal (docs/PORTAL.md) under /portal/ on the HTTP port: on by default at sites with `ingest:` and the embedded log. */
    portal: z
      .strictObject({
        enabled: z.boolean(),
      })
      .optional(),
  })
  .superRefine((config, context) => {
    if (config.log.backend === 'kafka' && config.log.kafka === undefined) {
      context.addIssue({ code: 'custom', path: ['log', 'kafka'], message: 'required when log.backend is "kafka"' });
    }
    if ((config.log.kafka?.customerTopics?.length ?? 0) > 0) {
      if (config.log.backend !== 'kafka') {
        context.addIssue({ code: 'custom', path: ['log', 'kafka', 'customerTopics'], message: 'needs log.backend "kafka"' });
      }
      if (config.access === undefined || config.http === undefined) {
        context.addIssue({
          code: 'custom',
          path: ['log', 'kafka', 'customerTopics'],
          message: 'needs an access: section and http: (each customer topic holds what the access policy admits for its token)',
        });
      }
    }
    if (config.log.backend === 'kafka' && (config.ingest?.peers.some((peer) => peer.sparse) ?? false)) {
      context.addIssue({ code: 'custom', path: ['ingest', 'peers'], message: 'a sparse peer (a filtered feed) needs the embedded log (log.backend "sqlite")' });
    }
    config.links.forEach((link, index) => {
      if ((link.filter?.principal !== undefined || link.filter?.tokenFile !== undefined) && config.access === undefined) {
        context.addIssue({ code: 'custom', path: ['links', index, 'filter'], message: 'principal and tokenFile need an access: section (the policy decides what the link carries)' });
      }
    });
    if (config.log.backend === 'kafka' && config.mqtt !== undefined) {
      context.addIssue({
        code: 'custom',
        path: ['mqtt'],
        message: 'an MQTT gateway writes to the embedded log; use log.backend "sqlite" on a site with devices',
      });
    }
  });

export type SiteConfig = z.infer<typeof siteConfigSchema>;
export type SiteConfigInput = z.input<typeof siteConfigSchema>;

function describeIssue(issue: z.core.$ZodIssue, source: string): string {
  const path = issue.path.length === 0 ? '(top level)' : issue.path.join('.');
  return `${source}: ${path}: ${issue.message}`;
}

export function parseSiteConfig(input: unknown, source = 'configuration'): SiteConfig {
  const result = siteConfigSchema.safeParse(input);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((issue) => describeIssue(issue, source)).join('\n'));
  }
  return result.data;
}

const ENV_PREFIX = 'PORTCALL_';

function snakeToCamel(segment: string): string {
  return segment.toLowerCase().replace(/_([a-z0-9])/g, (_match, letter: string) => letter.toUpperCase());
}

/** Applies `PORTCALL_A__B_C=value` as `a.bC = value` onto a parsed YAML document. */
export function applyEnvOverrides(document: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const result = structuredClone(document);
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined) continue;
    const path = name.slice(ENV_PREFIX.length).split('__').map(snakeToCamel);
    // Variables the tools themselves read (PORTCALL_CACHE_DIR, PORTCALL_KAFKA_BOOTSTRAP) are
    // not configuration fields; only known top-level fields are overridden.
    if (!(path[0]! in siteConfigSchema.shape)) continue;
    let target: Record<string, unknown> = result;
    for (const key of path.slice(0, -1)) {
      const next = target[key];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) target[key] = {};
      target = target[key] as Record<string, unknown>;
    }
    // A value YAML cannot read cleanly (an unknown tag such as `!x`, say) is taken as the string given.
    let value: unknown = raw;
    try {
      const parsedValue = parseDocument(raw, { logLevel: 'silent' });
      if (parsedValue.errors.length === 0 && parsedValue.warnings.length === 0) value = parsedValue.toJS();
    } catch {
      // Not YAML (an alias bomb, say): the string as given.
    }
    target[path.at(-1)!] = value;
  }
  return result;
}

export function loadSiteConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): SiteConfig {
  let document: Record<string, unknown> = {};
  if (path !== undefined) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = parseStrictYaml(text);
    } catch (error) {
      throw new ConfigError(`${path}: not valid YAML: ${(error as Error).message}`);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw new ConfigError(`${path}: (top level): expected a mapping of settings`);
      }
      document = parsed as Record<string, unknown>;
    }
  }
  const source = path ?? 'environment';
  return parseSiteConfig(applyEnvOverrides(document, env), source);
}
