"""A minimal asyncio client for the Nerve bus over the hub's WebSocket (/bus/ws), following
hub/docs/agent-protocol.md: invoke operations, receive pushed tasks, run a task handler."""

import asyncio
import itertools
import json
import time

import jwt
import websockets

SUBPROTOCOL = "json.webpubsub.azure.v1"


def mint_token(endpoint, access_key, user, roles, hub="bus", ttl=3600):
    """A hub client token for the bus hub (what a backend holding the access key hands out)."""
    now = int(time.time())
    claims = {"aud": f"{endpoint}/client/hubs/{hub}", "sub": user, "role": roles,
              "iat": now, "exp": now + ttl}
    return jwt.encode(claims, access_key, algorithm="HS256")


class BusError(Exception):
    """An operation failed; `name` is the protocol's error name."""

    def __init__(self, op, error):
        super().__init__(f"{op}: {error.get('name')}: {error.get('message')}")
        self.name = error.get("name")


class BusConnection:
    """One /bus/ws connection: invoke operations, receive pushes."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending = {}
        self.pushes = asyncio.Queue(maxsize=1000)
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, endpoint, token):
        url = endpoint.replace("http://", "ws://").replace("https://", "wss://")
        ws = await websockets.connect(f"{url}/bus/ws?access_token={token}",
                                      subprotocols=[SUBPROTOCOL])
        hello = json.loads(await ws.recv())
        if hello.get("event") != "connected":
            raise RuntimeError(f"unexpected greeting {hello}")
        return cls(ws)

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["type"] == "invokeResponse":
                    fut = self.pending.pop(frame["invocationId"], None)
                    if fut and not fut.done():
                        fut.set_result(frame)
                elif frame["type"] == "message":
                    await self.pushes.put(frame["data"])
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("bus connection closed"))

    async def invoke(self, op, data, timeout=60):
        iid = str(next(self.ids))
        fut = asyncio.get_running_loop().create_future()
        self.pending[iid] = fut
        await self.ws.send(json.dumps({"type": "invoke", "invocationId": iid, "event": op,
                                       "dataType": "json", "data": data}))
        frame = await asyncio.wait_for(fut, timeout)
        if not frame["success"]:
            raise BusError(op, frame.get("error") or {})
        return frame["data"]

    async def next_push(self, kind, timeout=None):
        while True:
            push = await asyncio.wait_for(self.pushes.get(), timeout)
            if push.get("kind") == kind:
                return push

    async def register(self, card, max_in_flight=4):
        """Registers an agent card; its skills' tasks are pushed to this connection."""
        return await self.invoke("bus.register", {"card": card, "maxInFlight": max_in_flight})

    async def run(self, handler):
        """Runs `handler(conn, push)` for every pushed task, concurrently; the handler returns
        the final text (the task completes) or raises (the task fails)."""
        running = set()
        while True:
            push = await self.next_push("bus.task")
            t = asyncio.create_task(self._run(handler, push))
            running.add(t)
            t.add_done_callback(running.discard)

    async def _run(self, handler, push):
        task_id = push["task"]["id"]
        try:
            text = await handler(self, push)
            await self.invoke("bus.task.complete", {"taskId": task_id, "text": text})
        except Exception as e:  # a failed handler fails its task, never the agent
            try:
                await self.invoke("bus.task.fail", {"taskId": task_id, "reason": str(e)})
            except Exception:
                pass

    async def close(self):
        self.reader.cancel()
        await self.ws.close()
