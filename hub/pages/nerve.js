// A tiny client for the hub's json.webpubsub.azure.v1 protocol and the bus operations API,
// shared by the demo pages, and the bits of page they all show (connection status, errors).
// No build step: plain ES module.

// A demo token (and client URL) for `user` on `hub`. The error says why there is none: the
// hub's own words when it refuses (demo pages off), or that it cannot be reached.
export async function demoToken(hub, user) {
  let r;
  try {
    r = await fetch(`/demo/token?hub=${encodeURIComponent(hub)}&user=${encodeURIComponent(user)}`, { cache: 'no-store' });
  } catch {
    throw new Error('the hub cannot be reached (is it running?)');
  }
  if (!r.ok) throw new Error((await r.text()) || `demo token: HTTP ${r.status}`);
  return r.json();
}

// Calls bus operation `op` over POST /bus/api; rejects with the hub's error name and message.
export async function busApi(token, op, data) {
  let r;
  try {
    r = await fetch(`/bus/api/${op}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify(data || {}),
    });
  } catch {
    throw new Error(`${op}: the hub cannot be reached`);
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error(`${op}: ${body.message || `HTTP ${r.status}`}`);
    e.name = body.name || 'Error';
    throw e;
  }
  return body;
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;
const ACK_TIMEOUT_MS = 10000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A hub connection that keeps itself up: each attempt takes a fresh URL from `getUrl` (so a
// restarted hub with a new key is fine), failures back off from 0.5 s to 10 s, groups are
// joined again after every reconnect. Events: connected, disconnected, message, error (a
// sentence for the page).
export class HubClient {
  constructor(getUrl) {
    this.getUrl = getUrl;
    this.groups = new Set();
    this.handlers = { message: [], connected: [], disconnected: [], error: [] };
    this.ackId = 0;
    this.acks = new Map();
    this.closed = true;
    this.connected = false;
    this.ws = null;
    this.running = null;
    this.waiters = [];
  }
  on(kind, fn) { this.handlers[kind].push(fn); }
  emit(kind, arg) { for (const fn of this.handlers[kind]) fn(arg); }
  get online() { return !!this.ws && this.ws.readyState === WebSocket.OPEN && this.connected; }

  // Starts (or resumes) the connection; resolves once connected, however long that takes.
  start() {
    this.closed = false;
    const ready = this.online ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
    this.running ??= this.run().finally(() => { this.running = null; });
    return ready;
  }

  async run() {
    let wait = FIRST_RETRY_MS;
    while (!this.closed) {
      let url;
      try {
        url = await this.getUrl();
      } catch (e) {
        this.emit('error', e.message);
        await sleep(wait * (0.75 + Math.random() / 2));
        wait = Math.min(wait * 2, MAX_RETRY_MS);
        continue;
      }
      if (this.closed) break;
      const connected = await this.session(url);
      if (this.closed) break;
      if (connected) wait = FIRST_RETRY_MS;
      else {
        this.emit('error', 'the hub refused or dropped the connection; retrying');
        wait = Math.min(wait * 2, MAX_RETRY_MS);
      }
      await sleep(wait * (0.75 + Math.random() / 2));
    }
  }

  // One socket, from open to close; resolves whether it got as far as `connected`.
  session(url) {
    return new Promise((resolve) => {
      let connected = false;
      const ws = new WebSocket(url, 'json.webpubsub.azure.v1');
      this.ws = ws;
      ws.onmessage = (ev) => {
        let f;
        try { f = JSON.parse(ev.data); } catch { return; }
        if (f.type === 'system' && f.event === 'connected') {
          connected = true;
          this.connected = true;
          for (const g of this.groups) this.send({ type: 'joinGroup', group: g });
          this.emit('connected', f);
          for (const w of this.waiters.splice(0)) w();
        } else if (f.type === 'ack') {
          const pending = this.acks.get(f.ackId);
          if (pending) { this.acks.delete(f.ackId); pending(f); }
        } else if (f.type === 'message') {
          this.emit('message', f);
        }
      };
      ws.onclose = () => {
        this.connected = false;
        this.ws = null;
        for (const [id, pending] of this.acks) {
          this.acks.delete(id);
          pending({ success: false, error: { name: 'ConnectionLost', message: 'the connection to the hub was lost' } });
        }
        if (connected) this.emit('disconnected');
        resolve(connected);
      };
    });
  }

  send(frame) {
    if (!this.online) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // Sends `frame` with an ack id; resolves with the ack, rejects when it fails or never comes.
  request(frame) {
    const id = ++this.ackId;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...frame, ackId: id })) {
        reject(new Error('not connected to the hub'));
        return;
      }
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error('the hub did not answer in time'));
      }, ACK_TIMEOUT_MS);
      this.acks.set(id, (f) => {
        clearTimeout(timer);
        if (f.success === false) reject(new Error(`${f.error?.name}: ${f.error?.message}`));
        else resolve(f);
      });
    });
  }
  joinGroup(group) { this.groups.add(group); return this.request({ type: 'joinGroup', group }); }
  leaveGroup(group) { this.groups.delete(group); return this.request({ type: 'leaveGroup', group }); }
  sendToGroup(group, data, noEcho = false) {
    return this.request({ type: 'sendToGroup', group, dataType: 'json', data, noEcho });
  }
  // Stops for good (until `start()` again): no reconnect.
  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}

// Shows the connection's state in `el` (header status) and its errors in the page's notice.
export function showConnection(client, el, who) {
  client.on('connected', () => {
    el.textContent = `online as ${who()}`;
    el.className = 'muted';
    clearNotice();
  });
  client.on('disconnected', () => {
    el.textContent = 'reconnecting…';
    el.className = 'warn';
  });
  client.on('error', (message) => {
    el.textContent = 'offline';
    el.className = 'bad';
    showNotice(message);
  });
}

// A notice at the top of the page: what went wrong, in words.
export function showNotice(message, kind = 'bad') {
  let n = document.getElementById('notice');
  if (!n) {
    n = el('div', { id: 'notice', class: 'panel notice' });
    document.querySelector('main').prepend(n);
  }
  n.className = `panel notice ${kind}`;
  n.textContent = message;
  n.hidden = false;
}

export function clearNotice() {
  const n = document.getElementById('notice');
  if (n) n.hidden = true;
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

export function shortState(s) {
  return (s || '').replace('TASK_STATE_', '').toLowerCase().replace('_', '-');
}
