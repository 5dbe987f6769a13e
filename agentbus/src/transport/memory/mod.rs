//! The in-memory transport: the embedded default, for one process with no setup. It keeps the
//! same semantics as the Redis transport (leases, redelivery, delayed set, dead letters, dedupe,
//! ownership) so agents behave the same in tests, on a laptop and in production.

mod queue;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Notify, broadcast};

use self::queue::Queue;
use super::{
    DeadLetter, Delivery, EnqueueOutcome, Partition, QueueLevels, SharedContext, Transport,
    TransportConfig, TransportResult,
};
use crate::a2a::AgentCard;
use crate::clock;
use crate::envelope::Envelope;
use crate::task::TaskRecord;

/// Capacity of the live event channel per receiver before it lags.
const LIVE_CAPACITY: usize = 4096;

#[derive(Default)]
struct State {
    queues: HashMap<Partition, Queue>,
    notify: HashMap<Partition, Arc<Notify>>,
    capabilities: BTreeMap<String, u16>,
    consumers: HashMap<String, HashMap<String, Instant>>,
    tasks: HashMap<String, TaskRecord>,
    task_order: BTreeMap<(u64, String), ()>,
    contexts: HashMap<String, SharedContext>,
    replies: HashMap<String, (Envelope, Instant)>,
    replies_sweep_at: usize,
    correlation: HashMap<String, Vec<Envelope>>,
    agents: HashMap<String, (AgentCard, Instant)>,
    /// Push-notification settings by task, forgotten with their task.
    push_configs: HashMap<String, BTreeMap<String, String>>,
}

/// In-process transport; clone it to share one bus between handles.
#[derive(Clone)]
pub struct MemoryTransport {
    config: TransportConfig,
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Arc<Envelope>>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        MemoryTransport::new(TransportConfig::default())
    }
}

impl MemoryTransport {
    /// A fresh, empty bus.
    pub fn new(config: TransportConfig) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        MemoryTransport {
            config,
            state: Arc::new(Mutex::new(State::default())),
            live,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_queue<T>(&self, p: &Partition, f: impl FnOnce(&mut Queue) -> T) -> T {
        let mut st = self.lock();
        f(st.queues.entry(p.clone()).or_default())
    }

    fn notifier(&self, p: &Partition) -> Arc<Notify> {
        self.lock().notify.entry(p.clone()).or_default().clone()
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn enqueue(
        &self,
        p: &Partition,
        env: &Envelope,
        deliver_at_ms: Option<u64>,
    ) -> TransportResult<EnqueueOutcome> {
        let dedupe_ms = self.config.dedupe_window.as_millis() as u64;
        let outcome = self.with_queue(p, |q| {
            q.enqueue(env, deliver_at_ms, clock::now_ms(), dedupe_ms)
        });
        if outcome == EnqueueOutcome::Enqueued {
            self.notifier(p).notify_waiters();
        }
        Ok(outcome)
    }

    async fn cancel_scheduled(&self, p: &Partition, id: &str) -> TransportResult<bool> {
        Ok(self.with_queue(p, |q| q.cancel_scheduled(id)))
    }

    async fn fetch(
        &self,
        p: &Partition,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> TransportResult<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        let notify = self.notifier(p);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.with_queue(p, |q| q.fetch(p, consumer, max));
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn claim_stale(
        &self,
        p: &Partition,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> TransportResult<Vec<Delivery>> {
        Ok(self.with_queue(p, |q| q.claim_stale(p, consumer, min_idle, max)))
    }

    async fn renew(&self, p: &Partition, consumer: &str, ids: &[String]) -> TransportResult<()> {
        self.with_queue(p, |q| q.renew(consumer, ids));
        Ok(())
    }

    async fn ack(&self, d: &Delivery) -> TransportResult<()> {
        self.with_queue(&d.partition, |q| q.ack(&d.entry_id));
        Ok(())
    }

    async fn retry_at(&self, d: &Delivery, due_ms: u64) -> TransportResult<()> {
        self.with_queue(&d.partition, |q| q.retry_at(d, due_ms));
        Ok(())
    }

    async fn dead_letter(&self, d: &Delivery, reason: &str, desc: &str) -> TransportResult<()> {
        let now = clock::now_ms();
        self.with_queue(&d.partition, |q| q.dead_letter(d, reason, desc, now));
        Ok(())
    }

    async fn promote_due(&self, p: &Partition, now_ms: u64) -> TransportResult<usize> {
        let n = self.with_queue(p, |q| q.promote_due(now_ms));
        if n > 0 {
            self.notifier(p).notify_waiters();
        }
        Ok(n)
    }

    async fn dead_letters(&self, p: &Partition, max: usize) -> TransportResult<Vec<DeadLetter>> {
        Ok(self.with_queue(p, |q| q.dead_letters(max)))
    }

    async fn redrive(&self, p: &Partition, entry_id: &str) -> TransportResult<bool> {
        let ok = self.with_queue(p, |q| q.redrive(entry_id));
        if ok {
            self.notifier(p).notify_waiters();
        }
        Ok(ok)
    }
    async fn queue_levels(&self, p: &Partition) -> TransportResult<QueueLevels> {
        Ok(self.with_queue(p, |q| q.levels()))
    }

    async fn declare_capability(&self, capability: &str, partitions: u16) -> TransportResult<()> {
        self.lock()
            .capabilities
            .insert(capability.to_string(), partitions);
        Ok(())
    }

    async fn capabilities(&self) -> TransportResult<Vec<(String, u16)>> {
        Ok(self
            .lock()
            .capabilities
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect())
    }

    async fn consumer_heartbeat(
        &self,
        capability: &str,
        consumer: &str,
        ttl: Duration,
    ) -> TransportResult<usize> {
        let now = Instant::now();
        let mut st = self.lock();
        let live = st.consumers.entry(capability.to_string()).or_default();
        live.insert(consumer.to_string(), now + ttl);
        live.retain(|_, until| *until > now);
        Ok(live.len())
    }

    async fn consumer_leave(&self, capability: &str, consumer: &str) -> TransportResult<()> {
        if let Some(live) = self.lock().consumers.get_mut(capability) {
            live.remove(consumer);
        }
        Ok(())
    }

    async fn acquire_partition(
        &self,
        p: &Partition,
        consumer: &str,
        lease: Duration,
    ) -> TransportResult<bool> {
        Ok(self.with_queue(p, |q| q.acquire(consumer, lease)))
    }

    async fn release_partition(&self, p: &Partition, consumer: &str) -> TransportResult<()> {
        self.with_queue(p, |q| q.release(consumer));
        Ok(())
    }

    async fn task_load(&self, task_id: &str) -> TransportResult<Option<TaskRecord>> {
        Ok(self.lock().tasks.get(task_id).cloned())
    }

    async fn task_store(&self, record: &TaskRecord, expected: u64) -> TransportResult<bool> {
        let mut st = self.lock();
        let current = st.tasks.get(&record.task.id).map_or(0, |r| r.version);
        if current != expected {
            return Ok(false);
        }
        if expected == 0 {
            st.task_order
                .insert((record.created_ms, record.task.id.clone()), ());
            // Forget tasks (and their chains) past retention, oldest first, as Redis expiry would.
            let cutoff = clock::now_ms().saturating_sub(self.config.retention.as_millis() as u64);
            while let Some(((created, _), ())) = st.task_order.first_key_value() {
                if *created >= cutoff {
                    break;
                }
                let Some(((_, id), ())) = st.task_order.pop_first() else {
                    break;
                };
                if let Some(old) = st.tasks.remove(&id) {
                    st.correlation.remove(&old.correlation_id);
                }
                st.push_configs.remove(&id);
            }
        }
        st.tasks.insert(record.task.id.clone(), record.clone());
        Ok(true)
    }

    async fn task_ids(&self, limit: usize) -> TransportResult<Vec<String>> {
        let st = self.lock();
        Ok(st
            .task_order
            .keys()
            .rev()
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect())
    }

    async fn context_publish(&self, context_id: &str, value: &Value) -> TransportResult<u64> {
        let mut st = self.lock();
        let version = st.contexts.get(context_id).map_or(0, |c| c.version) + 1;
        st.contexts.insert(
            context_id.to_string(),
            SharedContext {
                context_id: context_id.to_string(),
                version,
                value: value.clone(),
                updated_ms: clock::now_ms(),
            },
        );
        Ok(version)
    }

    async fn context_load(&self, context_id: &str) -> TransportResult<Option<SharedContext>> {
        Ok(self.lock().contexts.get(context_id).cloned())
    }

    async fn reply_put(
        &self,
        inbox: &str,
        reply: &Envelope,
        ttl: Duration,
    ) -> TransportResult<bool> {
        let now = Instant::now();
        let mut st = self.lock();
        // Sweep expired replies now and then rather than on every call.
        if st.replies.len() >= st.replies_sweep_at {
            st.replies.retain(|_, (_, until)| *until > now);
            st.replies_sweep_at = (st.replies.len() * 2).max(1024);
        }
        if st.replies.get(inbox).is_some_and(|(_, until)| *until > now) {
            return Ok(false);
        }
        st.replies
            .insert(inbox.to_string(), (reply.clone(), now + ttl));
        Ok(true)
    }

    async fn reply_load(&self, inbox: &str) -> TransportResult<Option<Envelope>> {
        let now = Instant::now();
        let st = self.lock();
        Ok(st
            .replies
            .get(inbox)
            .filter(|(_, until)| *until > now)
            .map(|(e, _)| e.clone()))
    }

    async fn record(&self, env: &Envelope) -> TransportResult<()> {
        self.lock()
            .correlation
            .entry(env.correlation_id().to_string())
            .or_default()
            .push(env.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.live.send(Arc::new(env.clone()));
        Ok(())
    }

    async fn correlation(&self, correlation_id: &str) -> TransportResult<Vec<Envelope>> {
        Ok(self
            .lock()
            .correlation
            .get(correlation_id)
            .cloned()
            .unwrap_or_default())
    }

    fn live(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.live.subscribe()
    }

    async fn agent_put(&self, card: &AgentCard, ttl: Duration) -> TransportResult<()> {
        self.lock()
            .agents
            .insert(card.id.clone(), (card.clone(), Instant::now() + ttl));
        Ok(())
    }

    async fn agent_remove(&self, agent_id: &str) -> TransportResult<()> {
        self.lock().agents.remove(agent_id);
        Ok(())
    }

    async fn agents(&self) -> TransportResult<Vec<AgentCard>> {
        let now = Instant::now();
        let mut st = self.lock();
        st.agents.retain(|_, (_, until)| *until > now);
        let mut cards: Vec<AgentCard> = st.agents.values().map(|(c, _)| c.clone()).collect();
        cards.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(cards)
    }

    async fn push_config_put(
        &self,
        task_id: &str,
        config_id: &str,
        document: &str,
        max: usize,
    ) -> TransportResult<bool> {
        let mut st = self.lock();
        let configs = st.push_configs.entry(task_id.to_string()).or_default();
        if !configs.contains_key(config_id) && configs.len() >= max {
            return Ok(false);
        }
        configs.insert(config_id.to_string(), document.to_string());
        Ok(true)
    }

    async fn push_configs(&self, task_id: &str) -> TransportResult<Vec<(String, String)>> {
        Ok(self
            .lock()
            .push_configs
            .get(task_id)
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    async fn push_config_delete(&self, task_id: &str, config_id: &str) -> TransportResult<bool> {
        let mut st = self.lock();
        let Some(configs) = st.push_configs.get_mut(task_id) else {
            return Ok(false);
        };
        let removed = configs.remove(config_id).is_some();
        if configs.is_empty() {
            st.push_configs.remove(task_id);
        }
        Ok(removed)
    }
}
