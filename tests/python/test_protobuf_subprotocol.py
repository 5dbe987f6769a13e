"""The protobuf subprotocols against the real `nerve` binary, spoken by a client that Python's
`protobuf` runtime and `grpcio-tools` (protoc) generate from protocol/proto/webpubsub.v1.proto at
test time; no Nerve code is on the client side. Protobuf, JSON and plain WebSocket clients and
the REST API exchange text, binary, JSON and packed protobuf data in every direction, on one node
and across two nodes sharing a real Redis; the reliable protobuf protocol numbers messages and
gives the unacknowledged ones again after a reconnection; bad frames get the protocol's errors."""

import base64
import contextlib
import importlib
import json
import os
import sys
import tempfile

from google.protobuf import any_pb2, wrappers_pb2
from grpc_tools import protoc
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from azure.messaging.webpubsubservice import WebPubSubServiceClient

from nerve_harness import ROOT, Hub, Redis, cluster

PROTO_DIR = os.path.join(ROOT, "protocol", "proto")
HUB = "pbhub"
ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]


def load_generated():
    out = tempfile.mkdtemp(prefix="nerve-pb-")
    includes = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{includes}", f"--python_out={out}",
                        "webpubsub.v1.proto"])
    assert code == 0, f"protoc exited with {code}"
    # protoc names the module after the file: webpubsub.v1.proto -> webpubsub/v1_pb2.py
    spec = importlib.util.spec_from_file_location("webpubsub_v1_pb2", os.path.join(out, "webpubsub", "v1_pb2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pb = load_generated()
# Every socket a test opens, closed when the test ends.
SOCKETS = contextlib.ExitStack()


def ws_connect(uri, **kwargs):
    return SOCKETS.enter_context(connect(uri, open_timeout=10, **kwargs))


def url(hub, user, roles):
    return f"ws://127.0.0.1:{hub.port}/client/hubs/{HUB}?access_token={hub.token(user, roles, hub=HUB)}"


class PbClient:
    """A protobuf-subprotocol client over a plain WebSocket library."""

    def __init__(self, hub, user, roles=ROLES, reliable=False, query=""):
        self.subprotocol = ("protobuf.reliable.webpubsub.azure.v1" if reliable
                            else "protobuf.webpubsub.azure.v1")
        self.ws = ws_connect(url(hub, user, roles) if not query
                             else f"ws://127.0.0.1:{hub.port}/client/hubs/{HUB}{query}",
                             subprotocols=[self.subprotocol])
        assert self.ws.subprotocol == self.subprotocol, self.ws.subprotocol
        self.next_ack = 0

    def recv(self, timeout=10):
        frame = self.ws.recv(timeout=timeout)
        assert isinstance(frame, bytes), f"protobuf frames are binary, got {frame!r}"
        m = pb.DownstreamMessage()
        m.ParseFromString(frame)
        return m

    def connected(self):
        m = self.recv()
        assert m.WhichOneof("message") == "system_message", m
        assert m.system_message.WhichOneof("message") == "connected_message", m
        return m.system_message.connected_message

    def send(self, upstream):
        self.ws.send(upstream.SerializeToString())

    def request(self, field, **kwargs):
        """Sends a request with a fresh ack id and returns its ack."""
        self.next_ack += 1
        up = pb.UpstreamMessage()
        getattr(up, field).CopyFrom(getattr(pb.UpstreamMessage, camel(field))(ack_id=self.next_ack, **kwargs))
        self.send(up)
        return self.until(lambda m: m.WhichOneof("message") == "ack_message"
                          and m.ack_message.ack_id == self.next_ack).ack_message

    def until(self, pred, timeout=10):
        while True:
            m = self.recv(timeout)
            if pred(m):
                return m

    def data(self, timeout=10):
        return self.until(lambda m: m.WhichOneof("message") == "data_message", timeout).data_message


def camel(field):
    """send_to_group_message -> SendToGroupMessage"""
    return "".join(part.title() for part in field.split("_"))


class JsonClient:
    def __init__(self, hub, user):
        self.ws = ws_connect(url(hub, user, ROLES), subprotocols=["json.webpubsub.azure.v1"])
        assert json.loads(self.ws.recv(timeout=10))["event"] == "connected"

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def until(self, pred, timeout=10):
        while True:
            v = json.loads(self.ws.recv(timeout=timeout))
            if pred(v):
                return v

    def join(self, group):
        self.send({"type": "joinGroup", "group": group, "ackId": 1})
        assert self.until(lambda v: v.get("type") == "ack")["success"]

    def message(self):
        return self.until(lambda v: v.get("type") == "message")


def packed(text):
    any_ = any_pb2.Any()
    any_.Pack(wrappers_pb2.StringValue(value=text))
    return any_


def data_of(d):
    """A MessageData as (dataType, value), JSON text parsed."""
    kind = d.WhichOneof("data")
    value = getattr(d, kind)
    return {"text_data": "text", "binary_data": "binary", "json_data": "json",
            "protobuf_data": "protobuf"}[kind], json.loads(value) if kind == "json_data" else value


def every_data_type_crosses_protocols():
    hub = Hub()
    try:
        p = PbClient(hub, "pb-user")
        assert p.connected().connection_id
        j = JsonClient(hub, "json-user")
        assert p.request("join_group_message", group="g").success
        j.join("g")

        # protobuf -> protobuf and JSON: text, binary, json, packed protobuf.
        sends = [
            (pb.MessageData(text_data="hello"), ("text", "hello")),
            (pb.MessageData(binary_data=b"\x00\x01\xff"), ("binary", base64.b64encode(b"\x00\x01\xff").decode())),
            (pb.MessageData(json_data='{"n": 1}'), ("json", {"n": 1})),
            (pb.MessageData(protobuf_data=packed("inner")),
             ("protobuf", base64.b64encode(packed("inner").SerializeToString()).decode())),
        ]
        for data, (json_type, json_data) in sends:
            ack = p.request("send_to_group_message", group="g", data=data)
            assert ack.success, ack
            echo = p.data()
            assert (echo.__getattribute__("from"), echo.group) == ("group", "g"), echo
            assert echo.data == data, (echo.data, data)
            got = j.message()
            assert (got["from"], got["group"], got["dataType"]) == ("group", "g", json_type), got
            assert got["data"] == json_data, got

        member = ws_connect(f"ws://127.0.0.1:{hub.port}/client/hubs/{HUB}?access_token="
                         f"{hub.token('raw-member', ROLES, hub=HUB)}")
        rest = WebPubSubServiceClient.from_connection_string(hub.connection_string(), hub=HUB)
        rest.add_user_to_group("g", "raw-member")
        p.request("send_to_group_message", group="g", no_echo=True,
                  data=pb.MessageData(protobuf_data=packed("to raw")))
        assert member.recv(timeout=10) == packed("to raw").SerializeToString()
        p.request("send_to_group_message", group="g", no_echo=True,
                  data=pb.MessageData(text_data="to raw text"))
        assert member.recv(timeout=10) == "to raw text"
        j.message()
        j.message()
        member.close()

        # A JSON client's data reaches the protobuf client: json as json_data, text, binary.
        for frame, expected in [
            ({"dataType": "json", "data": {"k": [1, 2]}}, ("json", {"k": [1, 2]})),
            ({"dataType": "text", "data": "t"}, ("text", "t")),
            ({"dataType": "binary", "data": base64.b64encode(b"\x07").decode()}, ("binary", b"\x07")),
        ]:
            j.send({"type": "sendToGroup", "group": "g", **frame})
            d = p.data()
            assert data_of(d.data) == expected, (d, expected)
        # JSON clients may not claim protobuf data.
        j.send({"type": "sendToGroup", "group": "g", "ackId": 9, "dataType": "protobuf", "data": "AA=="})
        nack = j.until(lambda v: v.get("type") == "ack" and v.get("ackId") == 9)
        assert not nack["success"] and nack["error"]["name"] == "BadRequest", nack

        # REST: to the group, to the user, to everyone, each once with from group / server.
        rest.send_to_group("g", "rest-group", content_type="text/plain")
        d = p.data()
        assert (d.__getattribute__("from"), d.group, data_of(d.data)) == ("group", "g", ("text", "rest-group")), d
        rest.send_to_user("pb-user", {"to": "user"})
        d = p.data()
        assert (d.__getattribute__("from"), d.HasField("group"), data_of(d.data)) == ("server", False, ("json", {"to": "user"})), d
        rest.send_to_all(b"\x09", content_type="application/octet-stream")
        d = p.data()
        assert data_of(d.data) == ("binary", b"\x09"), d

        # Ping, and a role check.
        up = pb.UpstreamMessage(ping_message=pb.UpstreamMessage.PingMessage())
        p.send(up)
        p.until(lambda m: m.WhichOneof("message") == "pong_message")
        weak = PbClient(hub, "weak", roles=[])
        weak.connected()
        ack = weak.request("join_group_message", group="g")
        assert not ack.success and ack.error.name == "Forbidden", ack
        print("ok every_data_type_crosses_protocols")
    finally:
        hub.stop()


def bad_frames_get_the_protocols_errors():
    hub = Hub()
    try:
        p = PbClient(hub, "bad")
        p.connected()
        # A request that fails validation is answered on its ack id.
        ack = p.request("send_to_group_message", group="g")  # no data
        assert not ack.success and ack.error.name == "BadRequest", ack
        # Bytes that are no UpstreamMessage end the connection with 1007, after `disconnected`.
        p.ws.send(b"\xff\xff\xff\xff")
        m = p.recv()
        assert m.system_message.WhichOneof("message") == "disconnected_message", m
        try:
            p.ws.recv(timeout=10)
            raise AssertionError("the hub should close the connection")
        except ConnectionClosed as e:
            assert e.rcvd.code == 1007, e
        # A text frame on the protobuf protocol ends it with 1003.
        t = PbClient(hub, "text")
        t.connected()
        t.ws.send("{}")
        t.until(lambda m: m.WhichOneof("message") == "system_message")
        try:
            t.ws.recv(timeout=10)
            raise AssertionError("the hub should close the connection")
        except ConnectionClosed as e:
            assert e.rcvd.code == 1003, e
        # The other clients carry on.
        ok = PbClient(hub, "ok")
        ok.connected()
        assert ok.request("join_group_message", group="g").success
        print("ok bad_frames_get_the_protocols_errors")
    finally:
        hub.stop()


def reliable_protobuf_numbers_and_recovers():
    hub = Hub()
    try:
        p = PbClient(hub, "rel", reliable=True)
        hello = p.connected()
        assert hello.reconnection_token, hello
        assert p.request("join_group_message", group="r").success
        rest = WebPubSubServiceClient.from_connection_string(hub.connection_string(), hub=HUB)
        for i in range(5):
            rest.send_to_group("r", f"m{i}", content_type="text/plain")
        seen = [p.data() for _ in range(5)]
        assert [d.sequence_id for d in seen] == [1, 2, 3, 4, 5], seen
        assert [d.data.text_data for d in seen] == [f"m{i}" for i in range(5)]
        ack = pb.UpstreamMessage(sequence_ack_message=pb.UpstreamMessage.SequenceAckMessage(sequence_id=2))
        p.send(ack)
        # Drop the socket without a close frame; messages sent meanwhile wait for the client.
        p.ws.socket.close()
        for i in range(5, 7):
            rest.send_to_group("r", f"m{i}", content_type="text/plain")
        q = PbClient(hub, "rel", reliable=True,
                     query=f"?awps_connection_id={hello.connection_id}"
                           f"&awps_reconnection_token={hello.reconnection_token}")
        again = q.connected()
        assert again.connection_id == hello.connection_id, again
        replay = [q.data() for _ in range(5)]
        assert [(d.sequence_id, d.data.text_data) for d in replay] == [
            (3, "m2"), (4, "m3"), (5, "m4"), (6, "m5"), (7, "m6")], replay
        print("ok reliable_protobuf_numbers_and_recovers")
    finally:
        hub.stop()


def across_two_nodes():
    redis = Redis()
    nodes = []
    try:
        nodes = cluster(redis, 2)
        a, b = nodes
        p = PbClient(a, "far")
        p.connected()
        assert p.request("join_group_message", group="x").success
        j = JsonClient(b, "sender")
        j.send({"type": "sendToGroup", "group": "x", "dataType": "json", "data": {"from": "b"}})
        d = p.data(timeout=15)
        assert (d.__getattribute__("from"), d.group, data_of(d.data)) == ("group", "x", ("json", {"from": "b"})), d
        q = PbClient(b, "near")
        q.connected()
        assert q.request("join_group_message", group="y").success
        j2 = JsonClient(a, "listener")
        j2.join("y")
        q.request("send_to_group_message", group="y", data=pb.MessageData(protobuf_data=packed("from a pb")))
        got = j2.message()
        assert got["dataType"] == "protobuf", got
        any_ = any_pb2.Any.FromString(base64.b64decode(got["data"]))
        inner = wrappers_pb2.StringValue()
        assert any_.Unpack(inner) and inner.value == "from a pb", any_
        print("ok across_two_nodes")
    finally:
        for n in nodes:
            n.stop()
        redis.stop()


if __name__ == "__main__":
    for test in (every_data_type_crosses_protocols, bad_frames_get_the_protocols_errors,
                 reliable_protobuf_numbers_and_recovers, across_two_nodes):
        with SOCKETS:
            test()
