"""Tokens from a connection string, so a program can reach a hub without JWT code.

``ConnectionString`` reads ``Endpoint=…;AccessKey=…;Version=1.0;`` (what ``nerve`` prints at
start and the Azure server SDKs read) and signs HS256 tokens with the key, as the hub and the
Azure SDKs do: client tokens (``aud`` = the hub's client endpoint) with a user, roles and
groups, and REST tokens (``aud`` = the URL of the call).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Iterable, Optional
from urllib.parse import quote

ENV = "NERVE_CONNECTION_STRING"
_PATHS = {"default": "client/hubs", "mqtt": "clients/mqtt/hubs",
          "socketio": "clients/socketio/hubs"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(claims: dict, key: str) -> str:
    """An HS256 JWT of ``claims`` signed with the UTF-8 bytes of ``key``."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


class ConnectionString:
    """A hub's endpoint and access key; ``client_token``, ``client_url`` and ``rest_token``
    sign with the key."""

    def __init__(self, text: str):
        fields = {}
        for part in text.strip().split(";"):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"connection string: {part!r} is not Name=value")
            fields[name.strip().lower()] = value.strip()
        endpoint = fields.get("endpoint", "").rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError("connection string: needs Endpoint=http(s)://…")
        if not fields.get("accesskey"):
            raise ValueError("connection string: needs AccessKey=…")
        port = fields.get("port")
        if port and endpoint.count(":") < 2:
            endpoint = f"{endpoint}:{port}"
        self.endpoint: str = endpoint
        self.access_key: str = fields["accesskey"]

    @classmethod
    def from_env(cls, name: str = ENV) -> "ConnectionString":
        """The connection string in environment variable ``name``."""
        text = os.environ.get(name)
        if not text:
            raise ValueError(f"set {name} to the connection string the hub printed at start "
                             "(also on its start page, http://127.0.0.1:8080/)")
        return cls(text)

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"ConnectionString({self.endpoint!r}, AccessKey=…)"

    def client_token(self, hub: str, *, user: Optional[str] = None,
                     roles: Iterable[str] = (), groups: Iterable[str] = (),
                     minutes: float = 60, protocol: str = "default") -> str:
        """A client token for ``hub`` (``protocol``: default, mqtt or socketio)."""
        path = _PATHS.get(protocol.lower())
        if path is None:
            raise ValueError(f"unknown client protocol {protocol!r}; "
                             "expected default, mqtt or socketio")
        now = int(time.time())
        claims: dict = {"aud": f"{self.endpoint}/{path}/{hub}", "iat": now,
                        "exp": now + int(minutes * 60)}
        if user:
            claims["sub"] = user
        if roles := list(roles):
            claims["role"] = roles
        if groups := list(groups):
            claims["webpubsub.group"] = groups
        return sign(claims, self.access_key)

    def client_url(self, hub: str, **options) -> str:
        """``ws(s)://…/client/hubs/<hub>?access_token=…`` (options as ``client_token``)."""
        token = self.client_token(hub, **options)
        path = _PATHS[options.get("protocol", "default").lower()]
        ws = "wss" + self.endpoint[5:] if self.endpoint.startswith("https") \
            else "ws" + self.endpoint[4:]
        return f"{ws}/{path}/{quote(hub)}?access_token={token}"

    def rest_token(self, path: str, *, minutes: float = 60) -> str:
        """A bearer token for the REST call at ``path`` (``/api/hubs/chat/:send``) or URL."""
        target = path.split("?")[0]
        if not target.startswith(("http://", "https://")):
            target = f"{self.endpoint}/{target.lstrip('/')}"
        now = int(time.time())
        return sign({"aud": target, "iat": now, "exp": now + int(minutes * 60)},
                    self.access_key)
