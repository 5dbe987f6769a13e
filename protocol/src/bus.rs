//! The agent socket (`/bus/ws`): agents and tools use the bus through the hub with the frames of
//! `json.webpubsub.azure.v1` ([`ClientFrame::Invoke`] and [`ClientFrame::Event`] up, with bus
//! operation names as event names; [`ServerFrame::InvokeResponse`], acks and server messages
//! down). This module holds what travels inside those frames that both ends read: the pushes
//! the hub sends as server messages, task records, and the answer to `bus.submit`.
//!
//! [`ClientFrame::Invoke`]: crate::ClientFrame::Invoke
//! [`ClientFrame::Event`]: crate::ClientFrame::Event
//! [`ServerFrame::InvokeResponse`]: crate::ServerFrame::InvokeResponse

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::a2a::{Message, Task, TaskState};
use crate::client_frame::ClientFrame;
use crate::payload::Payload;

/// What the hub pushes to an agent socket (and into watched groups), by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Push {
    /// A task for a capability this connection serves; settle it with one operation.
    #[serde(rename = "bus.task")]
    Task(Box<TaskPush>),
    /// A task this connection holds was canceled: stop work, no need to settle.
    #[serde(rename = "bus.task.canceled", rename_all = "camelCase")]
    Canceled {
        /// The task id.
        task_id: String,
    },
    /// A recorded bus event.
    #[serde(rename = "bus.event")]
    Event {
        /// The subscribed group it belongs to (absent in group messages, which name it anyway).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// The event id, to resume after.
        cursor: String,
        /// The CloudEvents envelope.
        envelope: Value,
    },
    /// Live events may have been missed: catch up with `bus.history`.
    #[serde(rename = "bus.resync")]
    Resync,
    /// A push this side does not know; never sent.
    #[serde(skip)]
    Other(Value),
}

impl Push {
    /// Reads a push from a server message's data; unknown or malformed pushes are `Other`.
    pub fn from_value(data: Value) -> Push {
        Push::deserialize(&data).unwrap_or(Push::Other(data))
    }
}

/// A task pushed to the agent that is to work on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPush {
    /// The capability it was submitted to.
    pub capability: String,
    /// The chain's correlation id.
    #[serde(default)]
    pub correlation_id: String,
    /// How many times it has been delivered.
    #[serde(default)]
    pub deliveries: u64,
    /// The W3C trace context the agent continues, if any.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The A2A task; the request is `history[0]`.
    pub task: Task,
}

/// The answer to `bus.submit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    /// The task id.
    pub task_id: String,
    /// The chain's correlation id.
    pub correlation_id: String,
    /// The conversation id.
    pub context_id: String,
    /// True when an idempotency key matched an earlier task.
    #[serde(default)]
    pub duplicate: bool,
}

/// A task as the bus stores and returns it: the A2A task plus routing, correlation and a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// The A2A task (status, history, artifacts).
    pub task: Task,
    /// Bumped by every change; updates based on an older version are no-ops.
    pub version: u64,
    /// The capability it was submitted to.
    pub capability: String,
    /// The chain it belongs to.
    pub correlation_id: String,
    /// Id of the `bus.task.submitted` event.
    pub submitted_event_id: String,
    /// Id of the event that caused the submission (the parent task's event for sub-tasks).
    pub caused_by: Option<String>,
    /// Agent that last worked on it.
    pub agent: Option<String>,
    /// Unix ms when submitted.
    pub created_ms: u64,
    /// Unix ms of the last change.
    pub updated_ms: u64,
}

impl TaskRecord {
    /// The current state.
    pub fn state(&self) -> TaskState {
        self.task.status.state
    }

    /// True once the task can no longer change.
    pub fn is_terminal(&self) -> bool {
        self.state().is_terminal()
    }

    /// The text of the status message: the final answer, or the question when input-required.
    pub fn status_text(&self) -> String {
        self.task
            .status
            .message
            .as_ref()
            .map(message_text)
            .unwrap_or_default()
    }
}

/// The text parts of a message, concatenated, as the client SDKs read an answer.
pub fn message_text(message: &Message) -> String {
    message
        .parts
        .iter()
        .filter_map(|p| p.text.as_deref())
        .collect()
}

/// The `invoke` frame that runs operation `op` with `data`.
pub fn invoke(invocation_id: &str, op: &str, data: &Value) -> ClientFrame {
    ClientFrame::Invoke {
        invocation_id: invocation_id.to_string(),
        event: op.to_string(),
        payload: Payload::from_value(data),
    }
}

/// The `event` frame that runs operation `op` with `data` without waiting for an answer.
pub fn notify(op: &str, data: &Value) -> ClientFrame {
    ClientFrame::Event {
        event: op.to_string(),
        ack_id: None,
        payload: Payload::from_value(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(state: &str, status_message: Value) -> Value {
        json!({"id": "t", "contextId": "c", "status": {"state": state, "message": status_message},
               "history": [{"messageId": "m0", "role": "ROLE_USER", "parts": [{"text": "hi"}]}]})
    }

    #[test]
    fn reads_pushes_and_records() {
        let p = Push::from_value(json!({"kind": "bus.task", "capability": "c",
            "correlationId": "x", "deliveries": 2, "traceparent": null,
            "task": task("TASK_STATE_SUBMITTED", Value::Null)}));
        assert!(matches!(p, Push::Task(t) if t.deliveries == 2 && t.task.id == "t"));
        let p = Push::from_value(json!({"kind": "bus.task.canceled", "taskId": "t"}));
        assert!(matches!(p, Push::Canceled { task_id } if task_id == "t"));
        assert!(matches!(
            Push::from_value(json!({"kind": "bus.task"})),
            Push::Other(_)
        ));
        assert_eq!(
            Push::from_value(json!({"kind": "bus.resync"})),
            Push::Resync
        );
        let answer = json!({"messageId": "m1", "role": "ROLE_AGENT",
                            "parts": [{"text": "a"}, {"text": "b"}]});
        let r: TaskRecord = serde_json::from_value(json!({"version": 3,
            "task": task("TASK_STATE_COMPLETED", answer), "capability": "c",
            "correlationId": "x", "submittedEventId": "e", "causedBy": null, "agent": "a",
            "createdMs": 1, "updatedMs": 2}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.is_terminal());
        assert_eq!(r.status_text(), "ab");
    }

    #[test]
    fn pushes_write_what_agents_read() {
        let pushes = [
            Push::Canceled {
                task_id: "t".into(),
            },
            Push::Event {
                group: Some("task.t".into()),
                cursor: "01".into(),
                envelope: json!({"id": "01"}),
            },
            Push::Resync,
        ];
        for p in pushes {
            let v = serde_json::to_value(&p).unwrap_or_default();
            assert_eq!(Push::from_value(v), p);
        }
        assert_eq!(
            serde_json::to_value(Push::Event {
                group: None,
                cursor: "c".into(),
                envelope: json!({})
            })
            .ok(),
            Some(json!({"kind": "bus.event", "cursor": "c", "envelope": {}}))
        );
        assert!(serde_json::to_value(Push::Other(json!(1))).is_err());
    }

    #[test]
    fn operations_are_invoke_and_event_frames() {
        let f = invoke("7", "bus.task.get", &json!({"taskId": "t"}));
        let v: Value = serde_json::from_str(&f.to_json()).unwrap_or_default();
        assert_eq!(
            v,
            json!({"type": "invoke", "invocationId": "7", "target": "event",
                   "event": "bus.task.get", "dataType": "json", "data": {"taskId": "t"}})
        );
        let v: Value = serde_json::from_str(&notify("bus.heartbeat", &json!({})).to_json())
            .unwrap_or_default();
        assert_eq!(
            v,
            json!({"type": "event", "event": "bus.heartbeat", "dataType": "json", "data": {}})
        );
    }
}
