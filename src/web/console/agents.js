// The console's Agents pages: a namespace's agents searched by text, skill and tag (live ones
// unless asked), and one agent with its skills, live instances and card. Cards are user
// content: everything here reaches the page as text nodes, never as markup. Both pages re-read
// their answer whenever the namespace's watch reports a change or a bookmark (a card published
// alone arrives as a bookmark at once). Uses console.js's helpers (loaded before it).
'use strict';

const agentState = (s) => (s === 'AGENT_STATE_LIVE' ? 'LIVE' : 'NO LIVE INSTANCES');
const cardKind = (k) => (k === 'CARD_KIND_MCP' ? 'mcp' : 'a2a');

function statePill(a) {
  const live = a.state === 'AGENT_STATE_LIVE';
  return el('span', { class: `pill ${live ? 'ok' : 'bad'}`, 'data-testid': 'state' }, agentState(a.state));
}

function agentsQuery(f) {
  const q = new URLSearchParams();
  if (f.query) q.set('query', f.query);
  for (const s of f.skills) q.append('skill', s);
  for (const t of f.tags) q.append('tag', t);
  if (f.offline) q.set('includeOffline', 'true');
  return q;
}

// Up to 1000 results: the best-ranked (or, without a query, the first by logical id).
async function searchAll(ns, f) {
  const out = [];
  let token = '';
  do {
    const q = agentsQuery(f);
    q.set('pageSize', '500');
    if (token) q.set('pageToken', token);
    const page = await api(`/v1/namespaces/${encodeURIComponent(ns)}/agents?${q}`);
    out.push(...(page.results || []));
    token = page.nextPageToken || '';
  } while (token && out.length < 1000);
  return out;
}

function agentRow(r, ranked) {
  const a = r.agent;
  const matched = new Set(r.matchedSkills || []);
  return el('tr', { 'data-agent': a.logicalId },
    el('td', {}, el('a', { href: `#/agent/${encodeURIComponent(a.namespace)}/${encodeURIComponent(a.logicalId)}` },
      a.name || a.logicalId)),
    el('td', {}, el('code', {}, a.logicalId)),
    el('td', {}, statePill(a)),
    el('td', { 'data-testid': 'live-count' }, Number(a.liveCount || 0)),
    el('td', {}, cardKind(a.kind)),
    el('td', {}, a.version || '—'),
    el('td', {}, (a.skills || []).map((s) => el('span', {
      class: matched.has(s.id) ? 'tag matched' : 'tag', title: (s.tags || []).join(', '),
    }, s.id))),
    ranked ? el('td', {}, Number(r.score || 0).toFixed(2)) : null);
}

async function agentsPage(main, ns, params) {
  crumbs(['namespaces', '#/'], [ns, `#/ns/${encodeURIComponent(ns)}`], ['agents']);
  const f = {
    query: params.get('query') || '',
    skills: params.getAll('skill').filter(Boolean),
    tags: params.getAll('tag').filter(Boolean),
    offline: params.get('offline') === '1',
  };
  const form = el('form', { class: 'filters', role: 'search', onsubmit: (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const next = new URLSearchParams();
      if (data.get('query')) next.set('query', data.get('query'));
      for (const k of ['skill', 'tag']) {
        for (const v of String(data.get(k) || '').split(',').map((s) => s.trim()).filter(Boolean)) next.append(k, v);
      }
      if (data.get('offline')) next.set('offline', '1');
      location.hash = `#/ns/${encodeURIComponent(ns)}/agents?${next}`;
    } },
    el('label', { class: 'wide' }, 'Search', el('input', { name: 'query', type: 'search', value: f.query,
      placeholder: 'plan a trip' })),
    el('label', {}, 'Skills', el('input', { name: 'skill', value: f.skills.join(', '), placeholder: 'skill ids, comma-separated' })),
    el('label', {}, 'Tags', el('input', { name: 'tag', value: f.tags.join(', '), placeholder: 'travel' })),
    el('label', { class: 'check' }, el('input', { name: 'offline', type: 'checkbox', checked: f.offline }),
      'Include offline'),
    el('button', { type: 'submit' }, 'Search'));
  const liveNote = el('span', { class: 'live muted', 'aria-live': 'polite' }, 'connecting…');
  const ranked = Boolean(f.query);
  const body = el('tbody', {});
  const caption = el('caption', {});
  main.replaceChildren(
    el('h1', {}, `Agents in ${ns}`), form, el('p', {}, liveNote),
    el('table', { 'data-testid': 'agents' }, caption,
      el('thead', {}, el('tr', {}, ['Name', 'Logical id', 'State', 'Live', 'Kind', 'Version', 'Skills',
        ranked ? 'Score' : null].filter(Boolean).map((h) => el('th', { scope: 'col' }, h)))),
      body));
  let pending = null;
  const refresh = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      try {
        const rows = await searchAll(ns, f);
        body.replaceChildren(...rows.map((r) => agentRow(r, ranked)));
        caption.textContent = rows.length === 0
          ? (f.offline ? 'No agent with a card matches.' : 'No live agent matches (try Include offline).')
          : `${rows.length} agent${rows.length === 1 ? '' : 's'}${f.offline ? '' : ', live only'}`;
      } catch (e) { liveNote.textContent = e.message; }
    }, 20);
  };
  refresh();
  stopWatch = watch(`/v1/namespaces/${encodeURIComponent(ns)}/watch`, (ev) => {
    if (ev.event === 'error') { liveNote.textContent = `watch: ${ev.data.code || ''} ${ev.data.message || ''}`; return; }
    if (ev.id) liveNote.textContent = `live · revision ${ev.id}`;
    refresh();
  });
}

// The card as published when it was laid out by its author; one long line is shown indented.
function cardText(json) {
  if (json.includes('\n')) return json;
  try { return JSON.stringify(JSON.parse(json), null, 2); } catch (e) { return json; }
}

async function agentPage(main, ns, logicalId) {
  const path = `/v1/namespaces/${encodeURIComponent(ns)}/agents/${encodeURIComponent(logicalId)}`;
  const show = async () => {
    const { agent: a } = await api(path);
    crumbs(['namespaces', '#/'], [ns, `#/ns/${encodeURIComponent(ns)}`],
      ['agents', `#/ns/${encodeURIComponent(ns)}/agents`], [logicalId]);
    const fields = [
      ['Name', a.name || '—'], ['Description', a.description || '—'], ['Version', a.version || '—'],
      ['State', statePill(a)], ['Live instances', el('span', { 'data-testid': 'live-count' }, Number(a.liveCount || 0))],
      ['Kind', cardKind(a.kind)], ['Digest', el('code', {}, a.digest)],
      ['Published', a.publishedAt || '—'], ['Revision', a.revision],
    ];
    const skills = a.skills || [];
    const live = a.liveInstances || [];
    main.replaceChildren(
      el('h1', {}, a.name || logicalId, ' ', el('code', {}, logicalId)),
      el('dl', { class: 'card' }, fields.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
      el('h2', {}, 'Skills'),
      skills.length === 0 ? el('p', { class: 'muted' }, 'This card lists no skills.') :
      el('table', { 'data-testid': 'skills' },
        el('thead', {}, el('tr', {}, ['Id', 'Name', 'Tags', 'Description'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, skills.map((s) => el('tr', {},
          el('td', {}, el('code', {}, s.id)), el('td', {}, s.name || '—'),
          el('td', {}, (s.tags || []).map((t) => el('span', { class: 'tag' }, t))),
          el('td', {}, s.description || '—'))))),
      el('h2', {}, 'Live instances'),
      live.length === 0 ? el('p', { class: 'muted' }, 'Nothing live serves this agent now.') :
      el('table', {},
        el('thead', {}, el('tr', {}, ['Instance', 'Endpoint', 'Version', 'Card'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, live.map((i) => el('tr', {},
          el('td', {}, el('a', { href: `#/instance/${i.instanceId}` }, el('code', { title: i.instanceId }, short(i.instanceId)))),
          el('td', {}, el('code', {}, i.endpoint || '—')), el('td', {}, i.version || '—'),
          el('td', {}, el('code', { title: i.cardDigest || '' }, i.cardDigest === a.digest ? 'current' : short(i.cardDigest))))))),
      el('h2', {}, 'Card'),
      el('pre', { class: 'json', 'data-testid': 'card-json' }, a.card ? cardText(a.card.json) : '—'));
  };
  await show();
  stopWatch = watch(`/v1/namespaces/${encodeURIComponent(ns)}/watch?logicalId=${encodeURIComponent(logicalId)}`,
    () => { show().catch(() => {}); });
}
