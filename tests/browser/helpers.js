// Starts the real nerve binary, the support-chat agents or a README's agent, and a headless
// Debian Chromium driven by playwright-core.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const crypto = require('node:crypto');
const { chromium } = require('playwright-core');

const root = path.resolve(__dirname, '..', '..');
const artifacts = path.join(root, 'tests', 'artifacts');

function waitForLine(child, pred, what, ms = 30000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const v = pred(line);
      if (v !== undefined && v !== null) { clearTimeout(timer); resolve(v); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what}: process exited with ${code}`)); });
  });
}

// Starts the hub with a fresh key on a free port, or with `key` on `port` (a restart);
// `listen` names another address to listen on (default 127.0.0.1).
async function startHub({ key, port, listen } = {}) {
  key ??= 'browser-' + crypto.randomBytes(16).toString('hex');
  const config = path.join(os.tmpdir(), `nerve-browser-${process.pid}-${Date.now()}.toml`);
  fs.writeFileSync(config, '[bus]\nfast = true\n');
  const bin = process.env.NERVE_BIN || path.join(root, 'target', 'debug', 'nerve');
  const child = spawn(bin, ['--listen', `${listen ?? '127.0.0.1'}:${port ?? 0}`, '--access-key', key, '--log-level', 'warn', '--config', config],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const bound = await waitForLine(child, (l) => {
    const m = /^Endpoint=http:\/\/[^:;]+:(\d+);/.exec(l);
    return m ? Number(m[1]) : undefined;
  }, 'the hub endpoint');
  const base = `http://127.0.0.1:${bound}`;
  return {
    child, key, port: bound, base,
    connectionString: `Endpoint=${base};AccessKey=${key};Version=1.0;`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      fs.rmSync(config, { force: true });
    },
  };
}

// Runs a Python program (a file, or `code` written to one) with the hub's connection string
// in NERVE_CONNECTION_STRING, as a user who copied it from the start page; resolves once it
// printed a line matching `ready` (or at once without one).
async function startPython(hub, { script, code, ready }) {
  const py = process.env.PYTHON || 'python3';
  let file = script;
  if (code !== undefined) {
    file = path.join(os.tmpdir(), `nerve-browser-${process.pid}-${Date.now()}.py`);
    fs.writeFileSync(file, code);
  }
  const child = spawn(py, ['-u', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NERVE_CONNECTION_STRING: hub.connectionString },
  });
  if (ready) await waitForLine(child, (l) => (ready.test(l) ? true : undefined), file);
  return {
    stop() {
      child.kill('SIGKILL');
      if (code !== undefined) fs.rmSync(file, { force: true });
    },
  };
}

// The support-chat example's agents, as examples/support-chat/README.md runs them.
function startAgents(hub) {
  const script = path.join(root, 'examples', 'support-chat', 'agents.py');
  return startPython(hub, { script, ready: /support agents ready/ });
}

// The first ```python block after the heading `heading` in a README, as a user copies it.
function readmeBlock(readme, heading) {
  const text = fs.readFileSync(path.join(root, readme), 'utf8');
  const at = text.indexOf(`\n## ${heading}\n`);
  if (at < 0) throw new Error(`${readme} has no section '${heading}'`);
  const m = /```python\n([\s\S]*?)```/.exec(text.slice(at));
  if (!m) throw new Error(`${readme}, '${heading}': no python block`);
  return m[1];
}

async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

async function screenshot(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, name), fullPage: true });
}

// What a test file shares: a hub with the support agents and a browser, started before its
// tests and stopped after them (`env.hub` may be replaced, e.g. by a restarted hub), and
// `env.newPage(path)` to open a page of the hub as a new visitor.
function pagesUnderTest(test, timeout) {
  const env = {};
  test.before(async () => {
    env.hub = await startHub();
    env.agents = await startAgents(env.hub);
    env.browser = await launch();
  });
  test.after(async () => {
    if (env.browser) await env.browser.close();
    if (env.agents) env.agents.stop();
    if (env.hub) await env.hub.stop();
  });
  env.newPage = async (path) => {
    const ctx = await env.browser.newContext({ viewport: { width: 1200, height: 800 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(timeout);
    page.on('pageerror', (e) => console.error('page error:', e.message));
    await page.goto(env.hub.base + path);
    return page;
  };
  return env;
}

module.exports = { startHub, startPython, startAgents, launch, readmeBlock, pagesUnderTest, screenshot };
