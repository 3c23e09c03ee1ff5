// A small Markdown renderer for agents' answers, safe by construction:
// it never parses HTML. The text is split into a tree of plain objects
// holding only a whitelist of constructs (paragraphs, headings, lists,
// quotes, code, emphasis, links, rules); every character of the input ends
// up as text in a DOM text node, so `<script>` in an answer is shown, not
// run. Links keep only http(s) URLs without credentials; anything else
// stays plain text. `parse` needs no DOM (the tests run it in Node);
// `render` turns its tree into DOM nodes with createElement/textContent.

/** The http(s) URL `raw` names, or null (javascript:, data:, relative...). */
export function safeUrl(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.username || url.password) return null;
  return url.href;
}

const INLINE = [
  // `code`
  { re: /`([^`\n]+)`/y, make: (m) => ({ t: 'code', text: m[1] }) },
  // [text](http...)
  {
    re: /\[([^\]\n]{1,500})\]\(([^()\s]{1,2000})\)/y,
    make: (m) => {
      const href = safeUrl(m[2]);
      return href ? { t: 'a', href, c: inline(m[1]) } : null;
    },
  },
  // bare URL
  {
    re: /https?:\/\/[^\s<>()"']{1,2000}/y,
    make: (m) => {
      const raw = m[0].replace(/[.,;:!?]+$/, '');
      const href = safeUrl(raw);
      return href ? { t: 'a', href, c: [{ t: 'text', text: raw }], len: raw.length } : null;
    },
  },
  // **strong** / __strong__
  { re: /\*\*(?=\S)([^\n]*?\S)\*\*/y, make: (m) => ({ t: 'strong', c: inline(m[1]) }) },
  { re: /__(?=\S)([^\n]*?\S)__/y, make: (m) => ({ t: 'strong', c: inline(m[1]) }) },
  // *em* / _em_
  { re: /\*(?=[^\s*])([^\n*]*?[^\s*])\*/y, make: (m) => ({ t: 'em', c: inline(m[1]) }) },
  { re: /_(?=[^\s_])([^\n_]*?[^\s_])_(?![A-Za-z0-9])/y, make: (m) => ({ t: 'em', c: inline(m[1]) }) },
];

/** Inline constructs of one line or paragraph. */
export function inline(text) {
  const out = [];
  let plain = '';
  let i = 0;
  const flush = () => {
    if (plain) out.push({ t: 'text', text: plain });
    plain = '';
  };
  while (i < text.length) {
    let matched = false;
    // Only where a construct can start, and `_` only at a word start.
    const ch = text[i];
    if ('`[*_h'.includes(ch) && !(ch === '_' && i > 0 && /[A-Za-z0-9]/.test(text[i - 1]))) {
      for (const rule of INLINE) {
        rule.re.lastIndex = i;
        const m = rule.re.exec(text);
        if (!m) continue;
        const node = rule.make(m);
        if (!node) continue;
        flush();
        const len = node.len ?? m[0].length;
        delete node.len;
        out.push(node);
        i += len;
        matched = true;
        break;
      }
    }
    if (!matched) {
      // A backslash escapes the next punctuation character.
      if (ch === '\\' && i + 1 < text.length && /[\\`*_[\]()#>+\-.!|~]/.test(text[i + 1])) {
        plain += text[i + 1];
        i += 2;
      } else {
        plain += ch;
        i += 1;
      }
    }
  }
  flush();
  return out;
}

/** Block structure of `text`: a list of nodes. */
export function parse(text) {
  const lines = String(text ?? '').replace(/\r\n?/g, '\n').split('\n');
  const blocks = [];
  let i = 0;
  let para = [];
  const endPara = () => {
    if (para.length) blocks.push({ t: 'p', c: inline(para.join('\n')) });
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = /^ {0,3}(```+|~~~+)\s*([\w+-]*)\s*$/.exec(line))) {
      endPara();
      const fence = m[1];
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence)) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1;
      blocks.push({ t: 'pre', lang: m[2], text: body.join('\n') });
      continue;
    }
    if (/^\s*$/.test(line)) {
      endPara();
      i += 1;
      continue;
    }
    if ((m = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line))) {
      endPara();
      // Answers sit below the page's own headings: # becomes h3.
      blocks.push({ t: 'h' + Math.min(6, m[1].length + 2), c: inline(m[2]) });
      i += 1;
      continue;
    }
    if (/^ {0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      endPara();
      blocks.push({ t: 'hr' });
      i += 1;
      continue;
    }
    if (/^ {0,3}>/.test(line)) {
      endPara();
      const quoted = [];
      while (i < lines.length && /^ {0,3}>/.test(lines[i])) {
        quoted.push(lines[i].replace(/^ {0,3}> ?/, ''));
        i += 1;
      }
      blocks.push({ t: 'blockquote', c: parse(quoted.join('\n')) });
      continue;
    }
    if ((m = /^ {0,3}([-*+]|\d{1,9}[.)])\s+/.exec(line))) {
      endPara();
      const ordered = /\d/.test(m[1]);
      const itemRe = ordered ? /^ {0,3}\d{1,9}[.)]\s+(.*)$/ : /^ {0,3}[-*+]\s+(.*)$/;
      const items = [];
      while (i < lines.length) {
        const im = itemRe.exec(lines[i]);
        if (im) {
          items.push([im[1]]);
        } else if (items.length && /^\s{2,}\S/.test(lines[i])) {
          items[items.length - 1].push(lines[i].trim());
        } else {
          break;
        }
        i += 1;
      }
      const start = ordered ? parseInt(m[1], 10) : undefined;
      blocks.push({
        t: ordered ? 'ol' : 'ul',
        start,
        c: items.map((it) => ({ t: 'li', c: inline(it.join('\n')) })),
      });
      continue;
    }
    para.push(line);
    i += 1;
  }
  endPara();
  return blocks;
}

const TAGS = new Set([
  'p', 'h3', 'h4', 'h5', 'h6', 'hr', 'blockquote', 'ul', 'ol', 'li',
  'pre', 'code', 'strong', 'em', 'a',
]);

/** DOM nodes for a tree from `parse`, appended to `parent`. */
export function renderInto(parent, nodes) {
  const doc = parent.ownerDocument;
  for (const n of nodes) {
    if (n.t === 'text') {
      parent.appendChild(doc.createTextNode(n.text));
      continue;
    }
    if (!TAGS.has(n.t)) continue;
    if (n.t === 'pre') {
      const pre = doc.createElement('pre');
      const code = doc.createElement('code');
      code.textContent = n.text;
      pre.appendChild(code);
      parent.appendChild(pre);
      continue;
    }
    const el = doc.createElement(n.t);
    if (n.t === 'code') el.textContent = n.text;
    if (n.t === 'a') {
      // Checked again here: the tree is the only way in.
      const href = safeUrl(n.href);
      if (!href) {
        renderInto(parent, n.c || []);
        continue;
      }
      el.href = href;
      el.target = '_blank';
      el.rel = 'noopener noreferrer nofollow';
    }
    if (n.t === 'ol' && n.start && n.start !== 1) el.start = n.start;
    if (n.c) renderInto(el, n.c);
    parent.appendChild(el);
  }
  return parent;
}

/** A DocumentFragment with `text` rendered. */
export function render(doc, text) {
  return renderInto(doc.createDocumentFragment(), parse(text));
}
