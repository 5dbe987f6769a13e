// Tokens from a connection string against the real binary, and the reasons a refused token
// comes back with.
import { test } from "node:test";
import assert from "node:assert/strict";

import { BusClient, ConnectionString, HubClient, HubError, sign } from "../dist/index.js";
import { KEY, startHub } from "./helpers.js";

const ALL = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

test("a client URL from the connection string connects with its user and groups", async () => {
  const hub = await startHub();
  try {
    const cs = new ConnectionString(`Endpoint=${hub.endpoint};AccessKey=${KEY};Version=1.0;`);
    const url = await cs.clientUrl("chat", { userId: "alice", roles: ALL, groups: ["lobby"] });
    assert.ok(url.startsWith(`${hub.endpoint.replace("http", "ws")}/client/hubs/chat?access_token=`), url);
    const client = new HubClient(url);
    await client.start();
    assert.equal(client.userId, "alice");
    const inbox = client.messages();
    await client.sendToGroup("lobby", "joined by the token", { dataType: "text" });
    assert.equal((await inbox.next(10_000)).data, "joined by the token");
    await client.stop();

    const bus = await new BusClient(cs.endpoint, await cs.clientToken("bus", { userId: "w", roles: ["bus.watch"] })).connect();
    assert.deepEqual(await bus.agents(), []);
    bus.close();
    const r = await fetch(`${hub.endpoint}/api/hubs/chat/:send?api-version=2024-01-01`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await cs.restToken("/api/hubs/chat/:send")}`, "Content-Type": "text/plain" },
      body: "hi",
    });
    assert.equal(r.status, 202);
  } finally {
    await hub.stop();
  }
});

test("connection strings are checked and never printed", async () => {
  const cs = new ConnectionString("endpoint=https://h/;accesskey=secret;port=8443");
  assert.equal(cs.endpoint, "https://h:8443");
  assert.ok(!String(cs).includes("secret") && !JSON.stringify(cs).includes("secret"));
  assert.ok((await cs.clientUrl("chat")).startsWith("wss://h:8443/client/hubs/chat?access_token="));
  for (const bad of ["AccessKey=k", "Endpoint=http://h", "Endpoint=ftp://h;AccessKey=k", "nonsense"]) {
    assert.throws(() => new ConnectionString(bad), bad);
  }
  const saved = process.env.NERVE_CONNECTION_STRING;
  delete process.env.NERVE_CONNECTION_STRING;
  assert.throws(() => ConnectionString.fromEnv(), /NERVE_CONNECTION_STRING/);
  process.env.NERVE_CONNECTION_STRING = "Endpoint=http://h;AccessKey=k;";
  assert.equal(ConnectionString.fromEnv().endpoint, "http://h");
  if (saved === undefined) delete process.env.NERVE_CONNECTION_STRING;
  else process.env.NERVE_CONNECTION_STRING = saved;
});

test("a refused handshake says why", async () => {
  const hub = await startHub();
  try {
    const wrong = new ConnectionString(`Endpoint=${hub.endpoint};AccessKey=not-the-key;`);
    await assert.rejects(new HubClient(await wrong.clientUrl("chat", { userId: "eve" })).start(), (e) =>
      e instanceof HubError && e.errorName === "Unauthorized" && e.status === 401 && /signature is invalid/.test(e.message));
    const past = Math.floor(Date.now() / 1000) - 3600;
    const expired = await sign({ aud: `${hub.endpoint}/client/hubs/chat`, exp: past }, KEY);
    const url = `${hub.endpoint.replace("http", "ws")}/client/hubs/chat?access_token=${expired}`;
    await assert.rejects(new HubClient(url).start(), (e) => e instanceof HubError && /has expired/.test(e.message));
  } finally {
    await hub.stop();
  }
});
