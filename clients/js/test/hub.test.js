// The hub client against the real binary: groups, data types, acks, recovery, rejoin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HubClient, HubError, JSON_PROTOCOL } from "../dist/index.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { eventually, mint, startHub } from "./helpers.js";

const ALL = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

async function withHub(fn, extra = []) {
  const hub = await startHub(extra);
  const clients = [];
  const connect = async (user, roles, options) => {
    const c = new HubClient(hub.clientUrl("chat", user, roles), options);
    clients.push(c);
    await c.start();
    return c;
  };
  try {
    await fn(hub, connect);
  } finally {
    for (const c of clients) c.stop();
    await hub.stop();
  }
}

test("join, send every data type, noEcho, leave", () =>
  withHub(async (_hub, connect) => {
    const alice = await connect("alice", ALL);
    const bob = await connect("bob", ALL);
    assert.equal(alice.userId, "alice");
    const bobIn = bob.messages();
    const aliceIn = alice.messages();
    await bob.joinGroup("room");
    await alice.joinGroup("room");
    await alice.sendToGroup("room", { n: 1 }, { noEcho: true });
    await alice.sendToGroup("room", "plain", { dataType: "text", noEcho: true });
    await alice.sendToGroup("room", new Uint8Array([0, 1, 255]), { dataType: "binary", noEcho: true });
    await alice.sendToGroup("room", "echoed", { dataType: "text" });
    const got = [await bobIn.next(10_000), await bobIn.next(10_000), await bobIn.next(10_000)];
    assert.deepEqual(got.map((m) => [m.group, m.dataType, m.fromUserId, m.sequenceId]), [
      ["room", "json", "alice", 1],
      ["room", "text", "alice", 2],
      ["room", "binary", "alice", 3],
    ]);
    assert.deepEqual(got[0].data, { n: 1 });
    assert.equal(got[1].data, "plain");
    assert.deepEqual([...got[2].data], [0, 1, 255]);
    assert.equal((await aliceIn.next(10_000)).data, "echoed"); // noEcho held back the first three
    assert.equal((await bobIn.next(10_000)).data, "echoed");
    await bob.leaveGroup("room");
    await alice.sendToGroup("room", "gone", { dataType: "text" });
    await alice.sendToGroup("room", "no ack", { dataType: "text", fireAndForget: true });
    assert.equal((await aliceIn.next(10_000)).data, "gone");
    assert.equal((await aliceIn.next(10_000)).data, "no ack");
    await bob.joinGroup("room");
    await alice.sendToGroup("room", "back", { dataType: "text" });
    assert.equal((await bobIn.next(10_000)).data, "back");
  }));

test("refusals are HubErrors with the hub's name; callbacks fire", () =>
  withHub(async (hub, connect) => {
    const mallory = await connect("mallory", []);
    await assert.rejects(mallory.joinGroup("room"), (e) => e instanceof HubError && e.errorName === "Forbidden");
    await assert.rejects(mallory.sendToGroup("room", 1), (e) => e.errorName === "Forbidden");
    const bad = new HubClient(hub.clientUrl("chat", "x", []) + "x");
    await assert.rejects(bad.start(), (e) => e.errorName === "Unauthorized" && e.status === 401);
    const carol = await connect("carol", ALL);
    const seen = [];
    const got = new Promise((r) => carol.on("group-message", (m) => (seen.push(m.data), r())));
    await carol.joinGroup("news");
    await carol.sendToGroup("news", { headline: 1 });
    await got;
    assert.deepEqual(seen, [{ headline: 1 }]);
  }));

test("server messages from the REST API arrive", () =>
  withHub(async (hub, connect) => {
    const erin = await connect("erin", []);
    const inbox = erin.messages();
    const url = `${hub.endpoint}/api/hubs/chat/users/erin/:send`;
    const res = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${mint(url, "", [])}`, "content-type": "text/plain" },
      body: "hello",
    });
    assert.equal(res.status, 202);
    const m = await inbox.next(10_000);
    assert.deepEqual([m.source, m.dataType, m.data], ["server", "text", "hello"]);
  }));

test("a dropped socket recovers without loss or duplicates", () =>
  withHub(async (_hub, connect) => {
    const pub = await connect("pub", ALL);
    const sub = await connect("sub", ALL, { sequenceAckIntervalMs: 30_000 });
    const inbox = sub.messages();
    await sub.joinGroup("feed");
    const firstId = sub.connectionId;
    const total = 400;
    const sending = (async () => {
      for (let i = 0; i < total; i++) await pub.sendToGroup("feed", i);
    })();
    const got = [];
    while (got.length < 50) got.push((await inbox.next(15_000)).data);
    sub.dropSocket();
    while (got.length < total) got.push((await inbox.next(15_000)).data);
    await sending;
    assert.deepEqual(got, [...Array(total).keys()], "lost, duplicated or reordered messages");
    assert.equal(sub.stats.recoveries, 1);
    assert.equal(sub.connectionId, firstId);
    assert.ok(sub.stats.duplicates > 0, "the hub resends unacked messages; the client must drop them");
    await pub.sendToGroup("feed", "after");
    assert.equal((await inbox.next(10_000)).data, "after");
  }));

test("a refused recovery opens a new connection and rejoins", () =>
  withHub(async (hub, connect) => {
    const pub = await connect("pub", ALL);
    const sub = await connect("sub", ALL);
    const inbox = sub.messages();
    await sub.joinGroup("feed");
    const old = sub.connectionId;
    const url = `${hub.endpoint}/api/hubs/chat/connections/${old}`;
    const res = await fetch(`${url}?reason=bye`, { method: "DELETE", headers: { authorization: `Bearer ${mint(url, "", [])}` } });
    assert.equal(res.status, 204);
    await eventually("a new connection", () => sub.connectionId !== old && sub.stats.reconnects === 1);
    // The rejoin races with these sends: publish until one arrives through the group.
    const m = await eventually("the group rejoined", async () => {
      await pub.sendToGroup("feed", "ping");
      return inbox.next(300).catch(() => null);
    });
    assert.equal(m.group, "feed");
  }));

test("a new connection rejoins after the last offset and misses nothing", async () => {
  // The hub ends the subscriber's connection (its session is gone) while messages keep
  // coming: the client rejoins after the last offset it saw, so what was published meanwhile
  // arrives through the group's history, once each and in order.
  const dir = mkdtempSync(path.join(tmpdir(), "nerve-js-history-"));
  const config = path.join(dir, "history.toml");
  writeFileSync(config, "[hubs.chat]\nhistory = { max_messages = 100, max_age_secs = 600 }\n");
  try {
    await withHub(async (hub, connect) => {
      const pub = await connect("pub", ALL);
      const sub = await connect("sub", ALL);
      const inbox = sub.messages();
      await sub.joinGroup("feed");
      await pub.sendToGroup("feed", "seen");
      const first = await inbox.next(10_000);
      assert.equal(first.data, "seen");
      assert.ok(first.offset, "group messages carry an offset");
      const old = sub.connectionId;
      const url = `${hub.endpoint}/api/hubs/chat/connections/${old}`;
      const res = await fetch(`${url}?reason=bye`, { method: "DELETE", headers: { authorization: `Bearer ${mint(url, "", [])}` } });
      assert.equal(res.status, 204);
      for (let i = 0; i < 20; i++) await pub.sendToGroup("feed", i);
      const got = [];
      for (let i = 0; i < 20; i++) got.push((await inbox.next(15_000)).data);
      assert.deepEqual(got, [...Array(20).keys()]);
      assert.ok(sub.connectionId !== old && sub.stats.reconnects === 1);
      await pub.sendToGroup("feed", "live");
      assert.equal((await inbox.next(10_000)).data, "live");
    }, ["--config", config]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("eager sequence acks keep a fast stream within the hub's buffer", () =>
  withHub(async (_hub, connect) => {
    // The hub closes a reliable connection at 1000 unacknowledged messages; with the periodic
    // ack far away, only the ack after every 300 messages keeps this stream alive.
    const pub = await connect("pub", ALL);
    const sub = await connect("sub", ALL, { sequenceAckIntervalMs: 60_000 });
    const inbox = sub.messages();
    await sub.joinGroup("fast");
    const total = 1500;
    const sending = (async () => {
      for (let i = 0; i < total; i++) await pub.sendToGroup("fast", i);
    })();
    for (let i = 0; i < total; i++) assert.equal((await inbox.next(15_000)).data, i);
    await sending;
    assert.deepEqual([sub.stats.reconnects, sub.stats.recoveries], [0, 0]);
  }));

test("the plain JSON protocol reconnects and rejoins after a drop", () =>
  withHub(async (_hub, connect) => {
    const pub = await connect("pub", ALL);
    const sub = await connect("sub", ALL, { protocol: JSON_PROTOCOL });
    const inbox = sub.messages();
    await sub.joinGroup("feed");
    await pub.sendToGroup("feed", "before");
    const first = await inbox.next(10_000);
    assert.deepEqual([first.data, first.sequenceId], ["before", undefined]);
    const old = sub.connectionId;
    sub.dropSocket();
    const m = await eventually("the group rejoined", async () => {
      await pub.sendToGroup("feed", "after");
      return inbox.next(300).catch(() => null);
    });
    assert.equal(m.data, "after");
    assert.notEqual(sub.connectionId, old);
  }));

test("events without an upstream are refused; pings are answered", () =>
  withHub(async (_hub, connect) => {
    const c = await connect("gina", [], { pingIntervalMs: 100 });
    await assert.rejects(c.sendEvent("typing", "x", { dataType: "text" }), (e) => e.errorName === "NotFound");
    await eventually("pongs for the client's pings", () => c.stats.pongs >= 2);
  }));

test("a request in flight when the socket drops runs exactly once", () =>
  withHub(async (_hub, connect) => {
    // After recovery the client resends unanswered requests with the same ackId; the hub runs
    // them then, or answers Duplicate (already ran), which counts as success.
    const pub = await connect("pub", ALL);
    const sub = await connect("sub", ALL);
    const inbox = sub.messages();
    await sub.joinGroup("feed");
    for (let i = 0; i < 5; i++) {
      const sending = pub.sendToGroup("feed", i);
      pub.dropSocket();
      await sending;
    }
    await pub.sendToGroup("feed", "end");
    const got = [];
    for (let m = await inbox.next(10_000); m.data !== "end"; m = await inbox.next(10_000)) got.push(m.data);
    assert.deepEqual(got, [0, 1, 2, 3, 4]);
    assert.equal(pub.stats.recoveries, 5);
  }));
