//! The task lifecycle: the legal transitions between A2A v1.0 states, and what an update does
//! to the task record the bus stores per task. Pure code: the transports store records and
//! compare versions, this module decides what an update does to a record.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::a2a::{Artifact, Message, Task, TaskState, TaskStatus};
use crate::clock;

/// Whether a task may move from `from` to `to`.
///
/// submitted → working; working ⇄ input-required | auth-required; any non-terminal state →
/// completed | failed | canceled | rejected. Terminal states are absorbing.
pub fn can_transition(from: TaskState, to: TaskState) -> bool {
    use TaskState::*;
    if from.is_terminal() {
        return false;
    }
    if to.is_terminal() {
        return true;
    }
    matches!(
        (from, to),
        (Submitted, Working)
            | (Working, Working)
            | (Working, InputRequired)
            | (Working, AuthRequired)
            | (InputRequired, Working)
            | (AuthRequired, Working)
    )
}

/// Something that happens to a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum TaskEvent {
    /// A state change, optionally with a message (the question, the answer, the error).
    Status {
        /// The new state.
        state: TaskState,
        /// Message explaining it.
        message: Option<Message>,
        /// Metadata merged into the task's metadata (e.g. a dead-letter `reason`).
        #[serde(default)]
        metadata: Map<String, Value>,
    },
    /// A new artifact, or parts appended to one.
    Artifact {
        /// The artifact or chunk.
        artifact: Artifact,
        /// Append to an existing artifact with the same id.
        append: bool,
        /// Last chunk of the artifact.
        last_chunk: bool,
    },
    /// The requester answers an input- or auth-required step; the task resumes working.
    Reply {
        /// The answer.
        message: Message,
    },
}

impl TaskEvent {
    /// A status event without message or metadata.
    pub fn status(state: TaskState) -> Self {
        TaskEvent::Status {
            state,
            message: None,
            metadata: Map::new(),
        }
    }
}

/// What applying an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The record changed and its version went up by one.
    Changed,
    /// The update was already applied; nothing changed.
    Duplicate,
    /// The update was based on an older version; nothing changed.
    Stale,
}

/// Why an update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The state machine does not allow this move.
    #[error("illegal task transition {from} -> {to}")]
    Illegal {
        /// Current state.
        from: TaskState,
        /// Requested state.
        to: TaskState,
    },
    /// The task already finished.
    #[error("task is already {0} (terminal)")]
    Terminal(TaskState),
    /// A reply came while the task was not waiting for one.
    #[error("task is {0}, not waiting for input")]
    NotInterrupted(TaskState),
}

/// A task as the bus stores it; its wire shape lives with the protocol, its life here.
pub use nerve_protocol::bus::TaskRecord;

/// How a task record comes to be and changes: the bus's side of [`TaskRecord`].
pub trait Lifecycle {
    /// A freshly submitted task at version 1, with the request in its history.
    fn submitted(
        id: &str,
        context_id: &str,
        capability: &str,
        request: Message,
        correlation_id: &str,
        submitted_event_id: &str,
    ) -> Self;

    /// Applies `event`; `if_version` is the version the writer last saw (`None`: latest).
    fn apply(
        &mut self,
        event: &TaskEvent,
        if_version: Option<u64>,
    ) -> Result<Applied, TransitionError>;
}

impl Lifecycle for TaskRecord {
    fn submitted(
        id: &str,
        context_id: &str,
        capability: &str,
        request: Message,
        correlation_id: &str,
        submitted_event_id: &str,
    ) -> Self {
        let now = clock::now_ms();
        TaskRecord {
            task: Task {
                id: id.to_string(),
                context_id: context_id.to_string(),
                status: TaskStatus {
                    state: TaskState::Submitted,
                    message: None,
                    timestamp: Some(clock::format_ms(now)),
                },
                artifacts: Vec::new(),
                history: vec![request],
                metadata: Map::new(),
            },
            version: 1,
            capability: capability.to_string(),
            correlation_id: correlation_id.to_string(),
            submitted_event_id: submitted_event_id.to_string(),
            caused_by: None,
            agent: None,
            created_ms: now,
            updated_ms: now,
        }
    }

    fn apply(
        &mut self,
        event: &TaskEvent,
        if_version: Option<u64>,
    ) -> Result<Applied, TransitionError> {
        let current = self.state();
        if current.is_terminal() {
            return match event {
                TaskEvent::Status { state, .. } if *state == current => Ok(Applied::Duplicate),
                _ => Err(TransitionError::Terminal(current)),
            };
        }
        if if_version.is_some_and(|v| v < self.version) {
            return Ok(Applied::Stale);
        }
        match event {
            TaskEvent::Status {
                state,
                message,
                metadata,
            } => {
                if *state == current && *message == self.task.status.message {
                    return Ok(Applied::Duplicate);
                }
                if !can_transition(current, *state) {
                    return Err(TransitionError::Illegal {
                        from: current,
                        to: *state,
                    });
                }
                if let Some(m) = message {
                    self.task.history.push(m.clone());
                }
                for (k, v) in metadata {
                    self.task.metadata.insert(k.clone(), v.clone());
                }
                set_status(self, *state, message.clone());
            }
            TaskEvent::Artifact {
                artifact, append, ..
            } => {
                let existing = self
                    .task
                    .artifacts
                    .iter_mut()
                    .find(|a| a.artifact_id == artifact.artifact_id);
                match (existing, append) {
                    (Some(a), true) => a.parts.extend(artifact.parts.iter().cloned()),
                    (Some(a), false) if a == artifact => return Ok(Applied::Duplicate),
                    (Some(a), false) => *a = artifact.clone(),
                    (None, _) => self.task.artifacts.push(artifact.clone()),
                }
            }
            TaskEvent::Reply { message } => {
                if self
                    .task
                    .history
                    .iter()
                    .any(|m| m.message_id == message.message_id)
                {
                    return Ok(Applied::Duplicate);
                }
                if !current.is_interrupted() {
                    return Err(TransitionError::NotInterrupted(current));
                }
                self.task.history.push(message.clone());
                set_status(self, TaskState::Working, None);
            }
        }
        self.version += 1;
        self.updated_ms = clock::now_ms();
        Ok(Applied::Changed)
    }
}

fn set_status(record: &mut TaskRecord, state: TaskState, message: Option<Message>) {
    record.task.status = TaskStatus {
        state,
        message,
        timestamp: Some(clock::now_rfc3339()),
    };
}

#[cfg(test)]
mod tests;
