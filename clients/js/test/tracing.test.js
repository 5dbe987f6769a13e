// Trace export against a real OTLP/HTTP receiver: the client's spans (OTLP JSON) and the hub's
// (OTLP protobuf, decoded with the official OpenTelemetry JS generated protobuf code) arrive at
// one collector and form one trace from the submitter through the hub to the agent's work.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { Agent, BusClient, enableTracing, shutdownTracing, taskState, tracesUrl } from "../dist/index.js";
import { KEY, eventually, startHub } from "./helpers.js";

const require = createRequire(import.meta.url);
const proto = require("otlp-proto/build/src/generated/root.js").opentelemetry.proto;
const Request = proto.collector.trace.v1.ExportTraceServiceRequest;

const hex = (v) => (typeof v === "string" ? v : Buffer.from(v ?? []).toString("hex"));
const text = (v) => String(v?.stringValue ?? v?.intValue ?? v?.boolValue ?? v?.doubleValue ?? "");
const attrs = (kvs) => Object.fromEntries((kvs ?? []).map((a) => [a.key, text(a.value)]));

/** A real OTLP/HTTP receiver on a free port: JSON or protobuf ExportTraceServiceRequests. */
async function startCollector() {
  const spans = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const json = (req.headers["content-type"] ?? "").includes("json");
      const decoded = json ? JSON.parse(body.toString("utf8")) : Request.toObject(Request.decode(body), { longs: String });
      for (const rs of decoded.resourceSpans ?? []) {
        const resource = attrs(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({ traceId: hex(s.traceId), spanId: hex(s.spanId), parent: hex(s.parentSpanId), name: s.name, attrs: attrs(s.attributes), resource, service: resource["service.name"] });
          }
        }
      }
      res.writeHead(200, { "content-type": json ? "application/json" : "application/x-protobuf" });
      res.end(json ? "{}" : "");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const endpoint = `http://127.0.0.1:${server.address().port}`;
  return {
    endpoint,
    spans,
    wait(service, name, where = {}) {
      return eventually(`span ${name} of ${service}`, () =>
        spans.find((s) => s.service === service && s.name === name && Object.entries(where).every(([k, v]) => s[k] === v)), 20_000);
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

test("a task is one trace from the submitter through the hub to the agent", async () => {
  const collector = await startCollector();
  process.env.OTEL_BSP_SCHEDULE_DELAY = "100";
  const hub = await startHub(["--otlp-endpoint", collector.endpoint]);
  await enableTracing({ endpoint: collector.endpoint, serviceName: "js-clients" });
  const agentToken = hub.busToken("echo-agent", ["bus.serve.echo"]);
  const submitToken = hub.busToken("ann", ["bus.submit.echo"]);
  const agent = new Agent(hub.endpoint, agentToken, { id: "echoer", name: "Echo" });
  agent.skill("echo", async (task) => {
    await task.progress("echoing");
    return `echo: ${task.text}`;
  });
  const running = agent.run();
  const client = new BusClient(hub.endpoint, submitToken);
  try {
    await agent.registered();
    await client.connect();
    const sub = await client.submit("echo", "hi");
    const done = await client.wait(sub.taskId, { timeoutMs: 20_000 });
    assert.equal(taskState(done), "TASK_STATE_COMPLETED");
    // The agent's span ends once its settling call is answered, just after the submitter
    // saw the task complete: it is exported within the batch delay, before the agent stops.
    await collector.wait("js-clients", "bus.deliver");
    client.close();
    agent.stop();
    await running;
    await shutdownTracing();

    const submit = await collector.wait("js-clients", "bus.submit");
    assert.equal(submit.attrs["nerve.bus.capability"], "echo");
    assert.equal(submit.attrs["nerve.bus.task_id"], sub.taskId);
    const trace = submit.traceId;
    const hubSubmit = await collector.wait("nerve", "bus.submit", { traceId: trace });
    assert.equal(hubSubmit.parent, submit.spanId, "the hub continues the submit span");
    const hubDeliver = await collector.wait("nerve", "bus.deliver", { traceId: trace });
    assert.equal(hubDeliver.parent, hubSubmit.spanId);
    const work = await collector.wait("js-clients", "bus.deliver", { traceId: trace });
    assert.equal(work.parent, hubDeliver.spanId, "the agent's work continues the hub's delivery");
    assert.equal(work.attrs["nerve.bus.agent"], "echoer");
    assert.equal(work.attrs["nerve.bus.outcome"], "complete");
    for (const op of ["bus.task.status", "bus.task.complete"]) {
      const mine = await collector.wait("js-clients", op, { traceId: trace });
      assert.equal(mine.parent, work.spanId, `${op} runs inside the agent's work`);
      const theirs = await collector.wait("nerve", op, { traceId: trace });
      assert.equal(theirs.parent, mine.spanId, `the hub's ${op} continues the agent's`);
    }
    const connect = await collector.wait("js-clients", "nerve.connect");
    assert.equal(connect.attrs["nerve.hub"], "bus");
    for (const s of collector.spans) {
      for (const v of [...Object.values(s.attrs), ...Object.values(s.resource)]) {
        for (const secret of [KEY, agentToken, submitToken]) assert.ok(!v.includes(secret), `${s.name} carries a secret`);
      }
    }
  } finally {
    client.close();
    agent.stop();
    await shutdownTracing();
    await hub.stop();
    await collector.close();
  }
});

test("a malformed endpoint is refused", () => {
  assert.throws(() => tracesUrl("grpc://127.0.0.1:4317"), /http:\/\/ or https:\/\//);
  assert.equal(tracesUrl("http://c:4318/"), "http://c:4318/v1/traces");
});
