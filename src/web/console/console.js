// The registry's web console: plain DOM, no framework, no network but this origin's API.
// Instance tables are Discover's answers, fetched again whenever the namespace's SSE watch
// reports a change or a bookmark (heartbeats are not changes; bookmarks come every ~10 s).
// The Agents pages are in agents.js, which uses the helpers defined here.
'use strict';

const TOKEN_KEY = 'agent-registry-token';
let caller = null;          // what /v1/caller says of the token
let stopWatch = () => {};   // ends the watch of the page being left
let stateTimer = null;

// ---- small helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// The last 8 hex digits: a UUIDv7 begins with its timestamp, so its start is shared.
const short = (s) => (s || '').slice(-8);
const statusName = (s) => (s || 'INSTANCE_STATUS_UNSPECIFIED').replace('INSTANCE_STATUS_', '');
const reasonName = (s) => (s || '').replace('DEATH_REASON_', '');
const statusClass = { ALIVE: 'ok', STARTING: 'warn', DRAINING: 'warn', DEAD: 'bad' };

function age(ts) {
  if (!ts) return '—';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${body.code}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: headers(options.body ? { 'content-type': 'application/json' } : {}),
  });
  const body = await res.json().catch(() => null);
  if (res.status === 401) { askForToken(body && body.message); throw new ApiError(401, body); }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

// Server-Sent Events over fetch (EventSource cannot send a bearer token), resuming after the
// last event id; `onEvent({event, id, data})`. Returns a function that stops it.
function watch(path, onEvent) {
  const stop = new AbortController();
  let lastId = null;
  (async () => {
    while (!stop.signal.aborted) {
      try {
        const h = headers({ accept: 'text/event-stream' });
        if (lastId) h['last-event-id'] = lastId;
        const res = await fetch(path, { headers: h, signal: stop.signal });
        if (!res.ok) {
          const body = await res.json().catch(() => null);
          if (res.status === 401) { askForToken(); return; }
          onEvent({ event: 'error', data: body || {} });
          if (body && body.code === 'OUT_OF_RANGE') lastId = null;
          // A refusal that a retry cannot change (a bad filter, no grant): stop here.
          else if (res.status < 500 && res.status !== 429) return;
        } else {
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const ev = { event: 'message', id: null, data: '' };
              for (const line of block.split('\n')) {
                if (line.startsWith('event:')) ev.event = line.slice(6).trim();
                else if (line.startsWith('id:')) ev.id = line.slice(3).trim();
                else if (line.startsWith('data:')) ev.data += line.slice(5).trim();
              }
              if (!ev.data) continue;
              ev.data = JSON.parse(ev.data);
              if (ev.id) lastId = ev.id;
              if (ev.event === 'error' && ev.data.code === 'OUT_OF_RANGE') lastId = null;
              onEvent(ev);
            }
          }
        }
      } catch (e) {
        if (stop.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return () => stop.abort();
}

// ---- the registry's own state ----------------------------------------------------------------

async function renderState() {
  const box = document.getElementById('state');
  let s;
  try { s = await api('/v1/status'); } catch (e) {
    box.replaceChildren(el('span', { class: 'bad' }, `State unavailable: ${e.message}`));
    return;
  }
  const yes = (ok, good, bad) => el('span', { class: ok ? 'ok' : 'bad' }, ok ? good : bad);
  const items = [
    el('span', {}, 'Store: ', yes(s.store.reachable, 'reachable', 'UNREACHABLE')),
    el('span', {}, 'Beats persisted: ', yes(s.store.vouchingForBeats, 'yes', 'NO')),
    el('span', {}, 'Redis: ', el('span', { class: s.redis === 'unreachable' ? 'bad' : 'ok' }, s.redis)),
    el('span', {}, 'Revision: ', el('code', { 'data-testid': 'revision' }, s.revision)),
    el('span', {}, 'Change-feed lag: ', `${s.changeFeedLagSeconds}s`),
    el('span', {}, 'Watchers: ', s.watchers, ' · Heartbeat streams: ', s.heartbeatStreams),
    el('span', {}, 'Ready: ', yes(s.ready, 'yes', 'NO')),
  ];
  const sp = s.selfPreservation;
  if (sp.holding) {
    items.unshift(el('div', { class: 'banner', role: 'alert' },
      `Self-preservation is holding lease expiries back in ${sp.namespaces.join(', ')}: `,
      'more instances stopped beating at once than the guard allows (often a network cut at ',
      'the registry, not dead agents). Nothing there expires until beats return or the loss ',
      'is spread out.'));
  }
  if (!s.store.reachable) {
    items.unshift(el('div', { class: 'banner bad', role: 'alert' },
      'The store is unreachable from this replica: writes answer UNAVAILABLE and no lease expires.'));
  }
  box.replaceChildren(...items);
}

// ---- pages ---------------------------------------------------------------------------------

function crumbs(...parts) {
  document.getElementById('crumbs').replaceChildren(
    ...parts.map(([text, href]) => el('li', {}, href ? el('a', { href }, text) : text)));
}

async function namespacesPage(main) {
  crumbs(['namespaces']);
  const rows = [];
  let token = '';
  do {
    const page = await api(`/v1/namespaces?pageSize=500&pageToken=${encodeURIComponent(token)}`);
    rows.push(...(page.namespaces || []));
    token = page.nextPageToken || '';
  } while (token);
  const n = (v) => Number(v || 0);
  main.replaceChildren(
    el('h1', {}, 'Namespaces'),
    rows.length === 0 ? el('p', { class: 'muted' }, 'No namespace yet: the first Register creates one.') :
    el('table', {},
      el('caption', {}, `${rows.length} namespace${rows.length === 1 ? '' : 's'}`),
      el('thead', {}, el('tr', {}, ['Namespace', 'Agents', 'Epoch', 'Epoch since', 'Live', 'Alive',
        'Starting', 'Draining', 'Dead (retained)'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.map((ns) => el('tr', {},
        el('td', {}, el('a', { href: `#/ns/${encodeURIComponent(ns.name)}` }, ns.name)),
        el('td', {}, el('a', { href: `#/ns/${encodeURIComponent(ns.name)}/agents`, 'aria-label': `Agents in ${ns.name}` }, 'agents')),
        el('td', {}, el('code', { title: ns.currentEpoch }, short(ns.currentEpoch))),
        el('td', {}, age(ns.epochStartedAt)),
        el('td', {}, n(ns.liveCount)), el('td', {}, n(ns.aliveCount)),
        el('td', {}, n(ns.startingCount)), el('td', {}, n(ns.drainingCount)),
        el('td', {}, n(ns.deadCount)))))));
}

function filtersFrom(params) {
  return {
    view: params.get('view') || 'active',
    logicalId: params.get('logicalId') || '',
    agentType: params.get('agentType') || '',
    capability: params.get('capability') || '',
    label: params.get('label') || '',
  };
}

function query(f, withView) {
  const q = new URLSearchParams();
  if (withView) q.set('view', f.view);
  for (const k of ['logicalId', 'agentType', 'capability', 'label']) if (f[k]) q.set(k, f[k]);
  return q.toString();
}

async function discoverAll(ns, f) {
  const out = [];
  let token = '';
  do {
    const page = await api(`/v1/namespaces/${encodeURIComponent(ns)}/instances?${query(f, true)}` +
      `&pageSize=1000&pageToken=${encodeURIComponent(token)}`);
    out.push(...(page.instances || []));
    token = page.nextPageToken || '';
  } while (token && out.length < 5000);
  return out;
}

function instanceRow(i) {
  const st = statusName(i.status);
  return el('tr', { 'data-instance': i.instanceId },
    el('td', {}, el('a', { href: `#/instance/${i.instanceId}` }, i.logicalId)),
    el('td', {}, el('span', { class: `pill ${statusClass[st] || ''}`, 'data-testid': 'status' }, st)),
    el('td', {}, el('code', {}, i.endpoint || '—')),
    el('td', {}, i.version || '—'),
    el('td', {}, Object.entries(i.labels || {}).map(([k, v]) => el('span', { class: 'tag' }, `${k}=${v}`))),
    el('td', {}, (i.capabilities || []).map((c) => el('span', { class: 'tag' }, c))),
    el('td', {}, age(i.lastHeartbeat)),
    el('td', {}, el('code', { title: i.instanceId }, short(i.instanceId))));
}

async function namespacePage(main, ns, params) {
  crumbs(['namespaces', '#/'], [ns]);
  const f = filtersFrom(params);
  const input = (name, label, value, placeholder) => el('label', {}, label,
    el('input', { name, value, placeholder }));
  const form = el('form', { class: 'filters', role: 'search', onsubmit: (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const next = new URLSearchParams();
      for (const [k, v] of data.entries()) if (v) next.set(k, v);
      location.hash = `#/ns/${encodeURIComponent(ns)}?${next}`;
    } },
    el('label', {}, 'View', el('select', { name: 'view' },
      ['active', 'live', 'all'].map((v) => el('option', { value: v, selected: v === f.view }, v)))),
    input('logicalId', 'Logical id', f.logicalId, 'planner'),
    input('agentType', 'Agent type', f.agentType, ''),
    input('capability', 'Capability', f.capability, ''),
    input('label', 'Label', f.label, 'zone=eu-1'),
    el('button', { type: 'submit' }, 'Filter'));
  const liveNote = el('span', { class: 'live muted', 'aria-live': 'polite' }, 'connecting…');
  const body = el('tbody', {});
  const caption = el('caption', {});
  main.replaceChildren(
    el('h1', {}, `Instances in ${ns}`),
    el('nav', { class: 'tabs', 'aria-label': 'Namespace' }, el('strong', {}, 'Instances'),
      el('a', { href: `#/ns/${encodeURIComponent(ns)}/agents` }, 'Agents')),
    form,
    el('p', {}, liveNote),
    el('table', { 'data-testid': 'instances' }, caption,
      el('thead', {}, el('tr', {}, ['Logical id', 'Status', 'Endpoint', 'Version', 'Labels',
        'Capabilities', 'Lease age', 'Instance'].map((h) => el('th', { scope: 'col' }, h)))),
      body));
  let pending = null;
  const refresh = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      try {
        const rows = await discoverAll(ns, f);
        body.replaceChildren(...rows.map(instanceRow));
        caption.textContent = `${rows.length} instance${rows.length === 1 ? '' : 's'}, view ${f.view}`;
      } catch (e) { liveNote.textContent = e.message; }
    }, 20);
  };
  stopWatch = watch(`/v1/namespaces/${encodeURIComponent(ns)}/watch?${query(f, false)}`, (ev) => {
    if (ev.event === 'error') { liveNote.textContent = `watch: ${ev.data.code || ''} ${ev.data.message || ''}`; return; }
    if (ev.id) liveNote.textContent = `live · revision ${ev.id}`;
    if (ev.event === 'bookmark') renderState();
    refresh();
  });
}

async function instancePage(main, id) {
  const show = async () => {
    const { instance: i } = await api(`/v1/instances/${encodeURIComponent(id)}`);
    crumbs(['namespaces', '#/'], [i.namespace, `#/ns/${encodeURIComponent(i.namespace)}`], [i.logicalId]);
    const st = statusName(i.status);
    const fields = [
      ['Instance id', el('code', {}, i.instanceId)], ['Namespace', i.namespace],
      ['Logical id', i.logicalId], ['Status', el('span', { class: `pill ${statusClass[st] || ''}`, 'data-testid': 'status' }, st)],
      ['Death reason', reasonName(i.deathReason) || '—'], ['Epoch', el('code', {}, i.epoch)],
      ['Agent type', i.agentType || '—'], ['Version', i.version || '—'],
      ['Endpoint', el('code', {}, i.endpoint || '—')],
      ['Capabilities', (i.capabilities || []).map((c) => el('span', { class: 'tag' }, c))],
      ['Labels', Object.entries(i.labels || {}).map(([k, v]) => el('span', { class: 'tag' }, `${k}=${v}`))],
      ['Actor', i.actorName || '—'], ['Node', i.nodeId || '—'], ['IP', i.ipAddress || '—'],
      ['PID', i.pid || '—'], ['Lease', i.leaseTtl || '—'], ['Started', i.startedAt || '—'],
      ['Last heartbeat', `${i.lastHeartbeat || '—'} (${age(i.lastHeartbeat)} ago)`],
      ['Stopped', i.stoppedAt || '—'], ['Revision', i.revision],
    ];
    const act = (verb, label, cls) => el('button', { type: 'button', class: cls, onclick: async () => {
      if (!confirm(`${label} ${i.logicalId} (${short(i.instanceId)})?`)) return;
      try { await api(`/v1/instances/${i.instanceId}:${verb}`, { method: 'POST', body: JSON.stringify({ reason: 'from the console' }) }); }
      catch (e) { alert(e.message); }
    } }, label);
    const admin = caller && caller.role === 'admin' && st !== 'DEAD';
    main.replaceChildren(...[
      el('h1', {}, `${i.logicalId} `, el('code', {}, short(i.instanceId))),
      admin ? el('div', { class: 'actions' },
        st !== 'DRAINING' ? act('drain', 'Drain', '') : null, act('evict', 'Evict', 'danger')) : null,
      el('dl', { class: 'card' }, fields.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
    ].filter(Boolean));
    return i;
  };
  const i = await show();
  stopWatch = watch(`/v1/namespaces/${encodeURIComponent(i.namespace)}/watch?logicalId=${encodeURIComponent(i.logicalId)}`,
    (ev) => { if (ev.event === 'put' || ev.event === 'delete') show().catch(() => {}); });
}

// ---- routing and sign-in --------------------------------------------------------------------

function askForToken(message) {
  stopWatch();
  clearInterval(stateTimer);
  const main = document.getElementById('main');
  const form = document.getElementById('token-form').content.firstElementChild.cloneNode(true);
  main.replaceChildren(form);
  document.getElementById('state').replaceChildren();
  if (message && sessionStorage.getItem(TOKEN_KEY)) form.querySelector('#token-error').textContent = message;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, form.querySelector('#token-input').value.trim());
    start();
  });
  form.querySelector('#token-input').focus();
}

async function route() {
  stopWatch();
  stopWatch = () => {};
  const main = document.getElementById('main');
  const [path, search] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(search || '');
  try {
    const parts = (path || '/').split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'ns' && parts[1] && parts[2] === 'agents') await agentsPage(main, parts[1], params);
    else if (parts[0] === 'ns' && parts[1]) await namespacePage(main, parts[1], params);
    else if (parts[0] === 'agent' && parts[1] && parts[2]) await agentPage(main, parts[1], parts[2]);
    else if (parts[0] === 'instance' && parts[1]) await instancePage(main, parts[1]);
    else await namespacesPage(main);
  } catch (e) {
    if (e.status !== 401) main.replaceChildren(el('p', { class: 'error', role: 'alert' }, e.message));
  }
}

async function start() {
  try { caller = await api('/v1/caller'); } catch (e) { return; }
  document.getElementById('who').textContent = caller.open
    ? 'open registry (no tokens): every caller is admin' : `${caller.name} · ${caller.role}`;
  document.getElementById('signout').hidden = caller.open;
  renderState();
  clearInterval(stateTimer);
  stateTimer = setInterval(renderState, 5000);
  route();
}

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  start();
});
