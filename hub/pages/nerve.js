// A tiny client for the hub's json.webpubsub.azure.v1 protocol and the bus operations API,
// shared by the demo pages. No build step: plain ES module.

export async function demoToken(hub, user) {
  const r = await fetch(`/demo/token?hub=${encodeURIComponent(hub)}&user=${encodeURIComponent(user)}`);
  if (!r.ok) throw new Error(`demo token: ${r.status} ${await r.text()}`);
  return r.json();
}

export async function busApi(token, op, data) {
  const r = await fetch(`/bus/api/${op}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify(data || {}),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${op}: ${body.name || r.status} ${body.message || ''}`);
  return body;
}

// A hub connection that reconnects (with a fresh token from `getUrl`) and re-joins its groups.
export class HubClient {
  constructor(getUrl) {
    this.getUrl = getUrl;
    this.groups = new Set();
    this.handlers = { message: [], connected: [], disconnected: [] };
    this.ackId = 0;
    this.acks = new Map();
    this.closed = false;
  }
  on(kind, fn) { this.handlers[kind].push(fn); }
  emit(kind, arg) { for (const fn of this.handlers[kind]) fn(arg); }
  async start() {
    const url = await this.getUrl();
    await new Promise((resolve) => {
      const ws = new WebSocket(url, 'json.webpubsub.azure.v1');
      this.ws = ws;
      ws.onmessage = (ev) => {
        const f = JSON.parse(ev.data);
        if (f.type === 'system' && f.event === 'connected') {
          for (const g of this.groups) this.send({ type: 'joinGroup', group: g });
          this.emit('connected', f);
          resolve();
        } else if (f.type === 'ack') {
          const done = this.acks.get(f.ackId);
          if (done) { this.acks.delete(f.ackId); done(f); }
        } else if (f.type === 'message') {
          this.emit('message', f);
        }
      };
      ws.onclose = () => {
        this.emit('disconnected');
        resolve();
        if (!this.closed) setTimeout(() => this.start(), 500);
      };
    });
  }
  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }
  request(frame) {
    const id = ++this.ackId;
    return new Promise((resolve) => {
      this.acks.set(id, resolve);
      this.send({ ...frame, ackId: id });
    });
  }
  joinGroup(group) { this.groups.add(group); return this.request({ type: 'joinGroup', group }); }
  leaveGroup(group) { this.groups.delete(group); return this.request({ type: 'leaveGroup', group }); }
  sendToGroup(group, data, noEcho = false) {
    return this.request({ type: 'sendToGroup', group, dataType: 'json', data, noEcho });
  }
  close() { this.closed = true; if (this.ws) this.ws.close(); }
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
