// Each demo page against the real binary in headless Chromium, acting as a user.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { startHub, startAgents, launch, screenshot } = require('../helpers');

const TIMEOUT = 20000;
let hub, agents, browser;

test.before(async () => {
  hub = await startHub();
  agents = await startAgents(hub);
  browser = await launch();
});

test.after(async () => {
  if (browser) await browser.close();
  if (agents) agents.stop();
  if (hub) hub.stop();
});

async function newPage(path) {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(hub.base + path);
  return page;
}

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
  const conns = Number(await page.locator('#connections').textContent());
  assert.ok(conns >= 1, `connections ${conns}`);
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
    n.client.closed = true;
    n.client.ws.close();
    const node = document.querySelector('.node[data-state="input-required"]');
    await n.busApi('bus.task.reply', { taskId: node.dataset.task, text: 'approve' });
    const rootId = new URLSearchParams(location.search).get('chain');
    await n.busApi('bus.task.wait', { taskId: rootId, timeoutMs: 20000 });
    return rootId;
  });
  await page.waitForFunction(() => document.getElementById('status').textContent === 'reconnecting…');
  assert.strictEqual(await page.locator('#timeline li').count(), before, 'nothing arrives while offline');
  await page.evaluate(() => { window.nerve.client.closed = false; return window.nerve.client.start(); });
  await page.locator('#answer', { hasText: 'approved and issued' }).waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('.node')].every((n) => n.dataset.state === 'completed'));
  // Every recorded event of the chain is on the timeline exactly once.
  const cursors = await page.locator('#timeline li').evaluateAll((lis) => lis.map((li) => li.dataset.cursor));
  const history = await page.evaluate((id) => window.nerve.busApi('bus.history', { correlationId: id }), root);
  assert.deepStrictEqual(cursors, history.events.map((e) => e.cursor));
  assert.ok(cursors.length > before, `${cursors.length} events after ${before}`);
  await page.context().close();
});

