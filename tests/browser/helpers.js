// Starts the real nerve binary and the support-chat agents, and a headless Debian Chromium
// driven by playwright-core.
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

async function startHub() {
  const key = 'browser-' + crypto.randomBytes(16).toString('hex');
  const config = path.join(os.tmpdir(), `nerve-browser-${process.pid}-${Date.now()}.toml`);
  fs.writeFileSync(config, '[bus]\nfast = true\n');
  const bin = process.env.NERVE_BIN || path.join(root, 'target', 'debug', 'nerve');
  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--access-key', key, '--log-level', 'warn', '--config', config],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await waitForLine(child, (l) => {
    const m = /^Endpoint=http:\/\/127\.0\.0\.1:(\d+);/.exec(l);
    return m ? Number(m[1]) : undefined;
  }, 'the hub endpoint');
  return { child, key, port, base: `http://127.0.0.1:${port}`, stop() { child.kill('SIGKILL'); fs.rmSync(config, { force: true }); } };
}

async function startAgents(hub) {
  const py = process.env.PYTHON || 'python3';
  const script = path.join(root, 'examples', 'support-chat', 'agents.py');
  const child = spawn(py, [script, '--endpoint', hub.base, '--access-key', hub.key], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(child, (l) => (l.includes('support agents ready') ? true : undefined), 'the support agents');
  return { stop() { child.kill('SIGKILL'); } };
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

module.exports = { startHub, startAgents, launch, screenshot };
