// Three nerve nodes on one real Redis act as one hub for the official SDKs: official clients
// spread over the nodes, messages sent through any node (client frames and the server SDK)
// reach every recipient on every node exactly once, and existence checks see every node.
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { connectClient, connectionStringVia, uniqueHub, waitFor } = require("../helpers");
const { startCluster, startRedis, startSwitchProxy } = require("../cluster-helpers");

let redis;
let cluster;

before(async () => {
  redis = await startRedis();
  cluster = await startCluster(3, redis.url);
});

after(async () => {
  await cluster?.stop();
  redis?.stop();
});

test("every send path reaches every node exactly once", async () => {
  const hub = uniqueHub("cluster");
  const services = cluster.nodes.map((n) => n.service(hub));
  const roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
  const clients = [];
  try {
    // Two clients per node: users u0..u5, client i on node floor(i / 2).
    for (let i = 0; i < 6; i++) {
      const c = await connectClient(services[Math.floor(i / 2)], { userId: `u${i}`, roles });
      await c.client.joinGroup("g");
      clients.push(c);
    }
    const expected = [0, 0, 0, 0, 0, 0];
    const settle = async (what) => {
      for (const [i, c] of clients.entries()) {
        const total = () => c.groupMessages.length + c.serverMessages.length;
        await waitFor(() => total() >= expected[i], {
          what: () => `${what}: client ${i} has ${total()} of ${expected[i]}`,
        });
      }
      assert.deepEqual(
        clients.map((c) => c.groupMessages.length + c.serverMessages.length),
        expected,
        what,
      );
    };

    await clients[0].client.sendToGroup("g", "frame", "text");
    expected.fill(1);
    await settle("client frame to a group");

    await clients[5].client.sendToGroup("g", "no-echo", "text", { noEcho: true });
    for (let i = 0; i < 5; i++) expected[i]++;
    await settle("noEcho");

    await services[1].group("g").sendToAll("sdk-group", { contentType: "text/plain" });
    expected.forEach((_, i) => expected[i]++);
    await settle("server SDK to a group");

    await services[2].sendToAll("all", { contentType: "text/plain", filter: "userId ne 'u0'" });
    for (let i = 1; i < 6; i++) expected[i]++;
    await settle("server SDK to all with a filter");

    await services[0].sendToUser("u4", "user", { contentType: "text/plain" });
    expected[4]++;
    await settle("server SDK to a user on another node");

    await services[2].sendToConnection(clients[1].connectionId, "conn", { contentType: "text/plain" });
    expected[1]++;
    await settle("server SDK to a connection on another node");

    // Client frames and REST group sends arrive as group messages (the REST one without a
    // sender), the other REST sends as server messages.
    assert.deepEqual(
      clients[3].groupMessages.map((m) => [m.group, m.fromUserId, m.data]),
      [
        ["g", "u0", "frame"],
        ["g", "u5", "no-echo"],
        ["g", undefined, "sdk-group"],
      ],
    );
    assert.deepEqual(
      clients[4].serverMessages.map((m) => m.data),
      ["all", "user"],
    );

    // Existence checks through a node that does not hold the connection.
    assert.equal(await services[2].connectionExists(clients[0].connectionId), true);
    assert.equal(await services[0].userExists("u5"), true);
    assert.equal(await services[1].groupExists("g"), true);
    assert.equal(await services[1].groupExists("nobody-here"), false);
  } finally {
    for (const c of clients) c.stop();
  }
});

test("an official reliable client whose node is killed resumes on another node and misses nothing", async () => {
  const hub = uniqueHub("failover");
  const [dying, survivor, publisherNode] = cluster.nodes;
  // The client reaches the cluster through a proxy, as it would through a load balancer.
  const proxy = await startSwitchProxy(dying.port);
  const viaProxy = dying.service(hub, connectionStringVia(dying, proxy.port));
  const roles = ["webpubsub.joinLeaveGroup"];
  const client = await connectClient(viaProxy, { userId: "reader", roles });
  try {
    await client.client.joinGroup("live");
    const publisher = publisherNode.service(hub);
    const total = 60;
    for (let i = 0; i < total; i++) {
      if (i === 20) {
        // The node dies mid-stream; the balancer sends the reconnect elsewhere.
        proxy.setTarget(survivor.port);
        dying.child.kill("SIGKILL");
        proxy.dropAll();
      }
      await publisher.group("live").sendToAll(`m${i}`, { contentType: "text/plain" });
    }
    await waitFor(() => client.groupMessages.length >= total, {
      timeout: 30_000,
      what: () => `${total} messages after the failover (have ${client.groupMessages.length})`,
    });
    const expected = Array.from({ length: total }, (_, i) => `m${i}`);
    assert.deepEqual(client.groupMessages.map((m) => m.data), expected);
    assert.equal(client.stopped, 0, "the client never gave up");
  } finally {
    client.stop();
    proxy.close();
  }
});

test("an official reliable client that closes its socket resumes on another node and misses nothing", async () => {
  const hub = uniqueHub("closer");
  // The nodes still running (the test above kills one); the last one publishes.
  const live = cluster.nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
  const [first, second] = live;
  const publisherNode = live.at(-1);
  // Through a proxy, as through a load balancer that sends each reconnection elsewhere.
  const proxy = await startSwitchProxy(first.port);
  const viaProxy = first.service(hub, connectionStringVia(first, proxy.port));
  const client = await connectClient(viaProxy, { userId: "closer", roles: ["webpubsub.joinLeaveGroup"] });
  try {
    await client.client.joinGroup("live");
    const connectionId = client.connectionId;
    const publisher = publisherNode.service(hub);
    // No code (the SDK's own close), then 1000, 1001 and application codes.
    const closes = new Map([
      [10, undefined],
      [25, 1000],
      [40, 1001],
      [55, 3001],
      [70, 4000],
    ]);
    const total = 85;
    let target = 0;
    for (let i = 0; i < total; i++) {
      if (closes.has(i)) {
        target = 1 - target;
        proxy.setTarget([first, second][target].port);
        // The SDK's socket (its private field: the Python SDK's own recovery test does the same).
        client.client._wsClient.close(closes.get(i));
      }
      await publisher.group("live").sendToAll(`m${i}`, { contentType: "text/plain" });
    }
    await waitFor(() => client.groupMessages.length >= total, {
      timeout: 30_000,
      what: () => `${total} messages after the closes (have ${client.groupMessages.length})`,
    });
    await publisher.group("live").sendToAll("end", { contentType: "text/plain" });
    await waitFor(() => client.groupMessages.some((m) => m.data === "end"), { what: "the end marker" });
    const expected = [...Array.from({ length: total }, (_, i) => `m${i}`), "end"];
    assert.deepEqual(client.groupMessages.map((m) => m.data), expected, "every message once, in order");
    assert.equal(client.connectionId, connectionId);
    assert.equal(client.connected.length, 1, "recovered, never reconnected as a new connection");
    assert.equal(client.disconnected.length, 0);
    assert.equal(client.stopped, 0);
  } finally {
    client.stop();
    proxy.close();
  }
});
