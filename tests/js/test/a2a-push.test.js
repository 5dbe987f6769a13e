// A2A 1.0 push notifications through the official JS SDK (@a2a-js/sdk): a client whose config
// carries a push setting sends a message to a real nerve's /a2a, a bus agent works the task, a real
// HTTP webhook receives each update with the setting's token and Authorization header, and the
// bodies parse as the SDK's StreamResponse; then the SDK's four *TaskPushNotificationConfig calls.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const WebSocket = require("ws");
const {
  ClientFactory,
  ClientFactoryOptions,
  DefaultAgentCardResolver,
  JsonRpcTransportFactory,
} = require("@a2a-js/sdk/client");
const { Role, StreamResponse, TaskState } = require("@a2a-js/sdk");
const { startHub, waitFor } = require("../helpers");

/** A real HTTP server that records every POST (path, headers, JSON body) and answers 200. */
async function webhook() {
  const posts = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      posts.push({ path: req.url, headers: req.headers, body: JSON.parse(body) });
      res.writeHead(200, { "content-length": "0" });
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { posts, port: server.address().port, close: () => server.close() };
}

/** A bus agent on /bus/ws that answers each pushed task: working, an artifact, completed. */
async function agent(hub, token) {
  const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/bus/ws?access_token=${token}`, "json.webpubsub.azure.v1");
  let next = 0;
  const pending = new Map();
  const invoke = (event, data) =>
    new Promise((resolve, reject) => {
      const id = String(++next);
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ type: "invoke", invocationId: id, event, dataType: "json", data }));
    });
  ws.on("message", async (raw) => {
    const frame = JSON.parse(raw.toString());
    if (frame.type === "invokeResponse") {
      const p = pending.get(frame.invocationId);
      pending.delete(frame.invocationId);
      if (frame.success) p.resolve(frame.data);
      else p.reject(new Error(`${JSON.stringify(frame.error)}`));
    } else if (frame.type === "message" && frame.data && frame.data.kind === "bus.task") {
      const taskId = frame.data.task.id;
      await invoke("bus.task.status", { taskId, state: "TASK_STATE_WORKING", text: "reading" });
      await invoke("bus.task.artifact", { taskId, artifact: { artifactId: "out", parts: [{ text: "pushed" }] } });
      await invoke("bus.task.complete", { taskId, text: "done" });
    }
  });
  await new Promise((resolve, reject) => {
    ws.once("message", (raw) => {
      const hello = JSON.parse(raw.toString());
      if (hello.event === "connected") resolve();
      else reject(new Error(`unexpected first frame ${raw}`));
    });
    ws.once("error", reject);
  });
  return { invoke, close: () => ws.close() };
}

let hub;
let hook;
let worker;
let configFile;

before(async () => {
  configFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "nerve-a2a-")), "nerve.toml");
  fs.writeFileSync(configFile, "[bus]\nfast = true\npush_allow_private = true\n");
  hub = await startHub({ config: configFile });
  hook = await webhook();
  const bus = hub.service("bus");
  const { token } = await bus.getClientAccessToken({ userId: "pusher-js", roles: ["bus.serve.pushed"] });
  worker = await agent(hub, token);
  await worker.invoke("bus.register", {
    card: {
      id: "pusher-js",
      name: "Pusher",
      version: "1.0.0",
      skills: [{ id: "pushed", name: "Pushed", description: "pushes" }],
    },
  });
});

after(async () => {
  if (worker) worker.close();
  if (hook) hook.close();
  if (hub) await hub.stop();
  if (configFile) fs.rmSync(path.dirname(configFile), { recursive: true, force: true });
});

describe("A2A push notifications with @a2a-js/sdk", { timeout: 60_000 }, () => {
  it("delivers every task update to the webhook and manages settings through the SDK", async () => {
    const { token } = await hub.service("bus").getClientAccessToken({ userId: "a2a-js", roles: ["bus.submit.pushed"] });
    const fetchImpl = (url, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set("authorization", `Bearer ${token}`);
      return fetch(url, { ...init, headers });
    };
    const url = `http://127.0.0.1:${hook.port}/hook`;
    const setting = {
      tenant: "",
      id: "sdk",
      taskId: "",
      url,
      token: "notify-token",
      authentication: { scheme: "Bearer", credentials: "webhook-secret" },
    };
    const factory = new ClientFactory(
      ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
        transports: [new JsonRpcTransportFactory({ fetchImpl })],
        cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
        clientConfig: { pushNotificationConfig: setting },
      }),
    );
    const client = await factory.createFromUrl(`http://127.0.0.1:${hub.port}`);
    await client.sendMessage({
      tenant: "",
      message: {
        messageId: `m-${Date.now()}`,
        contextId: "",
        taskId: "",
        role: Role.ROLE_USER,
        parts: [{ content: { $case: "text", value: "notify me" }, metadata: undefined, filename: "", mediaType: "" }],
        metadata: undefined,
        extensions: [],
        referenceTaskIds: [],
      },
      configuration: undefined,
      metadata: undefined,
    });

    const events = () => hook.posts.filter((p) => p.path === "/hook").map((p) => StreamResponse.fromJSON(p.body));
    const stateOf = (e) => (e.payload && e.payload.$case === "statusUpdate" ? e.payload.value.status.state : null);
    await waitFor(() => events().some((e) => stateOf(e) === TaskState.TASK_STATE_COMPLETED), {
      timeout: 20_000,
      what: "the completion pushed to the webhook",
    });
    const got = events();
    const kinds = got.map((e) => e.payload && e.payload.$case);
    assert.ok(kinds.includes("artifactUpdate"), `kinds ${kinds}`);
    const states = got.map(stateOf).filter((s) => s !== null);
    assert.ok(states.includes(TaskState.TASK_STATE_WORKING), `states ${states}`);
    for (const p of hook.posts) {
      assert.equal(p.headers["x-a2a-notification-token"], "notify-token");
      assert.equal(p.headers.authorization, "Bearer webhook-secret");
    }
    const taskId = got[0].payload.value.taskId;
    assert.ok(taskId, "the update names its task");

    const read = await client.getTaskPushNotificationConfig({ tenant: "", taskId, id: "sdk" });
    assert.equal(read.url, url);
    assert.equal(read.token, "notify-token");
    assert.equal(read.authentication.scheme, "Bearer");
    assert.equal(read.authentication.credentials, "", "the credential is never read back");

    const second = await client.createTaskPushNotificationConfig({
      tenant: "",
      id: "second",
      taskId,
      url: `${url}2`,
      token: "",
      authentication: undefined,
    });
    assert.equal(second.id, "second");
    assert.equal(second.taskId, taskId);
    const ids = async () =>
      (await client.listTaskPushNotificationConfig({ tenant: "", taskId, pageSize: 0, pageToken: "" })).configs
        .map((c) => c.id)
        .sort();
    assert.deepEqual(await ids(), ["sdk", "second"]);
    await client.deleteTaskPushNotificationConfig({ tenant: "", taskId, id: "second" });
    assert.deepEqual(await ids(), ["sdk"]);
  });
});
