// The pages survive a hub restart: they say they are reconnecting, keep what was typed, come
// back on their own with fresh tokens, and work again.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { startHub, pagesUnderTest, screenshot } = require('../helpers');

const env = pagesUnderTest(test, 30000);
const newPage = env.newPage;

const status = (page) => page.locator('#status').textContent();

test('chat, dashboard and tasks come back after the hub restarts', async () => {
  const alice = await newPage('/demo/chat?user=alice&room=lobby&autojoin=1');
  await alice.waitForSelector('body[data-joined="room.lobby"]');
  const bob = await newPage('/demo/chat?user=bob&room=lobby&autojoin=1');
  await bob.waitForSelector('body[data-joined="room.lobby"]');
  const tasks = await newPage('/demo/tasks?user=carol');
  await tasks.waitForSelector('body[data-ready="yes"]');
  const dash = await newPage('/demo/dashboard');
  await dash.waitForSelector('body[data-loaded="yes"]');

  // The hub goes away: every page says so, and the chat takes no message it could lose.
  const { key, port } = env.hub;
  await env.hub.stop();
  await alice.waitForFunction(() => document.getElementById('status').textContent !== 'online as alice');
  await alice.waitForFunction(() => document.getElementById('send').disabled && document.getElementById('text').disabled);
  await tasks.waitForFunction(() => document.getElementById('status').textContent !== 'online as carol');
  await alice.locator('#notice').waitFor();
  await dash.locator('#notice', { hasText: 'cannot be reached' }).waitFor();
  await screenshot(alice, 'chat-offline.png');

  // Back on the same address with the same key, as `nerve --access-key` would be.
  env.hub = await startHub({ key, port });
  await alice.waitForFunction(() => document.getElementById('status').textContent === 'online as alice');
  await bob.waitForFunction(() => document.getElementById('status').textContent === 'online as bob');
  assert.ok(!(await alice.locator('#send').isDisabled()));
  await alice.fill('#text', 'still here after the restart');
  await alice.click('#send');
  await bob.locator('#log .msg', { hasText: 'still here after the restart' }).waitFor();
  assert.strictEqual(await alice.locator('#text').inputValue(), '');

  // The tasks page reconnects too, and its agents (which reconnect by themselves) answer.
  await tasks.waitForFunction(() => document.getElementById('status').textContent === 'online as carol');
  await tasks.waitForSelector('#cap option[value="support.triage"]', { state: 'attached' });
  // The agents come back one by one: the box may have settled on the first one back.
  await tasks.selectOption('#cap', 'support.triage');
  await tasks.fill('#text', 'where is order 7?');
  await tasks.click('#ask button');
  // The agents back off while the hub is away (up to 10 s between attempts), so allow for one
  // more attempt than a page needs.
  await tasks.locator('#answer', { hasText: 'coffee grinder' }).waitFor({ timeout: 60000 }).catch(async (e) => {
    await screenshot(tasks, 'tasks-after-restart-failed.png');
    throw e;
  });
  await dash.waitForFunction(() => document.getElementById('notice').hidden);
  assert.match(await status(bob), /online/);
  await screenshot(tasks, 'tasks-after-restart.png');
  for (const p of [alice, bob, tasks, dash]) await p.context().close();
});
