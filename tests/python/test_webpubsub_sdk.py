"""The official Python Web PubSub SDKs (azure-messaging-webpubsubclient and
azure-messaging-webpubsubservice, pinned in requirements.txt) against the real `nerve` binary:
REST sends to a group reach the client's group-message callback; and a reliable client that
closes its own socket, as the SDK's recovery test does, keeps its connection and misses
nothing, on one node and across two nodes sharing a real Redis."""

import threading

from websocket import WebSocketConnectionClosedException

from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import CallbackType, WebPubSubDataType
from azure.messaging.webpubsubservice import WebPubSubServiceClient

from nerve_harness import Hub, Redis, SwitchProxy, cluster, wait_for

# The codes the SDK's recovery test and Azure's samples close with, and two more.
CLOSE_CODES = (1000, 1001, 3001, 4000)


class Observed:
    """An official client and what its callbacks saw."""

    def __init__(self, service, user, roles=("webpubsub.joinLeaveGroup",)):
        def url():
            return service.get_client_access_token(user_id=user, roles=list(roles))["url"]

        self.client = WebPubSubClient(WebPubSubClientCredential(url), message_retry_total=10)
        self.lock = threading.Lock()
        self.group, self.server, self.connected, self.disconnected = [], [], [], []
        self.closed_last = None
        self.client.subscribe(CallbackType.GROUP_MESSAGE, self._record(self.group))
        self.client.subscribe(CallbackType.SERVER_MESSAGE, self._record(self.server))
        self.client.subscribe(CallbackType.CONNECTED, self._record(self.connected))
        self.client.subscribe(CallbackType.DISCONNECTED, self._record(self.disconnected))
        self.client.open()
        wait_for(lambda: self.connected, 10, f"{user} connected")

    def _record(self, into):
        def record(e):
            with self.lock:
                into.append(e)
        return record

    def data(self):
        with self.lock:
            return [e.data for e in self.group]

    def close_socket(self, code):
        """Closes the SDK's socket with a close frame carrying `code`, as the SDK's own recovery
        test does; the SDK's reading thread then gets the hub's answer and recovers (the
        test's `sock.close` would read that answer itself, on this thread)."""
        # After an earlier close, the SDK may still be recovering and still show the socket it
        # is leaving: wait for a socket other than the one closed last, and if that one too is
        # already gone when the close frame goes out, close the one the SDK opens next.
        while True:
            ws = wait_for(lambda: self.client.is_connected() and self.client._ws
                          and self.client._ws.sock is not self.closed_last
                          and self.client._ws.sock, 30, "the client connected again")
            self.closed_last = ws
            try:
                ws.send_close(status=code)
                return
            except (BrokenPipeError, ConnectionResetError, WebSocketConnectionClosedException):
                continue

    def stop(self):
        self.client.close()


def group_sends_are_group_messages():
    hub = Hub()
    try:
        service = WebPubSubServiceClient.from_connection_string(hub.connection_string(), hub="pyhub")
        c = Observed(service, "reader")
        try:
            c.client.join_group("room")
            service.send_to_group("room", "hello", content_type="text/plain")
            service.send_to_group("room", {"n": 1})
            service.send_to_group("room", b"\x01\x02\x03\x04", content_type="application/octet-stream")
            wait_for(lambda: len(c.group) >= 3, 10, lambda: f"3 group messages (have {c.group})")
            got = [(e.group, e.from_user_id, e.data_type, e.data) for e in c.group]
            assert got == [
                ("room", None, WebPubSubDataType.TEXT, "hello"),
                ("room", None, WebPubSubDataType.JSON, {"n": 1}),
                ("room", None, WebPubSubDataType.BINARY, b"\x01\x02\x03\x04"),
            ], got
            assert c.server == [], "a group send is no server message"
        finally:
            c.stop()
    finally:
        hub.stop()


def stream_with_closes(client, publish, before_close=lambda: None, total=60):
    """Publishes `total` messages, closing the client's socket with each of CLOSE_CODES along
    the way; checks every message arrived once, in order, on the same connection."""
    connection_id = client.connected[0].connection_id
    closes = {10 + 12 * k: code for k, code in enumerate(CLOSE_CODES)}
    for i in range(total):
        if i in closes:
            before_close()
            client.close_socket(closes[i])
        publish(f"m{i}")
    expected = [f"m{i}" for i in range(total)]
    wait_for(lambda: len(client.data()) >= total, 40,
             lambda: f"{total} messages after the closes (have {len(client.data())})")
    publish("end")
    wait_for(lambda: "end" in client.data(), 10, "the end marker")
    assert client.data() == expected + ["end"], client.data()
    assert client.client._connection_id == connection_id, "the same connection, recovered"
    assert len(client.connected) == 1 and client.disconnected == [], "never a new connection"


def close_and_resume_on_one_node():
    hub = Hub()
    try:
        service = WebPubSubServiceClient.from_connection_string(hub.connection_string(), hub="pyhub")
        c = Observed(service, "closer")
        try:
            c.client.join_group("live")
            stream_with_closes(c, lambda m: service.send_to_group("live", m, content_type="text/plain"))
        finally:
            c.stop()
    finally:
        hub.stop()


def close_and_resume_across_nodes():
    redis = Redis()
    nodes = []
    try:
        nodes = cluster(redis, 2)
        first, second = nodes
        # The client reaches the cluster through a proxy that sends each reconnection to the
        # other node, as a load balancer may.
        proxy = SwitchProxy(first.port)
        via_proxy = WebPubSubServiceClient.from_connection_string(
            first.connection_string(proxy.port), hub="pyhub")
        publisher = WebPubSubServiceClient.from_connection_string(second.connection_string(), hub="pyhub")
        c = Observed(via_proxy, "traveller")

        def switch():
            proxy.target = second.port if proxy.target == first.port else first.port

        try:
            c.client.join_group("live")
            stream_with_closes(
                c, lambda m: publisher.send_to_group("live", m, content_type="text/plain"), switch)
        finally:
            c.stop()
            proxy.close()
    finally:
        for n in nodes:
            n.stop()
        redis.stop()


if __name__ == "__main__":
    for test in (group_sends_are_group_messages, close_and_resume_on_one_node,
                 close_and_resume_across_nodes):
        test()
        print(f"ok {test.__name__}")
