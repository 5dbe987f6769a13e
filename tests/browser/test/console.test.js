// The operator console in headless Chromium against the real binary with real traffic: chat
// pages sending, the support agents and an inventory agent working (one task dead-lettered,
// then redriven from the page), a raw WebSocket client closed from the page, and the sign-in a
// browser off the hub's machine sees.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const { startHub, startPython, startAgents, launch, screenshot } = require('../helpers');

const TIMEOUT = 30000;
const env = {};

// An agent whose warehouse is down for a task's first ten deliveries: the bus dead-letters
// the task, and once it is redriven the eleventh try works.
const INVENTORY_AGENT = `
import asyncio
from nerve_client import Agent, ConnectionString, TaskRetry

cs = ConnectionString.from_env()
token = cs.client_token("bus", user="inventory-1", roles=["bus.serve.inventory.sync"])
agent = Agent(cs.endpoint, token, {"id": "inventory-1", "name": "Inventory", "version": "1.0.0"})
tries = {}

@agent.skill("inventory.sync", name="Inventory sync", description="Syncs stock with the warehouse")
async def sync(task):
    tries[task.id] = tries.get(task.id, 0) + 1
    if tries[task.id] <= 10:
        raise TaskRetry(f"warehouse unreachable (try {tries[task.id]})")
    return "stock synced"

async def main():
    run = asyncio.create_task(agent.run())
    await agent.registered.wait()
    print("inventory agent ready", flush=True)
    await run

asyncio.run(main())
`;

function b64url(buf) { return Buffer.from(buf).toString('base64url'); }
function sign(key, claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const mac = crypto.createHmac('sha256', key).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(mac)}`;
}
// A bus operation as a submitting user's script calls it.
async function busCall(hub, op, data) {
  const now = Math.floor(Date.now() / 1000);
  const token = sign(hub.key, { aud: `${hub.base}/client/hubs/bus`, sub: 'shopper', role: ['bus.submit'], iat: now, exp: now + 600 });
  const r = await fetch(`${hub.base}/bus/api/${op}`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(data),
  });
  const j = await r.json();
  assert.strictEqual(r.status, 200, JSON.stringify(j));
  return j;
}

test.before(async () => {
  env.hub = await startHub();
  env.agents = await startAgents(env.hub);
  env.inventory = await startPython(env.hub, { code: INVENTORY_AGENT, ready: /inventory agent ready/ });
  env.browser = await launch();
});
test.after(async () => {
  if (env.browser) await env.browser.close();
  if (env.inventory) env.inventory.stop();
  if (env.agents) env.agents.stop();
  if (env.hub) await env.hub.stop();
});

async function newPage(path, base = env.hub.base) {
  const ctx = await env.browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(base + path);
  return page;
}
async function chat(user) {
  const p = await newPage(`/demo/chat?user=${user}&room=lobby&autojoin=1`);
  await p.waitForSelector('body[data-joined="room.lobby"]');
  return p;
}
async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
  await page.waitForFunction(() => document.getElementById('text').value === '');
}
async function openConsole(tab) {
  const page = await newPage('/console/' + (tab ? '#' + tab : ''));
  await page.waitForSelector('body[data-signed-in="yes"]');
  return page;
}

test('overview: charts of this node\'s traffic, without the console in the counts', async () => {
  env.alice = await chat('alice');
  env.bob = await chat('bob');
  await say(env.alice, 'hello bob');
  await env.bob.locator('#log .msg', { hasText: 'hello bob' }).waitFor();
  const page = await openConsole();
  await page.waitForFunction(() => Number(document.body.dataset.samples) >= 3);
  await page.locator('#hubs td', { hasText: 'chat' }).waitFor();
  // The chat pages hold hub connections; the console holds none, so a second console tab
  // changes nothing.
  const shown = async () => Number(await page.locator('#t-connections').textContent());
  const held = async () => (await page.evaluate(() => window.nerveConsole.api('/hubs'))).hubs.reduce((n, h) => n + h.connections, 0);
  await page.waitForFunction(() => Number(document.getElementById('t-connections').textContent) >= 2);
  const before = await held();
  assert.strictEqual(await shown(), before);
  const second = await openConsole();
  await page.waitForFunction(() => Number(document.body.dataset.samples) >= 5);
  assert.strictEqual(await held(), before, 'a second console tab adds no connection');
  assert.strictEqual(await shown(), before);
  await second.context().close();
  assert.ok(Number(await page.locator('#t-users').textContent()) >= 2);
  await say(env.bob, 'and hello alice');
  await page.waitForFunction(() => Number(document.getElementById('chart-1').dataset.max) >= 1
    && Number(document.getElementById('chart-1').dataset.points) > 0);
  assert.match(await page.locator('#t-redis').textContent(), /not used/);
  assert.strictEqual(await page.locator('.chart canvas').count(), 6);
  assert.ok(!(await page.evaluate(() => document.body.innerText)).includes(env.hub.key), 'the page shows no key');
  await screenshot(page, 'console-overview.png');
  await page.context().close();
});

test('live trace: joins and messages as they happen, filtered, payloads only on request', async () => {
  const page = await openConsole('trace');
  await page.waitForSelector('body[data-tracing="yes"]');
  await say(env.bob, 'first, without payloads');
  const plain = page.locator('#trace-log .ev[data-kind="message"]', { hasText: 'user bob' }).first();
  await plain.waitFor();
  assert.strictEqual(await plain.locator('button').count(), 0, 'no payload unless asked');

  await page.check('#f-payloads');
  await page.fill('#f-hub', 'chat');
  await page.click('#trace-clear');
  await page.click('#trace-start');
  await page.locator('#trace-state', { hasText: 'with payloads' }).waitFor();
  await say(env.bob, 'meet at noon');
  const msg = page.locator('#trace-log .ev[data-kind="message"]', { hasText: 'sendToGroup room.lobby' }).last();
  await msg.waitFor();
  await msg.locator('button', { hasText: 'payload' }).click();
  assert.match(await msg.locator('pre.payload').textContent(), /meet at noon/);
  const carol = await chat('carol');
  await page.locator('#trace-log .ev[data-kind="connect"]', { hasText: 'user carol' }).waitFor();
  await page.locator('#trace-log .ev[data-kind="join"]', { hasText: 'group room.lobby' }).last().waitFor();

  await page.fill('#f-user', 'alice');
  await page.click('#trace-clear');
  await page.click('#trace-start');
  await page.waitForSelector('body[data-tracing="yes"]');
  await say(env.bob, 'bob is filtered out');
  await say(env.alice, 'alice is shown');
  await page.locator('#trace-log .ev[data-kind="message"]', { hasText: 'user alice' }).first().waitFor();
  assert.strictEqual(await page.locator('#trace-log .ev', { hasText: 'user bob' }).count(), 0);
  await screenshot(page, 'console-trace.png');
  await carol.close();
  await page.context().close();
});

test('connections: search, send a test message, remove from a group, close', async () => {
  // A raw WebSocket client, as any Web PubSub client would be.
  const probe = await newPage('/');
  await probe.evaluate(async () => {
    const t = await (await fetch('/demo/token?hub=chat&user=dave')).json();
    window.got = []; window.wsClosed = false;
    const ws = new WebSocket(t.url, 'json.webpubsub.azure.v1');
    ws.onmessage = (m) => {
      const f = JSON.parse(m.data);
      window.got.push(f);
      if (f.type === 'system' && f.event === 'connected') ws.send(JSON.stringify({ type: 'joinGroup', group: 'ops', ackId: 1 }));
    };
    ws.onclose = () => { window.wsClosed = true; };
    await new Promise((resolve) => { const i = setInterval(() => { if (window.got.some((f) => f.type === 'ack')) { clearInterval(i); resolve(); } }, 20); });
  });
  const daveId = await probe.evaluate(() => window.got.find((f) => f.event === 'connected').connectionId);

  const page = await openConsole('connections');
  await page.selectOption('#c-hub', 'chat');
  await page.fill('#c-search', 'dave');
  const row = page.locator(`#c-connections tr[data-connection="${daveId}"]`);
  await row.waitFor();
  await page.waitForFunction(() => document.querySelectorAll('#c-connections tr').length === 1);
  await row.locator('.chip[data-group="ops"]').waitFor();
  assert.match(await row.textContent(), /webpubsub\.joinLeaveGroup/);
  await page.locator('#c-users tr[data-user="dave"]').waitFor();
  await page.locator('#c-groups tr[data-group="ops"]').waitFor();

  page.once('dialog', (d) => d.accept('ping from ops'));
  await row.locator('button[data-action="send"]').click();
  await probe.waitForFunction(() => window.got.some((f) => f.type === 'message' && f.data === 'ping from ops'));

  await row.locator('.chip[data-group="ops"] button').click();
  await row.locator('.chip[data-group="ops"]').waitFor({ state: 'detached' });
  await page.locator('#c-groups tr[data-group="ops"]').waitFor({ state: 'detached' });
  await screenshot(page, 'console-connections.png');

  await row.locator('button[data-action="close"]').click();
  await probe.waitForFunction(() => window.wsClosed === true);
  await row.waitFor({ state: 'detached' });
  await probe.context().close();
  await page.context().close();
});

test('bus explorer: queues, agents, a dead letter redriven from the page, chains in the task tree', async () => {
  const triage = await busCall(env.hub, 'bus.submit', { capability: 'support.triage', text: 'where is order 42?' });
  const sync = await busCall(env.hub, 'bus.submit', { capability: 'inventory.sync', text: 'sync warehouse 3' });
  const later = await busCall(env.hub, 'bus.submit', { capability: 'inventory.sync', text: 'sync warehouse 4' });
  const page = await openConsole('bus');
  await page.locator('#b-agents [data-agent="inventory-1"]').waitFor();
  for (const id of ['triage-1', 'orders-1', 'billing-1']) await page.locator(`#b-agents [data-agent="${id}"]`).waitFor();
  assert.match(await page.locator('#b-agents [data-agent="inventory-1"]').textContent(), /inventory\.sync/);
  await page.locator('#b-queues tr[data-capability="support.triage"]').waitFor();

  const deadRows = page.locator('#b-dead tr[data-capability="inventory.sync"]');
  await page.locator('#b-queues tr[data-capability="inventory.sync"] td[data-col="dead"]', { hasText: '2' }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('#b-dead tr[data-capability="inventory.sync"]').length === 2);
  const dead = deadRows.filter({ hasText: 'sync warehouse 3' });
  assert.match(await dead.textContent(), /MaxDeliveryCountExceeded/);
  assert.strictEqual((await dead.locator('td').nth(2).textContent()).trim(), '10');
  assert.match(await dead.locator('td').nth(3).textContent(), /\d+:\d+/);
  await page.locator('#b-queues tr[data-capability="inventory.sync"] button', { hasText: 'Peek' }).click();
  await page.locator('#b-peek', { hasText: 'Unfinished tasks of inventory.sync' }).waitFor();
  await screenshot(page, 'console-bus-dead-letter.png');

  // Redrive one: the other stays dead-lettered.
  await dead.locator('button[data-action="redrive"]').click();
  await page.locator('#notice', { hasText: '1 dead letter of inventory.sync back on the queue' }).waitFor();
  await dead.waitFor({ state: 'detached' });
  assert.strictEqual(await deadRows.filter({ hasText: 'sync warehouse 4' }).count(), 1);
  const chain = page.locator(`#b-chains li[data-chain="${sync.correlationId}"]`);
  await chain.locator('.badge.completed').waitFor();
  await chain.locator('a', { hasText: 'open tree' }).click();
  await page.locator(`#b-tree[data-chain="${sync.correlationId}"] .node[data-state="completed"]`, { hasText: 'inventory.sync' }).waitFor();
  // Then all that is left.
  await page.locator('#b-queues tr[data-capability="inventory.sync"] button[data-action="redrive-all"]').click();
  await deadRows.first().waitFor({ state: 'detached' });
  await page.locator(`#b-chains li[data-chain="${later.correlationId}"] .badge.completed`).waitFor();

  const support = page.locator(`#b-chains li[data-chain="${triage.correlationId}"]`);
  await support.locator('.badge.completed').waitFor();
  await support.locator('a', { hasText: 'open tree' }).click();
  const tree = page.locator(`#b-tree[data-chain="${triage.correlationId}"]`);
  await tree.locator('.node', { hasText: 'orders.lookup' }).waitFor();
  assert.strictEqual(await tree.locator('.node').count(), 2);
  assert.strictEqual(await tree.locator('a', { hasText: 'open in the task page' }).getAttribute('href'),
    `/demo/tasks?chain=${triage.correlationId}`);
  await screenshot(page, 'console-bus.png');
  await page.context().close();
});

test('sign-in: a hub beyond loopback asks for the key, and its API refuses calls without one', async () => {
  const hub = await startHub({ listen: '0.0.0.0' });
  try {
    const page = await newPage('/console/', hub.base);
    await page.waitForSelector('body[data-signed-in="no"]');
    await page.locator('#login').waitFor();
    assert.strictEqual(await page.locator('#tab-overview').isHidden(), true);
    const refused = await page.evaluate(async () => {
      const r = await fetch('/console/api/overview');
      return { status: r.status, body: await r.json() };
    });
    assert.strictEqual(refused.status, 401);
    assert.strictEqual(refused.body.code, 'Unauthorized');
    await page.fill('#key', 'not-the-key');
    await page.click('#login button');
    await page.locator('#login-error', { hasText: 'not one of this hub\'s access keys' }).waitFor();
    await screenshot(page, 'console-login.png');
    await page.fill('#key', hub.connectionString);
    await page.click('#login button');
    await page.waitForSelector('body[data-signed-in="yes"]');
    await page.waitForFunction(() => Number(document.body.dataset.samples) >= 1);
    assert.ok(!(await page.content()).includes(hub.key), 'the key is not in the page');
    await page.click('#tabs a[data-tab="trace"]');
    assert.strictEqual(await page.locator('#f-payloads').isDisabled(), true, 'payloads are off beyond loopback');
    await page.click('#logout');
    await page.waitForSelector('body[data-signed-in="no"]');
    await page.context().close();
  } finally {
    await hub.stop();
  }
});
