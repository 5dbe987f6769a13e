"""The agent SDK against the real binary: serve, submit, progress, input-required, cancel."""

import asyncio

import pytest

from nerve_client import Agent, BusClient, BusError, HubClient, TaskRejected, task_state

SUBMITTER = ["bus.submit.billing.refund", "bus.reply.billing.refund", "bus.watch",
             "bus.context.conv-1", "bus.submit.billing.slow"]


async def start(agent: Agent) -> asyncio.Task:
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.registered.wait(), 10)
    return runner


async def test_agent_serves_with_progress_artifact_and_input(hub):
    agent = Agent(hub.endpoint, hub.bus_token("refunder-1", ["bus.serve.billing.refund"]),
                  {"id": "refunder", "name": "Refunds"}, heartbeat_interval=0.1)

    @agent.skill("billing.refund", description="refund an order")
    async def refund(task):
        await task.progress(f"checking {task.text}")
        await task.artifact({"amount": 10}, name="quote")
        answer = await task.ask("Refund 10 EUR?")
        if answer != "yes":
            raise TaskRejected("the human said no")
        return f"refunded ({answer})"

    runner = await start(agent)
    async with BusClient(hub.endpoint, hub.bus_token("user-1", SUBMITTER)) as client:
        cards = await client.agents("billing.refund")
        assert [c["id"] for c in cards] == ["refunder"]
        sub = await client.submit("billing.refund", "order 42")
        events = []

        async def follow():
            async for env in client.watch(sub["taskId"], timeout=20):
                events.append(env)

        watcher = asyncio.create_task(follow())
        asked = await client.wait(sub["taskId"], until="settled", timeout=20)
        assert task_state(asked) == "TASK_STATE_INPUT_REQUIRED"
        assert asked["task"]["status"]["message"]["parts"][0]["text"] == "Refund 10 EUR?"
        await client.reply(sub["taskId"], "yes")
        done = await client.wait(sub["taskId"], timeout=20)
        assert task_state(done) == "TASK_STATE_COMPLETED"
        assert done["task"]["status"]["message"]["parts"][0]["text"] == "refunded (yes)"
        assert done["task"]["artifacts"][0]["parts"][0]["data"] == {"amount": 10}
        await asyncio.wait_for(watcher, 20)
        kinds = [e["type"] for e in events]
        assert kinds[0] == "bus.task.submitted" and "bus.task.artifact" in kinds
        texts = [((e["data"].get("statusUpdate") or {}).get("status", {}).get("message") or {})
                 for e in events]
        assert {"text": "checking order 42"} in [p for t in texts for p in t.get("parts", [])]
        assert len({e["id"] for e in events}) == len(events), "an event was delivered twice"

        # A "no" rejects the task through the handler's exception.
        sub2 = await client.submit("billing.refund", "order 43")
        await client.wait(sub2["taskId"], until="settled", timeout=20)
        await client.reply(sub2["taskId"], "no")
        rejected = await client.wait(sub2["taskId"], timeout=20)
        assert task_state(rejected) == "TASK_STATE_REJECTED"

        # Shared context.
        assert await client.publish_context("conv-1", {"order": 42}) >= 1
        ctx = await client.read_context("conv-1")
        assert ctx["value"] == {"order": 42}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while agent.heartbeats < 2:
            assert loop.time() < deadline, "the agent did not heartbeat"
            await asyncio.sleep(0.05)
    await agent.stop()
    await asyncio.wait_for(runner, 10)


async def test_cancel_reaches_the_handler_and_deadlines_hold(hub):
    started, canceled = asyncio.Event(), asyncio.Event()
    agent = Agent(hub.endpoint, hub.bus_token("slow-1", ["bus.serve.billing.slow"]),
                  {"id": "slow", "name": "Slow"})

    @agent.skill("billing.slow")
    async def slow(task):
        started.set()
        try:
            await asyncio.Event().wait()  # works until canceled
        finally:
            canceled.set()

    runner = await start(agent)
    async with BusClient(hub.endpoint, hub.bus_token("user-1", SUBMITTER)) as client:
        sub = await client.submit("billing.slow", "forever")
        await asyncio.wait_for(started.wait(), 10)
        with pytest.raises(BusError) as e:
            await client.wait(sub["taskId"], timeout=0.5)
        assert e.value.name == "Timeout"
        await client.cancel(sub["taskId"])
        await asyncio.wait_for(canceled.wait(), 10)
        rec = await client.get(sub["taskId"])
        assert task_state(rec) == "TASK_STATE_CANCELED"
        with pytest.raises(BusError) as e:
            await client.submit("orders.lookup", "not allowed")
        assert e.value.name == "Forbidden"
    await agent.stop()
    await asyncio.wait_for(runner, 10)


async def test_a_dropped_agent_socket_reconnects_and_gets_its_task_again(hub):
    deliveries = []
    agent = Agent(hub.endpoint, hub.bus_token("refunder-1", ["bus.serve.billing.refund"]),
                  {"id": "refunder", "name": "Refunds"})

    @agent.skill("billing.refund")
    async def refund(task):
        deliveries.append(task.deliveries)
        if task.deliveries == 1:
            agent.drop_socket()  # the hub requeues what this socket held
            await asyncio.Event().wait()
        return "second time lucky"

    runner = await start(agent)
    async with BusClient(hub.endpoint, hub.bus_token("user-1", SUBMITTER)) as client:
        done = await client.call("billing.refund", "order 7", timeout=20)
        assert task_state(done) == "TASK_STATE_COMPLETED"
        assert done["task"]["status"]["message"]["parts"][0]["text"] == "second time lucky"
    assert deliveries == [1, 2]
    await agent.stop()
    await asyncio.wait_for(runner, 10)


async def test_an_agent_delegates_a_sub_task_in_the_same_chain(hub):
    triage = Agent(hub.endpoint, hub.bus_token("triage-1", ["bus.serve.support.triage",
                                                            "bus.submit.orders.lookup"]),
                   {"id": "triage", "name": "Triage"})
    orders = Agent(hub.endpoint, hub.bus_token("orders-1", ["bus.serve.orders.lookup"]),
                   {"id": "orders", "name": "Orders"})

    @orders.skill("orders.lookup")
    async def lookup(task):
        return {"order": task.text, "status": "shipped"}

    @triage.skill("support.triage")
    async def handle(task):
        sub = await task.delegate("orders.lookup", "42", timeout=20)
        found = sub["task"]["status"]["message"]["parts"][0]["data"]
        return f"order {found['order']} is {found['status']}"

    runners = [await start(orders), await start(triage)]
    async with BusClient(hub.endpoint, hub.bus_token("user-1", ["bus.submit.support.triage",
                                                                "bus.watch"])) as client:
        sub = await client.submit("support.triage", "where is my order?")
        done = await client.wait(sub["taskId"], timeout=20)
        assert done["task"]["status"]["message"]["parts"][0]["text"] == "order 42 is shipped"
        chain = await client.invoke("bus.chain", {"correlationId": sub["correlationId"]})
        [root] = chain["roots"]
        assert (root["capability"], root["agent"], root["state"]) == (
            "support.triage", "triage", "TASK_STATE_COMPLETED")
        [child] = root["children"]
        assert (child["capability"], child["agent"], child["state"]) == (
            "orders.lookup", "orders", "TASK_STATE_COMPLETED")
    for a in (triage, orders):
        await a.stop()
    await asyncio.wait_for(asyncio.gather(*runners), 10)


async def test_a_hub_client_watches_a_task_through_the_bus_hub_groups(hub):
    agent = Agent(hub.endpoint, hub.bus_token("refunder-1", ["bus.serve.billing.refund"]),
                  {"id": "refunder", "name": "Refunds"})

    @agent.skill("billing.refund")
    async def refund(task):
        await task.progress("working on it")
        return "done"

    runner = await start(agent)
    url = hub.client_url("bus", "browser", ["webpubsub.joinLeaveGroup.task.watched-1"])
    async with HubClient(url) as browser, \
            BusClient(hub.endpoint, hub.bus_token("user-1", SUBMITTER)) as client:
        inbox = browser.messages()
        await browser.join_group("task.watched-1")
        await client.submit("billing.refund", "order 1", idempotency_key="watched-1")
        states = []
        while "TASK_STATE_COMPLETED" not in states:
            m = await inbox.next(10)
            assert m.group == "task.watched-1" and m.data["kind"] == "bus.event"
            env = m.data["envelope"]
            assert env["taskid"] == "watched-1"
            update = env["data"].get("statusUpdate") or {}
            states.append(update.get("status", {}).get("state") or env["type"])
        assert states[0] == "bus.task.submitted" and "TASK_STATE_WORKING" in states
    await agent.stop()
    await asyncio.wait_for(runner, 10)


async def test_a_refused_token_or_card_stops_the_agent(hub):
    bad = Agent(hub.endpoint, hub.bus_token("x", ["bus.serve.a.b"]) + "x", {"id": "x", "name": "X"})
    bad.skill("a.b")(lambda task: None)
    with pytest.raises(BusError) as e:
        await asyncio.wait_for(bad.run(), 10)
    assert e.value.name == "Unauthorized"
    assert "signature is invalid" in e.value.message, e.value.message
    unserved = Agent(hub.endpoint, hub.bus_token("y", ["bus.serve.a.b"]), {"id": "y", "name": "Y"})
    unserved.skill("c.d")(lambda task: None)
    with pytest.raises(BusError) as e:
        await asyncio.wait_for(unserved.run(), 10)
    assert e.value.name == "Forbidden"
