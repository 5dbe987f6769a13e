// The official @azure/web-pubsub server SDK managing a real nerve process through REST:
// existence checks, closing connections (by id, user, group, all), group membership of
// connections and users, permissions, filtered bulk membership, member listing with paging and
// token generation, each asserted through what official clients observe.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { WebPubSubJsonProtocol, WebPubSubJsonReliableProtocol } = require("@azure/web-pubsub-client");
const { connectClient, newClient, openRawSocket, startHub, uniqueHub, waitFor, withDeadline } = require("../helpers");

let hub;
const clients = [];

before(async () => {
  hub = await startHub();
});

after(async () => {
  for (const c of clients) c.stop();
  if (hub) await hub.stop();
});

const NO_RETRY = { messageRetryOptions: { maxRetries: 0 } };

async function connect(service, tokenOptions = {}, clientOptions = {}) {
  const c = await connectClient(service, tokenOptions, { protocol: WebPubSubJsonProtocol(), ...NO_RETRY, ...clientOptions });
  clients.push(c);
  return c;
}

/**
 * Sends a tag to `group` through REST, then a marker to each observer's connection; once the
 * marker has arrived, the tag has arrived too if the observer is a member. A REST group send
 * reaches PubSub clients as the group's message. Returns membership per observer.
 */
async function groupProbe(service, group, observers) {
  const tag = `probe-${Math.random().toString(36).slice(2)}`;
  await service.group(group).sendToAll(tag, { contentType: "text/plain" });
  for (const o of observers) {
    await service.sendToConnection(o.connectionId, `${tag}-marker`, { contentType: "text/plain" });
  }
  for (const o of observers) {
    await waitFor(() => o.serverMessages.some((m) => m.data === `${tag}-marker`), { what: `marker ${tag}` });
  }
  return observers.map((o) => o.messagesIn(group).some((m) => m.data === tag));
}

async function rejects404(promise) {
  await assert.rejects(promise, (e) => e.statusCode === 404);
}

describe("REST management observed by official clients", { timeout: 60_000 }, () => {
  it("connectionExists, userExists and groupExists follow connections as they come and go", async () => {
    const service = hub.service(uniqueHub());
    assert.equal(await service.connectionExists("no-such-connection"), false);
    assert.equal(await service.userExists("ghost"), false);
    assert.equal(await service.groupExists("lobby"), false);

    const c = await connect(service, { userId: "ghost", groups: ["lobby"] });
    assert.equal(await service.connectionExists(c.connectionId), true);
    assert.equal(await service.userExists("ghost"), true);
    assert.equal(await service.groupExists("lobby"), true);
    assert.equal(await hub.service(uniqueHub()).connectionExists(c.connectionId), false, "scoped to its hub");

    c.stop();
    await waitFor(async () => !(await service.connectionExists(c.connectionId)), { what: "connection gone" });
    assert.equal(await service.userExists("ghost"), false);
    assert.equal(await service.groupExists("lobby"), false);
  });

  for (const [label, protocol] of [
    ["plain", WebPubSubJsonProtocol],
    ["reliable", WebPubSubJsonReliableProtocol],
  ]) {
    it(`closeConnection sends the reason to a ${label} client, which does not recover the session`, async () => {
      const service = hub.service(uniqueHub());
      const c = await connect(service, { userId: "x" }, { protocol: protocol(), autoReconnect: false });
      const other = await connect(service, { userId: "y" });
      await service.closeConnection(c.connectionId, { reason: "kicked by admin" });
      const d = await c.waitDisconnected(1);
      assert.equal(d.connectionId, c.connected[0].connectionId);
      assert.equal(d.message?.message, "kicked by admin");
      await waitFor(() => c.stopped === 1, { what: "client stopped (no recovery after close 1008)" });
      assert.equal(c.connected.length, 1);
      assert.equal(await service.connectionExists(c.connected[0].connectionId), false);
      assert.equal(await service.connectionExists(other.connectionId), true);
      assert.equal(other.disconnected.length, 0);
    });
  }

  it("a reliable client closed by REST reconnects as a new connection when autoReconnect is on", async () => {
    const service = hub.service(uniqueHub());
    const c = await connect(service, { userId: "again", roles: ["webpubsub.joinLeaveGroup"] }, {
      protocol: WebPubSubJsonReliableProtocol(),
    });
    await c.client.joinGroup("kept");
    const first = c.connectionId;
    await service.closeConnection(first, { reason: "rotate" });
    await c.waitDisconnected(1);
    const second = await c.waitConnected(2, 15_000);
    assert.notEqual(second.connectionId, first);
    assert.deepEqual(await groupProbe(service, "kept", [c]), [true], "the SDK rejoined its group");
  });

  it("closeAllConnections, closeUserConnections and group.closeAllConnections close exactly their targets", async () => {
    const service = hub.service(uniqueHub());
    const opts = { autoReconnect: false };
    const u1a = await connect(service, { userId: "u1" }, opts);
    const u1b = await connect(service, { userId: "u1", groups: ["g"] }, { ...opts, protocol: WebPubSubJsonReliableProtocol() });
    const u2 = await connect(service, { userId: "u2", groups: ["g"] }, opts);
    const u3 = await connect(service, { userId: "u3" }, opts);
    const u4 = await connect(service, { userId: "u4" }, opts);
    const otherService = hub.service(uniqueHub());
    const elsewhere = await connect(otherService, { userId: "u3" }, opts);

    await service.closeUserConnections("u1", { reason: "user closed" });
    await u1a.waitDisconnected(1);
    await u1b.waitDisconnected(1);
    assert.deepEqual(
      [u1a, u1b].map((c) => c.disconnected[0].message?.message),
      ["user closed", "user closed"],
    );
    assert.equal(await service.userExists("u1"), false);
    assert.equal(await service.connectionExists(u2.connectionId), true);

    await service.group("g").closeAllConnections({ reason: "group closed" });
    await u2.waitDisconnected(1);
    assert.equal(u2.disconnected[0].message?.message, "group closed");
    assert.equal(await service.connectionExists(u3.connectionId), true);

    await service.closeAllConnections({ reason: "all closed", excluded: [u4.connectionId] });
    await u3.waitDisconnected(1);
    assert.equal(u3.disconnected[0].message?.message, "all closed");
    assert.equal(await service.connectionExists(u4.connectionId), true, "excluded connection stays");
    assert.equal(u4.disconnected.length, 0);
    await service.closeAllConnections({ reason: "all closed" });
    await u4.waitDisconnected(1);

    assert.equal(await otherService.connectionExists(elsewhere.connectionId), true, "other hubs are untouched");
    assert.equal(elsewhere.disconnected.length, 0);
  });

  it("group.addConnection / removeConnection / removeConnectionFromAllGroups change what a client receives", async () => {
    const service = hub.service(uniqueHub());
    const c = await connect(service, { userId: "c" });
    await service.group("g1").addConnection(c.connectionId);
    await service.group("g2").addConnection(c.connectionId);
    assert.deepEqual(await groupProbe(service, "g1", [c]), [true]);
    assert.deepEqual(await groupProbe(service, "g2", [c]), [true]);
    assert.equal(await service.groupExists("g1"), true);

    await service.group("g1").removeConnection(c.connectionId);
    assert.deepEqual(await groupProbe(service, "g1", [c]), [false]);
    assert.deepEqual(await groupProbe(service, "g2", [c]), [true]);

    await service.group("g3").addConnection(c.connectionId);
    await service.removeConnectionFromAllGroups(c.connectionId);
    assert.deepEqual(await groupProbe(service, "g2", [c]), [false]);
    assert.deepEqual(await groupProbe(service, "g3", [c]), [false]);
    assert.equal(await service.groupExists("g2"), false);

    await rejects404(service.group("g1").addConnection("no-such-connection"));
  });

  it("group.addUser covers the user's current and later connections; removeUser and removeUserFromAllGroups undo it", async () => {
    const service = hub.service(uniqueHub());
    const early = await connect(service, { userId: "ursula" });
    const stranger = await connect(service, { userId: "sam" });
    await service.group("fans").addUser("ursula");
    await service.group("club").addUser("ursula");
    const late = await connect(service, { userId: "ursula" });
    assert.deepEqual(await groupProbe(service, "fans", [early, late, stranger]), [true, true, false]);
    assert.deepEqual(await groupProbe(service, "club", [early, late, stranger]), [true, true, false]);

    await service.group("fans").removeUser("ursula");
    assert.deepEqual(await groupProbe(service, "fans", [early, late]), [false, false]);
    assert.deepEqual(await groupProbe(service, "club", [early, late]), [true, true]);

    await service.removeUserFromAllGroups("ursula");
    assert.deepEqual(await groupProbe(service, "club", [early, late]), [false, false]);
    const later = await connect(service, { userId: "ursula" });
    assert.deepEqual(await groupProbe(service, "club", [later]), [false], "no membership left for new connections");
  });

  it("grantPermission / hasPermission / revokePermission with and without targetName", async () => {
    const service = hub.service(uniqueHub());
    const c = await connect(service, { userId: "p" });
    const member = await connect(service, { userId: "m", groups: ["allowed", "other"] });
    const id = c.connectionId;

    assert.equal(await service.hasPermission(id, "sendToGroup", { targetName: "allowed" }), false);
    await assert.rejects(c.client.sendToGroup("allowed", "no", "text"), (e) => e.errorDetail?.name === "Forbidden");

    await service.grantPermission(id, "sendToGroup", { targetName: "allowed" });
    assert.equal(await service.hasPermission(id, "sendToGroup", { targetName: "allowed" }), true);
    assert.equal(await service.hasPermission(id, "sendToGroup", { targetName: "other" }), false);
    await c.client.sendToGroup("allowed", "yes", "text");
    await assert.rejects(c.client.sendToGroup("other", "no", "text"), (e) => e.errorDetail?.name === "Forbidden");
    await member.waitGroupMessages(1);
    assert.deepEqual(
      member.groupMessages.map((m) => [m.group, m.data]),
      [["allowed", "yes"]],
    );

    await service.revokePermission(id, "sendToGroup", { targetName: "allowed" });
    assert.equal(await service.hasPermission(id, "sendToGroup", { targetName: "allowed" }), false);
    await assert.rejects(c.client.sendToGroup("allowed", "no", "text"), (e) => e.errorDetail?.name === "Forbidden");

    assert.equal(await service.hasPermission(id, "joinLeaveGroup"), false);
    await service.grantPermission(id, "joinLeaveGroup");
    assert.equal(await service.hasPermission(id, "joinLeaveGroup"), true);
    assert.equal(await service.hasPermission(id, "joinLeaveGroup", { targetName: "anything" }), true);
    await c.client.joinGroup("anything");
    assert.deepEqual(await groupProbe(service, "anything", [c]), [true]);
    await service.revokePermission(id, "joinLeaveGroup");
    assert.equal(await service.hasPermission(id, "joinLeaveGroup"), false);
    await assert.rejects(c.client.leaveGroup("anything"), (e) => e.errorDetail?.name === "Forbidden");
  });

  it("addConnectionsToGroups / removeConnectionsFromGroups act on the connections the filter selects", async () => {
    const service = hub.service(uniqueHub());
    const a = await connect(service, { userId: "alpha" });
    const b = await connect(service, { userId: "beta" });
    const g = await connect(service, { userId: "gamma", groups: ["vip"] });

    await service.addConnectionsToGroups(["x", "y"], "userId eq 'alpha' or 'vip' in groups");
    assert.deepEqual(await groupProbe(service, "x", [a, b, g]), [true, false, true]);
    assert.deepEqual(await groupProbe(service, "y", [a, b, g]), [true, false, true]);

    await service.removeConnectionsFromGroups(["x"], "userId ne 'gamma'");
    assert.deepEqual(await groupProbe(service, "x", [a, b, g]), [false, false, true]);
    assert.deepEqual(await groupProbe(service, "y", [a, b, g]), [true, false, true]);
  });

  it("group.listConnections pages through every member", async () => {
    const service = hub.service(uniqueHub());
    const members = [];
    for (let i = 0; i < 5; i++) {
      members.push(await connect(service, i < 3 ? { userId: `lm${i}`, groups: ["listed"] } : { groups: ["listed"] }));
    }
    await connect(service, { userId: "not-listed" });

    const iterator = await service.group("listed").listConnections({ maxPageSize: 2 });
    const pages = [];
    for await (const page of iterator.byPage()) pages.push(page);
    assert.ok(pages.length >= 3, `5 members in pages of 2 need 3 pages, got ${pages.length}`);
    assert.ok(pages.every((p) => p.length <= 2), `page sizes ${pages.map((p) => p.length)}`);
    const listed = pages.flat();
    assert.deepEqual(
      listed.map((m) => m.connectionId).sort(),
      members.map((m) => m.connectionId).sort(),
    );
    for (const m of members) {
      const entry = listed.find((e) => e.connectionId === m.connectionId);
      assert.equal(entry.userId ?? undefined, m.connected[0].userId || undefined);
    }

    const all = [];
    for await (const m of await service.group("listed").listConnections()) all.push(m);
    assert.equal(all.length, 5);
    const top = [];
    for await (const m of await service.group("listed").listConnections({ top: 3 })) top.push(m);
    assert.equal(top.length, 3, "top limits the total");
    const none = [];
    for await (const m of await service.group("nobody-here").listConnections()) none.push(m);
    assert.deepEqual(none, []);
  });

  it("a token from the :generateToken route connects with its user, roles and groups", async () => {
    const name = uniqueHub();
    const service = hub.service(name);
    // The SDK calls this route itself when it holds an Entra credential; call it directly here.
    const { token } = await service.client.webPubSub.generateClientToken(name, {
      userId: "minted",
      roles: ["webpubsub.sendToGroup.minted-room"],
      groups: ["minted-room"],
      expirationTimeInMinutes: 5,
    });
    assert.equal(typeof token, "string");
    const { baseUrl } = await service.getClientAccessToken();
    const c = newClient(`${baseUrl}?access_token=${token}`, { protocol: WebPubSubJsonProtocol(), ...NO_RETRY });
    clients.push(c);
    await withDeadline(c.client.start(), 10_000, "start() with a generated token");
    const connected = await c.waitConnected(1);
    assert.equal(connected.userId, "minted");
    await c.client.sendToGroup("minted-room", "from minted", "text");
    await c.waitGroupMessages(1, { group: "minted-room" });
    await assert.rejects(c.client.sendToGroup("elsewhere", "no", "text"), (e) => e.errorDetail?.name === "Forbidden");
  });

  it("rejects REST calls signed with another key", async () => {
    const name = uniqueHub();
    const wrong = hub.service(name, `Endpoint=http://127.0.0.1:${hub.port};AccessKey=wrong-key;Version=1.0;`);
    await assert.rejects(wrong.sendToAll("x", { contentType: "text/plain" }), (e) => e.statusCode === 401);
    await assert.rejects(wrong.connectionExists("x"), (e) => e.statusCode === 401);
  });
  it("accepts tokens signed with either of two access keys", async () => {
    const primary = "rotation-primary-key";
    const secondary = "rotation-secondary-key";
    const own = await startHub({ accessKey: primary, args: ["--access-key", secondary] });
    try {
      const name = uniqueHub();
      const viaPrimary = own.service(name);
      const viaSecondary = own.service(name, `Endpoint=http://127.0.0.1:${own.port};AccessKey=${secondary};Version=1.0;`);
      const viaOther = own.service(name, `Endpoint=http://127.0.0.1:${own.port};AccessKey=retired-key;Version=1.0;`);
      // Stopped before their hub: the SDK's stop() cannot end a reconnect loop already running.
      const a = await connect(viaPrimary, { userId: "a" }, { autoReconnect: false });
      const b = await connect(viaSecondary, { userId: "b" }, { autoReconnect: false });
      await viaSecondary.sendToUser("a", "from secondary", { contentType: "text/plain" });
      await viaPrimary.sendToUser("b", "from primary", { contentType: "text/plain" });
      await a.waitServerMessages(1);
      await b.waitServerMessages(1);
      assert.equal(a.serverMessages[0].data, "from secondary");
      assert.equal(b.serverMessages[0].data, "from primary");
      await assert.rejects(viaOther.userExists("a"), (e) => e.statusCode === 401);
      const { url } = await viaOther.getClientAccessToken({});
      await assert.rejects(openRawSocket(url, "json.webpubsub.azure.v1"), /HTTP 401/);
      a.stop();
      b.stop();
    } finally {
      await own.stop();
    }
  });
});
