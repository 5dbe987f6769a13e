//! Task submission: building the `bus.task.submitted` event and record, routing it to a
//! partition, deduplicating by idempotency key, scheduling, and the handle the submitter keeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::a2a::{Message, StreamResponse, TaskState, TaskStatus};
use crate::bus::Bus;
use crate::clock;
use crate::envelope::{Envelope, new_id, types};
use crate::error::{BusError, check_name};
use crate::task::{Lifecycle, TaskRecord};
use crate::transport::{EnqueueOutcome, Partition};
use crate::waiters::{WaitGuard, WakeOn};

/// Metadata key set on a task the bus failed by dead-lettering it.
pub const DEAD_LETTERED: &str = "deadLettered";

/// What to submit, to which capability, with which delivery options.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    capability: String,
    message: Message,
    context_id: Option<String>,
    partition_key: Option<String>,
    idempotency_key: Option<String>,
    deliver_at_ms: Option<u64>,
    ttl: Option<Duration>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
}

impl SubmitRequest {
    /// A task for `capability` whose request is `message`.
    pub fn new(capability: impl Into<String>, message: Message) -> Self {
        SubmitRequest {
            capability: capability.into(),
            message,
            context_id: None,
            partition_key: None,
            idempotency_key: None,
            deliver_at_ms: None,
            ttl: None,
            correlation_id: None,
            causation_id: None,
            traceparent: None,
        }
    }

    /// A task for `capability` with a one-line text request.
    pub fn text(capability: impl Into<String>, text: impl Into<String>) -> Self {
        SubmitRequest::new(capability, Message::user_text(text))
    }

    /// The conversation it belongs to (default: a new one).
    pub fn context_id(mut self, id: impl Into<String>) -> Self {
        self.context_id = Some(id.into());
        self
    }

    /// Tasks with the same key are handled one at a time, in submission order.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Business-derived id: resubmits within the dedupe window return the same task.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Deliver no earlier than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.deliver_at_ms = Some(clock::now_ms() + delay.as_millis() as u64);
        self
    }

    /// Deliver no earlier than this Unix time in ms.
    pub fn deliver_at_ms(mut self, at: u64) -> Self {
        self.deliver_at_ms = Some(at);
        self
    }

    /// Dead-letter it (reason `TTLExpired`) if not picked up within `ttl`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Joins an existing chain: `correlation` is the chain id, `causation` the triggering event.
    pub fn caused_by(
        mut self,
        correlation: impl Into<String>,
        causation: impl Into<String>,
    ) -> Self {
        self.correlation_id = Some(correlation.into());
        self.causation_id = Some(causation.into());
        self
    }

    /// W3C trace context of the originating request.
    pub fn traceparent(mut self, tp: impl Into<String>) -> Self {
        self.traceparent = Some(tp.into());
        self
    }

    /// The target capability.
    pub fn capability(&self) -> &str {
        &self.capability
    }
}

/// A submitted task, as the submitter sees it.
#[derive(Clone)]
pub struct TaskHandle {
    /// The task id (also the id of its `bus.task.submitted` event).
    pub task_id: String,
    /// The chain it belongs to.
    pub correlation_id: String,
    /// The partition it was routed to.
    pub partition: Partition,
    /// Enqueued, scheduled, or a duplicate of an earlier submission.
    pub outcome: EnqueueOutcome,
    bus: Bus,
    /// Wake-ups for the task's end, registered before the task was stored, so the first
    /// `result` call need not read the task first: nothing about it can have been missed.
    finish: Arc<Mutex<Option<WaitGuard>>>,
}

impl TaskHandle {
    /// Waits for the task to finish and returns its final record.
    pub async fn result(&self, timeout: Duration) -> Result<TaskRecord, BusError> {
        let early = self.finish.lock().unwrap_or_else(|e| e.into_inner()).take();
        match early {
            Some(guard) => {
                self.bus
                    .wait_terminal_registered(&self.task_id, timeout, guard)
                    .await
            }
            None => self.bus.wait_terminal(&self.task_id, timeout).await,
        }
    }

    /// Waits for the task to finish or pause for input.
    pub async fn settled(&self, timeout: Duration) -> Result<TaskRecord, BusError> {
        self.bus
            .wait_task(&self.task_id, timeout, |r| {
                r.state().is_terminal() || r.state().is_interrupted()
            })
            .await
    }

    /// Streams the task's updates: the current task first, then status and artifact events.
    pub fn updates(&self) -> crate::watch::TaskUpdates {
        self.bus.task_updates(&self.task_id)
    }

    /// Cancels the task.
    pub async fn cancel(&self) -> Result<TaskRecord, BusError> {
        self.bus.cancel(&self.task_id).await
    }
}

pub(crate) async fn submit(
    bus: &Bus,
    req: SubmitRequest,
    source: &str,
) -> Result<TaskHandle, BusError> {
    check_name(&req.capability)?;
    let mut env = Envelope::new(source, types::TASK_SUBMITTED);
    if let Some(key) = req.idempotency_key {
        check_name(&key)?;
        env.id = key;
    }
    let task_id = env.id.clone();
    let context_id = req.context_id.unwrap_or_else(new_id);
    let correlation_id = req.correlation_id.unwrap_or_else(|| task_id.clone());
    let mut message = req.message;
    message.task_id = Some(task_id.clone());
    message.context_id = Some(context_id.clone());
    let mut record = TaskRecord::submitted(
        &task_id,
        &context_id,
        &req.capability,
        message,
        &correlation_id,
        &task_id,
    );
    record.caused_by = req.causation_id.clone();
    env.subject = Some(format!("task/{task_id}"));
    env.correlationid = Some(correlation_id.clone());
    env.causationid = req.causation_id;
    env.traceparent = req.traceparent;
    env.taskid = Some(task_id.clone());
    env.contextid = Some(context_id);
    env.partitionkey = req.partition_key.clone();
    if let Some(ttl) = req.ttl {
        env = env.with_ttl(ttl);
    }
    env.extensions
        .insert("capability".into(), Value::from(req.capability.clone()));
    env.data = Some(StreamResponse::Task(record.task.clone()).to_value());
    env.validate()
        .map_err(|e| BusError::InvalidName(e.to_string()))?;

    bus.declare(&req.capability).await?;
    let finish = bus.watch_key(&task_id, WakeOn::Finish);
    let key = req.partition_key.as_deref().unwrap_or(&task_id);
    let partition = bus.partition_for(&req.capability, key);
    // Recorded before it can be delivered, so the chain's log always starts a task with its
    // submission.
    let (created, outcome) = bus
        .transport()
        .submit_task(&record, &env, &partition, req.deliver_at_ms)
        .await?;
    // A duplicate may have finished long ago: its first wait reads the task as usual.
    let fresh = created && outcome != EnqueueOutcome::Duplicate;
    Ok(TaskHandle {
        task_id,
        correlation_id,
        partition,
        outcome,
        bus: bus.clone(),
        finish: Arc::new(Mutex::new(fresh.then_some(finish))),
    })
}

/// Re-opens a task the bus itself failed by dead-lettering, so a redriven message runs again.
/// The one administrative exception to terminal absorption; agent outcomes are never undone.
pub(crate) async fn reopen(bus: &Bus, task_id: &str) -> Result<(), BusError> {
    let t = bus.transport();
    for _ in 0..8 {
        let Some(current) = t.task_load(task_id).await? else {
            return Ok(());
        };
        let dead = current.task.metadata.contains_key(DEAD_LETTERED);
        if current.state() != TaskState::Failed || !dead {
            return Ok(());
        }
        let mut next = current.clone();
        next.task.metadata.remove(DEAD_LETTERED);
        next.task.metadata.insert(
            "redriven".into(),
            Value::from(
                current
                    .task
                    .metadata
                    .get("redriven")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    + 1,
            ),
        );
        next.task.status = TaskStatus {
            state: TaskState::Submitted,
            message: None,
            timestamp: Some(clock::now_rfc3339()),
        };
        next.version += 1;
        next.updated_ms = clock::now_ms();
        if t.task_store(&next, current.version).await? {
            return Ok(());
        }
    }
    Err(BusError::Contention(task_id.to_string()))
}
