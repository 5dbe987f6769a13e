//! Cursor-based catch-up for watchers: the current snapshot, then every recorded event after a
//! cursor (an event id) from the chain's log, so a browser that reconnects loses no task event
//! even though group delivery itself is at-most-once.

use nerve_agentbus::correlation;
use nerve_agentbus::{Bus, Envelope};
use serde_json::{Value, json};

use super::OpError;

/// What to catch up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One task's events.
    Task(String),
    /// A whole correlation chain.
    Correlation(String),
    /// A shared context's updates.
    Context(String),
}

impl Selector {
    /// Reads `taskId`, `correlationId` or `contextId` from an operation's data.
    pub fn from_data(data: &Value) -> Result<Selector, OpError> {
        let field = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(t) = field("taskId") {
            return Ok(Selector::Task(t));
        }
        if let Some(c) = field("correlationId") {
            return Ok(Selector::Correlation(c));
        }
        if let Some(c) = field("contextId") {
            return Ok(Selector::Context(c));
        }
        Err(OpError::BadRequest(
            "name one of taskId, correlationId or contextId".into(),
        ))
    }
}

/// `{snapshot, events: [{cursor, envelope}], cursor, reset}`: the snapshot is the task record,
/// the chain's tree, or the shared context. `reset` is true when `after` was not found (the
/// caller should drop what it has and take these events as the whole history).
pub async fn history(bus: &Bus, sel: &Selector, after: Option<&str>) -> Result<Value, OpError> {
    let t = bus.transport();
    let (snapshot, events): (Value, Vec<Envelope>) = match sel {
        Selector::Task(id) => {
            let rec = bus
                .task(id)
                .await?
                .ok_or_else(|| OpError::NotFound(format!("task {id} not found")))?;
            let events = t
                .correlation(&rec.correlation_id)
                .await?
                .into_iter()
                .filter(|e| e.taskid.as_deref() == Some(id.as_str()))
                .collect();
            (serde_json::to_value(&rec).unwrap_or(Value::Null), events)
        }
        Selector::Correlation(id) => {
            let events = t.correlation(id).await?;
            if events.is_empty() {
                return Err(OpError::NotFound(format!("correlation {id} not found")));
            }
            let tree = correlation::build(id, &events);
            (serde_json::to_value(&tree).unwrap_or(Value::Null), events)
        }
        Selector::Context(id) => {
            let ctx = bus.context(id).await?;
            let events = t.correlation(&format!("context:{id}")).await?;
            (serde_json::to_value(&ctx).unwrap_or(Value::Null), events)
        }
    };
    let (start, reset) = match after {
        None => (0, false),
        Some(c) => match events.iter().position(|e| e.id == c) {
            Some(i) => (i + 1, false),
            None => (0, true),
        },
    };
    let tail: Vec<Value> = events[start..]
        .iter()
        .map(|e| json!({"cursor": e.id, "envelope": e}))
        .collect();
    let cursor = events
        .last()
        .map(|e| e.id.clone())
        .or_else(|| after.map(str::to_string));
    Ok(json!({"snapshot": snapshot, "events": tail, "cursor": cursor, "reset": reset}))
}
