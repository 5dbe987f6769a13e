//! The work the broker queues for its worker, and how each job reaches Redis: one at a time,
//! in queue order, each given up when Redis is lost. A job that passes something on to other
//! nodes and cannot is counted, once, in `nerve_cluster_drops_total{result="redis_down"}`;
//! bookkeeping jobs are not counted, as the next resynchronization writes their state again.

use std::sync::Arc;

use redis::AsyncCommands;
use tracing::warn;

use super::conn::{Conn, RESPONSE_TIMEOUT};
use super::sessions::Kept;
use super::{Detached, RedisBroker, keys};
use crate::cluster::{Scope, SessionStore, Target, deliver_local};
use crate::metrics;
use crate::registry::Delivery;

/// Most detached sessions written in one pipeline.
const DETACHED_BATCH: usize = 256;

/// Group publish: append to the capped history, then publish `id message` on the channel.
/// ARGV[6] `=` (a history clients read) trims it exactly to ARGV[1] entries and to ids from
/// ARGV[7] on, remembering the newest id trimmed away in KEYS[2]; `~` trims it roughly to
/// ARGV[1]. Answers the id and how many entries each cap trimmed.
const GROUP_PUBLISH: &str = r"
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
local cut, aged = 0, 0
if ARGV[6] == '=' then
  local over = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
  if over > 0 then
    local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', over)
    redis.call('SET', KEYS[2], gone[#gone][1])
    cut = redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
  end
  local old = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[7], '-', 'COUNT', 1)
  if #old > 0 then
    redis.call('SET', KEYS[2], old[1][1])
    aged = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[7])
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
else
  cut = redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call(ARGV[4], ARGV[5], id .. ' ' .. ARGV[2])
return {id, cut, aged}
";

/// A group message's members on this node: they get it from the group's channel once the
/// history has it, or from here without an offset when Redis cannot take it.
pub(crate) struct Here {
    /// This node's hub.
    pub hub: Arc<crate::registry::Hub>,
    /// Who is left out.
    pub scope: Scope,
    /// The message, without its offset yet.
    pub d: Arc<Delivery>,
}

/// A unit of work for the worker.
pub(crate) enum Job {
    /// A group message (already delivered here): history + channel.
    Group {
        hub: String,
        group: String,
        bytes: Vec<u8>,
        /// The members here, when they wait for the message to come back with its offset.
        here: Option<Here>,
    },
    /// A message or command for a channel.
    Channel { channel: String, bytes: Vec<u8> },
    /// A message for one connection: to its node, or into its session while no live node
    /// holds it.
    Direct {
        hub: String,
        conn: String,
        d: Arc<Delivery>,
        bytes: Vec<u8>,
    },
    /// A message for a user or everyone: to every node, and into the matching detached
    /// sessions.
    Fanout {
        hub: String,
        target: Target,
        scope: Scope,
        d: Arc<Delivery>,
        bytes: Vec<u8>,
    },
    /// A command for the node holding a connection.
    ToOwner {
        hub: String,
        conn: String,
        bytes: Vec<u8>,
    },
    /// Bring a channel's subscription in line with local interest.
    Sync(String),
    /// Presence writes.
    Presence(Vec<redis::Cmd>),
    /// A reliable session joined a group: record it (and where the history ends).
    SessionJoined {
        hub: String,
        conn: String,
        group: String,
    },
    /// A reliable session left a group.
    SessionLeft { conn: String, group: String },
    /// Redis answers again: write this node's state there again (see `worker::resync`).
    Resync,
    /// Answers once every job queued before it is done (or dropped).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

impl Job {
    /// Whether the job passes a message or command on to other nodes (and its loss counts).
    pub(crate) fn passes_on(&self) -> bool {
        matches!(
            self,
            Job::Group { .. }
                | Job::Channel { .. }
                | Job::Direct { .. }
                | Job::Fanout { .. }
                | Job::ToOwner { .. }
        )
    }
}

impl Job {
    /// A group message whose members here wait for its offset, and Redis cannot take it:
    /// they get it without one.
    pub(crate) fn deliver_here(&self) {
        if let Job::Group {
            group,
            here: Some(h),
            ..
        } = self
        {
            deliver_local(&h.hub, &Target::Group(group.clone()), &h.scope, &h.d);
        }
    }
}

/// Drops a job Redis cannot take; counts it if it passed something on.
pub(crate) fn drop_job(job: &Job) {
    if job.passes_on() {
        metrics::global().cluster_drop("redis_down");
    }
    job.deliver_here();
}

/// Runs a job against Redis; on failure (or when Redis is lost meanwhile) drops it.
pub(crate) async fn run_job(broker: &Arc<RedisBroker>, conn: &mut Conn, job: Job) {
    let done = broker
        .guarded(RESPONSE_TIMEOUT, attempt(broker, conn, &job))
        .await;
    if done.is_none() {
        drop_job(&job);
    }
}

async fn attempt(broker: &Arc<RedisBroker>, conn: &mut Conn, job: &Job) -> redis::RedisResult<()> {
    match job {
        Job::Group {
            hub, group, bytes, ..
        } => group_publish(broker, conn, hub, group, bytes).await,
        Job::Channel { channel, bytes } => {
            publish_to(broker, conn, channel, bytes).await.map(|_| ())
        }
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
            publish_to(broker, conn, &keys::broadcast_channel(), bytes).await?;
            to_detached(broker, conn, hub, target, scope, d).await;
            Ok(())
        }
        Job::ToOwner {
            hub,
            conn: id,
            bytes,
        } => {
            let owner: Option<String> = conn.hget(keys::connections(hub), id).await?;
            let channel = match owner {
                Some(v) => keys::node_channel(node_of(&v)),
                None => keys::broadcast_channel(),
            };
            publish_to(broker, conn, &channel, bytes).await.map(|_| ())
        }
        Job::Sync(channel) => sync(broker, conn, channel).await,
        Job::SessionJoined {
            hub,
            conn: id,
            group,
        } => {
            broker.joined(hub, id, group).await;
            Ok(())
        }
        Job::SessionLeft { conn: id, group } => {
            broker.left(id, group).await;
            Ok(())
        }
        Job::Presence(cmds) => {
            for cmd in cmds {
                cmd.query_async::<()>(conn).await?;
            }
            Ok(())
        }
        // Run by the worker itself, never here.
        Job::Resync => Ok(()),
        Job::Barrier(_) => Ok(()),
    }
}

/// Appends a group message to its history and publishes it; a group whose history clients
/// read is trimmed exactly to its caps (its members here get the message from the channel,
/// as every node's do).
async fn group_publish(
    broker: &RedisBroker,
    conn: &mut Conn,
    hub: &str,
    group: &str,
    bytes: &[u8],
) -> redis::RedisResult<()> {
    let kept = broker.settings.history.for_group(hub, group);
    let ttl = broker.settings.history_ttl.as_millis() as u64;
    let (len, exact, ttl, min_id) = match kept {
        Some(h) => {
            let age = h.max_age_secs.saturating_mul(1000);
            let oldest = super::worker::now_ms().saturating_sub(age);
            (h.max_messages, "=", ttl.max(age), format!("{oldest}-0"))
        }
        None => (broker.settings.history_len, "~", ttl, "0".to_string()),
    };
    let (_id, cut, aged): (String, u64, u64) = redis::Script::new(GROUP_PUBLISH)
        .key(keys::history(hub, group))
        .key(keys::history_trimmed(hub, group))
        .arg(len)
        .arg(bytes)
        .arg(ttl)
        .arg(conn.publish_command())
        .arg(keys::group_channel(hub, group))
        .arg(exact)
        .arg(min_id)
        .invoke_async(conn)
        .await?;
    if kept.is_some() {
        metrics::global().history_trim("max_messages", cut);
        metrics::global().history_trim("max_age", aged);
    }
    Ok(())
}

/// The node id in a presence entry (`node#epoch\nuser…`) or a node incarnation (`node#epoch`).
fn node_of(entry: &str) -> &str {
    entry.split(['#', '\n']).next().unwrap_or_default()
}

/// Publishes on a (node or broadcast) channel; answers how many subscribers got it. The
/// message is numbered on its channel (`-origin.number`, where a group message has its
/// history id), so a node that missed some (cut off from Redis, or still reconnecting)
/// counts them when the next one arrives. A publish that fails gives its number back.
async fn publish_to(
    broker: &RedisBroker,
    conn: &mut Conn,
    channel: &str,
    bytes: &[u8],
) -> redis::RedisResult<i64> {
    let number = broker.number(channel);
    let mut msg = format!("-{}.{number} ", broker.origin).into_bytes();
    msg.extend_from_slice(bytes);
    let sent = redis::cmd(conn.publish_command())
        .arg(channel)
        .arg(msg)
        .query_async::<i64>(conn)
        .await;
    if sent.is_err() {
        broker.unnumber(channel, number);
    }
    sent
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
        && publish_to(broker, conn, &keys::node_channel(node_of(owner)), bytes).await? > 0
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
        Kept::Held(node) => publish_to(broker, conn, &keys::node_channel(&node), bytes)
            .await
            .map(|_| ()),
        // Not a session: whichever node holds the connection delivers it.
        Kept::Gone if dead.is_empty() => {
            publish_to(broker, conn, &keys::broadcast_channel(), bytes)
                .await
                .map(|_| ())
        }
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
