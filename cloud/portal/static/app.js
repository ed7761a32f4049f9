// portcall portal: a small single-page app over /portal/api (see docs/PORTAL.md).
// The server decides what each token may see; this page only shows what it is given.
/* global uPlot, topojson, window, document, location, fetch, sessionStorage, CSS, AbortController, TextDecoder, setTimeout */

const TOKEN_KEY = 'portcall-token';
const $ = (selector) => document.querySelector(selector);
const page = $('#page');
let me;
let current = { name: '', id: '' };
let liveAbort;
let worldFeatures;
const charts = [];

const esc = (value) =>
  String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const when = (iso) => (iso ? new Date(iso).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '—');
const fixed = (value, digits = 1) => (typeof value === 'number' ? value.toFixed(digits) : '—');
const position = (lat, lon) =>
  typeof lat === 'number' && typeof lon === 'number'
    ? `${Math.abs(lat).toFixed(3)}° ${lat < 0 ? 'S' : 'N'}, ${Math.abs(lon).toFixed(3)}° ${lon < 0 ? 'W' : 'E'}`
    : '—';

async function api(path) {
  const response = await fetch(`/portal/api/${path}`, { headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}` } });
  if (response.status === 404) return undefined;
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// ---- sign in -------------------------------------------------------------------------------

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  const response = await fetch('/portal/api/me', { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) {
    sessionStorage.removeItem(TOKEN_KEY);
    return false;
  }
  me = await response.json();
  return true;
}

function showSignIn(message = '') {
  me = undefined;
  liveAbort?.abort();
  $('#signin').hidden = false;
  $('#nav').hidden = true;
  $('#who').hidden = true;
  page.innerHTML = '';
  $('#signin-error').textContent = message;
  $('#principal').focus();
}

// Name and password: the site answers with a session token (pcs_…), kept like a pasted token.
$('#password-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const principal = $('#principal').value.trim();
  const password = $('#password').value;
  $('#password').value = '';
  const response = await fetch('/portal/api/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ principal, password }),
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    const message =
      response.status === 401
        ? 'Wrong name or password.'
        : response.status === 404
          ? 'This site has no access control, so no passwords: any token signs in.'
          : (answer.message ?? `Could not sign in (HTTP ${response.status}).`);
    showSignIn(message);
    $('#principal').value = principal;
    $('#password').focus();
    return;
  }
  const { token } = await response.json();
  if (!(await signIn(token))) {
    showSignIn('Could not sign in.');
    return;
  }
  $('#principal').value = '';
  start();
});

$('#signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const token = $('#token').value.trim();
  if (!(await signIn(token))) {
    showSignIn('That token is not valid here (unknown, revoked or expired).');
    return;
  }
  $('#token').value = '';
  start();
});

$('#sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = '#/';
  showSignIn();
});

function homeOf() {
  if (me.operations || me.roles.includes('customer')) return '#/map';
  if (me.roles.includes('port-authority')) return '#/movements';
  return '#/containers';
}

function start() {
  $('#signin').hidden = true;
  $('#nav').hidden = false;
  $('#who').hidden = false;
  $('#nav-ops').hidden = !me.operations;
  $('#who-name').textContent = `${me.principal} · ${me.orgName ?? me.org}`;
  connectLive();
  if (location.hash === '' || location.hash === '#/' || location.hash === '#') location.hash = homeOf();
  else route();
}

// ---- routing -------------------------------------------------------------------------------

window.addEventListener('hashchange', () => {
  if (me !== undefined) route();
});

async function route() {
  const [, name = '', id = ''] = location.hash.split('/');
  current = { name, id: decodeURIComponent(id) };
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.getAttribute('href') === `#/${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  while (charts.length > 0) charts.pop().destroy();
  try {
    if (name === 'map') await renderMap();
    else if (name === 'containers') await renderContainers();
    else if (name === 'container') await renderContainer(current.id);
    else if (name === 'alerts') await renderAlerts();
    else if (name === 'movements') await renderMovements();
    else if (name === 'ops') await renderOps();
    else location.hash = homeOf();
  } catch (error) {
    page.innerHTML = `<p class="error" role="alert">Could not load this page: ${esc(error.message)}</p>`;
  }
}

// ---- map -----------------------------------------------------------------------------------

async function world() {
  if (worldFeatures === undefined) {
    const atlas = await (await fetch('/portal/vendor/countries-110m.json')).json();
    worldFeatures = topojson.feature(atlas, atlas.objects.countries).features;
  }
  return worldFeatures;
}

const px = (lon) => lon + 180;
const py = (lat) => 90 - lat;

function ringPath(ring) {
  let d = '';
  let previous;
  for (const [lon, lat] of ring) {
    const jump = previous !== undefined && Math.abs(lon - previous) > 180;
    d += `${d === '' || jump ? 'M' : 'L'}${px(lon).toFixed(2)},${py(lat).toFixed(2)}`;
    previous = lon;
  }
  return d + 'Z';
}

function featurePath(geometry) {
  const polygons = geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.type === 'MultiPolygon' ? geometry.coordinates : [];
  return polygons.flatMap((polygon) => polygon.map(ringPath)).join('');
}

function trackPath(points) {
  let d = '';
  let previous;
  for (const [lon, lat] of points) {
    if (typeof lon !== 'number' || typeof lat !== 'number') continue;
    const jump = previous !== undefined && Math.abs(lon - previous) > 180;
    d += `${d === '' || jump ? 'M' : 'L'}${px(lon).toFixed(3)},${py(lat).toFixed(3)}`;
    previous = lon;
  }
  return d;
}

function viewBoxFor(points) {
  // A loop, not Math.min(...values): spreading tens of thousands of points overflows the stack.
  let [minLon, maxLon, minLat, maxLat] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [lon, lat] of points) {
    if (typeof lon !== 'number' || typeof lat !== 'number') continue;
    minLon = Math.min(minLon, lon);
    maxLon = Math.max(maxLon, lon);
    minLat = Math.min(minLat, lat);
    maxLat = Math.max(maxLat, lat);
  }
  if (minLon === Infinity) return '0 0 360 180';
  let [minX, maxX] = [px(minLon), px(maxLon)];
  let [minY, maxY] = [py(maxLat), py(minLat)];
  const pad = Math.max(8, (maxX - minX) * 0.15, (maxY - minY) * 0.15);
  minX = Math.max(0, minX - pad);
  maxX = Math.min(360, maxX + pad);
  minY = Math.max(0, minY - pad);
  maxY = Math.min(180, maxY + pad);
  // Keep a 2:1 window at most and at least 4:3 so the map reads as a map.
  const width = Math.max(maxX - minX, (maxY - minY) * 4 / 3);
  const height = Math.max(maxY - minY, width / 2);
  return `${minX.toFixed(1)} ${minY.toFixed(1)} ${width.toFixed(1)} ${height.toFixed(1)}`;
}

async function renderMap() {
  const [features, fleet] = await Promise.all([world(), api('fleet')]);
  const ships = fleet?.ships ?? [];
  const containers = fleet?.containers ?? [];
  const all = [...ships.flatMap((s) => s.track), ...containers.flatMap((c) => c.track)];
  const land = features.map((feature) => `<path class="land" d="${featurePath(feature.geometry)}"><title>${esc(feature.properties?.name)}</title></path>`).join('');
  const shipMarks = ships
    .map(
      (ship) => `<path class="track ship" d="${trackPath(ship.track)}"/>
      <g role="img" aria-label="Ship ${esc(ship.id)} at ${esc(position(ship.lat, ship.lon))}, ${esc(ship.status ?? '')}" data-ship="${esc(ship.id)}">
        <title>Ship ${esc(ship.id)} · ${esc(position(ship.lat, ship.lon))} · ${esc(when(ship.at))}</title>
        <path class="ship-mark" transform="translate(${px(ship.lon)},${py(ship.lat)})" d="M0,-1.6L1.1,1.1L-1.1,1.1Z"/>
      </g>`,
    )
    .join('');
  const containerMarks = containers
    .map(
      (c) => `<path class="track container" d="${trackPath(c.track)}"/>
      <a href="#/container/${encodeURIComponent(c.id)}" aria-label="Container ${esc(c.id)}${c.status ? `, ${esc(c.status)}` : ''}, at ${esc(position(c.lat, c.lon))}" data-container="${esc(c.id)}">
        <title>${esc(c.id)} · ${esc(position(c.lat, c.lon))} · ${esc(when(c.at))}</title>
        <circle class="container-mark${c.status ? ' lost' : ''}" cx="${px(c.lon)}" cy="${py(c.lat)}" r=".6"/>
      </a>`,
    )
    .join('');
  page.innerHTML = `
    <h1>Fleet map</h1>
    <div class="card">
      <svg class="map" id="map" viewBox="${viewBoxFor(all)}" role="group" aria-label="Map of ships and containers">
        ${land}${shipMarks}${containerMarks}
      </svg>
      <p class="legend">${ships.length} ship${ships.length === 1 ? '' : 's'} (dark triangles, tracks solid), ${containers.length} container${containers.length === 1 ? '' : 's'} (yellow dots, tracks dashed; red: lost). Base map: Natural Earth via world-atlas.</p>
    </div>
    <div class="card table-wrap"><h2>On the map</h2>
      <ul id="map-list">${ships.map((s) => `<li>Ship ${esc(s.id)}: ${esc(position(s.lat, s.lon))}, ${esc(s.status ?? '')} (${esc(when(s.at))})</li>`).join('')}
      ${containers.map((c) => `<li><a href="#/container/${encodeURIComponent(c.id)}">${esc(c.id)}</a>: ${esc(position(c.lat, c.lon))}${c.status ? ` — ${esc(c.status)}` : ''} (${esc(when(c.at))})</li>`).join('')}</ul>
    </div>`;
}

// ---- containers ----------------------------------------------------------------------------

async function renderContainers() {
  const list = (await api('containers'))?.containers ?? [];
  page.innerHTML = `
    <h1>Containers</h1>
    <div class="card table-wrap">
      ${list.length === 0 ? '<p>No containers to show.</p>' : `
      <table id="containers">
        <caption class="legend">${list.length} container${list.length === 1 ? '' : 's'}</caption>
        <thead><tr><th scope="col">Container</th><th scope="col">Status</th><th scope="col">Temperature</th><th scope="col">Last reading</th><th scope="col">Alerts</th></tr></thead>
        <tbody>${list
          .map(
            (c) => `<tr data-container="${esc(c.id)}">
              <th scope="row"><a href="#/container/${encodeURIComponent(c.id)}">${esc(c.id)}</a></th>
              <td><span class="status${c.status === 'lost overboard' ? ' lost' : ''}">${esc(c.status)}</span></td>
              <td class="temp">${c.latest ? `${fixed(c.latest.tempC)} °C` : '—'}</td>
              <td class="at">${esc(when(c.latest?.at))}</td>
              <td>${c.alerts}</td></tr>`,
          )
          .join('')}</tbody>
      </table>`}
    </div>`;
}

function statusFacts(latest) {
  if (!latest) return '<p>No readings to show.</p>';
  return `<dl class="facts" id="current">
    <dt>Last reading</dt><dd id="latest-at">${esc(when(latest.at))}</dd>
    <dt>Temperature</dt><dd id="latest-temp">${fixed(latest.tempC)} °C</dd>
    ${latest.setpointC !== undefined ? `<dt>Setpoint</dt><dd id="latest-setpoint">${fixed(latest.setpointC)} °C</dd>` : ''}
    <dt>Humidity</dt><dd id="latest-humidity">${fixed(latest.humidityPct, 0)} %</dd>
    <dt>Door</dt><dd id="latest-door">${esc(latest.door ?? '—')}</dd>
    <dt>Shock</dt><dd id="latest-shock">${fixed(latest.shockG, 2)} g</dd>
    <dt>Position</dt><dd id="latest-position">${esc(position(latest.lat, latest.lon))}</dd>
  </dl>`;
}

function alertText(alert) {
  if (alert.kind === 'overboard') {
    const seen = alert.lastSeen ?? {};
    return `Lost overboard${alert.ship ? ` from ${esc(alert.ship)}` : ''}. Last seen at <strong class="last-seen">${esc(position(seen.lat, seen.lon))}</strong> on <strong>${esc(when(seen.ts))}</strong>${alert.shockG ? ` after a ${fixed(alert.shockG, 1)} g shock` : ''}.`;
  }
  if (alert.kind === 'temperature-excursion') return `Temperature excursion: ${fixed(alert.tempC)} °C against a setpoint of ${fixed(alert.setpointC)} °C since ${esc(when(alert.since))}.`;
  if (alert.kind === 'door-open-at-sea') return `Door open at sea${alert.ship ? ` aboard ${esc(alert.ship)}` : ''} at ${esc(position(alert.lat, alert.lon))}.`;
  if (alert.kind === 'silence') return `Silent sensor: nothing from ${esc(alert.stream ?? '')}/${esc(alert.topic ?? alert.subject)} for ${Math.round((alert.silentForMs ?? 0) / 60000)} min.`;
  return esc(alert.kind);
}

async function renderContainer(id) {
  const c = await api(`containers/${encodeURIComponent(id)}`);
  if (c === undefined) {
    page.innerHTML = `<h1>Container ${esc(id)}</h1><p class="card" role="alert">No container ${esc(id)} to show.</p>`;
    return;
  }
  page.innerHTML = `
    <h1>Container ${esc(c.id)} <span class="status${c.status === 'lost overboard' ? ' lost' : ''}" id="container-status">${esc(c.status)}</span></h1>
    ${c.alertList.map((a) => `<div class="alert-box" role="alert">${alertText(a)} <small>(${esc(when(a.at))})</small></div>`).join('')}
    <div class="grid2">
      <div class="card"><h2>Current status</h2>${c.owner ? `<p>Owner: ${esc(c.owner)}</p>` : ''}<div id="status-facts">${statusFacts(c.latest)}</div></div>
      <div class="card"><h2>Timeline</h2><ol class="timeline" id="timeline">${c.timeline
        .map((e) => `<li><strong>${esc(e.step ?? e.status ?? 'update')}</strong>${e.port ? ` · ${esc(e.port)}` : ''}${e.ship ? ` · ${esc(e.ship)}` : ''}${e.from ? ` · from ${esc(e.from)}` : ''}${e.to ? ` · to ${esc(e.to)}` : ''}<br><small>${esc(when(e.at))}</small></li>`)
        .join('')}</ol></div>
    </div>
    ${c.series.length === 0 ? '' : `<div class="card charts" id="charts">
      <div class="chart" id="chart-temp"><h3>Temperature and setpoint (°C)</h3></div>
      <div class="chart" id="chart-humidity"><h3>Humidity (%)</h3></div>
      <div class="chart" id="chart-shock"><h3>Shock (g)</h3></div>
    </div>`}`;
  if (c.series.length > 0) drawCharts(c.series);
}

let chartData;
function drawCharts(series) {
  chartData = series;
  const xs = series.map((p) => Date.parse(p.at) / 1000);
  const col = (key) => series.map((p) => (typeof p[key] === 'number' ? p[key] : null));
  const width = Math.max(260, Math.min(1100, $('#charts').clientWidth - 32));
  const make = (target, label, sets, data) => {
    const chart = new uPlot(
      { width, height: 180, series: [{}, ...sets], axes: [{}, { size: 50 }], scales: { x: { time: true } }, legend: { live: false } },
      [xs, ...data],
      $(target),
    );
    chart.root.setAttribute('role', 'img');
    chart.root.setAttribute('aria-label', label);
    charts.push(chart);
  };
  make('#chart-temp', `Temperature and setpoint over ${series.length} points`, [{ label: 'temperature °C', stroke: '#c0392b', spanGaps: true }, { label: 'setpoint °C', stroke: '#2c7be5', dash: [6, 4], spanGaps: true }], [col('tempC'), col('setpointC')]);
  make('#chart-humidity', 'Humidity', [{ label: 'humidity %', stroke: '#16a085', spanGaps: true }], [col('humidityPct')]);
  make('#chart-shock', 'Shock', [{ label: 'shock g', stroke: '#8e44ad', spanGaps: true }], [col('shockG')]);
}

// ---- alerts, movements, operations ---------------------------------------------------------

const ALERT_SECTIONS = [
  ['overboard', 'Lost overboard'],
  ['temperature-excursion', 'Temperature excursions'],
  ['door-open-at-sea', 'Door open at sea'],
  ['silence', 'Silent sensors'],
];

async function renderAlerts() {
  const alerts = (await api('alerts'))?.alerts ?? [];
  const other = alerts.filter((a) => !ALERT_SECTIONS.some(([kind]) => kind === a.kind));
  const section = (title, items) => `<div class="card"><h2>${esc(title)} (${items.length})</h2>${
    items.length === 0 ? '<p>None.</p>' : `<ul>${items.map((a) => `<li data-alert="${esc(a.id)}"><a href="#/container/${encodeURIComponent(a.subject)}">${esc(a.subject)}</a>: ${alertText(a)} <small>(${esc(when(a.at))})</small></li>`).join('')}</ul>`
  }</div>`;
  page.innerHTML = `<h1>Alerts</h1>${ALERT_SECTIONS.map(([kind, title]) => section(title, alerts.filter((a) => a.kind === kind))).join('')}${other.length > 0 ? section('Other', other) : ''}`;
}

async function renderMovements() {
  const movements = (await api('movements'))?.movements ?? [];
  page.innerHTML = `<h1>Movements</h1><div class="card table-wrap">${
    movements.length === 0 ? '<p>No movements to show.</p>' : `<table id="movements"><thead><tr><th scope="col">When</th><th scope="col">Container</th><th scope="col">Movement</th><th scope="col">Port</th><th scope="col">Ship</th></tr></thead><tbody>${movements
      .map((m) => `<tr><td>${esc(when(m.at))}</td><td>${esc(m.container)}</td><td>${esc(m.step ?? m.status ?? '')}</td><td>${esc(m.port ?? m.to ?? '')}</td><td>${esc(m.ship ?? '')}</td></tr>`)
      .join('')}</tbody></table>`
  }</div>`;
}

async function renderOps() {
  const ops = await api('operations');
  if (ops === undefined) {
    page.innerHTML = '<h1>Operations</h1><p class="card">Nothing to show.</p>';
    return;
  }
  const health = ops.health ?? {};
  page.innerHTML = `<h1>Operations</h1>
    <div class="card"><h2>Site ${esc(health.site)}: <span class="status" id="site-health">${esc(health.status)}</span></h2>
      <p>Log backend: ${esc(health.backend)}</p>${(health.reasons ?? []).map((r) => `<p class="error">${esc(r)}</p>`).join('')}${(health.warnings ?? []).map((w) => `<p class="error">${esc(w)}</p>`).join('')}</div>
    <div class="card table-wrap"><h2>Links</h2>${
      ops.links.length === 0 ? '<p>This site forwards to no peer.</p>' : `<table id="links"><thead><tr><th scope="col">Link</th><th scope="col">State</th><th scope="col">Lag (records)</th><th scope="col">Forwarded</th><th scope="col">Last ack</th><th scope="col">Last error</th></tr></thead><tbody>${ops.links
        .map((l) => `<tr><th scope="row">${esc(l.name)}</th><td>${esc(l.state)}</td><td>${esc(Array.isArray(l.lag) ? l.lag.map((x) => `${x.stream}: ${x.records}`).join(', ') : l.lag)}</td><td>${esc(l.recordsForwarded)}</td><td>${esc(l.lastAck ?? '—')}</td><td>${esc(l.lastError ?? '')}</td></tr>`)
        .join('')}</tbody></table>`
    }</div>
    ${ops.ingest ? `<div class="card"><h2>Receiving</h2><pre>${esc(JSON.stringify(ops.ingest, null, 2))}</pre></div>` : ''}`;
}

// ---- live ----------------------------------------------------------------------------------

/** Re-renders the current page once for a burst of events that change it. */
let rerenderTimer;
function rerender() {
  if (rerenderTimer !== undefined) return;
  rerenderTimer = setTimeout(() => {
    rerenderTimer = undefined;
    route();
  }, 300);
}

function onLive(event) {
  if (event.type === 'resync') {
    rerender();
    return;
  }
  if (current.name === 'map' && typeof event.lat === 'number' && typeof event.lon === 'number') {
    if (event.type === 'reading') {
      const mark = document.querySelector(`#map a[data-container="${CSS.escape(event.container)}"] circle`);
      if (mark) {
        mark.setAttribute('cx', String(px(event.lon)));
        mark.setAttribute('cy', String(py(event.lat)));
      } else rerender();
    } else if (event.type === 'ship') {
      const mark = document.querySelector(`#map g[data-ship="${CSS.escape(event.ship)}"] path`);
      if (mark) mark.setAttribute('transform', `translate(${px(event.lon)},${py(event.lat)})`);
      else rerender();
    }
  }
  if (event.type === 'reading' && current.name === 'container' && current.id === event.container && event.event === undefined) {
    const facts = $('#status-facts');
    if (facts) facts.innerHTML = statusFacts(event);
    if (chartData && charts.length === 3) {
      chartData.push(event);
      const xs = chartData.map((p) => Date.parse(p.at) / 1000);
      const col = (key) => chartData.map((p) => (typeof p[key] === 'number' ? p[key] : null));
      charts[0].setData([xs, col('tempC'), col('setpointC')]);
      charts[1].setData([xs, col('humidityPct')]);
      charts[2].setData([xs, col('shockG')]);
    }
  } else if (event.type === 'reading' && current.name === 'containers') {
    const row = document.querySelector(`tr[data-container="${CSS.escape(event.container)}"]`);
    if (row && event.event === undefined) {
      row.querySelector('.temp').textContent = `${fixed(event.tempC)} °C`;
      row.querySelector('.at').textContent = when(event.at);
    }
  } else if (event.type === 'alert' && (current.name === 'alerts' || current.name === 'containers' || (current.name === 'container' && current.id === event.subject))) {
    rerender();
  } else if (event.type === 'movement' && (current.name === 'movements' || current.name === 'containers' || (current.name === 'container' && current.id === event.container))) {
    rerender();
  }
  if (event.type === 'alert') $('#live-status').textContent = `New alert: ${event.kind} for ${event.subject} (${when(event.at)})`;
}

async function connectLive() {
  liveAbort?.abort();
  const abort = new AbortController();
  liveAbort = abort;
  for (let attempt = 0; attempt < 1_000_000 && !abort.signal.aborted; attempt += 1) {
    try {
      const response = await fetch('/portal/api/events', { headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}` }, signal: abort.signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      $('#live-status').textContent = 'Live updates on.';
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const chunk = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of chunk.split('\n')) if (line.startsWith('data: ')) onLive(JSON.parse(line.slice(6)));
        }
      }
    } catch (error) {
      if (abort.signal.aborted) return;
      $('#live-status').textContent = `Live updates interrupted (${error.message}); reconnecting…`;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5))));
  }
}

// ---- boot ----------------------------------------------------------------------------------

(async () => {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token && (await signIn(token))) start();
  else showSignIn();
})();
