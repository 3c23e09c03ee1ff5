// The chat page as users meet it, in Debian's chromium driven by
// playwright-core. Started by tests/tests/browser_ui.rs against a real
// gateway + agent (demo model, demo provider's OAuth and MCP servers, an
// OpenID Connect provider for single sign-on), with
//   GATEWAY_URL, CHROMIUM, PLAYWRIGHT_CORE_DIR, SHOTS_DIR
// in the environment. Exits non-zero on the first failed check; prints
// measured numbers (page weight, first paint) for the README.
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import assert from 'node:assert/strict';

const base = process.env.GATEWAY_URL;
const shots = process.env.SHOTS_DIR;
const require = createRequire(path.join(process.env.PLAYWRIGHT_CORE_DIR, 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const T = 20000;
const problems = [];

async function user(name, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 }, ...opts });
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error ${e.message}`));
  page.on('dialog', (d) => d.accept());
  const u = { ctx, page, name };
  open.push(u);
  return u;
}

async function shot(page, file) {
  await page.screenshot({ path: path.join(shots, file) });
}

async function signIn(page, token) {
  await page.goto(base + '/');
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForSelector('#chat:not([hidden])', { timeout: T });
  assert.equal(await page.isHidden('#login'), true, 'the login form hides once signed in');
}

async function ask(page, text) {
  const before = await page.locator('.msg.agent').count();
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.keyboard.press('Enter');
  await page.locator('.msg.agent').nth(before).waitFor({ timeout: T });
  return page.locator('.msg.agent').nth(before);
}

/** Clicks "Authorize <server>" and answers the demo provider's consent page. */
async function authorize(ctx, turn, server, as, approve = true) {
  const button = turn.getByRole('button', { name: `Authorize ${server}` });
  await button.waitFor({ timeout: T });
  const [consent] = await Promise.all([ctx.waitForEvent('page'), button.click()]);
  await consent.waitForLoadState();
  await consent.getByLabel('User name').fill(as);
  await consent.getByRole('button', { name: approve ? 'Allow' : 'Deny' }).click();
  await consent.waitForLoadState();
  return consent;
}

const open = [];
const step = async (name, f) => {
  const t0 = Date.now();
  try {
    await f();
  } catch (e) {
    // What the user saw, for the reviewer.
    console.log(`not ok - ${name}`);
    for (const [i, u] of open.entries()) {
      for (const [j, p] of u.ctx.pages().entries()) {
        await p.screenshot({ path: path.join(shots, `failed-${u.name}-${i}-${j}.png`) }).catch(() => {});
        console.log(`--- ${u.name} page ${j} (${p.url()}):\n${await p.locator('body').innerText().catch(() => '?')}`);
      }
    }
    throw e;
  }
  console.log(`ok - ${name} (${Date.now() - t0} ms)`);
};

// ---- budget: page weight and first paint ------------------------------------
await step('the page and its assets stay within 200 KB compressed', async () => {
  let raw = 0;
  let gz = 0;
  for (const p of ['/', '/assets/app.js', '/assets/turn.js', '/assets/accounts.js', '/assets/dom.js', '/assets/markdown.js', '/assets/app.css']) {
    const body = Buffer.from(await (await fetch(base + p)).arrayBuffer());
    raw += body.length;
    gz += gzipSync(body, { level: 9 }).length;
  }
  console.log(`measure: page + assets ${raw} bytes, ${gz} bytes gzip -9`);
  assert.ok(gz <= 200 * 1024, `${gz} bytes compressed`);
});

const alice = await user('alice');
await step('sign in; first paint', async () => {
  await signIn(alice.page, 'alice-token');
  await alice.page.reload();
  await alice.page.waitForSelector('#chat:not([hidden])', { timeout: T });
  const fcp = await alice.page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
  console.log(`measure: first contentful paint ${Math.round(fcp)} ms (reload, signed in)`);
  assert.ok(fcp > 0 && fcp <= 300, `first paint ${fcp} ms, over the 300 ms budget`);
  assert.equal(await alice.page.isHidden('#login'), true, 'still no login field after a reload');
  assert.match(await alice.page.textContent('#who'), /Alice/);
  // The agent picker has a label, a description and the tools.
  await alice.page.getByLabel('Agent').selectOption('assistant');
  await alice.page.locator('#agent-info summary').click();
  assert.match(await alice.page.textContent('#agent-description'), /demo model/);
  assert.match(await alice.page.textContent('#agent-tools'), /demo_whoami/);
});

await step('a chat turn: streamed answer, tool activity, Markdown as text', async () => {
  const { page } = alice;
  // Shift+Enter is a new line, not a send.
  await page.getByLabel('Message', { exact: true }).fill('first line');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('what time is it');
  assert.equal(await page.locator('.msg.user').count(), 0, 'Shift+Enter did not send');
  assert.match(await page.inputValue('#input'), /first line\nwhat time is it/);
  await page.keyboard.press('Enter');
  const turn = page.locator('.msg.agent').first();
  await turn.locator('.answer p').waitFor({ timeout: T });
  await page.waitForFunction(() => !document.querySelector('.answer.streaming'), null, { timeout: T });
  assert.match(await turn.locator('.answer').textContent(), /time returned/);
  // The answer arrived as text deltas, rendered as they came.
  assert.ok(Number(await turn.getAttribute('data-deltas')) >= 1, 'streamed as text deltas');
  assert.match(await turn.locator('.activity summary').textContent(), /Used 1 tool: time/);
  await turn.locator('.activity summary').click();
  assert.match(await turn.locator('.activity li').first().textContent(), /time.*done, \d+ ms/);
  // The conversation is listed, named after the first line.
  await page.locator('#conversations button', { hasText: 'first line' }).waitFor({ timeout: T });

  await shot(page, '1-chat.png');
});

await step('an OAuth tool authorized through the button and the consent page', async () => {
  const { page, ctx } = alice;
  const turn = await ask(page, 'who am I at demo: demo whoami');
  await turn.locator('.card').waitFor({ timeout: T });
  await shot(page, '2-authorize-card.png');
  const consent = await authorize(ctx, turn, 'demo', 'alice');
  assert.match(await consent.textContent('h1'), /Authorization complete/);
  assert.match(await consent.textContent('main'), /task continues/);
  await shot(consent, '3-callback-page.png');
  await consent.close();
  await turn.locator('.card.connected').waitFor({ timeout: T });
  assert.match(await turn.locator('.card').textContent(), /Connected to demo/);
  await turn.locator('.answer', { hasText: 'You are alice' }).waitFor({ timeout: T });
  await shot(page, '4-connected.png');
  // An answer with Markdown and HTML: the Markdown renders, the HTML is text.
  const echo = await ask(page, 'demo echo **loud** <img src=x onerror="window.pwned=1">');
  await echo.locator('.answer strong').waitFor({ timeout: T });
  assert.equal(await echo.locator('.answer img').count(), 0, 'no element from the answer\u2019s HTML');
  assert.match(await echo.locator('.answer').textContent(), /<img src=x onerror/);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
});

await step('cancel while the task waits for authorization ends it as canceled', async () => {
  const { page } = alice;
  const turn = await ask(page, 'billing whoami');
  await turn.getByRole('button', { name: 'Authorize billing' }).waitFor({ timeout: T });
  await page.getByRole('button', { name: 'Cancel' }).click();
  await turn.locator('.note.canceled').waitFor({ timeout: T });
  assert.match(await turn.locator('.card').textContent(), /Canceled before the authorization was finished/);
  assert.equal(await turn.getByRole('button', { name: 'Authorize billing' }).count(), 0);
  await page.waitForSelector('#cancel', { state: 'hidden', timeout: T });
  await shot(page, '5-canceled.png');
});

await step('a denied authorization is shown in words', async () => {
  const { page, ctx } = alice;
  const turn = await ask(page, 'billing whoami');
  const consent = await authorize(ctx, turn, 'billing', 'alice', false);
  await consent.close();
  await turn.locator('.card.failed').waitFor({ timeout: T });
  assert.match(await turn.locator('.card').textContent(), /denied/i);
  assert.match(await turn.locator('.note.failed').textContent(), /access_denied/);
});

await step('connected accounts: listed, disconnected, connected again', async () => {
  const { page, ctx } = alice;
  await page.getByRole('button', { name: 'Accounts' }).click();
  await page.waitForSelector('#accounts:not([hidden])', { timeout: T });
  const demo = page.locator('#accounts-list li[data-tool="demo"]');
  await demo.waitFor({ timeout: T });
  assert.match(await demo.textContent(), /Connected since/);
  assert.match(await demo.textContent(), /Scopes: \S/);
  // Alice's tool calls used it: the agent recorded when.
  assert.match(await demo.locator('.last-used').textContent(), /^Last used /);
  assert.match(await page.locator('#accounts-list li[data-tool="billing"]').textContent(), /Not connected/);
  await shot(page, '8-accounts.png');
  await demo.getByRole('button', { name: 'Disconnect demo' }).click();
  await page.locator('#accounts-status', { hasText: 'revoked' }).waitFor({ timeout: T });
  await demo.getByRole('button', { name: 'Connect demo' }).waitFor({ timeout: T });
  await demo.getByRole('button', { name: 'Connect demo' }).click();
  const link = demo.getByRole('link', { name: /allow access/ });
  await link.waitFor({ timeout: T });
  const [consent] = await Promise.all([ctx.waitForEvent('page'), link.click()]);
  await consent.waitForLoadState();
  await consent.getByLabel('User name').fill('alice');
  await consent.getByRole('button', { name: 'Allow' }).click();
  await consent.waitForLoadState();
  assert.match(await consent.textContent('main'), /can now use this account/);
  await consent.close();
  await page.getByRole('button', { name: 'Refresh' }).click();
  await demo.locator('.on').waitFor({ timeout: T });
  // Bob, who has connected nothing yet, sees none of it.
  const bobs = await (await fetch(base + '/api/v1/connections', { headers: { authorization: 'Bearer bob-token' } })).json();
  assert.equal(bobs.connections.find((c) => c.tool_id === 'demo').connected, false, 'alice\u2019s account is not bob\u2019s');
  await page.getByRole('button', { name: 'Back to the chat' }).click();
  await page.waitForSelector('#chat:not([hidden])', { timeout: T });
});

await step('a stream cut off mid-task resumes with Last-Event-ID', async () => {
  const { page } = alice;
  // The first answer arrives cut after two events, as if the connection
  // dropped; the page must ask for the rest itself.
  let cut = false;
  await page.route('**/api/v1/message:stream', async (route) => {
    const resp = await route.fetch();
    const body = await resp.text();
    const events = body.split('\n\n').filter((e) => e.includes('data:'));
    cut = events.length > 2;
    await route.fulfill({ response: resp, body: events.slice(0, 2).join('\n\n') + '\n\n' });
  });
  const resumed = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/events')) resumed.push(r.headers()['last-event-id']);
  });
  const turn = await ask(page, 'what time is it');
  await turn.locator('.answer', { hasText: 'time returned' }).waitFor({ timeout: T });
  await page.unroute('**/api/v1/message:stream');
  assert.ok(cut, 'the real stream had more than two events');
  assert.deepEqual(resumed, ['2'], 'resumed once, after event 2');
  assert.match(await turn.locator('.activity summary').textContent(), /time/);
});

await step('single sign-on at the OpenID Connect provider, and RP-initiated sign-out', async () => {
  const u = await user('sso');
  const { page } = u;
  await page.goto(base + '/');
  await page.getByRole('button', { name: 'Sign in with Test IdP' }).click();
  // The provider's own login page.
  await page.waitForURL(/\/interaction\//, { timeout: T });
  await page.getByLabel('User').fill('alice');
  await page.getByLabel('Password').fill('alice-pw');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForSelector('#chat:not([hidden])', { timeout: T });
  assert.equal(new URL(page.url()).origin, new URL(base).origin, 'back on the gateway');
  assert.match(await page.textContent('#who'), /Alice Example/);
  assert.equal(await page.isHidden('#login'), true);
  await shot(page, '0-sso-signed-in.png');
  // Sign out ends the gateway session and goes on to the provider's.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/session\/end/, { timeout: T });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForSelector('#login:not([hidden])', { timeout: T });
  assert.equal(new URL(page.url()).origin, new URL(base).origin, 'back on the gateway after sign-out');
  const me = await page.evaluate(async () => (await fetch('/api/v1/auth/me')).status);
  assert.equal(me, 401, 'signed out at the gateway');
  await u.ctx.close();
});

const bob = await user('bob');
await step('reload mid-task: the waiting task and then its result come back', async () => {
  const { page, ctx } = bob;
  await signIn(page, 'bob-token');
  // Bob starts in a new chat: none of alice's conversations are listed.
  assert.equal(await page.locator('#conversations li').count(), 0, 'bob sees no conversation of alice');
  const turn = await ask(page, 'who am I at demo: demo whoami');
  await turn.getByRole('button', { name: 'Authorize demo' }).waitFor({ timeout: T });
  await page.reload();
  await page.waitForSelector('#chat:not([hidden])', { timeout: T });
  const again = page.locator('.msg.agent').last();
  // The same task, replayed from the gateway, still waits for bob.
  const consent = await authorize(ctx, again, 'demo', 'bob');
  await consent.close();
  await again.locator('.answer', { hasText: 'You are bob' }).waitFor({ timeout: T });
  // Another tab of bob's sees the finished conversation too.
  const tab = await ctx.newPage();
  await tab.goto(base + '/');
  await tab.locator('.answer', { hasText: 'You are bob' }).waitFor({ timeout: T });
  await tab.close();
});

await step('two users are isolated', async () => {
  const aliceConv = await alice.page.evaluate(async () => (await (await fetch('/api/v1/conversations')).json()).conversations);
  const bobConv = await bob.page.evaluate(async () => (await (await fetch('/api/v1/conversations')).json()).conversations);
  assert.ok(aliceConv.length >= 1 && bobConv.length === 1);
  const status = await bob.page.evaluate(async (id) => (await fetch(`/api/v1/conversations/${id}`)).status, aliceConv[0].id);
  assert.equal(status, 404, 'bob cannot read alice\u2019s conversation');
  const tasks = await bob.page.evaluate(async () => (await (await fetch('/api/v1/tasks')).json()).tasks);

  assert.ok(tasks.every((t) => t.contextId === bobConv[0].id), 'bob lists only his tasks');
  assert.doesNotMatch(await bob.page.textContent('#transcript'), /alice/);
});

await step('rename and delete a conversation', async () => {
  const { page } = alice;
  await page.getByLabel('Conversation title').fill('Alice\u2019s plans');
  await page.getByLabel('Conversation title').press('Tab');
  await page.locator('#conversations button', { hasText: 'Alice\u2019s plans' }).waitFor({ timeout: T });
  const n = await page.locator('#conversations li').count();
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.waitForFunction((n) => document.querySelectorAll('#conversations li').length === n - 1, n, { timeout: T });
});

await step('375 px wide without horizontal scrolling; dark theme', async () => {
  const narrow = await user('narrow', { viewport: { width: 375, height: 740 }, colorScheme: 'dark', isMobile: true, hasTouch: true });
  await signIn(narrow.page, 'bob-token');
  await narrow.page.locator('.answer', { hasText: 'You are bob' }).waitFor({ timeout: T });
  const width = await narrow.page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `page is ${width} px wide at 375`);
  assert.equal(await narrow.page.isHidden('#sidebar'), true, 'the conversation list is closed on a phone');
  const bg = await narrow.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(bg, 'rgb(255, 255, 255)', 'dark theme');
  await shot(narrow.page, '6-narrow-dark.png');
  await narrow.page.getByRole('button', { name: 'Conversations' }).click();
  assert.equal(await narrow.page.isVisible('#sidebar'), true);
  assert.ok((await narrow.page.evaluate(() => document.documentElement.scrollWidth)) <= 375);
  await shot(narrow.page, '7-narrow-menu.png');
  await narrow.page.getByRole('button', { name: 'Conversations' }).click();
  await narrow.page.getByRole('button', { name: 'Accounts' }).click();
  await narrow.page.locator('#accounts-list li').first().waitFor({ timeout: T });
  assert.ok((await narrow.page.evaluate(() => document.documentElement.scrollWidth)) <= 375, 'accounts at 375 px');
  await shot(narrow.page, '9-narrow-accounts.png');
  await narrow.ctx.close();
});

await step('landmarks and labels', async () => {
  const { page } = alice;
  for (const role of ['banner', 'navigation', 'main']) {
    assert.ok((await page.getByRole(role).count()) >= 1, `a ${role} landmark`);
  }
  // Every form control has an accessible name.
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea, button')]
      .filter((e) => e.offsetParent !== null)
      .filter((e) => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))
      .map((e) => e.id || e.outerHTML.slice(0, 60)),
  );
  assert.deepEqual(unnamed, []);
});

await step('axe-core finds nothing critical or serious', async () => {
  const axeSource = require('fs').readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  // A context that lets the test inject axe despite the page's CSP.
  for (const [label, opts] of [
    ['light', { viewport: { width: 1100, height: 760 } }],
    ['dark-375', { viewport: { width: 375, height: 740 }, colorScheme: 'dark' }],
  ]) {
    const ctx = await browser.newContext({ ...opts, bypassCSP: true });
    const page = await ctx.newPage();
    await page.goto(base + '/');
    await page.waitForSelector('#login:not([hidden])', { timeout: T });
    await check(page, `${label}, signed out`);
    // Bob's conversation has an answer with tool activity.
    await page.getByLabel('API token').fill('bob-token');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.locator('.answer').first().waitFor({ timeout: T });
    await page.locator('.activity summary').first().click();
    await check(page, `${label}, chat`);
    await page.getByRole('button', { name: 'Accounts' }).click();
    await page.locator('#accounts-list li').first().waitFor({ timeout: T });
    await check(page, `${label}, connected accounts`);
    await ctx.close();
  }
  async function check(page, what) {
    await page.evaluate(axeSource);
    const result = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return {
        passes: r.passes.length,
        violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) })),
      };
    });
    assert.ok(result.passes > 10, `axe ran its rules (${result.passes} passed)`);
    const bad = result.violations.filter((v) => v.impact === 'critical' || v.impact === 'serious');
    console.log(`measure: axe (${what}): ${result.passes} rules passed, ${result.violations.length} violations, ${bad.length} critical or serious ${JSON.stringify(result.violations)}`);
    assert.deepEqual(bad, [], `axe on ${what}`);
  }
});

assert.deepEqual(problems, [], 'no CSP violations or page errors');
await browser.close();
console.log('all browser scenarios passed');
