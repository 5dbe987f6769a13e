//! Operations that look across the whole bus rather than at one task, for the pages (the
//! approvals waiting for a person, the recent chains) and for operators (`nerve-bus --hub`):
//! recent tasks filtered by state, dead letters, and putting dead letters back.

use nerve_agentbus::TaskState;
use serde_json::{Value, json};

use super::Bridge;
use super::ops::{Caller, OpError, need_watch, str_field};

/// Tasks `bus.tasks` answers with when the caller names no `limit`.
const DEFAULT_LIMIT: usize = 50;
/// Most tasks `bus.tasks` looks at, newest first, before filtering.
const SCAN: usize = 500;

/// `bus.tasks {limit?, state?, rootsOnly?}`: the newest task records, optionally only those
/// in `state` (e.g. `TASK_STATE_INPUT_REQUIRED`: waiting for a person) or only chain roots.
pub async fn tasks(bridge: &Bridge, caller: &Caller, data: &Value) -> Result<Value, OpError> {
    need_watch(caller)?;
    let limit = data
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_LIMIT, |n| (n as usize).clamp(1, SCAN));
    let state = match data.get("state").and_then(Value::as_str) {
        None => None,
        Some(s) => Some(
            TaskState::parse(s)
                .ok_or_else(|| OpError::BadRequest(format!("unknown task state '{s}'")))?,
        ),
    };
    let roots_only = data.get("rootsOnly").and_then(Value::as_bool) == Some(true);
    let filtered = state.is_some() || roots_only;
    let records = bridge
        .bus
        .recent_tasks(if filtered { SCAN } else { limit })
        .await?;
    let tasks: Vec<Value> = records
        .iter()
        .filter(|r| state.is_none_or(|s| r.state() == s))
        .filter(|r| !roots_only || r.correlation_id == r.task.id)
        .take(limit)
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    Ok(json!({ "tasks": tasks }))
}

/// `bus.dlq.list {capability?}`: dead letters of one capability, or of all.
pub async fn dead_letters(
    bridge: &Bridge,
    caller: &Caller,
    data: &Value,
) -> Result<Value, OpError> {
    need_watch(caller)?;
    let capability = data.get("capability").and_then(Value::as_str);
    let out: Vec<Value> = bridge
        .bus
        .dead_letters_of(capability)
        .await?
        .iter()
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .collect();
    Ok(json!({ "deadLetters": out }))
}

/// `bus.dlq.redrive {capability, entryId?, partition?}`: puts a capability's dead letters (or
/// one) back on its queue. Entry ids are per partition, so naming one letter takes its
/// partition's index too (without it, the entry id is matched in every partition). Needs
/// `bus.admin`.
pub async fn redrive(bridge: &Bridge, caller: &Caller, data: &Value) -> Result<Value, OpError> {
    if !caller.grants.is_admin() {
        return Err(OpError::Forbidden(
            "putting dead letters back needs the bus.admin role".into(),
        ));
    }
    let cap = str_field(data, "capability")?;
    let entry = data.get("entryId").and_then(Value::as_str);
    let partition = match data.get("partition") {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    OpError::BadRequest("'partition' must be a partition index".into())
                })?,
        ),
    };
    let mut redriven = 0u64;
    for d in bridge.bus.dead_letters(cap).await? {
        let named = entry.is_none_or(|e| e == d.entry_id)
            && partition.is_none_or(|p| p == d.partition.index);
        if named && bridge.bus.redrive(&d).await? {
            redriven += 1;
        }
    }
    Ok(json!({ "capability": cap, "redriven": redriven }))
}

/// Tasks `bus.peek` answers with at most.
const MAX_PEEK: usize = 50;

/// `bus.queues`: every capability with a queue, with its messages waiting (and of those, the
/// ones delayed: scheduled for later or backing off before a retry), in flight and
/// dead-lettered, and the agents serving it.
pub async fn queues(bridge: &Bridge, caller: &Caller) -> Result<Value, OpError> {
    need_watch(caller)?;
    let t = bridge.bus.transport();
    let agents = t.agents().await?;
    let mut caps = t.capabilities().await?;
    caps.sort();
    let mut out = Vec::with_capacity(caps.len());
    for (cap, partitions) in caps {
        let levels = bridge.bus.queue_levels(&cap).await?;
        let serving: Vec<&str> = agents
            .iter()
            .filter(|a| a.serves(&cap))
            .map(|a| a.id.as_str())
            .collect();
        out.push(json!({
            "capability": cap,
            "partitions": partitions,
            "waiting": levels.waiting,
            "inFlight": levels.in_flight,
            "delayed": levels.delayed,
            "deadLettered": levels.dead,
            "agents": serving,
        }));
    }
    Ok(json!({ "queues": out }))
}

/// `bus.peek {capability, limit?}`: the newest unfinished tasks of a capability (waiting for an
/// agent, being worked on, or waiting for a person), with their messages, without touching
/// their delivery.
pub async fn peek(bridge: &Bridge, caller: &Caller, data: &Value) -> Result<Value, OpError> {
    need_watch(caller)?;
    let cap = str_field(data, "capability")?;
    let limit = data
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(20, |n| (n as usize).clamp(1, MAX_PEEK));
    let records = bridge.bus.recent_tasks(SCAN).await?;
    let tasks: Vec<Value> = records
        .iter()
        .filter(|r| r.capability == cap && !r.state().is_terminal())
        .take(limit)
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    Ok(json!({ "capability": cap, "tasks": tasks }))
}
