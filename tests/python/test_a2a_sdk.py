"""The official A2A Python SDK sends a task through the hub's A2A gateway to a bus agent (a
Python agent on /bus/ws) and streams its updates to completion; then GetTask, ListTasks,
CancelTask on a finished task, and an unknown task's error code."""

import asyncio
import uuid

import httpx
from a2a.client import ClientConfig, create_client
from a2a.types import (GetTaskRequest, ListTasksRequest, Message, Part, Role, SendMessageRequest,
                       TaskState)

from nerve_harness import BusConnection, Hub


async def summarizer(conn):
    """A bus agent: reports progress, adds an artifact, completes."""
    while True:
        push = await conn.next_push("bus.task", timeout=60)
        task = push["task"]
        text = task["history"][0]["parts"][0]["text"]
        await conn.invoke("bus.task.status", {"taskId": task["id"], "state": "TASK_STATE_WORKING",
                                              "text": "reading"})
        await conn.invoke("bus.task.artifact", {"taskId": task["id"], "artifact": {
            "artifactId": "summary", "name": "summary", "parts": [{"text": text.upper()}]}})
        await conn.invoke("bus.task.complete", {"taskId": task["id"], "text": "summarized"})


async def main():
    hub = Hub()
    try:
        agent = await BusConnection.connect(hub, "summarizer-1", ["bus.serve.summarize"])
        await agent.invoke("bus.register", {"card": {
            "id": "summarizer-1", "name": "Summarizer", "version": "1.0.0",
            "skills": [{"id": "summarize", "name": "Summarize", "description": "summarizes"}]}})
        serving = asyncio.create_task(summarizer(agent))

        token = hub.token("a2a-user", ["bus.submit.summarize", "bus.watch"])
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                     timeout=30) as http:
            client = await create_client(hub.base, ClientConfig(streaming=True, httpx_client=http))
            request = SendMessageRequest(message=Message(
                message_id=str(uuid.uuid4()), role=Role.ROLE_USER,
                parts=[Part(text="the quarterly report")]))
            events = []
            async for event in client.send_message(request):
                events.append(event)
            kinds = [e.WhichOneof("payload") for e in events]
            assert kinds[0] == "task", kinds
            task_id = events[0].task.id
            states = [e.status_update.status.state for e in events if e.HasField("status_update")]
            assert states[-1] == TaskState.TASK_STATE_COMPLETED, kinds
            assert TaskState.TASK_STATE_WORKING in states, states
            artifacts = [e.artifact_update.artifact for e in events if e.HasField("artifact_update")]
            assert artifacts and artifacts[0].parts[0].text == "THE QUARTERLY REPORT", artifacts

            got = await client.get_task(GetTaskRequest(id=task_id))
            assert got.status.state == TaskState.TASK_STATE_COMPLETED, got
            assert got.artifacts[0].artifact_id == "summary"
            listed = await client.list_tasks(ListTasksRequest())
            assert task_id in [t.id for t in listed.tasks], listed

            unknown = None
            try:
                await client.get_task(GetTaskRequest(id="no-such-task"))
            except Exception as e:  # code -32001 becomes the SDK's TaskNotFoundError
                unknown = e
            assert unknown is not None, "GetTask of an unknown task succeeded"
            assert type(unknown).__name__ == "TaskNotFoundError", repr(unknown)
            print(f"a2a-sdk: task {task_id} streamed {kinds} to completion")
        serving.cancel()
        await agent.close()
    finally:
        hub.stop()


if __name__ == "__main__":
    asyncio.run(main())
