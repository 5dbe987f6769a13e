"""End-to-end run of the support-chat worked example (examples/support-chat, whose agents use the
Python SDK): a customer asks for a refund, triage delegates to orders and billing, billing asks a
person, who answers "yes" through the operations API while watching the chain in the hub's
correlation group; then the whole correlation tree and every final task state are checked."""

import asyncio
import json
import os
import sys

import httpx
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "support-chat"))

from agents import team  # noqa: E402
from nerve_client import ConnectionString  # noqa: E402
from nerve_harness import Hub  # noqa: E402


async def main():
    hub = Hub()
    try:
        agents = team(ConnectionString(f"Endpoint={hub.base};AccessKey={hub.key};Version=1.0;"))
        serving = [asyncio.create_task(a.run()) for a in agents]
        await asyncio.wait_for(asyncio.gather(*(a.registered.wait() for a in agents)), 30)
        user = hub.token("carol", ["bus.submit.support.triage", "bus.reply.billing.refund",
                                   "bus.watch", "webpubsub.joinLeaveGroup"])
        api = httpx.AsyncClient(base_url=hub.base, headers={"Authorization": f"Bearer {user}"},
                                timeout=30)

        async def op(name, data):
            r = await api.post(f"/bus/api/{name}", json=data)
            assert r.status_code == 200, (name, r.status_code, r.text)
            return r.json()

        sub = await op("bus.submit", {"capability": "support.triage",
                                      "text": "I want a refund for order 42"})
        root = sub["taskId"]
        # The customer's page watches the chain live over the ordinary hub protocol.
        ws = await websockets.connect(f"ws://127.0.0.1:{hub.port}/client/hubs/bus?access_token={user}",
                                      subprotocols=["json.webpubsub.azure.v1"])
        await ws.send(json.dumps({"type": "joinGroup", "group": f"correlation.{root}", "ackId": 1}))
        live, early = [], []
        async with asyncio.timeout(30):
            while True:
                f = json.loads(await ws.recv())
                if f.get("type") == "ack" and f.get("ackId") == 1:
                    break
                if f.get("type") == "message":
                    early.append(f["data"])
        # The resume protocol: after joining, catch up by cursor, then follow the group, skipping
        # events already applied.
        history = await op("bus.history", {"correlationId": root})
        seen = set()

        def question_in(env):
            status = (env.get("data") or {}).get("statusUpdate", {}).get("status", {})
            if status.get("state") == "TASK_STATE_INPUT_REQUIRED":
                return env["taskid"], status["message"]["parts"][0]["text"]
            return None

        question = None
        for item in history["events"] + early:
            if item["cursor"] not in seen:
                seen.add(item["cursor"])
                question = question or question_in(item["envelope"])
        async with asyncio.timeout(60):
            while question is None:
                f = json.loads(await ws.recv())
                if f.get("type") != "message" or f["data"]["cursor"] in seen:
                    continue
                seen.add(f["data"]["cursor"])
                env = f["data"]["envelope"]
                live.append(env)
                question = question_in(env)
        refund_task, text = question
        assert "59.90 EUR" in text, text
        await op("bus.task.reply", {"taskId": refund_task, "text": "yes"})

        done = await op("bus.task.wait", {"taskId": root, "timeoutMs": 60000})
        final = done["task"]["task"]
        assert final["status"]["state"] == "TASK_STATE_COMPLETED", final["status"]
        answer = final["status"]["message"]["parts"][0]["text"]
        assert "approved and issued" in answer and "wireless headphones" in answer, answer

        tree = await op("bus.chain", {"correlationId": root})
        assert len(tree["roots"]) == 1, tree
        r = tree["roots"][0]
        assert (r["taskId"], r["capability"], r["state"], r["agent"]) == (
            root, "support.triage", "TASK_STATE_COMPLETED", "triage-1"), r
        kids = {c["capability"]: c for c in r["children"]}
        assert set(kids) == {"orders.lookup", "billing.refund"}, kids
        assert kids["orders.lookup"]["state"] == "TASK_STATE_COMPLETED"
        assert kids["orders.lookup"]["agent"] == "orders-1"
        b = kids["billing.refund"]
        assert (b["taskId"], b["state"], b["agent"]) == (refund_task, "TASK_STATE_COMPLETED", "billing-1")
        states = [e["state"] for e in b["events"] if e["state"]]
        assert states == ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "TASK_STATE_INPUT_REQUIRED",
                          "TASK_STATE_WORKING", "TASK_STATE_COMPLETED"], states
        assert all(not c["children"] for c in r["children"])
        # Every event seen, live or caught up, carried the chain's correlation id.
        assert seen and all(e["correlationid"] == root for e in live)
        print(f"support chat: chain {root} -> {sorted(kids)} completed; answer: {answer}")
        await ws.close()
        await api.aclose()
        for a in agents:
            await a.stop()
        await asyncio.gather(*serving)
    finally:
        hub.stop()


if __name__ == "__main__":
    asyncio.run(main())
