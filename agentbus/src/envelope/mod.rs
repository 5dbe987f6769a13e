//! The bus envelope: a CloudEvents 1.0 event in JSON structured mode, with the bus's correlation,
//! tracing, task and delivery extensions. Every message on the bus (task submissions, status and
//! artifact updates, context updates, request/reply) travels in one of these.

mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock;

/// A new sortable event id (ULID), strictly increasing within the process.
pub use nerve_protocol::id::new_id;
pub use validate::{EnvelopeError, validate_traceparent};

/// The only CloudEvents version the bus speaks.
pub const SPEC_VERSION: &str = "1.0";

/// Event `type` values used by the bus.
pub mod types {
    /// A task was submitted to a capability; `data` is `{"task": Task}`.
    pub const TASK_SUBMITTED: &str = "bus.task.submitted";
    /// A task changed state; `data` is `{"statusUpdate": TaskStatusUpdateEvent}`.
    pub const TASK_STATUS: &str = "bus.task.status";
    /// A task produced an artifact; `data` is `{"artifactUpdate": TaskArtifactUpdateEvent}`.
    pub const TASK_ARTIFACT: &str = "bus.task.artifact";
    /// Someone asked to cancel a task.
    pub const TASK_CANCEL_REQUESTED: &str = "bus.task.cancel.requested";
    /// Shared context for a `contextid` changed.
    pub const CONTEXT_UPDATED: &str = "bus.context.updated";
    /// A request expecting one reply at `replyto`.
    pub const RPC_REQUEST: &str = "bus.rpc.request";
    /// The reply to a request (or the error reply written when it timed out).
    pub const RPC_REPLY: &str = "bus.rpc.reply";
}

/// A CloudEvents 1.0 envelope with the bus extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// CloudEvents version, always `1.0`.
    pub specversion: String,
    /// Unique, sortable event id (a ULID when the bus creates it).
    pub id: String,
    /// URI reference naming the producer, e.g. `agent://planner`.
    pub source: String,
    /// Event type, e.g. `bus.task.status`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the event is about, e.g. `task/<id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When the event happened (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Media type of `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Id of the request that started the whole chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// Id of the event that directly caused this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    /// W3C trace context of the originating request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The task this event belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taskid: Option<String>,
    /// The conversation (A2A `contextId`) this event belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contextid: Option<String>,
    /// Events with the same key are delivered in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitionkey: Option<String>,
    /// Where a reply to this event goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replyto: Option<String>,
    /// After this time (RFC 3339) the event is dead-lettered instead of delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expirytime: Option<String>,
    /// How many times delivery was retried after a handled failure (0 on first send).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// Event payload; for task events an A2A v1.0 `StreamResponse`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Other extension attributes (lowercase alphanumeric names; string, number or bool values).
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Envelope {
    /// A new event with a fresh ULID id and the current time.
    pub fn new(source: impl Into<String>, event_type: impl Into<String>) -> Self {
        Envelope {
            specversion: SPEC_VERSION.to_string(),
            id: new_id(),
            source: source.into(),
            event_type: event_type.into(),
            subject: None,
            time: Some(clock::now_rfc3339()),
            datacontenttype: Some("application/json".to_string()),
            correlationid: None,
            causationid: None,
            traceparent: None,
            taskid: None,
            contextid: None,
            partitionkey: None,
            replyto: None,
            expirytime: None,
            attempt: 0,
            data: None,
            extensions: BTreeMap::new(),
        }
    }

    /// A new event caused by `cause`: inherits its correlation, trace, task and context ids.
    pub fn caused_by(
        cause: &Envelope,
        source: impl Into<String>,
        event_type: impl Into<String>,
    ) -> Self {
        let mut e = Envelope::new(source, event_type);
        e.correlationid = Some(cause.correlation_id().to_string());
        e.causationid = Some(cause.id.clone());
        e.traceparent = cause.traceparent.clone();
        e.taskid = cause.taskid.clone();
        e.contextid = cause.contextid.clone();
        e
    }

    /// The chain's correlation id; an event without one starts its own chain.
    pub fn correlation_id(&self) -> &str {
        self.correlationid.as_deref().unwrap_or(&self.id)
    }

    /// Sets `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets `subject`.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets `expirytime` to now + `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.expirytime = Some(clock::rfc3339_after(ttl));
        self
    }

    /// Unix milliseconds of `expirytime`, if set and valid.
    pub fn expiry_ms(&self) -> Option<u64> {
        self.expirytime.as_deref().and_then(clock::parse_ms)
    }

    /// Unix milliseconds of `time`, if set and valid.
    pub fn time_ms(&self) -> Option<u64> {
        self.time.as_deref().and_then(clock::parse_ms)
    }

    /// Whether `expirytime` has passed at `now_ms`.
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expiry_ms().is_some_and(|t| t <= now_ms)
    }

    /// Serializes to JSON (structured mode).
    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and `Value`s cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and validates a structured-mode JSON event.
    pub fn from_json(text: &str) -> Result<Envelope, EnvelopeError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        match value {
            Value::Object(map) => Envelope::from_map(map),
            _ => Err(EnvelopeError::NotObject),
        }
    }

    /// Validates a JSON object field by field and builds the envelope.
    pub fn from_map(mut map: Map<String, Value>) -> Result<Envelope, EnvelopeError> {
        use validate::{opt_string, req_string, take_attempt};
        let specversion = req_string(&mut map, "specversion")?;
        let env = Envelope {
            specversion,
            id: req_string(&mut map, "id")?,
            source: req_string(&mut map, "source")?,
            event_type: req_string(&mut map, "type")?,
            subject: opt_string(&mut map, "subject")?,
            time: opt_string(&mut map, "time")?,
            datacontenttype: opt_string(&mut map, "datacontenttype")?,
            correlationid: opt_string(&mut map, "correlationid")?,
            causationid: opt_string(&mut map, "causationid")?,
            traceparent: opt_string(&mut map, "traceparent")?,
            taskid: opt_string(&mut map, "taskid")?,
            contextid: opt_string(&mut map, "contextid")?,
            partitionkey: opt_string(&mut map, "partitionkey")?,
            replyto: opt_string(&mut map, "replyto")?,
            expirytime: opt_string(&mut map, "expirytime")?,
            attempt: take_attempt(&mut map)?,
            data: map.remove("data"),
            extensions: BTreeMap::new(),
        };
        if map.contains_key("data_base64") {
            return Err(EnvelopeError::Unsupported("data_base64"));
        }
        let mut env = env;
        env.extensions = map.into_iter().collect();
        env.validate()?;
        Ok(env)
    }

    /// Checks every attribute against CloudEvents 1.0 and the bus's extension rules.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        validate::validate(self)
    }
}

#[cfg(test)]
mod tests;
