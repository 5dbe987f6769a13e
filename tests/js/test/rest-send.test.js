// The official @azure/web-pubsub server SDK sending through the REST API of a real nerve process,
// asserting what official clients receive: to all (excluded, filter), to a user, to a connection,
// to a group, with every content type.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { WebPubSubJsonProtocol, WebPubSubJsonReliableProtocol } = require("@azure/web-pubsub-client");
const { odata } = require("@azure/web-pubsub");
const { connectClient, startHub, uniqueHub, waitFor } = require("../helpers");

let hub;
const clients = [];

before(async () => {
  hub = await startHub();
});

after(async () => {
  for (const c of clients) c.stop();
  if (hub) await hub.stop();
});

async function connect(service, tokenOptions = {}, protocol = WebPubSubJsonProtocol()) {
  const c = await connectClient(service, tokenOptions, { protocol });
  clients.push(c);
  return c;
}

/** Sends `end` to every connection, waits until each client has it, returns their server data. */
async function settle(service, observed) {
  await service.sendToAll("end", { contentType: "text/plain" });
  const result = [];
  for (const c of observed) {
    await waitForEnd(c);
    result.push(c.serverMessages.map((m) => m.data));
  }
  return result;
}

async function waitForEnd(c) {
  await waitFor(() => c.serverMessages.some((m) => m.data === "end"), { what: "the end marker" });
}

describe("REST sends observed by official clients", { timeout: 60_000 }, () => {
  it("sendToAll maps each content type to the dataType the clients receive", async () => {
    const name = uniqueHub();
    const service = hub.service(name);
    const reliable = await connect(service, { userId: "r" }, WebPubSubJsonReliableProtocol());
    const plain = await connect(service, { userId: "p" });
    const otherHub = hub.service(uniqueHub());
    const elsewhere = await connect(otherHub, { userId: "r" });

    await service.sendToAll({ kind: "json", list: [1, 2] });
    await service.sendToAll("plain text", { contentType: "text/plain" });
    await service.sendToAll(Uint8Array.from([7, 0, 255]));
    await service.sendToAll("a JSON string");

    for (const c of [reliable, plain]) {
      const got = await c.waitServerMessages(4);
      assert.equal(got.length, 4);
      assert.deepEqual(
        got.map((m) => m.dataType),
        ["json", "text", "binary", "json"],
      );
      assert.deepEqual(got[0].data, { kind: "json", list: [1, 2] });
      assert.equal(got[1].data, "plain text");
      assert.deepEqual(new Uint8Array(got[2].data), Uint8Array.from([7, 0, 255]));
      assert.equal(got[3].data, "a JSON string");
    }
    assert.deepEqual(
      reliable.serverMessages.map((m) => m.sequenceId),
      [1, 2, 3, 4],
    );
    assert.ok(plain.serverMessages.every((m) => m.sequenceId === undefined));

    await otherHub.sendToAll("end", { contentType: "text/plain" });
    await waitForEnd(elsewhere);
    assert.deepEqual(
      elsewhere.serverMessages.map((m) => m.data),
      ["end"],
      "a hub's sendToAll does not reach other hubs",
    );
  });

  it("sendToAll honours excludedConnections and OData filters", async () => {
    const service = hub.service(uniqueHub());
    const u1 = await connect(service, { userId: "u1" });
    const u2 = await connect(service, { userId: "u2" });
    const u3 = await connect(service, { userId: "u3", groups: ["g1"] });
    const t = { contentType: "text/plain" };

    await service.sendToAll("not-u1", { ...t, excludedConnections: [u1.connectionId] });
    await service.sendToAll("not-u1-u2", { ...t, excludedConnections: [u1.connectionId, u2.connectionId] });
    await service.sendToAll("only-u1", { ...t, filter: "userId eq 'u1'" });
    await service.sendToAll("in-g1", { ...t, filter: "'g1' in groups" });
    await service.sendToAll("u1-or-u2", { ...t, filter: "userId in ('u1', 'u2')" });
    await service.sendToAll("not-g1", { ...t, filter: "not ('g1' in groups)" });
    await service.sendToAll("by-conn", { ...t, filter: odata`connectionId eq ${u2.connectionId}` });
    await service.sendToAll("fn", { ...t, filter: "startswith(userId, 'u') and endswith(userId, '3')" });

    const [m1, m2, m3] = await settle(service, [u1, u2, u3]);
    assert.deepEqual(m1, ["only-u1", "u1-or-u2", "not-g1", "end"]);
    assert.deepEqual(m2, ["not-u1", "u1-or-u2", "not-g1", "by-conn", "end"]);
    assert.deepEqual(m3, ["not-u1", "not-u1-u2", "in-g1", "fn", "end"]);
  });

  it("sendToUser reaches every connection of that user only, and honours a filter", async () => {
    const service = hub.service(uniqueHub());
    const a1 = await connect(service, { userId: "ann" });
    const a2 = await connect(service, { userId: "ann" }, WebPubSubJsonReliableProtocol());
    const bob = await connect(service, { userId: "bob" });

    await service.sendToUser("ann", { to: "ann" });
    await service.sendToUser("ann", "second", { contentType: "text/plain", filter: odata`connectionId eq ${a2.connectionId}` });
    await service.sendToUser("nobody", "lost", { contentType: "text/plain" });

    const [d1, d2, db] = await settle(service, [a1, a2, bob]);
    assert.deepEqual(d1, [{ to: "ann" }, "end"]);
    assert.deepEqual(d2, [{ to: "ann" }, "second", "end"]);
    assert.deepEqual(db, ["end"]);
  });

  it("sendToConnection reaches that connection only", async () => {
    const service = hub.service(uniqueHub());
    const target = await connect(service, { userId: "t" });
    const bystander = await connect(service, { userId: "t" });

    await service.sendToConnection(target.connectionId, "hi there", { contentType: "text/plain" });
    await service.sendToConnection(target.connectionId, Uint8Array.from([1, 2, 3]));
    await service.sendToConnection(target.connectionId, { n: 3 }, { messageTtlSeconds: 60 });

    const [dt, db] = await settle(service, [target, bystander]);
    assert.equal(dt.length, 4);
    assert.equal(dt[0], "hi there");
    assert.deepEqual(new Uint8Array(dt[1]), Uint8Array.from([1, 2, 3]));
    assert.deepEqual(dt[2], { n: 3 });
    assert.deepEqual(
      target.serverMessages.map((m) => m.dataType),
      ["text", "binary", "json", "text"],
    );
    assert.deepEqual(db, ["end"]);
  });

  it("group.sendToAll reaches members only, with excludedConnections and filter", async () => {
    const service = hub.service(uniqueHub());
    const group = service.group("room");
    const m1 = await connect(service, { userId: "m1", groups: ["room"] });
    const m2 = await connect(service, { userId: "m2", groups: ["room"] }, WebPubSubJsonReliableProtocol());
    const m3 = await connect(service, { userId: "m3", groups: ["room"] });
    const outsider = await connect(service, { userId: "o" });
    const t = { contentType: "text/plain" };

    await group.sendToAll({ n: 1 });
    await group.sendToAll("skip-m1", { ...t, excludedConnections: [m1.connectionId] });
    await group.sendToAll("not-m2", { ...t, filter: "userId ne 'm2'" });
    await service.group("elsewhere").sendToAll("not-here", t);

    // A REST send to a group reaches PubSub clients as that group's message (the SDK's
    // `group-message` event), with no sender, as the service sends it.
    const ends = await settle(service, [m1, m2, m3, outsider]);
    assert.deepEqual(ends, [["end"], ["end"], ["end"], ["end"]], "nothing came as a server message");
    const data = (c) => c.messagesIn("room").map((m) => m.data);
    assert.deepEqual(data(m1), [{ n: 1 }, "not-m2"]);
    assert.deepEqual(data(m2), [{ n: 1 }, "skip-m1"]);
    assert.deepEqual(data(m3), [{ n: 1 }, "skip-m1", "not-m2"]);
    assert.deepEqual(outsider.groupMessages, []);
    for (const c of [m1, m2, m3]) {
      assert.ok(
        c.groupMessages.every((m) => m.group === "room" && m.fromUserId === undefined),
        JSON.stringify(c.groupMessages),
      );
    }
    assert.deepEqual(
      [...m2.groupMessages, ...m2.serverMessages].map((m) => m.sequenceId),
      [1, 2, 3],
    );
  });

  it("receives a binary group message sent by the service as a group message", async () => {
    // The official client's own test of the same name: the bytes arrive with `group-message`.
    const service = hub.service(uniqueHub());
    const receiver = await connect(service, { userId: "binary-receiver", roles: ["webpubsub.joinLeaveGroup"] },
      WebPubSubJsonReliableProtocol());
    await receiver.client.joinGroup("binary-group");
    await service.group("binary-group").sendToAll(Uint8Array.from([1, 2, 3, 4]).buffer);
    const [m] = await receiver.waitGroupMessages(1, { group: "binary-group" });
    assert.equal(m.dataType, "binary");
    assert.deepEqual(new Uint8Array(m.data), Uint8Array.from([1, 2, 3, 4]));
    assert.equal(m.fromUserId, undefined);
    assert.deepEqual(receiver.serverMessages, []);
});
  it("handles user ids and group names with spaces, slashes, quotes and non-ASCII characters", async () => {
    const service = hub.service(uniqueHub());
    const names = ["with space", "a/b", "a+b%c", "q?x#y", "o'brien", "ユーザー"];
    const roles = ["webpubsub.sendToGroup"];
    const clients = [];
    for (const n of names) clients.push(await connect(service, { userId: n, groups: [n], roles }));
    for (const [k, n] of names.entries()) {
      assert.equal(await service.userExists(n), true, `userExists(${n})`);
      assert.equal(await service.groupExists(n), true, `groupExists(${n})`);
      await service.sendToUser(n, `user:${k}`, { contentType: "text/plain" });
      await service.group(n).sendToAll(`group:${k}`, { contentType: "text/plain" });
      await service.sendToAll(`filter:${k}`, { contentType: "text/plain", filter: odata`userId eq ${n}` });
      await clients[k].client.sendToGroup(n, `client:${k}`, "text");
    }
    const got = await settle(service, clients);
    for (const [k, n] of names.entries()) {
      assert.deepEqual(got[k], [`user:${k}`, `filter:${k}`, "end"], `server messages of ${n}`);
      const own = await clients[k].waitGroupMessages(2);
      assert.deepEqual(
        own.map((m) => [m.group, m.fromUserId, m.data]),
        [
          [n, undefined, `group:${k}`],
          [n, n, `client:${k}`],
        ],
      );
    }
  });
});
