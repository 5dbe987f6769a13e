//! The `Bus` handle agents and clients program against: submit tasks to a capability, follow and
//! steer them (wait, cancel, answer input-required), share context, and read back dead letters,
//! correlation chains and the agent registry. Cheap to clone; all clones share one transport.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::a2a::{
    AgentCard, Message, StreamResponse, TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent,
};
use crate::config::BusConfig;
use crate::envelope::{Envelope, new_id, types};
use crate::error::{BusError, check_name};
use crate::stats::BusStats;
use crate::task::{Applied, Lifecycle, TaskEvent, TaskRecord};
use crate::transport::{
    DeadLetter, Delivery, MemoryTransport, Partition, QueueLevels, RedisTransport, SharedContext,
    Transport,
};
use crate::waiters::{WaitGuard, Waiters, WakeOn};

use crate::submit::{SubmitRequest, TaskHandle};

/// Fallback poll while waiting, in case a live notification was missed.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// Compare-and-set attempts before an update gives up.
const CAS_ATTEMPTS: usize = 32;

pub(crate) struct BusInner {
    pub transport: Arc<dyn Transport>,
    pub config: BusConfig,
    pub source: String,
    declared: Mutex<HashSet<String>>,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
    pub stats: BusStats,
}

impl Drop for BusInner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A handle on the bus. Clone it freely.
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<BusInner>,
}

/// Stable 64-bit FNV-1a, so every process maps a key to the same partition.
pub(crate) fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Bus {
    /// A bus over any transport.
    pub fn new(transport: Arc<dyn Transport>, config: BusConfig) -> Self {
        Bus {
            inner: Arc::new(BusInner {
                transport,
                config,
                source: "bus://client".to_string(),
                declared: Mutex::new(HashSet::new()),
                waiters: Arc::new(Waiters::default()),
                shutdown: CancellationToken::new(),
                stats: BusStats::default(),
            }),
        }
    }

    /// What this process's agents did with their deliveries (for metrics).
    pub fn stats(&self) -> &BusStats {
        &self.inner.stats
    }

    /// The embedded default: an in-memory bus for one process.
    pub fn memory(config: BusConfig) -> Self {
        let transport = MemoryTransport::new(config.transport.clone());
        Bus::new(Arc::new(transport), config)
    }

    /// A bus on Redis at `url`, shared by every process connected to it.
    pub async fn redis(url: &str, config: BusConfig) -> Result<Self, BusError> {
        let transport = RedisTransport::connect(url, config.transport.clone()).await?;
        Ok(Bus::new(Arc::new(transport), config))
    }

    /// A bus on a Redis Cluster, reached through any of its nodes' URLs.
    pub async fn redis_cluster(urls: &[String], config: BusConfig) -> Result<Self, BusError> {
        let transport = RedisTransport::connect_cluster(urls, config.transport.clone()).await?;
        Ok(Bus::new(Arc::new(transport), config))
    }

    /// The transport underneath (for tools and tests of the seam).
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The configuration.
    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// The partition a message for `capability` with ordering key `key` goes to.
    pub fn partition_for(&self, capability: &str, key: &str) -> Partition {
        let n = u64::from(self.inner.config.partitions.max(1));
        Partition::new(capability, (key_hash(key) % n) as u16)
    }

    /// Every partition of `capability`.
    pub fn partitions(&self, capability: &str) -> Vec<Partition> {
        (0..self.inner.config.partitions.max(1))
            .map(|i| Partition::new(capability, i))
            .collect()
    }

    pub(crate) async fn declare(&self, capability: &str) -> Result<(), BusError> {
        let known = self
            .inner
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(capability);
        if !known {
            self.inner
                .transport
                .declare_capability(capability, self.inner.config.partitions)
                .await?;
            self.inner
                .declared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(capability.to_string());
        }
        Ok(())
    }

    /// Submits a task to a capability. Resubmitting with the same idempotency key within the
    /// dedupe window returns the original task and enqueues nothing.
    pub async fn submit(&self, req: SubmitRequest) -> Result<TaskHandle, BusError> {
        crate::submit::submit(self, req, &self.inner.source).await
    }

    /// The task record (status, history, artifacts, version).
    pub async fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, BusError> {
        Ok(self.inner.transport.task_load(task_id).await?)
    }

    /// The newest `limit` task records, newest first.
    pub async fn recent_tasks(&self, limit: usize) -> Result<Vec<TaskRecord>, BusError> {
        let mut out = Vec::new();
        for id in self.inner.transport.task_ids(limit).await? {
            if let Some(r) = self.task(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Applies `event` to a task (compare-and-set on its version) and records the resulting
    /// status or artifact event. `if_version`: the version the caller last saw, if it matters.
    pub async fn update_task(
        &self,
        task_id: &str,
        event: &TaskEvent,
        if_version: Option<u64>,
        source: &str,
    ) -> Result<(TaskRecord, Applied), BusError> {
        self.update_task_from(task_id, event, if_version, source, None, None)
            .await
    }

    /// `update_task`, first trying `known` (a record this process stored) as the current
    /// version, which saves reading it back. The compare-and-set decides: if the task moved on,
    /// or the update would not change `known`, it is re-read and applied as usual. With `ack`,
    /// a change is recorded and `ack` settled together (nothing is settled otherwise).
    pub(crate) async fn update_task_from(
        &self,
        task_id: &str,
        event: &TaskEvent,
        if_version: Option<u64>,
        source: &str,
        mut known: Option<TaskRecord>,
        ack: Option<&Delivery>,
    ) -> Result<(TaskRecord, Applied), BusError> {
        let t = &self.inner.transport;
        for _ in 0..CAS_ATTEMPTS {
            let guess = known.take();
            let guessed = guess.is_some();
            let current = match guess {
                Some(r) => r,
                None => t
                    .task_load(task_id)
                    .await?
                    .ok_or_else(|| BusError::TaskNotFound(task_id.to_string()))?,
            };
            let mut next = current.clone();
            let applied = match next.apply(event, if_version) {
                Ok(Applied::Changed) => Applied::Changed,
                // Only the stored record may refuse or absorb an update.
                _ if guessed => continue,
                Ok(other) => other,
                Err(e) => return Err(e.into()),
            };
            if applied != Applied::Changed {
                return Ok((current, applied));
            }
            if let Some(agent) = source.strip_prefix("agent://") {
                next.agent = Some(agent.to_string());
            }
            if t.task_store(&next, current.version).await? {
                let recorded = task_event_envelope(&next, event, source);
                match ack {
                    Some(d) => t.record_and_ack(&recorded, d).await?,
                    None => t.record(&recorded).await?,
                }
                return Ok((next, Applied::Changed));
            }
        }
        Err(BusError::Contention(task_id.to_string()))
    }

    /// Streams a task's updates (current task first, then status and artifact events), e.g. for
    /// a bridge that watches tasks it did not submit.
    pub fn task_updates(&self, task_id: &str) -> crate::watch::TaskUpdates {
        crate::watch::TaskUpdates::new(self.clone(), task_id)
    }

    /// Cancels a task: it becomes canceled at once and a running handler's token fires.
    pub async fn cancel(&self, task_id: &str) -> Result<TaskRecord, BusError> {
        let rec = self
            .task(task_id)
            .await?
            .ok_or_else(|| BusError::TaskNotFound(task_id.to_string()))?;
        if rec.state().is_terminal() {
            return Err(BusError::NotCancelable {
                id: task_id.to_string(),
                state: rec.state(),
            });
        }
        let mut req = Envelope::new(self.inner.source.clone(), types::TASK_CANCEL_REQUESTED)
            .with_subject(format!("task/{task_id}"));
        req.correlationid = Some(rec.correlation_id.clone());
        req.causationid = Some(rec.submitted_event_id.clone());
        req.taskid = Some(task_id.to_string());
        req.contextid = Some(rec.task.context_id.clone());
        self.inner.transport.record(&req).await?;
        let ev = TaskEvent::status(TaskState::Canceled);
        match self
            .update_task(task_id, &ev, None, &self.inner.source)
            .await
        {
            Ok((rec, _)) => Ok(rec),
            Err(BusError::Transition(crate::task::TransitionError::Terminal(state))) => {
                Err(BusError::NotCancelable {
                    id: task_id.to_string(),
                    state,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Answers a task waiting in input-required (or auth-required); it resumes working.
    pub async fn reply_input(&self, task_id: &str, reply: Message) -> Result<TaskRecord, BusError> {
        let ev = TaskEvent::Reply { message: reply };
        let (rec, _) = self
            .update_task(task_id, &ev, None, &self.inner.source)
            .await?;
        Ok(rec)
    }

    /// Waits until the task satisfies `done` (checked on every event for it, and periodically).
    pub async fn wait_task(
        &self,
        task_id: &str,
        timeout: Duration,
        done: impl Fn(&TaskRecord) -> bool,
    ) -> Result<TaskRecord, BusError> {
        self.wait_task_on(task_id, timeout, WakeOn::Any, done).await
    }

    /// `wait_task`, re-checking only on the events `on` selects (and periodically).
    async fn wait_task_on(
        &self,
        task_id: &str,
        timeout: Duration,
        on: WakeOn,
        done: impl Fn(&TaskRecord) -> bool,
    ) -> Result<TaskRecord, BusError> {
        let what = format!("task {task_id}");
        self.wait_until_on(timeout, &what, task_id, on, || async {
            let rec = self.task(task_id).await?;
            Ok(rec.filter(|r| done(r)))
        })
        .await
    }

    /// Waits until the task finishes (completed, failed, canceled or rejected).
    pub async fn wait_terminal(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<TaskRecord, BusError> {
        // Intermediate events (submitted, working, artifacts) cannot finish it: no re-read.
        self.wait_task_on(task_id, timeout, WakeOn::Finish, |r| {
            r.state().is_terminal()
        })
        .await
    }

    /// `wait_terminal` with wake-ups registered before the task was stored: no event about it
    /// can have been missed, so it reads the task only once woken (or after the poll interval).
    pub(crate) async fn wait_terminal_registered(
        &self,
        task_id: &str,
        timeout: Duration,
        guard: WaitGuard,
    ) -> Result<TaskRecord, BusError> {
        let what = format!("task {task_id}");
        let check = || async {
            let rec = self.task(task_id).await?;
            Ok(rec.filter(|r| r.state().is_terminal()))
        };
        wait_with(guard, timeout, &what, false, check).await
    }

    /// Registers for wake-ups on events about `key` (a task, context or request id).
    pub(crate) fn watch_key(&self, key: &str, on: WakeOn) -> WaitGuard {
        let t = self.inner.transport.clone();
        self.inner
            .waiters
            .register(key, on, move || t.live(), &self.inner.shutdown)
    }

    /// Re-runs `check` on every event about `key` (and every 250 ms), until it yields a value
    /// or `timeout` passes.
    pub(crate) async fn wait_until<T, F, Fut>(
        &self,
        timeout: Duration,
        what: &str,
        key: &str,
        check: F,
    ) -> Result<T, BusError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, BusError>>,
    {
        self.wait_until_on(timeout, what, key, WakeOn::Any, check)
            .await
    }

    /// `wait_until`, re-running `check` only on the events `on` selects (and every 250 ms).
    pub(crate) async fn wait_until_on<T, F, Fut>(
        &self,
        timeout: Duration,
        what: &str,
        key: &str,
        on: WakeOn,
        check: F,
    ) -> Result<T, BusError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, BusError>>,
    {
        let guard = self.watch_key(key, on);
        wait_with(guard, timeout, what, true, check).await
    }

    /// Publishes a new version of the shared context for `context_id`; returns its version.
    pub async fn publish_context(&self, context_id: &str, value: Value) -> Result<u64, BusError> {
        check_name(context_id)?;
        let version = self
            .inner
            .transport
            .context_publish(context_id, &value)
            .await?;
        let mut env = Envelope::new(self.inner.source.clone(), types::CONTEXT_UPDATED)
            .with_subject(format!("context/{context_id}"))
            .with_data(json!({"contextId": context_id, "version": version, "value": value}));
        env.contextid = Some(context_id.to_string());
        env.correlationid = Some(format!("context:{context_id}"));
        self.inner.transport.record(&env).await?;
        Ok(version)
    }

    /// The latest shared context for `context_id` (late joiners start here).
    pub async fn context(&self, context_id: &str) -> Result<Option<SharedContext>, BusError> {
        Ok(self.inner.transport.context_load(context_id).await?)
    }

    /// Waits until the shared context reaches at least `min_version`.
    pub async fn wait_context(
        &self,
        context_id: &str,
        min_version: u64,
        timeout: Duration,
    ) -> Result<SharedContext, BusError> {
        self.wait_until(
            timeout,
            &format!("context {context_id} v{min_version}"),
            context_id,
            || async {
                let c = self.context(context_id).await?;
                Ok(c.filter(|c| c.version >= min_version))
            },
        )
        .await
    }

    /// Registered agents (heartbeat not lapsed) that serve `capability`.
    pub async fn agents_for(&self, capability: &str) -> Result<Vec<AgentCard>, BusError> {
        let all = self.inner.transport.agents().await?;
        Ok(all.into_iter().filter(|c| c.serves(capability)).collect())
    }

    /// Dead letters of every partition of `capability`, oldest first per partition.
    pub async fn dead_letters(&self, capability: &str) -> Result<Vec<DeadLetter>, BusError> {
        let mut out = Vec::new();
        for p in self.partitions(capability) {
            out.extend(self.inner.transport.dead_letters(&p, 1000).await?);
        }
        Ok(out)
    }

    /// Dead letters of `capability`, or of every capability the bus knows when `None`.
    pub async fn dead_letters_of(
        &self,
        capability: Option<&str>,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let caps = match capability {
            Some(c) => vec![c.to_string()],
            None => self
                .inner
                .transport
                .capabilities()
                .await?
                .into_iter()
                .map(|(c, _)| c)
                .collect(),
        };
        let mut out = Vec::new();
        for cap in caps {
            out.extend(self.dead_letters(&cap).await?);
        }
        Ok(out)
    }

    /// Messages of `capability` waiting, in flight and dead-lettered, over all its partitions.
    pub async fn queue_levels(&self, capability: &str) -> Result<QueueLevels, BusError> {
        self.sum_levels(self.partitions(capability)).await
    }

    /// Queue levels of every declared capability, summed.
    pub async fn total_queue_levels(&self) -> Result<QueueLevels, BusError> {
        let mut partitions = Vec::new();
        for (capability, n) in self.inner.transport.capabilities().await? {
            partitions.extend((0..n.max(1)).map(|i| Partition::new(capability.as_str(), i)));
        }
        self.sum_levels(partitions).await
    }

    async fn sum_levels(
        &self,
        partitions: impl IntoIterator<Item = Partition>,
    ) -> Result<QueueLevels, BusError> {
        let mut total = QueueLevels::default();
        for p in partitions {
            total += self.inner.transport.queue_levels(&p).await?;
        }
        Ok(total)
    }

    /// Puts a dead letter back on its queue with a fresh delivery count. A dead-lettered task
    /// is re-opened (its record is reset to submitted) so it can run again.
    pub async fn redrive(&self, dead: &DeadLetter) -> Result<bool, BusError> {
        if let Some(task_id) = dead.envelope.taskid.as_deref() {
            crate::submit::reopen(self, task_id).await?;
        }
        Ok(self
            .inner
            .transport
            .redrive(&dead.partition, &dead.entry_id)
            .await?)
    }

    /// Cancels a scheduled task before it is delivered; false if it was already delivered.
    pub async fn cancel_scheduled(&self, handle: &TaskHandle) -> Result<bool, BusError> {
        let removed = self
            .inner
            .transport
            .cancel_scheduled(&handle.partition, &handle.task_id)
            .await?;
        if removed {
            self.cancel(&handle.task_id).await?;
        }
        Ok(removed)
    }

    /// A new unique id (ULID).
    pub fn new_id() -> String {
        new_id()
    }
}

/// Runs `check` (first at once if `check_first`, then on every wake-up of `guard` and every
/// 250 ms) until it yields a value or `timeout` passes.
async fn wait_with<T, F, Fut>(
    guard: WaitGuard,
    timeout: Duration,
    what: &str,
    check_first: bool,
    mut check: F,
) -> Result<T, BusError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BusError>>,
{
    let deadline = Instant::now() + timeout;
    let mut checking = check_first;
    loop {
        if checking && let Some(v) = check().await? {
            return Ok(v);
        }
        checking = true;
        let now = Instant::now();
        if now >= deadline {
            return Err(BusError::Timeout(timeout, what.to_string()));
        }
        let tick = (now + WAIT_POLL).min(deadline);
        tokio::select! {
            _ = guard.notified() => {}
            _ = tokio::time::sleep_until(tick) => {}
        }
    }
}

/// The envelope recording a change to a task.
pub(crate) fn task_event_envelope(rec: &TaskRecord, event: &TaskEvent, source: &str) -> Envelope {
    let (ty, data) = match event {
        TaskEvent::Artifact {
            artifact,
            append,
            last_chunk,
        } => (
            types::TASK_ARTIFACT,
            StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: rec.task.id.clone(),
                context_id: rec.task.context_id.clone(),
                artifact: artifact.clone(),
                append: *append,
                last_chunk: *last_chunk,
            }),
        ),
        _ => (
            types::TASK_STATUS,
            StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id: rec.task.id.clone(),
                context_id: rec.task.context_id.clone(),
                status: rec.task.status.clone(),
                metadata: rec.task.metadata.clone(),
            }),
        ),
    };
    let mut env = Envelope::new(source, ty)
        .with_subject(format!("task/{}", rec.task.id))
        .with_data(data.to_value());
    env.correlationid = Some(rec.correlation_id.clone());
    env.causationid = Some(rec.submitted_event_id.clone());
    env.taskid = Some(rec.task.id.clone());
    env.contextid = Some(rec.task.context_id.clone());
    env.extensions
        .insert("taskversion".into(), Value::from(rec.version));
    env
}
