//! The broker's tasks: the worker that owns every write to Redis (connect with backoff,
//! heartbeat, resynchronize after an outage, run queued jobs in order) and the receiver that
//! turns pushes from other nodes into local deliveries and commands.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::conn::{Conn, PUSH_QUEUE, PushSink, message_of, shard_unsubscribed};
use super::sessions::Kept;
use super::{Detached, Job, RedisBroker, keys};
use crate::cluster::envelope::{Body, Envelope};
use crate::cluster::{Scope, Target, deliver_local};
use crate::metrics;
use crate::registry::{Delivery, Position};

/// Most detached sessions written in one pipeline.
const DETACHED_BATCH: usize = 256;

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Group publish: append to the capped history, then publish `id message` on the channel.
const GROUP_PUBLISH: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call(ARGV[4], ARGV[5], id .. ' ' .. ARGV[2])
return id
";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Runs until shutdown.
pub(crate) async fn run(
    broker: Arc<RedisBroker>,
    jobs: flume::Receiver<Job>,
    shutdown: CancellationToken,
) {
    let (push_tx, push_rx) = tokio::sync::mpsc::channel(PUSH_QUEUE);
    tokio::spawn(receive(broker.clone(), push_rx, shutdown.clone()));
    let sink = PushSink(push_tx);
    let mut backoff = Duration::from_millis(50);
    let conn = loop {
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
    let mut conn = conn;
    let mut tick = tokio::time::interval(broker.settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A draining node still passes on what its last requests and sessions publish: the
    // worker runs until the process ends (`flush` waits for it on the way out).
    loop {
        tokio::select! {
            _ = tick.tick() => heartbeat(&broker, &mut conn).await,
            job = jobs.recv_async() => {
                let Ok(job) = job else { break };
                if broker.ready.load(Ordering::Relaxed) {
                    run_job(&broker, &mut conn, job).await;
                } else {
                    fallback(job);
                }
                broker.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// While Redis is out of reach: serve queued group messages locally, drop the rest.
fn drain_locally(broker: &RedisBroker, jobs: &flume::Receiver<Job>) {
    while let Ok(job) = jobs.try_recv() {
        fallback(job);
        broker.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

fn fallback(job: Job) {
    match job {
        Job::Group {
            group,
            local: Some((hub, scope, d)),
            ..
        } => {
            deliver_local(&hub, &Target::Group(group), &scope, &d);
        }
        Job::Sync(_) | Job::Presence(_) => {}
        _ => metrics::global().cluster_drop("redis_down"),
    }
}

async fn heartbeat(broker: &Arc<RedisBroker>, conn: &mut Conn) {
    let was_ready = broker.ready.load(Ordering::Relaxed);
    if !was_ready {
        // A new incarnation: whatever this node wrote before the outage stops counting.
        broker.epoch.fetch_add(1, Ordering::Relaxed);
    }
    let now = now_ms();
    let ttl = broker.settings.presence_ttl.as_millis() as u64;
    let started = std::time::Instant::now();
    type Beat = (Vec<String>, HashMap<String, String>);
    let result: redis::RedisResult<Beat> = redis::pipe()
        .zadd(keys::nodes(), broker.presence_name(), now)
        .ignore()
        .zrembyscore(keys::nodes(), 0, now.saturating_sub(ttl * 10))
        .ignore()
        .zrangebyscore(keys::nodes(), now.saturating_sub(ttl), "+inf")
        .hgetall(keys::detached_sessions())
        .query_async(conn)
        .await;
    match result {
        Ok((alive, mut detached)) => {
            metrics::global().redis_round_trip(started.elapsed());
            let alive: HashSet<String> = alive.into_iter().collect();
            if !was_ready && resync(broker, conn).await.is_err() {
                return;
            }
            // A node incarnation gone since the last beat: its reliable sessions are
            // detached now, before this node (or anyone asking it) counts that node dead.
            let vanished = !was_ready || broker.alive.read().iter().any(|n| !alive.contains(n));
            if vanished {
                match broker.sweep(conn).await {
                    Ok(d) => detached = d,
                    Err(_) => {
                        metrics::global().redis_errors.inc();
                    }
                }
            }
            refresh_detached(broker, conn, detached).await;
            *broker.alive.write() = alive;
            if !was_ready {
                broker.ready.store(true, Ordering::Relaxed);
                metrics::global().redis_health(true);
                metrics::global().redis_recoveries.inc();
                info!(node = %broker.presence_name(), "Redis reachable; cluster mode on");
            }
        }
        Err(e) => {
            metrics::global().redis_errors.inc();
            if was_ready {
                warn!(error = %e, "lost Redis; serving local connections only");
                broker.ready.store(false, Ordering::Relaxed);
                metrics::global().redis_health(false);
                for i in broker.interest.lock().values_mut() {
                    i.subscribed = false;
                }
            }
        }
    }
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

/// Subscribes to every wanted channel and rewrites this node's presence.
async fn resync(broker: &Arc<RedisBroker>, conn: &mut Conn) -> redis::RedisResult<()> {
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
    for hub in inbound.registry().hubs() {
        for c in hub.all_connections() {
            let mut cmds = broker.connection_presence(&c);
            for g in c.groups.lock().iter() {
                cmds.push(broker.member_presence(&hub.name, &c, g));
            }
            for cmd in cmds {
                let _: () = cmd.query_async(conn).await?;
            }
            if c.protocol.is_reliable() {
                // Its sessions are held by this new incarnation.
                broker.rehold(conn, &c).await;
            }
        }
    }
    Ok(())
}

async fn run_job(broker: &Arc<RedisBroker>, conn: &mut Conn, job: Job) {
    let publish = conn.publish_command();
    let result: redis::RedisResult<()> = match &job {
        Job::Group {
            hub, group, bytes, ..
        } => redis::Script::new(GROUP_PUBLISH)
            .key(keys::history(hub, group))
            .arg(broker.settings.history_len)
            .arg(bytes.as_slice())
            .arg(broker.settings.history_ttl.as_millis() as u64)
            .arg(publish)
            .arg(keys::group_channel(hub, group))
            .invoke_async::<String>(conn)
            .await
            .map(|_| ()),
        Job::Channel { channel, bytes } => publish_to(conn, channel, bytes).await.map(|_| ()),
        Job::Direct {
            hub,
            conn: id,
            d,
            bytes,
        } => direct(broker, conn, hub, id, d, bytes).await,
        Job::Fanout {
            hub,
            target,
            scope,
            d,
            bytes,
        } => {
            let sent = publish_to(conn, &keys::broadcast_channel(), bytes).await;
            if sent.is_ok() {
                to_detached(broker, conn, hub, target, scope, d).await;
            }
            sent.map(|_| ())
        }
        Job::ToOwner {
            hub,
            conn: id,
            bytes,
        } => {
            let owner: redis::RedisResult<Option<String>> =
                conn.hget(keys::connections(hub), id).await;
            let channel = match owner {
                Ok(Some(v)) => keys::node_channel(node_of(&v)),
                _ => keys::broadcast_channel(),
            };
            publish_to(conn, &channel, bytes).await.map(|_| ())
        }
        Job::Sync(channel) => sync(broker, conn, channel).await,
        Job::SessionJoined {
            hub,
            conn: id,
            group,
        } => {
            use crate::cluster::SessionStore;
            broker.joined(hub, id, group).await;
            Ok(())
        }
        Job::SessionLeft { conn: id, group } => {
            use crate::cluster::SessionStore;
            broker.left(id, group).await;
            Ok(())
        }
        Job::Presence(cmds) => {
            let mut r = Ok(());
            for cmd in cmds {
                if let Err(e) = cmd.query_async::<()>(conn).await {
                    r = Err(e);
                    break;
                }
            }
            r
        }
    };
    if let Err(e) = result {
        metrics::global().redis_errors.inc();
        warn!(error = %e, "Redis operation failed");
        fallback(job);
    }
}

/// The node id in a presence entry (`node#epoch\nuser…`) or a node incarnation (`node#epoch`).
fn node_of(entry: &str) -> &str {
    entry.split(['#', '\n']).next().unwrap_or_default()
}

/// Publishes on a channel; answers how many subscribers got it.
async fn publish_to(conn: &mut Conn, channel: &str, bytes: &[u8]) -> redis::RedisResult<i64> {
    let mut msg = Vec::with_capacity(bytes.len() + 2);
    msg.extend_from_slice(b"- ");
    msg.extend_from_slice(bytes);
    redis::cmd(conn.publish_command())
        .arg(channel)
        .arg(msg)
        .query_async::<i64>(conn)
        .await
}

/// A message for one connection. Its presence entry names its node: when that node is alive
/// and still subscribed, the message goes to its channel (the one round trip besides the
/// lookup, as for any send). When the node is dead (presence), gone from pub/sub (nobody got
/// the message: it died a moment ago) or the connection has no entry (its node released it),
/// the message goes into the session, if it is a reliable session no live node holds.
async fn direct(
    broker: &Arc<RedisBroker>,
    conn: &mut Conn,
    hub: &str,
    id: &str,
    d: &Delivery,
    bytes: &[u8],
) -> redis::RedisResult<()> {
    let entry: Option<String> = conn.hget(keys::connections(hub), id).await?;
    let owner = entry
        .as_deref()
        .map(|v| v.split('\n').next().unwrap_or_default().to_string());
    if let Some(owner) = &owner
        && super::presence::is_alive(broker, conn, owner).await
        && publish_to(conn, &keys::node_channel(node_of(owner)), bytes).await? > 0
    {
        return Ok(());
    }
    let dead = owner.unwrap_or_default();
    let kept = broker
        .store_detached(conn, &[(id, dead.as_str())], d.json_frame.as_str())
        .await?;
    match kept.into_iter().next().unwrap_or(Kept::Gone) {
        Kept::Appended | Kept::Dropped => Ok(()),
        // Just resumed (or held by a node presence does not list yet): send it there.
        Kept::Held(node) => publish_to(conn, &keys::node_channel(&node), bytes)
            .await
            .map(|_| ()),
        // Not a session: whichever node holds the connection delivers it.
        Kept::Gone if dead.is_empty() => publish_to(conn, &keys::broadcast_channel(), bytes)
            .await
            .map(|_| ()),
        Kept::Gone => Ok(()),
    }
}

/// Appends a message for a user or everyone to the matching detached sessions of the hub
/// (none in the usual case: no round trip). Sends with an OData filter are not kept for
/// them: the filter needs the connection's state, which no node holds while it is away.
async fn to_detached(
    broker: &RedisBroker,
    conn: &mut Conn,
    hub: &str,
    target: &Target,
    scope: &Scope,
    d: &Delivery,
) {
    if scope.filter.is_some() {
        return;
    }
    let sessions: Vec<Detached> = match broker.detached.read().get(hub) {
        None => return,
        Some(all) => all
            .iter()
            .filter(|s| match target {
                Target::All => true,
                Target::User(u) => s.user == *u,
                _ => false,
            })
            .filter(|s| !scope.excluded.contains(&s.conn))
            .cloned()
            .collect(),
    };
    // Bounded batches: one round trip each.
    for batch in sessions.chunks(DETACHED_BATCH) {
        let ids: Vec<(&str, &str)> = batch
            .iter()
            .map(|s| (s.conn.as_str(), s.node.as_str()))
            .collect();
        match broker
            .store_detached(conn, &ids, d.json_frame.as_str())
            .await
        {
            Ok(kept) => {
                for (s, k) in batch.iter().zip(kept) {
                    // Resumed (the new node got the message through the broadcast channel),
                    // over, or dropped past its caps: no longer detached.
                    if k != Kept::Appended {
                        forget_detached(broker, conn, hub, &s.conn).await;
                    }
                }
            }
            Err(e) => {
                metrics::global().redis_errors.inc();
                warn!(error = %e, "cannot keep a message for detached sessions");
            }
        }
    }
}

/// Drops a session from the detached set (here and in Redis).
async fn forget_detached(broker: &RedisBroker, conn: &mut Conn, hub: &str, id: &str) {
    if let Some(v) = broker.detached.write().get_mut(hub) {
        v.retain(|s| s.conn != id);
    }
    let _: redis::RedisResult<()> = conn.hdel(keys::detached_sessions(), id).await;
}

async fn sync(broker: &RedisBroker, conn: &mut Conn, channel: &str) -> redis::RedisResult<()> {
    let (wanted, subscribed) = match broker.interest.lock().get(channel) {
        Some(i) => (i.wanted, i.subscribed),
        None => return Ok(()),
    };
    if wanted && !subscribed {
        conn.subscribe(channel).await?;
    } else if !wanted && subscribed {
        conn.unsubscribe(channel).await?;
    }
    {
        let mut i = broker.interest.lock();
        if let Some(e) = i.get_mut(channel) {
            e.subscribed = wanted;
            if !e.wanted {
                i.remove(channel);
            }
        }
    }
    broker.subscribed.send_modify(|g| *g += 1);
    Ok(())
}

/// Delivers what other nodes publish.
async fn receive(
    broker: Arc<RedisBroker>,
    mut pushes: tokio::sync::mpsc::Receiver<redis::PushInfo>,
    shutdown: CancellationToken,
) {
    loop {
        let push = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = pushes.recv() => match p { Some(p) => p, None => return },
        };
        if let Some(channel) = shard_unsubscribed(&push) {
            broker.subscription_dropped(channel);
            continue;
        }
        let Some((_, message)) = message_of(push) else {
            continue;
        };
        let Some(sp) = message.iter().position(|b| *b == b' ') else {
            continue;
        };
        let id = parse_id(&message[..sp]);
        let env = match Envelope::decode(&message[sp + 1..]) {
            Ok(e) => e,
            Err(e) => {
                metrics::global().cluster_drop("bad_envelope");
                warn!(error = %e, "unreadable message from another node");
                continue;
            }
        };
        let Some(inbound) = broker.inbound() else {
            continue;
        };
        let mine = env.origin == broker.settings.node_id;
        match env.body {
            Body::Message(m) => {
                let is_group = matches!(m.target, Target::Group(_));
                if mine && !is_group {
                    continue;
                }
                let Some(hub) = inbound.registry().hub(&env.hub) else {
                    continue;
                };
                let position = match (&m.target, id) {
                    (Target::Group(g), Some(id)) => Some(Position {
                        group: Arc::from(g.as_str()),
                        id,
                    }),
                    _ => None,
                };
                metrics::global().cluster_messages_in.inc();
                let d = Delivery::from_parts(m.frame, m.payload, position);
                deliver_local(&hub, &m.target, &m.scope, &d);
            }
            Body::Command(cmd) if !mine => inbound.run(&env.hub, &cmd),
            Body::Command(_) => {}
        }
    }
}

/// Parses a stream entry id `ms-seq`.
pub(crate) fn parse_id(b: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(b).ok()?;
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_id;

    #[test]
    fn stream_ids_parse_and_order() {
        assert_eq!(parse_id(b"1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert!(parse_id(b"17-2") < parse_id(b"17-10"));
        assert_eq!(parse_id(b"-"), None);
        assert_eq!(parse_id(b"12"), None);
        assert_eq!(parse_id(&[0xff, b'-', b'1']), None);
    }
}
