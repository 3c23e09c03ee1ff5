// One agent turn in the transcript: reads the task's SSE events (and
// resumes them with Last-Event-ID when the connection drops), renders the
// streamed answer as Markdown, tool activity, the authorization card, and
// the card of a tool server's page (URL-mode elicitation).
import { render, safeUrl } from '/assets/markdown.js';
import { $, el, api, errorText, say } from '/assets/dom.js';

export const TERMINAL = new Set(['completed', 'canceled', 'failed', 'rejected']);

export class TurnView {
  /** `hooks.submitted(view)` and `hooks.ended(view)` tell the page when
   * the task gets its id and when it ends (for the Cancel button). */
  constructor(agent, hooks) {
    this.hooks = hooks;
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

  /** A tool server asks the user to open a page of its own (MCP URL-mode
   * elicitation): names the host before the user goes, opens it on a
   * click, and tells the agent when the user is done or declines. */
  pageCard(d) {
    const href = safeUrl(d.elicitation_url || '');
    const server = d.tool_id || d.tool || 'the tool';
    const card = el('div', { class: 'card', role: 'group', 'aria-label': `Page of ${server}` });
    card.appendChild(el('p', { text: d.message || `${server} needs you to open a page.` }));
    const stateLine = el('p', { class: 'state', text: '' });
    if (href) {
      const host = new URL(href).host;
      card.appendChild(el('p', { class: 'host', text: `The page is at ${host}.` }));
      const open = el('button', { type: 'button', class: 'primary', text: `Open ${host}` });
      open.addEventListener('click', () => {
        window.open(href, '_blank', 'noopener,noreferrer');
        stateLine.textContent = 'When you are done there, come back and press Done.';
      });
      // The user's choice is the card's outcome from the click on, so the
      // task's next event (which may come before this POST returns)
      // settles the card with the right words; only an unsettled card
      // takes the POST's own line.
      const answer = (action) => async () => {
        for (const b of card.querySelectorAll('button')) b.disabled = true;
        card.outcome = action;
        const r = await api(`/api/v1/tasks/${encodeURIComponent(this.taskId || '')}:continue`, {
          method: 'POST',
          json: { elicitation_id: d.elicitation_id, action },
        });
        if (r.ok) {
          const said = await r.json().catch(() => null);
          const parts = said?.parts || said?.status?.message?.parts || [];
          if (parts.some((p) => p.data?.outcome === 'task_ended')) {
            this.cards = this.cards.filter((c) => c !== card);
            this.retire(card, 'failed', 'The task had already ended, so nothing continues.');
          } else if (!card.settled) {
            stateLine.textContent = action === 'accept' ? 'The task continues…' : 'Declined; the task continues without it.';
          }
        } else if (!card.settled) {
          card.outcome = undefined;
          stateLine.textContent = await errorText(r);
          for (const b of card.querySelectorAll('button')) b.disabled = false;
        }
      };
      const done = el('button', { type: 'button', text: 'Done' });
      done.addEventListener('click', answer('accept'));
      const decline = el('button', { type: 'button', text: 'Decline' });
      decline.addEventListener('click', answer('decline'));
      card.appendChild(el('div', { class: 'actions' }, open, done, decline));
    } else {
      stateLine.textContent = 'The tool sent a page link that is not http(s); it was refused.';
    }
    card.appendChild(stateLine);
    card.server = server;
    card.stateLine = stateLine;
    card.okText = `Done with ${server}`;
    this.notes.appendChild(card);
    this.cards.push(card);
  }

  /** The task moved on (`ok`) or ended without success: every open card
   * says how it ended, in the words of what the user chose. */
  settleCards(ok, why) {
    for (const card of this.cards.splice(0)) {
      if (card.outcome === 'decline') {
        this.retire(card, 'declined', `Declined: the task went on without ${card.server}\u2019s page.`);
      } else if (ok) {
        this.retire(card, 'connected', card.okText || `Connected to ${card.server}`);
      } else {
        this.retire(card, 'failed', why);
      }
    }
  }

  retire(card, cls, text) {
    card.settled = true;
    for (const b of card.querySelectorAll('button')) b.remove();
    card.querySelector('.actions')?.remove();
    card.classList.add(cls);
    card.stateLine.textContent = text;
  }

  status(ev) {
    const s = ev.status || {};
    const parts = s.message?.parts || [];
    if (this.cards.length && s.state === 'working') {
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
      } else if (p.kind === 'data' && p.data?.type === 'url_elicitation_required') {
        this.pageCard(p.data);
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
    this.hooks.ended(this);
    this.detach();
  }

  onEvent(name, data) {
    requestAnimationFrame(followBottom);
    switch (name) {
      case 'submitted':
        this.taskId = data.taskId;
        this.answer.classList.add('streaming');
        this.hooks.submitted(this);
        break;
      case 'status':
        this.answer.classList.toggle('streaming', !['auth-required', 'input-required'].includes(data.status?.state));
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
export async function readSse(resp, on) {
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
