"""Tokens from a connection string against the real binary, and the reasons a refused token
comes back with."""

import time

import pytest

from nerve_client import BusClient, ConnectionString, HubClient, HubError

from conftest import KEY
from nerve_client.tokens import sign

ALL = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]


def connection_string(hub, key=KEY):
    return f"Endpoint={hub.endpoint};AccessKey={key};Version=1.0;"


async def test_a_client_url_from_the_connection_string_connects_as_its_user(hub):
    cs = ConnectionString(connection_string(hub))
    url = cs.client_url("chat", user="alice", roles=ALL, groups=["lobby"])
    assert url.startswith(f"ws://127.0.0.1:{hub.port}/client/hubs/chat?access_token=")
    async with HubClient(url) as c:
        assert c.user_id == "alice"
        inbox = c.messages()
        await c.send_to_group("lobby", "joined by the token", data_type="text")
        assert (await inbox.next(10)).data == "joined by the token"


async def test_bus_and_rest_tokens_are_accepted(hub):
    import urllib.request

    cs = ConnectionString(connection_string(hub))
    async with BusClient(cs.endpoint, cs.client_token("bus", user="w", roles=["bus.watch"])) as bus:
        assert (await bus.agents()) == []
    req = urllib.request.Request(
        f"{hub.endpoint}/api/hubs/chat/:send?api-version=2024-01-01", data=b"hi", method="POST",
        headers={"Authorization": f"Bearer {cs.rest_token('/api/hubs/chat/:send')}",
                 "Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202


def test_connection_strings_are_checked_and_never_shown(monkeypatch):
    cs = ConnectionString("endpoint=https://h/;accesskey=secret;port=8443")
    assert cs.endpoint == "https://h:8443" and "secret" not in repr(cs)
    assert cs.client_url("chat").startswith("wss://h:8443/client/hubs/chat?access_token=")
    for bad in ["AccessKey=k", "Endpoint=http://h", "Endpoint=ftp://h;AccessKey=k", "nonsense"]:
        with pytest.raises(ValueError):
            ConnectionString(bad)
    with pytest.raises(ValueError):
        ConnectionString(connection_string_stub()).client_token("chat", protocol="grpc")
    monkeypatch.delenv("NERVE_CONNECTION_STRING", raising=False)
    with pytest.raises(ValueError, match="NERVE_CONNECTION_STRING"):
        ConnectionString.from_env()
    monkeypatch.setenv("NERVE_CONNECTION_STRING", connection_string_stub())
    assert ConnectionString.from_env().endpoint == "http://h"


def connection_string_stub():
    return "Endpoint=http://h;AccessKey=k;Version=1.0;"


async def test_a_refused_handshake_says_why(hub):
    wrong = ConnectionString(connection_string(hub, key="not-the-key"))
    with pytest.raises(HubError) as e:
        await HubClient(wrong.client_url("chat", user="eve")).start()
    assert e.value.status == 401
    assert "signature is invalid" in str(e.value), str(e.value)
    past = int(time.time()) - 3600
    expired = sign({"aud": f"{hub.endpoint}/client/hubs/chat", "exp": past}, KEY)
    with pytest.raises(HubError) as e:
        await HubClient(f"ws://127.0.0.1:{hub.port}/client/hubs/chat?access_token={expired}").start()
    assert e.value.status == 401 and "has expired" in e.value.reason, e.value.reason
