// The official @azure/web-pubsub-client against a real nerve process, in both JSON protocols:
// connect, groups, send/receive with every dataType, noEcho, role checks, duplicate acks,
// group claims in the token, and events with no upstream handler.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const {
  WebPubSubJsonProtocol,
  WebPubSubJsonReliableProtocol,
  SendMessageError,
  InvocationError,
} = require("@azure/web-pubsub-client");
const { connectClient, newClient, startHub, uniqueHub, withDeadline } = require("../helpers");

const FULL_ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
// Failed acks are retried by the SDK; keep the retries short where the retry itself is not tested.
const QUICK_RETRY = { messageRetryOptions: { maxRetries: 1, retryDelayInMs: 100 } };

let hub;
const clients = [];

before(async () => {
  hub = await startHub();
});

after(async () => {
  for (const c of clients) c.stop();
  if (hub) await hub.stop();
});

/** Connects a client and remembers it for cleanup. */
async function connect(service, tokenOptions, clientOptions) {
  const c = await connectClient(service, tokenOptions, clientOptions);
  clients.push(c);
  return c;
}

const PROTOCOLS = [
  { name: "json.reliable.webpubsub.azure.v1", make: WebPubSubJsonReliableProtocol, reliable: true },
  { name: "json.webpubsub.azure.v1", make: WebPubSubJsonProtocol, reliable: false },
];

for (const proto of PROTOCOLS) {
  describe(`official client, ${proto.name}`, { timeout: 60_000 }, () => {
    const opts = (extra = {}) => ({ protocol: proto.make(), ...QUICK_RETRY, ...extra });

    it("connects with a token from getClientAccessToken and reports connectionId and userId", async () => {
      const service = hub.service(uniqueHub());
      const alice = await connect(service, { userId: "alice", roles: FULL_ROLES }, opts());
      assert.equal(alice.connected.length, 1);
      const { connectionId, userId } = alice.connected[0];
      assert.equal(typeof connectionId, "string");
      assert.ok(connectionId.length > 0, "connectionId is not empty");
      assert.equal(userId, "alice");

      const anon = await connect(service, { roles: FULL_ROLES }, opts());
      assert.notEqual(anon.connectionId, connectionId, "each connection gets its own id");
      assert.ok(!anon.connected[0].userId, `no userId without sub, got ${anon.connected[0].userId}`);
    });

    it("delivers sendToGroup to another member with the right dataType for json, text and binary", async () => {
      const service = hub.service(uniqueHub());
      const sender = await connect(service, { userId: "sender", roles: FULL_ROLES }, opts());
      const receiver = await connect(service, { userId: "receiver", roles: FULL_ROLES }, opts());
      await receiver.client.joinGroup("room");

      const json = { text: "hello", n: 42, nested: { ok: true, list: [1, "two", null] } };
      const bytes = Uint8Array.from([0, 1, 2, 253, 254, 255]);
      const r1 = await sender.client.sendToGroup("room", json, "json");
      const r2 = await sender.client.sendToGroup("room", "plain text ü", "text");
      const r3 = await sender.client.sendToGroup("room", bytes.buffer, "binary");
      for (const r of [r1, r2, r3]) assert.equal(r.isDuplicated, false);

      const got = await receiver.waitGroupMessages(3, { group: "room" });
      assert.equal(got.length, 3);
      assert.deepEqual(
        got.map((m) => [m.group, m.fromUserId, m.dataType]),
        [
          ["room", "sender", "json"],
          ["room", "sender", "text"],
          ["room", "sender", "binary"],
        ],
      );
      assert.deepEqual(got[0].data, json);
      assert.equal(got[1].data, "plain text ü");
      assert.ok(got[2].data instanceof ArrayBuffer, "binary arrives as an ArrayBuffer");
      assert.deepEqual(new Uint8Array(got[2].data), bytes);
      if (proto.reliable) {
        assert.deepEqual(
          got.map((m) => m.sequenceId),
          [1, 2, 3],
          "reliable messages carry sequenceId 1, 2, 3 on a fresh connection",
        );
      } else {
        assert.ok(got.every((m) => m.sequenceId === undefined), "no sequenceId on the plain protocol");
      }
      // The sender is not a member of the group, so it receives nothing.
      assert.equal(sender.groupMessages.length, 0);
    });

    it("respects noEcho: the sender does not get its own message, other members do", async () => {
      const service = hub.service(uniqueHub());
      const a = await connect(service, { userId: "a", roles: FULL_ROLES }, opts());
      const b = await connect(service, { userId: "b", roles: FULL_ROLES }, opts());
      await a.client.joinGroup("g");
      await b.client.joinGroup("g");

      await a.client.sendToGroup("g", "quiet", "text", { noEcho: true });
      await a.client.sendToGroup("g", "loud", "text", { noEcho: false });

      await b.waitGroupMessages(2, { group: "g" });
      // Messages from one sender keep their order, so once "loud" has arrived at `a`, an echo of
      // "quiet" would already have arrived too.
      await a.waitGroupMessages(1, { group: "g" });
      assert.deepEqual(
        b.messagesIn("g").map((m) => m.data),
        ["quiet", "loud"],
      );
      assert.deepEqual(
        a.messagesIn("g").map((m) => m.data),
        ["loud"],
      );
    });

    it("stops delivering a group's messages after leaveGroup", async () => {
      const service = hub.service(uniqueHub());
      const sender = await connect(service, { roles: FULL_ROLES }, opts());
      const member = await connect(service, { roles: FULL_ROLES }, opts());
      await member.client.joinGroup("left");
      await member.client.joinGroup("stayed");
      await sender.client.sendToGroup("left", "before", "text");
      await member.waitGroupMessages(1, { group: "left" });

      await member.client.leaveGroup("left");
      await sender.client.sendToGroup("left", "after", "text");
      await sender.client.sendToGroup("stayed", "marker", "text");
      await member.waitGroupMessages(1, { group: "stayed" });
      assert.deepEqual(
        member.messagesIn("left").map((m) => m.data),
        ["before"],
      );
    });

    it("joins the groups named in the token's groups claim without joinGroup", async () => {
      const service = hub.service(uniqueHub());
      const claimed = await connect(service, { userId: "claimed", groups: ["auto1", "auto2"] }, opts());
      const sender = await connect(service, { roles: FULL_ROLES }, opts());
      await sender.client.sendToGroup("auto1", { n: 1 }, "json");
      await sender.client.sendToGroup("auto2", { n: 2 }, "json");
      const got = await claimed.waitGroupMessages(2);
      assert.deepEqual(
        got.map((m) => [m.group, m.data]),
        [
          ["auto1", { n: 1 }],
          ["auto2", { n: 2 }],
        ],
      );
    });

    it("treats a repeated ackId as Duplicate: the SDK resolves it and the message is sent once", async () => {
      const service = hub.service(uniqueHub());
      const sender = await connect(service, { roles: FULL_ROLES }, opts());
      const receiver = await connect(service, { roles: FULL_ROLES }, opts());
      await receiver.client.joinGroup("dup");

      const first = await sender.client.sendToGroup("dup", "once", "text", { ackId: 9001 });
      assert.deepEqual(first, { ackId: 9001, isDuplicated: false });
      const second = await sender.client.sendToGroup("dup", "once", "text", { ackId: 9001 });
      assert.deepEqual(second, { ackId: 9001, isDuplicated: true });
      const join = await sender.client.joinGroup("dup", { ackId: 9001 });
      assert.equal(join.isDuplicated, true, "the ackId stays used whatever the request type");

      await sender.client.sendToGroup("dup", "marker", "text");
      await receiver.waitGroupMessages(2, { group: "dup" });
      assert.deepEqual(
        receiver.messagesIn("dup").map((m) => m.data),
        ["once", "marker"],
      );
      // The duplicate joinGroup must not have run: the sender is still not a member.
      assert.equal(sender.groupMessages.length, 0);
    });

    it("rejects sendEvent with an error when no upstream handler is configured", async () => {
      const service = hub.service(uniqueHub());
      const c = await connect(service, { userId: "ev" }, opts());
      const err = await withDeadline(
        c.client.sendEvent("hello", { x: 1 }, "json").then(
          () => null,
          (e) => e,
        ),
        10_000,
        "sendEvent settles (a silently dropped event would never be acked)",
      );
      assert.ok(err instanceof SendMessageError, `expected SendMessageError, got ${err}`);
      assert.ok(err.errorDetail, "the ack carries an error");
      assert.equal(typeof err.errorDetail.name, "string");
      assert.notEqual(err.errorDetail.name, "Duplicate");
      assert.ok(err.errorDetail.message, "the error says why");
      // The connection stays usable.
      const other = await connect(service, { roles: FULL_ROLES }, opts());
      await other.client.joinGroup("after-event");
      assert.equal(c.disconnected.length, 0);
    });

    it("fails invokeEvent with an error when no upstream handler is configured", async () => {
      const c = await connect(hub.service(uniqueHub()), {}, opts());
      const err = await withDeadline(
        c.client.invokeEvent("ask", { q: 1 }, "json").then(
          () => null,
          (e) => e,
        ),
        10_000,
        "invokeEvent settles (the client would otherwise wait for an invokeResponse forever)",
      );
      assert.ok(err instanceof InvocationError, `expected InvocationError, got ${err}`);
      assert.equal(typeof err.errorDetail?.name, "string");
      assert.ok(err.errorDetail.message, "the error says why");
      assert.equal(c.disconnected.length, 0);
    });

    it("answers Forbidden to a token without roles, after the SDK's retries, and delivers nothing", async () => {
      const service = hub.service(uniqueHub());
      const member = await connect(service, { roles: FULL_ROLES }, opts());
      await member.client.joinGroup("guarded");
      // Default retry options: the SDK retries a failed ack 3 times, 1 s apart, then throws.
      const plain = await connect(service, { userId: "nobody" }, { protocol: proto.make() });

      const started = Date.now();
      const joinErr = await plain.client.joinGroup("guarded").then(
        () => null,
        (e) => e,
      );
      assert.ok(joinErr instanceof SendMessageError, `joinGroup must fail, got ${joinErr}`);
      assert.equal(joinErr.errorDetail?.name, "Forbidden");
      assert.ok(Date.now() - started >= 2500, "the SDK retried before giving up");

      const sendErr = await plain.client.sendToGroup("guarded", "sneaky", "text").then(
        () => null,
        (e) => e,
      );
      assert.ok(sendErr instanceof SendMessageError, `sendToGroup must fail, got ${sendErr}`);
      assert.equal(sendErr.errorDetail?.name, "Forbidden");

      await member.client.sendToGroup("guarded", "marker", "text");
      await member.waitGroupMessages(1, { group: "guarded" });
      assert.deepEqual(
        member.messagesIn("guarded").map((m) => m.data),
        ["marker"],
      );
      assert.equal(plain.groupMessages.length, 0);
    });

    it("enforces group-scoped roles", async () => {
      const service = hub.service(uniqueHub());
      const scoped = await connect(
        service,
        { roles: ["webpubsub.joinLeaveGroup.mine", "webpubsub.sendToGroup.mine"] },
        opts({ messageRetryOptions: { maxRetries: 0 } }),
      );
      const watcher = await connect(service, { roles: FULL_ROLES }, opts());
      await watcher.client.joinGroup("theirs");

      await scoped.client.joinGroup("mine");
      await assert.rejects(scoped.client.joinGroup("theirs"), (e) => e.errorDetail?.name === "Forbidden");
      await assert.rejects(
        scoped.client.sendToGroup("theirs", "nope", "text"),
        (e) => e.errorDetail?.name === "Forbidden",
      );
      await scoped.client.sendToGroup("mine", "mine-1", "text");
      const got = await scoped.waitGroupMessages(1, { group: "mine" });
      assert.deepEqual(
        got.map((m) => m.data),
        ["mine-1"],
      );
      await watcher.client.sendToGroup("theirs", "marker", "text");
      await watcher.waitGroupMessages(1, { group: "theirs" });
      assert.deepEqual(
        watcher.messagesIn("theirs").map((m) => m.data),
        ["marker"],
      );
    });

    it("enforces wildcard group roles minted by getClientAccessToken", async () => {
      const service = hub.service(uniqueHub());
      const scoped = await connect(
        service,
        { roles: ["webpubsub.joinLeaveGroups.clientA.*", "webpubsub.sendToGroups.clientA.**"] },
        opts({ messageRetryOptions: { maxRetries: 0 } }),
      );
      await scoped.client.joinGroup("clientA.alpha");
      await assert.rejects(scoped.client.joinGroup("clientA.alpha.room1"), (e) => e.errorDetail?.name === "Forbidden");
      await assert.rejects(scoped.client.joinGroup("clientB.alpha"), (e) => e.errorDetail?.name === "Forbidden");
      await assert.rejects(
        scoped.client.sendToGroup("clientB.alpha", "nope", "text"),
        (e) => e.errorDetail?.name === "Forbidden",
      );
      await scoped.client.sendToGroup("clientA.alpha", "a-1", "text");
      await scoped.client.sendToGroup("clientA.alpha.room1", "a-room", "text");
      const got = await scoped.waitGroupMessages(1, { group: "clientA.alpha" });
      assert.deepEqual(
        got.map((m) => m.data),
        ["a-1"],
      );
    });
  });
}

describe("official client, handshake failures", { timeout: 30_000 }, () => {
  it("start() throws for a token signed with another key, and for an expired token", async () => {
    const name = uniqueHub();
    const wrongKey = hub.service(
      name,
      `Endpoint=http://127.0.0.1:${hub.port};AccessKey=not-the-key;Version=1.0;`,
    );
    const bad = (await wrongKey.getClientAccessToken({ roles: FULL_ROLES })).url;
    const c1 = newClient(bad, { protocol: WebPubSubJsonProtocol() });
    await assert.rejects(withDeadline(c1.client.start(), 10_000, "start() with a bad token"));
    assert.equal(c1.connected.length, 0);

    const good = hub.service(name);
    const expired = (await good.getClientAccessToken({ expirationTimeInMinutes: -30 })).url;
    const c2 = newClient(expired, { protocol: WebPubSubJsonReliableProtocol() });
    await assert.rejects(withDeadline(c2.client.start(), 10_000, "start() with an expired token"));
    assert.equal(c2.connected.length, 0);
  });
  it("connects through the /client?hub= form of the URL with the same token", async () => {
    const name = uniqueHub();
    const service = hub.service(name);
    const { token } = await service.getClientAccessToken({ userId: "query-form", groups: ["q"] });
    const c = newClient(`ws://127.0.0.1:${hub.port}/client/?hub=${name}&access_token=${token}`);
    clients.push(c);
    await withDeadline(c.client.start(), 10_000, "start() on /client?hub=");
    assert.equal((await c.waitConnected(1)).userId, "query-form");
    await service.group("q").sendToAll("via query form", { contentType: "text/plain" });
    const got = await c.waitGroupMessages(1, { group: "q" });
    assert.equal(got[0].data, "via query form");
  });
});
