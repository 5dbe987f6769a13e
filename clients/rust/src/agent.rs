//! The agent SDK: a card plus one async handler per skill. `Agent::run` connects to the
//! hub's bus socket, registers the card (the hub heartbeats it while the socket lives), runs
//! a handler for each pushed task and settles the task from the handler's result; after a
//! dropped socket it connects and registers again (the hub requeues the tasks it held, so
//! handlers must be idempotent by task id).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nerve_protocol::ErrorName;
use nerve_protocol::a2a::{self, AgentCard, AgentSkill, Message, Part, Task};
use nerve_protocol::bus::{Push, TaskPush, TaskRecord, message_text};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusClient, Until};
use crate::error::{ClientError, Result};
use crate::task::Submit;

/// How a handler ends a task other than completing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The agent will not do it.
    #[error("rejected: {0}")]
    Reject(String),
    /// A transient failure: the bus redelivers after a backoff.
    #[error("retry: {0}")]
    Retry(String),
    /// The task failed.
    #[error("failed: {0}")]
    Fail(String),
}

impl From<ClientError> for TaskError {
    fn from(e: ClientError) -> Self {
        TaskError::Fail(e.to_string())
    }
}

/// A streamed artifact chunk: an A2A artifact and how it extends earlier chunks.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The artifact (chunks with the same id and `append` extend it).
    pub artifact: a2a::Artifact,
    /// Append to an earlier chunk.
    pub append: bool,
    /// The last chunk.
    pub last_chunk: bool,
}

impl Artifact {
    /// A one-part data artifact.
    pub fn data(artifact_id: &str, data: Value) -> Artifact {
        Artifact::of(artifact_id, Part::data(data))
    }

    /// A one-part text artifact.
    pub fn text(artifact_id: &str, text: &str) -> Artifact {
        Artifact::of(artifact_id, Part::text(text))
    }

    fn of(artifact_id: &str, part: Part) -> Artifact {
        Artifact {
            artifact: a2a::Artifact {
                artifact_id: artifact_id.into(),
                name: None,
                parts: vec![part],
                metadata: Default::default(),
            },
            append: false,
            last_chunk: false,
        }
    }
}

/// A task held by this agent, handed to the handler.
#[derive(Clone)]
pub struct TaskContext {
    bus: BusClient,
    /// The task id.
    pub id: String,
    /// The capability it was submitted to.
    pub capability: String,
    /// The chain's correlation id.
    pub correlation_id: String,
    /// How many times it has been delivered.
    pub deliveries: u64,
    /// The A2A Task as delivered.
    pub task: Task,
    cancel: CancellationToken,
}

impl TaskContext {
    /// The request message (`history[0]`).
    pub fn message(&self) -> Option<&Message> {
        self.task.history.first()
    }

    /// The request's text parts, joined.
    pub fn text(&self) -> String {
        self.message().map(message_text).unwrap_or_default()
    }

    /// The request's first data part.
    pub fn data(&self) -> Option<&Value> {
        self.message()?.parts.iter().find_map(|p| p.data.as_ref())
    }

    /// The conversation id.
    pub fn context_id(&self) -> Option<&str> {
        Some(self.task.context_id.as_str()).filter(|c| !c.is_empty())
    }

    /// The bus connection, for other operations.
    pub fn bus(&self) -> &BusClient {
        &self.bus
    }

    /// Reports progress (working, with a message); returns the task version.
    pub async fn progress(&self, text: &str) -> Result<u64> {
        let data = json!({"taskId": self.id, "state": "TASK_STATE_WORKING", "text": text});
        Ok(self.bus.invoke("bus.task.status", data).await?["version"]
            .as_u64()
            .unwrap_or_default())
    }

    /// Streams an artifact chunk; returns the task version.
    pub async fn artifact(&self, a: Artifact) -> Result<u64> {
        let data = json!({"taskId": self.id, "artifact": a.artifact, "append": a.append,
                          "lastChunk": a.last_chunk});
        Ok(self.bus.invoke("bus.task.artifact", data).await?["version"]
            .as_u64()
            .unwrap_or_default())
    }

    /// Asks the human: input-required until answered; returns the answer's text.
    pub async fn ask(&self, question: &str, timeout: Duration) -> Result<String> {
        let data = json!({"taskId": self.id, "question": question,
                          "timeoutMs": timeout.as_millis() as u64});
        let r = self.bus.invoke("bus.task.ask", data);
        let r = tokio::time::timeout(timeout + Duration::from_secs(5), r)
            .await
            .map_err(|_| ClientError::Timeout("no answer".into()))??;
        Ok(r["text"].as_str().unwrap_or_default().to_string())
    }

    /// Submits a sub-task in this task's chain and waits for its terminal record.
    pub async fn delegate(&self, submit: Submit, timeout: Duration) -> Result<TaskRecord> {
        let s = self.bus.submit(submit.parent(&self.id)).await?;
        self.bus
            .wait(&s.task_id, Until::Terminal, None, timeout)
            .await
    }

    /// True once someone canceled the task.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when someone cancels the task; the handler should return soon after (it is
    /// dropped after a 5 s grace, and its result is ignored).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// How long a handler may run on after its task was canceled.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

type Handler = Arc<
    dyn Fn(TaskContext) -> Pin<Box<dyn Future<Output = Result<String, TaskError>> + Send>>
        + Send
        + Sync,
>;

/// Stops an agent and tells when it is registered.
#[derive(Clone)]
pub struct AgentHandle {
    stop: CancellationToken,
    registered: watch::Receiver<bool>,
    heartbeats: Arc<AtomicU64>,
}

impl AgentHandle {
    /// Stops the agent: `run` returns.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Resolves once the card is registered on a live socket.
    pub async fn registered(&self) {
        let mut rx = self.registered.clone();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// How many `bus.heartbeat` calls the hub has answered.
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }
}

/// An agent: `Agent::new(url, token, card).skill("cap", handler).run().await`.
pub struct Agent {
    endpoint: String,
    token: String,
    card: AgentCard,
    max_in_flight: u32,
    heartbeat_every: Duration,
    heartbeats: Arc<AtomicU64>,
    handlers: HashMap<String, Handler>,
    stop: CancellationToken,
    registered: watch::Sender<bool>,
}

impl Agent {
    /// An agent for the hub at `endpoint` with a bus token.
    pub fn new(endpoint: &str, token: &str, card: AgentCard) -> Agent {
        Agent {
            endpoint: endpoint.into(),
            token: token.into(),
            card,
            max_in_flight: 4,
            heartbeat_every: Duration::from_secs(10),
            heartbeats: Arc::new(AtomicU64::new(0)),
            handlers: HashMap::new(),
            stop: CancellationToken::new(),
            registered: watch::Sender::new(false),
        }
    }

    /// How many tasks the hub pushes at once (1–256, default 4).
    pub fn max_in_flight(mut self, n: u32) -> Agent {
        self.max_in_flight = n;
        self
    }

    /// How often the agent checks its registration with `bus.heartbeat` (default 10 s; the
    /// socket's pings keep it alive in between).
    pub fn heartbeat_every(mut self, every: Duration) -> Agent {
        self.heartbeat_every = every;
        self
    }

    /// Handles tasks of `capability`: `Ok(text)` completes (empty text: no message),
    /// `Err(TaskError)` rejects, retries or fails. Adds the skill to the card if missing.
    pub fn skill<F, Fut>(mut self, capability: &str, handler: F) -> Agent
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, TaskError>> + Send + 'static,
    {
        if !self.card.skills.iter().any(|s| s.id == capability) {
            self.card.skills.push(AgentSkill {
                id: capability.into(),
                name: capability.into(),
                ..AgentSkill::default()
            });
        }
        let h: Handler = Arc::new(move |t| Box::pin(handler(t)));
        self.handlers.insert(capability.into(), h);
        self
    }

    /// A handle to stop the agent and await registration.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            stop: self.stop.clone(),
            registered: self.registered.subscribe(),
            heartbeats: self.heartbeats.clone(),
        }
    }

    /// Serves until stopped; returns an error only when the hub refuses the token or the card.
    pub async fn run(self) -> Result<()> {
        let mut backoff = Duration::from_millis(200);
        while !self.stop.is_cancelled() {
            match self.serve_once().await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e)
                    if e.name().and_then(ErrorName::parse).is_some_and(|n| {
                        matches!(
                            n,
                            ErrorName::Forbidden | ErrorName::BadRequest | ErrorName::Conflict
                        )
                    }) || matches!(e.http_status(), Some(401 | 403)) =>
                {
                    return Err(e);
                }
                Err(e) => tracing::warn!(error = %e, "agent connection failed"),
            }
            self.registered.send_replace(false);
            tokio::select! {
                _ = self.stop.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        Ok(())
    }

    async fn serve_once(&self) -> Result<()> {
        let (bus, mut pushes) = BusClient::connect(&self.endpoint, &self.token).await?;
        let register = json!({"card": self.card, "maxInFlight": self.max_in_flight});
        bus.invoke("bus.register", register).await?;
        self.registered.send_replace(true);
        let heartbeat = tokio::spawn(heartbeat(
            bus.clone(),
            self.heartbeat_every,
            self.heartbeats.clone(),
        ));
        let mut running: HashMap<String, (CancellationToken, JoinHandle<()>)> = HashMap::new();
        loop {
            let push = tokio::select! {
                _ = self.stop.cancelled() => break,
                p = pushes.recv() => p,
            };
            running.retain(|_, (_, h)| !h.is_finished());
            match push {
                None => break,
                Some(Push::Task(t)) => {
                    let id = t.task.id.clone();
                    let cancel = CancellationToken::new();
                    let job = self.start(&bus, *t, id.clone(), cancel.clone());
                    running.insert(id, (cancel, job));
                }
                Some(Push::Canceled { task_id }) => {
                    // The handler sees `cancelled()`; one that ignores it is cut off after a grace.
                    if let Some((cancel, _job)) = running.get(&task_id) {
                        cancel.cancel();
                    }
                }
                Some(_) => {}
            }
        }
        heartbeat.abort();
        for (_, (cancel, job)) in running {
            cancel.cancel();
            job.abort();
        }
        bus.close();
        Ok(())
    }

    fn start(
        &self,
        bus: &BusClient,
        t: TaskPush,
        id: String,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        let handler = self.handlers.get(&t.capability).cloned();
        let ctx = TaskContext {
            bus: bus.clone(),
            id: id.clone(),
            capability: t.capability,
            correlation_id: t.correlation_id,
            deliveries: t.deliveries,
            task: t.task,
            cancel,
        };
        tokio::spawn(async move {
            let work = async {
                match handler {
                    Some(h) => h(ctx.clone()).await,
                    None => Err(TaskError::Reject("no handler for this capability".into())),
                }
            };
            let outcome = tokio::select! {
                o = work => o,
                _ = async {
                    ctx.cancel.cancelled().await;
                    tokio::time::sleep(CANCEL_GRACE).await;
                } => return,
            };
            if ctx.is_cancelled() {
                return; // a canceled task needs no settling
            }
            let (op, data) = match outcome {
                Ok(text) if text.is_empty() => ("bus.task.complete", json!({"taskId": id})),
                Ok(text) => ("bus.task.complete", json!({"taskId": id, "text": text})),
                Err(TaskError::Reject(r)) => {
                    ("bus.task.reject", json!({"taskId": id, "reason": r}))
                }
                Err(TaskError::Retry(r)) => ("bus.task.retry", json!({"taskId": id, "reason": r})),
                Err(TaskError::Fail(r)) => ("bus.task.fail", json!({"taskId": id, "reason": r})),
            };
            if let Err(e) = ctx.bus.invoke(op, data).await {
                tracing::debug!(task = %id, error = %e, "settling the task failed");
            }
        })
    }
}

/// Calls `bus.heartbeat` every `every` until the socket closes.
async fn heartbeat(bus: BusClient, every: Duration, count: Arc<AtomicU64>) {
    loop {
        tokio::time::sleep(every).await;
        match bus.invoke("bus.heartbeat", json!({})).await {
            Ok(_) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            Err(ClientError::ConnectionLost(_)) => return,
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}
