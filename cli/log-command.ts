/**
 * `portcall log stats|inspect|tail|verify`: looking into a site's embedded log.
 *
 * Every subcommand reads; none appends, deletes or moves a cursor. They work on a log a
 * running site has open (SQLite WAL lets readers in while the site writes). `stats` and
 * `inspect` show the log as it stood when the command opened it; `tail` keeps reading.
 *
 * Only the registration is loaded with the command line; the log itself (better-sqlite3)
 * is imported when a subcommand runs, so `portcall --help` stays instant.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PortcallError, type LogRecord } from '../core/index.js';
import type { SqliteLog } from '../edge/log/index.js';

/** Where output goes; the command line passes process.stdout and process.stderr. */
export interface LogCommandIo {
  readonly out: { write(text: string): unknown };
  readonly err: { write(text: string): unknown };
}

export interface LogTargetOptions {
  readonly path?: string;
  readonly config?: string;
}

export interface LogTarget {
  readonly path: string;
  /** Only used as the SqliteLog's own site id; nothing is appended by these commands. */
  readonly siteId: string;
}

const DEFAULT_INSPECT_LIMIT = 20;
const READ_PAGE_RECORDS = 1000;

function wholeNumber(name: string, min: number) {
  return (raw: string): number => {
    const value = Number(raw);
    if (raw.trim() === '' || !Number.isSafeInteger(value) || value < min) {
      throw new InvalidArgumentError(`${name} must be a whole number of at least ${min}`);
    }
    return value;
  };
}

/** `--path`, else `<dataDir>/<site>/log.sqlite` of the site configuration (`--config` plus PORTCALL_ overrides). */
export async function resolveLogTarget(options: LogTargetOptions): Promise<LogTarget> {
  let path = options.path;
  let siteId = 'inspect';
  if (path === undefined || options.config !== undefined) {
    const { loadSiteConfig } = await import('../site/index.js');
    const config = loadSiteConfig(options.config);
    siteId = config.site;
    if (path === undefined) {
      if (config.log.backend !== 'sqlite') {
        throw new PortcallError(
          'USAGE',
          `${options.config ?? 'configuration'}: site ${config.site} keeps its log in Kafka (log.backend "${config.log.backend}"); ` +
            '"portcall log" reads the embedded SQLite log',
        );
      }
      path = join(config.dataDir, config.site, 'log.sqlite');
    }
  }
  if (!existsSync(path)) {
    throw new PortcallError('USAGE', `no log at ${path} (give --path <records file> or --config <site yaml>)`);
  }
  if (!statSync(path).isFile()) throw new PortcallError('USAGE', `${path} is not a file; --path names the records file (log.sqlite)`);
  return { path, siteId };
}

async function openForReading(target: LogTarget): Promise<SqliteLog> {
  const { SqliteLog } = await import('../edge/log/index.js');
  // Inline indexer and no retention timer: nothing runs in the background, nothing is written.
  return SqliteLog.open({ siteId: target.siteId, path: target.path, retentionIntervalMs: 0, indexer: 'inline' });
}

async function withLog<T>(target: LogTarget, use: (log: SqliteLog) => Promise<T>): Promise<T> {
  const log = await openForReading(target);
  try {
    return await use(log);
  } finally {
    await log.close();
  }
}

function requireStream(log: SqliteLog, stream: string, path: string): void {
  if (log.streamStats(stream) === undefined) {
    const known = log.listStreams();
    throw new PortcallError(
      'USAGE',
      `${path} has no stream "${stream}"; ${known.length === 0 ? 'it holds no streams yet' : `its streams: ${known.join(', ')}`}`,
    );
  }
}

const iso = (ms: number | undefined): string => (ms === undefined || ms <= 0 ? '-' : new Date(ms).toISOString());

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

function table(rows: readonly (readonly string[])[], rightAligned: ReadonlySet<number>): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => row.map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

/** A payload as JSON when it is UTF-8 JSON, else base64. */
export function decodePayload(payload: Uint8Array): { encoding: 'json'; value: unknown } | { encoding: 'base64'; value: string } {
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const text = bytes.toString('utf8');
  if (text.trim() !== '' && Buffer.from(text, 'utf8').equals(bytes)) {
    try {
      return { encoding: 'json', value: JSON.parse(text) as unknown };
    } catch {
      // not JSON: falls through to base64
    }
  }
  return { encoding: 'base64', value: bytes.toString('base64') };
}

function recordJson(record: LogRecord): Record<string, unknown> {
  const payload = decodePayload(record.payload);
  return {
    origin: record.origin,
    stream: record.stream,
    topic: record.topic,
    offset: record.offset,
    eventTime: iso(record.eventTimeMs),
    ingestTime: iso(record.ingestTimeMs),
    eventTimeMs: record.eventTimeMs,
    ingestTimeMs: record.ingestTimeMs,
    headers: record.headers,
    payloadBytes: record.payload.byteLength,
    payloadEncoding: payload.encoding,
    payload: payload.value,
  };
}

// ----- stats ---------------------------------------------------------------------------

export interface LogStatsReport {
  readonly path: string;
  readonly usedBytes: number;
  readonly files: { readonly records: number; readonly wal: number; readonly index: number };
  readonly streams: { stream: string; topics: number; records: number; bytes: number; lastPosition: number }[];
}

export async function logStats(target: LogTarget, options: { json?: boolean }, io: LogCommandIo): Promise<LogStatsReport> {
  const { indexPathFor } = await import('../edge/log/index.js');
  const report = await withLog(target, async (log): Promise<LogStatsReport> => ({
    path: target.path,
    usedBytes: log.usedBytes(),
    files: {
      records: fileBytes(target.path),
      wal: fileBytes(`${target.path}-wal`),
      index: fileBytes(indexPathFor(target.path)) + fileBytes(`${indexPathFor(target.path)}-wal`),
    },
    streams: log.listStreams().map((stream) => ({ stream, ...log.streamStats(stream)! })),
  }));
  if (options.json) {
    io.out.write(`${JSON.stringify(report)}\n`);
    return report;
  }
  const topics = report.streams.reduce((sum, s) => sum + s.topics, 0);
  const records = report.streams.reduce((sum, s) => sum + s.records, 0);
  io.out.write(
    `log ${report.path}: ${report.streams.length} streams, ${topics} topics, ${records} records; ` +
      `${formatBytes(report.usedBytes)} used (records file ${formatBytes(report.files.records)}, ` +
      `WAL ${formatBytes(report.files.wal)}, topic index ${formatBytes(report.files.index)})\n`,
  );
  if (report.streams.length > 0) {
    const rows = [
      ['stream', 'topics', 'records', 'payload bytes', 'last position'],
      ...report.streams.map((s) => [s.stream, String(s.topics), String(s.records), formatBytes(s.bytes), String(s.lastPosition)]),
    ];
    io.out.write(`${table(rows, new Set([1, 2, 3, 4]))}\n`);
  }
  return report;
}

// ----- inspect -------------------------------------------------------------------------

export interface InspectOptions {
  readonly from?: number;
  readonly limit?: number;
  readonly json?: boolean;
}

export async function logInspect(
  target: LogTarget,
  stream: string,
  topic: string | undefined,
  options: InspectOptions,
  io: LogCommandIo,
): Promise<void> {
  await withLog(target, async (log) => {
    requireStream(log, stream, target.path);
    if (topic === undefined) {
      inspectTopics(log, stream, options, io);
      return;
    }
    const stats = log.topicStats(stream, topic);
    if (stats === undefined) {
      throw new PortcallError('USAGE', `stream "${stream}" of ${target.path} has no topic "${topic}" (list them: portcall log inspect ${stream})`);
    }
    const limit = options.limit ?? DEFAULT_INSPECT_LIMIT;
    let from = options.from ?? Math.max(stats.firstOffset, stats.nextOffset - limit);
    if (from < stats.firstOffset) {
      io.err.write(`offsets below ${stats.firstOffset} of ${stream}/${topic} were removed by retention; starting at ${stats.firstOffset}\n`);
      from = stats.firstOffset;
    }
    if (from >= stats.nextOffset) {
      io.err.write(`${stream}/${topic} holds offsets ${stats.firstOffset}..${stats.nextOffset - 1}; nothing at ${from} or after\n`);
      return;
    }
    let printed = 0;
    while (printed < limit) {
      const records = await log.readTopic(stream, topic, from, { maxRecords: Math.min(READ_PAGE_RECORDS, limit - printed) });
      if (records.length === 0) break;
      for (const record of records) {
        io.out.write(options.json ? `${JSON.stringify(recordJson(record))}\n` : formatRecordBlock(record));
        printed += 1;
      }
      from = records.at(-1)!.offset + 1;
    }
  });
}

function inspectTopics(log: SqliteLog, stream: string, options: InspectOptions, io: LogCommandIo): void {
  const names = log
    .listTopics(stream)
    .map((t) => t.topic)
    .sort();
  const shown = options.limit === undefined ? names : names.slice(0, options.limit);
  const stats = shown.map((name) => log.topicStats(stream, name)!);
  if (options.json) {
    for (const s of stats) {
      io.out.write(
        `${JSON.stringify({
          stream: s.stream,
          topic: s.topic,
          firstOffset: s.firstOffset,
          nextOffset: s.nextOffset,
          count: s.count,
          bytes: s.bytes,
          lastAppend: s.lastAppendMs === undefined ? null : iso(s.lastAppendMs),
        })}\n`,
      );
    }
    return;
  }
  const rows = [
    ['topic', 'first offset', 'next offset', 'records', 'payload bytes', 'last append'],
    ...stats.map((s) => [s.topic, String(s.firstOffset), String(s.nextOffset), String(s.count), formatBytes(s.bytes), iso(s.lastAppendMs)]),
  ];
  io.out.write(`${table(rows, new Set([1, 2, 3, 4]))}\n`);
  if (shown.length < names.length) io.err.write(`(${shown.length} of ${names.length} topics shown; --limit)\n`);
}

function formatRecordBlock(record: LogRecord): string {
  const payload = decodePayload(record.payload);
  const headers = Object.keys(record.headers).length === 0 ? '' : `  headers: ${JSON.stringify(record.headers)}\n`;
  const body = payload.encoding === 'json' ? JSON.stringify(payload.value, null, 2) : payload.value;
  return (
    `${record.stream}/${record.topic} @ ${record.offset}  origin ${record.origin}\n` +
    `  event ${iso(record.eventTimeMs)}  ingest ${iso(record.ingestTimeMs)}\n` +
    headers +
    `  payload (${record.payload.byteLength} bytes, ${payload.encoding === 'json' ? 'JSON' : 'base64'}):\n` +
    `${body
      .split('\n')
      .map((line) => `    ${line}`)
      .join('\n')}\n\n`
  );
}

/** One line per record, for `tail`. */
export function formatRecordLine(record: LogRecord): string {
  const payload = decodePayload(record.payload);
  const headers = Object.keys(record.headers).length === 0 ? '' : ` ${JSON.stringify(record.headers)}`;
  const body = payload.encoding === 'json' ? JSON.stringify(payload.value) : `base64:${payload.value}`;
  return `${iso(record.ingestTimeMs)} ${record.stream}/${record.topic}@${record.offset} ${record.origin}${headers} ${body}`;
}

// ----- tail ----------------------------------------------------------------------------

export interface TailOptions {
  readonly fromStart?: boolean;
  readonly json?: boolean;
  /** How long to wait for news before looking at the file again (another process may be writing). */
  readonly pollMs?: number;
}

/**
 * Follows a stream until `signal` aborts. New records of this process arrive through
 * `waitForRecords`; records appended by another process (the running site) are found by
 * reading the stream again every `pollMs`.
 */
export async function logTail(target: LogTarget, stream: string, options: TailOptions, io: LogCommandIo, signal: AbortSignal): Promise<number> {
  const pollMs = options.pollMs ?? 200;
  let printed = 0;
  await withLog(target, async (log) => {
    requireStream(log, stream, target.path);
    let position = options.fromStart ? 0 : log.streamStats(stream)!.lastPosition;
    io.err.write(`following ${stream} of ${target.path} from position ${position}; Ctrl-C stops\n`);
    while (!signal.aborted) {
      const page = await log.readStream(stream, position, { maxRecords: READ_PAGE_RECORDS });
      for (const record of page.records) {
        io.out.write(`${options.json ? JSON.stringify(recordJson(record)) : formatRecordLine(record)}\n`);
        printed += 1;
      }
      position = page.nextPosition;
      if (page.records.length > 0) continue;
      const aborted = new Promise<boolean>((resolve) => signal.addEventListener('abort', () => resolve(false), { once: true }));
      await Promise.race([log.waitForRecords(stream, position, pollMs), aborted]);
    }
  });
  return printed;
}

// ----- verify --------------------------------------------------------------------------

export async function logVerify(target: LogTarget, options: { json?: boolean }, io: LogCommandIo): Promise<boolean> {
  const { verifyLog } = await import('../edge/log/index.js');
  const startedMs = Date.now();
  const report = verifyLog(target.path, (line) => io.err.write(`${line}\n`));
  const seconds = ((Date.now() - startedMs) / 1000).toFixed(1);
  if (options.json) {
    io.out.write(`${JSON.stringify({ path: target.path, ...report })}\n`);
  } else if (report.ok) {
    const sparse = report.sparseTopics > 0 ? ` (${report.sparseTopics} sparse: a filtered feed's, offsets unique but not dense)` : '';
    io.out.write(`OK: ${target.path}: ${report.streams} streams, ${report.topics} topics${sparse}, ${report.records} records checked in ${seconds} s\n`);
  } else {
    io.out.write(`PROBLEMS in ${target.path} (${report.problems.length}${report.problems.length >= 100 ? ', first 100 shown' : ''}):\n`);
    for (const problem of report.problems) io.out.write(`  ${problem}\n`);
  }
  return report.ok;
}

// ----- registration --------------------------------------------------------------------

type WithTarget<T> = T & LogTargetOptions;

const targetHelp =
  '\nThe log is the records file --path, or <dataDir>/<site>/log.sqlite of the site configuration\n' +
  '--config (with PORTCALL_... overrides). Reads only: safe while the site runs.';

function withTargetOptions(command: Command): Command {
  return command
    .option('-p, --path <file>', 'the records file (log.sqlite)')
    .option('-c, --config <file>', 'site configuration (YAML): the log is <dataDir>/<site>/log.sqlite');
}

/** Adds `portcall log …` to the command line. */
export function registerLogCommand(program: Command, io: LogCommandIo = { out: process.stdout, err: process.stderr }): Command {
  const log = program
    .command('log')
    .description("Look into a site's embedded log (SQLite): stats, inspect a stream or topic, tail a stream, verify")
    .addHelpText('after', targetHelp);

  withTargetOptions(log.command('stats'))
    .description('Per stream: topics, records, payload bytes and last position; the log\'s used bytes')
    .option('--json', 'one JSON object instead of a table')
    .addHelpText('after', `${targetHelp}\n\nExample: portcall log stats --config config/aurora.yaml`)
    .action(async (options: WithTarget<{ json?: boolean }>) => {
      await logStats(await resolveLogTarget(options), options, io);
    });

  withTargetOptions(log.command('inspect'))
    .description('Without a topic: the topics of a stream with their offsets, sizes and last append time. With a topic: its records')
    .argument('<stream>', 'stream name, e.g. containers')
    .argument('[topic]', 'topic name, e.g. a container id')
    .option('--from <offset>', 'first offset to print (default: the last --limit records)', wholeNumber('--from', 0))
    .option('--limit <n>', `most records (or topics) to print (records default ${DEFAULT_INSPECT_LIMIT})`, wholeNumber('--limit', 1))
    .option('--json', 'one JSON object per line; payloads that are JSON stay JSON, others are base64')
    .addHelpText(
      'after',
      `${targetHelp}\n\nExamples:\n  portcall log inspect containers --path .data/AURORA/log.sqlite\n` +
        '  portcall log inspect containers Y01 --from 0 --limit 100 --json --config config/aurora.yaml',
    )
    .action(async (stream: string, topic: string | undefined, options: WithTarget<InspectOptions>) => {
      await logInspect(await resolveLogTarget(options), stream, topic, options, io);
    });

  withTargetOptions(log.command('tail'))
    .description('Follow a stream live, one line per record, until Ctrl-C')
    .argument('<stream>', 'stream name, e.g. alerts')
    .option('--from-start', 'print the whole stream first (default: only records appended from now on)')
    .option('--json', 'one JSON object per line')
    .addHelpText('after', `${targetHelp}\n\nExample: portcall log tail alerts --config config/aurora.yaml`)
    .action(async (stream: string, options: WithTarget<TailOptions>) => {
      const target = await resolveLogTarget(options);
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await logTail(target, stream, options, io, stop.signal);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });

  withTargetOptions(log.command('verify'))
    .description("Check the log: SQLite's integrity check, then dense offsets and unique identities per topic, and the topic index")
    .option('--json', 'print the report as one JSON object')
    .addHelpText('after', `${targetHelp}\nProgress goes to stderr. Exit code 0 when OK, 1 when problems were found.\n\nExample: portcall log verify --path .data/AURORA/log.sqlite`)
    .action(async (options: WithTarget<{ json?: boolean }>) => {
      const ok = await logVerify(await resolveLogTarget(options), options, io);
      if (!ok) process.exitCode = 1;
    });

  return log;
}
