"""Nerve client for Python: a Web PubSub hub client and the agent SDK for the hub's bus."""

__version__ = "0.1.0"

from .agent import Agent, Task, TaskRejected, TaskRetry
from .bus import TERMINAL, BusClient, BusError, message_text, task_state
from .hub import JSON, RELIABLE, AckError, HubClient, HubError, Message, MessageStream
from .tokens import ConnectionString
from .tracing import enable_tracing, shutdown_tracing

__all__ = [
    "Agent", "Task", "TaskRejected", "TaskRetry",
    "BusClient", "BusError", "TERMINAL", "message_text", "task_state",
    "HubClient", "HubError", "AckError", "Message", "MessageStream", "JSON", "RELIABLE",
    "ConnectionString", "enable_tracing", "shutdown_tracing",
]
