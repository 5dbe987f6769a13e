//! The Redis Streams transport: a stream with one consumer group per capability partition,
//! leases as pending-entry idle time, a delayed zset for scheduling and backoff, a dead-letter
//! stream, and hashes for tasks, contexts and the agent registry. Key layout (every key of a
//! partition shares the hash tag `{<capability>:p<n>}`):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `bus:{cap:pN}:s` | stream, group `workers` | ready messages (`env` field) |
//! | `bus:{cap:pN}:d` / `:dp` | zset / hash | scheduled and backoff messages: due ms / json |
//! | `bus:{cap:pN}:dlq` | stream | dead letters with reason, description, deliveries |
//! | `bus:{cap:pN}:dup:<id>` | string, PX window | producer dedupe |
//! | `bus:{cap:pN}:owner` | string, PX lease | the consumer owning the partition |
//! | `bus:{cap:<cap>}:consumers` | zset | live consumers by expiry ms |
//! | `bus:{task:<id>}` | hash `v`, `rec` | task record and version |
//! | `bus:{task:<id>}:push` | hash | the task's push-notification settings by id |
//! | `bus:{ctx:<id>}` | hash `v`, `value`, `at` | shared context |
//! | `bus:{inbox:<id>}` | string | the reply to a request |
//! | `bus:{corr:<id>}` | list | every event of a correlation chain |
//! | `bus:tasks`, `bus:capabilities`, `bus:agents`, `bus:events` | zset, hash, hash, stream | indexes, registry, live feed |

mod levels;
mod queue;
mod scripts;
mod state;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value as RedisValue};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{
    DeadLetter, Delivery, EnqueueOutcome, Partition, QueueLevels, SharedContext, Transport,
    TransportConfig, TransportError, TransportResult,
};
use crate::a2a::AgentCard;
use crate::envelope::Envelope;
use crate::task::TaskRecord;

/// Consumer group every partition stream uses.
const GROUP: &str = "workers";
/// Blocking connections kept for reuse by `fetch`.
const MAX_IDLE_BLOCKING: usize = 32;

pub(crate) fn part_key(p: &Partition, suffix: &str) -> String {
    format!("bus:{{{}:p{}}}:{suffix}", p.capability, p.index)
}

fn map_err(e: redis::RedisError) -> TransportError {
    if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped() {
        TransportError::Unavailable(e.to_string())
    } else {
        TransportError::Backend(e.to_string())
    }
}

/// A connection to a single Redis (reconnecting manager) or to a Redis Cluster (slot-routing).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, RedisValue> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<RedisValue>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

enum Client {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl Client {
    async fn connect(&self) -> TransportResult<Conn> {
        match self {
            Client::Single(c) => ConnectionManager::new_with_config(c.clone(), manager_config())
                .await
                .map(Conn::Single)
                .map_err(map_err),
            Client::Cluster(c) => c
                .get_async_connection()
                .await
                .map(Conn::Cluster)
                .map_err(map_err),
        }
    }
}

struct Inner {
    client: Client,
    config: TransportConfig,
    conn: Conn,
    blocking: Mutex<Vec<Conn>>,
    groups: Mutex<std::collections::HashSet<Partition>>,
    live: broadcast::Sender<Arc<Envelope>>,
    /// Tags this transport's entries on the live feed: they reach local receivers when they are
    /// recorded, so the feed reader skips them instead of decoding them a second time.
    origin: String,
    shutdown: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Transport on a Redis server (7.0+); clone it freely, clones share connections.
#[derive(Clone)]
pub struct RedisTransport {
    inner: Arc<Inner>,
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

impl RedisTransport {
    /// Connects to one Redis at `url` (e.g. `redis://127.0.0.1:6379/`).
    pub async fn connect(url: &str, config: TransportConfig) -> TransportResult<Self> {
        let client = redis::Client::open(url).map_err(map_err)?;
        Self::start(Client::Single(client), config).await
    }

    /// Connects to a Redis Cluster through any of its nodes' URLs.
    pub async fn connect_cluster(
        urls: &[String],
        config: TransportConfig,
    ) -> TransportResult<Self> {
        let client = ClusterClient::builder(urls.iter().map(String::as_str))
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5))
            .retries(2)
            .build()
            .map_err(map_err)?;
        Self::start(Client::Cluster(Box::new(client)), config).await
    }

    async fn start(client: Client, config: TransportConfig) -> TransportResult<Self> {
        let conn = client.connect().await?;
        let pump_conn = client.connect().await?;
        let (live, _) = broadcast::channel(4096);
        let shutdown = CancellationToken::new();
        let origin = crate::envelope::new_id();
        tokio::spawn(state::pump_live(
            pump_conn,
            live.clone(),
            origin.clone(),
            shutdown.clone(),
        ));
        Ok(RedisTransport {
            inner: Arc::new(Inner {
                client,
                config,
                conn,
                blocking: Mutex::new(Vec::new()),
                groups: Mutex::new(Default::default()),
                live,
                origin,
                shutdown,
            }),
        })
    }

    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    fn is_cluster(&self) -> bool {
        matches!(self.inner.conn, Conn::Cluster(_))
    }

    fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// A connection of its own for a blocking command, so it does not stall other callers.
    async fn take_blocking(&self) -> TransportResult<Conn> {
        let reused = self
            .inner
            .blocking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match reused {
            Some(c) => Ok(c),
            None => self.inner.client.connect().await,
        }
    }

    fn give_back_blocking(&self, conn: Conn) {
        let mut pool = self
            .inner
            .blocking
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pool.len() < MAX_IDLE_BLOCKING {
            pool.push(conn);
        }
    }
}

#[async_trait]
impl Transport for RedisTransport {
    async fn enqueue(
        &self,
        p: &Partition,
        env: &Envelope,
        deliver_at_ms: Option<u64>,
    ) -> TransportResult<EnqueueOutcome> {
        self.q_enqueue(p, env, deliver_at_ms).await
    }
    async fn cancel_scheduled(&self, p: &Partition, id: &str) -> TransportResult<bool> {
        self.q_cancel_scheduled(p, id).await
    }
    async fn fetch(
        &self,
        p: &Partition,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> TransportResult<Vec<Delivery>> {
        self.q_fetch(p, consumer, max, wait).await
    }
    async fn claim_stale(
        &self,
        p: &Partition,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> TransportResult<Vec<Delivery>> {
        self.q_claim_stale(p, consumer, min_idle, max).await
    }
    async fn renew(&self, p: &Partition, consumer: &str, ids: &[String]) -> TransportResult<()> {
        self.q_renew(p, consumer, ids).await
    }
    async fn ack(&self, d: &Delivery) -> TransportResult<()> {
        self.q_ack(d).await
    }
    async fn record_and_ack(&self, env: &Envelope, d: &Delivery) -> TransportResult<()> {
        if self.is_cluster() {
            // The log, the feed and the queue are three slots: one step at a time.
            self.s_record(env).await?;
            return self.q_ack(d).await;
        }
        self.s_record_and_ack(env, d).await
    }
    async fn retry_at(&self, d: &Delivery, due_ms: u64) -> TransportResult<()> {
        self.q_retry_at(d, due_ms).await
    }
    async fn dead_letter(&self, d: &Delivery, reason: &str, desc: &str) -> TransportResult<()> {
        self.q_dead_letter(d, reason, desc).await
    }
    async fn promote_due(&self, p: &Partition, now_ms: u64) -> TransportResult<usize> {
        self.q_promote_due(p, now_ms).await
    }
    async fn dead_letters(&self, p: &Partition, max: usize) -> TransportResult<Vec<DeadLetter>> {
        self.q_dead_letters(p, max).await
    }
    async fn redrive(&self, p: &Partition, entry_id: &str) -> TransportResult<bool> {
        self.q_redrive(p, entry_id).await
    }
    async fn queue_levels(&self, p: &Partition) -> TransportResult<QueueLevels> {
        self.q_levels(p).await
    }
    async fn declare_capability(&self, capability: &str, partitions: u16) -> TransportResult<()> {
        self.q_declare_capability(capability, partitions).await
    }
    async fn capabilities(&self) -> TransportResult<Vec<(String, u16)>> {
        self.q_capabilities().await
    }
    async fn consumer_heartbeat(
        &self,
        capability: &str,
        consumer: &str,
        ttl: Duration,
    ) -> TransportResult<usize> {
        self.q_consumer_heartbeat(capability, consumer, ttl).await
    }
    async fn consumer_leave(&self, capability: &str, consumer: &str) -> TransportResult<()> {
        self.q_consumer_leave(capability, consumer).await
    }
    async fn acquire_partition(
        &self,
        p: &Partition,
        consumer: &str,
        lease: Duration,
    ) -> TransportResult<bool> {
        self.q_acquire(p, consumer, lease).await
    }
    async fn release_partition(&self, p: &Partition, consumer: &str) -> TransportResult<()> {
        self.q_release(p, consumer).await
    }
    async fn task_load(&self, task_id: &str) -> TransportResult<Option<TaskRecord>> {
        self.s_task_load(task_id).await
    }
    async fn task_store(&self, record: &TaskRecord, expected: u64) -> TransportResult<bool> {
        self.s_task_store(record, expected).await
    }
    async fn submit_task(
        &self,
        record: &TaskRecord,
        env: &Envelope,
        p: &Partition,
        deliver_at_ms: Option<u64>,
    ) -> TransportResult<(bool, EnqueueOutcome)> {
        if self.is_cluster() {
            // Four slots: one step at a time.
            let created = self.s_task_store(record, 0).await?;
            if created {
                self.s_record(env).await?;
            }
            let outcome = self.q_enqueue(p, env, deliver_at_ms).await?;
            return Ok((created, outcome));
        }
        self.s_submit_task(record, env, p, deliver_at_ms).await
    }
    async fn task_ids(&self, limit: usize) -> TransportResult<Vec<String>> {
        self.s_task_ids(limit).await
    }
    async fn context_publish(&self, context_id: &str, value: &Value) -> TransportResult<u64> {
        self.s_context_publish(context_id, value).await
    }
    async fn context_load(&self, context_id: &str) -> TransportResult<Option<SharedContext>> {
        self.s_context_load(context_id).await
    }
    async fn reply_put(
        &self,
        inbox: &str,
        reply: &Envelope,
        ttl: Duration,
    ) -> TransportResult<bool> {
        self.s_reply_put(inbox, reply, ttl).await
    }
    async fn reply_load(&self, inbox: &str) -> TransportResult<Option<Envelope>> {
        self.s_reply_load(inbox).await
    }
    async fn record(&self, env: &Envelope) -> TransportResult<()> {
        self.s_record(env).await
    }
    async fn correlation(&self, correlation_id: &str) -> TransportResult<Vec<Envelope>> {
        self.s_correlation(correlation_id).await
    }
    fn live(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.inner.live.subscribe()
    }
    async fn agent_put(&self, card: &AgentCard, ttl: Duration) -> TransportResult<()> {
        self.s_agent_put(card, ttl).await
    }
    async fn agent_remove(&self, agent_id: &str) -> TransportResult<()> {
        self.s_agent_remove(agent_id).await
    }
    async fn agents(&self) -> TransportResult<Vec<AgentCard>> {
        self.s_agents().await
    }

    async fn push_config_put(
        &self,
        task_id: &str,
        config_id: &str,
        document: &str,
        max: usize,
    ) -> TransportResult<bool> {
        self.s_push_config_put(task_id, config_id, document, max)
            .await
    }

    async fn push_configs(&self, task_id: &str) -> TransportResult<Vec<(String, String)>> {
        self.s_push_configs(task_id).await
    }

    async fn push_config_delete(&self, task_id: &str, config_id: &str) -> TransportResult<bool> {
        self.s_push_config_delete(task_id, config_id).await
    }
}
