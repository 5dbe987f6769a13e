//! The JSON-RPC methods of the gateway: SendMessage, SendStreamingMessage (SSE), GetTask,
//! ListTasks, CancelTask, SubscribeToTask (SSE), the four `*TaskPushNotificationConfig` methods
//! and GetExtendedAgentCard, with the v0.3 method
//! names accepted as aliases. Callers authenticate with a bus token; its `bus.*` roles decide
//! which capabilities they may use, exactly as on `/bus/api`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use nerve_agentbus::a2a::{Task, TaskStatus};
use nerve_agentbus::{BusError, Message, SubmitRequest, TaskRecord, TaskState};
use serde_json::{Value, json};

use super::codes;
use crate::bus::{Bridge, BridgeCell, Grants, Verb};

/// How long a blocking SendMessage waits for the task to finish or pause.
const BLOCKING_WAIT: Duration = Duration::from_secs(120);
/// Largest ListTasks page.
const MAX_PAGE: usize = 100;

/// A JSON-RPC error.
#[derive(Debug)]
pub(super) struct RpcError {
    pub(super) code: i64,
    pub(super) message: String,
}

impl RpcError {
    pub(super) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

impl From<BusError> for RpcError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::TaskNotFound(_) => RpcError::new(codes::TASK_NOT_FOUND, e.to_string()),
            BusError::NotCancelable { .. } => {
                RpcError::new(codes::TASK_NOT_CANCELABLE, e.to_string())
            }
            BusError::Transition(_) => RpcError::new(codes::UNSUPPORTED_OPERATION, e.to_string()),
            BusError::InvalidName(_) => RpcError::new(codes::INVALID_PARAMS, e.to_string()),
            _ => RpcError::new(codes::INTERNAL, e.to_string()),
        }
    }
}

fn reply(id: &Value, r: Result<Value, RpcError>) -> Response {
    let body = match r {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id,
                         "error": {"code": e.code, "message": e.message}}),
    };
    Json(body).into_response()
}

/// `POST /a2a`, in a span that is a child of the caller's `traceparent`.
pub async fn handle(
    State(cell): State<BridgeCell>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let span = crate::request_span!(
        "a2a",
        otel.kind = "server",
        method = tracing::field::Empty,
        task = tracing::field::Empty,
    );
    crate::telemetry::set_parent_from_headers(&span, &headers);
    tracing::Instrument::instrument(rpc(cell, headers, uri, body), span).await
}

async fn rpc(cell: BridgeCell, headers: HeaderMap, uri: Uri, body: axum::body::Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                &Value::Null,
                Err(RpcError::new(codes::PARSE_ERROR, e.to_string())),
            );
        }
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let (Some(method), Some("2.0")) = (
        req.get("method").and_then(Value::as_str),
        req.get("jsonrpc").and_then(Value::as_str),
    ) else {
        let e = RpcError::new(codes::INVALID_REQUEST, "expected a JSON-RPC 2.0 request");
        return reply(&id, Err(e));
    };
    let bridge = match cell.get() {
        Ok(b) => b,
        Err(e) => return reply(&id, Err(RpcError::new(codes::INTERNAL, e.to_string()))),
    };
    let grants = match crate::bus::grants_of(&cell.app, &headers, &uri) {
        Ok(g) => g,
        Err(e) => {
            let body = json!({"jsonrpc": "2.0", "id": id,
                              "error": {"code": codes::INVALID_REQUEST, "message": e.to_string()}});
            return (axum::http::StatusCode::UNAUTHORIZED, Json(body)).into_response();
        }
    };
    let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
    let method = match method {
        "message/send" => "SendMessage",
        "message/stream" => "SendStreamingMessage",
        "tasks/get" => "GetTask",
        "tasks/list" => "ListTasks",
        "tasks/cancel" => "CancelTask",
        "tasks/resubscribe" => "SubscribeToTask",
        "agent/getAuthenticatedExtendedCard" => "GetExtendedAgentCard",
        "tasks/pushNotificationConfig/set" => "CreateTaskPushNotificationConfig",
        "tasks/pushNotificationConfig/get" => "GetTaskPushNotificationConfig",
        "tasks/pushNotificationConfig/list" => "ListTaskPushNotificationConfigs",
        "tasks/pushNotificationConfig/delete" => "DeleteTaskPushNotificationConfig",
        m => m,
    };
    tracing::Span::current().record("method", method);
    let traceparent = crate::telemetry::header_traceparent(&headers);
    match method {
        "SendMessage" => reply(
            &id,
            send(&bridge, &grants, &params, false, traceparent)
                .await
                .map(|(v, _, _)| v),
        ),
        "SendStreamingMessage" => {
            // Listen before submitting, so no event between the two is missed.
            let live = bridge.bus.transport().live();
            match send(&bridge, &grants, &params, true, traceparent).await {
                Ok((_, task_id, first)) => {
                    let start = super::stream::Start { live, first };
                    super::stream::sse(bridge, id, task_id, Some(start)).into_response()
                }
                Err(e) => reply(&id, Err(e)),
            }
        }
        "GetTask" => reply(&id, get_task(&bridge, &grants, &params).await),
        "ListTasks" => reply(&id, list_tasks(&bridge, &grants, &params).await),
        "CancelTask" => reply(&id, cancel(&bridge, &grants, &params).await),
        "SubscribeToTask" => match subscribable(&bridge, &grants, &params).await {
            Ok(task_id) => super::stream::sse(bridge, id, task_id, None).into_response(),
            Err(e) => reply(&id, Err(e)),
        },
        "GetExtendedAgentCard" => reply(
            &id,
            Err(RpcError::new(
                codes::EXTENDED_CARD_NOT_CONFIGURED,
                "no extended agent card is configured",
            )),
        ),
        "CreateTaskPushNotificationConfig" => {
            reply(&id, super::push::create(&bridge, &grants, &params).await)
        }
        "GetTaskPushNotificationConfig" => {
            reply(&id, super::push::get(&bridge, &grants, &params).await)
        }
        "ListTaskPushNotificationConfigs" => {
            reply(&id, super::push::list(&bridge, &grants, &params).await)
        }
        "DeleteTaskPushNotificationConfig" => {
            reply(&id, super::push::delete(&bridge, &grants, &params).await)
        }
        m => reply(
            &id,
            Err(RpcError::new(
                codes::METHOD_NOT_FOUND,
                format!("method '{m}' not found"),
            )),
        ),
    }
}

fn forbidden(what: &str) -> RpcError {
    RpcError::new(codes::INVALID_REQUEST, format!("forbidden: {what}"))
}

/// The capability a message goes to.
async fn capability_of(bridge: &Bridge, params: &Value, msg: &Message) -> Result<String, RpcError> {
    let meta = |v: Option<&Value>| {
        let v = v?;
        v.get("capability")
            .or_else(|| v.get("skill"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(c) = meta(params.get("metadata")) {
        return Ok(c);
    }
    if let Some(c) = msg
        .metadata
        .get("capability")
        .or_else(|| msg.metadata.get("skill"))
        .and_then(Value::as_str)
    {
        return Ok(c.to_string());
    }
    if let Some(c) = &bridge.app.config.bus.a2a_capability {
        return Ok(c.clone());
    }
    let agents = bridge
        .bus
        .transport()
        .agents()
        .await
        .map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))?;
    let mut caps: Vec<&str> = agents
        .iter()
        .flat_map(|a| a.skills.iter().map(|s| s.id.as_str()))
        .collect();
    caps.sort_unstable();
    caps.dedup();
    match caps.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "name a capability in message.metadata.capability (one of: {})",
                caps.join(", ")
            ),
        )),
    }
}

/// What `send` did: the SendMessage result (blocking calls), the task id, and for streams the
/// task as it was before this message (the stream's first event) with its version.
type Sent = (Value, String, Option<(Task, u64)>);

/// Submits (or continues) a task.
async fn send(
    bridge: &Bridge,
    grants: &Grants,
    params: &Value,
    streaming: bool,
    traceparent: Option<String>,
) -> Result<Sent, RpcError> {
    let mut msg: Message = params
        .get("message")
        .cloned()
        .and_then(|m| serde_json::from_value(m).ok())
        .ok_or_else(|| {
            RpcError::new(
                codes::INVALID_PARAMS,
                "params.message must be an A2A Message",
            )
        })?;
    let bus = &bridge.bus;
    let mut before = None;
    let task_id = if let Some(existing) = msg.task_id.clone() {
        let rec = bus.task(&existing).await?.ok_or_else(|| {
            RpcError::new(codes::TASK_NOT_FOUND, format!("task {existing} not found"))
        })?;
        if msg
            .context_id
            .as_ref()
            .is_some_and(|c| *c != rec.task.context_id)
        {
            return Err(RpcError::new(
                codes::INVALID_PARAMS,
                "contextId does not match the task's",
            ));
        }
        if !rec.state().is_interrupted() {
            return Err(RpcError::new(
                codes::UNSUPPORTED_OPERATION,
                format!(
                    "task {existing} is {} and takes no more messages",
                    rec.state()
                ),
            ));
        }
        if !grants.allows(Verb::Reply, &rec.capability)
            && !grants.allows(Verb::Submit, &rec.capability)
        {
            return Err(forbidden(&format!(
                "no bus role to answer tasks of '{}'",
                rec.capability
            )));
        }
        if let Some(push) = inline_push(params) {
            let allow_private = bridge.app.config.bus.push_allow_private;
            let config = super::push::parse(push, &existing, allow_private)?;
            super::push::store(bridge, &config).await?;
        }
        before = Some((rec.task.clone(), rec.version));
        bus.reply_input(&existing, msg).await?;
        existing
    } else {
        let cap = capability_of(bridge, params, &msg).await?;
        if !grants.allows(Verb::Submit, &cap) {
            return Err(forbidden(&format!("no bus role to submit to '{cap}'")));
        }
        if let Some(p) = &grants.principal {
            msg.metadata
                .insert("userId".into(), Value::from(p.as_str()));
        }
        let mut req = SubmitRequest::new(&cap, msg.clone());
        if let Some(push) = inline_push(params) {
            // Stored under the task's id before the task exists, so no early update is missed.
            let id = nerve_agentbus::Bus::new_id();
            let allow_private = bridge.app.config.bus.push_allow_private;
            let config = super::push::parse(push, &id, allow_private)?;
            super::push::store(bridge, &config).await?;
            req = req.idempotency_key(id);
        }
        if let Some(c) = &msg.context_id {
            req = req.context_id(c.clone());
        }
        if let Some(tp) = crate::telemetry::traceparent_for_submit(traceparent) {
            req = req.traceparent(tp);
        }
        let id = bus.submit(req).await?.task_id;
        tracing::Span::current().record("task", id.as_str());
        id
    };
    if streaming {
        let first = match before {
            Some(b) => Some(b),
            None => bus.task(&task_id).await?.map(|r| as_submitted(&r)),
        };
        return Ok((Value::Null, task_id, first));
    }
    let immediate = params
        .pointer("/configuration/returnImmediately")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let rec = if immediate {
        bus.task(&task_id).await?
    } else {
        let done = |r: &TaskRecord| r.state().is_terminal() || r.state().is_interrupted();
        match bus
            .wait_task(&task_id, BLOCKING_WAIT, |r| done(r) && r.version > 2)
            .await
        {
            Ok(r) => Some(r),
            Err(BusError::Timeout(..)) => bus.task(&task_id).await?,
            Err(e) => return Err(e.into()),
        }
    };
    let rec = rec.ok_or_else(|| RpcError::new(codes::TASK_NOT_FOUND, "task vanished"))?;
    Ok((json!({"task": trim_history(&rec, params)}), task_id, None))
}

/// A push setting sent along with a message (`configuration.taskPushNotificationConfig`, or
/// v0.3's `configuration.pushNotificationConfig`).
fn inline_push(params: &Value) -> Option<&Value> {
    let c = params.get("configuration")?;
    c.get("taskPushNotificationConfig")
        .or_else(|| c.get("pushNotificationConfig"))
        .filter(|v| v.is_object())
}

/// The task as it was when submitted (version 1): a stream starts there, so its client sees
/// every step even when the agent was quicker than the stream.
fn as_submitted(rec: &TaskRecord) -> (Task, u64) {
    let mut task = rec.task.clone();
    task.status = TaskStatus {
        state: TaskState::Submitted,
        message: None,
        timestamp: Some(nerve_agentbus::clock::format_ms(rec.created_ms)),
    };
    task.history.truncate(1);
    task.artifacts.clear();
    task.metadata.clear();
    (task, 1)
}

fn trim_history(rec: &TaskRecord, params: &Value) -> Value {
    let mut task = rec.task.clone();
    let limit = params
        .pointer("/configuration/historyLength")
        .or_else(|| params.get("historyLength"))
        .and_then(Value::as_u64);
    if let Some(n) = limit {
        let n = n as usize;
        if task.history.len() > n {
            task.history.drain(..task.history.len() - n);
        }
    }
    serde_json::to_value(task).unwrap_or(Value::Null)
}

fn task_id_of(params: &Value) -> Result<&str, RpcError> {
    params
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(codes::INVALID_PARAMS, "params.id (the task id) is required"))
}

pub(super) async fn readable(
    bridge: &Bridge,
    grants: &Grants,
    params: &Value,
) -> Result<TaskRecord, RpcError> {
    let id = task_id_of(params)?;
    let rec = bridge
        .bus
        .task(id)
        .await?
        .ok_or_else(|| RpcError::new(codes::TASK_NOT_FOUND, format!("task {id} not found")))?;
    if !grants.can_watch() && !grants.allows(Verb::Submit, &rec.capability) {
        // Do not reveal that the task exists.
        return Err(RpcError::new(
            codes::TASK_NOT_FOUND,
            format!("task {id} not found"),
        ));
    }
    Ok(rec)
}

async fn get_task(bridge: &Bridge, grants: &Grants, params: &Value) -> Result<Value, RpcError> {
    let rec = readable(bridge, grants, params).await?;
    Ok(trim_history(&rec, params))
}

async fn cancel(bridge: &Bridge, grants: &Grants, params: &Value) -> Result<Value, RpcError> {
    let rec = readable(bridge, grants, params).await?;
    let rec = bridge.bus.cancel(&rec.task.id).await?;
    Ok(serde_json::to_value(rec.task).unwrap_or(Value::Null))
}

async fn subscribable(
    bridge: &Bridge,
    grants: &Grants,
    params: &Value,
) -> Result<String, RpcError> {
    let rec = readable(bridge, grants, params).await?;
    if rec.state().is_terminal() {
        return Err(RpcError::new(
            codes::UNSUPPORTED_OPERATION,
            format!("task {} is {} (terminal)", rec.task.id, rec.state()),
        ));
    }
    Ok(rec.task.id)
}

async fn list_tasks(bridge: &Bridge, grants: &Grants, params: &Value) -> Result<Value, RpcError> {
    let page = params
        .get("pageSize")
        .and_then(Value::as_u64)
        .map_or(50, |n| n as usize)
        .clamp(1, MAX_PAGE);
    let offset: usize = params
        .get("pageToken")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let context = params.get("contextId").and_then(Value::as_str);
    let state = params
        .get("status")
        .and_then(Value::as_str)
        .and_then(nerve_agentbus::TaskState::parse);
    let all = bridge.bus.recent_tasks(1000).await?;
    let visible: Vec<&TaskRecord> = all
        .iter()
        .filter(|r| grants.can_watch() || grants.allows(Verb::Submit, &r.capability))
        .filter(|r| context.is_none_or(|c| r.task.context_id == c))
        .filter(|r| state.is_none_or(|s| r.state() == s))
        .collect();
    let tasks: Vec<Value> = visible
        .iter()
        .skip(offset)
        .take(page)
        .map(|r| trim_history(r, params))
        .collect();
    let next = if offset + page < visible.len() {
        (offset + page).to_string()
    } else {
        String::new()
    };
    Ok(json!({"tasks": tasks, "nextPageToken": next, "pageSize": page, "totalSize": visible.len()}))
}
