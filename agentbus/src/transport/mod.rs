//! The transport seam: everything the bus needs from its storage engine, as one trait with two
//! implementations (in-memory for the embedded default, Redis Streams for many processes). The
//! bus logic above it (ownership, dispatch, retries, the agent API) is shared, so both engines
//! behave the same and are checked by one test suite.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::a2a::AgentCard;
use crate::envelope::Envelope;
use crate::task::TaskRecord;

pub use self::memory::MemoryTransport;
pub use self::redis::RedisTransport;

/// Why a transport operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The backend cannot be reached (Redis down, connection refused or timed out).
    #[error("bus transport unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("bus transport error: {0}")]
    Backend(String),
    /// Stored data could not be decoded.
    #[error("stored bus data is corrupt: {0}")]
    Corrupt(String),
}

/// Result of a transport call.
pub type TransportResult<T> = Result<T, TransportError>;

/// Settings every transport honours.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// How long a message id is remembered to drop duplicate sends (default 10 min).
    pub dedupe_window: Duration,
    /// How long task records, correlation logs, contexts and dead letters are kept (default 7 days).
    pub retention: Duration,
    /// Approximate length of the live event feed (default 10,000 events).
    pub live_feed_len: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            dedupe_window: Duration::from_secs(600),
            retention: Duration::from_secs(7 * 24 * 3600),
            live_feed_len: 10_000,
        }
    }
}

/// One partition of a capability's queue: the unit of ordering and ownership.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partition {
    /// Capability name.
    pub capability: String,
    /// Partition index, `0..partitions`.
    pub index: u16,
}

impl Partition {
    /// The partition `index` of `capability`.
    pub fn new(capability: impl Into<String>, index: u16) -> Self {
        Partition {
            capability: capability.into(),
            index,
        }
    }
}

/// A message handed to a consumer, held (leased) until it is settled.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where it came from.
    pub partition: Partition,
    /// Transport-specific entry id (a stream id on Redis).
    pub entry_id: String,
    /// The message.
    pub envelope: Envelope,
    /// Deliveries so far including this one: handled retries (`attempt`) plus crash redeliveries.
    pub deliveries: u32,
}

/// What happened to an enqueued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Ready for delivery now.
    Enqueued,
    /// Held until its delivery time.
    Scheduled,
    /// Same id seen within the dedupe window: dropped, reported as success.
    Duplicate,
}

/// A dead-lettered message with why and after how many deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Partition it was dead-lettered from.
    pub partition: Partition,
    /// Id of the dead-letter entry (for redrive).
    pub entry_id: String,
    /// The message as last delivered.
    pub envelope: Envelope,
    /// `MaxDeliveryCountExceeded`, `TTLExpired`, `HandlerRejected` or an application reason.
    pub reason: String,
    /// Human-readable detail.
    pub description: String,
    /// Deliveries before it was dead-lettered.
    pub deliveries: u32,
    /// Unix ms when it was dead-lettered.
    pub dead_lettered_ms: u64,
}

/// How many messages a partition (or a capability, summed) holds, by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLevels {
    /// Waiting: enqueued and never delivered, or scheduled, or backing off before a retry.
    pub waiting: u64,
    /// Delivered to a consumer and not settled yet.
    pub in_flight: u64,
    /// In the dead-letter queue.
    pub dead: u64,
    /// Of `waiting`, those not due yet: scheduled for later, or backing off before a retry.
    #[serde(default)]
    pub delayed: u64,
}

impl std::ops::AddAssign for QueueLevels {
    fn add_assign(&mut self, other: QueueLevels) {
        self.waiting += other.waiting;
        self.in_flight += other.in_flight;
        self.dead += other.dead;
        self.delayed += other.delayed;
    }
}

/// The latest shared context for a `contextid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedContext {
    /// Context id.
    pub context_id: String,
    /// Bumped by every publish.
    pub version: u64,
    /// The value.
    pub value: Value,
    /// Unix ms of the last publish.
    pub updated_ms: u64,
}

/// The storage engine under the bus.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Appends a message to a partition (or schedules it for `deliver_at_ms`), dropping it as a
    /// duplicate when its id was seen within the dedupe window.
    async fn enqueue(
        &self,
        partition: &Partition,
        envelope: &Envelope,
        deliver_at_ms: Option<u64>,
    ) -> TransportResult<EnqueueOutcome>;
    /// Cancels a scheduled (or backoff-delayed) message by envelope id; true when it was pending.
    async fn cancel_scheduled(&self, partition: &Partition, id: &str) -> TransportResult<bool>;
    /// Hands up to `max` never-delivered messages to `consumer`, waiting up to `wait` for one.
    async fn fetch(
        &self,
        partition: &Partition,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> TransportResult<Vec<Delivery>>;
    /// Takes over messages whose lease lapsed (held longer than `min_idle` without renewal).
    async fn claim_stale(
        &self,
        partition: &Partition,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> TransportResult<Vec<Delivery>>;
    /// Renews the lease of messages `consumer` holds (heartbeat), without counting a delivery.
    async fn renew(
        &self,
        partition: &Partition,
        consumer: &str,
        entry_ids: &[String],
    ) -> TransportResult<()>;
    /// Settles a delivery as done: it is removed for good.
    async fn ack(&self, delivery: &Delivery) -> TransportResult<()>;
    /// Records `envelope` (as `record`), then settles `delivery` as done (as `ack`). A transport
    /// may do both in one round trip; the delivery is never settled unless the event was recorded.
    async fn record_and_ack(
        &self,
        envelope: &Envelope,
        delivery: &Delivery,
    ) -> TransportResult<()> {
        self.record(envelope).await?;
        self.ack(delivery).await
    }
    /// Settles a delivery as failed-for-now: it comes back at `due_ms` with `attempt + 1`.
    async fn retry_at(&self, delivery: &Delivery, due_ms: u64) -> TransportResult<()>;
    /// Moves a delivery to the partition's dead-letter queue.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        description: &str,
    ) -> TransportResult<()>;
    /// Moves scheduled and backoff-delayed messages that are due into the partition.
    async fn promote_due(&self, partition: &Partition, now_ms: u64) -> TransportResult<usize>;
    /// Lists up to `max` dead letters of a partition, oldest first.
    async fn dead_letters(
        &self,
        partition: &Partition,
        max: usize,
    ) -> TransportResult<Vec<DeadLetter>>;
    /// Puts a dead letter back on its queue with a fresh delivery count; false if it is gone.
    async fn redrive(&self, partition: &Partition, entry_id: &str) -> TransportResult<bool>;
    /// How many messages the partition holds waiting, in flight and dead-lettered.
    async fn queue_levels(&self, partition: &Partition) -> TransportResult<QueueLevels>;
    /// Records the number of partitions of a capability, for tools that list queues.
    async fn declare_capability(&self, capability: &str, partitions: u16) -> TransportResult<()>;
    /// Capabilities with a queue, and their partition counts.
    async fn capabilities(&self) -> TransportResult<Vec<(String, u16)>>;

    /// Marks `consumer` alive for `ttl` on `capability`; returns how many consumers are alive.
    async fn consumer_heartbeat(
        &self,
        capability: &str,
        consumer: &str,
        ttl: Duration,
    ) -> TransportResult<usize>;
    /// Removes `consumer` from the live set of `capability`.
    async fn consumer_leave(&self, capability: &str, consumer: &str) -> TransportResult<()>;
    /// Takes or renews exclusive ownership of a partition for `lease`; false if another owns it.
    async fn acquire_partition(
        &self,
        partition: &Partition,
        consumer: &str,
        lease: Duration,
    ) -> TransportResult<bool>;
    /// Gives up ownership of a partition if `consumer` holds it.
    async fn release_partition(&self, partition: &Partition, consumer: &str)
    -> TransportResult<()>;

    /// Loads a task record.
    async fn task_load(&self, task_id: &str) -> TransportResult<Option<TaskRecord>>;
    /// Stores a task record if the stored version is `expected_version` (0: must not exist).
    async fn task_store(&self, record: &TaskRecord, expected_version: u64)
    -> TransportResult<bool>;
    /// Starts a task: stores its record if none exists (`task_store` with version 0), records
    /// the submission event only if the record is new, then enqueues the message (`enqueue`),
    /// in that order. Returns whether the record was created and what became of the message.
    /// A transport may do this in fewer round trips than the three calls.
    async fn submit_task(
        &self,
        record: &TaskRecord,
        envelope: &Envelope,
        partition: &Partition,
        deliver_at_ms: Option<u64>,
    ) -> TransportResult<(bool, EnqueueOutcome)> {
        let created = self.task_store(record, 0).await?;
        if created {
            self.record(envelope).await?;
        }
        let outcome = self.enqueue(partition, envelope, deliver_at_ms).await?;
        Ok((created, outcome))
    }
    /// Ids of the newest `limit` tasks, newest first.
    async fn task_ids(&self, limit: usize) -> TransportResult<Vec<String>>;

    /// Publishes a new version of a shared context; returns the version.
    async fn context_publish(&self, context_id: &str, value: &Value) -> TransportResult<u64>;
    /// The latest version of a shared context.
    async fn context_load(&self, context_id: &str) -> TransportResult<Option<SharedContext>>;

    /// Stores the reply for an inbox unless one is there already; true when this one won.
    async fn reply_put(
        &self,
        inbox: &str,
        reply: &Envelope,
        ttl: Duration,
    ) -> TransportResult<bool>;
    /// The reply stored for an inbox.
    async fn reply_load(&self, inbox: &str) -> TransportResult<Option<Envelope>>;

    /// Appends an event to its correlation log and to the live feed.
    async fn record(&self, envelope: &Envelope) -> TransportResult<()>;
    /// Every recorded event of a correlation chain, in recording order.
    async fn correlation(&self, correlation_id: &str) -> TransportResult<Vec<Envelope>>;
    /// Live events recorded from now on, by any process on this transport (at most once: a slow
    /// receiver sees `Lagged` and should re-read state).
    fn live(&self) -> broadcast::Receiver<Arc<Envelope>>;

    /// Registers or refreshes an agent card for `ttl`.
    async fn agent_put(&self, card: &AgentCard, ttl: Duration) -> TransportResult<()>;
    /// Removes an agent card.
    async fn agent_remove(&self, agent_id: &str) -> TransportResult<()>;
    /// Cards of agents whose registration has not lapsed.
    async fn agents(&self) -> TransportResult<Vec<AgentCard>>;

    /// Stores a task's push-notification setting `config_id` (an opaque document), replacing
    /// one with the same id, kept as long as task records; false (and nothing stored) when the
    /// task already holds `max` others.
    async fn push_config_put(
        &self,
        task_id: &str,
        config_id: &str,
        document: &str,
        max: usize,
    ) -> TransportResult<bool>;
    /// A task's push-notification settings as (id, document), ordered by id.
    async fn push_configs(&self, task_id: &str) -> TransportResult<Vec<(String, String)>>;
    /// Removes a task's push-notification setting; true when it was there.
    async fn push_config_delete(&self, task_id: &str, config_id: &str) -> TransportResult<bool>;
}
