"""The agent SDK: an agent is a card plus one async handler per skill.

``Agent.run()`` connects to the hub's bus socket, registers the card (the hub heartbeats it
while the socket lives), runs a handler for every task pushed to it and settles the task from
the handler's outcome; after a dropped socket it reconnects and registers again (the hub
hands the tasks it held to the queue again, so handlers must be idempotent by task id).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable, Optional

from . import tracing
from .bus import BusClient, BusError, message_text

log = logging.getLogger("nerve_client.agent")
WORKING = "TASK_STATE_WORKING"


class TaskRejected(Exception):
    """Raise from a handler to reject the task (the agent will not do it)."""


class TaskRetry(Exception):
    """Raise from a handler for a transient failure: the bus redelivers after a backoff."""


class Task:
    """A task held by this agent: its request, and the calls that report on it."""

    def __init__(self, agent: "Agent", push: dict):
        self._agent = agent
        self.record: dict = push.get("task", {})
        self.id: str = self.record.get("id", "")
        self.capability: str = push.get("capability", "")
        self.correlation_id: str = push.get("correlationId", "")
        self.deliveries: int = push.get("deliveries", 1)
        # The W3C trace context to continue (the hub's delivery span), or None.
        self.traceparent: Optional[str] = push.get("traceparent")
        self.context_id: Optional[str] = self.record.get("contextId")
        history = self.record.get("history") or [{}]
        self.message: dict = history[0]
        self.canceled = asyncio.Event()

    @property
    def text(self) -> str:
        """The request's text parts, joined."""
        return message_text(self.message)

    @property
    def data(self) -> Any:
        """The request's first data part, or None."""
        for p in self.message.get("parts", []):
            if "data" in p:
                return p["data"]
        return None

    async def progress(self, text: str) -> int:
        """Reports progress (state working with a message); returns the task version."""
        r = await self._agent.invoke("bus.task.status",
                                     {"taskId": self.id, "state": WORKING, "text": text})
        return r["version"]

    async def artifact(self, parts: Any, *, artifact_id: str = "result",
                       name: Optional[str] = None, append: bool = False,
                       last_chunk: bool = False) -> int:
        """Streams an artifact (a str becomes a text part, a dict a data part)."""
        if isinstance(parts, str):
            parts = [{"text": parts}]
        elif isinstance(parts, dict):
            parts = [{"data": parts}]
        art: dict[str, Any] = {"artifactId": artifact_id, "parts": parts}
        if name:
            art["name"] = name
        r = await self._agent.invoke("bus.task.artifact", {
            "taskId": self.id, "artifact": art, "append": append, "lastChunk": last_chunk})
        return r["version"]

    async def ask(self, question: str, timeout: float = 3600.0) -> str:
        """Puts the task in input-required and returns the answer's text. A person answers
        in minutes, so it waits an hour by default; raises BusError (Timeout, saying what
        went unanswered, or Conflict if the task was canceled meanwhile)."""
        r = await self._agent.invoke(
            "bus.task.ask", {"taskId": self.id, "question": question,
                             "timeoutMs": int(timeout * 1000)}, timeout=timeout + 5)
        return r.get("text", "")

    async def delegate(self, capability: str, text: str, *, timeout: float = 30.0) -> dict:
        """Submits a sub-task in this task's chain and waits for its terminal record."""
        sub = await self._agent.submit(capability, text, parent_task_id=self.id)
        return await self._agent.wait(sub["taskId"], timeout=timeout)


Handler = Callable[[Task], Awaitable[Any]]


class Agent(BusClient):
    """An agent: ``Agent(url, token, card)``, ``@agent.skill("cap")``, ``await agent.run()``."""

    def __init__(self, url: str, token: str, card: dict, *, max_in_flight: int = 4,
                 heartbeat_interval: float = 10.0, **kwargs: Any):
        super().__init__(url, token, **kwargs)
        self.card = dict(card)
        self.max_in_flight = max_in_flight
        self.heartbeat_interval = heartbeat_interval
        self.heartbeats = 0  # answered bus.heartbeat calls
        self.handlers: dict[str, Handler] = {}
        self.registered = asyncio.Event()
        self._running: dict[str, tuple[Task, asyncio.Task]] = {}
        self._stop = asyncio.Event()

    def skill(self, capability: str, *, name: Optional[str] = None,
              description: Optional[str] = None) -> Callable[[Handler], Handler]:
        """Decorator: the coroutine handles tasks of ``capability``. Its return value completes
        the task (str: text; dict: data part; None: no message); TaskRejected rejects it,
        TaskRetry retries it, any other exception fails it."""

        def deco(fn: Handler) -> Handler:
            self.handlers[capability] = fn
            skills = self.card.setdefault("skills", [])
            if not any(s.get("id") == capability for s in skills):
                skill = {"id": capability, "name": name or capability}
                if description:
                    skill["description"] = description
                skills.append(skill)
            return fn

        return deco

    async def register(self) -> dict:
        """Registers the card on the current socket."""
        r = await self.invoke("bus.register", {"card": self.card,
                                               "maxInFlight": self.max_in_flight})
        self.registered.set()
        return r

    async def run(self) -> None:
        """Serves until ``stop()``: connect, register, handle tasks, reconnect on drops.
        Raises BusError when the hub refuses the token (Unauthorized) or the card."""
        delay = 0.2
        while not self._stop.is_set():
            try:
                await self.connect()
                await self.register()
                delay = 0.2
            except Exception as e:  # noqa: BLE001 - anything but a refusal is retried
                if isinstance(e, BusError) and e.name in (
                        "Unauthorized", "Forbidden", "BadRequest", "Conflict"):
                    raise
                log.warning("agent connect failed: %s", e)
                await self._sleep(delay + random.random() * delay)
                delay = min(delay * 2, 5.0)
                continue
            stop = asyncio.create_task(self._stop.wait())
            closed = asyncio.create_task(self.closed.wait())
            beat = asyncio.create_task(self._heartbeat())
            await asyncio.wait({stop, closed}, return_when=asyncio.FIRST_COMPLETED)
            for t in (stop, closed, beat):
                t.cancel()
            self.registered.clear()
            for _, t in list(self._running.values()):
                t.cancel()  # the hub requeues what this socket held
            self._running.clear()
            if self._stop.is_set():
                await self.close()

    async def _heartbeat(self) -> None:
        """Checks the registration now and then; the socket's pings keep it alive between."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.invoke("bus.heartbeat", {})
                self.heartbeats += 1
            except BusError as e:
                if e.name == "ConnectionLost":
                    return
                log.warning("heartbeat failed: %s", e)

    async def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._stop.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _on_push(self, data: dict) -> None:
        kind = data.get("kind")
        if kind == "bus.task":
            task = Task(self, data)
            handler = self.handlers.get(task.capability)
            if handler is None:
                await self.notify("bus.task.reject", {"taskId": task.id,
                                                      "reason": "no handler for this capability"})
                return
            self._running[task.id] = (task, asyncio.create_task(self._handle(task, handler)))
        elif kind == "bus.task.canceled":
            entry = self._running.pop(str(data.get("taskId")), None)
            if entry is not None:
                entry[0].canceled.set()
                entry[1].cancel()
        else:
            await super()._on_push(data)

    async def _handle(self, task: Task, handler: Handler) -> None:
        attrs = {"nerve.bus.capability": task.capability, "nerve.bus.task_id": task.id,
                 "nerve.bus.correlation_id": task.correlation_id,
                 "nerve.bus.deliveries": task.deliveries, "nerve.bus.agent": self.card.get("id")}
        # The handler and the settling call run in a span continuing the submitter's trace.
        with tracing.span("bus.deliver", "consumer", parent=task.traceparent,
                          attributes=attrs) as span:
            op = await self._run_handler(task, handler)
            if span is not None and op is not None:
                span.set_attribute("nerve.bus.outcome", op.rsplit(".", 1)[-1])
                if op == "bus.task.fail":
                    tracing.set_error(span, "the handler failed")

    async def _run_handler(self, task: Task, handler: Handler) -> Optional[str]:
        """Runs the handler and settles the task; returns the settling operation (None when
        the handler was cancelled)."""
        op, data = "bus.task.complete", {"taskId": task.id}
        try:
            result = await handler(task)
            if isinstance(result, str):
                data["text"] = result
            elif isinstance(result, dict):
                data["message"] = {"role": "ROLE_AGENT", "parts": [{"data": result}]}
        except asyncio.CancelledError:
            return None
        except TaskRejected as e:
            op, data = "bus.task.reject", {"taskId": task.id, "reason": str(e) or "rejected"}
        except TaskRetry as e:
            op, data = "bus.task.retry", {"taskId": task.id, "reason": str(e) or "retry"}
        except Exception as e:  # noqa: BLE001 - a handler failure fails its task only
            log.exception("handler for %s failed", task.capability)
            # A bus error already reads as a reason ("Timeout: nobody answered …").
            reason = str(e) if isinstance(e, BusError) else f"{type(e).__name__}: {e}"
            op, data = "bus.task.fail", {"taskId": task.id, "reason": reason}
        finally:
            self._running.pop(task.id, None)
        try:
            await self.invoke(op, data)
        except BusError as e:
            if e.name not in ("Conflict", "NotFound", "ConnectionLost"):
                log.warning("settling %s failed: %s", task.id, e)
        return op
