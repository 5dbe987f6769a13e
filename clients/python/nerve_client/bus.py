"""The agent bus over the hub's ``/bus/ws`` WebSocket: operations as ``invoke`` frames.

``BusClient`` submits tasks, waits for them with a deadline, answers input-required steps,
publishes and reads shared context and follows task events. ``Agent`` (agent.py) builds on
it to serve capabilities. One socket carries everything; pushes (tasks, cancellations,
subscribed events) arrive as ``message`` frames and are dispatched by ``data.kind``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, Optional
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from . import tracing
from .hub import handshake_refusal


def _dumps(frame: dict) -> str:
    return json.dumps(frame, separators=(",", ":"))


log = logging.getLogger("nerve_client.bus")
SUBPROTOCOL = "json.webpubsub.azure.v1"
TERMINAL = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED",
            "TASK_STATE_REJECTED"}
MAX_WAIT_MS = 300_000


class BusError(Exception):
    """An operation failed: ``name`` is Forbidden, BadRequest, NotFound, Conflict, Timeout,
    Unavailable, ConnectionLost when the socket dropped before the answer, or Unauthorized
    when the hub refused the token (``message`` says why)."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def bus_url(url: str, token: str) -> str:
    """``ws(s)://host/bus/ws?access_token=…`` from an http(s) or ws(s) hub endpoint."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/bus/ws"):
        path += "/bus/ws"
    return urlunsplit((scheme, parts.netloc, path, urlencode({"access_token": token}), ""))


def message_text(message: Optional[dict]) -> str:
    """The text parts of an A2A message, joined."""
    if not message:
        return ""
    return "".join(p["text"] for p in message.get("parts", []) if isinstance(p.get("text"), str))


def task_state(record: dict) -> str:
    """The state of a task record (``TASK_STATE_…``)."""
    return record.get("task", {}).get("status", {}).get("state", "")


class BusClient:
    """A connection to the hub's agent bus for submitting, following and answering tasks."""

    def __init__(self, url: str, token: str, *, invoke_timeout: float = 30.0,
                 queue_size: int = 1000):
        self.url = bus_url(url, token)
        self.invoke_timeout = invoke_timeout
        self.queue_size = queue_size
        self.connection_id: Optional[str] = None
        self.user_id: Optional[str] = None
        self._ws: Optional[ClientConnection] = None
        self._next_id = 0
        self._pending: dict[str, asyncio.Future] = {}
        self._reader: Optional[asyncio.Task] = None
        self._pinger: Optional[asyncio.Task] = None
        self._subscribers: dict[str, list[asyncio.Queue]] = {}
        self.closed = asyncio.Event()

    async def connect(self) -> "BusClient":
        """Opens the socket and waits for ``connected``."""
        self.closed.clear()
        with tracing.span("nerve.connect", attributes={
                "nerve.hub": "bus", **tracing.server_attributes(self.url)}) as span:
            try:
                ws = await connect(self.url, subprotocols=[SUBPROTOCOL], open_timeout=10,
                                   max_size=2 * 2**20, ping_interval=None,
                                   additional_headers=tracing.headers())
            except InvalidStatus as e:
                status, reason = handshake_refusal(e) or (0, str(e))
                name = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Unavailable")
                tracing.set_error(span, name)
                raise BusError(name, f"the hub refused the bus socket (HTTP {status}): "
                                     f"{reason}") from e
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if span is not None and hello.get("connectionId"):
                span.set_attribute("nerve.connection_id", str(hello["connectionId"]))
        self.connection_id = hello.get("connectionId")
        self.user_id = hello.get("userId")
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))
        self._pinger = asyncio.create_task(self._ping(ws))
        return self

    async def close(self) -> None:
        """Closes the socket; pending operations fail with ConnectionLost."""
        for t in (self._pinger,):
            if t:
                t.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            try:
                await self._reader
            except BaseException:
                pass

    def drop_socket(self) -> None:
        """Aborts the socket without a close handshake, as a network failure would."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    async def __aenter__(self) -> "BusClient":
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- wire ------------------------------------------------------------------------------

    async def invoke(self, op: str, data: dict, timeout: Optional[float] = None) -> dict:
        """Runs operation ``op`` and returns its result; raises BusError. With tracing on, it
        runs in a span named ``op`` whose traceparent goes along as ``data.traceparent``."""
        if op == "bus.heartbeat" or not tracing.enabled():
            return await self._invoke(op, data, timeout)
        attrs = {"nerve.bus.op": op, "nerve.bus.capability": data.get("capability"),
                 "nerve.bus.task_id": data.get("taskId")}
        kind = "producer" if op == "bus.submit" else "client"
        with tracing.span(op, kind, attributes=attrs) as span:
            if "traceparent" not in data:
                data = {**data, **tracing.headers()}
            try:
                result = await self._invoke(op, data, timeout)
            except BusError as e:
                tracing.set_error(span, e.name)
                raise
            if op == "bus.submit" and span is not None:
                span.set_attribute("nerve.bus.task_id", str(result.get("taskId", "")))
                span.set_attribute("nerve.bus.correlation_id",
                                   str(result.get("correlationId", "")))
            return result

    async def _invoke(self, op: str, data: dict, timeout: Optional[float]) -> dict:
        if self._ws is None:
            raise BusError("ConnectionLost", "not connected")
        self._next_id += 1
        inv = str(self._next_id)
        fut = asyncio.get_running_loop().create_future()
        self._pending[inv] = fut
        try:
            await self._ws.send(_dumps({"type": "invoke", "invocationId": inv, "event": op,
                                            "dataType": "json", "data": data}))
            return await asyncio.wait_for(fut, timeout or self.invoke_timeout)
        except ConnectionClosed:
            raise BusError("ConnectionLost", f"socket closed during {op}") from None
        except asyncio.TimeoutError:
            raise BusError("Timeout", f"no answer to {op}") from None
        finally:
            self._pending.pop(inv, None)

    async def notify(self, op: str, data: dict) -> None:
        """Runs operation ``op`` fire-and-forget (an ``event`` frame without ackId)."""
        if self._ws is None:
            raise BusError("ConnectionLost", "not connected")
        if "traceparent" not in data:
            data = {**data, **tracing.headers()}
        try:
            await self._ws.send(_dumps({"type": "event", "event": op, "dataType": "json",
                                            "data": data}))
        except ConnectionClosed:
            raise BusError("ConnectionLost", f"socket closed during {op}") from None

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    f = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(f, dict):
                    continue
                kind = f.get("type")
                if kind == "invokeResponse":
                    fut = self._pending.get(str(f.get("invocationId")))
                    if fut is None or fut.done():
                        continue
                    if f.get("success"):
                        fut.set_result(f.get("data") or {})
                    else:
                        e = f.get("error") or {}
                        fut.set_exception(BusError(e.get("name", "Error"), e.get("message", "")))
                elif kind == "message" and isinstance(f.get("data"), dict):
                    await self._on_push(f["data"])
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(BusError("ConnectionLost", "socket closed"))
            self.closed.set()

    async def _ping(self, ws: ClientConnection, every: float = 20.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await ws.send('{"type":"ping"}')
            except ConnectionClosed:
                return

    async def _on_push(self, data: dict) -> None:
        if data.get("kind") == "bus.event":
            for q in list(self._subscribers.get(data.get("group", ""), [])):
                await q.put(data)
        elif data.get("kind") == "bus.resync":
            for qs in list(self._subscribers.values()):
                for q in qs:
                    await q.put(data)

    # ---- operations ------------------------------------------------------------------------

    async def submit(self, capability: str, text: Optional[str] = None, *,
                     message: Optional[dict] = None, context_id: Optional[str] = None,
                     idempotency_key: Optional[str] = None, ttl_ms: Optional[int] = None,
                     partition_key: Optional[str] = None,
                     parent_task_id: Optional[str] = None) -> dict:
        """Submits a task; returns ``{taskId, correlationId, contextId, duplicate}``."""
        data: dict[str, Any] = {"capability": capability}
        if message is not None:
            data["message"] = message
        else:
            data["text"] = text or ""
        for k, v in (("contextId", context_id), ("idempotencyKey", idempotency_key),
                     ("ttlMs", ttl_ms), ("partitionKey", partition_key),
                     ("parentTaskId", parent_task_id)):
            if v is not None:
                data[k] = v
        return await self.invoke("bus.submit", data)

    async def wait(self, task_id: str, *, until: str = "terminal", timeout: float = 30.0,
                   after_version: Optional[int] = None) -> dict:
        """Waits until the task is terminal (or ``settled``: also input-/auth-required) and
        returns its record; raises BusError("Timeout") after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left_ms = int((deadline - loop.time()) * 1000)
            if left_ms <= 0:
                raise BusError("Timeout", f"task {task_id} did not finish in {timeout}s")
            data: dict[str, Any] = {"taskId": task_id, "until": until,
                                    "timeoutMs": min(left_ms, MAX_WAIT_MS)}
            if after_version is not None:
                data["afterVersion"] = after_version
            try:
                r = await self.invoke("bus.task.wait", data, timeout=left_ms / 1000 + 5)
                return r["task"]
            except BusError as e:
                if e.name != "Timeout" or loop.time() >= deadline:
                    raise

    async def call(self, capability: str, text: Optional[str] = None, *,
                   timeout: float = 30.0, **submit_args: Any) -> dict:
        """Submits a task and waits for its terminal record within ``timeout`` seconds."""
        sub = await self.submit(capability, text, **submit_args)
        return await self.wait(sub["taskId"], timeout=timeout)

    async def get(self, task_id: str) -> dict:
        """The task's record."""
        return (await self.invoke("bus.task.get", {"taskId": task_id}))["task"]

    async def cancel(self, task_id: str) -> dict:
        """Cancels a task."""
        return await self.invoke("bus.task.cancel", {"taskId": task_id})

    async def reply(self, task_id: str, text: str) -> dict:
        """Answers an input-required task."""
        return await self.invoke("bus.task.reply", {"taskId": task_id, "text": text})

    async def publish_context(self, context_id: str, value: Any) -> int:
        """Publishes the shared context value; returns its new version."""
        r = await self.invoke("bus.context.publish", {"contextId": context_id, "value": value})
        return r["version"]

    async def read_context(self, context_id: str) -> Optional[dict]:
        """``{contextId, version, value, updatedMs}`` or None."""
        return (await self.invoke("bus.context.get", {"contextId": context_id}))["context"]

    async def agents(self, capability: Optional[str] = None) -> list:
        """Registered agent cards (optionally only those serving ``capability``)."""
        data = {"capability": capability} if capability else {}
        return (await self.invoke("bus.agents", data))["agents"]

    async def history(self, *, task_id: Optional[str] = None, correlation_id: Optional[str] = None,
                      context_id: Optional[str] = None, after: Optional[str] = None) -> dict:
        """``{snapshot, events, cursor, reset}`` for a task, chain or context."""
        data = {k: v for k, v in (("taskId", task_id), ("correlationId", correlation_id),
                                  ("contextId", context_id), ("after", after)) if v is not None}
        return await self.invoke("bus.history", data)

    async def watch(self, task_id: str, timeout: float = 60.0) -> AsyncIterator[dict]:
        """Every event envelope of a task, exactly once and in order, live, until the task
        is terminal (needs ``bus.watch``): subscribe, catch up by cursor, then follow."""
        group = f"task.{task_id}"
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self._subscribers.setdefault(group, []).append(q)
        seen: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        cursor: Optional[str] = None
        try:
            await self.invoke("bus.subscribe", {"group": group})
            catch_up = True
            while True:
                if catch_up:
                    h = await self.history(task_id=task_id, after=cursor)
                    batch = [(e["cursor"], e["envelope"]) for e in h.get("events", [])]
                    catch_up = False
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise BusError("Timeout", f"task {task_id} still running")
                    push = await asyncio.wait_for(q.get(), left)
                    if push.get("kind") == "bus.resync":
                        catch_up = True
                        continue
                    batch = [(push.get("cursor", ""), push.get("envelope", {}))]
                for cur, env in batch:
                    if cur in seen:
                        continue
                    seen.add(cur)
                    cursor = cur
                    yield env
                    state = ((env.get("data") or {}).get("statusUpdate") or {}).get(
                        "status", {}).get("state")
                    if state in TERMINAL:
                        return
        finally:
            self._subscribers[group].remove(q)
            if self._ws is not None:
                try:
                    await self.invoke("bus.unsubscribe", {"group": group})
                except BusError:
                    pass

