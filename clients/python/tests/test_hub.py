"""The hub client against the real binary: groups, data types, acks, recovery, rejoin."""

import asyncio
import urllib.request

import pytest

from nerve_client import JSON, AckError, HubClient

from conftest import mint

ALL = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]


async def test_join_send_receive_all_data_types(hub):
    async with HubClient(hub.client_url("chat", "alice", ALL)) as a, \
            HubClient(hub.client_url("chat", "bob", ALL)) as b:
        assert a.user_id == "alice" and a.connection_id
        inbox = b.messages()
        await b.join_group("room")
        await a.send_to_group("room", {"n": 1})
        await a.send_to_group("room", "plain", data_type="text")
        await a.send_to_group("room", b"\x00\x01bin", data_type="binary")
        got = [await inbox.next(10) for _ in range(3)]
        assert [(m.group, m.data_type, m.payload) for m in got] == [
            ("room", "json", {"n": 1}), ("room", "text", "plain"), ("room", "binary", b"\x00\x01bin")]
        assert all(m.from_user_id == "alice" and m.source == "group" for m in got)
        assert [m.sequence_id for m in got] == [1, 2, 3]


async def test_no_echo_and_leave(hub):
    async with HubClient(hub.client_url("chat", "alice", ALL)) as a:
        mine = a.messages()
        await a.join_group("room")
        await a.send_to_group("room", "hidden", data_type="text", no_echo=True)
        await a.send_to_group("room", "echoed", data_type="text")
        assert (await mine.next(10)).data == "echoed"
        await a.leave_group("room")
        await a.send_to_group("room", "gone", data_type="text")
        await a.join_group("room")
        await a.send_to_group("room", "back", data_type="text")
        assert (await mine.next(10)).data == "back"


async def test_callbacks_and_forbidden_acks(hub):
    seen = []
    async with HubClient(hub.client_url("chat", "mallory", [])) as m, \
            HubClient(hub.client_url("chat", "carol", ["webpubsub.joinLeaveGroup.news"])) as c:
        with pytest.raises(AckError) as e:
            await m.join_group("room")
        assert e.value.name == "Forbidden"
        with pytest.raises(AckError) as e:
            await c.send_to_group("news", "x", data_type="text")
        assert e.value.name == "Forbidden"
        done = asyncio.Event()
        c.on("group-message", lambda msg: (seen.append(msg.data), done.set()))
        await c.join_group("news")
        async with HubClient(hub.client_url("chat", "dan", ALL)) as d:
            await d.send_to_group("news", {"headline": 1})
            await asyncio.wait_for(done.wait(), 10)
    assert seen == [{"headline": 1}]


async def test_server_message_from_rest(hub):
    async with HubClient(hub.client_url("chat", "erin", [])) as e:
        inbox = e.messages()
        url = f"{hub.endpoint}/api/hubs/chat/users/erin/:send?api-version=2024-12-01"
        req = urllib.request.Request(url, data=b"hello", method="POST", headers={
            "Content-Type": "text/plain", "Authorization": f"Bearer {mint(url, '', [])}"})
        status = await asyncio.to_thread(lambda: urllib.request.urlopen(req).status)
        assert status == 202
        m = await inbox.next(10)
        assert (m.source, m.data_type, m.data) == ("server", "text", "hello")


async def test_dropped_socket_recovers_exactly_once(hub):
    total = 400
    async with HubClient(hub.client_url("chat", "pub", ALL)) as pub, \
            HubClient(hub.client_url("chat", "sub", ALL), sequence_ack_interval=30) as sub:
        inbox = sub.messages()
        await sub.join_group("feed")
        first_id = sub.connection_id
        received = []

        async def publish():
            for i in range(total):
                await pub.send_to_group("feed", i)

        sender = asyncio.create_task(publish())
        while len(received) < 50:
            received.append((await inbox.next(10)).data)
        sub.drop_socket()  # no close handshake: the hub sees a dead socket
        while len(received) < total:
            received.append((await inbox.next(15)).data)
        await sender
        assert received == list(range(total)), "lost, duplicated or reordered messages"
        assert sub.recoveries == 1 and sub.connection_id == first_id
        assert sub.duplicates > 0, "the hub resent unacked messages; the client must drop them"
        # Messages still flow on the recovered session.
        await pub.send_to_group("feed", "after")
        assert (await inbox.next(10)).data == "after"


async def test_refused_recovery_opens_new_connection_and_rejoins(hub):
    async with HubClient(hub.client_url("chat", "pub", ALL)) as pub, \
            HubClient(hub.client_url("chat", "sub", ALL)) as sub:
        inbox = sub.messages()
        await sub.join_group("feed")
        old = sub.connection_id
        url = f"{hub.endpoint}/api/hubs/chat/connections/{old}?reason=bye"
        req = urllib.request.Request(url, method="DELETE", headers={
            "Authorization": f"Bearer {mint(url, '', [])}"})
        assert await asyncio.to_thread(lambda: urllib.request.urlopen(req).status) == 204
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while sub.connection_id in (None, old) or sub.reconnects < 1:
            assert loop.time() < deadline, "no new connection"
            await asyncio.sleep(0.05)
        # The rejoin races with our sends: publish until one arrives through the group.
        n = 0
        while True:
            assert loop.time() < deadline, "the group was not rejoined"
            await pub.send_to_group("feed", n)
            try:
                m = await inbox.next(0.5)
                break
            except asyncio.TimeoutError:
                n += 1
        assert m.group == "feed" and sub.connection_id != old


async def test_eager_sequence_acks_keep_a_fast_stream_within_the_hub_buffer(hub):
    # The hub closes a reliable connection at 1000 unacknowledged messages; with the periodic
    # ack far away, only the ack after every 300 messages keeps this stream alive. Acked sends
    # pace the publisher, so the hub never cuts the subscriber off as a slow consumer.
    total = 1500
    async with HubClient(hub.client_url("chat", "pub", ALL)) as pub, \
            HubClient(hub.client_url("chat", "sub", ALL), sequence_ack_interval=60) as sub:
        inbox = sub.messages()
        await sub.join_group("fast")
        for i in range(total):
            await pub.send_to_group("fast", i)
        await pub.send_to_group("fast", "end")
        got = [(await inbox.next(15)).data for _ in range(total + 1)]
        assert got == list(range(total)) + ["end"]
        assert sub.reconnects == 0 and sub.recoveries == 0


async def test_plain_json_protocol_reconnects_and_rejoins_after_a_drop(hub):
    async with HubClient(hub.client_url("chat", "pub", ALL)) as pub, \
            HubClient(hub.client_url("chat", "sub", ALL), protocol=JSON) as sub:
        inbox = sub.messages()
        await sub.join_group("feed")
        await pub.send_to_group("feed", "before")
        first = await inbox.next(10)
        assert first.data == "before" and first.sequence_id is None
        old = sub.connection_id
        sub.drop_socket()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:  # the rejoin races with these sends: publish until one arrives
            assert loop.time() < deadline, "no new connection with the group rejoined"
            await pub.send_to_group("feed", "after")
            try:
                m = await inbox.next(0.3)
                break
            except asyncio.TimeoutError:
                pass
        assert m.data == "after" and sub.connection_id != old and sub.reconnects == 1


async def test_events_reach_the_upstream_and_its_reply_comes_back(hub_with_upstream):
    hub, upstream = hub_with_upstream
    async with HubClient(hub.client_url("chat", "frank", [])) as c:
        inbox = c.messages()
        await c.send_event("typing", {"on": True})
        await c.send_event("echo", "hello", data_type="text")
        reply = await inbox.next(10)
        assert (reply.source, reply.data_type, reply.data) == ("server", "text", "echo:hello")
        await c.send_event("bytes", b"\x00\x01", data_type="binary", ack=False)
        await c.send_event("echo", "last", data_type="text")
        assert (await inbox.next(10)).data == "echo:last"
    users = [(t, u, b) for t, u, b in upstream.events if t.startswith("azure.webpubsub.user.")]
    assert users == [
        ("azure.webpubsub.user.typing", "frank", b'{"on":true}'),
        ("azure.webpubsub.user.echo", "frank", b"hello"),
        ("azure.webpubsub.user.bytes", "frank", b"\x00\x01"),
        ("azure.webpubsub.user.echo", "frank", b"last"),
    ]


async def test_an_event_without_an_upstream_is_refused_not_found(hub):
    async with HubClient(hub.client_url("chat", "gina", [])) as c:
        with pytest.raises(AckError) as e:
            await c.send_event("typing", "x", data_type="text")
        assert e.value.name == "NotFound"


async def test_keep_alive_pings_are_answered(hub):
    async with HubClient(hub.client_url("chat", "hank", []), ping_interval=0.1,
                         sequence_ack_interval=0.1) as c:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while c.pongs < 2:
            assert loop.time() < deadline, "no pong for the client's pings"
            await asyncio.sleep(0.05)


async def test_a_request_in_flight_when_the_socket_drops_runs_exactly_once(hub):
    # After recovery the client resends unanswered requests with the same ackId; the hub runs
    # them then, or answers Duplicate (already ran), which counts as success.
    async with HubClient(hub.client_url("chat", "pub", ALL)) as pub, \
            HubClient(hub.client_url("chat", "sub", ALL)) as sub:
        inbox = sub.messages()
        await sub.join_group("feed")
        for i in range(5):
            sending = asyncio.create_task(pub.send_to_group("feed", i))
            await asyncio.sleep(0)  # let the frame leave
            pub.drop_socket()
            await sending
        await pub.send_to_group("feed", "end")
        got = []
        while (m := await inbox.next(10)).data != "end":
            got.append(m.data)
        assert got == [0, 1, 2, 3, 4] and pub.recoveries == 5


async def test_periodic_sequence_acks_trim_what_the_hub_resends(hub):
    async with HubClient(hub.client_url("chat", "pub", ALL)) as pub, \
            HubClient(hub.client_url("chat", "sub", ALL), sequence_ack_interval=0.2) as sub:
        inbox = sub.messages()
        await sub.join_group("feed")
        for i in range(10):
            await pub.send_to_group("feed", i)
        assert [(await inbox.next(10)).data for _ in range(10)] == list(range(10))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while sub.acked_sequence_id < 10:
            assert loop.time() < deadline, "no periodic sequenceAck"
            await asyncio.sleep(0.05)
        await sub.join_group("feed")  # frames run in order: once acked, the hub has the ack
        sub.drop_socket()
        await pub.send_to_group("feed", "after")
        assert (await inbox.next(15)).data == "after"
        assert sub.recoveries == 1 and sub.duplicates == 0, "acked messages were resent"


async def test_a_new_connection_rejoins_after_the_last_offset_and_misses_nothing(history_hub):
    # The hub ends the subscriber's connection (its session is gone) while messages keep
    # coming: the client opens a new connection and rejoins after the last offset it saw, so
    # what was published meanwhile arrives through the group's history, once each and in order.
    hub = history_hub
    async with HubClient(hub.client_url("chat", "pub", ALL)) as pub, \
            HubClient(hub.client_url("chat", "sub", ALL)) as sub:
        inbox = sub.messages()
        await sub.join_group("feed")
        await pub.send_to_group("feed", "seen")
        first = await inbox.next(10)
        assert first.data == "seen" and first.offset
        old = sub.connection_id
        url = f"{hub.endpoint}/api/hubs/chat/connections/{old}?reason=bye"
        req = urllib.request.Request(url, method="DELETE", headers={
            "Authorization": f"Bearer {mint(url, '', [])}"})
        assert await asyncio.to_thread(lambda: urllib.request.urlopen(req).status) == 204
        for i in range(20):
            await pub.send_to_group("feed", i)
        got = [(await inbox.next(15)).data for _ in range(20)]
        assert got == list(range(20))
        assert sub.connection_id != old and sub.reconnects == 1
        await pub.send_to_group("feed", "live")
        assert (await inbox.next(10)).data == "live"
