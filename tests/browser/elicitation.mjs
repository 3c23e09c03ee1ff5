// The card of a tool server's page (MCP 2026-07-28 URL-mode elicitation)
// as a user meets it, in Debian's chromium driven by playwright-core.
// Started by tests/tests/browser_elicitation.rs against a real gateway and
// agent over Mosquitto (demo model; two scripted 2026-07-28 MCP servers:
// `acme`, whose connect_account first needs the user at its page, and
// `shady`, whose page URL is a `javascript:` one), with
//   GATEWAY_URL, CHROMIUM, PLAYWRIGHT_CORE_DIR, SHOTS_DIR,
//   ACME_BASE (http://127.0.0.1:<port> of acme's server), OUT_FILE
// in the environment. Writes what the Rust side checks against the MCP
// servers to OUT_FILE; exits non-zero on the first failed check.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const base = process.env.GATEWAY_URL;
const shots = process.env.SHOTS_DIR;
const acme = new URL(process.env.ACME_BASE);
const require = createRequire(path.join(process.env.PLAYWRIGHT_CORE_DIR, 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');
const axeSource = require('fs').readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const T = 15000;
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
// A spy on window.open: records the arguments, then opens as asked.
await ctx.addInitScript(() => {
  const open = window.open;
  window.opened = [];
  window.open = function (...args) {
    window.opened.push(args.map(String));
    return open.apply(this, args);
  };
});
const page = await ctx.newPage();
const problems = [];
const dialogs = [];
page.on('console', (m) => {
  if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) problems.push(m.text());
});
page.on('pageerror', (e) => problems.push(`page error ${e.message}`));
page.on('dialog', (d) => {
  dialogs.push(d.message());
  d.dismiss();
});
const out = {};

const step = async (name, f) => {
  const t0 = Date.now();
  try {
    await f();
  } catch (e) {
    console.log(`not ok - ${name}`);
    for (const [i, p] of ctx.pages().entries()) {
      await p.screenshot({ path: path.join(shots, `failed-elicitation-${i}.png`) }).catch(() => {});
      console.log(`--- page ${i} (${p.url()}):\n${await p.locator('body').innerText().catch(() => '?')}`);
    }
    throw e;
  }
  console.log(`ok - ${name} (${Date.now() - t0} ms)`);
};

async function ask(text) {
  const before = await page.locator('.msg.agent').count();
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.keyboard.press('Enter');
  const turn = page.locator('.msg.agent').nth(before);
  await turn.waitFor({ timeout: T });
  return turn;
}

/** Every text the card's state line shows, in order (it changes fast:
 * the button's answer and the task's next status race). */
async function watchStateLine(turn) {
  await turn.locator('.card .state').evaluate((line) => {
    line.seen = [line.textContent];
    new MutationObserver(() => line.seen.push(line.textContent)).observe(line, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  return () => turn.locator('.card .state').evaluate((line) => line.seen);
}

/** The POST the card's button sends, and the gateway's answer to it. */
function continueRequest() {
  return page.waitForResponse((r) => r.request().method() === 'POST' && /\/api\/v1\/tasks\/[^/]+:continue$/.test(r.url()), {
    timeout: T,
  });
}

async function axe(what) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return {
      passes: r.passes.length,
      violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) })),
    };
  });
  assert.ok(result.passes > 10, `axe ran its rules (${result.passes} passed)`);
  console.log(`measure: axe (${what}): ${result.passes} rules passed, ${result.violations.length} violations ${JSON.stringify(result.violations)}`);
  assert.deepEqual(result.violations, [], `axe on ${what}`);
}

await step('sign in', async () => {
  await page.goto(base + '/');
  await page.getByLabel('API token').fill('alice-token');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForSelector('#chat:not([hidden])', { timeout: T });
  await page.locator('#agent option[value="keeper"]').waitFor({ state: 'attached', timeout: T });
  await page.getByLabel('Agent').selectOption('keeper');
});

await step('the card names the page\u2019s host; Open opens exactly that page in a new tab; Done continues the task', async () => {
  const turn = await ask('acme connect my account');
  const card = turn.getByRole('group', { name: 'Page of acme' });
  await card.waitFor({ timeout: T });
  assert.equal(await turn.locator('.card').count(), 1, 'one card');
  assert.equal(await card.locator('p').first().textContent(), 'Connect your account at the provider');
  assert.equal(await card.locator('.host').textContent(), `The page is at ${acme.host}.`);
  const open = card.getByRole('button', { name: `Open ${acme.host}`, exact: true });
  const done = card.getByRole('button', { name: 'Done', exact: true });
  const decline = card.getByRole('button', { name: 'Decline', exact: true });
  for (const b of [open, done, decline]) assert.equal(await b.isEnabled(), true);
  // A button that opens the page, not a link the page could be navigated by.
  assert.equal(await card.locator('a').count(), 0, 'no link element in the card');
  assert.equal(await turn.locator('.answer.streaming').count(), 0, 'not shown as streaming while it waits');
  assert.equal(await page.isVisible('#cancel'), true, 'the waiting task can be canceled');
  await page.screenshot({ path: path.join(shots, 'elicitation-1-card.png') });
  await card.screenshot({ path: path.join(shots, 'elicitation-1-card-only.png') });
  await axe('a page card waiting for the user');

  const [tab] = await Promise.all([ctx.waitForEvent('page', { timeout: T }), open.click()]);
  await tab.waitForLoadState();
  const m = tab.url().match(new RegExp(`^${escape(acme.origin)}/ui/connect\\?nonce=([0-9a-f]{32})$`));
  assert.ok(m, `the tab opened the server's page exactly: ${tab.url()}`);
  out.acceptNonce = m[1];
  assert.equal(await tab.locator('body').innerText(), 'Account connected; go back to the conversation.');
  // A new browsing context, without a handle on the chat page or its URL:
  // the card asks for that, and the gateway's Cross-Origin-Opener-Policy and
  // Referrer-Policy would cut both anyway, so the arguments are checked too.
  assert.deepEqual(await page.evaluate(() => window.opened), [[tab.url(), '_blank', 'noopener,noreferrer']]);
  assert.equal(await tab.evaluate(() => window.opener === null), true, 'the page has no handle on the chat');
  assert.equal(await tab.evaluate(() => document.referrer), '', 'nor its URL');
  assert.equal(page.url(), base + '/', 'the chat page itself stays where it is');
  assert.equal(await card.locator('.state').textContent(), 'When you are done there, come back and press Done.');
  await tab.close();

  const seen = await watchStateLine(turn);
  const [answer] = await Promise.all([continueRequest(), done.click()]);
  assert.equal(answer.status(), 200, await answer.text());
  assert.equal(answer.request().postDataJSON().action, 'accept');
  assert.match(answer.request().postDataJSON().elicitation_id, /^[0-9a-f]{64}$/);
  const final = `acme_connect_account returned: connected ${out.acceptNonce}`;
  await turn.locator('.answer', { hasText: final }).waitFor({ timeout: T });
  assert.equal((await turn.locator('.answer').innerText()).trim(), final);
  await page.waitForSelector('#cancel', { state: 'hidden', timeout: T });
  assert.equal(await turn.locator('.note.failed, .note.canceled').count(), 0);
  assert.match(await turn.locator('.card').getAttribute('class'), /\bconnected\b/);
  assert.equal(await turn.locator('.card button').count(), 0, 'the card\u2019s buttons are gone once the task went on');
  const lines = await seen();
  console.log(`measure: state line after Done: ${JSON.stringify(lines)}`);
  // However the POST's answer and the task's next event race, the card
  // ends saying the user is done there.
  assert.equal(lines.at(-1), 'Done with acme', `the card was settled: ${JSON.stringify(lines)}`);
  assert.equal(await turn.locator('.card .state').textContent(), 'Done with acme');
  assert.match(await turn.locator('.activity summary').textContent(), /acme_connect_account/);
  await page.screenshot({ path: path.join(shots, 'elicitation-2-done.png') });
});

await step('Decline: the card says so and the task ends with the tool\u2019s answer to it', async () => {
  const turn = await ask('acme connect my account');
  const card = turn.getByRole('group', { name: 'Page of acme' });
  await card.waitFor({ timeout: T });
  const seen = await watchStateLine(turn);
  const pages = ctx.pages().length;
  const [answer] = await Promise.all([continueRequest(), card.getByRole('button', { name: 'Decline', exact: true }).click()]);
  assert.equal(answer.status(), 200, await answer.text());
  assert.equal(answer.request().postDataJSON().action, 'decline');
  // The tool's isError answer, as the model read it.
  const final = 'acme_connect_account returned: tool acme_connect_account failed: the user chose decline';
  await turn.locator('.answer', { hasText: final }).waitFor({ timeout: T });
  await page.waitForSelector('#cancel', { state: 'hidden', timeout: T });
  assert.equal((await turn.locator('.answer').innerText()).trim(), final);
  assert.equal(await turn.locator('.note.failed, .note.canceled').count(), 0, 'the task itself completed');
  assert.equal(await turn.locator('.card button').count(), 0, 'no button left to press');
  assert.equal(ctx.pages().length, pages, 'declining opened nothing');
  assert.equal(await page.evaluate(() => window.opened.length), 1, 'still only the first page was opened');
  const lines = await seen();
  console.log(`measure: state line after Decline: ${JSON.stringify(lines)}; card now: ${await turn.locator('.card').getAttribute('class')}`);
  // A declined page never reads as a success, whichever came first.
  const declined = 'Declined: the task went on without acme\u2019s page.';
  assert.equal(await turn.locator('.card .state').textContent(), declined, `lines: ${JSON.stringify(lines)}`);
  const cls = await turn.locator('.card').getAttribute('class');
  assert.match(cls, /\bdeclined\b/);
  assert.doesNotMatch(cls, /\bconnected\b/);
  await page.screenshot({ path: path.join(shots, 'elicitation-3-declined.png') });
});

await step('a javascript: page URL never becomes anything to click, and nothing runs', async () => {
  const turn = await ask('shady connect my account');
  // The agent refused it before the page: the model read why, the user
  // reads its answer (Markdown: the backticks around the scheme are code).
  const final =
    'shady_connect_account returned: MCP protocol error with shady: elicitation URL refused: scheme javascript (host ""); only https, or http on this machine, is opened';
  await turn.locator('.answer', { hasText: final }).waitFor({ timeout: T });
  await page.waitForSelector('#cancel', { state: 'hidden', timeout: T });
  assert.equal((await turn.locator('.answer').innerText()).trim(), final);
  assert.equal(await turn.locator('.answer code', { hasText: /^javascript$/ }).count(), 1);
  assert.equal(await turn.locator('.card').count(), 0, 'no card for the refused page');
  assert.equal(await turn.getByRole('button').count(), 0, 'nothing to press in the turn');
  assert.equal(await turn.locator('a').count(), 0, 'no link in the turn');
  assert.equal(await page.locator('[href^="javascript:" i], [src^="javascript:" i]').count(), 0);
  assert.doesNotMatch(await page.locator('#transcript').innerText(), /pwned/, 'the URL itself never reached the page');
  assert.equal(await page.evaluate(() => window.pwned), undefined, 'no script ran');
  assert.deepEqual(dialogs, [], 'no alert');
  assert.equal(await page.evaluate(() => window.opened.length), 1, 'nothing was opened');
  await page.screenshot({ path: path.join(shots, 'elicitation-4-javascript-refused.png') });
  // Should an agent ever forward one, the card refuses it on its own.
  const refused = await page.evaluate(async () => {
    const { TurnView } = await import('/assets/turn.js');
    const view = new TurnView('keeper', { submitted() {}, ended() {} });
    view.pageCard({ type: 'url_elicitation_required', elicitation_id: 'x', elicitation_url: "javascript:window.pwned=1;alert('pwned')", message: 'Open me', tool_id: 'shady' });
    const card = view.root.querySelector('.card');
    return { buttons: card.querySelectorAll('button').length, links: card.querySelectorAll('a').length, state: card.querySelector('.state').textContent };
  });
  assert.deepEqual(refused, { buttons: 0, links: 0, state: 'The tool sent a page link that is not http(s); it was refused.' });
  assert.equal(await page.evaluate(() => window.pwned), undefined, 'still no script ran');
  assert.deepEqual(dialogs, [], 'still no alert');
});

assert.deepEqual(problems, [], 'no CSP violations or page errors');
writeFileSync(process.env.OUT_FILE, JSON.stringify(out));
await browser.close();
console.log('all elicitation scenarios passed');
