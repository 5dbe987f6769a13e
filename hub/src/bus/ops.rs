//! The bus operations callers invoke by name, shared by the agent WebSocket (`invoke`/`event`
//! frames on `/bus/ws`) and `POST /bus/api/{op}`: each checks the caller's bus roles, then
//! calls the bus. Agent-side operations (register, status, complete, ask, subscribe) need the
//! WebSocket, which holds the agent's in-flight tasks.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nerve_agentbus::a2a::Role;
use nerve_agentbus::{BusError, Message, SubmitRequest, TaskRecord};
use nerve_protocol::{ErrorBody, ErrorName};
use serde_json::{Value, json};
use tracing::Instrument;

use super::grants::{Grants, Verb};
use super::history::{Selector, history};
use super::remote::Remote;
use super::{Bridge, BridgeCell};

/// Longest wait a caller may ask for (`bus.task.wait`).
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Wait used when a caller names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// How long `bus.task.ask` waits for a person when the agent names no time: people answer
/// in minutes, not seconds.
const DEFAULT_ASK: Duration = Duration::from_secs(3600);
/// Longest `bus.task.ask` (a day); the agent's lease is renewed all the while.
const MAX_ASK: Duration = Duration::from_secs(86_400);

/// Why an operation failed; `name()` is the error name on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The caller's roles do not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// Malformed or missing data.
    #[error("{0}")]
    BadRequest(String),
    /// No such task, chain, context or operation.
    #[error("{0}")]
    NotFound(String),
    /// Not possible in the current state (e.g. a terminal task).
    #[error("{0}")]
    Conflict(String),
    /// A wait ran out.
    #[error("{0}")]
    Timeout(String),
    /// The bus cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}

impl OpError {
    /// The error name: Forbidden, BadRequest, NotFound, Conflict, Timeout or Unavailable.
    pub fn name(&self) -> ErrorName {
        match self {
            OpError::Forbidden(_) => ErrorName::Forbidden,
            OpError::BadRequest(_) => ErrorName::BadRequest,
            OpError::NotFound(_) => ErrorName::NotFound,
            OpError::Conflict(_) => ErrorName::Conflict,
            OpError::Timeout(_) => ErrorName::Timeout,
            OpError::Unavailable(_) => ErrorName::Unavailable,
        }
    }

    /// The HTTP status of `POST /bus/api/{op}` for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            OpError::Forbidden(_) => StatusCode::FORBIDDEN,
            OpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Conflict(_) => StatusCode::CONFLICT,
            OpError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            OpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` object of a failed invoke or ack.
    pub fn body(&self) -> ErrorBody<'static> {
        ErrorBody::new(self.name(), self.to_string())
    }

    /// `{"name": …, "message": …}`
    pub fn to_json(&self) -> Value {
        json!({"name": self.name(), "message": self.to_string()})
    }
}

impl From<BusError> for OpError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::TaskNotFound(_) => OpError::NotFound(e.to_string()),
            BusError::Transition(_) | BusError::NotCancelable { .. } | BusError::Canceled(_) => {
                OpError::Conflict(e.to_string())
            }
            BusError::Timeout(..) => OpError::Timeout(e.to_string()),
            BusError::InvalidName(_) | BusError::Envelope(_) => OpError::BadRequest(e.to_string()),
            BusError::Transport(_) | BusError::Contention(_) => OpError::Unavailable(e.to_string()),
        }
    }
}

impl From<nerve_agentbus::transport::TransportError> for OpError {
    fn from(e: nerve_agentbus::transport::TransportError) -> Self {
        OpError::Unavailable(e.to_string())
    }
}

/// Who is calling: bus roles, and the agent connection for agent-side operations.
pub struct Caller {
    /// Bus roles from the token.
    pub grants: Grants,
    /// The `/bus/ws` connection, if the call came over one.
    pub remote: Option<Arc<Remote>>,
    /// The caller's `traceparent` header (`POST /bus/api`), if well-formed.
    pub traceparent: Option<String>,
}

/// The span of one bus operation, a child of the caller's span named by `data.traceparent`
/// (a disabled span when trace export is off, and for agent heartbeats, which say nothing).
pub(crate) fn op_span(op: &str, caller: &Caller, data: &Value) -> tracing::Span {
    if op == "bus.heartbeat" {
        return tracing::Span::none();
    }
    let span = crate::request_span!(
        "bus.op",
        otel.name = op,
        otel.kind = "server",
        op,
        user = caller.grants.principal.as_deref().unwrap_or(""),
        task = tracing::field::Empty,
    );
    if let Some(tp) = data.get("traceparent").and_then(Value::as_str) {
        crate::telemetry::set_parent_from_traceparent(&span, tp);
    }
    span
}

/// The `traceparent` a task submitted with `data` carries: `data.traceparent` (checked) or the
/// caller's header, replaced by the hub's own span when trace export is on.
fn submit_traceparent(caller: &Caller, data: &Value) -> Result<Option<String>, OpError> {
    let explicit = match data.get("traceparent") {
        None | Some(Value::Null) => None,
        Some(Value::String(tp)) => {
            nerve_agentbus::envelope::validate_traceparent(tp)
                .map_err(|e| OpError::BadRequest(e.to_string()))?;
            Some(tp.clone())
        }
        Some(_) => {
            return Err(OpError::BadRequest(
                "'traceparent' must be a W3C traceparent string".into(),
            ));
        }
    };
    Ok(crate::telemetry::traceparent_for_submit(
        explicit.or_else(|| caller.traceparent.clone()),
    ))
}

/// Runs operation `op` with `data` for `caller`.
pub async fn call(
    bridge: &Bridge,
    caller: &Caller,
    op: &str,
    data: Value,
) -> Result<Value, OpError> {
    match op {
        "bus.submit" => submit(bridge, caller, &data).await,
        "bus.task.get" => {
            let rec = readable_task(bridge, caller, &data).await?;
            Ok(task_json(&rec))
        }
        "bus.task.wait" => wait(bridge, caller, &data).await,
        "bus.task.cancel" => {
            let rec = readable_task_any(bridge, &data).await?;
            if !caller.grants.allows(Verb::Submit, &rec.capability)
                && !caller.grants.allows(Verb::Reply, &rec.capability)
            {
                return Err(forbidden("cancel tasks of", &rec.capability));
            }
            Ok(task_json(&bridge.bus.cancel(&rec.task.id).await?))
        }
        "bus.task.reply" => {
            let rec = readable_task_any(bridge, &data).await?;
            if !caller.grants.allows(Verb::Reply, &rec.capability) {
                return Err(forbidden("answer tasks of", &rec.capability));
            }
            let mut msg = message_of(&data, Role::User)?;
            if let Some(p) = &caller.grants.principal {
                msg.metadata
                    .insert("userId".into(), Value::from(p.as_str()));
            }
            Ok(task_json(&bridge.bus.reply_input(&rec.task.id, msg).await?))
        }
        "bus.history" => {
            need_watch(caller)?;
            let sel = Selector::from_data(&data)?;
            let after = data.get("after").and_then(Value::as_str);
            history(&bridge.bus, &sel, after).await
        }
        "bus.chain" => {
            need_watch(caller)?;
            let id = str_field(&data, "correlationId")?;
            let tree = bridge.bus.correlation_tree(id).await?;
            Ok(serde_json::to_value(&tree).unwrap_or(Value::Null))
        }
        "bus.context.publish" => {
            let id = str_field(&data, "contextId")?;
            if !caller.grants.allows(Verb::Context, id) {
                return Err(forbidden("publish context", id));
            }
            let value = data.get("value").cloned().unwrap_or(Value::Null);
            let version = bridge.bus.publish_context(id, value).await?;
            Ok(json!({"contextId": id, "version": version}))
        }
        "bus.context.get" => {
            let id = str_field(&data, "contextId")?;
            if !caller.grants.can_watch() && !caller.grants.allows(Verb::Context, id) {
                return Err(forbidden("read context", id));
            }
            let ctx = bridge.bus.context(id).await?;
            Ok(json!({"context": ctx}))
        }
        "bus.tasks" => super::inspect::tasks(bridge, caller, &data).await,
        "bus.dlq.list" => super::inspect::dead_letters(bridge, caller, &data).await,
        "bus.dlq.redrive" => super::inspect::redrive(bridge, caller, &data).await,
        "bus.queues" => super::inspect::queues(bridge, caller).await,
        "bus.peek" => super::inspect::peek(bridge, caller, &data).await,
        "bus.agents" => {
            need_watch(caller)?;
            let cards = match data.get("capability").and_then(Value::as_str) {
                Some(cap) => bridge.bus.agents_for(cap).await?,
                None => bridge.bus.transport().agents().await?,
            };
            Ok(json!({"agents": cards}))
        }
        _ => match &caller.remote {
            Some(remote) => remote.call(bridge, caller, op, &data).await,
            None if super::remote::OPS.contains(&op) => Err(OpError::BadRequest(format!(
                "'{op}' is an agent operation: call it over the /bus/ws WebSocket"
            ))),
            None => Err(unknown(op)),
        },
    }
}

/// The error for an operation nobody knows.
pub fn unknown(op: &str) -> OpError {
    OpError::NotFound(format!("unknown bus operation '{op}'"))
}

/// `POST /bus/api/{op}`: the operation with the JSON body as its data.
pub async fn http(
    State(cell): State<BridgeCell>,
    Path(op): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let bridge = match cell.get() {
        Ok(b) => b,
        Err(e) => return (e.status(), Json(e.to_json())).into_response(),
    };
    let grants = match super::grants::verify(&cell.app, &headers, &uri) {
        Ok(g) => g,
        Err(e) => {
            let body = json!({"name": ErrorName::Unauthorized, "message": e.to_string()});
            return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        }
    };
    let data: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let e = OpError::BadRequest(format!("the body is not JSON: {e}"));
                return (e.status(), Json(e.to_json())).into_response();
            }
        }
    };
    let caller = Caller {
        grants,
        remote: None,
        traceparent: crate::telemetry::header_traceparent(&headers),
    };
    let span = op_span(&op, &caller, &data);
    crate::telemetry::set_parent_from_headers(&span, &headers);
    match call(&bridge, &caller, &op, data).instrument(span).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => (e.status(), Json(e.to_json())).into_response(),
    }
}

async fn submit(bridge: &Bridge, caller: &Caller, data: &Value) -> Result<Value, OpError> {
    let cap = str_field(data, "capability")?;
    if !caller.grants.allows(Verb::Submit, cap) {
        return Err(forbidden("submit to", cap));
    }
    let mut msg = message_of(data, Role::User)?;
    if let Some(p) = &caller.grants.principal {
        msg.metadata
            .insert("userId".into(), Value::from(p.as_str()));
    }
    let mut req = SubmitRequest::new(cap, msg);
    if let Some(tp) = submit_traceparent(caller, data)? {
        req = req.traceparent(tp);
    }
    if let Some(c) = data.get("contextId").and_then(Value::as_str) {
        req = req.context_id(c);
    }
    if let Some(k) = data.get("partitionKey").and_then(Value::as_str) {
        req = req.partition_key(k);
    }
    if let Some(k) = data.get("idempotencyKey").and_then(Value::as_str) {
        req = req.idempotency_key(k);
    }
    if let Some(ms) = data.get("ttlMs").and_then(Value::as_u64) {
        req = req.ttl(Duration::from_millis(ms));
    }
    if let Some(parent) = data.get("parentTaskId").and_then(Value::as_str) {
        let p = bridge
            .bus
            .task(parent)
            .await?
            .ok_or_else(|| OpError::NotFound(format!("parent task {parent} not found")))?;
        // The sub-task joins the parent's chain, caused by the event that started the parent.
        req = req.caused_by(p.correlation_id.clone(), p.submitted_event_id.clone());
        if data.get("contextId").is_none() {
            req = req.context_id(p.task.context_id.clone());
        }
    }
    let handle = bridge.bus.submit(req).await?;
    tracing::Span::current().record("task", handle.task_id.as_str());
    if let Some(r) = &caller.remote {
        r.remember_submitted(&handle.task_id);
    }
    let rec = bridge.bus.task(&handle.task_id).await?;
    Ok(json!({
        "taskId": handle.task_id,
        "correlationId": handle.correlation_id,
        "contextId": rec.as_ref().map(|r| r.task.context_id.clone()),
        "duplicate": handle.outcome == nerve_agentbus::EnqueueOutcome::Duplicate,
    }))
}

async fn wait(bridge: &Bridge, caller: &Caller, data: &Value) -> Result<Value, OpError> {
    let rec = readable_task(bridge, caller, data).await?;
    let timeout = wait_of(data);
    let settled = data.get("until").and_then(Value::as_str) == Some("settled");
    let after = data
        .get("afterVersion")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let rec = bridge
        .bus
        .wait_task(&rec.task.id, timeout, |r| {
            r.version > after
                && (r.state().is_terminal() || (settled && r.state().is_interrupted()))
        })
        .await?;
    Ok(task_json(&rec))
}

/// The wait a caller asked for (`timeoutMs`), capped.
pub fn wait_of(data: &Value) -> Duration {
    requested_wait(data, DEFAULT_WAIT, MAX_WAIT)
}

/// How long `bus.task.ask` waits for an answer (`timeoutMs`), capped.
pub fn ask_wait_of(data: &Value) -> Duration {
    requested_wait(data, DEFAULT_ASK, MAX_ASK)
}

fn requested_wait(data: &Value, default: Duration, max: Duration) -> Duration {
    data.get("timeoutMs")
        .and_then(Value::as_u64)
        .map(Duration::from_millis)
        .unwrap_or(default)
        .min(max)
}

/// A wait as a person reads it: "90 s", "5 min", "2 h".
pub fn spoken(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{} s", s.max(1))
    }
}

async fn readable_task_any(bridge: &Bridge, data: &Value) -> Result<TaskRecord, OpError> {
    let id = str_field(data, "taskId")?;
    bridge
        .bus
        .task(id)
        .await?
        .ok_or_else(|| OpError::NotFound(format!("task {id} not found")))
}

/// A task the caller may read: with `bus.watch`, or one this connection submitted or holds.
async fn readable_task(
    bridge: &Bridge,
    caller: &Caller,
    data: &Value,
) -> Result<TaskRecord, OpError> {
    let id = str_field(data, "taskId")?;
    let own = caller.remote.as_ref().is_some_and(|r| r.knows(id));
    if !caller.grants.can_watch() && !own {
        return Err(OpError::Forbidden(format!(
            "reading task {id} needs the bus.watch role (or having submitted it on this connection)"
        )));
    }
    readable_task_any(bridge, data).await
}

/// `Forbidden` unless the caller has `bus.watch` (or `bus.admin`).
pub fn need_watch(caller: &Caller) -> Result<(), OpError> {
    if caller.grants.can_watch() {
        Ok(())
    } else {
        Err(OpError::Forbidden("this needs the bus.watch role".into()))
    }
}

/// A forbidden error naming the missing role.
pub fn forbidden(what: &str, target: &str) -> OpError {
    OpError::Forbidden(format!("the token has no bus role to {what} '{target}'"))
}

/// A required string field.
pub fn str_field<'a>(data: &'a Value, key: &str) -> Result<&'a str, OpError> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OpError::BadRequest(format!("'{key}' (a string) is required")))
}

/// The message of an operation: `message` (an A2A Message) or `text`.
pub fn message_of(data: &Value, role: Role) -> Result<Message, OpError> {
    if let Some(m) = data.get("message") {
        let mut m = m.clone();
        if let Some(o) = m.as_object_mut() {
            o.entry("messageId")
                .or_insert_with(|| Value::from(nerve_agentbus::Bus::new_id()));
            o.entry("role").or_insert_with(|| match role {
                Role::User => Value::from("ROLE_USER"),
                Role::Agent => Value::from("ROLE_AGENT"),
            });
        }
        return serde_json::from_value(m)
            .map_err(|e| OpError::BadRequest(format!("'message' is not an A2A Message: {e}")));
    }
    let text = data
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| OpError::BadRequest("give 'message' or 'text'".into()))?;
    let parts = vec![nerve_agentbus::Part::text(text)];
    Ok(Message::new(role, parts))
}

/// A task record as operations return it.
pub fn task_json(rec: &TaskRecord) -> Value {
    json!({"task": rec})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_people_say_them_and_asks_default_to_an_hour() {
        assert_eq!(spoken(Duration::from_secs(3600)), "1 h");
        assert_eq!(spoken(Duration::from_secs(300)), "5 min");
        assert_eq!(spoken(Duration::from_millis(1500)), "1 s");
        assert_eq!(spoken(Duration::from_secs(90)), "90 s");
        assert_eq!(ask_wait_of(&json!({})), Duration::from_secs(3600));
        assert_eq!(ask_wait_of(&json!({"timeoutMs": 1_000_000_000})), MAX_ASK);
        assert_eq!(wait_of(&json!({"timeoutMs": 1_000_000_000})), MAX_WAIT);
    }
}
