/**
 * `portcall verify --sites <url,url,...>`: compares sites topic by topic, over each site's
 * HTTP API (GET /v1/summaries, read-api/summary-routes.ts): which topics each holds, to which
 * offset, and a hash of their records. Prints every difference; exit code 1 when there is
 * any, 2 when a site cannot be asked.
 */
import { InvalidArgumentError, type Command } from 'commander';

export interface TopicSummary {
  readonly topic: string;
  readonly firstOffset: number;
  readonly nextOffset: number;
  readonly records: number;
  readonly hash: string;
}

function siteList(raw: string): string[] {
  const urls = raw.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  if (urls.length < 2) throw new InvalidArgumentError('--sites needs at least two URLs, comma-separated');
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new InvalidArgumentError(`--sites: ${url} is not a URL (http://host:port)`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new InvalidArgumentError(`--sites: ${url} must be http:// or https://`);
  }
  return urls.map((url) => url.replace(/\/+$/, ''));
}

class SiteError extends Error {}

async function getJson<T>(url: string, token: string | undefined): Promise<T> {
  for (let attempt = 0; ; attempt += 1) {
    let response: Response;
    try {
      response = await fetch(url, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
    } catch (error) {
      throw new SiteError(`${url}: ${(error as Error).message}`);
    }
    // A store catching up answers 503 with Retry-After: wait a little, a few times.
    if (response.status === 503 && attempt < 5) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    if (!response.ok) throw new SiteError(`${url}: HTTP ${response.status} ${(await response.text()).slice(0, 200)}`);
    return (await response.json()) as T;
  }
}

/** Every topic summary of a stream at one site, page by page. */
async function summaries(site: string, stream: string, token: string | undefined): Promise<Map<string, TopicSummary>> {
  const result = new Map<string, TopicSummary>();
  let after: string | null = '';
  while (after !== null) {
    const page: { topics: TopicSummary[]; after: string | null } = await getJson(
      `${site}/v1/summaries/${encodeURIComponent(stream)}?after=${encodeURIComponent(after)}`,
      token,
    );
    for (const topic of page.topics) result.set(topic.topic, topic);
    after = page.after;
  }
  return result;
}

function describe(summary: TopicSummary | undefined): string {
  if (summary === undefined) return 'missing';
  return `offsets ${summary.firstOffset}..${summary.nextOffset - 1} (${summary.records} records) hash ${summary.hash.slice(0, 12)}`;
}

export interface VerifyReport {
  readonly sites: readonly string[];
  readonly streams: number;
  readonly topics: number;
  readonly differences: string[];
  /** Records each site holds in the streams compared (the sum of its topics' summaries), by site name. */
  readonly records: Record<string, number>;
  /** Each site's summaries, by site URL then stream: a caller that also needs counts need not ask again. */
  readonly summaries: ReadonlyMap<string, ReadonlyMap<string, ReadonlyMap<string, TopicSummary>>>;
}

export async function verifySites(sites: readonly string[], options: { streams?: readonly string[]; token?: string } = {}): Promise<VerifyReport> {
  const names: string[] = [];
  const streams = new Set<string>(options.streams ?? []);
  for (const site of sites) {
    const listing = await getJson<{ site: string; streams: { stream: string }[] }>(`${site}/v1/summaries`, options.token);
    names.push(listing.site);
    if (options.streams === undefined) for (const { stream } of listing.streams) streams.add(stream);
  }
  const label = (index: number) => `${names[index]} (${sites[index]})`;
  const differences: string[] = [];
  let topics = 0;
  const records: Record<string, number> = Object.fromEntries(names.map((name) => [name, 0]));
  const bySite = new Map(sites.map((site) => [site, new Map<string, ReadonlyMap<string, TopicSummary>>()]));
  for (const stream of [...streams].sort()) {
    const perSite = await Promise.all(sites.map((site) => summaries(site, stream, options.token)));
    perSite.forEach((map, index) => {
      bySite.get(sites[index]!)!.set(stream, map);
      for (const summary of map.values()) records[names[index]!]! += summary.records;
    });
    const all = new Set<string>();
    for (const map of perSite) for (const topic of map.keys()) all.add(topic);
    topics += all.size;
    for (const topic of [...all].sort()) {
      const entries = perSite.map((map) => map.get(topic));
      const first = entries[0];
      const same = entries.every(
        (entry) =>
          entry !== undefined &&
          first !== undefined &&
          entry.nextOffset === first.nextOffset &&
          entry.firstOffset === first.firstOffset &&
          entry.hash === first.hash,
      );
      if (same) continue;
      differences.push(`${stream}/${topic}: ${entries.map((entry, index) => `${label(index)} ${describe(entry)}`).join('; ')}`);
    }
  }
  return { sites: names, streams: streams.size, topics, differences, records, summaries: bySite };
}

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description('Compare sites topic by topic (offsets and content hashes) over their HTTP APIs; exit 1 on any difference')
    .requiredOption('--sites <urls>', 'the sites\u2019 HTTP base URLs, comma-separated, e.g. http://tokyo:8080,http://singapore:8080', siteList)
    .option('--stream <name...>', 'only these streams (default: every stream any site holds)')
    .option('--token <token>', 'bearer token sent to every site (when their read API wants one)')
    .addHelpText(
      'after',
      '\nEach difference is printed on its own line: the topic, then each site\u2019s offsets, record count and hash (or "missing").\nExit codes: 0 identical, 1 differences, 2 a site could not be asked.\n\nExample:\n  portcall verify --sites http://127.0.0.1:8080,http://127.0.0.1:9080',
    )
    .action(async (options: { sites: string[]; stream?: string[]; token?: string }) => {
      let report: VerifyReport;
      try {
        report = await verifySites(options.sites, { ...(options.stream === undefined ? {} : { streams: options.stream }), ...(options.token === undefined ? {} : { token: options.token }) });
      } catch (error) {
        if (!(error instanceof SiteError)) throw error;
        process.stderr.write(`portcall verify: cannot ask ${error.message}\n`);
        process.exitCode = 2;
        return;
      }
      for (const line of report.differences) process.stdout.write(`${line}\n`);
      const summary = `${report.streams} streams, ${report.topics} topics compared across ${report.sites.length} sites (${report.sites.join(', ')})`;
      if (report.differences.length === 0) {
        process.stdout.write(`identical: ${summary}\n`);
      } else {
        process.stdout.write(`${report.differences.length} topics differ: ${summary}\n`);
        process.exitCode = 1;
      }
    });
}
