// The gateway's chat page. Plain DOM, no framework: everything agents send
// becomes text nodes, or DOM built by the Markdown renderer, which never
// parses HTML. The only link the page opens itself, an authorization URL,
// opens on the user's click and only when it is http(s).
import { render, safeUrl } from '/assets/markdown.js';

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('aria-') || k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  return e;
};
const TERMINAL = new Set(['completed', 'canceled', 'failed', 'rejected']);

const state = {
  user: null,
  agents: [],
  conversations: [],
  current: null, // the open conversation, with its turns
  views: new Map(), // task id -> TurnView of the open conversation
};

async function api(path, opts = {}) {
  const init = { ...opts, headers: { ...(opts.headers || {}) } };
  if (opts.json !== undefined) {
    init.body = JSON.stringify(opts.json);
    init.headers['content-type'] = 'application/json';
    delete init.json;
  }
  const r = await fetch(path, init);
  if (r.status === 401 && path !== '/api/v1/auth/me' && path !== '/api/v1/auth/login') {
    showLogin();
  }
  return r;
}

async function errorText(r) {
  try {
    const j = await r.json();
    return j.error || `HTTP ${r.status}`;
  } catch {
    return `HTTP ${r.status}`;
  }
}

function say(text) {
  $('status').textContent = text;
}

// ---- sign in -------------------------------------------------------------

function showLogin() {
  state.user = null;
  $('login').hidden = false;
  $('chat').hidden = true;
  $('accounts').hidden = true;
  $('accounts-open').hidden = true;
  $('sidebar').hidden = true;
  $('who').hidden = true;
  $('logout').hidden = true;
  $('menu').hidden = true;
  $('token').focus();
}

async function start() {
  const r = await api('/api/v1/auth/me');
  if (r.status === 401) return showLogin();
  if (!r.ok) return say(`The gateway answered ${r.status}.`);
  state.user = (await r.json()).user;
  $('login').hidden = true;
  $('chat').hidden = false;
  $('sidebar').hidden = false;
  $('menu').hidden = false;
  $('who').hidden = false;
  $('who').textContent = `Signed in as ${state.user.name || state.user.id}`;
  $('logout').hidden = false;
  $('accounts-open').hidden = false;
  await loadAgents();
  await loadConversations();
  const first = state.conversations[0];
  if (first) await openConversation(first.id);
  else newChat();
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('login-error').textContent = '';
  const r = await api('/api/v1/auth/login', { method: 'POST', json: { token: $('token').value } });
  if (!r.ok) {
    $('login-error').textContent = `Sign-in failed: ${await errorText(r)}`;
    return;
  }
  $('token').value = '';
  await start();
});

$('logout').addEventListener('click', async () => {
  await api('/api/v1/auth/logout', { method: 'POST' });
  closeStreams();
  location.reload();
});

// ---- agents --------------------------------------------------------------

async function loadAgents() {
  const r = await api('/api/v1/agents');
  if (!r.ok) return;
  state.agents = (await r.json()).agents || [];
  const sel = $('agent');
  const keep = sel.value;
  sel.replaceChildren();
  for (const a of state.agents) {
    sel.appendChild(el('option', { value: a.name, text: a.displayName || a.display_name || a.name }));
  }
  if (keep) sel.value = keep;
  showAgent();
}

function showAgent() {
  const a = state.agents.find((x) => x.name === $('agent').value);
  $('agent-summary').textContent = a ? `About ${a.displayName || a.name}` : 'No agents are online';
  $('agent-description').textContent = a ? a.description || 'No description.' : '';
  const tools = $('agent-tools');
  tools.replaceChildren();
  for (const s of a?.skills || []) {
    tools.appendChild(el('li', {}, el('strong', { text: s.name }), s.description ? ` — ${s.description}` : ''));
  }
  if (a && !(a.skills || []).length) tools.appendChild(el('li', { text: 'none listed' }));
}

$('agent').addEventListener('change', showAgent);

// ---- conversations -------------------------------------------------------

async function loadConversations() {
  const r = await api('/api/v1/conversations');
  if (!r.ok) return;
  state.conversations = (await r.json()).conversations || [];
  const list = $('conversations');
  list.replaceChildren();
  for (const c of state.conversations) {
    const b = el('button', { type: 'button', text: c.title, title: c.title });
    if (state.current && state.current.id === c.id) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', () => {
      openConversation(c.id);
      if (narrow()) toggleSidebar(false);
    });
    list.appendChild(el('li', {}, b));
  }
}

function closeStreams() {
  for (const v of state.views.values()) v.detach();
  state.views.clear();
}

function newChat() {
  showAccounts(false);
  closeStreams();
  state.current = null;
  $('transcript').replaceChildren();
  $('empty').hidden = false;
  $('title').value = '';
  $('title').disabled = true;
  $('delete').disabled = true;
  $('cancel').hidden = true;
  for (const b of $('conversations').querySelectorAll('button')) b.removeAttribute('aria-current');
  $('input').focus();
}

async function openConversation(id) {
  const r = await api(`/api/v1/conversations/${encodeURIComponent(id)}`);
  if (!r.ok) {
    say(`Could not open the conversation: ${await errorText(r)}`);
    return;
  }
  const conv = await r.json();
  showAccounts(false);
  closeStreams();
  state.current = conv;
  $('title').value = conv.title;
  $('title').disabled = false;
  $('delete').disabled = false;
  if (state.agents.some((a) => a.name === conv.agent)) {
    $('agent').value = conv.agent;
    showAgent();
  }
  const t = $('transcript');
  t.replaceChildren();
  $('empty').hidden = conv.turns.length > 0;
  for (const turn of conv.turns) {
    const view = addTurn(turn.prompt, turn.agent, turn.taskId);
    if (TERMINAL.has(turn.state)) {
      view.showStored(turn);
    } else {
      // Still running (or the page went away before it ended): replay its
      // events from the gateway and follow the rest.
      view.follow(`/api/v1/tasks/${encodeURIComponent(turn.taskId)}/events`, {}, turn);
    }
  }
  await loadConversations();
  t.scrollTop = t.scrollHeight;
}

$('new').addEventListener('click', () => {
  newChat();
  if (narrow()) toggleSidebar(false);
});

$('title').addEventListener('change', async () => {
  if (!state.current) return;
  const title = $('title').value.trim();
  if (!title) {
    $('title').value = state.current.title;
    return;
  }
  const r = await api(`/api/v1/conversations/${encodeURIComponent(state.current.id)}`, {
    method: 'PATCH',
    json: { title },
  });
  if (!r.ok) return say(`Rename failed: ${await errorText(r)}`);
  state.current.title = title;
  say('Renamed.');
  await loadConversations();
});

$('delete').addEventListener('click', async () => {
  if (!state.current) return;
  if (!confirm(`Delete the conversation “${state.current.title}”?`)) return;
  const r = await api(`/api/v1/conversations/${encodeURIComponent(state.current.id)}`, { method: 'DELETE' });
  if (!r.ok && r.status !== 404) return say(`Delete failed: ${await errorText(r)}`);
  newChat();
  await loadConversations();
  say('Conversation deleted.');
});

// ---- one turn: the user's message and the agent's answer ---------------

function addTurn(prompt, agent, taskId) {
  const t = $('transcript');
  $('empty').hidden = true;
  t.appendChild(el('li', { class: 'msg user' }, el('span', { class: 'sr-only', text: 'You: ' }), prompt));
  const view = new TurnView(agent);
  t.appendChild(view.root);
  if (taskId) {
    view.taskId = taskId;
    state.views.set(taskId, view);
  }
  return view;
}

class TurnView {
  constructor(agent) {
    this.root = el('li', { class: 'msg agent' });
    this.root.appendChild(el('div', { class: 'who-line', text: agent }));
    this.tools = null; // <details> of tool activity
    this.toolItems = new Map(); // call id -> <li>
    this.answer = el('div', { class: 'answer' });
    this.notes = el('div');
    this.root.append(this.notes, this.answer);
    this.text = '';
    this.cards = [];
    this.lastId = 0;
    this.done = false;
    this.abort = null;
    this.taskId = null;
    this.frame = 0;
  }

  showStored(turn) {
    for (const t of turn.tools || []) {
      this.tool({ type: t.ok === null ? 'tool_call' : 'tool_result', tool: t.tool, server: t.server, duration_ms: t.duration_ms, ok: t.ok });
    }
    this.finish(turn.state, turn.answer || '');
  }

  note(text, cls = '') {
    this.notes.appendChild(el('p', { class: `note ${cls}`, text }));
  }

  setText(text) {
    this.text = text;
    if (this.frame) return;
    // One render per frame, however fast the deltas come.
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.answer.replaceChildren(render(document, this.text));
      followBottom();
    });
  }

  tool(d) {
    if (!this.tools) {
      this.tools = el('details', { class: 'activity' }, el('summary'), el('ul'));
      this.notes.appendChild(this.tools);
    }
    const key = d.call_id || `${d.tool}#${this.toolItems.size}`;
    let li = this.toolItems.get(key);
    if (!li || d.type === 'tool_call') {
      if (d.type !== 'tool_call') {
        // A result whose start was not seen (stored turns have no ids).
        li = [...this.toolItems.values()].find((x) => x.dataset.tool === d.tool && !x.dataset.done);
      }
      if (!li) {
        li = el('li', { 'data-tool': d.tool || '' });
        this.toolItems.set(key, li);
        this.tools.querySelector('ul').appendChild(li);
      }
    }
    const where = d.server ? ` on ${d.server}` : '';
    if (d.type === 'tool_result') {
      li.dataset.done = '1';
      const ms = typeof d.duration_ms === 'number' ? `, ${d.duration_ms} ms` : '';
      li.textContent = `${d.tool}${where}: ${d.ok === false ? 'failed' : 'done'}${ms}`;
      li.className = d.ok === false ? 'bad' : '';
    } else {
      li.textContent = `${d.tool}${where}: running…`;
    }
    const n = this.toolItems.size;
    const names = [...new Set([...this.toolItems.values()].map((x) => x.dataset.tool))].join(', ');
    this.tools.querySelector('summary').textContent = `Used ${n} tool${n === 1 ? '' : 's'}: ${names}`;
  }

  authCard(d) {
    const href = safeUrl(d.authorization_url || '');
    const server = d.tool_id || d.tool || 'the tool';
    const card = el('div', { class: 'card', role: 'group', 'aria-label': `Authorization for ${server}` });
    card.appendChild(el('p', { text: d.message || `${d.tool || 'A tool'} needs your permission to act as you at ${server}.` }));
    const stateLine = el('p', { class: 'state', text: '' });
    if (href) {
      const b = el('button', { type: 'button', class: 'primary', text: `Authorize ${server}` });
      b.addEventListener('click', () => {
        // A click opens the provider: no popup blocker stands in the way.
        const url = new URL(href);
        window.open(url.href, '_blank', 'noopener,noreferrer');
        stateLine.textContent = 'Waiting for you to finish in the other tab…';
      });
      card.appendChild(b);
    } else {
      stateLine.textContent = 'The agent sent an authorization link that is not http(s); it was refused.';
    }
    card.appendChild(stateLine);
    card.server = server;
    card.stateLine = stateLine;
    this.notes.appendChild(card);
    this.cards.push(card);
  }

  settleCards(ok, why) {
    for (const card of this.cards.splice(0)) {
      card.querySelector('button')?.remove();
      card.classList.add(ok ? 'connected' : 'failed');
      card.stateLine.textContent = ok ? `Connected to ${card.server}` : why;
    }
  }

  status(ev) {
    const s = ev.status || {};
    const parts = s.message?.parts || [];
    if (s.state !== 'auth-required' && this.cards.length && s.state === 'working') {
      this.settleCards(true);
    }
    for (const p of parts) {
      if (p.kind === 'text' && p.metadata?.amesh_event === 'text_delta') {
        this.root.dataset.deltas = String(Number(this.root.dataset.deltas || 0) + 1);
        this.setText(this.text + p.text);
      } else if (p.kind === 'data' && p.data && (p.data.type === 'tool_call' || p.data.type === 'tool_result')) {
        this.tool(p.data);
      } else if (p.kind === 'data' && p.data?.type === 'oauth2_authorization_required') {
        this.authCard(p.data);
      }
    }
    if (s.state === 'auth-required' && !parts.some((p) => p.data?.type === 'oauth2_authorization_required')) {
      this.note(texts(parts) || 'The agent needs an authorization.');
    }
    if (s.final) this.finish(s.state, texts(parts));
  }

  finish(stateName, text) {
    if (this.done) return;
    this.done = true;
    this.answer.classList.remove('streaming');
    if (stateName === 'completed') {
      if (text) this.setText(text);
      this.settleCards(true);
    } else {
      const words = {
        canceled: 'Canceled',
        failed: 'Failed',
        rejected: 'Rejected',
      }[stateName] || `Ended (${stateName || 'unknown'})`;
      const why = text ? `${words}: ${text}` : words;
      this.settleCards(false, authWords(text, stateName));
      this.note(why, stateName || '');
    }
    if (this.taskId && currentTaskId() === this.taskId) $('cancel').hidden = true;
    this.detach();
  }

  onEvent(name, data) {
    requestAnimationFrame(followBottom);
    switch (name) {
      case 'submitted':
        this.taskId = data.taskId;
        state.views.set(data.taskId, this);
        this.answer.classList.add('streaming');
        $('cancel').hidden = false;
        $('cancel').dataset.task = data.taskId;
        break;
      case 'status':
        this.answer.classList.toggle('streaming', data.status?.state !== 'auth-required');
        this.status(data);
        break;
      case 'artifact':
        break;
      case 'task': {
        const t = data;
        const answer = (t.artifacts || []).flatMap((a) => a.parts || []).filter((p) => p.kind === 'text').map((p) => p.text).join('\n');
        const state = t.status?.state || (t.kind === 'message' ? 'completed' : 'unknown');
        const why = texts(t.status?.message?.parts || t.parts || []);
        this.finish(state, state === 'completed' ? answer || why : why);
        break;
      }
      case 'error':
        this.finish('failed', data.message || 'the gateway reported an error');
        break;
      default:
        break;
    }
  }

  /** Reads an SSE response from `url`; reconnects with Last-Event-ID. */
  async follow(url, init, stored) {
    let tries = 0;
    while (!this.done) {
      this.abort = new AbortController();
      const headers = { ...(init.headers || {}) };
      if (this.lastId) headers['last-event-id'] = String(this.lastId);
      let r;
      try {
        r = await fetch(url, { ...init, headers, signal: this.abort.signal });
      } catch (e) {
        if (this.abort.signal.aborted) return;
        r = null;
      }
      if (r && !r.ok) {
        const why = await errorText(r);
        if (r.status === 404 && stored) {
          // The gateway no longer keeps its events: show what is stored.
          this.finish(stored.state === 'auth-required' || stored.state === 'working' || stored.state === 'submitted' ? 'unknown' : stored.state, stored.answer || 'the gateway no longer has this task\u2019s events');
        } else {
          this.finish('failed', why);
        }
        return;
      }
      if (r) {
        tries = 0;
        try {
          await readSse(r, (id, name, data) => {
            if (id) this.lastId = Number(id) || this.lastId;
            this.onEvent(name, data);
          });
        } catch (e) {
          if (this.abort.signal.aborted) return;
        }
      }
      if (this.done) return;
      // The connection dropped before the end: resume where it stopped.
      url = `/api/v1/tasks/${encodeURIComponent(this.taskId || '')}/events`;
      init = {};
      if (!this.taskId || ++tries > 8) {
        this.finish('failed', 'lost the connection to the gateway');
        return;
      }
      say('Connection lost; resuming…');
      await new Promise((res) => setTimeout(res, Math.min(4000, 250 * 2 ** tries)));
      say('');
    }
  }

  detach() {
    if (this.abort) this.abort.abort();
  }
}

/** Keeps the newest message in view, unless the user scrolled up to read. */
function followBottom() {
  const t = $('transcript');
  if (t.scrollHeight - t.scrollTop - t.clientHeight < 240) t.scrollTop = t.scrollHeight;
}

function texts(parts) {
  return (parts || []).filter((p) => p.kind === 'text' && !p.metadata?.amesh_event).map((p) => p.text).join('\n');
}

/** What a failed authorization says, in words. */
function authWords(text, stateName) {
  if (stateName === 'canceled') return 'Canceled before the authorization was finished.';
  if (/access_denied|denied/i.test(text || '')) return `You denied the authorization. ${text}`;
  return `The authorization did not succeed: ${text || stateName}`;
}

/** Parses an SSE body, calling `on(id, event, data)` for each event. */
async function readSse(resp, on) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(buf[i] === '\r' ? i + 4 : i + 2);
      let id = null;
      let name = 'message';
      const data = [];
      for (const line of chunk.split(/\r?\n/)) {
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'id') id = val;
        else if (field === 'event') name = val;
        else if (field === 'data') data.push(val);
      }
      if (!data.length) continue;
      let parsed;
      try {
        parsed = JSON.parse(data.join('\n'));
      } catch {
        continue;
      }
      on(id, name, parsed);
    }
  }
}

function currentTaskId() {
  return $('cancel').dataset.task || '';
}

// ---- sending -------------------------------------------------------------

async function send() {
  const text = $('input').value;
  if (!text.trim()) return;
  const agent = $('agent').value;
  if (!agent) return say('No agent is online to answer.');
  $('send').disabled = true;
  try {
    if (!state.current) {
      const r = await api('/api/v1/conversations', { method: 'POST', json: { agent } });
      if (!r.ok) return say(`Could not start a conversation: ${await errorText(r)}`);
      const c = await r.json();
      state.current = { ...c, turns: [] };
      $('title').disabled = false;
      $('delete').disabled = false;
    }
    $('input').value = '';
    const view = addTurn(text, agent, null);
    view.answer.classList.add('streaming');
    const conv = state.current;
    view
      .follow('/api/v1/message:stream', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ agent_name: agent, text, contextId: conv.id }),
      })
      .then(() => {
        if (state.current && state.current.id === conv.id) loadConversations();
      });
    const t = $('transcript');
    t.scrollTop = t.scrollHeight;
    setTimeout(async () => {
      await loadConversations();
      const mine = state.conversations.find((c) => c.id === conv.id);
      if (mine && state.current?.id === conv.id) {
        state.current.title = mine.title;
        $('title').value = mine.title;
      }
    }, 300);
  } finally {
    $('send').disabled = false;
  }
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});

$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});

$('cancel').addEventListener('click', async () => {
  const id = currentTaskId();
  if (!id) return;
  const r = await api(`/api/v1/tasks/${encodeURIComponent(id)}:cancel`, { method: 'POST' });
  if (!r.ok) say(`Cancel failed: ${await errorText(r)}`);
  else say('Canceled.');
});

// ---- connected accounts ------------------------------------------------

const when = (ms) => (ms ? new Date(ms).toLocaleString() : 'unknown');

async function showAccounts(open = true) {
  $('accounts').hidden = !open;
  $('chat').hidden = open;
  if (!open) return;
  $('accounts-title').focus?.();
  await loadAccounts();
}

async function loadAccounts() {
  const list = $('accounts-list');
  const r = await api('/api/v1/connections');
  if (!r.ok) {
    $('accounts-status').textContent = `Could not list the accounts: ${await errorText(r)}`;
    return;
  }
  const j = await r.json();
  list.replaceChildren();
  for (const c of j.connections || []) list.appendChild(accountItem(c));
  if (!(j.connections || []).length) list.appendChild(el('li', { text: 'No agent uses services that need your permission.' }));
  for (const u of j.unavailable || []) list.appendChild(el('li', { text: `${u.agent}: ${u.error}` }));
}

function accountItem(c) {
  const li = el('li', { 'data-tool': c.tool_id, 'data-agent': c.agent });
  li.appendChild(el('h3', { text: `${c.tool_id} (agent ${c.agent})` }));
  if (c.tools?.length) li.appendChild(el('p', { class: 'muted', text: `Tools: ${c.tools.join(', ')}` }));
  if (c.connected) {
    li.appendChild(el('p', {}, el('span', { class: 'on', text: 'Connected' }), ` since ${when(c.connected_ms)}${c.issuer ? ` at ${c.issuer}` : ''}`));
    li.appendChild(el('p', { text: `Scopes: ${(c.scopes || []).join(' ') || 'none named'}` }));
    li.appendChild(el('p', { text: `Last refreshed ${when(c.refreshed_ms)} · access token expires ${when(c.token_expires_ms)} · kept until ${when(c.expires_ms)}` }));
    const b = el('button', { type: 'button', class: 'danger', text: `Disconnect ${c.tool_id}` });
    b.addEventListener('click', async () => {
      b.disabled = true;
      const r = await api(`/api/v1/connections/${encodeURIComponent(c.agent)}/${encodeURIComponent(c.tool_id)}`, { method: 'DELETE' });
      $('accounts-status').textContent = r.ok ? (await r.json()).message : `Disconnect failed: ${await errorText(r)}`;
      await loadAccounts();
    });
    li.appendChild(b);
  } else {
    li.appendChild(el('p', { text: 'Not connected.' }));
    const b = el('button', { type: 'button', class: 'primary', text: `Connect ${c.tool_id}` });
    b.addEventListener('click', async () => {
      b.disabled = true;
      const r = await api(`/api/v1/connections/${encodeURIComponent(c.agent)}/${encodeURIComponent(c.tool_id)}`, { method: 'POST' });
      if (!r.ok) {
        b.disabled = false;
        $('accounts-status').textContent = `Connect failed: ${await errorText(r)}`;
        return;
      }
      const href = safeUrl((await r.json()).authorization_url || '');
      if (!href) {
        $('accounts-status').textContent = 'The agent sent an authorization link that is not http(s); it was refused.';
        return;
      }
      // A link the user follows: a real click, so no popup blocker.
      const a = el('a', { href, target: '_blank', rel: 'noopener noreferrer', text: `Open ${new URL(href).host} to allow access` });
      b.replaceWith(a);
      a.focus();
      $('accounts-status').textContent = 'Finish in the new tab, then come back here.';
    });
    li.appendChild(b);
  }
  return li;
}

$('accounts-open').addEventListener('click', () => showAccounts(true));
$('accounts-close').addEventListener('click', () => showAccounts(false));
$('accounts-refresh').addEventListener('click', () => loadAccounts());
// Back from the provider's tab: show what changed.
window.addEventListener('focus', () => {
  if (!$('accounts').hidden) loadAccounts();
});

// ---- layout --------------------------------------------------------------

const narrow = () => matchMedia('(max-width: 760px)').matches;

function toggleSidebar(open) {
  const sb = $('sidebar');
  const show = open ?? sb.classList.contains('closed');
  sb.classList.toggle('closed', !show);
  $('menu').setAttribute('aria-expanded', String(show));
}

$('menu').addEventListener('click', () => toggleSidebar());
// On a narrow screen the list is an overlay, closed until asked for.
matchMedia('(max-width: 760px)').addEventListener('change', (e) => toggleSidebar(!e.matches));
if (narrow()) toggleSidebar(false);

start();
