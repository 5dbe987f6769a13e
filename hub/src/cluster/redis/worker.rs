//! The broker's tasks: the worker that connects (with backoff) and runs queued jobs in order,
//! the watchdog that heartbeats (and notices an unresponsive Redis), and the resynchronization
//! that ends an outage. The receiver is in `receive`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::conn::{Conn, PUSH_QUEUE, PushSink};
use super::health::heartbeat_timeout;
use super::jobs::{Job, drop_job, run_job};
use super::receive::{self, Ask};
use super::{Detached, RedisBroker, keys};
use crate::metrics;

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Most presence writes sent in one pipeline when this node's presence is written again.
const PRESENCE_BATCH: usize = 512;

/// Longest a resynchronization may take before it is given up (and tried again).
const RESYNC_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Runs until the process ends.
pub(crate) async fn run(
    broker: Arc<RedisBroker>,
    jobs: flume::Receiver<Job>,
    shutdown: CancellationToken,
) {
    let (push_tx, push_rx) = mpsc::channel(PUSH_QUEUE);
    let (asks, asked) = mpsc::unbounded_channel();
    tokio::spawn(receive::receive(
        broker.clone(),
        push_rx,
        asked,
        shutdown.clone(),
    ));
    let sink = PushSink(push_tx);
    let mut backoff = Duration::from_millis(50);
    let mut conn = loop {
        match Conn::connect(&broker.settings.urls, broker.settings.cluster, sink.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                metrics::global().redis_errors.inc();
                warn!(error = %e, "cannot reach Redis; serving local connections only");
            }
        }
        drain_locally(&broker, &jobs);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    *broker.conn.write() = Some(conn.clone());
    tokio::spawn(watch(broker.clone(), conn.clone(), asks.clone()));
    // A draining node still passes on what its last requests and sessions publish: the
    // worker runs until the process ends (`flush` waits for it on the way out).
    while let Ok(job) = jobs.recv_async().await {
        match job {
            Job::Resync => resync(&broker, &mut conn, &asks).await,
            Job::Barrier(done) => {
                let _ = done.send(());
            }
            job if broker.ready.load(Ordering::SeqCst) => run_job(&broker, &mut conn, job).await,
            job => drop_job(&job),
        }
        broker.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// While Redis is out of reach before the first connection: drop what is queued.
fn drain_locally(broker: &RedisBroker, jobs: &flume::Receiver<Job>) {
    while let Ok(job) = jobs.try_recv() {
        drop_job(&job);
        broker.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Heartbeats while Redis is reachable (losing it when a beat goes unanswered), and while it
/// is not, asks it for a sign of life and queues a resynchronization at the first one. Runs
/// beside the worker, so a slow job never delays noticing an outage.
async fn watch(broker: Arc<RedisBroker>, mut conn: Conn, asks: mpsc::UnboundedSender<Ask>) {
    let interval = broker.settings.heartbeat;
    let limit = heartbeat_timeout(interval);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if broker.ready.load(Ordering::SeqCst) {
            match tokio::time::timeout(limit, heartbeat(&broker, &mut conn)).await {
                Ok(Ok(numbers)) => {
                    broker.slow.store(false, Ordering::Relaxed);
                    let _ = asks.send(Ask::Numbers(numbers));
                }
                Ok(Err(e)) => {
                    metrics::global().redis_errors.inc();
                    broker.lost(&e);
                }
                Err(_) => {
                    metrics::global().redis_errors.inc();
                    broker.lost(&format_args!("no answer to a heartbeat within {limit:?}"));
                }
            }
        } else if !broker.resyncing.load(Ordering::SeqCst) {
            let ping = redis::cmd("PING");
            let answer = tokio::time::timeout(limit, ping.query_async::<()>(&mut conn)).await;
            if matches!(answer, Ok(Ok(()))) {
                broker.resyncing.store(true, Ordering::SeqCst);
                if !broker.queue(Job::Resync) {
                    broker.resyncing.store(false, Ordering::SeqCst);
                }
            } else {
                metrics::global().redis_errors.inc();
            }
        }
    }
}

/// One heartbeat: this incarnation is alive; which others are; the detached sessions.
/// Answers every node's latest numbers.
async fn heartbeat(
    broker: &RedisBroker,
    conn: &mut Conn,
) -> redis::RedisResult<HashMap<String, String>> {
    let started = std::time::Instant::now();
    let Beat {
        alive,
        detached,
        numbers,
        stats,
    } = beat(broker, conn).await?;
    keep_node_stats(broker, conn, &alive, stats).await;
    metrics::global().redis_round_trip(started.elapsed());
    // A node incarnation gone since the last beat: its reliable sessions are detached now,
    // before this node (or anyone asking it) counts that node dead.
    let vanished = broker.alive.read().iter().any(|n| !alive.contains(n));
    let detached = if vanished {
        broker.sweep(conn).await?
    } else {
        detached
    };
    refresh_detached(broker, conn, detached).await;
    *broker.alive.write() = alive;
    Ok(numbers)
}

/// Keeps the console samples of live node incarnations, and removes the others' from Redis.
async fn keep_node_stats(
    broker: &RedisBroker,
    conn: &mut Conn,
    alive: &HashSet<String>,
    all: HashMap<String, String>,
) {
    let (live, gone): (Vec<_>, Vec<_>) = all.into_iter().partition(|(n, _)| alive.contains(n));
    if !gone.is_empty() {
        let names: Vec<String> = gone.into_iter().map(|(n, _)| n).collect();
        let _: Result<(), _> = conn.hdel(keys::node_stats(), names).await;
    }
    let mut live: Vec<(String, String)> = live
        .into_iter()
        .map(|(n, v)| (n.split('#').next().unwrap_or_default().to_string(), v))
        .collect();
    live.sort();
    *broker.node_stats.write() = live;
}

/// What a heartbeat learns.
struct Beat {
    /// Live node incarnations.
    alive: HashSet<String>,
    /// Detached sessions (`keys::detached_sessions`).
    detached: HashMap<String, String>,
    /// Every node's latest numbers (`keys::numbers`).
    numbers: HashMap<String, String>,
    /// Every node's latest console sample (`keys::node_stats`).
    stats: HashMap<String, String>,
}

/// Writes this incarnation's heartbeat and the latest numbers of its messages.
async fn beat(broker: &RedisBroker, conn: &mut Conn) -> redis::RedisResult<Beat> {
    let now = now_ms();
    let ttl = broker.settings.presence_ttl.as_millis() as u64;
    let mut p = redis::pipe();
    p.zadd(keys::nodes(), broker.presence_name(), now)
        .ignore()
        .zrembyscore(keys::nodes(), 0, now.saturating_sub(ttl * 10))
        .ignore();
    let numbers = broker.numbers();
    if !numbers.is_empty() {
        p.hset_multiple(keys::numbers(), &numbers).ignore();
    }
    // Gone with the last node.
    p.pexpire(keys::numbers(), (ttl * 10) as i64).ignore();
    if let Some(stats) = broker.own_stats.lock().take() {
        p.hset(keys::node_stats(), broker.presence_name(), stats)
            .ignore();
    }
    p.pexpire(keys::node_stats(), (ttl * 10) as i64).ignore();
    let (alive, detached, numbers, stats): (Vec<String>, _, _, _) = p
        .zrangebyscore(keys::nodes(), now.saturating_sub(ttl), "+inf")
        .hgetall(keys::detached_sessions())
        .hgetall(keys::numbers())
        .hgetall(keys::node_stats())
        .query_async(conn)
        .await?;
    Ok(Beat {
        alive: alive.into_iter().collect(),
        detached,
        numbers,
        stats,
    })
}

/// Replaces the view of detached sessions; entries older than the session TTL (their
/// sessions expired) are removed from Redis.
async fn refresh_detached(broker: &RedisBroker, conn: &mut Conn, all: HashMap<String, String>) {
    let oldest = now_ms().saturating_sub(broker.settings.session_ttl.as_millis() as u64);
    let mut view: HashMap<String, Vec<Detached>> = HashMap::new();
    let mut expired = Vec::new();
    for (id, v) in all {
        let mut f = v.split('\n');
        let (node, hub, user) = (f.next(), f.next(), f.next());
        let since = f.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        match (node, hub, user) {
            (Some(node), Some(hub), Some(user)) if since >= oldest => {
                view.entry(hub.to_string()).or_default().push(Detached {
                    conn: id,
                    user: user.to_string(),
                    node: node.to_string(),
                });
            }
            _ => expired.push(id),
        }
    }
    if !expired.is_empty() {
        let _: redis::RedisResult<()> = conn.hdel(keys::detached_sessions(), expired).await;
    }
    *broker.detached.write() = view;
}

/// Ends an outage: this node comes back as a new incarnation (whatever it wrote before stops
/// counting), writes its subscriptions and presence again, and once Redis counts as reachable,
/// catches its groups up and has every reliable session it holds write itself again. Work
/// queued meanwhile runs after it; if Redis is lost again meanwhile, the next sign of life
/// starts over.
async fn resync(broker: &Arc<RedisBroker>, conn: &mut Conn, asks: &mpsc::UnboundedSender<Ask>) {
    let since = broker.outages.load(Ordering::SeqCst);
    broker.epoch.fetch_add(1, Ordering::Relaxed);
    let written = tokio::time::timeout(RESYNC_TIMEOUT, write_again(broker, conn)).await;
    let recovered = match written {
        Ok(Ok(())) => broker.recovered(since),
        Ok(Err(e)) => {
            warn!(error = %e, "cannot resynchronize with Redis; trying again");
            false
        }
        Err(_) => {
            warn!("resynchronizing with Redis took too long; trying again");
            false
        }
    };
    broker.resyncing.store(false, Ordering::SeqCst);
    if !recovered {
        metrics::global().redis_errors.inc();
        return;
    }
    metrics::global().redis_recoveries.inc();
    info!(node = %broker.presence_name(), "Redis reachable; cluster mode on");
    let (unsynced, behind): (Vec<String>, Vec<String>) = {
        let interest = broker.interest.lock();
        let unsynced = interest
            .iter()
            .filter(|(_, i)| i.wanted && !i.subscribed)
            .map(|(c, _)| c.clone())
            .collect();
        let behind = interest
            .iter()
            .filter(|(_, i)| i.wanted && i.behind)
            .map(|(c, _)| c.clone())
            .collect();
        (unsynced, behind)
    };
    // Channels wanted since the subscriptions were written.
    for channel in unsynced {
        broker.queue(Job::Sync(channel));
    }
    for channel in behind {
        let _ = asks.send(Ask::CatchUp(channel));
    }
    let Some(inbound) = broker.inbound() else {
        return;
    };
    for hub in inbound.registry().hubs() {
        for c in hub.all_connections() {
            if c.protocol.is_reliable() {
                c.reshare();
            }
        }
    }
}

/// Writes this node's state to Redis again: its heartbeat as the new incarnation, the
/// sessions of nodes that died meanwhile detached, its subscriptions, the presence of its
/// connections and group members, and the groups its users were added to.
async fn write_again(broker: &Arc<RedisBroker>, conn: &mut Conn) -> redis::RedisResult<()> {
    // Not the numbers: what was published while this node was away must still show as gaps.
    *broker.alive.write() = beat(broker, conn).await?.alive;
    let detached = broker.sweep(conn).await?;
    refresh_detached(broker, conn, detached).await;
    let channels: Vec<String> = broker
        .interest
        .lock()
        .iter()
        .filter(|(_, i)| i.wanted)
        .map(|(c, _)| c.clone())
        .collect();
    for ch in channels {
        conn.subscribe(&ch).await?;
        if let Some(i) = broker.interest.lock().get_mut(&ch) {
            i.subscribed = true;
        }
    }
    broker.subscribed.send_modify(|g| *g += 1);
    let Some(inbound) = broker.inbound() else {
        return Ok(());
    };
    let mut batch = redis::pipe();
    let mut queued = 0;
    for hub in inbound.registry().hubs() {
        let mut cmds = Vec::new();
        for c in hub.all_connections() {
            cmds.extend(broker.connection_presence(&c));
            for g in c.groups.lock().iter() {
                cmds.push(broker.member_presence(&hub.name, &c, g));
            }
        }
        for g in hub.group_names() {
            cmds.push(broker.group_presence(&hub.name, &g));
        }
        for (user, groups) in hub.all_user_groups() {
            let key = keys::user_groups(&hub.name, &user);
            let groups: Vec<&str> = groups.iter().map(|g| &**g).collect();
            cmds.push(redis::cmd("SADD").arg(key).arg(groups).to_owned());
        }
        for cmd in cmds {
            batch.add_command(cmd).ignore();
            queued += 1;
            if queued == PRESENCE_BATCH {
                batch.exec_async(conn).await?;
                batch.clear();
                queued = 0;
            }
        }
    }
    if queued > 0 {
        batch.exec_async(conn).await?;
    }
    Ok(())
}
