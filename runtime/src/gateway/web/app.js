// The gateway's chat page. Plain DOM, no framework: everything agents send
// becomes text nodes, or DOM built by the Markdown renderer, which never
// parses HTML. The only link the page opens itself, an authorization URL,
// opens on the user's click and only when it is http(s).
import { $, el, api, errorText, say, onUnauthorized } from '/assets/dom.js';
import { TurnView, TERMINAL } from '/assets/turn.js';
import { showAccounts } from '/assets/accounts.js';

const state = {
  user: null,
  agents: [],
  conversations: [],
  current: null, // the open conversation, with its turns
  views: new Map(), // task id -> TurnView of the open conversation
};

// ---- sign in -------------------------------------------------------------

// How this gateway signs people in (`GET /api/v1/auth/config`): a
// "Sign in with <provider>" button when it has single sign-on, the API
// token form when it has token users.
let signInOptions = null;

async function loadSignInOptions() {
  if (signInOptions) return signInOptions;
  const r = await api('/api/v1/auth/config');
  signInOptions = r.ok ? await r.json() : { sso: null, token_login: true };
  const sso = signInOptions.sso;
  $('sso').hidden = !sso;
  if (sso) $('sso-login').textContent = `Sign in with ${sso.provider}`;
  $('login-form').hidden = !signInOptions.token_login;
  $('token-or').hidden = !(sso && signInOptions.token_login);
  return signInOptions;
}

$('sso-login').addEventListener('click', () => {
  const back = location.pathname + location.search;
  location.assign(`/api/v1/auth/login?return_to=${encodeURIComponent(back)}`);
});

function showLogin() {
  state.user = null;
  loadSignInOptions();
  $('login').hidden = false;
  $('chat').hidden = true;
  $('accounts').hidden = true;
  $('accounts-open').hidden = true;
  $('sidebar').hidden = true;
  $('who').hidden = true;
  $('logout').hidden = true;
  $('menu').hidden = true;
  loadSignInOptions().then((o) => (o.sso ? $('sso-login') : $('token')).focus());
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
  await onUnauthorized(showLogin);
start();
});

$('logout').addEventListener('click', async () => {
  const r = await api('/api/v1/auth/logout', { method: 'POST' });
  closeStreams();
  // A single sign-on session ends at the provider too (RP-initiated
  // logout), which sends the browser back here.
  if (r.status === 200) {
    const url = (await r.json()).logout_url;
    if (typeof url === 'string' && /^https?:\/\//i.test(url)) {
      location.assign(url);
      return;
    }
  }
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
  const agents = r.ok ? (await r.json()).agents || [] : [];
  const kept = agents.filter((a) => !a.forgotten).map((a) => `${a.agent} (${a.error})`);
  newChat();
  await loadConversations();
  say(kept.length ? `Conversation deleted here; not confirmed by ${kept.join(', ')}.` : 'Conversation deleted, with the agents\u2019 history of it.');
});

// ---- one turn: the user's message and the agent's answer ---------------

function addTurn(prompt, agent, taskId) {
  const t = $('transcript');
  $('empty').hidden = true;
  t.appendChild(el('li', { class: 'msg user' }, el('span', { class: 'sr-only', text: 'You: ' }), prompt));
  const view = new TurnView(agent, hooks);
  t.appendChild(view.root);
  if (taskId) {
    view.taskId = taskId;
    state.views.set(taskId, view);
  }
  return view;
}


/** The Cancel button follows the newest running task. */
const hooks = {
  submitted(view) {
    state.views.set(view.taskId, view);
    $('cancel').hidden = false;
    $('cancel').dataset.task = view.taskId;
  },
  ended(view) {
    if (view.taskId && currentTaskId() === view.taskId) $('cancel').hidden = true;
  },
};

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

onUnauthorized(showLogin);
start();
