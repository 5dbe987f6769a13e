//! What a submitter sends (`Submit`): the data of `bus.submit`, built step by step. What it
//! gets back (`Submitted`, `TaskRecord`) and what the hub pushes (`Push`) are the protocol's
//! types, re-exported by the crate.

use serde_json::{Value, json};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_submissions() {
        let s = Submit::new("c", "t").parent("p").into_data();
        assert_eq!(s["parentTaskId"], "p");
    }
}
