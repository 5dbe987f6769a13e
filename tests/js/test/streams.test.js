// Group streams (a preview feature of the client SDK) against a hub that does not support them:
// openGroupStream must be refused promptly instead of waiting forever.
"use strict";

const { it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { connectClient, startHub, uniqueHub, withDeadline } = require("../helpers");

let hub;
let client;

before(async () => {
  hub = await startHub();
});

after(async () => {
  client?.stop();
  if (hub) await hub.stop();
});

it("refuses openGroupStream with an error instead of leaving it pending", { timeout: 30_000 }, async () => {
  client = await connectClient(hub.service(uniqueHub()), { roles: ["webpubsub.sendToGroup"] });
  const outcome = await withDeadline(
    client.client.openGroupStream("g").then(
      () => "opened",
      (e) => e,
    ),
    10_000,
    "openGroupStream settles",
  );
  assert.ok(outcome instanceof Error, `openGroupStream must fail on a hub without streams, got ${outcome}`);
  assert.equal(client.disconnected.length, 0);
});
