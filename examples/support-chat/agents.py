"""The support-chat worked example: three agents on the Nerve bus, written with the Python SDK
(clients/python), which reconnects them after a dropped socket or a hub restart. A customer's
question goes to `support.triage`; triage looks the order up (`orders.lookup`), then asks
billing for a refund (`billing.refund`), which waits for a person to answer "yes". Every step
is one task in the same correlation chain.

    export NERVE_CONNECTION_STRING='<the connection string nerve printed>'
    python agents.py
"""

import argparse
import asyncio
import re

from nerve_client import Agent, ConnectionString, TaskRejected, message_text, task_state

ORDERS = {
    "42": {"item": "wireless headphones", "amount": "59.90 EUR", "status": "delivered"},
    "7": {"item": "coffee grinder", "amount": "34.00 EUR", "status": "delivered"},
}
# How long billing waits for a person, and triage for billing.
APPROVAL_WAIT = 3600.0


def team(cs: ConnectionString) -> list[Agent]:
    """The three agents, each with its own token: it may serve its skill and submit only to
    the capabilities it delegates to."""

    def agent(agent_id: str, name: str, roles: list[str]) -> Agent:
        token = cs.client_token("bus", user=agent_id, roles=roles)
        return Agent(cs.endpoint, token, {"id": agent_id, "name": name, "version": "1.0.0"},
                     max_in_flight=8)

    triage = agent("triage-1", "Support triage", [
        "bus.serve.support.triage", "bus.submit.orders.lookup", "bus.submit.billing.refund"])
    orders = agent("orders-1", "Orders", ["bus.serve.orders.lookup"])
    billing = agent("billing-1", "Billing", ["bus.serve.billing.refund"])

    @triage.skill("support.triage", name="Support triage",
                  description="Answers customers: looks the order up, asks billing for refunds")
    async def answer(task):
        await task.progress("Looking up your order")
        match = re.search(r"\d+", task.text)
        order_id = match.group(0) if match else "42"
        order = await task.delegate("orders.lookup", order_id, timeout=60)
        if task_state(order) != "TASK_STATE_COMPLETED":
            return f"I could not find order {order_id}."
        details = message_text(order["task"]["status"].get("message"))
        if "refund" not in task.text.lower():
            return f"Your order: {details}"
        await task.progress("Asking billing for a refund")
        refund = await task.delegate("billing.refund", f"refund order {order_id}: {details}",
                                     timeout=APPROVAL_WAIT + 60)
        outcome = message_text(refund["task"]["status"].get("message"))
        return f"Order {order_id} ({details}). {outcome}"

    @orders.skill("orders.lookup", name="Orders", description="Looks an order up by id")
    async def lookup(task):
        order_id = task.text.strip()
        o = ORDERS.get(order_id)
        if o is None:
            raise TaskRejected(f"There is no order {order_id}.")
        await task.artifact({"id": order_id, **o}, artifact_id="order", name="order")
        return f"{o['item']}, {o['amount']}, {o['status']}"

    @billing.skill("billing.refund", name="Billing",
                   description="Issues refunds once a person approves them")
    async def refund(task):
        amount = re.search(r"(\d+\.\d+ EUR)", task.text)
        amount = amount.group(1) if amount else "the amount paid"
        question = f"Approve a refund of {amount}? ({task.text})"
        if await task.ask(question, timeout=APPROVAL_WAIT) != "yes":
            raise TaskRejected(f"Refund of {amount} was declined.")
        return f"Refund of {amount} approved and issued."

    return [triage, orders, billing]


async def run(cs: ConnectionString) -> None:
    """Serves until interrupted; says so once every agent is registered."""
    agents = team(cs)
    serving = [asyncio.create_task(a.run()) for a in agents]
    registered = asyncio.gather(*(a.registered.wait() for a in agents))
    done, _ = await asyncio.wait([registered, *serving], return_when=asyncio.FIRST_COMPLETED)
    if registered in done:
        print("support agents ready", flush=True)
    # An agent stops only when the hub refuses its token or card: that error ends the run.
    await asyncio.gather(*serving)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connection-string",
                    help="the hub's connection string (default: $NERVE_CONNECTION_STRING)")
    args = ap.parse_args()
    cs = (ConnectionString(args.connection_string) if args.connection_string
          else ConnectionString.from_env())
    try:
        asyncio.run(run(cs))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
