"""The support-chat worked example: three agents on the Nerve bus, connected over the hub's
WebSocket. A customer's question goes to `support.triage`; triage looks the order up
(`orders.lookup`), then asks billing for a refund (`billing.refund`), which waits for a human to
approve it. Every step is one task in the same correlation chain.

    python agents.py --endpoint http://127.0.0.1:8080 --access-key <key>
"""

import argparse
import asyncio
import re

from nerve_bus import BusConnection, mint_token

ORDERS = {
    "42": {"item": "wireless headphones", "amount": "59.90 EUR", "status": "delivered"},
    "7": {"item": "coffee grinder", "amount": "34.00 EUR", "status": "delivered"},
}


def text_of(push):
    return " ".join(p.get("text", "") for p in push["task"]["history"][0]["parts"])


async def triage(conn, push):
    """Answers customers: looks the order up, and asks billing for refunds."""
    task = push["task"]
    question = text_of(push)
    await conn.invoke("bus.task.status", {"taskId": task["id"], "state": "TASK_STATE_WORKING",
                                          "text": "Looking up your order"})
    match = re.search(r"\d+", question)
    order_id = match.group(0) if match else "42"
    lookup = await conn.invoke("bus.submit", {"capability": "orders.lookup", "text": order_id,
                                              "parentTaskId": task["id"]})
    order = await conn.invoke("bus.task.wait", {"taskId": lookup["taskId"], "timeoutMs": 60000})
    details = order["task"]["task"]["status"]["message"]["parts"][0]["text"]
    if "refund" not in question.lower():
        return f"Your order: {details}"
    await conn.invoke("bus.task.status", {"taskId": task["id"], "state": "TASK_STATE_WORKING",
                                          "text": "Asking billing for a refund"})
    refund = await conn.invoke("bus.submit", {"capability": "billing.refund",
                                              "text": f"refund order {order_id}: {details}",
                                              "parentTaskId": task["id"]})
    result = await conn.invoke("bus.task.wait", {"taskId": refund["taskId"], "timeoutMs": 300000},
                               timeout=310)
    outcome = result["task"]["task"]["status"]["message"]["parts"][0]["text"]
    return f"Order {order_id} ({details}). {outcome}"


async def orders(conn, push):
    """Looks an order up by id."""
    order_id = text_of(push).strip()
    o = ORDERS.get(order_id)
    if o is None:
        raise ValueError(f"no order {order_id}")
    await conn.invoke("bus.task.artifact", {"taskId": push["task"]["id"], "artifact": {
        "artifactId": "order", "name": "order", "parts": [{"data": {"id": order_id, **o}}]}})
    return f"{o['item']}, {o['amount']}, {o['status']}"


async def billing(conn, push):
    """Issues refunds once a human approves them."""
    request = text_of(push)
    amount = re.search(r"(\d+\.\d+ EUR)", request)
    amount = amount.group(1) if amount else "the amount paid"
    answer = await conn.invoke("bus.task.ask", {
        "taskId": push["task"]["id"], "timeoutMs": 300000,
        "question": f"Approve a refund of {amount}? ({request})"}, timeout=310)
    if answer["text"].strip().lower().startswith("approve"):
        return f"Refund of {amount} approved and issued."
    return f"Refund of {amount} was declined."


AGENTS = [
    ("triage-1", "Support triage", "support.triage",
     ["bus.serve.support.triage", "bus.submit.orders.lookup", "bus.submit.billing.refund"], triage),
    ("orders-1", "Orders", "orders.lookup", ["bus.serve.orders.lookup"], orders),
    ("billing-1", "Billing", "billing.refund", ["bus.serve.billing.refund"], billing),
]


async def start_agents(endpoint, access_key):
    """Connects and registers the three agents; returns their connections and serving tasks."""
    conns, tasks = [], []
    for agent_id, name, skill, roles, handler in AGENTS:
        conn = await BusConnection.connect(endpoint, mint_token(endpoint, access_key, agent_id, roles))
        card = {"id": agent_id, "name": name, "version": "1.0.0",
                "skills": [{"id": skill, "name": name, "description": handler.__doc__ or name}]}
        await conn.register(card, max_in_flight=8)
        conns.append(conn)
        tasks.append(asyncio.create_task(conn.run(handler)))
    return conns, tasks


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default="http://127.0.0.1:8080")
    ap.add_argument("--access-key", required=True)
    args = ap.parse_args()
    _, tasks = await start_agents(args.endpoint.rstrip("/"), args.access_key)
    print("support agents ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
