//! A remote agent: the state of one `/bus/ws` connection. A registered card runs as an ordinary
//! bus `Agent` inside the hub whose task handler forwards each task to the socket and waits for
//! the agent to settle it, so leases, retries, dead letters and cancellation work exactly as for
//! in-process agents. A dropped socket hands its in-flight tasks back for redelivery.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};

use nerve_agentbus::a2a::Role;
use nerve_agentbus::{
    Agent, AgentCard, AgentHandle, Artifact, BusError, HandlerError, Message, TaskContext,
    TaskResult, TaskState,
};
use nerve_protocol::bus::{Push, TaskPush};
use nerve_protocol::{Payload, Sender, ServerFrame};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Bridge;
use super::grants::Verb;
use super::ops::{Caller, OpError, ask_wait_of, forbidden, message_of, spoken, str_field, unknown};

/// Operations only a `/bus/ws` connection can call.
pub const OPS: &[&str] = &[
    "bus.register",
    "bus.heartbeat",
    "bus.task.status",
    "bus.task.artifact",
    "bus.task.complete",
    "bus.task.fail",
    "bus.task.reject",
    "bus.task.retry",
    "bus.task.ask",
    "bus.subscribe",
    "bus.unsubscribe",
];
/// Task ids a connection remembers as its own submissions (oldest forgotten first).
const SUBMITTED_MEMORY: usize = 10_000;
/// Most tasks an agent connection may hold at once.
const MAX_IN_FLIGHT: usize = 256;
/// Groups one connection may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 1024;
const CLOSED: &str = "the agent connection closed";

struct InFlight {
    ctx: TaskContext,
    done: Option<oneshot::Sender<TaskResult>>,
}

/// One agent connection's bus state.
pub struct Remote {
    out: mpsc::Sender<String>,
    /// Fires when the socket is gone.
    pub closed: CancellationToken,
    agent: Mutex<Option<AgentHandle>>,
    agent_id: Mutex<Option<String>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
    submitted: Mutex<VecDeque<String>>,
    subscriptions: Mutex<HashSet<String>>,
    watching: Mutex<bool>,
}

impl Remote {
    /// State for a connection whose frames go out through `out`.
    pub fn new(out: mpsc::Sender<String>) -> Arc<Self> {
        Arc::new(Remote {
            out,
            closed: CancellationToken::new(),
            agent: Mutex::new(None),
            agent_id: Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
            submitted: Mutex::new(VecDeque::new()),
            subscriptions: Mutex::new(HashSet::new()),
            watching: Mutex::new(false),
        })
    }

    /// Sends a server message (`{"type":"message","from":"server",...}`) carrying `push`.
    pub async fn push(&self, push: &Push) -> Result<(), OpError> {
        let payload = Payload::json_of(push).map_err(|e| OpError::BadRequest(e.to_string()))?;
        let frame = ServerFrame::message(Sender::Server, &payload).to_json();
        self.out
            .send(frame)
            .await
            .map_err(|_| OpError::Unavailable(CLOSED.into()))
    }

    /// Remembers a task this connection submitted (it may read it without `bus.watch`).
    pub fn remember_submitted(&self, id: &str) {
        let mut s = self.submitted.lock();
        if s.len() >= SUBMITTED_MEMORY {
            s.pop_front();
        }
        s.push_back(id.to_string());
    }

    /// Whether the connection submitted or holds task `id`.
    pub fn knows(&self, id: &str) -> bool {
        self.in_flight.lock().contains_key(id) || self.submitted.lock().iter().any(|t| t == id)
    }

    /// Stops the agent (in-flight tasks go back for redelivery) once the socket is gone.
    pub async fn shutdown(&self) {
        self.closed.cancel();
        let handle = self.agent.lock().take();
        if let Some(h) = handle {
            h.stop().await;
        }
    }

    /// Runs an agent-side operation.
    pub async fn call(
        self: &Arc<Self>,
        bridge: &Bridge,
        caller: &Caller,
        op: &str,
        data: &Value,
    ) -> Result<Value, OpError> {
        match op {
            "bus.register" => self.register(bridge, caller, data).await,
            "bus.heartbeat" => Ok(json!({
                "agentId": self.agent_id.lock().clone(),
                "inFlight": self.in_flight.lock().len(),
            })),
            "bus.task.status" => {
                let ctx = self.held(data)?;
                let state = data
                    .get("state")
                    .and_then(Value::as_str)
                    .and_then(TaskState::parse)
                    .filter(|s| !s.is_terminal() && *s != TaskState::Submitted)
                    .ok_or_else(|| {
                        OpError::BadRequest(
                            "'state' must be TASK_STATE_WORKING, _INPUT_REQUIRED or _AUTH_REQUIRED; \
                             finish with bus.task.complete/fail/reject"
                                .into(),
                        )
                    })?;
                let msg = optional_message(data)?;
                let rec = ctx.status(state, msg).await?;
                Ok(json!({"version": rec.version, "state": rec.state()}))
            }
            "bus.task.artifact" => {
                let ctx = self.held(data)?;
                let artifact: Artifact = data
                    .get("artifact")
                    .cloned()
                    .and_then(|a| serde_json::from_value(a).ok())
                    .ok_or_else(|| {
                        OpError::BadRequest("'artifact' must be an A2A Artifact".into())
                    })?;
                let append = data.get("append").and_then(Value::as_bool).unwrap_or(false);
                let last = data
                    .get("lastChunk")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                let rec = ctx.artifact_chunk(artifact, append, last).await?;
                Ok(json!({"version": rec.version}))
            }
            "bus.task.complete" => {
                let msg = optional_message(data)?;
                self.settle(data, Ok(msg))
            }
            "bus.task.fail" => self.settle(data, Err(HandlerError::Fail(reason(data)))),
            "bus.task.reject" => self.settle(data, Err(HandlerError::Reject(reason(data)))),
            "bus.task.retry" => self.settle(data, Err(HandlerError::Retry(reason(data)))),
            "bus.task.ask" => {
                let ctx = self.held(data)?;
                let question = match data.get("question").and_then(Value::as_str) {
                    Some(q) => Message::agent_text(q),
                    None => message_of(data, Role::Agent)?,
                };
                let wait = ask_wait_of(data);
                let asked = question.text();
                let answer = ctx.ask(question, wait).await.map_err(|e| match e {
                    // What the task's page shows when the agent lets this fail it.
                    BusError::Timeout(..) => OpError::Timeout(format!(
                        "nobody answered \"{asked}\" within {}",
                        spoken(wait)
                    )),
                    e => e.into(),
                })?;
                Ok(json!({"answer": answer, "text": answer.text()}))
            }
            "bus.subscribe" => self.subscribe(bridge, caller, data),
            "bus.unsubscribe" => {
                let g = str_field(data, "group")?;
                self.subscriptions.lock().remove(g);
                Ok(json!({"group": g}))
            }
            _ => Err(unknown(op)),
        }
    }

    async fn register(
        self: &Arc<Self>,
        bridge: &Bridge,
        caller: &Caller,
        data: &Value,
    ) -> Result<Value, OpError> {
        let card: AgentCard = data
            .get("card")
            .cloned()
            .and_then(|c| serde_json::from_value(c).ok())
            .ok_or_else(|| OpError::BadRequest("'card' must be an agent card with an id".into()))?;
        if card.skills.is_empty() {
            return Err(OpError::BadRequest(
                "the card has no skills to serve".into(),
            ));
        }
        for s in &card.skills {
            if !caller.grants.allows(Verb::Serve, &s.id) {
                return Err(forbidden("serve", &s.id));
            }
        }
        if self.agent_id.lock().is_some() {
            return Err(OpError::Conflict(
                "this connection already registered an agent".into(),
            ));
        }
        let max = data
            .get("maxInFlight")
            .and_then(Value::as_u64)
            .unwrap_or(4)
            .clamp(1, MAX_IN_FLIGHT as u64) as usize;
        let weak: Weak<Remote> = Arc::downgrade(self);
        let handle = Agent::builder(&bridge.bus, card.clone())
            .max_in_flight(max)
            .on_task(move |ctx| {
                let weak = weak.clone();
                async move {
                    match weak.upgrade() {
                        Some(r) => r.forward(ctx).await,
                        None => Err(HandlerError::Retry(CLOSED.into())),
                    }
                }
            })
            .start()
            .await?;
        *self.agent_id.lock() = Some(card.id.clone());
        *self.agent.lock() = Some(handle);
        if self.closed.is_cancelled() {
            self.shutdown().await;
        }
        let caps: Vec<&str> = card.skills.iter().map(|s| s.id.as_str()).collect();
        Ok(json!({"agentId": card.id, "capabilities": caps, "maxInFlight": max}))
    }

    /// The bus handler of a registered agent: hand the task to the socket, wait for it to settle.
    async fn forward(self: Arc<Self>, ctx: TaskContext) -> TaskResult {
        let id = ctx.task_id().to_string();
        let (tx, rx) = oneshot::channel();
        self.in_flight.lock().insert(
            id.clone(),
            InFlight {
                ctx: ctx.clone(),
                done: Some(tx),
            },
        );
        let rec = ctx.record();
        // The agent continues the trace: the hub's delivery span when exporting, else the
        // submitter's traceparent from the envelope.
        let traceparent =
            crate::telemetry::current_traceparent().or_else(|| ctx.envelope().traceparent.clone());
        let note = Push::Task(Box::new(TaskPush {
            capability: rec.capability.clone(),
            correlation_id: rec.correlation_id.clone(),
            deliveries: u64::from(ctx.deliveries()),
            traceparent,
            task: rec.task.clone(),
        }));
        let cancel = ctx.cancelled();
        let result = if self.push(&note).await.is_err() {
            Err(HandlerError::Retry(CLOSED.into()))
        } else {
            tokio::select! {
                r = rx => r.unwrap_or_else(|_| Err(HandlerError::Retry(CLOSED.into()))),
                _ = self.closed.cancelled() => Err(HandlerError::Retry(CLOSED.into())),
                _ = cancel.cancelled() => {
                    let _ = self.push(&Push::Canceled { task_id: id.clone() }).await;
                    Err(HandlerError::Fail("canceled".into()))
                }
            }
        };
        self.in_flight.lock().remove(&id);
        result
    }

    fn held(&self, data: &Value) -> Result<TaskContext, OpError> {
        let id = str_field(data, "taskId")?;
        self.in_flight
            .lock()
            .get(id)
            .map(|f| f.ctx.clone())
            .ok_or_else(|| OpError::NotFound(format!("this connection holds no task {id}")))
    }

    fn settle(&self, data: &Value, result: TaskResult) -> Result<Value, OpError> {
        let id = str_field(data, "taskId")?;
        let done = self
            .in_flight
            .lock()
            .get_mut(id)
            .and_then(|f| f.done.take())
            .ok_or_else(|| OpError::NotFound(format!("this connection holds no task {id}")))?;
        done.send(result)
            .map_err(|_| OpError::Conflict(format!("task {id} is no longer running")))?;
        Ok(json!({"taskId": id}))
    }

    fn subscribe(
        self: &Arc<Self>,
        bridge: &Bridge,
        caller: &Caller,
        data: &Value,
    ) -> Result<Value, OpError> {
        if !caller.grants.can_watch() {
            return Err(OpError::Forbidden(
                "subscribing needs the bus.watch role".into(),
            ));
        }
        let g = str_field(data, "group")?;
        if !["task.", "context.", "correlation.", "agent."]
            .iter()
            .any(|p| g.starts_with(p))
        {
            return Err(OpError::BadRequest(
                "groups are task.<id>, context.<id>, correlation.<id> or agent.<id>".into(),
            ));
        }
        {
            let mut subs = self.subscriptions.lock();
            if subs.len() >= MAX_SUBSCRIPTIONS {
                return Err(OpError::Conflict("too many subscriptions".into()));
            }
            subs.insert(g.to_string());
        }
        let start = {
            let mut w = self.watching.lock();
            !std::mem::replace(&mut *w, true)
        };
        if start {
            tokio::spawn(watch(Arc::downgrade(self), bridge.bus.clone()));
        }
        Ok(json!({"group": g}))
    }
}

/// Pushes live events of the subscribed groups to the connection.
async fn watch(remote: Weak<Remote>, bus: nerve_agentbus::Bus) {
    let mut live = bus.transport().live();
    let Some(closed) = remote.upgrade().map(|r| r.closed.clone()) else {
        return;
    };
    loop {
        let next = tokio::select! {
            _ = closed.cancelled() => return,
            n = live.recv() => n,
        };
        let Some(r) = remote.upgrade() else { return };
        match next {
            Ok(env) => {
                let groups: Vec<String> = Bridge::groups_of(&env)
                    .into_iter()
                    .filter(|g| r.subscriptions.lock().contains(g))
                    .collect();
                for g in groups {
                    let note = Push::Event {
                        group: Some(g),
                        cursor: env.id.clone(),
                        envelope: serde_json::to_value(&*env).unwrap_or_default(),
                    };
                    if r.push(&note).await.is_err() {
                        return;
                    }
                }
            }
            Err(RecvError::Lagged(_)) => {
                if r.push(&Push::Resync).await.is_err() {
                    return;
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn reason(data: &Value) -> String {
    data.get("reason")
        .and_then(Value::as_str)
        .unwrap_or("no reason given")
        .to_string()
}

fn optional_message(data: &Value) -> Result<Option<Message>, OpError> {
    if data.get("message").is_none() && data.get("text").is_none() {
        return Ok(None);
    }
    message_of(data, Role::Agent).map(Some)
}
