"""Starts the real `nerve` binary on a free port (alone, or as nodes sharing a throwaway
`redis-server`), stands in for a load balancer with a TCP proxy, and speaks the bus agent
protocol over /bus/ws (hub/docs/agent-protocol.md) with the `websockets` library."""

import asyncio
import itertools
import json
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time

import jwt
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Hub:
    """A running `nerve` process (killed by `stop`)."""

    def __init__(self, config: str = "[bus]\nfast = true\n", key=None, args=()):
        self.key = key or "py-test-" + secrets.token_hex(16)
        binary = os.environ.get("NERVE_BIN", os.path.join(ROOT, "target", "debug", "nerve"))
        self.config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.config.write(config)
        self.config.close()
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--access-key", self.key,
             "--log-level", "warn", "--config", self.config.name, *args],
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
        # Keep reading stdout, so the hub never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"

    def connection_string(self, port=None):
        """The connection string of this hub, or of a proxy in front of it on `port`."""
        return f"Endpoint=http://127.0.0.1:{port or self.port};AccessKey={self.key};Version=1.0;"

    def wait_ready(self, timeout=20):
        """Waits until /readyz answers 200 (a cluster node reaches Redis)."""
        wait_for(lambda: http_status(f"{self.base}/readyz") == 200, timeout, "/readyz 200")

    def token(self, user, roles, hub="bus", ttl=600):
        now = int(time.time())
        claims = {"aud": f"{self.base}/client/hubs/{hub}", "sub": user, "role": roles,
                  "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self.key, algorithm="HS256")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        os.unlink(self.config.name)


def wait_for(check, timeout=10, what="condition", interval=0.02):
    """Polls `check` until it returns a truthy value; fails with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def http_status(url):
    """The status of GET `url`, or 0 when nothing answers."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Redis:
    """A throwaway `redis-server` on a free port, without persistence (killed by `stop`)."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [os.environ.get("NERVE_REDIS_SERVER", "redis-server"), "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/"
        wait_for(self._pings, 10, "redis-server PONG")

    def _pings(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def cluster(redis, count):
    """`count` nodes on `redis` with one access key and fast heartbeats, all ready."""
    key = "py-cluster-" + secrets.token_hex(16)
    config = "[cluster]\nheartbeat_ms = 200\npresence_ttl_ms = 1000\n"
    nodes = [Hub(config, key, ("--redis", redis.url, "--node-id", f"py{i}")) for i in range(count)]
    for n in nodes:
        n.wait_ready()
    return nodes


class SwitchProxy:
    """A TCP proxy standing in for a load balancer: each new connection goes to `target`, a
    hub port that can change between connections."""

    def __init__(self, target):
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.server.close()


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
