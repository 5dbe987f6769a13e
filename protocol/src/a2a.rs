//! A2A v1.0 data shapes (Task, Message, Part, Artifact, StreamResponse, AgentCard) as JSON, so
//! task events on the bus can be forwarded unchanged to A2A clients and the hub bridge, and
//! agents and clients read the same types the bus writes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A2A task states. Serialized with v1.0 names; v0.3 lowercase names are accepted on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    /// Accepted, not yet picked up.
    Submitted,
    /// A handler is working on it.
    Working,
    /// Waiting for the requester to answer a question.
    InputRequired,
    /// Waiting for the requester to authenticate.
    AuthRequired,
    /// Finished successfully (terminal).
    Completed,
    /// Finished with an error (terminal).
    Failed,
    /// Canceled on request (terminal).
    Canceled,
    /// The agent refused it (terminal).
    Rejected,
}

impl TaskState {
    /// Every state, for tests and tools.
    pub const ALL: [TaskState; 8] = [
        TaskState::Submitted,
        TaskState::Working,
        TaskState::InputRequired,
        TaskState::AuthRequired,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::Rejected,
    ];

    /// The A2A v1.0 name, e.g. `TASK_STATE_WORKING`.
    pub fn as_v1(self) -> &'static str {
        match self {
            TaskState::Submitted => "TASK_STATE_SUBMITTED",
            TaskState::Working => "TASK_STATE_WORKING",
            TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
            TaskState::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
            TaskState::Completed => "TASK_STATE_COMPLETED",
            TaskState::Failed => "TASK_STATE_FAILED",
            TaskState::Canceled => "TASK_STATE_CANCELED",
            TaskState::Rejected => "TASK_STATE_REJECTED",
        }
    }

    /// Parses a v1.0 name or a v0.3 lowercase name (`input-required`, `canceled`, ...).
    pub fn parse(name: &str) -> Option<TaskState> {
        let s = match name {
            "TASK_STATE_SUBMITTED" | "submitted" => TaskState::Submitted,
            "TASK_STATE_WORKING" | "working" => TaskState::Working,
            "TASK_STATE_INPUT_REQUIRED" | "input-required" => TaskState::InputRequired,
            "TASK_STATE_AUTH_REQUIRED" | "auth-required" => TaskState::AuthRequired,
            "TASK_STATE_COMPLETED" | "completed" => TaskState::Completed,
            "TASK_STATE_FAILED" | "failed" => TaskState::Failed,
            "TASK_STATE_CANCELED" | "canceled" | "cancelled" => TaskState::Canceled,
            "TASK_STATE_REJECTED" | "rejected" => TaskState::Rejected,
            _ => return None,
        };
        Some(s)
    }

    /// Completed, failed, canceled and rejected are terminal: nothing leaves them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }

    /// Input- and auth-required pause the task until the requester answers.
    pub fn is_interrupted(self) -> bool {
        matches!(self, TaskState::InputRequired | TaskState::AuthRequired)
    }
}

/// Compares with a wire name (v1.0 or v0.3), as clients often hold states as strings.
impl PartialEq<&str> for TaskState {
    fn eq(&self, name: &&str) -> bool {
        TaskState::parse(name) == Some(*self)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_v1())
    }
}

impl Serialize for TaskState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_v1())
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        TaskState::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown task state `{name}`")))
    }
}

/// One piece of content: exactly one of text, raw (base64), url or data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Plain text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Base64 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// A link to the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Structured JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Media type of the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// File name, for file content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Part {
            text: Some(text.into()),
            ..Part::default()
        }
    }

    /// A structured-data part.
    pub fn data(data: Value) -> Self {
        Part {
            data: Some(data),
            ..Part::default()
        }
    }
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The requester.
    #[serde(rename = "ROLE_USER", alias = "user")]
    User,
    /// The agent.
    #[serde(rename = "ROLE_AGENT", alias = "agent")]
    Agent,
}

/// An A2A message: one turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Sender-set unique id.
    pub message_id: String,
    /// Who sent it.
    pub role: Role,
    /// The content.
    pub parts: Vec<Part>,
    /// Conversation id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Task id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl Message {
    /// A user message with one text part.
    pub fn user_text(text: impl Into<String>) -> Self {
        Message::new(Role::User, vec![Part::text(text)])
    }

    /// An agent message with one text part.
    pub fn agent_text(text: impl Into<String>) -> Self {
        Message::new(Role::Agent, vec![Part::text(text)])
    }

    /// A message with a fresh id.
    pub fn new(role: Role, parts: Vec<Part>) -> Self {
        Message {
            message_id: crate::id::new_id(),
            role,
            parts,
            context_id: None,
            task_id: None,
            metadata: Map::new(),
        }
    }

    /// All text parts joined by newlines.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect();
        texts.join("\n")
    }
}

/// A task's current status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The state.
    pub state: TaskState,
    /// A message explaining the state (the question for input-required, the error for failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// When the state was entered (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// Output of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Unique within the task.
    pub artifact_id: String,
    /// Human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The content.
    pub parts: Vec<Part>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl Artifact {
    /// An artifact with one text part.
    pub fn text(id: impl Into<String>, text: impl Into<String>) -> Self {
        Artifact {
            artifact_id: id.into(),
            name: None,
            parts: vec![Part::text(text)],
            metadata: Map::new(),
        }
    }
}

/// An A2A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Task id.
    pub id: String,
    /// Conversation id.
    pub context_id: String,
    /// Current status.
    pub status: TaskStatus,
    /// Outputs so far.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Messages exchanged so far.
    #[serde(default)]
    pub history: Vec<Message>,
    /// Free-form metadata (the bus puts `reason` here when it fails a task).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// A status change, as streamed to watchers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatusUpdateEvent {
    /// Task id.
    pub task_id: String,
    /// Conversation id.
    pub context_id: String,
    /// The new status.
    pub status: TaskStatus,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// A new or extended artifact, as streamed to watchers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskArtifactUpdateEvent {
    /// Task id.
    pub task_id: String,
    /// Conversation id.
    pub context_id: String,
    /// The artifact (or the chunk appended to it).
    pub artifact: Artifact,
    /// Whether the parts extend an existing artifact with the same id.
    #[serde(default)]
    pub append: bool,
    /// Whether this is the last chunk.
    #[serde(default)]
    pub last_chunk: bool,
}

/// One streamed A2A event: exactly one field is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamResponse {
    /// The whole task.
    Task(Task),
    /// A message.
    Message(Message),
    /// A status change.
    StatusUpdate(TaskStatusUpdateEvent),
    /// An artifact update.
    ArtifactUpdate(TaskArtifactUpdateEvent),
}

impl StreamResponse {
    /// As a JSON value for an envelope's `data`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Reads a `StreamResponse` from an envelope's `data`.
    pub fn from_value(v: &Value) -> Option<StreamResponse> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// A skill an agent offers (A2A `AgentSkill`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSkill {
    /// Skill id; on the bus it is also a capability name tasks are routed by.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Search tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Example prompts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

/// Optional A2A features an agent supports.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    /// Whether it streams updates.
    #[serde(default)]
    pub streaming: bool,
    /// Whether it sends push notifications.
    #[serde(default)]
    pub push_notifications: bool,
}

/// An A2A agent card plus the bus's agent id.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    /// Unique id of this agent instance on the bus.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Agent version.
    #[serde(default)]
    pub version: String,
    /// Optional features.
    #[serde(default)]
    pub capabilities: AgentCapabilities,
    /// Skills; each skill id is a capability the agent serves.
    #[serde(default)]
    pub skills: Vec<AgentSkill>,
}

impl AgentCard {
    /// A card with no skills yet.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        AgentCard {
            id: id.into(),
            name: name.into(),
            ..AgentCard::default()
        }
    }

    /// Whether the card offers `capability` as a skill.
    pub fn serves(&self, capability: &str) -> bool {
        self.skills.iter().any(|s| s.id == capability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_use_v1_names_and_accept_v03() {
        assert_eq!(
            serde_json::to_value(TaskState::InputRequired).ok(),
            Some(json!("TASK_STATE_INPUT_REQUIRED"))
        );
        let s: TaskState = serde_json::from_value(json!("input-required")).expect("v0.3");
        assert_eq!(s, TaskState::InputRequired);
        assert!(serde_json::from_value::<TaskState>(json!("unknown")).is_err());
        assert!(TaskState::Canceled == "TASK_STATE_CANCELED");
        assert!(TaskState::Canceled != "TASK_STATE_FAILED");
    }

    #[test]
    fn stream_response_shape() {
        let ev = StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
            task_id: "t".into(),
            context_id: "c".into(),
            status: TaskStatus {
                state: TaskState::Working,
                message: None,
                timestamp: None,
            },
            metadata: Map::new(),
        });
        assert_eq!(
            ev.to_value(),
            json!({"statusUpdate": {"taskId": "t", "contextId": "c",
                   "status": {"state": "TASK_STATE_WORKING"}}})
        );
        assert_eq!(StreamResponse::from_value(&ev.to_value()), Some(ev));
    }

    #[test]
    fn v03_messages_parse() {
        let m: Message = serde_json::from_value(json!({
            "kind": "message", "messageId": "m1", "role": "user",
            "parts": [{"kind": "text", "text": "hi"}]
        }))
        .expect("v0.3 message");
        assert_eq!(m.text(), "hi");
        assert_eq!(m.role, Role::User);
    }
}
