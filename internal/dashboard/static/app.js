// Hindsight's dashboard: it talks only to the /v1 API, with the key the
// user signed in with, kept in this tab's session storage.
'use strict';

const $ = (sel) => document.querySelector(sel);
const KEY = 'hindsight-api-key';
const GROUPS = {
  send: ['recipient_domain', 'sender_domain', 'type'], telco: ['npa', 'type'], talk: ['voice', 'format', 'type'],
  voip: ['type'], transcribe: ['type'], platform: ['type'],
};

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, method, body) {
  const init = { method: method || 'GET', headers: { Authorization: 'Bearer ' + sessionStorage.getItem(KEY) } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const answer = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    throw new APIError(resp.status, (answer.error && answer.error.message) || 'HTTP ' + resp.status);
  }
  return answer;
}

// latest(view) starts a request for a view and returns a check that is
// true while it is still that view's latest: an earlier answer arriving
// after a later request's is dropped, not shown over it.
const requests = {};
function latest(view) {
  const n = (requests[view] || 0) + 1;
  requests[view] = n;
  return () => requests[view] === n;
}

function show(view) {
  for (const s of document.querySelectorAll('[data-view]')) s.hidden = s.id !== view;
  $('#nav').hidden = view === 'signin';
  for (const b of document.querySelectorAll('#nav [data-go]')) {
    if (b.dataset.go === view) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
}

for (const b of document.querySelectorAll('#nav [data-go]')) {
  b.addEventListener('click', () => {
    show(b.dataset.go);
    if (b.dataset.go === 'events' && !$('#ev-table tbody').children.length) listEvents(null);
    if (b.dataset.go === 'delivery') loadDelivery();
    if (b.dataset.go === 'dead') loadDeadLetters();
  });
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  show('signin');
  $('#signin-error').textContent = message || '';
  $('#key').focus();
}

$('#signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $('#key').value.trim());
  try {
    await api('/v1/event-types');
  } catch (e) {
    signOut(e.status === 401 ? 'That key was not accepted.' : e.status === 403 ? 'That key lacks the stats:read scope.' : e.message);
    return;
  }
  $('#key').value = '';
  $('#signin-error').textContent = '';
  show('analytics');
  load();
});

// Signing out forgets the key and everything shown with it.
$('#signout').addEventListener('click', () => { sessionStorage.removeItem(KEY); location.reload(); });

// The form starts on the last 7 days (UTC).
function isoDay(d) { return d.toISOString().slice(0, 10); }
const today = new Date();
$('#to').value = $('#ev-to').value = isoDay(today);
$('#from').value = $('#ev-from').value = $('#dl-since').value = isoDay(new Date(today.getTime() - 6 * 864e5));

function fillGroups() {
  const sel = $('#group_by');
  const keep = sel.value;
  sel.replaceChildren(new Option('none', ''));
  for (const g of GROUPS[$('#service').value]) sel.append(new Option(g.replaceAll('_', ' '), g));
  sel.value = GROUPS[$('#service').value].includes(keep) ? keep : '';
}
$('#service').addEventListener('change', fillGroups);
fillGroups();

$('#query').addEventListener('submit', (ev) => { ev.preventDefault(); load(); });

const fmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
function rateText(name, v) {
  if (v === null || v === undefined) return '—';
  return name.endsWith('_rate') ? (v * 100).toFixed(2) + '%' : fmt.format(v);
}

async function load() {
  const service = $('#service').value;
  const to = new Date($('#to').value + 'T00:00:00Z');
  const q = new URLSearchParams({
    from: $('#from').value + 'T00:00:00Z',
    to: isoDay(new Date(to.getTime() + 864e5)) + 'T00:00:00Z',
    tz: $('#tz').value.trim() || 'UTC',
    granularity: $('#granularity').value,
    livemode: $('#livemode').value,
  });
  const groupBy = $('#group_by').value;
  if (groupBy) q.set('group_by', groupBy);
  $('#status').textContent = 'Loading…';
  const current = latest('stats');
  let stats;
  try {
    stats = await api('/v1/stats/' + service + '?' + q);
  } catch (e) {
    if (!current()) return;
    if (e.status === 401) { signOut('The key is no longer accepted.'); return; }
    $('#status').textContent = e.message;
    return;
  }
  if (!current()) return;
  $('#status').textContent = `${service}, ${stats.from} to ${stats.to}, buckets in ${stats.tz}`;
  render(stats);
}

function render(stats) {
  const t = stats.totals;
  $('#events-total').textContent = fmt.format(t.events);

  const rates = $('#rates');
  rates.replaceChildren();
  const rateNames = Object.keys(t.rates);
  for (const name of rateNames) {
    const r = t.rates[name];
    const li = document.createElement('li');
    li.dataset.rate = name;
    const label = document.createElement('span');
    label.textContent = name.replaceAll('_', ' ');
    const value = document.createElement('span');
    value.className = 'value';
    value.textContent = rateText(name, r.value);
    const formula = document.createElement('span');
    formula.className = 'formula';
    formula.textContent = `${r.formula} = ${fmt.format(r.numerator)} / ${fmt.format(r.denominator)}`;
    li.append(label, value, formula);
    rates.append(li);
  }

  const series = stats.series || [];
  const labels = series.map((b) => b.bucket);
  lineChart($('#events-chart'), 'Events per bucket', labels, series.map((b) => b.events), (v) => fmt.format(v));
  const box = $('#rate-charts');
  box.replaceChildren();
  for (const name of rateNames) {
    const fig = document.createElement('figure');
    fig.className = 'chart';
    box.append(fig);
    lineChart(fig, name.replaceAll('_', ' ') + ' per bucket', labels, series.map((b) => b.rates[name].value), (v) => rateText(name, v));
  }

  const metrics = $('#metrics tbody');
  metrics.replaceChildren();
  for (const name of Object.keys(t.metrics).sort()) {
    const tr = document.createElement('tr');
    tr.append(cell(name.replaceAll('_', ' ')), cell(fmt.format(t.metrics[name]), true));
    metrics.append(tr);
  }

  const groupsBox = $('#groups-box');
  groupsBox.hidden = !stats.groups;
  if (stats.groups) renderGroups(stats);
}

function cell(text, num) {
  const td = document.createElement('td');
  td.textContent = text;
  if (num) td.className = 'num';
  return td;
}

// lineChart draws values (null is a gap) as an SVG line in fig, with the
// range of values and of labels as text, and the whole series in a table
// for screen readers.
function lineChart(fig, title, labels, values, show) {
  fig.replaceChildren();
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  const w = 600, h = 160;
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const nums = values.filter((v) => v !== null && v !== undefined);
  const max = Math.max(0, ...nums), min = Math.min(0, ...nums);
  svg.setAttribute('aria-label', `${title}: ${values.length} buckets, from ${show(min)} to ${show(max)}`);
  const axis = document.createElementNS(ns, 'line');
  axis.setAttribute('class', 'axis');
  axis.setAttribute('x1', 0); axis.setAttribute('x2', w); axis.setAttribute('y1', h - 1); axis.setAttribute('y2', h - 1);
  svg.append(axis);
  const x = (i) => (values.length < 2 ? w / 2 : (i * w) / (values.length - 1));
  const y = (v) => (max === min ? h / 2 : h - 4 - ((v - min) * (h - 8)) / (max - min));
  let points = [];
  const flush = () => {
    if (points.length) {
      const line = document.createElementNS(ns, 'polyline');
      line.setAttribute('points', points.join(' '));
      svg.append(line);
    }
    points = [];
  };
  values.forEach((v, i) => {
    if (v === null || v === undefined) { flush(); return; }
    points.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  if (points.length === 1) points.push(points[0]);
  flush();
  const cap = document.createElement('figcaption');
  cap.textContent = labels.length ? `${title}: ${labels[0]} to ${labels[labels.length - 1]}, max ${show(max)}` : `${title}: no buckets`;
  fig.append(svg, cap);
}

// The group table sorts by any column, by click or keyboard.
let groupSort = { col: 'events', desc: true };
let lastStats = null;

function renderGroups(stats) {
  lastStats = stats;
  const rateNames = Object.keys(stats.totals.rates);
  const cols = [{ id: 'key', label: stats.group_by.replaceAll('_', ' ') }, { id: 'events', label: 'Events', num: true }]
    .concat(rateNames.map((r) => ({ id: r, label: r.replaceAll('_', ' '), num: true })));
  const value = (g, col) => (col === 'key' ? g.key : col === 'events' ? g.events : g.rates[col].value);
  const rows = stats.groups.slice().sort((a, b) => {
    let va = value(a, groupSort.col), vb = value(b, groupSort.col);
    if (va === null) va = -Infinity;
    if (vb === null) vb = -Infinity;
    const c = va < vb ? -1 : va > vb ? 1 : 0;
    return groupSort.desc ? -c : c;
  });
  $('#groups-title').textContent = `Top ${stats.groups.length} by ${stats.group_by.replaceAll('_', ' ')}`;
  const head = document.createElement('tr');
  for (const c of cols) {
    const th = document.createElement('th');
    th.scope = 'col';
    if (c.num) th.className = 'num';
    if (c.id === groupSort.col) th.setAttribute('aria-sort', groupSort.desc ? 'descending' : 'ascending');
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.col = c.id;
    b.textContent = c.label + (c.id === groupSort.col ? (groupSort.desc ? ' ▼' : ' ▲') : '');
    b.addEventListener('click', () => {
      groupSort = { col: c.id, desc: groupSort.col === c.id ? !groupSort.desc : c.id !== 'key' };
      renderGroups(lastStats);
      document.querySelector(`#groups th button[data-col="${c.id}"]`).focus();
    });
    th.append(b);
    head.append(th);
  }
  $('#groups thead').replaceChildren(head);
  const body = $('#groups tbody');
  body.replaceChildren();
  for (const g of rows) {
    const tr = document.createElement('tr');
    tr.append(cell(g.key || '(none)'), cell(fmt.format(g.events), true));
    for (const r of rateNames) tr.append(cell(rateText(r, g.rates[r].value), true));
    body.append(tr);
  }
}

// Events: the listing a page at a time (the API's signed cursor), and one
// event's JSON with its delivery attempts.
let nextCursor = null;

$('#events-query').addEventListener('submit', (ev) => { ev.preventDefault(); listEvents(null); });
$('#ev-first').addEventListener('click', () => listEvents(null));
$('#ev-next').addEventListener('click', () => listEvents(nextCursor));

async function listEvents(cursor) {
  const to = new Date($('#ev-to').value + 'T00:00:00Z');
  const q = new URLSearchParams({
    from: $('#ev-from').value + 'T00:00:00Z',
    to: isoDay(new Date(to.getTime() + 864e5)) + 'T00:00:00Z',
    livemode: $('#ev-livemode').value,
    limit: '50',
  });
  const types = $('#ev-types').value.replaceAll(' ', '');
  if (types) q.set('types', types);
  if (cursor) q.set('cursor', cursor);
  $('#ev-status').textContent = 'Loading…';
  const current = latest('events');
  let page;
  try {
    page = await api('/v1/events?' + q);
  } catch (e) {
    if (!current()) return;
    if (e.status === 401) { signOut('The key is no longer accepted.'); return; }
    $('#ev-status').textContent = e.status === 403 ? 'This key lacks the events:read scope.' : e.message;
    return;
  }
  if (!current()) return;
  const body = $('#ev-table tbody');
  body.replaceChildren();
  for (const ev of page.data) {
    const tr = document.createElement('tr');
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'link';
    open.textContent = ev.eventId;
    open.addEventListener('click', () => showEvent(ev.eventId));
    const id = document.createElement('td');
    id.append(open);
    tr.append(cell(new Date(ev.createdAt).toISOString()), cell(ev.type), id);
    body.append(tr);
  }
  nextCursor = page.next_cursor;
  $('#ev-next').disabled = !nextCursor;
  $('#ev-first').disabled = !cursor;
  $('#ev-status').textContent = page.data.length ? `${page.data.length} events${nextCursor ? ', more on the next page' : ''}` : 'No events match.';
}

async function showEvent(id) {
  let ev;
  try {
    ev = await api('/v1/events/' + encodeURIComponent(id) + '?include=deliveries');
  } catch (e) {
    $('#ev-status').textContent = e.message;
    return;
  }
  $('#ev-detail-title').hidden = $('#ev-detail').hidden = false;
  $('#ev-detail-title').textContent = 'Event ' + id;
  $('#ev-detail').textContent = JSON.stringify(ev, null, 2);
  $('#ev-detail').focus();
}

// Delivery: the last 7 days' attempts, endpoints and their health, replays
// with live progress, a new replay after a dry run, cancelling.
let replayTimer = null;

function dlError(e) {
  if (e.status === 401) { signOut('The key is no longer accepted.'); return; }
  $('#dl-status').textContent = e.status === 403 ? 'This key lacks the scope for this (endpoints:write, replays:write).' : e.message;
}

async function loadDelivery() {
  const now = new Date();
  const q = new URLSearchParams({ from: new Date(now.getTime() - 7 * 864e5).toISOString(), to: now.toISOString() });
  const current = latest('delivery');
  try {
    const [stats, endpoints] = await Promise.all([api('/v1/stats/deliveries?' + q), api('/v1/endpoints')]);
    if (!current()) return;
    const t = stats.totals;
    $('#dl-attempts').textContent = fmt.format(t.attempts);
    $('#dl-delivered').textContent = fmt.format(t.delivered);
    $('#dl-failed').textContent = fmt.format(t.failed);
    $('#dl-rate').textContent = rateText('success_rate', t.success_rate.value);
    const ms = (v) => (v === null || v === undefined ? '—' : fmt.format(v) + ' ms');
    $('#dl-latency').textContent = ms(t.latency_ms.p50) + ' / ' + ms(t.latency_ms.p95);
    renderEndpoints(endpoints.data);
  } catch (e) {
    if (current()) dlError(e);
    return;
  }
  loadReplays();
}

function renderEndpoints(list) {
  const body = $('#dl-endpoints tbody');
  body.replaceChildren();
  const sel = $('#dl-endpoint');
  sel.replaceChildren();
  for (const ep of list) {
    const tr = document.createElement('tr');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'link';
    b.textContent = 'Health';
    b.addEventListener('click', () => showHealth(ep.id));
    const td = document.createElement('td');
    td.append(b);
    tr.append(cell(ep.id), cell(ep.url), cell(ep.enabled_events.join(', ')), stateCell(ep), td);
    body.append(tr);
    sel.append(new Option(ep.id + ' (' + ep.url + ')', ep.id));
  }
  if (!list.length) $('#dl-status').textContent = 'No endpoints yet: create one with POST /v1/endpoints.';
}

// stateCell says whether the endpoint is enabled; a disabled one says since
// when and why, with a button that enables it again (its paused replays go on).
function stateCell(ep) {
  if (ep.enabled) return cell('enabled');
  const td = cell('disabled since ' + ep.disabled_at + ': ' + ep.disabled_reason + ' ');
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = 'Enable';
  b.addEventListener('click', async () => {
    try {
      await api('/v1/endpoints/' + encodeURIComponent(ep.id), 'PATCH', { enabled: true });
      loadDelivery();
    } catch (e) {
      dlError(e);
    }
  });
  td.append(b);
  return td;
}

async function showHealth(id) {
  try {
    const ep = await api('/v1/endpoints/' + encodeURIComponent(id));
    $('#dl-health').hidden = false;
    $('#dl-health').textContent = id + ' health: ' + JSON.stringify(ep.health, null, 2);
    $('#dl-health').focus();
  } catch (e) {
    dlError(e);
  }
}

function replayBody(dryRun) {
  const body = { endpoint_id: $('#dl-endpoint').value, since: $('#dl-since').value + 'T00:00:00Z', dry_run: dryRun };
  if ($('#dl-until').value) {
    body.until = isoDay(new Date(new Date($('#dl-until').value + 'T00:00:00Z').getTime() + 864e5)) + 'T00:00:00Z';
  }
  const types = $('#dl-types').value.replaceAll(' ', '');
  if (types) body.enabled_events = types.split(',');
  return body;
}

// A replay starts only after a dry run of the same request.
let dryRunOf = null;
for (const id of ['#dl-endpoint', '#dl-since', '#dl-until', '#dl-types']) {
  $(id).addEventListener('input', () => { dryRunOf = null; $('#dl-start').disabled = true; });
}

$('#dl-new').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = replayBody(true);
  try {
    const dry = await api('/v1/replays', 'POST', body);
    const types = Object.entries(dry.by_type).map(([k, v]) => `${k} ${fmt.format(v)}`).join(', ');
    $('#dl-dry-result').textContent = `Dry run: ${fmt.format(dry.matched)} events would be sent` + (types ? ` (${types})` : '') +
      `, about ${fmt.format(dry.estimated_seconds)} s.`;
    dryRunOf = JSON.stringify(replayBody(false));
    $('#dl-start').disabled = dry.matched === 0;
  } catch (e) {
    $('#dl-dry-result').textContent = e.message;
  }
});

$('#dl-start').addEventListener('click', async () => {
  const body = replayBody(false);
  if (JSON.stringify(body) !== dryRunOf) return;
  try {
    const job = await api('/v1/replays', 'POST', body);
    $('#dl-dry-result').textContent = `Replay ${job.id} started.`;
    $('#dl-start').disabled = true;
    dryRunOf = null;
    loadReplays();
  } catch (e) {
    $('#dl-dry-result').textContent = e.message;
  }
});

async function loadReplays() {
  clearTimeout(replayTimer);
  const current = latest('replays');
  let page;
  try {
    page = await api('/v1/replays?limit=20');
  } catch (e) {
    if (current()) dlError(e);
    return;
  }
  if (!current()) return;
  const body = $('#dl-replays tbody');
  body.replaceChildren();
  let live = false;
  for (const r of page.data) {
    const tr = document.createElement('tr');
    tr.dataset.replay = r.id;
    const td = document.createElement('td');
    if (r.status === 'pending' || r.status === 'running') {
      live = true;
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'Cancel';
      b.addEventListener('click', async () => {
        try {
          await api('/v1/replays/' + encodeURIComponent(r.id) + '/cancel', 'POST');
        } catch (e) {
          dlError(e);
        }
        loadReplays();
      });
      td.append(b);
    }
    tr.append(cell(r.id), cell(r.endpoint_id), cell(r.status), cell((r.progress * 100).toFixed(0) + '%', true),
      cell(fmt.format(r.delivered), true), cell(fmt.format(r.failed), true), cell(fmt.format(r.matched), true), td);
    body.append(tr);
  }
  // Live progress while a replay runs and the view is open.
  if (live && !$('#delivery').hidden) replayTimer = setTimeout(loadReplays, 1000);
}

// Dead letters: how many and why over the last 7 days, and the latest.
async function loadDeadLetters() {
  const now = new Date();
  const q = new URLSearchParams({ from: new Date(now.getTime() - 7 * 864e5).toISOString(), to: now.toISOString(), limit: '50' });
  const current = latest('dead');
  let d;
  try {
    d = await api('/v1/dead-letters?' + q);
  } catch (e) {
    if (!current()) return;
    if (e.status === 401) { signOut('The key is no longer accepted.'); return; }
    $('#dd-status').textContent = e.message;
    return;
  }
  if (!current()) return;
  $('#dd-total').textContent = fmt.format(d.total);
  for (const k of ['invalid', 'too_large', 'refused']) $('#dd-' + k).textContent = fmt.format(d.by_kind[k] || 0);
  const body = $('#dd-latest tbody');
  body.replaceChildren();
  for (const x of d.latest) {
    const tr = document.createElement('tr');
    tr.append(cell(x.at), cell(x.kind.replaceAll('_', ' ')), cell(x.reason), cell(x.source));
    body.append(tr);
  }
  $('#dd-status').textContent = d.total ? '' : 'No dead letters in the last 7 days.';
}

if (sessionStorage.getItem(KEY)) {
  show('analytics');
  load();
} else {
  show('signin');
}
