// Connection drops seen by the official client: the TCP connection is cut by a proxy in the
// middle of a steady stream, or the client closes its own socket. The reliable client must
// recover its session (every message once, in order, same connection), the plain JSON client
// must reconnect and rejoin its groups.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { WebPubSubJsonProtocol, WebPubSubJsonReliableProtocol } = require("@azure/web-pubsub-client");
const {
  connectClient,
  connectionStringVia,
  openRawSocket,
  startDropProxy,
  startHub,
  uniqueHub,
  waitFor,
  withDeadline,
} = require("../helpers");

const FULL_ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

let hub;
const cleanups = [];

before(async () => {
  hub = await startHub();
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  if (hub) await hub.stop();
});

async function proxyFor(h) {
  const proxy = await startDropProxy(h.port);
  cleanups.push(() => proxy.close());
  return proxy;
}

async function connect(service, tokenOptions, clientOptions) {
  const c = await connectClient(service, tokenOptions, clientOptions);
  cleanups.push(() => c.stop());
  return c;
}

describe("dropped connections", { timeout: 90_000 }, () => {
  it("the reliable client recovers mid-stream and receives every message exactly once, in order", async () => {
    const name = uniqueHub();
    const proxy = await proxyFor(hub);
    const viaProxy = hub.service(name, connectionStringVia(hub, proxy.port));
    const receiver = await connect(
      viaProxy,
      { userId: "watcher", groups: ["stream"] },
      { protocol: WebPubSubJsonReliableProtocol() },
    );
    const publisher = await connect(hub.service(name), { roles: FULL_ROLES }, { protocol: WebPubSubJsonProtocol() });
    const connectionId = receiver.connectionId;
    assert.equal(proxy.open, 1);

    const TOTAL = 600;
    const DROPS = [150, 380];
    for (let i = 1; i <= TOTAL; i++) {
      // Every send is acked by the hub, so the hub has accepted all of them for delivery.
      await publisher.client.sendToGroup("stream", { i }, "json");
      if (DROPS.includes(i)) {
        assert.ok(receiver.groupMessages.length > 0, "the stream is flowing when the connection is cut");
        proxy.dropAll();
      }
    }

    // A marker sent last: once it has arrived, every resent message before it has arrived too.
    await publisher.client.sendToGroup("stream", { i: "end" }, "json");
    const all = receiver.groupMessages;
    const report = () => {
      const seen = new Map();
      for (const m of all) seen.set(m.data.i, (seen.get(m.data.i) ?? 0) + 1);
      const missing = [];
      const duplicated = [];
      for (let i = 1; i <= TOTAL; i++) {
        if (!seen.has(i)) missing.push(i);
        else if (seen.get(i) > 1) duplicated.push(i);
      }
      return { received: all.length, missing, duplicated };
    };
    await waitFor(() => all.some((m) => m.data.i === "end"), {
      timeout: 40_000,
      what: "the end marker after the drops",
    }).catch((e) => {
      throw new Error(`${e.message}; ${JSON.stringify(report())}`);
    });
    const { missing, duplicated } = report();
    assert.deepEqual(missing, [], "no message is lost");
    assert.deepEqual(duplicated, [], "no message is delivered twice");
    assert.equal(all.length, TOTAL + 1);
    assert.deepEqual(
      all.map((m) => m.data.i),
      [...Array.from({ length: TOTAL }, (_, k) => k + 1), "end"],
      "messages arrive in publish order",
    );
    const seqs = all.map((m) => m.sequenceId);
    assert.ok(
      seqs.every((s, k) => k === 0 || s > seqs[k - 1]),
      "sequenceId increases strictly across the recoveries",
    );

    assert.ok(proxy.accepted >= 1 + DROPS.length, `the client reconnected through the proxy (${proxy.accepted})`);
    assert.equal(receiver.disconnected.length, 0, "recovery, not a new connection: no disconnected event");
    assert.equal(receiver.connected.length, 1, "no second connected event");
    assert.equal(receiver.connectionId, connectionId);
  });

  it("the reliable client recovers after closing its own socket, whatever the close code", async () => {
    const name = uniqueHub();
    const receiver = await connect(hub.service(name), { userId: "closer", groups: ["stream"] });
    const publisher = await connect(hub.service(name), { roles: FULL_ROLES }, { protocol: WebPubSubJsonProtocol() });
    const connectionId = receiver.connectionId;
    // No code is what the SDK's own close sends (stop(), and its keep-alive timeout before it
    // recovers); 1001 the Python SDK's recovery test; 3001 Azure's reliable chat sample.
    const closes = new Map([
      [20, undefined],
      [60, 1000],
      [100, 1001],
      [140, 3001],
      [180, 4000],
    ]);
    const codes = [];
    const TOTAL = 220;
    for (let i = 1; i <= TOTAL; i++) {
      if (closes.has(i)) {
        // The SDK's socket (a private field; the Python SDK's own recovery test does the same).
        const ws = receiver.client._wsClient;
        ws._socket.once("close", (code) => codes.push(code));
        ws.close(closes.get(i));
      }
      await publisher.client.sendToGroup("stream", { i }, "json");
    }
    await publisher.client.sendToGroup("stream", { i: "end" }, "json");
    await waitFor(() => receiver.groupMessages.some((m) => m.data.i === "end"), {
      timeout: 40_000,
      what: () => `the end marker after the closes (have ${receiver.groupMessages.length})`,
    });
    assert.deepEqual(
      receiver.groupMessages.map((m) => m.data.i),
      [...Array.from({ length: TOTAL }, (_, k) => k + 1), "end"],
      "every message once, in order",
    );
    // Each close was a clean close handshake: the hub echoed the code (1005: none was given).
    assert.deepEqual(codes, [1005, 1000, 1001, 3001, 4000]);
    assert.equal(receiver.disconnected.length, 0, "recovery, not a new connection: no disconnected event");
    assert.equal(receiver.connected.length, 1);
    assert.equal(receiver.connectionId, connectionId);
  });

  it("the plain JSON client reconnects as a new connection and rejoins its groups", async () => {
    const name = uniqueHub();
    const proxy = await proxyFor(hub);
    const viaProxy = hub.service(name, connectionStringVia(hub, proxy.port));
    const member = await connect(
      viaProxy,
      { userId: "plain", roles: FULL_ROLES },
      { protocol: WebPubSubJsonProtocol() },
    );
    const publisher = await connect(hub.service(name), { roles: FULL_ROLES }, { protocol: WebPubSubJsonProtocol() });
    await member.client.joinGroup("rejoin");
    await publisher.client.sendToGroup("rejoin", "before", "text");
    await member.waitGroupMessages(1, { group: "rejoin" });
    const first = member.connectionId;

    proxy.dropAll();
    await member.waitDisconnected(1);
    // The SDK re-sends joinGroup for every joined group before it emits `connected`.
    const again = await member.waitConnected(2, 20_000);
    assert.notEqual(again.connectionId, first, "a plain client gets a new connection");
    assert.equal(again.userId, "plain");
    assert.deepEqual(member.rejoinFailures, []);

    await publisher.client.sendToGroup("rejoin", "after", "text");
    await member.waitGroupMessages(2, { group: "rejoin" });
    assert.deepEqual(
      member.messagesIn("rejoin").map((m) => m.data),
      ["before", "after"],
    );
    await waitFor(() => proxy.open === 1, { what: "exactly one open connection through the proxy" });
    assert.equal(member.disconnected.length, 1);
  });
  it("REST sends made while a reliable client is cut off arrive once it recovers", async () => {
    const name = uniqueHub();
    const proxy = await proxyFor(hub);
    const viaProxy = hub.service(name, connectionStringVia(hub, proxy.port));
    const c = await connect(viaProxy, { userId: "offline" }, { protocol: WebPubSubJsonReliableProtocol() });
    const service = hub.service(name);
    await service.sendToUser("offline", { n: 0 });
    await c.waitServerMessages(1);

    // Refuse new connections for a moment so the sends below happen while the client is away.
    proxy.pause();
    proxy.dropAll();
    for (let n = 1; n <= 20; n++) await service.sendToUser("offline", { n });
    assert.equal(await service.connectionExists(c.connectionId), true, "the session outlives the socket");
    proxy.resume();

    const got = await c.waitServerMessages(21, { timeout: 30_000 });
    assert.deepEqual(
      got.map((m) => m.data.n),
      Array.from({ length: 21 }, (_, n) => n),
    );
    assert.equal(c.disconnected.length, 0);
    assert.equal(c.connected.length, 1);
  });

  it("SIGTERM sends every client disconnected and a close, then the hub exits cleanly", async () => {
    const own = await startHub();
    try {
      const service = own.service(uniqueHub());
      const plain = await connect(service, { userId: "p" }, { protocol: WebPubSubJsonProtocol(), autoReconnect: false });
      // A reliable client treats any close but 1008 as recoverable and keeps trying for 30 s
      // before it reports anything, so look at its frames directly.
      const { url } = await service.getClientAccessToken({ userId: "r" });
      const reliable = await openRawSocket(url, "json.reliable.webpubsub.azure.v1");
      cleanups.push(() => reliable.close());
      await reliable.waitFrame((f) => f.event === "connected", "connected");

      const exit = await own.stop();
      assert.deepEqual(exit, { code: 0, signal: null }, "graceful exit status");
      const d = await plain.waitDisconnected(1);
      assert.ok(d.message?.message, `the SDK client was told why: ${JSON.stringify(d.message)}`);
      await waitFor(() => plain.stopped === 1, { what: "the client stops (autoReconnect off)" });
      const closed = await withDeadline(reliable.closedPromise, 10_000, "close of the reliable socket");
      const last = reliable.frames.at(-1);
      assert.equal(last?.event, "disconnected", `disconnected before the close: ${JSON.stringify(reliable.frames)}`);
      assert.ok(last.message, "with a reason");
      assert.ok(closed.code === 1000 || closed.code === 1001 || closed.code === 1008, `close code ${closed.code}`);
    } finally {
      await own.stop();
    }
  });
});
