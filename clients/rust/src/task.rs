//! Task data of the bus protocol: what a submitter sends (`Submit`), what it gets back
//! (`Submitted`, `TaskRecord`) and what the hub pushes to an agent socket (`Push`).

use serde::Deserialize;
use serde_json::{Value, json};

/// Task states after which nothing changes.
pub const TERMINAL_STATES: [&str; 4] = [
    "TASK_STATE_COMPLETED",
    "TASK_STATE_FAILED",
    "TASK_STATE_CANCELED",
    "TASK_STATE_REJECTED",
];

/// A task to submit: `Submit::new("billing.refund", "order 42").context_id("c1")`.
#[derive(Debug, Clone)]
pub struct Submit {
    data: Value,
}

impl Submit {
    /// A task for `capability` whose request is `text`.
    pub fn new(capability: &str, text: &str) -> Submit {
        Submit {
            data: json!({"capability": capability, "text": text}),
        }
    }

    /// A task whose request is a full A2A message.
    pub fn message(capability: &str, message: Value) -> Submit {
        Submit {
            data: json!({"capability": capability, "message": message}),
        }
    }

    /// Puts the task in a conversation.
    pub fn context_id(self, id: &str) -> Submit {
        self.with("contextId", id.into())
    }

    /// Makes resubmission idempotent (the key becomes the task id).
    pub fn idempotency_key(self, key: &str) -> Submit {
        self.with("idempotencyKey", key.into())
    }

    /// Makes it a sub-task of `task_id` (same correlation chain).
    pub fn parent(self, task_id: &str) -> Submit {
        self.with("parentTaskId", task_id.into())
    }

    /// Expires the task if not taken within `ms`.
    pub fn ttl_ms(self, ms: u64) -> Submit {
        self.with("ttlMs", ms.into())
    }

    /// Orders tasks with the same key.
    pub fn partition_key(self, key: &str) -> Submit {
        self.with("partitionKey", key.into())
    }

    fn with(mut self, k: &str, v: Value) -> Submit {
        self.data[k] = v;
        self
    }

    /// The operation's data.
    pub fn into_data(self) -> Value {
        self.data
    }
}

/// The answer to `bus.submit`.
#[derive(Debug, Clone, Deserialize)]
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

/// A task record: the A2A task plus bus bookkeeping.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// The A2A v1.0 Task.
    pub task: Value,
    /// Goes up with every change.
    pub version: u64,
    /// The capability it was submitted to.
    #[serde(default)]
    pub capability: String,
    /// The chain's correlation id.
    #[serde(default)]
    pub correlation_id: String,
    /// The agent that holds or held it.
    #[serde(default)]
    pub agent: Option<String>,
}

impl TaskRecord {
    /// The task's state (`TASK_STATE_…`).
    pub fn state(&self) -> &str {
        self.task["status"]["state"].as_str().unwrap_or_default()
    }

    /// True once the task can no longer change.
    pub fn is_terminal(&self) -> bool {
        TERMINAL_STATES.contains(&self.state())
    }

    /// The text of the status message (the final answer, or the question when input-required).
    pub fn status_text(&self) -> String {
        message_text(&self.task["status"]["message"])
    }
}

/// The text parts of an A2A message, joined.
pub fn message_text(message: &Value) -> String {
    message["parts"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
        .unwrap_or_default()
}

/// A task pushed to an agent.
#[derive(Debug, Clone, Deserialize)]
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
    /// The A2A Task; the request is `history[0]`.
    pub task: Value,
}

/// A `message` frame from the hub on the bus socket.
#[derive(Debug, Clone)]
pub enum Push {
    /// A task for a capability this connection serves.
    Task(TaskPush),
    /// A task this connection holds was canceled.
    Canceled {
        /// The task id.
        task_id: String,
    },
    /// An event of a subscribed group.
    Event {
        /// The group.
        group: String,
        /// The event id, for resuming.
        cursor: String,
        /// The CloudEvents envelope.
        envelope: Value,
    },
    /// Events may have been missed: catch up with `history`.
    Resync,
    /// A push this client does not know.
    Other(Value),
}

impl Push {
    /// Reads a push from a message frame's `data`.
    pub fn from_data(data: Value) -> Push {
        let s = |k: &str| data[k].as_str().unwrap_or_default().to_string();
        match data["kind"].as_str() {
            Some("bus.task") => match serde_json::from_value::<TaskPush>(data.clone()) {
                Ok(t) => Push::Task(t),
                Err(_) => Push::Other(data),
            },
            Some("bus.task.canceled") => Push::Canceled {
                task_id: s("taskId"),
            },
            Some("bus.event") => Push::Event {
                group: s("group"),
                cursor: s("cursor"),
                envelope: data["envelope"].clone(),
            },
            Some("bus.resync") => Push::Resync,
            _ => Push::Other(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pushes_and_records() {
        let p = Push::from_data(json!({"kind": "bus.task", "capability": "c",
            "correlationId": "x", "deliveries": 2, "task": {"id": "t"}}));
        assert!(matches!(p, Push::Task(t) if t.deliveries == 2 && t.task["id"] == "t"));
        let p = Push::from_data(json!({"kind": "bus.task.canceled", "taskId": "t"}));
        assert!(matches!(p, Push::Canceled { task_id } if task_id == "t"));
        assert!(matches!(
            Push::from_data(json!({"kind": "bus.task"})),
            Push::Other(_)
        ));
        let r: TaskRecord = serde_json::from_value(json!({"version": 3, "task": {"status":
            {"state": "TASK_STATE_COMPLETED", "message": {"parts": [{"text": "a"}, {"text": "b"}]}}}}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.is_terminal());
        assert_eq!(r.status_text(), "ab");
        let s = Submit::new("c", "t").parent("p").into_data();
        assert_eq!(s["parentTaskId"], "p");
    }
}
