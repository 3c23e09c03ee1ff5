// After a gateway restart: started by tests/tests/browser_ui.rs once
// chat.mjs has passed and the gateway was stopped and started again (same
// port, same agent with its SQLite session store), with
//   GATEWAY_URL, CHROMIUM, PLAYWRIGHT_CORE_DIR, SHOTS_DIR
// in the environment. The gateway's memory is empty now: what the page
// shows comes from the agent. Exits non-zero on the first failed check.
import { createRequire } from 'node:module';
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
const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
const page = await ctx.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error ${e.message}`));

const step = async (name, f) => {
  const t0 = Date.now();
  try {
    await f();
  } catch (e) {
    console.log(`not ok - ${name}`);
    await page.screenshot({ path: path.join(shots, 'failed-history.png') }).catch(() => {});
    console.log(`--- page (${page.url()}):\n${await page.locator('body').innerText().catch(() => '?')}`);
    throw e;
  }
  console.log(`ok - ${name} (${Date.now() - t0} ms)`);
};

await step('after a gateway restart, the conversation and its turns come back from the agent', async () => {
  await page.goto(base + '/');
  await page.getByLabel('API token').fill('bob-token');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForSelector('#chat:not([hidden])', { timeout: T });
  await page.locator('#conversations button', { hasText: 'who am I at demo' }).waitFor({ timeout: T });
  // The newest conversation opens by itself: bob's question, the answer, the tool.
  await page.locator('.msg.user', { hasText: 'who am I at demo: demo whoami' }).waitFor({ timeout: T });
  const turn = page.locator('.msg.agent').last();
  await turn.locator('.answer', { hasText: 'You are bob' }).waitFor({ timeout: T });
  assert.match(await turn.locator('.activity summary').textContent(), /demo_whoami/);
  // A reload shows it again (now from the gateway's cache).
  await page.reload();
  await page.locator('.answer', { hasText: 'You are bob' }).waitFor({ timeout: T });
  await page.screenshot({ path: path.join(shots, '10-after-gateway-restart.png') });
});

await step('a rename after the restart is kept by the agent', async () => {
  await page.getByLabel('Conversation title').fill('Bob at the demo');
  await page.getByLabel('Conversation title').press('Tab');
  await page.locator('#conversations button', { hasText: 'Bob at the demo' }).waitFor({ timeout: T });
  const list = await page.evaluate(async () => (await (await fetch('/api/v1/conversations')).json()));
  assert.deepEqual(list.unavailable, []);
  assert.equal(list.conversations[0].title, 'Bob at the demo');
});

await step('the accounts page shows when an account was last used', async () => {
  await page.getByRole('button', { name: 'Accounts' }).click();
  const demo = page.locator('#accounts-list li[data-tool="demo"]');
  await demo.waitFor({ timeout: T });
  assert.match(await demo.locator('.last-used').textContent(), /^Last used /);
  assert.match(await page.locator('#accounts-list li[data-tool="billing"]').textContent(), /Not connected/);
  await page.screenshot({ path: path.join(shots, '11-accounts-last-used.png') });
});

assert.deepEqual(problems, [], 'no page errors');
await browser.close();
console.log('all after-restart scenarios passed');
