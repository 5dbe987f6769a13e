// Each demo page against the real binary in headless Chromium, acting as a user.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { startHub, startPython, readmeBlock, pagesUnderTest, screenshot } = require('../helpers');

const TIMEOUT = 20000;
const env = pagesUnderTest(test, TIMEOUT);
const newPage = env.newPage;

test('chat: a message and a typing indicator reach a second user', async () => {
  const alice = await newPage('/demo/chat?user=alice&room=lobby&autojoin=1');
  await alice.waitForSelector('body[data-joined="room.lobby"]');
  const bob = await newPage('/demo/chat?user=bob&room=lobby&autojoin=1');
  await bob.waitForSelector('body[data-joined="room.lobby"]');
  await alice.waitForFunction(() => document.getElementById('who').textContent.includes('bob'));
  await bob.type('#text', 'hel');
  await alice.waitForFunction(() => document.getElementById('typing').textContent.includes('bob is typing'));
  await bob.type('#text', 'lo from bob');
  await bob.click('#send');
  const msg = alice.locator('#log .msg', { hasText: 'hello from bob' });
  await msg.waitFor();
  assert.strictEqual(await msg.locator('b').textContent(), 'bob');
  await alice.fill('#text', 'hi bob, welcome');
  await alice.click('#send');
  await bob.locator('#log .msg', { hasText: 'hi bob, welcome' }).waitFor();
  await alice.waitForFunction(() => document.getElementById('typing').textContent === '');
  await screenshot(alice, 'chat.png');
  await alice.context().close();
  await bob.context().close();
});

test('tasks: a support chain progresses, the human approves, the answer appears', async () => {
  const page = await newPage('/demo/tasks?user=carol');
  await page.waitForSelector('body[data-ready="yes"]');
  await page.waitForSelector('#cap option[value="support.triage"]', { state: 'attached' });
  await page.selectOption('#cap', 'support.triage');
  await page.fill('#text', 'I want a refund for order 42');
  await page.click('#ask button');
  const billing = page.locator('.node', { hasText: 'billing.refund' });
  await billing.locator('button', { hasText: 'Approve' }).waitFor();
  assert.strictEqual(await billing.getAttribute('data-state'), 'input-required');
  assert.match(await billing.locator('.q').textContent(), /Approve a refund of 59\.90 EUR/);
  const orders = page.locator('.node', { hasText: 'orders.lookup' });
  await page.waitForFunction(() => document.querySelector('.node[data-state="completed"]') !== null);
  assert.strictEqual(await orders.getAttribute('data-state'), 'completed');
  await screenshot(page, 'tasks-input-required.png');
  await billing.locator('button', { hasText: 'Approve' }).click();
  await page.locator('#answer', { hasText: 'approved and issued' }).waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('.node')].every((n) => n.dataset.state === 'completed')
    && document.querySelectorAll('.node').length === 3);
  const timeline = await page.locator('#timeline li').count();
  assert.ok(timeline >= 10, `timeline has ${timeline} events`);
  await screenshot(page, 'tasks.png');
  await page.context().close();
});

test('dashboard: live connection, latency and bus queue numbers', async () => {
  const page = await newPage('/demo/dashboard');
  await page.waitForSelector('body[data-loaded="yes"]');
  await page.waitForFunction(() => /^\d+(\.\d+)?$/.test(document.getElementById('latency').textContent));
  // The first stats refresh can run before the page's own socket is up; the count follows within a refresh.
  await page.waitForFunction(() => Number(document.getElementById('connections').textContent) >= 1, null, { timeout: 5000 });
  await page.locator('#queues td', { hasText: 'support.triage' }).waitFor();
  assert.strictEqual(await page.locator('#agents').textContent(), '3');
  assert.match(await page.locator('#redis').textContent(), /not used/);
  await page.waitForFunction(() => document.getElementById('rate').textContent !== '–');
  await screenshot(page, 'dashboard.png');
  await page.context().close();
});

test('tasks: a page that was offline catches up by cursor after reconnecting', async () => {
  const page = await newPage('/demo/tasks?user=dora');
  await page.waitForSelector('body[data-ready="yes"]');
  await page.waitForSelector('#cap option[value="support.triage"]', { state: 'attached' });
  await page.selectOption('#cap', 'support.triage');
  await page.fill('#text', 'refund for order 7 please');
  await page.click('#ask button');
  const billing = page.locator('.node', { hasText: 'billing.refund' });
  await billing.locator('button', { hasText: 'Approve' }).waitFor();
  const before = await page.locator('#timeline li').count();
  // Go offline (no automatic reconnect), let the chain finish meanwhile, then come back.
  const root = await page.evaluate(async () => {
    const n = window.nerve;
    n.client.close();
    const node = document.querySelector('.node[data-state="input-required"]');
    await n.busApi('bus.task.reply', { taskId: node.dataset.task, text: 'yes' });
    const rootId = new URLSearchParams(location.search).get('chain');
    await n.busApi('bus.task.wait', { taskId: rootId, timeoutMs: 20000 });
    return rootId;
  });
  await page.waitForFunction(() => document.getElementById('status').textContent === 'reconnecting…');
  assert.strictEqual(await page.locator('#timeline li').count(), before, 'nothing arrives while offline');
  await page.evaluate(() => window.nerve.client.start());
  await page.locator('#answer', { hasText: 'approved and issued' }).waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('.node')].every((n) => n.dataset.state === 'completed'));
  // Every recorded event of the chain is on the timeline exactly once, in order.
  const cursors = await page.locator('#timeline li').evaluateAll((lis) => lis.map((li) => li.dataset.cursor));
  const history = await page.evaluate((id) => window.nerve.busApi('bus.history', { correlationId: id }), root);
  assert.deepStrictEqual(cursors, history.events.map((e) => e.cursor).sort());
  assert.ok(cursors.length > before, `${cursors.length} events after ${before}`);
  await page.context().close();
});

test('tasks: the chain is named, recent chains and pending approvals are listed', async () => {
  const page = await newPage('/demo/tasks?user=erin');
  await page.waitForSelector('body[data-ready="yes"]');
  await page.fill('#text', 'I want a refund for order 42');
  await page.click('#ask button');
  const root = await page.waitForFunction(() => new URLSearchParams(location.search).get('chain')).then((h) => h.jsonValue());
  await page.locator('#tree h3', { hasText: `Chain ${root}` }).waitFor();
  await page.locator(`#chains li[data-chain="${root}"]`).waitFor();
  const pending = page.locator('#pending li', { hasText: 'Approve a refund of 59.90 EUR' });
  await pending.waitFor();
  // Approving from the list answers the step as the tree's button does.
  await pending.locator('button', { hasText: 'Approve' }).click();
  await page.locator('#answer', { hasText: 'approved and issued' }).waitFor();
  await page.locator('#pending li', { hasText: 'Nothing is waiting' }).waitFor();
  await screenshot(page, 'tasks-lists.png');
  await page.context().close();
});

test('start page: endpoints, the connection string to copy, links to the pages', async () => {
  const ctx = await env.browser.newContext({ viewport: { width: 1200, height: 800 } });
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: env.hub.base });
  const page = await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(env.hub.base + '/');
  assert.strictEqual(await page.locator('#connection-string').textContent(), env.hub.connectionString);
  await page.locator('#endpoints', { hasText: `ws://127.0.0.1:${env.hub.port}/client/hubs/` }).waitFor();
  await page.click('button[data-copy="export"]');
  await page.locator('button[data-copy="export"]', { hasText: 'Copied' }).waitFor();
  assert.strictEqual(await page.evaluate(() => navigator.clipboard.readText()), `export NERVE_CONNECTION_STRING='${env.hub.connectionString}'`);
  await screenshot(page, 'start.png');
  await page.click('#demo a[href="/demo/chat"]');
  await page.waitForURL('**/demo/chat');
  await page.click('header h1 a');
  await page.waitForURL(env.hub.base + '/');
  await ctx.close();
});

test('tasks: Approve answers an agent written as the Python README shows it', async () => {
  // A hub of its own: the support agents of the other tests serve billing.refund too.
  const hub = await startHub();
  const agent = await startPython(hub, { code: readmeBlock('clients/python/README.md', 'An agent in a few lines') });
  const ctx = await env.browser.newContext({ viewport: { width: 1200, height: 800 } });
  try {
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.goto(hub.base + '/demo/tasks?user=fay');
    await page.waitForSelector('body[data-ready="yes"]');
    await page.waitForSelector('#cap option[value="billing.refund"]', { state: 'attached' });
    await page.selectOption('#cap', 'billing.refund');
    await page.fill('#text', 'order 42');
    await page.click('#ask button');
    const step = page.locator('.node', { hasText: 'billing.refund' });
    await step.locator('.q', { hasText: 'Refund 10 EUR?' }).waitFor();
    await step.locator('button', { hasText: 'Approve' }).click();
    await page.locator('#answer', { hasText: 'refunded' }).waitFor();
    assert.strictEqual(await step.getAttribute('data-state'), 'completed');
    assert.match(await step.textContent(), /by refunder/);
  } finally {
    await ctx.close();
    agent.stop();
    await hub.stop();
  }
});
