"""Trace export against a real OTLP/HTTP receiver: the client's spans and the hub's arrive
at one collector (protobuf decoded with the official opentelemetry-proto package) and form
one trace from the submitter through the hub to the agent's work; no token in any attribute."""

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)

from nerve_client import Agent, BusClient, enable_tracing, shutdown_tracing, task_state

from conftest import KEY, ROOT, Hub, Upstream

WAIT = 20.0


def _text(v) -> str:
    kind = v.WhichOneof("value")
    return "" if kind is None else str(getattr(v, kind))


class Collector:
    """A real OTLP/HTTP trace receiver: ``POST /v1/traces`` with an ExportTraceServiceRequest
    (protobuf), every span kept flattened as a dict."""

    def __init__(self):
        spans = self.spans = []
        lock = self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces" or "protobuf" not in self.headers.get(
                        "Content-Type", ""):
                    self.send_response(415)
                    self.end_headers()
                    return
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                with lock:
                    for rs in req.resource_spans:
                        resource = {a.key: _text(a.value) for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                spans.append({
                                    "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                    "parent": s.parent_span_id.hex(), "name": s.name,
                                    "kind": s.kind,
                                    "attrs": {a.key: _text(a.value) for a in s.attributes},
                                    "service": resource.get("service.name", ""),
                                    "resource": resource})
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, service: str, name: str, **where):
        with self.lock:
            for s in self.spans:
                if s["service"] == service and s["name"] == name and all(
                        s.get(k) == v for k, v in where.items()):
                    return s
        return None

    async def wait(self, service: str, name: str, **where) -> dict:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            s = self.find(service, name, **where)
            if s is not None:
                return s
            await asyncio.sleep(0.05)
        with self.lock:
            seen = [(s["service"], s["name"]) for s in self.spans]
        seen = [(s["service"], s["name"], s["trace_id"][:8], s["span_id"][:8], s["parent"][:8]) for s in self.spans]
        raise AssertionError(f"no span {name} of {service} {where}; got {seen}")

    def assert_no_secrets(self, secrets):
        with self.lock:
            for s in self.spans:
                for value in [*s["attrs"].values(), *s["resource"].values()]:
                    for secret in secrets:
                        assert secret not in value, f"{s['name']} carries a secret"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    shutdown_tracing()
    c.stop()


def exporting_hub(collector, monkeypatch, *extra: str) -> Hub:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    return Hub("--otlp-endpoint", collector.endpoint, *extra)


async def test_a_task_is_one_trace_from_submitter_through_hub_to_agent(collector, monkeypatch):
    hub = exporting_hub(collector, monkeypatch)
    try:
        enable_tracing(collector.endpoint, service_name="py-clients")
        agent_token = hub.bus_token("echo-agent", ["bus.serve.echo"])
        agent = Agent(hub.endpoint, agent_token, {"id": "echoer", "name": "Echo"})

        @agent.skill("echo")
        async def echo(task):
            await task.progress("echoing")
            return f"echo: {task.text}"

        runner = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.registered.wait(), 10)
        submit_token = hub.bus_token("ann", ["bus.submit.echo"])
        async with BusClient(hub.endpoint, submit_token) as bus:
            sub = await bus.submit("echo", "hi")
            done = await bus.wait(sub["taskId"], timeout=20)
        assert task_state(done) == "TASK_STATE_COMPLETED"
        await agent.stop()
        await asyncio.wait_for(runner, 10)
        shutdown_tracing()  # flushes the client's batch

        task_id = sub["taskId"]
        submit = await collector.wait("py-clients", "bus.submit")
        assert submit["attrs"]["nerve.bus.capability"] == "echo"
        assert submit["attrs"]["nerve.bus.task_id"] == task_id
        trace = submit["trace_id"]
        hub_submit = await collector.wait("nerve", "bus.submit", trace_id=trace)
        assert hub_submit["parent"] == submit["span_id"], "the hub continues the submit span"
        hub_deliver = await collector.wait("nerve", "bus.deliver", trace_id=trace)
        assert hub_deliver["parent"] == hub_submit["span_id"]
        work = await collector.wait("py-clients", "bus.deliver", trace_id=trace)
        assert work["parent"] == hub_deliver["span_id"], "the agent's work continues the hub's"
        assert work["attrs"]["nerve.bus.task_id"] == task_id
        assert work["attrs"]["nerve.bus.agent"] == "echoer"
        assert work["attrs"]["nerve.bus.outcome"] == "complete"
        for op in ("bus.task.status", "bus.task.complete"):
            mine = await collector.wait("py-clients", op, trace_id=trace)
            assert mine["parent"] == work["span_id"], f"{op} runs inside the agent's work"
            theirs = await collector.wait("nerve", op, trace_id=trace)
            assert theirs["parent"] == mine["span_id"], f"the hub's {op} continues the agent's"
        connect = await collector.wait("py-clients", "nerve.connect")
        assert connect["attrs"]["nerve.hub"] == "bus"
        assert connect["attrs"]["server.port"] == str(hub.port)
        collector.assert_no_secrets([KEY, agent_token, submit_token])
    finally:
        hub.stop()


SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from nerve_client import HubClient

    async def main():
        async with HubClient(sys.argv[1]) as c:
            await c.join_group("room")
            await c.send_to_group("room", {"hi": 1})

    asyncio.run(main())
""")


async def test_the_standard_variable_turns_export_on_and_exit_flushes(collector, monkeypatch):
    """A program that only sets OTEL_EXPORTER_OTLP_ENDPOINT exports its spans, flushed at exit;
    the hub's span for the upgrade (its connect event) is a child of the client's connect span."""
    upstream = Upstream()
    hub = exporting_hub(collector, monkeypatch, "--upstream",
                        f"hub=chat;url=http://127.0.0.1:{upstream.port}/{{event}};system=connect")
    try:
        url = hub.client_url("chat", "alice", ["webpubsub.joinLeaveGroup",
                                               "webpubsub.sendToGroup"])
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
               "OTEL_SERVICE_NAME": "py-script",
               "PYTHONPATH": str(ROOT / "clients" / "python")}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SCRIPT, url, env=env)
        assert await asyncio.wait_for(proc.wait(), 30) == 0

        publish = await collector.wait("py-script", "nerve.publish")
        assert publish["attrs"]["nerve.group"] == "room"
        connect = await collector.wait("py-script", "nerve.connect")
        assert connect["attrs"]["nerve.hub"] == "chat"
        assert connect["attrs"]["nerve.connection_id"]
        conn = await collector.wait("nerve", "ws.connect", trace_id=connect["trace_id"])
        assert conn["parent"] == connect["span_id"], "the upgrade carried the traceparent"
        collector.assert_no_secrets([KEY, url.split("access_token=")[1]])
    finally:
        hub.stop()
        upstream.stop()


def test_a_malformed_endpoint_is_refused():
    with pytest.raises(ValueError, match="http:// or https://"):
        enable_tracing("grpc://127.0.0.1:4317")


def test_without_the_variable_nothing_is_traced(monkeypatch):
    """No endpoint, no export: the client runs without importing OpenTelemetry's SDK."""
    code = ("import sys, nerve_client.tracing as t; assert not t.enabled(); "
            "assert 'opentelemetry.sdk' not in sys.modules")
    env = {k: v for k, v in os.environ.items() if k != "OTEL_EXPORTER_OTLP_ENDPOINT"}
    env["PYTHONPATH"] = str(ROOT / "clients" / "python")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
