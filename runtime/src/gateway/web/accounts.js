// The Connected accounts view: each agent's MCP servers that act as the
// user, with Disconnect (revoked at the provider) and Connect (a link the
// user follows to the provider). The gateway asks the agents each time.
import { safeUrl } from '/assets/markdown.js';
import { $, el, api, errorText } from '/assets/dom.js';

const when = (ms) => (ms ? new Date(ms).toLocaleString() : 'unknown');

export async function showAccounts(open = true) {
  $('accounts').hidden = !open;
  $('chat').hidden = open;
  if (!open) return;
  $('accounts-title').focus();
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
    // Recorded by the agent at most once a minute per account.
    li.appendChild(el('p', { class: 'last-used', text: c.last_used_ms ? `Last used ${when(c.last_used_ms)}` : 'Not used by a tool yet' }));
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
