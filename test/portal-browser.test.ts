/**
 * The portal in a real browser (Debian's Chromium, driven by playwright-core) against a real
 * `portcall shore` with access control and its alert detectors, holding the voyage of
 * DESIGN.md from the fleet simulation (sent as a ship's link would, POST /v1/batches):
 * ToyCo signs in and sees only its containers on the map and in lists, opens Y07 after the
 * overboard alert and sees its last-seen position; RedCo signs in and finds nothing of Y07;
 * a reading that reaches the site appears in an open page without a reload, within 2 s;
 * carrier operations see the ship, every container and the site's health.
 * Screenshots go to test-artifacts/portal/.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogRecord } from '../core/index.js';
import { FleetModel, voyageScenario } from '../devices/fleet/index.js';
import { BATCH_CONTENT_TYPE, Compression, encodeBatch } from '../edge/link/index.js';
import { startPortcall, writeYaml, type PortcallProcess } from './support/portcall-process.js';

const CHROMIUM = '/usr/bin/chromium';
const PEER_TOKEN = 'aurora-ingest-token-0123456789';
const ADMIN_TOKEN = 'bootstrap-admin-token-0123456789abcdef';
const ROB_PASSWORD = 'redco rob keeps reefers cold';
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'portal');
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.error(`\n*** portal browser test SKIPPED: ${CHROMIUM} is missing (apt-get install -y chromium) ***\n`);

describe.runIf(!haveChromium && process.env.CI === 'true')('portal in a real browser (CI)', () => {
  it('has Debian\'s Chromium to run in', () => {
    expect.fail(`${CHROMIUM} is missing; .ci/run installs it (apt-get install -y chromium)`);
  });
});

/** The voyage as the ship's log would hold it (topic rules of config/aurora.yaml), a reading every 5 simulated minutes. */
function voyage() {
  const scenario = { ...voyageScenario(), readingIntervalS: 300, shipReportIntervalS: 300 };
  const next = new Map<string, number>();
  const records: LogRecord[] = [];
  for (const message of new FleetModel(scenario).advanceTo(Infinity)) {
    const [, stream, topic] = message.topic.split('/') as [string, string, string];
    const key = `${stream}/${topic}`;
    const offset = next.get(key) ?? 0;
    next.set(key, offset + 1);
    records.push({ origin: 'AURORA', stream, topic, offset, eventTimeMs: message.timeMs, ingestTimeMs: message.timeMs, headers: {}, payload: Buffer.from(message.payload) });
  }
  return { records, next };
}

describe.skipIf(!haveChromium)('portal in a real browser', () => {
  let dir: string;
  let shore: PortcallProcess;
  let url: string;
  let context: BrowserContext;
  const tokens: Record<string, string> = {};
  let data: ReturnType<typeof voyage>;

  /** Sends records as a ship's link would: at least once (a batch is resent after a connection error; the site drops duplicates). */
  const post = async (records: LogRecord[]) => {
    const body = encodeBatch({ sender: 'AURORA', records }, Compression.None);
    for (let attempt = 1; ; attempt += 1) {
      try {
        const response = await fetch(new URL('/v1/batches', url), {
          method: 'POST',
          headers: { 'content-type': BATCH_CONTENT_TYPE, authorization: `Bearer ${PEER_TOKEN}` },
          body,
        });
        expect(response.status, await response.text()).toBe(200);
        return;
      } catch (error) {
        if (attempt >= 3 || !(error instanceof TypeError)) throw new Error(`${(error as Error).message}; shore output:\n${shore.output()}`, { cause: error });
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  };
  const admin = async (path: string, body: unknown) => {
    const response = await fetch(new URL(path, url), { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await response.text();
    expect(response.status, `${path} ${text}`).toBeLessThan(300);
    return JSON.parse(text) as Record<string, unknown>;
  };
  const portalApi = async (path: string, token: string) => {
    const response = await fetch(new URL(`/portal/api/${path}`, url), { headers: { authorization: `Bearer ${token}` } });
    return { status: response.status, body: await response.text() };
  };
  const signIn = async (page: Page, token: string) => {
    await page.goto(`${url}/portal/`);
    await page.getByLabel('Access token').fill(token);
    await page.getByRole('button', { name: 'Sign in with token' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
  };

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'portcall-portal-'));
    writeFileSync(join(dir, 'access.key'), 'a-key-shared-by-the-carrier-sites-0123456789\n');
    writeFileSync(join(dir, 'admin.token'), `${ADMIN_TOKEN}\n`);
    const config = writeYaml(join(dir, 'hq.yaml'), {
      site: 'HQ',
      dataDir: join(dir, 'data'),
      http: { port: 0 },
      ingest: { peers: [{ site: 'AURORA', token: PEER_TOKEN }] },
      access: { keyFile: join(dir, 'access.key'), bootstrapTokenFile: join(dir, 'admin.token'), readRateLimit: { requests: 100000, windowSeconds: 60 } },
      detectors: {},
    });
    shore = startPortcall(['shore', '--config', config]);
    [, url] = (await shore.waitFor(/HTTP on (\S+) /)) as unknown as [string, string];

    const from = '2026-03-01T00:00:00Z';
    await admin('/v1/access/orgs', { id: 'bigblue', kind: 'carrier', name: 'Big Blue' });
    await admin('/v1/access/orgs', { id: 'toyco', kind: 'customer', name: 'ToyCo' });
    await admin('/v1/access/orgs', { id: 'redco', kind: 'customer', name: 'RedCo' });
    await admin('/v1/access/principals', { id: 'ops', org: 'bigblue', roles: ['carrier-ops'] });
    await admin('/v1/access/principals', { id: 'alice', org: 'toyco', roles: ['customer'] });
    await admin('/v1/access/principals', { id: 'rob', org: 'redco', roles: ['customer'] });
    for (let n = 1; n <= 10; n += 1) await admin('/v1/access/custody', { container: `Y${String(n).padStart(2, '0')}`, org: 'toyco', from });
    for (const id of ['R01', 'R02', 'R03']) await admin('/v1/access/custody', { container: id, org: 'redco', from });
    for (const principal of ['ops', 'alice', 'rob']) tokens[principal] = (await admin('/v1/access/tokens', { principal })).token as string;
    const password = await fetch(new URL('/v1/access/principals/rob/password', url), {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ password: ROB_PASSWORD }),
    });
    expect(password.status, await password.text()).toBe(200);

    data = voyage();
    for (let index = 0; index < data.records.length; index += 5000) await post(data.records.slice(index, index + 5000));
    // The detectors at the site raise Y07's overboard alert from what arrived.
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const alerts = JSON.parse((await portalApi('alerts', tokens.ops!)).body) as { alerts: { kind: string; subject: string }[] };
      if (alerts.alerts.some((alert) => alert.kind === 'overboard' && alert.subject === 'Y07')) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }

    context = await chromium.launchPersistentContext(join(dir, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await shore?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('ToyCo sees only its containers, Y07 lost overboard with its last-seen position, and live readings', async () => {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) errors.push(message.text());
    });
    await signIn(page, tokens.alice!);

    // The map: only ToyCo's containers, no ship (ToyCo may not read the ships stream).
    await page.locator('#map').waitFor();
    const onMap = await page.locator('#map [data-container]').evaluateAll((marks) => marks.map((mark) => mark.getAttribute('data-container')));
    expect(onMap.sort()).toEqual(['Y01', 'Y02', 'Y03', 'Y04', 'Y05', 'Y06', 'Y07', 'Y08', 'Y09', 'Y10']);
    expect(await page.locator('#map [data-ship]').count()).toBe(0);
    expect(await page.locator('#map path.land').count()).toBeGreaterThan(100);
    await page.screenshot({ path: join(ARTIFACTS, 'toyco-map.png'), fullPage: true });

    await page.getByRole('link', { name: 'Containers' }).click();
    await page.locator('#containers').waitFor();
    const listed = await page.locator('#containers tbody tr').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-container')));
    expect(listed).toEqual(['Y01', 'Y02', 'Y03', 'Y04', 'Y05', 'Y06', 'Y07', 'Y08', 'Y09', 'Y10']);
    await page.screenshot({ path: join(ARTIFACTS, 'toyco-containers.png'), fullPage: true });

    // Y07, after the overboard alert: lost, and where and when it was last seen.
    const alert = (JSON.parse((await portalApi('alerts', tokens.alice!)).body) as { alerts: { kind: string; subject: string; lastSeen: { lat: number; lon: number; ts: string } }[] }).alerts.find(
      (entry) => entry.kind === 'overboard' && entry.subject === 'Y07',
    );
    expect(alert, 'the detectors raised the overboard alert').toBeDefined();
    await page.getByRole('link', { name: 'Y07', exact: true }).click();
    await expect.poll(() => page.locator('#container-status').textContent()).toBe('lost overboard');
    const box = page.getByRole('alert').filter({ hasText: 'Lost overboard' });
    const { lat, lon, ts } = alert!.lastSeen;
    await expect.poll(() => box.textContent()).toContain(`${Math.abs(lat).toFixed(3)}° S, ${Math.abs(lon).toFixed(3)}° E`);
    expect(await box.textContent()).toContain(new Date(ts).toISOString().replace('T', ' ').slice(0, 16));
    expect(await page.locator('#chart-temp canvas').count()).toBeGreaterThan(0);
    const steps = await page.locator('#timeline li strong').allTextContents();
    expect(steps.slice(0, 3)).toEqual(['booked', 'loaded', 'at sea']);
    await page.screenshot({ path: join(ARTIFACTS, 'toyco-y07-overboard.png'), fullPage: true });

    // The alerts page lists it with its last-seen position too.
    await page.getByRole('link', { name: 'Alerts' }).click();
    await expect.poll(() => page.locator('li[data-alert]').filter({ hasText: 'Lost overboard' }).count()).toBe(1);
    expect(await page.locator('li[data-alert]').evaluateAll((items) => items.every((item) => /\bY\d\d\b/.test(item.textContent ?? '')))).toBe(true);

    // Live: Y05 open; a reading reaches the site; it shows without a reload.
    await page.goto(`${url}/portal/#/container/Y05`);
    await page.locator('#latest-temp').waitFor();
    await expect.poll(() => page.locator('#live-status').textContent()).toContain('Live updates on');
    const last = data.records.filter((record) => record.stream === 'containers' && record.topic === 'Y05').at(-1)!;
    const reading = { ...(JSON.parse(last.payload.toString()) as Record<string, unknown>), ts: last.eventTimeMs + 300_000, tempC: 31.7, humidityPct: 77 };
    const sentAt = Date.now();
    await post([{ ...last, offset: data.next.get('containers/Y05')!, eventTimeMs: last.eventTimeMs + 300_000, ingestTimeMs: Date.now(), payload: Buffer.from(JSON.stringify(reading)) }]);
    await page.locator('#latest-temp', { hasText: '31.7 °C' }).waitFor({ timeout: 5000 });
    const shownAfterMs = Date.now() - sentAt;
    console.log(`portal: a live reading showed ${shownAfterMs} ms after the site acknowledged its batch`);
    expect(shownAfterMs).toBeLessThan(2000);
    await page.screenshot({ path: join(ARTIFACTS, 'toyco-y05-live.png'), fullPage: true });

    // A phone-sized screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${url}/portal/#/container/Y07`);
    await page.locator('#container-status').waitFor();
    expect(await page.locator('html').evaluate((root) => root.scrollWidth)).toBeLessThanOrEqual(390);
    await page.screenshot({ path: join(ARTIFACTS, 'toyco-y07-phone.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  it('carrier operations see the ship and every container on the map, and the site\'s health', async () => {
    const page = await context.newPage();
    await signIn(page, tokens.ops!);
    await page.locator('#map').waitFor();
    expect(await page.locator('#map [data-ship]').evaluateAll((marks) => marks.map((mark) => mark.getAttribute('data-ship')))).toEqual(['AURORA']);
    const onMap = await page.locator('#map [data-container]').evaluateAll((marks) => marks.map((mark) => mark.getAttribute('data-container')));
    expect(onMap).toEqual(expect.arrayContaining(['B01', 'R01', 'Y07']));
    expect(onMap).toHaveLength(18);
    await page.screenshot({ path: join(ARTIFACTS, 'ops-map.png'), fullPage: true });
    // Live on the map: B01 reports from somewhere new and its mark moves without a reload.
    await expect.poll(() => page.locator('#live-status').textContent()).toContain('Live updates on');
    const last = data.records.filter((record) => record.stream === 'containers' && record.topic === 'B01').at(-1)!;
    const offset = data.next.get('containers/B01')!;
    data.next.set('containers/B01', offset + 1);
    const moved = { ...(JSON.parse(last.payload.toString()) as Record<string, unknown>), ts: last.eventTimeMs + 300_000, lat: -20, lon: 160 };
    await post([{ ...last, offset, eventTimeMs: last.eventTimeMs + 300_000, payload: Buffer.from(JSON.stringify(moved)) }]);
    await expect.poll(() => page.locator('#map a[data-container="B01"] circle').getAttribute('cx'), { timeout: 2000 }).toBe(String(160 + 180));
    expect(await page.locator('#map a[data-container="B01"] circle').getAttribute('cy')).toBe(String(90 + 20));
    await page.getByRole('link', { name: 'Operations' }).click();
    await expect.poll(() => page.locator('#site-health').textContent()).toBe('ok');
    await page.screenshot({ path: join(ARTIFACTS, 'ops-operations.png'), fullPage: true });
    await page.close();
  }, 30_000);

  it('RedCo signs in by password and finds nothing of Y07, in pages or in the API', async () => {
    const page = await context.newPage();
    // RedCo signs in with name and password (a wrong one first), not a token.
    await page.goto(`${url}/portal/`);
    await page.getByLabel('Name', { exact: true }).fill('rob');
    await page.getByLabel('Password', { exact: true }).fill('not robs password');
    await page.getByRole('button', { name: 'Sign in with password' }).click();
    await page.getByRole('alert').filter({ hasText: 'Wrong name or password.' }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'sign-in-refused.png'), fullPage: true });
    await page.getByLabel('Password', { exact: true }).fill(ROB_PASSWORD);
    await page.getByRole('button', { name: 'Sign in with password' }).click();
    await expect.poll(() => page.locator('#who-name').textContent()).toContain('rob');
    // The session token is kept as a pasted token is, for this tab only.
    expect(await page.evaluate(() => (globalThis as unknown as { sessionStorage: { getItem(key: string): string | null } }).sessionStorage.getItem('portcall-token'))).toMatch(/^pcs_/);
    await page.locator('#map').waitFor();
    const onMap = await page.locator('#map [data-container]').evaluateAll((marks) => marks.map((mark) => mark.getAttribute('data-container')));
    expect(onMap.sort()).toEqual(['R01', 'R02', 'R03']);
    await page.getByRole('link', { name: 'Containers' }).click();
    await page.locator('#containers').waitFor();
    expect(await page.locator('#containers tbody tr').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-container')))).toEqual(['R01', 'R02', 'R03']);
    await page.getByRole('link', { name: 'Alerts' }).click();
    await page.getByRole('heading', { name: /Lost overboard \(0\)/ }).waitFor();
    expect(await page.locator('main').textContent()).not.toContain('Y07');
    await page.goto(`${url}/portal/#/container/Y07`);
    await page.getByText('No container Y07 to show.').waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'redco-y07-nothing.png'), fullPage: true });
    // Through the API: exactly the answer of a container that does not exist.
    const y07 = await portalApi('containers/Y07', tokens.rob!);
    expect(y07.status).toBe(404);
    expect(y07).toEqual(await portalApi('containers/Z99', tokens.rob!));
    expect((await portalApi('alerts', tokens.rob!)).body).not.toContain('Y07');
    expect((await portalApi('fleet', tokens.rob!)).body).not.toContain('Y07');
    // Without a valid token there is nothing at all.
    expect(await portalApi('containers/Y07', 'pct_0000000000000000_nope')).toEqual(y07);
    await page.close();
  }, 30_000);
});
