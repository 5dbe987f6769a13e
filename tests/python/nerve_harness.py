"""Starts the real `nerve` binary on a free port and speaks the bus agent protocol over
/bus/ws (hub/docs/agent-protocol.md) with the `websockets` library."""

import asyncio
import itertools
import json
import os
import secrets
import subprocess
import tempfile
import time

import jwt
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Hub:
    """A running `nerve` process (killed by `stop`)."""

    def __init__(self, config: str = "[bus]\nfast = true\n"):
        self.key = "py-test-" + secrets.token_hex(16)
        binary = os.environ.get("NERVE_BIN", os.path.join(ROOT, "target", "debug", "nerve"))
        self.config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.config.write(config)
        self.config.close()
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--access-key", self.key,
             "--log-level", "warn", "--config", self.config.name],
            stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        self.port = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("nerve exited before printing its endpoint")
            if line.startswith("Endpoint=http://127.0.0.1:"):
                self.port = int(line.split(":")[2].split(";")[0])
                break
        if self.port is None:
            raise RuntimeError("nerve did not print its endpoint in time")
        self.base = f"http://127.0.0.1:{self.port}"

    def token(self, user, roles, hub="bus", ttl=600):
        now = int(time.time())
        claims = {"aud": f"{self.base}/client/hubs/{hub}", "sub": user, "role": roles,
                  "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self.key, algorithm="HS256")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        os.unlink(self.config.name)


class BusConnection:
    """One /bus/ws connection: invoke operations, receive pushed tasks."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending = {}
        self.pushes = asyncio.Queue(maxsize=1000)
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, hub, user, roles):
        url = f"ws://127.0.0.1:{hub.port}/bus/ws?access_token={hub.token(user, roles)}"
        ws = await websockets.connect(url, subprotocols=["json.webpubsub.azure.v1"])
        hello = json.loads(await ws.recv())
        assert hello["event"] == "connected", hello
        return cls(ws)

    async def _read(self):
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame["type"] == "invokeResponse":
                fut = self.pending.pop(frame["invocationId"], None)
                if fut and not fut.done():
                    fut.set_result(frame)
            elif frame["type"] == "message":
                await self.pushes.put(frame["data"])

    async def invoke(self, op, data, timeout=30):
        iid = str(next(self.ids))
        fut = asyncio.get_running_loop().create_future()
        self.pending[iid] = fut
        await self.ws.send(json.dumps({"type": "invoke", "invocationId": iid, "event": op,
                                       "dataType": "json", "data": data}))
        frame = await asyncio.wait_for(fut, timeout)
        if not frame["success"]:
            raise RuntimeError(f"{op} failed: {frame['error']}")
        return frame["data"]

    async def next_push(self, kind, timeout=30):
        while True:
            p = await asyncio.wait_for(self.pushes.get(), timeout)
            if p.get("kind") == kind:
                return p

    async def close(self):
        self.reader.cancel()
        await self.ws.close()
