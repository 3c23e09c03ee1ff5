// Small DOM and fetch helpers shared by the page's modules. `el` sets
// properties and text, never markup.

let unauthorized = () => {};

/** What to do when a request finds the session gone (show the sign-in). */
export function onUnauthorized(f) {
  unauthorized = f;
}

export const $ = (id) => document.getElementById(id);
export const el = (tag, props = {}, ...children) => {
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
export async function api(path, opts = {}) {
  const init = { ...opts, headers: { ...(opts.headers || {}) } };
  if (opts.json !== undefined) {
    init.body = JSON.stringify(opts.json);
    init.headers['content-type'] = 'application/json';
    delete init.json;
  }
  const r = await fetch(path, init);
  if (r.status === 401 && path !== '/api/v1/auth/me' && path !== '/api/v1/auth/login') {
    unauthorized();
  }
  return r;
}

export async function errorText(r) {
  try {
    const j = await r.json();
    return j.error || `HTTP ${r.status}`;
  } catch {
    return `HTTP ${r.status}`;
  }
}

export function say(text) {
  $('status').textContent = text;
}

