//! The consuming side shared by every transport: a consumer takes a fair share of a capability's
//! partitions (exclusive ownership with a renewed lease), reads each owned partition in order,
//! keeps messages with the same partition key one at a time, limits messages in flight, renews
//! leases of held messages, takes over messages a crashed consumer left behind, and promotes
//! scheduled and backoff messages when they are due.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::clock;
use crate::transport::{Delivery, Partition, TransportResult};

/// Settles one delivery (ack, retry or dead-letter) after handling it.
pub(crate) type Dispatch =
    Arc<dyn Fn(Delivery) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Most messages fetched in one read.
const MAX_BATCH: usize = 64;
/// Pause after a transport error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one consumer needs to run.
#[derive(Clone)]
pub(crate) struct ConsumerSpec {
    pub bus: Bus,
    pub capability: String,
    pub consumer_id: String,
    pub permits: Arc<Semaphore>,
    /// Size of `permits`.
    pub max_in_flight: usize,
    /// Partitions this consumer owns right now (shared by all its capabilities).
    pub owned: Arc<AtomicUsize>,
    pub dispatch: Dispatch,
    /// Graceful stop: finish in-flight work, release partitions, leave.
    pub stop: CancellationToken,
    /// Crash: stop at once, release nothing.
    pub kill: CancellationToken,
}

type Waiting = VecDeque<(Delivery, OwnedSemaphorePermit)>;

struct PartitionRun {
    partition: Partition,
    held: Mutex<HashSet<String>>,
    waiting: Mutex<HashMap<String, Waiting>>,
    tracker: TaskTracker,
    stop: CancellationToken,
    dispatch: Dispatch,
}

impl PartitionRun {
    /// Starts handling a delivery, or queues it behind an earlier one with the same key.
    fn submit(self: &Arc<Self>, d: Delivery, permit: OwnedSemaphorePermit) {
        // Already running here: our own renewals ran late and we claimed our own message back.
        if !lock(&self.held).insert(d.entry_id.clone()) {
            return;
        }
        match d.envelope.partitionkey.clone() {
            None => self.spawn_run(d, permit, None),
            Some(key) => {
                let mut waiting = lock(&self.waiting);
                if let Some(q) = waiting.get_mut(&key) {
                    q.push_back((d, permit));
                    return;
                }
                waiting.insert(key.clone(), VecDeque::new());
                drop(waiting);
                self.spawn_run(d, permit, Some(key));
            }
        }
    }

    fn spawn_run(self: &Arc<Self>, d: Delivery, permit: OwnedSemaphorePermit, key: Option<String>) {
        let me = self.clone();
        self.tracker.spawn(async move {
            let entry = d.entry_id.clone();
            (me.dispatch)(d).await;
            lock(&me.held).remove(&entry);
            drop(permit);
            if let Some(key) = key {
                let next = {
                    let mut waiting = lock(&me.waiting);
                    let next = waiting.get_mut(&key).and_then(VecDeque::pop_front);
                    if next.is_none() {
                        waiting.remove(&key);
                    }
                    next
                };
                if let Some((d, p)) = next {
                    me.spawn_run(d, p, Some(key));
                }
            }
        });
    }

    fn held_ids(&self) -> Vec<String> {
        lock(&self.held).iter().cloned().collect()
    }
}

/// Runs one consumer of one capability until stopped or killed.
pub(crate) fn spawn(spec: ConsumerSpec) -> JoinHandle<()> {
    tokio::spawn(async move {
        let kill = spec.kill.clone();
        tokio::select! {
            _ = kill.cancelled() => {}
            _ = membership(spec) => {}
        }
    })
}

struct Membership {
    spec: ConsumerSpec,
    /// How much this membership added to `spec.owned`.
    counted: usize,
    owned: BTreeMap<u16, (Arc<PartitionRun>, JoinHandle<()>)>,
    draining: Vec<(Arc<PartitionRun>, JoinHandle<()>)>,
}

async fn membership(spec: ConsumerSpec) {
    let mut m = Membership {
        spec,
        counted: 0,
        owned: BTreeMap::new(),
        draining: Vec::new(),
    };
    let mut tick = tokio::time::interval(m.spec.bus.config().heartbeat_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = m.spec.stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = m.rebalance().await {
            tracing::warn!(capability = %m.spec.capability, error = %e, "consumer heartbeat failed");
        }
    }
    let runs: Vec<_> = std::mem::take(&mut m.owned).into_values().collect();
    for (run, _) in &runs {
        run.stop.cancel();
    }
    for (_, join) in runs.into_iter().chain(m.draining.drain(..)) {
        let _ = join.await;
    }
    let t = m.spec.bus.transport();
    if let Err(e) = t
        .consumer_leave(&m.spec.capability, &m.spec.consumer_id)
        .await
    {
        tracing::debug!(error = %e, "could not leave consumer set");
    }
}

impl Membership {
    async fn rebalance(&mut self) -> TransportResult<()> {
        let bus = self.spec.bus.clone();
        let t = bus.transport();
        let cfg = bus.config();
        let me = self.spec.consumer_id.clone();
        let partitions = cfg.partitions.max(1);
        let live = t
            .consumer_heartbeat(&self.spec.capability, &me, cfg.lease)
            .await?;
        let target = usize::from(partitions).div_ceil(live.max(1));

        let mut lost = Vec::new();
        for (idx, (run, _)) in &self.owned {
            if !t.acquire_partition(&run.partition, &me, cfg.lease).await? {
                lost.push(*idx);
            }
        }
        for idx in lost {
            if let Some((run, join)) = self.owned.remove(&idx) {
                tracing::info!(partition = ?run.partition, "lost partition ownership");
                run.stop.cancel();
                self.draining.push((run, join));
            }
        }
        for (run, _) in self.owned.values().chain(self.draining.iter()) {
            let ids = run.held_ids();
            t.renew(&run.partition, &me, &ids).await?;
        }
        let offset = (crate::bus::key_hash(&me) % u64::from(partitions)) as u16;
        for k in 0..partitions {
            if self.owned.len() >= target {
                break;
            }
            let idx = (offset + k) % partitions;
            if self.owned.contains_key(&idx) {
                continue;
            }
            let p = Partition::new(self.spec.capability.clone(), idx);
            if t.acquire_partition(&p, &me, cfg.lease).await? {
                self.owned.insert(idx, self.start_run(p));
            }
        }
        while self.owned.len() > target {
            if let Some((_, (run, join))) = self.owned.pop_last() {
                run.stop.cancel();
                self.draining.push((run, join));
            }
        }
        self.draining.retain(|(_, join)| !join.is_finished());
        let before = self.counted;
        self.counted = self.owned.len();
        if self.counted >= before {
            self.spec
                .owned
                .fetch_add(self.counted - before, Ordering::Relaxed);
        } else {
            self.spec
                .owned
                .fetch_sub(before - self.counted, Ordering::Relaxed);
        }
        Ok(())
    }

    fn start_run(&self, partition: Partition) -> (Arc<PartitionRun>, JoinHandle<()>) {
        let run = Arc::new(PartitionRun {
            partition,
            held: Mutex::new(HashSet::new()),
            waiting: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            stop: self.spec.stop.child_token(),
            dispatch: self.spec.dispatch.clone(),
        });
        let kill = self.spec.kill.clone();
        let reader = read_partition(run.clone(), self.spec.clone());
        // A killed consumer stops reading at once and settles nothing, as a crash would.
        let join = tokio::spawn(async move {
            tokio::select! {
                _ = kill.cancelled() => {}
                _ = reader => {}
            }
        });
        (run, join)
    }
}

/// Takes up to `max` permits, the first already held. A reader blocks on its partition while
/// holding them, so it takes only its share, leaving permits for the consumer's other partitions.
fn take_permits(
    permits: &Arc<Semaphore>,
    first: OwnedSemaphorePermit,
    max: usize,
) -> Vec<OwnedSemaphorePermit> {
    let mut batch = vec![first];
    while batch.len() < max.clamp(1, MAX_BATCH) {
        match permits.clone().try_acquire_owned() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
    batch
}

async fn read_partition(run: Arc<PartitionRun>, spec: ConsumerSpec) {
    let bus = &spec.bus;
    let t = bus.transport();
    let cfg = bus.config();
    let p = run.partition.clone();
    let me = spec.consumer_id.as_str();
    let claim_every = cfg.heartbeat_interval();
    let wait = cfg.fetch_wait.min(cfg.promote_interval);
    let mut last_claim: Option<Instant> = None;
    let mut last_promote: Option<Instant> = None;
    while !run.stop.is_cancelled() {
        let now = Instant::now();
        if last_promote.is_none_or(|t0| now - t0 >= cfg.promote_interval) {
            last_promote = Some(now);
            if let Err(e) = t.promote_due(&p, clock::now_ms()).await {
                tracing::warn!(partition = ?p, error = %e, "promoting due messages failed");
            }
        }
        let permit = tokio::select! {
            _ = run.stop.cancelled() => break,
            _ = tokio::time::sleep(cfg.promote_interval) => continue,
            permit = spec.permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let share = spec.max_in_flight / spec.owned.load(Ordering::Relaxed).max(1);
        let mut batch = take_permits(&spec.permits, permit, share);
        let result = if last_claim.is_none_or(|t0| now - t0 >= claim_every) {
            last_claim = Some(now);
            match t.claim_stale(&p, me, cfg.lease, batch.len()).await {
                Ok(ds) if !ds.is_empty() => Ok(ds),
                Ok(_) => t.fetch(&p, me, batch.len(), wait).await,
                Err(e) => Err(e),
            }
        } else {
            t.fetch(&p, me, batch.len(), wait).await
        };
        match result {
            Ok(deliveries) => {
                for d in deliveries {
                    if let Some(permit) = batch.pop() {
                        run.submit(d, permit);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(partition = ?p, error = %e, "reading partition failed");
                drop(batch);
                tokio::select! {
                    _ = run.stop.cancelled() => break,
                    _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                }
            }
        }
    }
    run.tracker.close();
    run.tracker.wait().await;
    if let Err(e) = t.release_partition(&p, me).await {
        tracing::debug!(partition = ?p, error = %e, "could not release partition");
    }
}
