"""A2A push notifications through the official Python SDK (a2a-sdk): a client whose
ClientConfig carries a push setting sends a message, a real HTTP webhook (http.server on a free
port) receives each update with the setting's token and Authorization header, and the bodies
parse as the SDK's StreamResponse; then the four *TaskPushNotificationConfig calls."""

import asyncio
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from a2a.client import ClientConfig, create_client
from a2a.types import (AuthenticationInfo, DeleteTaskPushNotificationConfigRequest,
                       GetTaskPushNotificationConfigRequest,
                       ListTaskPushNotificationConfigsRequest, Message, Part, Role,
                       SendMessageRequest, StreamResponse, TaskPushNotificationConfig,
                       TaskState)
from google.protobuf import json_format

from nerve_harness import BusConnection, Hub, wait_for


class Webhook:
    """A real HTTP server that records every POST (path, headers, JSON body) and answers 200."""

    def __init__(self):
        self.posts = []
        lock = threading.Lock()
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                with lock:
                    posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path):
        return [p for p in list(self.posts) if p[0] == path]

    def stop(self):
        self.server.shutdown()


async def worker(conn):
    """A bus agent: progress, an artifact, completion."""
    while True:
        push = await conn.next_push("bus.task", timeout=60)
        task = push["task"]
        await conn.invoke("bus.task.status", {"taskId": task["id"], "state": "TASK_STATE_WORKING",
                                              "text": "reading"})
        await conn.invoke("bus.task.artifact", {"taskId": task["id"], "artifact": {
            "artifactId": "out", "parts": [{"text": "pushed"}]}})
        await conn.invoke("bus.task.complete", {"taskId": task["id"], "text": "done"})


def state_of(body):
    event = json_format.ParseDict(body, StreamResponse())
    if event.HasField("status_update"):
        return event.status_update.status.state
    return None


async def main():
    hook = Webhook()
    hub = Hub("[bus]\nfast = true\npush_allow_private = true\n")
    try:
        agent = await BusConnection.connect(hub, "pusher-1", ["bus.serve.pushed"])
        await agent.invoke("bus.register", {"card": {
            "id": "pusher-1", "name": "Pusher", "version": "1.0.0",
            "skills": [{"id": "pushed", "name": "Pushed", "description": "pushes"}]}})
        serving = asyncio.create_task(worker(agent))

        token = hub.token("a2a-user", ["bus.submit.pushed"])
        url = f"http://127.0.0.1:{hook.port}/hook"
        setting = TaskPushNotificationConfig(
            id="sdk", url=url, token="notify-token",
            authentication=AuthenticationInfo(scheme="Bearer", credentials="webhook-secret"))
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                     timeout=30) as http:
            client = await create_client(hub.base, ClientConfig(
                streaming=False, httpx_client=http, push_notification_config=setting))
            request = SendMessageRequest(message=Message(
                message_id=str(uuid.uuid4()), role=Role.ROLE_USER,
                parts=[Part(text="notify me")]))
            async for _ in client.send_message(request):
                pass

            def completed():
                return any(state_of(b) == TaskState.TASK_STATE_COMPLETED
                           for _, _, b in hook.on("/hook"))
            wait_for(completed, 20, "the completion pushed to the webhook")
            posts = hook.on("/hook")
            events = [json_format.ParseDict(b, StreamResponse()) for _, _, b in posts]
            task_id = (events[0].status_update.task_id or events[0].artifact_update.task_id)
            kinds = [e.WhichOneof("payload") for e in events]
            assert "artifact_update" in kinds, kinds
            states = [e.status_update.status.state for e in events if e.HasField("status_update")]
            assert TaskState.TASK_STATE_WORKING in states, states
            for _, headers, _ in posts:
                assert headers.get("x-a2a-notification-token") == "notify-token", headers
                assert headers.get("authorization") == "Bearer webhook-secret", headers

            got = await client.get_task_push_notification_config(
                GetTaskPushNotificationConfigRequest(task_id=task_id, id="sdk"))
            assert got.url == url and got.token == "notify-token", got
            assert got.authentication.scheme == "Bearer", got
            assert got.authentication.credentials == "", "the credential is never read back"

            second = await client.create_task_push_notification_config(
                TaskPushNotificationConfig(task_id=task_id, id="second", url=url + "2"))
            assert second.id == "second" and second.task_id == task_id, second
            listed = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task_id))
            assert sorted(c.id for c in listed.configs) == ["sdk", "second"], listed
            await client.delete_task_push_notification_config(
                DeleteTaskPushNotificationConfigRequest(task_id=task_id, id="second"))
            listed = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task_id))
            assert [c.id for c in listed.configs] == ["sdk"], listed
            print(f"a2a-sdk push: {len(posts)} notifications of task {task_id} reached the "
                  f"webhook; create/get/list/delete work")
        serving.cancel()
        await agent.close()
    finally:
        hub.stop()
        hook.stop()


if __name__ == "__main__":
    asyncio.run(main())
