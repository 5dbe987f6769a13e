// The agent SDK against the real binary: an agent serves a capability, another client submits
// to it and sees progress, an artifact and an input-required round trip; cancels reach the
// handler; deadlines hold.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent, BusClient, BusError, TaskRejected, messageText, taskState } from "../dist/index.js";
import { eventually, startHub } from "./helpers.js";

const SUBMITTER = ["bus.submit.billing.refund", "bus.reply.billing.refund", "bus.submit.billing.slow", "bus.watch", "bus.context.conv-1"];

test("an agent serves a submitter end to end", async () => {
  const hub = await startHub();
  const agent = new Agent(hub.endpoint, hub.busToken("refunder-1", ["bus.serve.billing.refund"]), { id: "refunder", name: "Refunds" }, 4, 100);
  agent.skill("billing.refund", async (task) => {
    await task.progress(`checking ${task.text}`);
    await task.artifact({ amount: 10 }, { artifactId: "quote" });
    const answer = await task.ask("Refund 10 EUR?", 20_000);
    if (answer !== "yes") throw new TaskRejected("the human said no");
    return { refunded: 10, answer };
  });
  const running = agent.run();
  const client = new BusClient(hub.endpoint, hub.busToken("user-1", SUBMITTER));
  try {
    await agent.registered();
    await client.connect();
    const cards = await client.agents("billing.refund");
    assert.deepEqual(cards.map((c) => c.id), ["refunder"]);
    const sub = await client.submit("billing.refund", "order 42");
    const events = [];
    const watching = (async () => {
      for await (const env of client.watch(sub.taskId, 20_000)) events.push(env);
    })();
    const asked = await client.wait(sub.taskId, { until: "settled", timeoutMs: 20_000 });
    assert.equal(taskState(asked), "TASK_STATE_INPUT_REQUIRED");
    assert.equal(messageText(asked.task.status.message), "Refund 10 EUR?");
    await client.reply(sub.taskId, "yes");
    const done = await client.wait(sub.taskId, { timeoutMs: 20_000 });
    assert.equal(taskState(done), "TASK_STATE_COMPLETED");
    assert.deepEqual(done.task.status.message.parts[0].data, { refunded: 10, answer: "yes" });
    assert.deepEqual(done.task.artifacts[0].parts[0].data, { amount: 10 });
    await watching;
    assert.equal(events[0].type, "bus.task.submitted");
    assert.ok(events.some((e) => e.type === "bus.task.artifact"));
    const progress = events.map((e) => messageText(e.data?.statusUpdate?.status?.message));
    assert.ok(progress.includes("checking order 42"), `progress missing in ${progress}`);
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, "an event was delivered twice");

    const sub2 = await client.submit("billing.refund", "order 43");
    await client.wait(sub2.taskId, { until: "settled", timeoutMs: 20_000 });
    await client.reply(sub2.taskId, "no");
    assert.equal(taskState(await client.wait(sub2.taskId, { timeoutMs: 20_000 })), "TASK_STATE_REJECTED");

    assert.ok((await client.publishContext("conv-1", { order: 42 })) >= 1);
    assert.deepEqual((await client.readContext("conv-1")).value, { order: 42 });
    await eventually("agent heartbeats", () => agent.heartbeats >= 2);
  } finally {
    client.close();
    agent.stop();
    await running;
    await hub.stop();
  }
});

test("cancellation reaches the handler and deadlines hold", async () => {
  const hub = await startHub();
  const agent = new Agent(hub.endpoint, hub.busToken("slow-1", ["bus.serve.billing.slow"]), { id: "slow", name: "Slow" });
  let started;
  const startedP = new Promise((r) => (started = r));
  const canceled = new Promise((resolve) =>
    agent.skill("billing.slow", async (task) => {
      started();
      await new Promise((r) => task.signal.addEventListener("abort", r));
      resolve(task.canceled);
    }),
  );
  const running = agent.run();
  const client = new BusClient(hub.endpoint, hub.busToken("user-1", SUBMITTER));
  try {
    await agent.registered();
    await client.connect();
    const sub = await client.submit("billing.slow", "forever");
    await startedP;
    await assert.rejects(client.wait(sub.taskId, { timeoutMs: 500 }), (e) => e instanceof BusError && e.errorName === "Timeout");
    await client.cancel(sub.taskId);
    assert.equal(await canceled, true);
    assert.equal(taskState(await client.get(sub.taskId)), "TASK_STATE_CANCELED");
    await assert.rejects(client.submit("orders.lookup", "nope"), (e) => e.errorName === "Forbidden");
  } finally {
    client.close();
    agent.stop();
    await running;
    await hub.stop();
  }
});

test("a dropped agent socket reconnects and gets its task again", async () => {
  const hub = await startHub();
  const agent = new Agent(hub.endpoint, hub.busToken("refunder-1", ["bus.serve.billing.refund"]), { id: "refunder", name: "Refunds" });
  const deliveries = [];
  agent.skill("billing.refund", async (task) => {
    deliveries.push(task.deliveries);
    if (task.deliveries === 1) {
      task.bus.dropSocket(); // the hub requeues what this socket held
      await new Promise((r) => task.signal.addEventListener("abort", r));
      return "abandoned";
    }
    return "second time lucky";
  });
  const running = agent.run();
  const client = new BusClient(hub.endpoint, hub.busToken("user-1", SUBMITTER));
  try {
    await agent.registered();
    await client.connect();
    const done = await client.call("billing.refund", "order 7", 20_000);
    assert.equal(taskState(done), "TASK_STATE_COMPLETED");
    assert.equal(messageText(done.task.status.message), "second time lucky");
    assert.deepEqual(deliveries, [1, 2]);
  } finally {
    client.close();
    agent.stop();
    await running;
    await hub.stop();
  }
});

test("an agent delegates a sub-task in the same chain", async () => {
  const hub = await startHub();
  const orders = new Agent(hub.endpoint, hub.busToken("orders-1", ["bus.serve.orders.lookup"]), { id: "orders", name: "Orders" });
  orders.skill("orders.lookup", async (task) => ({ order: task.text, status: "shipped" }));
  const triage = new Agent(hub.endpoint, hub.busToken("triage-1", ["bus.serve.support.triage", "bus.submit.orders.lookup"]), {
    id: "triage",
    name: "Triage",
  });
  triage.skill("support.triage", async (task) => {
    const found = (await task.delegate("orders.lookup", "42", 20_000)).task.status.message.parts[0].data;
    return `order ${found.order} is ${found.status}`;
  });
  const runners = [orders.run(), triage.run()];
  const client = new BusClient(hub.endpoint, hub.busToken("user-1", ["bus.submit.support.triage", "bus.watch"]));
  try {
    await Promise.all([orders.registered(), triage.registered()]);
    await client.connect();
    const sub = await client.submit("support.triage", "where is my order?");
    const done = await client.wait(sub.taskId, { timeoutMs: 20_000 });
    assert.equal(messageText(done.task.status.message), "order 42 is shipped");
    const chain = await client.invoke("bus.chain", { correlationId: sub.correlationId });
    assert.equal(chain.roots[0].capability, "support.triage");
    assert.equal(chain.roots[0].children[0].capability, "orders.lookup");
    assert.equal(chain.roots[0].children[0].state, "TASK_STATE_COMPLETED");
  } finally {
    client.close();
    orders.stop();
    triage.stop();
    await Promise.all(runners);
    await hub.stop();
  }
});

test("a refused token or card stops the agent", async () => {
  const hub = await startHub();
  try {
    const bad = new Agent(hub.endpoint, hub.busToken("x", ["bus.serve.a.b"]) + "x", { id: "x", name: "X" });
    bad.skill("a.b", async () => "");
    await assert.rejects(bad.run(), (e) => e instanceof BusError && e.errorName === "Unauthorized"
      && /signature is invalid/.test(e.message));
    const unserved = new Agent(hub.endpoint, hub.busToken("y", ["bus.serve.a.b"]), { id: "y", name: "Y" });
    unserved.skill("c.d", async () => "");
    await assert.rejects(unserved.run(), (e) => e instanceof BusError && e.errorName === "Forbidden");
  } finally {
    await hub.stop();
  }
});
