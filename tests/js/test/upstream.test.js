// The official @azure/web-pubsub-express handler (in a real express server) as the upstream of a
// real nerve process: connect rejection and overrides (user id, groups, roles), user event round
// trips, connection state, and the connected / disconnected notifications.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const express = require("express");
const { WebPubSubEventHandler } = require("@azure/web-pubsub-express");
const {
  WebPubSubJsonProtocol,
  WebPubSubJsonReliableProtocol,
  SendMessageError,
  InvocationError,
} = require("@azure/web-pubsub-client");
const { connectClient, newClient, openRawSocket, startHub, waitFor, withDeadline } = require("../helpers");

const HUB = "chat";
const FULL_ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

// Short, so that the tests of a hanging upstream finish quickly.
const UPSTREAM_TIMEOUT_MS = 1500;

/** Everything the upstream saw, in arrival order. */
const seen = { connect: [], connected: [], disconnected: [], events: [], joined: [], left: [] };

const handler = new WebPubSubEventHandler(HUB, {
  path: "/upstream",
  handleConnect(req, res) {
    seen.connect.push(req);
    const userId = req.context.userId;
    if (userId === "slow-connect") return; // never answers
    if (userId === "mallory") {
      res.fail(401, "mallory is not welcome");
      return;
    }
    if (userId === "renamed") {
      res.setState("visits", 0);
      res.success({ userId: "renamed-by-upstream", groups: ["from-connect"], roles: ["webpubsub.sendToGroup.from-connect"] });
      return;
    }
    res.success();
  },
  handleUserEvent(req, res) {
    seen.events.push(req);
    const event = req.context.eventName;
    if (event === "echo") {
      if (req.dataType === "binary") res.success(req.data, "binary");
      else if (req.dataType === "json") res.success(JSON.stringify({ echo: req.data }), "json");
      else res.success(`echo: ${req.data}`, "text");
    } else if (event === "visit") {
      const visits = (req.context.states.visits ?? 0) + 1;
      res.setState("visits", visits);
      res.success(JSON.stringify({ visits }), "json");
    } else if (event === "hang") {
      // never answers
    } else if (event === "silent") {
      res.success();
    } else if (event === "message") {
      // Every frame of a simple WebSocket client arrives as the `message` event.
      if (req.dataType === "binary") res.success(req.data, "binary");
      else res.success(`simple: ${req.data}`, "text");
    } else {
      res.fail(500, `no handler for ${event}`);
    }
  },
  onConnected(req) {
    seen.connected.push(req);
  },
  onDisconnected(req) {
    seen.disconnected.push(req);
  },
  onGroupJoined(req) {
    seen.joined.push(req);
  },
  onGroupLeft(req) {
    seen.left.push(req);
  },
});

/** Every HTTP request the upstream server received: method, path and headers. */
const requests = [];
let flakyFailed = false;

let hub;
let server;
let configDir;
const clients = [];

/**
 * The hub's TOML config: one hub whose every user event and system event goes to `url`
 * (a template with {hub} and {event}).
 */
function upstreamConfig(url) {
  return [
    `[upstream]`,
    `timeout_ms = ${UPSTREAM_TIMEOUT_MS}`,
    `retry_backoff_ms = 50`,
    ``,
    `[[hubs.${HUB}.event_handlers]]`,
    `url_template = "${url}"`,
    `user_event_pattern = "*"`,
    `system_events = ["connect", "connected", "disconnected", "joined", "left"]`,
    ``,
  ].join("\n");
}

before(async () => {
  const app = express();
  app.use((req, res, next) => {
    requests.push({ method: req.method, path: req.path, headers: req.headers });
    // The first `connected` notification of user "flaky" fails, to see it retried.
    if (req.method === "POST" && req.headers["ce-type"] === "azure.webpubsub.sys.connected" && req.headers["ce-userid"] === "flaky" && !flakyFailed) {
      flakyFailed = true;
      res.status(503).end();
      return;
    }
    next();
  });
  app.use(handler.getMiddleware());
  server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const url = `http://127.0.0.1:${server.address().port}/upstream/{hub}/{event}`;
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), "nerve-upstream-"));
  const config = path.join(configDir, "nerve.toml");
  fs.writeFileSync(config, upstreamConfig(url));
  hub = await startHub({ config });
});

after(async () => {
  for (const c of clients) c.stop();
  if (hub) await hub.stop();
  if (server) {
    server.closeAllConnections(); // the hanging requests
    await new Promise((resolve) => server.close(resolve));
  }
  if (configDir) fs.rmSync(configDir, { recursive: true, force: true });
});

async function connect(tokenOptions = {}, clientOptions = {}) {
  const c = await connectClient(hub.service(HUB), tokenOptions, {
    protocol: WebPubSubJsonProtocol(),
    messageRetryOptions: { maxRetries: 0 },
    ...clientOptions,
  });
  clients.push(c);
  return c;
}

describe("@azure/web-pubsub-express as the upstream", { timeout: 60_000 }, () => {
  it("rejects a connection when the connect handler fails it", async () => {
    const service = hub.service(HUB);
    const before = seen.connect.filter((r) => r.context.userId === "mallory").length;
    const { url } = await service.getClientAccessToken({ userId: "mallory" });
    const c = newClient(url, { protocol: WebPubSubJsonReliableProtocol() });
    await assert.rejects(withDeadline(c.client.start(), 10_000, "start() rejected by upstream"));
    assert.equal(c.connected.length, 0);
    await assert.rejects(openRawSocket(url, "json.webpubsub.azure.v1"), /HTTP 401/);
    const asked = seen.connect.filter((r) => r.context.userId === "mallory");
    assert.equal(asked.length - before, 2, "the upstream was asked once per attempt");
    assert.equal(asked[0].context.hub, HUB);
    assert.ok(!seen.connected.some((r) => r.context.userId === "mallory"), "no connected event for a rejected client");
  });

  it("lets the connect handler override the user id and add groups and roles", async () => {
    const c = await connect({ userId: "renamed" });
    assert.equal(c.connected[0].userId, "renamed-by-upstream");
    const req = seen.connect.find((r) => r.context.connectionId === c.connectionId);
    assert.ok(req, "the connect request carries the connection id");
    assert.equal(req.context.userId, "renamed", "connect sees the token's user");
    assert.deepEqual(req.subprotocols, ["json.webpubsub.azure.v1"]);

    const service = hub.service(HUB);
    assert.equal(await service.userExists("renamed-by-upstream"), true);
    assert.equal(await service.userExists("renamed"), false);
    // Group from the connect response, and the role to publish to it.
    await c.client.sendToGroup("from-connect", "hello from renamed", "text");
    const got = await c.waitGroupMessages(1, { group: "from-connect" });
    assert.equal(got[0].fromUserId, "renamed-by-upstream");
    await assert.rejects(c.client.sendToGroup("elsewhere", "no", "text"), (e) => e.errorDetail?.name === "Forbidden");
  });

  it("tells the upstream about connected and disconnected, with the REST close reason", async () => {
    const c = await connect({ userId: "noted" });
    const id = c.connectionId;
    const connected = await waitFor(() => seen.connected.find((r) => r.context.connectionId === id), {
      what: "connected event upstream",
    });
    assert.equal(connected.context.userId, "noted");
    assert.equal(connected.context.hub, HUB);

    await hub.service(HUB).closeConnection(id, { reason: "admin says bye" });
    const gone = await waitFor(() => seen.disconnected.find((r) => r.context.connectionId === id), {
      what: "disconnected event upstream",
    });
    assert.equal(gone.reason, "admin says bye");
    assert.equal(gone.context.userId, "noted");

    const d = await connect({ userId: "leaver" }, { autoReconnect: false });
    const did = d.connectionId;
    d.stop();
    await waitFor(() => seen.disconnected.find((r) => r.context.connectionId === did), {
      what: "disconnected event after the client closes",
    });
    assert.equal(seen.connected.filter((r) => r.context.connectionId === did).length, 1);
  });

  for (const [label, protocol] of [
    ["plain", WebPubSubJsonProtocol],
    ["reliable", WebPubSubJsonReliableProtocol],
  ]) {
    it(`round-trips user events of every dataType through the handler (${label})`, async () => {
      const c = await connect({ userId: `ev-${label}` }, { protocol: protocol() });
      const r1 = await c.client.sendEvent("echo", { a: 1 }, "json");
      const r2 = await c.client.sendEvent("echo", "hi", "text");
      const r3 = await c.client.sendEvent("echo", Uint8Array.from([9, 8, 7]).buffer, "binary");
      await c.client.sendEvent("silent", "nothing back", "text");
      for (const r of [r1, r2, r3]) assert.equal(r.isDuplicated, false);

      const got = await c.waitServerMessages(3);
      assert.deepEqual(
        got.map((m) => m.dataType),
        ["json", "text", "binary"],
      );
      assert.deepEqual(got[0].data, { echo: { a: 1 } });
      assert.equal(got[1].data, "echo: hi");
      assert.deepEqual(new Uint8Array(got[2].data), Uint8Array.from([9, 8, 7]));

      const mine = seen.events.filter((r) => r.context.connectionId === c.connectionId);
      assert.deepEqual(
        mine.map((r) => [r.context.eventName, r.dataType]),
        [
          ["echo", "json"],
          ["echo", "text"],
          ["echo", "binary"],
          ["silent", "text"],
        ],
      );
      assert.equal(mine[0].context.userId, `ev-${label}`);
      // "silent" answered 204: nothing more arrives. A later reply proves ordering.
      await c.client.sendEvent("echo", "last", "text");
      await c.waitServerMessages(4);
      assert.deepEqual(
        c.serverMessages.slice(3).map((m) => m.data),
        ["echo: last"],
      );
    });
  }

  it("keeps connection state set by the upstream across events", async () => {
    const c = await connect({ userId: "renamed" });
    await c.client.sendEvent("visit", null, "json");
    await c.client.sendEvent("visit", null, "json");
    const got = await c.waitServerMessages(2);
    assert.deepEqual(
      got.map((m) => m.data),
      [{ visits: 1 }, { visits: 2 }],
    );
  });

  it("drops the connection when the handler answers an event with an error", async () => {
    const c = await connect({ userId: "failing" }, { autoReconnect: false });
    const err = await c.client.sendEvent("unknown-event", "x", "text").then(
      () => null,
      (e) => e,
    );
    assert.ok(err instanceof SendMessageError, `sendEvent fails, got ${err}`);
    await c.waitDisconnected(1);
    const id = c.connected[0].connectionId;
    await waitFor(async () => !(await hub.service(HUB).connectionExists(id)), { what: "connection removed" });
  });

  it("sends group joined / left notifications", async () => {
    const c = await connect({ userId: "joiner", roles: FULL_ROLES });
    await c.client.joinGroup("watched");
    await c.client.leaveGroup("watched");
    const joined = await waitFor(() => seen.joined.find((r) => r.context.connectionId === c.connectionId), {
      what: "group joined event",
    });
    assert.equal(joined.group, "watched");
    const left = await waitFor(() => seen.left.find((r) => r.context.connectionId === c.connectionId), {
      what: "group left event",
    });
    assert.equal(left.group, "watched");
  });
  it("validates the handler with OPTIONS and sends CloudEvents headers with a verifiable signature", async () => {
    const c = await connect({ userId: "headers" });
    await c.client.sendEvent("visit", null, "json");
    await c.waitServerMessages(1);
    const id = c.connectionId;

    const firstPost = requests.findIndex((r) => r.method === "POST");
    const options = requests.findIndex((r) => r.method === "OPTIONS");
    assert.ok(options >= 0 && options < firstPost, "an OPTIONS validation comes before the first event");
    const validate = requests[options];
    assert.equal(validate.path, `/upstream/${HUB}/validate`);
    assert.ok(validate.headers["webhook-request-origin"], "OPTIONS carries WebHook-Request-Origin");
    assert.equal(validate.headers["ce-awpsversion"], "1.0");

    // `connected` is a background notification: it may arrive after the user event.
    const posts = () => requests.filter((r) => r.method === "POST" && r.headers["ce-connectionid"] === id);
    await waitFor(() => posts().length >= 3, { what: "connect, connected and visit posts" });
    const byType = (t) => posts().find((r) => r.headers["ce-type"] === t);
    const mine = ["azure.webpubsub.sys.connect", "azure.webpubsub.sys.connected", "azure.webpubsub.user.visit"].map(byType);
    assert.deepEqual(
      mine.map((r) => [r?.path, r?.headers["ce-type"]]),
      [
        [`/upstream/${HUB}/connect`, "azure.webpubsub.sys.connect"],
        [`/upstream/${HUB}/connected`, "azure.webpubsub.sys.connected"],
        [`/upstream/${HUB}/visit`, "azure.webpubsub.user.visit"],
      ],
    );
    const expected = crypto.createHmac("sha256", hub.accessKey).update(id).digest("hex");
    for (const r of mine) {
      const h = r.headers;
      assert.equal(h["ce-awpsversion"], "1.0");
      assert.equal(h["ce-specversion"], "1.0");
      assert.ok(h["ce-id"], "ce-id");
      assert.ok(!Number.isNaN(Date.parse(h["ce-time"])), `ce-time ${h["ce-time"]}`);
      assert.equal(h["ce-hub"], HUB);
      assert.equal(h["ce-userid"], "headers");
      assert.equal(h["ce-source"], `/hubs/${HUB}/client/${id}`);
      assert.ok(h["webhook-request-origin"], "WebHook-Request-Origin");
      const sigs = h["ce-signature"].split(",").map((v) => v.trim().toLowerCase());
      assert.ok(sigs.includes(`sha256=${expected}`), `ce-signature ${h["ce-signature"]} has HMAC(key, connectionId)`);
    }
    assert.equal(mine[2].headers["ce-eventname"], "visit");
    assert.equal(mine[2].headers["ce-subprotocol"], "json.webpubsub.azure.v1");
  });

  it("relays a simple WebSocket client's frames as the message event and sends the reply back raw", async () => {
    const { url } = await hub.service(HUB).getClientAccessToken({ userId: "simple" });
    const s = await openRawSocket(url);
    s.ws.send("hello");
    s.ws.send(Buffer.from([1, 2, 3]));
    await waitFor(() => s.raw.length >= 2, { what: "two replies" });
    assert.equal(s.raw[0].isBinary, false);
    assert.equal(s.raw[0].data.toString(), "simple: hello");
    assert.equal(s.raw[1].isBinary, true);
    assert.deepEqual([...s.raw[1].data], [1, 2, 3]);
    const events = seen.events.filter((r) => r.context.userId === "simple");
    assert.deepEqual(
      events.map((r) => [r.context.eventName, r.dataType]),
      [
        ["message", "text"],
        ["message", "binary"],
      ],
    );
    // A REST send reaches a simple client as a raw frame too.
    const id = events[0].context.connectionId;
    await hub.service(HUB).sendToConnection(id, { raw: true });
    await waitFor(() => s.raw.length >= 3, { what: "the REST send" });
    assert.equal(s.raw[2].data.toString(), '{"raw":true}');
    s.close();
  });

  it("answers invokeEvent with the handler's reply, and fails only the call when the handler fails", async () => {
    const c = await connect({ userId: "invoker" }, { protocol: WebPubSubJsonReliableProtocol() });
    const result = await withDeadline(c.client.invokeEvent("echo", { q: 1 }, "json"), 10_000, "invokeEvent");
    assert.equal(result.dataType, "json");
    assert.deepEqual(result.data, { echo: { q: 1 } });
    const err = await withDeadline(
      c.client.invokeEvent("unknown-event", "x", "text").then(
        () => null,
        (e) => e,
      ),
      10_000,
      "invokeEvent against a failing handler",
    );
    assert.ok(err instanceof InvocationError, `expected InvocationError, got ${err}`);
    const again = await c.client.invokeEvent("echo", "still here", "text");
    assert.equal(again.data, "echo: still here");
    assert.equal(c.disconnected.length, 0, "a failed invoke does not drop the connection");
  });
  it("times out a user event the upstream never answers: the call fails and the connection drops", async () => {
    const c = await connect({ userId: "patient" }, { autoReconnect: false });
    const started = Date.now();
    const err = await withDeadline(
      c.client.sendEvent("hang", "anyone?", "text").then(
        () => null,
        (e) => e,
      ),
      UPSTREAM_TIMEOUT_MS + 8000,
      "sendEvent to a hanging upstream settles",
    );
    assert.ok(err instanceof Error, `sendEvent fails, got ${err}`);
    assert.ok(Date.now() - started >= UPSTREAM_TIMEOUT_MS - 100, "not before the configured timeout");
    const d = await c.waitDisconnected(1, UPSTREAM_TIMEOUT_MS + 8000);
    assert.ok(d.message?.message, "the client is told why");
  });

  it("fails the handshake with 500 when connect is never answered", async () => {
    const { url } = await hub.service(HUB).getClientAccessToken({ userId: "slow-connect" });
    const started = Date.now();
    await assert.rejects(openRawSocket(url, "json.webpubsub.azure.v1"), /HTTP 500/);
    assert.ok(Date.now() - started >= UPSTREAM_TIMEOUT_MS - 100, "after the configured timeout");
  });

  it("retries a connected notification the upstream failed", async () => {
    const c = await connect({ userId: "flaky" });
    const got = await waitFor(() => seen.connected.find((r) => r.context.connectionId === c.connectionId), {
      what: "connected event after a retry",
    });
    assert.equal(got.context.userId, "flaky");
    const attempts = requests.filter(
      (r) => r.headers["ce-type"] === "azure.webpubsub.sys.connected" && r.headers["ce-connectionid"] === c.connectionId,
    );
    assert.equal(attempts.length, 2, "one failed attempt, one retry");
  });
});
