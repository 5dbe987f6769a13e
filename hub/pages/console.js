// The operator console. It has no privilege of its own: every call carries a short-lived
// HS256 token this page signs with the access key the operator gave it, and goes to the same
// APIs a script would call (/console/api, /api/hubs, /bus/api).
'use strict';

(function () {
  const boot = window.NERVE_CONSOLE || {};
  const $ = (id) => document.getElementById(id);
  const KEY_SLOT = 'nerve.console.key';

  // ---- SHA-256 and HMAC, so the page signs tokens over plain http too (no WebCrypto there).
  const K = new Uint32Array(64);
  const H0 = new Uint32Array(8);
  (function constants() {
    const primes = [];
    for (let n = 2; primes.length < 64; n++) if (primes.every((p) => n % p)) primes.push(n);
    const frac = (x) => ((x - Math.floor(x)) * 0x100000000) >>> 0;
    primes.forEach((p, i) => { K[i] = frac(Math.cbrt(p)); if (i < 8) H0[i] = frac(Math.sqrt(p)); });
  })();
  function sha256(bytes) {
    const bits = bytes.length * 8;
    const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
    padded.set(bytes);
    padded[bytes.length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(padded.length - 4, bits >>> 0);
    const h = H0.slice();
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let off = 0; off < padded.length; off += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, k] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        k = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      [a, b, c, d, e, f, g, k].forEach((v, i) => { h[i] = (h[i] + v) >>> 0; });
    }
    const out = new Uint8Array(32);
    const ov = new DataView(out.buffer);
    h.forEach((v, i) => ov.setUint32(i * 4, v));
    return out;
  }
  function hmacSha256(key, msg) {
    if (key.length > 64) key = sha256(key);
    const ipad = new Uint8Array(64 + msg.length);
    const opad = new Uint8Array(64 + 32);
    for (let i = 0; i < 64; i++) { const b = key[i] || 0; ipad[i] = b ^ 0x36; opad[i] = b ^ 0x5c; }
    ipad.set(msg, 64);
    opad.set(sha256(ipad), 64);
    return sha256(opad);
  }
  const utf8 = (s) => new TextEncoder().encode(s);
  function b64url(bytes) {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function signToken(key, claims) {
    const head = b64url(utf8(JSON.stringify({ alg: 'HS256', typ: 'JWT' })));
    const body = b64url(utf8(JSON.stringify(claims)));
    const mac = hmacSha256(utf8(key), utf8(head + '.' + body));
    return head + '.' + body + '.' + b64url(mac);
  }
  window.nerveConsoleCrypto = { sha256, hmacSha256, signToken };

  // ---- The key and the calls.
  let key = boot.key || sessionStorage.getItem(KEY_SLOT) || null;
  function token(aud, extra) {
    const now = Math.floor(Date.now() / 1000);
    return signToken(key, { aud, iat: now, exp: now + 300, ...extra });
  }
  class CallError extends Error {
    constructor(status, body) {
      super((body && (body.message || body.code)) || `HTTP ${status}`);
      this.status = status;
    }
  }
  async function call(method, path, { body, type, claims } = {}) {
    const aud = location.origin + path.split('?')[0];
    const headers = { authorization: 'Bearer ' + token(aud, claims) };
    if (type) headers['content-type'] = type;
    const r = await fetch(path, { method, headers, body, cache: 'no-store' });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = { message: text }; }
    if (!r.ok) throw new CallError(r.status, json);
    return json;
  }
  const api = (path) => call('GET', '/console/api' + path);
  const rest = (method, path, body, type) => call(method, '/api/hubs' + path, { body, type });
  const bus = (op, data) => {
    const path = '/bus/api/' + op;
    const aud = location.origin + '/client/hubs/' + (boot.busHub || 'bus');
    const headers = { authorization: 'Bearer ' + token(aud, { sub: 'console', role: ['bus.admin'] }), 'content-type': 'application/json' };
    return fetch(path, { method: 'POST', headers, body: JSON.stringify(data || {}) }).then(async (r) => {
      const j = await r.json().catch(() => ({}));
      if (!r.ok) throw new CallError(r.status, j);
      return j;
    });
  };
  window.nerveConsole = { api, rest, bus };

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v);
    }
    for (const c of kids.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function notice(text) {
    const n = $('notice');
    n.textContent = text || '';
    n.classList.toggle('hidden', !text);
  }
  function failed(e) {
    if (e.status === 401) { signOut('The hub refused the key: ' + e.message); return; }
    notice(e.message || String(e));
  }

  // ---- Sign-in.
  function signOut(why) {
    key = null;
    sessionStorage.removeItem(KEY_SLOT);
    stopTrace();
    document.querySelectorAll('main > section').forEach((s) => s.classList.add('hidden'));
    $('login').classList.remove('hidden');
    $('logout').classList.add('hidden');
    $('login-error').textContent = why || '';
    document.body.dataset.signedIn = 'no';
  }
  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let k = $('key').value.trim();
    const m = /AccessKey=([^;]+)/i.exec(k);
    if (m) k = m[1];
    if (!k) return;
    key = k;
    try {
      await api('/overview');
    } catch (e) {
      key = null;
      $('login-error').textContent = e.status === 401 ? 'That key is not one of this hub\'s access keys.' : e.message;
      return;
    }
    sessionStorage.setItem(KEY_SLOT, k);
    $('key').value = '';
    signedIn();
  });
  $('logout').onclick = () => signOut('');

  // ---- Tabs.
  const loaders = {};
  function show(tab) {
    if (!loaders[tab]) tab = 'overview';
    document.querySelectorAll('#tabs a').forEach((a) => a.classList.toggle('on', a.dataset.tab === tab));
    document.querySelectorAll('main > section').forEach((s) => s.classList.toggle('hidden', s.id !== 'tab-' + tab));
    document.body.dataset.tab = tab;
    notice('');
    loaders[tab]();
  }
  document.querySelectorAll('#tabs a').forEach((a) => { a.onclick = () => { location.hash = a.dataset.tab; }; });
  window.addEventListener('hashchange', () => { if (key) show(location.hash.slice(1)); });

  // ---- Overview: charts from the per-second samples.
  const CHARTS = [
    { title: 'Connections, groups, users', series: [['connections', '#4ea1ff'], ['groups', '#d29922'], ['users', '#3fb950']] },
    { title: 'Messages per second', series: [['messagesIn', '#3fb950', 'in'], ['messagesOut', '#4ea1ff', 'out']] },
    { title: 'Bytes per second', series: [['bytesIn', '#3fb950', 'in'], ['bytesOut', '#4ea1ff', 'out']] },
    { title: 'Latency (ms)', series: [['restLatencyMs', '#c297ff', 'REST'], ['redisLatencyMs', '#d29922', 'Redis']] },
    { title: 'Errors and slow-consumer cuts per second', series: [['errors', '#f85149', 'errors'], ['slowConsumerCuts', '#d29922', 'slow consumers']] },
    { title: 'Agent bus: waiting and in flight', series: [['busDepth', '#4ea1ff', 'waiting'], ['busInFlight', '#3fb950', 'in flight']] },
  ];
  const charts = CHARTS.map((c, i) => {
    const canvas = el('canvas', { id: 'chart-' + i, 'data-title': c.title });
    const legend = el('div', { class: 'legend' }, c.series.map(([k, color, label]) => el('span', {}, el('i', { style: 'background:' + color }), label || k)));
    $('charts').append(el('div', { class: 'panel chart' }, el('h4', {}, c.title), canvas, legend));
    return { ...c, canvas };
  });
  function draw(chart, samples) {
    const cv = chart.canvas;
    const w = cv.clientWidth || 380, h = cv.clientHeight || 150;
    cv.width = w * devicePixelRatio; cv.height = h * devicePixelRatio;
    const g = cv.getContext('2d');
    g.scale(devicePixelRatio, devicePixelRatio);
    g.clearRect(0, 0, w, h);
    let max = 1;
    for (const s of samples) for (const [k] of chart.series) max = Math.max(max, s[k] || 0);
    const left = 40, bottom = h - 16, top = 6;
    g.strokeStyle = '#2a3541'; g.fillStyle = '#8b98a5'; g.font = '11px system-ui'; g.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = bottom - (bottom - top) * f;
      g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
      const v = max * f;
      g.fillText(v >= 1000 ? (v / 1000).toFixed(1) + 'k' : (Number.isInteger(v) ? v : v.toFixed(1)), 2, y + 4);
    }
    const n = samples.length;
    if (n) g.fillText(`last ${n} s`, left, h - 3);
    const x = (i) => left + (w - left) * (n <= 1 ? 1 : i / (n - 1));
    let points = 0;
    for (const [k, color] of chart.series) {
      g.strokeStyle = color; g.lineWidth = 1.6; g.beginPath();
      let started = false;
      samples.forEach((s, i) => {
        const v = s[k];
        if (v === null || v === undefined) { started = false; return; }
        const y = bottom - (bottom - top) * (v / max);
        if (!started) { g.moveTo(x(i), y); started = true; } else g.lineTo(x(i), y);
        points++;
      });
      g.stroke();
    }
    cv.dataset.points = points;
    cv.dataset.max = max;
  }
  let overviewTimer = null;
  async function refreshOverview() {
    try {
      const [o, m] = await Promise.all([api('/overview'), api('/metrics?seconds=300')]);
      const s = m.samples;
      const last = s[s.length - 1] || {};
      $('node-id').textContent = o.node;
      $('cluster').textContent = o.cluster.redis ? `cluster over Redis, bus on ${o.cluster.busTransport}` : `single node, bus in ${o.cluster.busTransport}`;
      $('t-connections').textContent = last.connections ?? 0;
      $('t-groups').textContent = last.groups ?? 0;
      $('t-users').textContent = last.users ?? 0;
      $('t-in').textContent = last.messagesIn ?? 0;
      $('t-out').textContent = last.messagesOut ?? 0;
      const lat = [...s].reverse().find((x) => x.restLatencyMs != null);
      $('t-latency').textContent = lat ? lat.restLatencyMs.toFixed(1) : '–';
      $('t-errors').textContent = s.slice(-60).reduce((a, x) => a + x.errors, 0);
      $('t-redis').textContent = !o.cluster.redis ? 'not used' : o.cluster.redisUp ? 'healthy' : 'down';
      $('redis-dot').className = 'dot ' + (!o.cluster.redis || o.cluster.redisUp ? 'up' : 'down');
      $('hubs').replaceChildren(...o.hubs.map((h) => el('tr', {}, el('td', {}, h.hub), el('td', {}, h.connections), el('td', {}, h.groups), el('td', {}, h.users))));
      $('nodes-panel').classList.toggle('hidden', !o.nodes.length);
      $('nodes').replaceChildren(...o.nodes.map(({ node, sample: n }) => el('tr', { 'data-node': node },
        el('td', {}, el('b', {}, node), node === o.node ? el('span', { class: 'muted' }, ' (this one)') : null),
        el('td', { 'data-col': 'connections' }, n.connections), el('td', {}, n.groups), el('td', {}, n.users),
        el('td', {}, n.messagesIn), el('td', {}, n.messagesOut), el('td', {}, n.restLatencyMs == null ? '–' : n.restLatencyMs.toFixed(1)),
        el('td', {}, el('span', { class: 'dot ' + (n.redisUp ? 'up' : 'down') })),
        el('td', { class: 'muted' }, new Date(n.t).toLocaleTimeString()))));
      for (const c of charts) draw(c, s);
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      document.body.dataset.samples = s.length;
    } catch (e) { failed(e); }
  }
  loaders.overview = () => {
    refreshOverview();
    clearInterval(overviewTimer);
    overviewTimer = setInterval(() => { if (document.body.dataset.tab === 'overview' && key) refreshOverview(); }, 1000);
  };

  // ---- Live trace over a streamed fetch of Server-Sent Events.
  let traceAbort = null;
  const MAX_ROWS = 500;
  $('payload-note').textContent = boot.payloadsAllowed
    ? 'Payloads are off unless you tick the box: they may be private.'
    : 'This hub shows no payloads in the trace (console.trace_payloads is off).';
  $('f-payloads').disabled = !boot.payloadsAllowed;
  function traceRow(e) {
    const time = new Date(e.at).toLocaleTimeString();
    const who = [e.connection && 'conn ' + e.connection, e.user && 'user ' + e.user, e.group && 'group ' + e.group].filter(Boolean).join(' · ');
    const row = el('div', { class: 'ev', 'data-kind': e.kind },
      el('span', { class: 'muted' }, time, ' '), el('span', { class: 'k ' + e.kind }, e.kind), el('span', {}, e.hub, ' '),
      el('span', { class: 'muted' }, who, ' '), el('span', {}, e.detail || ''), e.bytes != null ? el('span', { class: 'muted' }, ` (${e.bytes} B)`) : null);
    if (e.payload != null) {
      const pre = el('pre', { class: 'payload hidden' }, e.payload);
      row.append(' ', el('button', { class: 'ghost', onclick: () => pre.classList.toggle('hidden') }, 'payload'), pre);
    }
    return row;
  }
  function stopTrace() {
    if (traceAbort) traceAbort.abort();
    traceAbort = null;
    $('trace-state').textContent = 'not watching';
    document.body.dataset.tracing = 'no';
  }
  async function startTrace() {
    stopTrace();
    const q = new URLSearchParams();
    for (const f of ['hub', 'group', 'user', 'connection']) { const v = $('f-' + f).value.trim(); if (v) q.set(f, v); }
    if ($('f-payloads').checked) q.set('payloads', 'true');
    const path = '/console/api/trace';
    const ctl = new AbortController();
    traceAbort = ctl;
    try {
      const r = await fetch(path + '?' + q, { headers: { authorization: 'Bearer ' + token(location.origin + path) }, signal: ctl.signal });
      if (!r.ok) throw new CallError(r.status, await r.json().catch(() => null));
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          if (!data) continue;
          const e = JSON.parse(data);
          if (e.kind === 'watching') {
            $('trace-state').textContent = `watching node ${e.node}` + (e.payloads ? ', with payloads' : '');
            document.body.dataset.tracing = 'yes';
            continue;
          }
          const log = $('trace-log');
          if (e.kind === 'lagged') { log.append(el('div', { class: 'ev muted' }, `${e.missed} events missed: this page fell behind`)); continue; }
          const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
          log.append(traceRow(e));
          while (log.childElementCount > MAX_ROWS) log.firstElementChild.remove();
          if (stick) log.scrollTop = log.scrollHeight;
        }
      }
      if (traceAbort === ctl) { $('trace-state').textContent = 'the hub ended the trace'; document.body.dataset.tracing = 'no'; }
    } catch (e) {
      if (e.name === 'AbortError') return;
      $('trace-state').textContent = 'not watching';
      failed(e);
    }
  }
  $('trace-form').addEventListener('submit', (ev) => { ev.preventDefault(); startTrace(); });
  $('trace-stop').onclick = stopTrace;
  $('trace-clear').onclick = () => $('trace-log').replaceChildren();
  loaders.trace = () => { if (!traceAbort) startTrace(); };

  // ---- Connections, users and groups; actions through the REST API.
  let hubsLoaded = false;
  const seg = encodeURIComponent;
  async function act(what, fn) {
    try { await fn(); notice(''); $('c-result').textContent = what; } catch (e) { failed(e); }
    // The hub answers before the change lands (a closing socket says goodbye first): look
    // again a few times.
    for (const ms of [150, 1000, 2500]) setTimeout(refreshConnections, ms);
  }
  async function refreshConnections() {
    try {
      if (!hubsLoaded) {
        const h = await api('/hubs');
        const sel = $('c-hub');
        const current = sel.value;
        const names = h.hubs.map((x) => x.hub);
        if (!names.length) names.push('chat');
        sel.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
        const preferred = names.includes(current) ? current : names.find((n) => n !== boot.busHub) || names[0];
        sel.value = preferred;
        hubsLoaded = true;
      }
      const hub = $('c-hub').value;
      const q = '?search=' + seg($('c-search').value.trim());
      const base = '/hubs/' + seg(hub);
      const [c, u, g] = await Promise.all([api(base + '/connections' + q), api(base + '/users' + q), api(base + '/groups' + q)]);
      $('c-connections').replaceChildren(...c.rows.map((r) => el('tr', { 'data-connection': r.connectionId },
        el('td', {}, el('code', {}, r.connectionId), el('div', { class: 'muted' }, r.protocol)),
        el('td', {}, r.userId || el('span', { class: 'muted' }, 'anonymous')),
        el('td', {}, r.groups.map((grp) => el('span', { class: 'chip', 'data-group': grp }, grp,
          el('button', { class: 'ghost', title: 'remove from group', onclick: () => act(`removed ${r.connectionId} from ${grp}`,
            () => rest('DELETE', `/${seg(hub)}/groups/${seg(grp)}/connections/${seg(r.connectionId)}`)) }, '×')))),
        el('td', { class: 'muted' }, r.roles.join(', ')),
        el('td', {},
          el('button', { class: 'ghost', 'data-action': 'send', onclick: () => {
            const text = prompt('Test message to send to ' + r.connectionId, 'hello from the console');
            if (text !== null) act(`sent a test message to ${r.connectionId}`, () => rest('POST', `/${seg(hub)}/connections/${seg(r.connectionId)}/:send`, text, 'text/plain'));
          } }, 'Send'), ' ',
          el('button', { class: 'bad', 'data-action': 'close', onclick: () => act(`closed ${r.connectionId}`,
            () => rest('DELETE', `/${seg(hub)}/connections/${seg(r.connectionId)}?reason=${seg('closed from the console')}`)) }, 'Close')))));
      if (!c.rows.length) $('c-connections').append(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'no connections match')));
      $('c-users').replaceChildren(...u.rows.map((r) => el('tr', { 'data-user': r.userId }, el('td', {}, r.userId), el('td', {}, r.connections), el('td', {}, r.groups.join(', ')))));
      $('c-groups').replaceChildren(...g.rows.map((r) => el('tr', { 'data-group': r.group }, el('td', {}, r.group), el('td', {}, r.members), el('td', {}, r.users.join(', ')))));
      document.body.dataset.connections = c.total;
    } catch (e) { failed(e); }
  }
  $('c-hub').onchange = refreshConnections;
  $('c-refresh').onclick = () => { hubsLoaded = false; refreshConnections(); };
  let searchTimer = null;
  $('c-search').oninput = () => { clearTimeout(searchTimer); searchTimer = setTimeout(refreshConnections, 250); };
  loaders.connections = () => { hubsLoaded = false; refreshConnections(); };

  // ---- Bus explorer.
  const shortState = (s) => String(s || '').replace('TASK_STATE_', '').toLowerCase().replace('_', '-');
  const text = (m) => (m && m.parts ? m.parts.map((p) => p.text ?? JSON.stringify(p.data ?? p)).join(' ') : '');
  async function refreshBus() {
    try {
      const [q, d, a, t] = await Promise.all([bus('bus.queues'), bus('bus.dlq.list'), bus('bus.agents'), bus('bus.tasks', { rootsOnly: true, limit: 20 })]);
      $('b-queues').replaceChildren(...q.queues.map((r) => el('tr', { 'data-capability': r.capability },
        el('td', {}, el('b', {}, r.capability)), el('td', { 'data-col': 'waiting' }, r.waiting), el('td', { 'data-col': 'delayed' }, r.delayed), el('td', { 'data-col': 'inFlight' }, r.inFlight),
        el('td', { 'data-col': 'dead' }, r.deadLettered), el('td', { class: 'muted' }, r.agents.join(', ') || 'none'),
        el('td', {}, el('button', { class: 'ghost', onclick: () => peek(r.capability) }, 'Peek'), ' ',
          r.deadLettered ? el('button', { class: 'ghost', 'data-action': 'redrive-all', onclick: () => redrive(r.capability) }, 'Redrive all') : null))));
      if (!q.queues.length) $('b-queues').append(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'no capability has a queue yet')));
      $('b-dead').replaceChildren(...d.deadLetters.map((x) => el('tr', { 'data-entry': x.entry_id, 'data-capability': x.partition.capability },
        el('td', {}, x.partition.capability), el('td', {}, el('b', {}, x.reason), el('div', { class: 'muted' }, x.description)),
        el('td', {}, x.deliveries), el('td', { class: 'muted' }, new Date(x.dead_lettered_ms).toLocaleTimeString()),
        el('td', {}, el('code', {}, JSON.stringify(x.envelope.data).slice(0, 300))),
        el('td', {}, el('button', { 'data-action': 'redrive', onclick: () => redrive(x.partition.capability, x.entry_id, x.partition.index) }, 'Redrive')))));
      if (!d.deadLetters.length) $('b-dead').append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'no dead letters')));
      $('b-agents').replaceChildren(...a.agents.map((c) => el('div', { class: 'node', 'data-agent': c.id },
        el('div', { class: 'row' }, el('b', {}, c.name), el('code', { class: 'muted' }, c.id), el('span', { class: 'muted' }, c.version)),
        c.description ? el('div', { class: 'muted' }, c.description) : null,
        el('div', {}, c.skills.map((s) => el('span', { class: 'badge', title: s.description || '' }, s.id))))));
      if (!a.agents.length) $('b-agents').append(el('p', { class: 'muted' }, 'no agent is registered'));
      $('b-chains').replaceChildren(...t.tasks.map((r) => el('li', { 'data-chain': r.correlationId },
        el('span', { class: 'badge ' + shortState(r.task.status.state) }, shortState(r.task.status.state)), ' ',
        el('b', {}, r.capability), ' ', el('span', { class: 'muted' }, text((r.task.history || [])[0]).slice(0, 80)), ' ',
        el('a', { onclick: () => openChain(r.correlationId) }, 'open tree'))));
      if (!t.tasks.length) $('b-chains').append(el('li', { class: 'muted' }, 'no tasks yet'));
      document.body.dataset.bus = 'loaded';
    } catch (e) { failed(e); }
  }
  async function peek(cap) {
    try {
      const p = await bus('bus.peek', { capability: cap, limit: 20 });
      $('b-peek').classList.remove('hidden');
      $('b-peek').replaceChildren(el('h3', { style: 'margin-top:0' }, 'Unfinished tasks of ' + cap),
        p.tasks.length ? el('ul', { class: 'list' }, p.tasks.map((r) => el('li', {}, el('span', { class: 'badge ' + shortState(r.task.status.state) }, shortState(r.task.status.state)), ' ',
          el('code', {}, r.task.id), ' ', text((r.task.history || [])[0])))) : el('p', { class: 'muted' }, 'none: every task of this capability is finished'));
    } catch (e) { failed(e); }
  }
  async function redrive(cap, entryId, partition) {
    try {
      const r = await bus('bus.dlq.redrive', entryId ? { capability: cap, entryId, partition } : { capability: cap });
      notice(`${r.redriven} dead letter${r.redriven === 1 ? '' : 's'} of ${cap} back on the queue`);
      $('notice').classList.remove('notice');
    } catch (e) { failed(e); }
    refreshBus();
  }
  function treeNode(n) {
    const state = shortState(n.state);
    const li = el('li', {}, el('div', { class: 'node', 'data-task': n.taskId, 'data-state': state },
      el('div', { class: 'row' }, el('span', { class: 'badge ' + state }, state), el('b', {}, n.capability),
        el('span', { class: 'muted' }, n.agent ? 'by ' + n.agent : 'waiting for an agent'),
        el('span', { class: 'muted' }, n.durationMs != null ? `${n.durationMs} ms` : ''))));
    if (n.children.length) li.append(el('ul', {}, n.children.map(treeNode)));
    return li;
  }
  async function openChain(id) {
    try {
      const tree = await bus('bus.chain', { correlationId: id });
      const box = $('b-tree');
      box.classList.remove('hidden');
      box.replaceChildren(el('div', { class: 'row' }, el('h3', { style: 'margin:0' }, 'Chain ' + id), el('span', { class: 'grow' }),
        el('a', { href: '/demo/tasks?chain=' + encodeURIComponent(id), style: 'color:var(--accent)' }, 'open in the task page')),
      el('ul', {}, tree.roots.map(treeNode)));
      box.dataset.chain = id;
    } catch (e) { failed(e); }
  }
  $('b-refresh').onclick = refreshBus;
  let busTimer = null;
  loaders.bus = () => {
    refreshBus();
    clearInterval(busTimer);
    busTimer = setInterval(() => { if (document.body.dataset.tab === 'bus' && key) refreshBus(); }, 3000);
  };

  function signedIn() {
    $('login').classList.add('hidden');
    $('logout').classList.toggle('hidden', !!boot.key);
    $('who').textContent = boot.key ? 'signed in with this machine\'s key' : 'signed in with an access key';
    document.body.dataset.signedIn = 'yes';
    show(location.hash.slice(1) || 'overview');
  }
  if (key) signedIn(); else signOut('');
})();
