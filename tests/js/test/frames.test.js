// The wire frames behind what the official client relies on, checked with a plain `ws` socket
// speaking the same subprotocols: the handshake echo, `connected`, ping/pong, one ack per ackId
// with `Duplicate` for a repeat, sequence ids, events without a handler, and unknown sessions.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { openRawSocket, startHub, uniqueHub, withDeadline } = require("../helpers");

const RELIABLE = "json.reliable.webpubsub.azure.v1";
const PLAIN = "json.webpubsub.azure.v1";
const FULL_ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

let hub;
const sockets = [];

before(async () => {
  hub = await startHub();
});

after(async () => {
  for (const s of sockets) s.close();
  if (hub) await hub.stop();
});

async function open(service, tokenOptions, subprotocol) {
  const { url } = await service.getClientAccessToken(tokenOptions);
  const s = await openRawSocket(url, subprotocol);
  sockets.push(s);
  return s;
}

describe("raw frames", { timeout: 30_000 }, () => {
  for (const sub of [RELIABLE, PLAIN]) {
    it(`echoes ${sub} and sends connected first`, async () => {
      const service = hub.service(uniqueHub());
      const s = await open(service, { userId: "u1", roles: FULL_ROLES }, sub);
      assert.equal(s.ws.protocol, sub, "the handshake echoes the offered subprotocol");
      const connected = await s.waitFrame((f) => f.type === "system", "connected");
      assert.equal(s.frames[0], connected, "connected is the first frame");
      assert.equal(connected.event, "connected");
      assert.equal(connected.userId, "u1");
      assert.equal(typeof connected.connectionId, "string");
      assert.ok(connected.connectionId.length > 0);
      if (sub === RELIABLE) {
        assert.equal(typeof connected.reconnectionToken, "string", "reliable connections get a reconnectionToken");
        assert.ok(connected.reconnectionToken.length > 0);
      } else {
        assert.equal(connected.reconnectionToken, undefined, "no reconnectionToken on the plain protocol");
      }
    });
  }

  it("answers ping with pong", async () => {
    const s = await open(hub.service(uniqueHub()), {}, PLAIN);
    await s.waitFrame((f) => f.event === "connected", "connected");
    s.send({ type: "ping" });
    s.send({ type: "ping" });
    const pongs = await s.waitFrames((f) => f.type === "pong", 2, "pongs");
    assert.equal(pongs.length, 2);
  });

  it("acks each ackId once and answers a repeated ackId with Duplicate without running it again", async () => {
    const service = hub.service(uniqueHub());
    const sender = await open(service, { roles: FULL_ROLES }, PLAIN);
    const receiver = await open(service, { roles: FULL_ROLES }, PLAIN);
    await receiver.waitFrame((f) => f.event === "connected", "connected");
    receiver.send({ type: "joinGroup", group: "d", ackId: 1 });
    await receiver.waitFrame((f) => f.type === "ack" && f.ackId === 1, "join ack");
    await sender.waitFrame((f) => f.event === "connected", "connected");

    sender.send({ type: "sendToGroup", group: "d", ackId: 7, dataType: "text", data: "first" });
    sender.send({ type: "sendToGroup", group: "d", ackId: 7, dataType: "text", data: "again" });
    sender.send({ type: "sendToGroup", group: "d", ackId: 8, dataType: "text", data: "marker" });
    const acks = await sender.waitFrames((f) => f.type === "ack", 3, "acks");
    const seven = acks.filter((a) => a.ackId === 7);
    assert.equal(seven.length, 2, `two acks for ackId 7: ${JSON.stringify(acks)}`);
    assert.equal(seven[0].success, true);
    assert.equal(seven[1].success, false);
    assert.equal(seven[1].error?.name, "Duplicate");
    assert.deepEqual(
      acks.filter((a) => a.ackId === 8).map((a) => a.success),
      [true],
    );

    const got = await receiver.waitFrames((f) => f.type === "message", 2, "group messages");
    assert.deepEqual(
      got.map((m) => [m.from, m.group, m.dataType, m.data]),
      [
        ["group", "d", "text", "first"],
        ["group", "d", "text", "marker"],
      ],
    );
  });

  it("numbers reliable messages from 1 and accepts sequenceAck", async () => {
    const service = hub.service(uniqueHub());
    const receiver = await open(service, { groups: ["seq"] }, RELIABLE);
    const sender = await open(service, { roles: FULL_ROLES }, PLAIN);
    await receiver.waitFrame((f) => f.event === "connected", "connected");
    await sender.waitFrame((f) => f.event === "connected", "connected");
    for (let i = 0; i < 5; i++) sender.send({ type: "sendToGroup", group: "seq", dataType: "json", data: { i } });
    const got = await receiver.waitFrames((f) => f.type === "message", 5, "messages");
    assert.deepEqual(
      got.map((m) => [m.sequenceId, m.data.i]),
      [
        [1, 0],
        [2, 1],
        [3, 2],
        [4, 3],
        [5, 4],
      ],
    );
    receiver.send({ type: "sequenceAck", sequenceId: 5 });
    receiver.send({ type: "ping" });
    await receiver.waitFrame((f) => f.type === "pong", "pong after sequenceAck");
    assert.equal(receiver.closed, undefined, "the connection stays open");
  });

  it("answers an event with an ackId and no upstream handler with a failed ack", async () => {
    const s = await open(hub.service(uniqueHub()), {}, PLAIN);
    await s.waitFrame((f) => f.event === "connected", "connected");
    s.send({ type: "event", event: "hello", ackId: 3, dataType: "text", data: "hi" });
    const ack = await s.waitFrame((f) => f.type === "ack" && f.ackId === 3, "ack for the event");
    assert.equal(ack.success, false);
    assert.equal(typeof ack.error?.name, "string");
    assert.ok(ack.error.message, "the error says why");
  });

  it("refuses to recover an unknown session: accepts the upgrade, sends disconnected, closes 1008", async () => {
    const service = hub.service(uniqueHub());
    const { url } = await service.getClientAccessToken({});
    const s = await openRawSocket(`${url}&awps_connection_id=no-such-conn&awps_reconnection_token=bogus`, RELIABLE);
    sockets.push(s);
    const closed = await withDeadline(s.closedPromise, 10_000, "close after an unknown session");
    assert.equal(closed.code, 1008);
    const disconnected = s.frames.find((f) => f.type === "system" && f.event === "disconnected");
    assert.ok(disconnected, `a disconnected frame precedes the close: ${JSON.stringify(s.frames)}`);
    assert.ok(!s.frames.some((f) => f.event === "connected"), "no connected for an unknown session");
  });

  it("rejects the handshake with 401 without a token or with a token for another key", async () => {
    const name = uniqueHub();
    await assert.rejects(openRawSocket(`ws://127.0.0.1:${hub.port}/client/hubs/${name}`, PLAIN), /HTTP 401/);
    const other = hub.service(name, `Endpoint=http://127.0.0.1:${hub.port};AccessKey=wrong;Version=1.0;`);
    const { url } = await other.getClientAccessToken({});
    await assert.rejects(openRawSocket(url, PLAIN), /HTTP 401/);
  });
  it("resumes a reliable session from awps_* parameters alone and resends what was not acked", async () => {
    const service = hub.service(uniqueHub());
    const first = await open(service, { userId: "resumer", groups: ["r"] }, RELIABLE);
    const connected = await first.waitFrame((f) => f.event === "connected", "connected");
    const sender = await open(service, { roles: FULL_ROLES }, PLAIN);
    await sender.waitFrame((f) => f.event === "connected", "connected");
    for (let i = 1; i <= 3; i++) sender.send({ type: "sendToGroup", group: "r", dataType: "json", data: { i } });
    await first.waitFrames((f) => f.type === "message", 3, "three messages");
    first.send({ type: "sequenceAck", sequenceId: 1 });
    first.send({ type: "ping" });
    await first.waitFrame((f) => f.type === "pong", "pong");
    first.close(); // abrupt: no close handshake
    await withDeadline(first.closedPromise, 5000, "socket closed");
    sender.send({ type: "sendToGroup", group: "r", dataType: "json", data: { i: 4 } });
    sender.send({ type: "ping" });
    await sender.waitFrame((f) => f.type === "pong", "pong");

    // The form the .NET client uses: no access_token, only the two awps_* parameters.
    const params = new URLSearchParams({
      awps_connection_id: connected.connectionId,
      awps_reconnection_token: connected.reconnectionToken,
    });
    const base = (await service.getClientAccessToken()).baseUrl;
    const resumed = await openRawSocket(`${base}?${params}`, RELIABLE);
    sockets.push(resumed);
    const messages = await resumed.waitFrames((f) => f.type === "message", 3, "resent messages");
    assert.deepEqual(
      messages.map((m) => [m.sequenceId, m.data.i]),
      [
        [2, 2],
        [3, 3],
        [4, 4],
      ],
      "everything after the acked sequenceId, with the original ids, then the new message",
    );
    const again = resumed.frames.find((f) => f.event === "connected");
    if (again) assert.equal(again.connectionId, connected.connectionId, "a fresh connected keeps the connection id");
  });
});
