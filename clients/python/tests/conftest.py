"""Starts the real `nerve` binary for each test and mints client tokens for it."""

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

KEY = "python-client-test-key"
ROOT = Path(__file__).resolve().parents[3]


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(aud: str, sub: str, roles: list[str], key: str = KEY) -> str:
    """HS256 JWT signed with the UTF-8 key bytes, as the Web PubSub SDKs sign."""
    now = int(time.time())
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"aud": aud, "sub": sub, "role": roles, "iat": now,
                            "exp": now + 3600}).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


class Hub:
    """A running `nerve` on a free port."""

    def __init__(self, *extra: str):
        binary = os.environ.get("NERVE_BIN", str(ROOT / "target" / "debug" / "nerve"))
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--access-key", KEY, "--log-level", "warn",
             *extra],
            stdout=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.monotonic() + 20
        while self.port is None:
            line = self.proc.stdout.readline()
            if not line and (self.proc.poll() is not None or time.monotonic() > deadline):
                raise RuntimeError("nerve did not print its endpoint")
            m = re.search(r"Endpoint=http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def client_url(self, hub: str, user: str, roles: list[str]) -> str:
        token = mint(f"{self.endpoint}/client/hubs/{hub}", user, roles)
        return f"ws://127.0.0.1:{self.port}/client/hubs/{hub}?access_token={token}"

    def bus_token(self, user: str, roles: list[str]) -> str:
        return mint(f"{self.endpoint}/client/hubs/bus", user, roles)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def hub():
    h = Hub()
    yield h
    h.stop()


@pytest.fixture
def history_hub(tmp_path):
    """A hub whose hub `chat` keeps each group's history."""
    config = tmp_path / "history.toml"
    config.write_text("[hubs.chat]\nhistory = { max_messages = 100, max_age_secs = 600 }\n")
    h = Hub("--config", str(config))
    yield h
    h.stop()


class Upstream:
    """A real HTTP event handler for the hub: answers the OPTIONS validation, and replies to
    user event `echo` with its body (text/plain), recording every event it receives."""

    def __init__(self):
        events = self.events = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_OPTIONS(self):
                self.send_response(200)
                self.send_header("WebHook-Allowed-Origin", "*")
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                events.append((self.headers.get("ce-type"), self.headers.get("ce-userId"), body))
                if self.headers.get("ce-eventName") == "echo":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body) + 5))
                    self.end_headers()
                    self.wfile.write(b"echo:" + body)
                else:
                    self.send_response(204)
                    self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_with_upstream():
    up = Upstream()
    h = Hub("--upstream", f"hub=chat;url=http://127.0.0.1:{up.port}/{{event}};events=*")
    yield h, up
    h.stop()
    up.stop()
