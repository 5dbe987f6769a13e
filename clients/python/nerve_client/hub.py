"""Hub client for the Azure Web PubSub JSON subprotocols.

It keeps one logical connection alive across dropped sockets: on the reliable protocol it
recovers the same session (``awps_connection_id`` + ``awps_reconnection_token``) and drops
frames it has already seen, so every group and server message is delivered exactly once; when
recovery is refused (close 1008) or impossible it opens a new connection and rejoins groups,
each after the last offset seen in it: a hub keeping the group's history sends what was missed
meanwhile, and messages at or before that offset are dropped as already seen.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import urlencode, urlsplit, urlunsplit, parse_qsl

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from . import tracing

RELIABLE = "json.reliable.webpubsub.azure.v1"
JSON = "json.webpubsub.azure.v1"
NO_RECOVERY = 1008

def _dumps(frame: dict) -> str:
    return json.dumps(frame, separators=(",", ":"))


log = logging.getLogger("nerve_client.hub")


class HubError(Exception):
    """A failure of the hub connection (handshake refused, closed, timed out). A refused
    handshake has the HTTP ``status`` (401 for a bad token) and the hub's ``reason``."""

    def __init__(self, message: str, *, status: Optional[int] = None,
                 reason: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


def handshake_refusal(e: BaseException) -> Optional[tuple[int, str]]:
    """The HTTP status and the hub's reason of a refused WebSocket handshake, if ``e`` is
    one: the hub answers ``{"code", "message"}`` JSON (or plain text) with the status."""
    if not isinstance(e, InvalidStatus):
        return None
    response = e.response
    body = (response.body or b"").decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(body)
        reason = str(parsed.get("message") or parsed.get("code") or body)
    except (ValueError, AttributeError):
        reason = body
    return response.status_code, reason or response.reason_phrase


class AckError(HubError):
    """The hub answered a request with ``success: false``."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass
class Message:
    """A group or server message as delivered by the hub."""

    source: str  # "group" or "server"
    data: Any
    data_type: str = "json"
    group: Optional[str] = None
    from_user_id: Optional[str] = None
    sequence_id: Optional[int] = None
    offset: Optional[str] = None  # its place in the group's history, when the hub keeps one
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def payload(self) -> Any:
        """The data decoded by its type: bytes for binary, the value otherwise."""
        if self.data_type == "binary" and isinstance(self.data, str):
            return base64.b64decode(self.data)
        return self.data


Handler = Callable[..., Any]


def encode_data(data: Any, data_type: str) -> Any:
    """Encodes a payload for the wire (binary travels as base64)."""
    if data_type == "binary":
        if isinstance(data, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(data)).decode()
        return data
    if data_type == "text" and not isinstance(data, str):
        raise TypeError("text data must be a str")
    return data


def parse_offset(offset: Any) -> Optional[tuple[int, int]]:
    """An offset ``"<ms>-<seq>"`` as a pair that orders as the history does (None if not one)."""
    if not isinstance(offset, str):
        return None
    ms, _, seq = offset.partition("-")
    if not ms.isdigit() or not (seq or "0").isdigit():
        return None
    return int(ms), int(seq or "0")


def recovery_url(url: str, connection_id: str, token: str) -> str:
    """The client URL with the recovery parameters added (the access token is kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if not k.startswith("awps_")]
    query += [("awps_connection_id", connection_id), ("awps_reconnection_token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class HubClient:
    """A Web PubSub client: groups, sends, events, acks, exactly-once recovery.

    Counters: ``recoveries`` (sessions resumed), ``reconnects`` (new connections after the
    first), ``duplicates`` (redelivered messages dropped), ``pongs`` (keep-alive answers)."""

    def __init__(
        self,
        url: str,
        *,
        protocol: str = RELIABLE,
        ack_timeout: float = 10.0,
        ping_interval: float = 20.0,
        sequence_ack_interval: float = 1.0,
        recovery_window: float = 30.0,
        queue_size: int = 1000,
    ):
        if protocol not in (RELIABLE, JSON):
            raise ValueError(f"unsupported protocol {protocol}")
        self.url = url
        self.protocol = protocol
        self.ack_timeout = ack_timeout
        self.ping_interval = ping_interval
        self.sequence_ack_interval = sequence_ack_interval
        self.recovery_window = recovery_window
        self.queue_size = queue_size
        self.connection_id: Optional[str] = None
        self.user_id: Optional[str] = None
        self.recoveries = 0
        self.reconnects = 0
        self.duplicates = 0
        self.pongs = 0
        self._reconnection_token: Optional[str] = None
        self._lost_at: Optional[float] = None
        self._ws: Optional[ClientConnection] = None
        self._ready = asyncio.Event()
        self._stopped = False
        self._ack_id = 0
        self._pending: dict[int, tuple[dict, asyncio.Future]] = {}
        self._groups: set[str] = set()
        self._offsets: dict[str, str] = {}  # the last offset seen per group
        self._last_seq = 0
        self._acked_seq = 0
        self._handlers: dict[str, list[Handler]] = {}
        self._queues: list[asyncio.Queue] = []
        self._tasks: list[asyncio.Task] = []
        self._first: Optional[asyncio.Future] = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> "HubClient":
        """Connects and waits for the ``connected`` event; raises HubError if refused."""
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        hub = urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]
        # The connection loop starts inside the span, so the first upgrade carries its
        # traceparent and the hub's connection span becomes its child.
        with tracing.span("nerve.connect", attributes={
                "nerve.hub": hub, **tracing.server_attributes(self.url)}) as span:
            self._tasks.append(asyncio.create_task(self._run()))
            self._tasks.append(asyncio.create_task(self._timers()))
            try:
                await self._first
            except BaseException as e:
                tracing.set_error(span, type(e).__name__)
                await self.stop()
                raise
            if span is not None and self.connection_id:
                span.set_attribute("nerve.connection_id", self.connection_id)
        return self

    async def stop(self) -> None:
        """Closes the connection for good and fails pending requests."""
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        if self._ws is not None:
            await self._ws.close()
        for t in self._tasks:
            try:
                await t
            except BaseException:
                pass
        self._fail_pending(HubError("client stopped"))
        for q in self._queues:
            if q.full():
                q.get_nowait()  # make room for the end marker
            q.put_nowait(None)

    async def __aenter__(self) -> "HubClient":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def drop_socket(self) -> None:
        """Aborts the socket without a close handshake, as a network failure would."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    @property
    def acked_sequence_id(self) -> int:
        """The highest sequence id acknowledged to the hub so far."""
        return self._acked_seq

    # ---- callbacks and iteration -------------------------------------------------------------

    def on(self, event: str, handler: Handler) -> None:
        """Registers a callback: ``group-message``, ``server-message`` (a Message),
        ``connected`` (connection id), ``disconnected`` (reason) or ``rejoin-failed`` (group, error).
        Callbacks may be plain functions or coroutines."""
        self._handlers.setdefault(event, []).append(handler)

    def messages(self) -> "MessageStream":
        """Every group and server message from now on, in order (ends when stopped).
        The stream is bounded: a consumer that falls behind slows the reader down."""
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self._queues.append(q)
        return MessageStream(q, lambda: self._queues.remove(q) if q in self._queues else None)

    async def _emit(self, event: str, *args: Any) -> None:
        for h in self._handlers.get(event, []):
            try:
                r = h(*args)
                if isinstance(r, Awaitable):
                    await r
            except Exception:  # a user callback must not kill the connection
                log.exception("%s handler failed", event)

    # ---- requests --------------------------------------------------------------------------

    async def join_group(self, group: str) -> None:
        """Joins a group (rejoined automatically after a new connection)."""
        await self._request({"type": "joinGroup", "group": group})
        self._groups.add(group)

    async def leave_group(self, group: str) -> None:
        """Leaves a group."""
        self._groups.discard(group)
        self._offsets.pop(group, None)
        await self._request({"type": "leaveGroup", "group": group})

    async def send_to_group(
        self, group: str, data: Any, data_type: str = "json", *, no_echo: bool = False,
        ack: bool = True,
    ) -> None:
        """Publishes to a group; with ``ack`` waits for the hub to confirm (AckError if refused)."""
        frame = {"type": "sendToGroup", "group": group, "dataType": data_type,
                 "data": encode_data(data, data_type), "noEcho": no_echo}
        with tracing.span("nerve.publish", "producer", attributes={
                "nerve.group": group, "nerve.data_type": data_type}) as span:
            await self._traced(span, self._request(frame) if ack else self._send(frame))

    async def send_event(self, event: str, data: Any, data_type: str = "json", *,
                         ack: bool = True) -> None:
        """Sends a user event to the hub's upstream handler."""
        frame = {"type": "event", "event": event, "dataType": data_type,
                 "data": encode_data(data, data_type)}
        with tracing.span("nerve.send_event", attributes={
                "nerve.event": event, "nerve.data_type": data_type}) as span:
            await self._traced(span, self._request(frame) if ack else self._send(frame))

    @staticmethod
    async def _traced(span: Any, request: Awaitable[None]) -> None:
        try:
            await request
        except HubError as e:
            tracing.set_error(span, getattr(e, "name", None) or "HubError")
            raise

    async def _request(self, frame: dict) -> None:
        self._ack_id += 1
        frame = {**frame, "ackId": self._ack_id}
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._ack_id] = (frame, fut)
        try:
            await self._send(frame)
            await asyncio.wait_for(asyncio.shield(fut), self.ack_timeout)
        except asyncio.TimeoutError:
            raise HubError(f"no ack for {frame['type']} within {self.ack_timeout}s") from None
        finally:
            self._pending.pop(frame["ackId"], None)

    async def _send(self, frame: dict) -> None:
        """Sends once connected; a frame lost with the socket is resent after recovery."""
        while True:
            await self._ready.wait()
            ws = self._ws
            try:
                await ws.send(_dumps(frame))
                return
            except ConnectionClosed:
                if "ackId" in frame:
                    return  # pending: resent on recovery, failed on a new connection
                self._ready.clear()

    def _fail_pending(self, err: Exception) -> None:
        for _, fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(err)

    # ---- connection loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.2
        while not self._stopped:
            recovering = self._reconnection_token is not None and self.connection_id is not None
            url = (recovery_url(self.url, self.connection_id, self._reconnection_token)
                   if recovering else self.url)
            try:
                first = self._first is not None and not self._first.done()
                ws = await connect(url, subprotocols=[self.protocol], open_timeout=10,
                                   max_size=2**20 * 2, ping_interval=None,
                                   additional_headers=tracing.headers() if first else {})
            except (OSError, WebSocketException, asyncio.TimeoutError) as e:
                if self._first is not None and not self._first.done():
                    refused = handshake_refusal(e)
                    if refused is None:
                        self._first.set_exception(HubError(f"connect failed: {e}"))
                    else:
                        status, reason = refused
                        self._first.set_exception(HubError(
                            f"connect failed: HTTP {status}: {reason}", status=status,
                            reason=reason))
                    return
                if recovering and self._lost_at is not None and (
                        asyncio.get_running_loop().time() - self._lost_at > self.recovery_window):
                    self._forget_session()
                await asyncio.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            self._ws = ws
            close_code = await self._read(ws, recovering)
            self._ready.clear()
            if self._stopped:
                return
            if self._lost_at is None:  # the recovery window runs from the first drop
                self._lost_at = asyncio.get_running_loop().time()
            await self._emit("disconnected", f"socket closed ({close_code})")
            if close_code == NO_RECOVERY or self.protocol != RELIABLE:
                self._forget_session()

    def _forget_session(self) -> None:
        self._reconnection_token = None
        self.connection_id = None
        self._last_seq = self._acked_seq = 0
        self._fail_pending(HubError("connection lost; the request may not have been applied"))

    async def _read(self, ws: ClientConnection, recovering: bool) -> Optional[int]:
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                try:
                    frame = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(frame, dict):
                    await self._on_frame(frame, ws, recovering)
        except ConnectionClosed:
            pass
        return ws.close_code

    async def _on_frame(self, f: dict, ws: ClientConnection, recovering: bool) -> None:
        kind = f.get("type")
        if kind == "message":
            seq = f.get("sequenceId")
            if isinstance(seq, int):
                if seq <= self._last_seq:
                    self.duplicates += 1
                    return  # already delivered before the socket dropped
                self._last_seq = seq
                if self._last_seq - self._acked_seq >= 300:
                    await self._send_sequence_ack(ws)
            group, offset = f.get("group"), parse_offset(f.get("offset"))
            if isinstance(group, str) and offset is not None:
                last = parse_offset(self._offsets.get(group))
                if last is not None and offset <= last:
                    self.duplicates += 1
                    return  # replayed after a rejoin, and seen before
                self._offsets[group] = f["offset"]
            msg = Message(source=f.get("from", "server"), data=f.get("data"),
                          data_type=f.get("dataType", "json"), group=f.get("group"),
                          from_user_id=f.get("fromUserId"), sequence_id=seq,
                          offset=f.get("offset") if offset is not None else None, raw=f)
            await self._emit("group-message" if msg.source == "group" else "server-message", msg)
            for q in list(self._queues):
                await q.put(msg)
        elif kind == "ack":
            entry = self._pending.get(f.get("ackId"))
            if entry is None or entry[1].done():
                return
            err = f.get("error") or {}
            if f.get("success") or err.get("name") == "Duplicate":
                entry[1].set_result(None)
            else:
                entry[1].set_exception(AckError(err.get("name", "Error"), err.get("message", "")))
        elif kind == "pong":
            self.pongs += 1
        elif kind == "system" and f.get("event") == "connected":
            await self._on_connected(f, ws, recovering)
        elif kind == "system" and f.get("event") == "disconnected":
            await self._emit("disconnected", f.get("message", ""))

    async def _on_connected(self, f: dict, ws: ClientConnection, recovering: bool) -> None:
        new_session = f.get("connectionId") != self.connection_id or not recovering
        self.connection_id = f.get("connectionId")
        self.user_id = f.get("userId")
        self._reconnection_token = f.get("reconnectionToken") or self._reconnection_token
        self._lost_at = None
        if recovering and not new_session:
            self.recoveries += 1
            for frame, fut in list(self._pending.values()):
                if not fut.done():  # same connection: a repeat is answered Duplicate
                    await ws.send(_dumps(frame))
        self._ready.set()
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        elif new_session:
            self.reconnects += 1
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(asyncio.create_task(self._rejoin()))
        await self._emit("connected", self.connection_id)

    async def _rejoin(self) -> None:
        for g in sorted(self._groups):
            join = {"type": "joinGroup", "group": g}
            if g in self._offsets:
                join["after"] = self._offsets[g]
            try:
                await self._request(join)
            except HubError as e:
                await self._emit("rejoin-failed", g, e)

    async def _send_sequence_ack(self, ws: ClientConnection) -> None:
        seq = self._last_seq
        try:
            await ws.send(_dumps({"type": "sequenceAck", "sequenceId": seq}))
            self._acked_seq = seq
        except ConnectionClosed:
            pass

    async def _timers(self) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_interval
        while not self._stopped:
            await asyncio.sleep(self.sequence_ack_interval)
            if not self._ready.is_set() or self._ws is None:
                continue
            if self.protocol == RELIABLE and self._last_seq > self._acked_seq:
                await self._send_sequence_ack(self._ws)
            if loop.time() >= next_ping:
                next_ping = loop.time() + self.ping_interval
                try:
                    await self._ws.send('{"type":"ping"}')
                except ConnectionClosed:
                    pass


class MessageStream:
    """An async iterator over a client's messages; ``close()`` stops receiving."""

    def __init__(self, queue: asyncio.Queue, on_close: Callable[[], None]):
        self._queue = queue
        self._on_close = on_close

    def __aiter__(self) -> "MessageStream":
        return self

    async def __anext__(self) -> Message:
        m = await self._queue.get()
        if m is None:
            raise StopAsyncIteration
        return m

    async def next(self, timeout: float) -> Message:
        """The next message, or asyncio.TimeoutError after ``timeout`` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        """Stops feeding this stream."""
        self._on_close()
