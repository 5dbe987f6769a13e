//! Agents: register a card, heartbeat it, consume tasks and requests for every skill on the card,
//! and run handlers with cancellation, retries, dead-lettering and exactly-once completion (a
//! task's record is compare-and-set, so a redelivered task finishes at most once).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::a2a::{AgentCard, Message, StreamResponse, TaskState};
use crate::bus::Bus;
use crate::clock;
use crate::consumer::{self, ConsumerSpec, Dispatch};
use crate::envelope::types;
use crate::error::{BusError, check_name};
use crate::handler::{HandlerError, TaskContext, TaskResult};
use crate::rpc::{Request, RequestFn};
use crate::submit::DEAD_LETTERED;
use crate::task::{Applied, Lifecycle, TaskEvent, TaskRecord};
use crate::transport::Delivery;

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;
type TaskFn = Arc<dyn Fn(TaskContext) -> BoxFuture<TaskResult> + Send + Sync>;

/// Dead-letter reason: too many deliveries.
pub const MAX_DELIVERY_COUNT_EXCEEDED: &str = "MaxDeliveryCountExceeded";
/// Dead-letter reason: `expirytime` passed before it was handled.
pub const TTL_EXPIRED: &str = "TTLExpired";

pub(crate) struct AgentShared {
    pub bus: Bus,
    pub card: AgentCard,
    pub source: String,
    task_handler: Option<TaskFn>,
    pub request_handler: Option<RequestFn>,
    kill: CancellationToken,
}

/// Builds and starts an agent.
pub struct AgentBuilder {
    bus: Bus,
    card: AgentCard,
    task_handler: Option<TaskFn>,
    request_handler: Option<RequestFn>,
    max_in_flight: Option<usize>,
}

/// Entry point for agents: `Agent::builder(&bus, card).on_task(...).start()`.
pub struct Agent;

impl Agent {
    /// Starts building an agent; every skill id on the card is a capability it consumes.
    pub fn builder(bus: &Bus, card: AgentCard) -> AgentBuilder {
        AgentBuilder {
            bus: bus.clone(),
            card,
            task_handler: None,
            request_handler: None,
            max_in_flight: None,
        }
    }
}

impl AgentBuilder {
    /// Handles tasks: return `Ok(Some(message))` to complete with a final message.
    pub fn on_task<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        self.task_handler = Some(Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Handles `bus.rpc.request`s: return the reply value or an error message.
    pub fn on_request<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        self.request_handler = Some(Arc::new(move |r| Box::pin(f(r))));
        self
    }

    /// Most messages this agent holds at once (default from the bus config).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// Registers the card and starts consuming.
    pub async fn start(self) -> Result<AgentHandle, BusError> {
        check_name(&self.card.id)?;
        for skill in &self.card.skills {
            check_name(&skill.id)?;
        }
        let cfg = self.bus.config().clone();
        let t = self.bus.transport().clone();
        t.agent_put(&self.card, cfg.agent_ttl).await?;
        let stop = CancellationToken::new();
        let kill = CancellationToken::new();
        let shared = Arc::new(AgentShared {
            bus: self.bus.clone(),
            source: format!("agent://{}", self.card.id),
            card: self.card.clone(),
            task_handler: self.task_handler,
            request_handler: self.request_handler,
            kill: kill.clone(),
        });
        let max_in_flight = self.max_in_flight.unwrap_or(cfg.max_in_flight);
        let permits = Arc::new(Semaphore::new(max_in_flight));
        let owned = Arc::new(AtomicUsize::new(0));
        let dispatch: Dispatch = {
            let shared = shared.clone();
            Arc::new(move |d| {
                let shared = shared.clone();
                Box::pin(async move {
                    let kill = shared.kill.clone();
                    tokio::select! {
                        _ = kill.cancelled() => {}
                        _ = handle_delivery(shared, d) => {}
                    }
                })
            })
        };
        let mut joins = Vec::new();
        for skill in &self.card.skills {
            self.bus.declare(&skill.id).await?;
            joins.push(consumer::spawn(ConsumerSpec {
                bus: self.bus.clone(),
                capability: skill.id.clone(),
                consumer_id: self.card.id.clone(),
                permits: permits.clone(),
                max_in_flight,
                owned: owned.clone(),
                dispatch: dispatch.clone(),
                stop: stop.clone(),
                kill: kill.clone(),
            }));
        }
        joins.push(tokio::spawn(registry_heartbeat(
            shared.clone(),
            stop.clone(),
        )));
        Ok(AgentHandle {
            bus: self.bus,
            card: self.card,
            owned,
            stop,
            kill,
            joins,
        })
    }
}

/// A running agent.
pub struct AgentHandle {
    bus: Bus,
    card: AgentCard,
    owned: Arc<AtomicUsize>,
    stop: CancellationToken,
    kill: CancellationToken,
    joins: Vec<JoinHandle<()>>,
}

impl AgentHandle {
    /// The agent id.
    pub fn id(&self) -> &str {
        &self.card.id
    }

    /// Partitions this agent owns right now, over all its capabilities.
    pub fn owned_partitions(&self) -> usize {
        self.owned.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops gracefully: finishes in-flight work, releases partitions, deregisters.
    pub async fn stop(self) {
        self.stop.cancel();
        for j in self.joins {
            let _ = j.await;
        }
        if let Err(e) = self.bus.transport().agent_remove(&self.card.id).await {
            tracing::debug!(error = %e, "could not deregister agent");
        }
    }

    /// Stops at once, as a crash would: nothing is settled, released or deregistered, so
    /// leases and the registration lapse on their own.
    pub fn abort(self) {
        self.kill.cancel();
        for j in self.joins {
            j.abort();
        }
    }
}

async fn registry_heartbeat(shared: Arc<AgentShared>, stop: CancellationToken) {
    let ttl = shared.bus.config().agent_ttl;
    let mut tick = tokio::time::interval(ttl / 3);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.kill.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = shared.bus.transport().agent_put(&shared.card, ttl).await {
            tracing::warn!(agent = %shared.card.id, error = %e, "agent heartbeat failed");
        }
    }
}

async fn handle_delivery(shared: Arc<AgentShared>, d: Delivery) {
    let span = crate::trace::delivery_span(&d.envelope, &shared.card.id);
    tracing::Instrument::instrument(deliver(shared, d), span).await
}

async fn deliver(shared: Arc<AgentShared>, d: Delivery) {
    let bus = shared.bus.clone();
    let _in_flight = bus.stats().delivery(d.deliveries);
    let cfg = shared.bus.config();
    if d.envelope.is_expired_at(clock::now_ms()) {
        let desc = format!(
            "expired at {}",
            d.envelope.expirytime.as_deref().unwrap_or("?")
        );
        return dead_letter(&shared, &d, TTL_EXPIRED, &desc).await;
    }
    if d.deliveries > cfg.max_deliveries {
        let desc = format!(
            "delivered {} times (limit {})",
            d.deliveries, cfg.max_deliveries
        );
        return dead_letter(&shared, &d, MAX_DELIVERY_COUNT_EXCEEDED, &desc).await;
    }
    match d.envelope.event_type.as_str() {
        types::TASK_SUBMITTED => run_task(&shared, d).await,
        types::RPC_REQUEST => crate::rpc::serve(&shared, d).await,
        other => {
            let desc = format!("no handler for event type {other}");
            dead_letter(&shared, &d, "UnsupportedEventType", &desc).await
        }
    }
}

/// Dead-letters a delivery and, for a task, fails the task with the reason.
async fn dead_letter(shared: &AgentShared, d: &Delivery, reason: &str, description: &str) {
    let bus = &shared.bus;
    if let Err(e) = bus.transport().dead_letter(d, reason, description).await {
        tracing::warn!(error = %e, "dead-lettering failed; the message will be redelivered");
        return;
    }
    bus.stats().dead_lettered();
    let Some(task_id) = d.envelope.taskid.as_deref() else {
        return;
    };
    if d.envelope.event_type != types::TASK_SUBMITTED {
        return;
    }
    let mut metadata = Map::new();
    metadata.insert("reason".into(), Value::from(reason));
    metadata.insert("description".into(), Value::from(description));
    metadata.insert("deliveries".into(), Value::from(d.deliveries));
    metadata.insert(DEAD_LETTERED.into(), Value::from(true));
    let ev = TaskEvent::Status {
        state: TaskState::Failed,
        message: Some(Message::agent_text(format!("{reason}: {description}"))),
        metadata,
    };
    if let Err(e) = bus.update_task(task_id, &ev, None, &shared.source).await {
        tracing::debug!(task = task_id, error = %e, "dead-lettered task not marked failed");
    }
}

/// Restores a task record that was lost (e.g. past retention) from the message, which carries
/// the whole task.
async fn recreate(bus: &Bus, d: &Delivery, task_id: &str) -> Result<(), BusError> {
    let Some(StreamResponse::Task(task)) = d
        .envelope
        .data
        .as_ref()
        .and_then(StreamResponse::from_value)
    else {
        return Err(BusError::TaskNotFound(task_id.to_string()));
    };
    let cap = d.partition.capability.clone();
    let request = task
        .history
        .first()
        .cloned()
        .unwrap_or_else(|| Message::user_text(""));
    let mut rec = TaskRecord::submitted(
        task_id,
        &task.context_id,
        &cap,
        request,
        d.envelope.correlation_id(),
        &d.envelope.id,
    );
    rec.caused_by = d.envelope.causationid.clone();
    bus.transport().task_store(&rec, 0).await?;
    Ok(())
}

async fn run_task(shared: &Arc<AgentShared>, d: Delivery) {
    let bus = &shared.bus;
    let t = bus.transport();
    let Some(task_id) = d.envelope.taskid.clone() else {
        return dead_letter(shared, &d, "InvalidMessage", "task event without taskid").await;
    };
    let Some(handler) = shared.task_handler.clone() else {
        return dead_letter(shared, &d, "HandlerRejected", "agent has no task handler").await;
    };
    let working = TaskEvent::status(TaskState::Working);
    let mut started = bus
        .update_task(&task_id, &working, None, &shared.source)
        .await;
    if matches!(started, Err(BusError::TaskNotFound(_))) {
        if let Err(e) = recreate(bus, &d, &task_id).await {
            return tracing::warn!(task = %task_id, error = %e, "cannot recreate task");
        }
        started = bus
            .update_task(&task_id, &working, None, &shared.source)
            .await;
    }
    let record = match started {
        Ok((r, _)) => r,
        // Finished already (a redelivery after completion, or canceled before it ran).
        Err(BusError::Transition(_)) => return settle_ack(bus, &d).await,
        Err(e) => return tracing::warn!(task = %task_id, error = %e, "cannot start task"),
    };
    let token = CancellationToken::new();
    let started_record = record.clone();
    let ctx = TaskContext {
        bus: bus.clone(),
        record,
        envelope: Arc::new(d.envelope.clone()),
        source: shared.source.clone(),
        token: token.clone(),
        deliveries: d.deliveries,
    };
    let outcome = supervise(bus, &task_id, handler(ctx), token).await;
    let cfg = bus.config();
    let (state, message, reason) = match outcome {
        None => return settle_ack(bus, &d).await,
        Some(Ok(msg)) => (TaskState::Completed, msg, None),
        Some(Err(HandlerError::Fail(why))) => (
            TaskState::Failed,
            Some(Message::agent_text(why)),
            Some("HandlerFailed"),
        ),
        Some(Err(HandlerError::Reject(why))) => (
            TaskState::Rejected,
            Some(Message::agent_text(why)),
            Some("HandlerRejected"),
        ),
        Some(Err(HandlerError::Retry(why))) => {
            if d.deliveries >= cfg.max_deliveries {
                let desc = format!("{why} (after {} deliveries)", d.deliveries);
                return dead_letter(shared, &d, MAX_DELIVERY_COUNT_EXCEEDED, &desc).await;
            }
            let due = clock::now_ms() + cfg.backoff(d.deliveries).as_millis() as u64;
            if let Err(e) = t.retry_at(&d, due).await {
                tracing::warn!(task = %task_id, error = %e, "scheduling retry failed");
            }
            return;
        }
    };
    let mut metadata = Map::new();
    if let Some(r) = reason {
        metadata.insert("reason".into(), Value::from(r));
    }
    let ev = TaskEvent::Status {
        state,
        message,
        metadata,
    };
    // Usually nothing changed the task since it started: finish from that record, unread, and
    // settle the message along with recording the change.
    let finished = bus
        .update_task_from(
            &task_id,
            &ev,
            None,
            &shared.source,
            Some(started_record),
            Some(&d),
        )
        .await;
    match finished {
        Ok((_, Applied::Changed)) => {}
        Ok(_) | Err(BusError::Transition(_)) => settle_ack(bus, &d).await,
        // Not settled: the lease lapses and the task is redelivered.
        Err(e) => tracing::warn!(task = %task_id, error = %e, "cannot finish task"),
    }
}

async fn settle_ack(bus: &Bus, d: &Delivery) {
    if let Err(e) = bus.transport().ack(d).await {
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}

/// Aborts a spawned handler when dropped, so a killed agent leaves no handler running.
pub(crate) struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A panicking handler counts as a transient failure: the task is retried, then dead-lettered.
fn joined(r: Result<TaskResult, tokio::task::JoinError>) -> TaskResult {
    r.unwrap_or_else(|e| Err(HandlerError::Retry(format!("handler panicked: {e}"))))
}

/// Runs a handler in its own task, firing its token when the task is canceled; `None` if the
/// handler did not stop within the grace period after cancellation.
async fn supervise(
    bus: &Bus,
    task_id: &str,
    fut: BoxFuture<TaskResult>,
    token: CancellationToken,
) -> Option<TaskResult> {
    // The handler runs inside the delivery's span (its logs and any sub-task it submits).
    let mut fut = tokio::spawn(tracing::Instrument::in_current_span(fut));
    let _abort = AbortOnDrop(fut.abort_handle());
    // Only a terminal status or a cancel request can stop the handler; its own progress events
    // do not need a re-read.
    let events = bus.watch_key(task_id, crate::waiters::WakeOn::Finish);
    let period = bus.config().heartbeat_interval();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            r = &mut fut => return Some(joined(r)),
            _ = events.notified() => {}
            _ = tick.tick() => {}
        }
        let terminal = matches!(bus.task(task_id).await, Ok(Some(r)) if r.state().is_terminal());
        if terminal {
            token.cancel();
            let grace = bus.config().cancel_grace;
            return tokio::time::timeout(grace, fut).await.ok().map(joined);
        }
    }
}
