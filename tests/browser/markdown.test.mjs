// Unit tests of the page's Markdown renderer (no DOM needed: `parse`
// builds a tree of plain objects). Run: node --test tests/browser/markdown.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse, inline, safeUrl } from '../../runtime/src/gateway/web/markdown.js';

const TAGS = new Set(['p', 'h3', 'h4', 'h5', 'h6', 'hr', 'blockquote', 'ul', 'ol', 'li', 'pre', 'code', 'strong', 'em', 'a', 'text']);

function walk(nodes, f) {
  for (const n of nodes) {
    f(n);
    if (n.c) walk(n.c, f);
  }
}

function textOf(nodes) {
  let s = '';
  walk(nodes, (n) => {
    if (n.t === 'text' || n.t === 'code' || n.t === 'pre') s += n.text;
  });
  return s;
}

test('HTML in an answer stays text', () => {
  for (const attack of [
    '<script>alert(1)</script>',
    '<img src=x onerror=alert(1)>',
    '<a href="javascript:alert(1)">x</a>',
    '<iframe src="https://evil.example"></iframe>',
    '**<b onclick=alert(1)>bold</b>**',
  ]) {
    const tree = parse(attack);
    walk(tree, (n) => assert.ok(TAGS.has(n.t), `${n.t} from ${attack}`));
    assert.ok(textOf(tree).includes('<'), `the markup is kept as text: ${attack}`);
  }
});

test('links open only for http(s) without credentials', () => {
  assert.equal(safeUrl('https://example.com/a?b=1'), 'https://example.com/a?b=1');
  for (const bad of ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', 'data:text/html,<b>x', 'vbscript:x', '/relative', 'https://user:pw@example.com/', ' javascript:alert(1)']) {
    assert.equal(safeUrl(bad), null, bad);
  }
  const [p] = parse('[click](javascript:alert(1)) and [ok](https://example.com)');
  const links = [];
  walk(p.c, (n) => n.t === 'a' && links.push(n.href));
  assert.deepEqual(links, ['https://example.com/']);
  assert.ok(textOf(p.c).includes('[click](javascript:alert(1))'));
});

test('bare URLs become links without trailing punctuation', () => {
  const nodes = inline('see https://example.com/x.');
  const a = nodes.find((n) => n.t === 'a');
  assert.equal(a.href, 'https://example.com/x');
  assert.equal(nodes[nodes.length - 1].text, '.');
});

test('the whitelisted constructs render', () => {
  const md = '# Title\n\nSome **bold**, *em*, `code` and snake_case_name.\n\n- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n```js\nlet a = "<b>";\n```\n\n---';
  const tree = parse(md);
  assert.deepEqual(tree.map((n) => n.t), ['h3', 'p', 'ul', 'ol', 'blockquote', 'pre', 'hr']);
  const kinds = [];
  walk(tree[1].c, (n) => kinds.push(n.t));
  assert.deepEqual(kinds.filter((k) => k !== 'text'), ['strong', 'em', 'code']);
  assert.ok(textOf(tree[1].c).includes('snake_case_name'));
  assert.equal(tree[5].text, 'let a = "<b>";');
  assert.equal(tree[2].c.length, 2);
});

test('an unterminated fence keeps the rest as code, and huge input is linear', () => {
  const tree = parse('```\n<script>\n');
  assert.equal(tree[0].t, 'pre');
  const big = '*'.repeat(20000) + '_'.repeat(20000) + '['.repeat(20000);
  const t0 = Date.now();
  parse(big);
  assert.ok(Date.now() - t0 < 2000, 'no catastrophic backtracking');
});
