//! The Redis broker: many nodes act as one hub.
//!
//! - Messages: every send is delivered to this node's recipients at once, then handed to a
//!   worker that passes it on. A group message goes through one script that appends it to the
//!   group's capped history stream and publishes it on the group's channel; its publishing
//!   node numbers it (`registry::Published`), so that node knows its own message again in
//!   the history and does not deliver it twice. Other sends are published to the nodes that
//!   may hold recipients. A node subscribes to a group channel only while it holds a member.
//! - Presence: hashes of connections, users and group members, each entry naming its node
//!   incarnation; a node heartbeats into a sorted set, so a crashed node's entries stop
//!   counting after the presence TTL.
//! - Detached reliable sessions (their node died or drained, not resumed yet): messages to the
//!   connection, its user or everyone are appended to the session in Redis, capped like the
//!   outbox, and the node that resumes it sends them. Free while owners are alive: a direct
//!   send finds the owner dead through presence or a publish nobody received, and the list of
//!   detached sessions rides on the heartbeat.
//! - Faults (`health`): nothing local waits on Redis. Redis counts as lost when its connection
//!   closes, an operation fails on the connection, or a heartbeat goes unanswered; from then on
//!   what cannot be passed on is counted and dropped. When a heartbeat is answered again the
//!   worker resynchronizes: a new incarnation, subscriptions, presence, the group messages
//!   missed meanwhile (from the histories) and every reliable session this node holds,
//!   written again whole. The worker's queue is bounded: past it, work is dropped and counted.

mod conn;
mod health;
mod history;
mod jobs;
pub mod keys;
mod numbers;
mod presence;
mod receive;
mod sessions;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use super::envelope::{Body, Envelope, Message};
use super::{Broker, Command, Inbound, Member, Scope, SessionStore, Target, deliver_local};
use crate::metrics;
use crate::registry::{Connection, Delivery, FanOut, Hub, Membership, Published};
pub use conn::Conn;
use jobs::Job;

/// Most pending broker operations; past it they are dropped and counted.
pub const JOB_QUEUE: usize = 64 * 1024;

/// Settings of the Redis broker.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Redis URLs: one for a single Redis, several (or `cluster`) for a Redis Cluster.
    pub urls: Vec<String>,
    /// Use Redis Cluster (sharded pub/sub) even with one URL.
    pub cluster: bool,
    /// This node's id (unique in the cluster).
    pub node_id: String,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// A node silent this long is dead: its connections leave presence.
    pub presence_ttl: Duration,
    /// Messages kept per group history (approximately; Redis trims in whole nodes).
    pub history_len: usize,
    /// How long a group's history outlives its last message.
    pub history_ttl: Duration,
    /// How long a reliable session's record outlives its last activity.
    pub session_ttl: Duration,
    /// Most messages a detached reliable session keeps (its outbox bound).
    pub outbox_messages: usize,
    /// Most bytes a detached reliable session keeps.
    pub outbox_bytes: usize,
    /// Groups whose history clients read (by offset): kept exactly to their caps, and their
    /// messages reach this node's members once the history has them, carrying their offset.
    pub history: crate::cluster::HistoryPolicy,
}

/// Local interest in a channel.
#[derive(Default)]
pub(crate) struct Interest {
    wanted: bool,
    subscribed: bool,
    /// For a group channel: its hub and group.
    group: Option<(String, String)>,
    /// The last history entry this node received from the group (or, before the first,
    /// when the interest began): where a catch-up after an outage starts.
    seen: (u64, u64),
    /// An outage may have cost this node some of the group's messages: catch up from the
    /// group's history before the next live one.
    behind: bool,
    /// Live messages up to this entry came in a catch-up already.
    caught_up: Option<(u64, u64)>,
}

/// A reliable session no live node holds, as the last heartbeat saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detached {
    /// Connection id.
    pub conn: String,
    /// User id (empty for none).
    pub user: String,
    /// The node incarnation that held it last.
    pub node: String,
}

/// How many locks order the group messages this node publishes (by group hash).
const ORDER_LOCKS: usize = 64;

/// The Redis broker.
pub struct RedisBroker {
    pub(crate) settings: RedisSettings,
    pub(crate) conn: RwLock<Option<Conn>>,
    pub(crate) ready: AtomicBool,
    /// Follows `ready`, for operations that give up the moment Redis is lost.
    pub(crate) online: tokio::sync::watch::Sender<bool>,
    /// Counts losses of Redis, so a resynchronization overtaken by one does not end it.
    pub(crate) outages: AtomicU64,
    /// A resynchronization is queued or running: work queued from now on runs after it.
    pub(crate) resyncing: AtomicBool,
    /// A session's write waited for Redis in vain since the last answered heartbeat: until
    /// the next one, session writes do not wait (`health`).
    pub(crate) slow: AtomicBool,
    pub(crate) epoch: AtomicU64,
    /// This node process among all nodes and their restarts (`registry::Published::origin`).
    pub(crate) origin: u64,
    /// The number of the last group message this node published.
    published: AtomicU64,
    /// Held while a group message is numbered, delivered here and queued for Redis, so its
    /// group's members and history get this node's messages in number order.
    order: Box<[Mutex<()>]>,
    /// The number of the last message published on each node or broadcast channel.
    numbers: Mutex<HashMap<String, u64>>,
    pub(crate) alive: RwLock<HashSet<String>>,
    /// This node's latest console sample, written with the next heartbeat.
    pub(crate) own_stats: Mutex<Option<String>>,
    /// Every live node's latest console sample, as the last heartbeat read them.
    pub(crate) node_stats: RwLock<Vec<(String, String)>>,
    /// Detached reliable sessions per hub, refreshed every heartbeat (usually empty).
    pub(crate) detached: RwLock<HashMap<String, Vec<Detached>>>,
    pub(crate) jobs: flume::Sender<Job>,
    /// Jobs queued and not finished yet (a drain waits for zero).
    pub(crate) pending: std::sync::atomic::AtomicUsize,
    pub(crate) interest: Mutex<HashMap<String, Interest>>,
    pub(crate) subscribed: tokio::sync::watch::Sender<u64>,
    pub(crate) inbound: OnceLock<Weak<dyn Inbound>>,
}

impl RedisBroker {
    /// Starts the broker's tasks; it connects (and reconnects) in the background, so a node
    /// without Redis still serves its own connections.
    pub fn start(
        settings: RedisSettings,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Arc<Self> {
        let (jobs, rx) = flume::bounded(JOB_QUEUE);
        let broker = Arc::new(RedisBroker {
            settings,
            conn: RwLock::new(None),
            ready: AtomicBool::new(false),
            online: tokio::sync::watch::channel(false).0,
            outages: AtomicU64::new(0),
            resyncing: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            // Unique per process, so a restarted node never revives its predecessor's entries.
            epoch: AtomicU64::new(worker::now_ms()),
            origin: rand::random::<u64>() | 1,
            published: AtomicU64::new(0),
            order: (0..ORDER_LOCKS).map(|_| Mutex::new(())).collect(),
            numbers: Mutex::new(HashMap::new()),
            alive: RwLock::new(HashSet::new()),
            own_stats: Mutex::new(None),
            node_stats: RwLock::new(Vec::new()),
            detached: RwLock::new(HashMap::new()),
            jobs,
            pending: std::sync::atomic::AtomicUsize::new(0),
            interest: Mutex::new(HashMap::new()),
            subscribed: tokio::sync::watch::channel(0).0,
            inbound: OnceLock::new(),
        });
        for ch in [
            keys::broadcast_channel(),
            keys::node_channel(&broker.settings.node_id),
        ] {
            broker.interest.lock().entry(ch).or_default().wanted = true;
        }
        metrics::global().redis_health(false);
        tokio::spawn(worker::run(broker.clone(), rx, shutdown));
        broker
    }

    /// This node's presence name: id and incarnation.
    pub(crate) fn presence_name(&self) -> String {
        format!(
            "{}#{}",
            self.settings.node_id,
            self.epoch.load(Ordering::Relaxed)
        )
    }

    /// A connection handle, when Redis is reachable.
    pub(crate) fn conn(&self) -> Option<Conn> {
        if !self.ready.load(Ordering::Relaxed) {
            return None;
        }
        self.conn.read().clone()
    }

    /// The node this broker delivers into, while it lives.
    pub(crate) fn inbound(&self) -> Option<Arc<dyn Inbound>> {
        self.inbound.get().and_then(Weak::upgrade)
    }

    /// Queues work for the worker without waiting; a full queue drops it.
    pub(crate) fn queue(&self, job: Job) -> bool {
        self.pending.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(job) {
            Ok(()) => true,
            Err(e) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                let job = e.into_inner();
                if job.passes_on() {
                    metrics::global().cluster_drop("job_queue_full");
                }
                job.deliver_here();
                false
            }
        }
    }

    fn envelope(&self, hub: &str, body: Body) -> Vec<u8> {
        Envelope {
            origin: self.settings.node_id.clone(),
            hub: hub.to_string(),
            body,
        }
        .encode()
    }

    fn want(&self, hub: &str, group: &str, wanted: bool) {
        let channel = keys::group_channel(hub, group);
        let changed = {
            let mut i = self.interest.lock();
            let e = i.entry(channel.clone()).or_insert_with(|| Interest {
                group: Some((hub.to_string(), group.to_string())),
                seen: (worker::now_ms(), 0),
                ..Interest::default()
            });
            let changed = e.wanted != wanted;
            e.wanted = wanted;
            changed
        };
        if changed {
            self.queue(Job::Sync(channel));
        }
    }

    /// Redis ended this node's subscription to `channel` (its slot moved to another master):
    /// subscribe again, at the new owner, if a local member still wants it. The confirmation
    /// of our own unsubscribe lands here too and is ignored, as nobody wants that channel.
    pub(crate) fn subscription_dropped(&self, channel: String) {
        let resubscribe = match self.interest.lock().get_mut(&channel) {
            Some(e) if e.wanted && e.subscribed => {
                e.subscribed = false;
                true
            }
            _ => false,
        };
        if resubscribe {
            tracing::debug!(%channel, "subscription dropped by Redis; subscribing again");
            self.queue(Job::Sync(channel));
        }
    }

    /// Whether a message's group keeps a history clients read.
    pub(crate) fn keeps(&self, hub: &str, target: &Target) -> bool {
        matches!(target, Target::Group(g) if self.settings.history.for_group(hub, g).is_some())
    }

    fn presence(&self, cmds: Vec<redis::Cmd>) {
        if self.accepting() {
            self.queue(Job::Presence(cmds));
        }
    }
}

impl Membership for RedisBroker {
    fn connection_added(&self, conn: &Connection) {
        self.presence(self.connection_presence(conn));
    }

    fn connection_removed(&self, conn: &Connection) {
        let mut cmds = vec![self.forget(keys::connections(&conn.hub), &conn.id)];
        if let Some(u) = &conn.user_id {
            cmds.push(self.forget(keys::user(&conn.hub, u), &conn.id));
        }
        self.presence(cmds);
    }

    fn member_added(&self, hub: &str, conn: &Connection, group: &str, first: bool) {
        let mut cmds = vec![self.member_presence(hub, conn, group)];
        if first {
            self.want(hub, group, true);
            cmds.push(self.group_presence(hub, group));
        }
        self.presence(cmds);
        if conn.protocol.is_reliable() && self.accepting() {
            self.queue(Job::SessionJoined {
                hub: hub.to_string(),
                conn: conn.id.to_string(),
                group: group.to_string(),
            });
        }
    }

    fn roles_changed(&self, conn: &Connection) {
        self.presence(self.connection_presence(conn));
    }

    fn member_removed(&self, hub: &str, conn: &Connection, group: &str, last: bool) {
        let mut cmds = vec![self.forget(keys::members(hub, group), &conn.id)];
        if last {
            self.want(hub, group, false);
            cmds.push(self.group_absence(hub, group));
        }
        self.presence(cmds);
        // A closing session keeps its groups: another node may resume it.
        if conn.protocol.is_reliable() && !conn.is_closing() && self.accepting() {
            self.queue(Job::SessionLeft {
                conn: conn.id.to_string(),
                group: group.to_string(),
            });
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    fn attach(&self, inbound: Weak<dyn Inbound>) {
        let _ = self.inbound.set(inbound);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn share_stats(&self, json: String) {
        *self.own_stats.lock() = Some(json);
    }

    fn node_stats(&self) -> Vec<(String, String)> {
        self.node_stats.read().clone()
    }

    fn publish(
        &self,
        hub: &str,
        local: Option<&Arc<Hub>>,
        target: Target,
        scope: Scope,
        d: Arc<Delivery>,
    ) -> FanOut {
        let message = |target: Target, scope: Scope, published| {
            Body::Message(Message {
                target,
                scope,
                frame: d.json_frame.as_str().to_string(),
                payload: d.payload.clone(),
                published,
                expires_at: d.expires_at,
            })
        };
        let deliver =
            || local.map_or_else(FanOut::default, |h| deliver_local(h, &target, &scope, &d));
        if let Target::Group(group) = &target {
            // Numbered, delivered here and queued under one lock, so the members here and the
            // history get this node's messages to the group in the same order.
            let _order = self.order[shard_of(hub, group)].lock();
            let seq = self.published.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = d.published.set(Published {
                group: Arc::from(group.as_str()),
                origin: self.origin,
                seq,
            });
            if !self.accepting() {
                metrics::global().cluster_drop("redis_down");
                return deliver();
            }
            // A group whose history clients read: its members here get the message as every
            // node's do, from the group's channel once the history has it, with its offset.
            let (out, here) = match local {
                Some(h) if self.keeps(hub, &target) => (
                    FanOut::default(),
                    Some(jobs::Here {
                        hub: h.clone(),
                        scope: scope.clone(),
                        d: d.clone(),
                    }),
                ),
                _ => (deliver(), None),
            };
            let bytes = self.envelope(
                hub,
                message(target.clone(), scope.clone(), Some((self.origin, seq))),
            );
            self.queue(Job::Group {
                hub: hub.to_string(),
                group: group.clone(),
                bytes,
                here,
            });
            return out;
        }
        let out = deliver();
        let job = match &target {
            Target::Connection(id) if local.is_some_and(|h| h.connection(id).is_some()) => {
                return out;
            }
            _ if !self.accepting() => {
                metrics::global().cluster_drop("redis_down");
                return out;
            }
            Target::Connection(id) => Job::Direct {
                hub: hub.to_string(),
                conn: id.clone(),
                d: d.clone(),
                bytes: self.envelope(hub, message(target.clone(), scope, None)),
            },
            _ => Job::Fanout {
                hub: hub.to_string(),
                target: target.clone(),
                bytes: self.envelope(hub, message(target.clone(), scope.clone(), None)),
                scope,
                d: d.clone(),
            },
        };
        self.queue(job);
        out
    }

    fn command(&self, hub: &str, cmd: Command) {
        if !self.accepting() {
            metrics::global().cluster_drop("redis_down");
            return;
        }
        let key = |user: &str| keys::user_groups(hub, user);
        match &cmd {
            Command::AddUser { user, group } => {
                self.presence(vec![
                    redis::cmd("SADD").arg(key(user)).arg(group).to_owned(),
                ]);
            }
            Command::RemoveUser {
                user,
                group: Some(group),
            } => self.presence(vec![
                redis::cmd("SREM").arg(key(user)).arg(group).to_owned(),
            ]),
            Command::RemoveUser { user, group: None } => {
                self.presence(vec![redis::cmd("DEL").arg(key(user)).to_owned()]);
            }
            _ => {}
        }
        let owner = match &cmd {
            Command::Join { conn, .. }
            | Command::Leave { conn, .. }
            | Command::Permission { conn, .. }
            | Command::Takeover { conn } => Some(conn.clone()),
            Command::Close {
                selector: Target::Connection(conn),
                ..
            } => Some(conn.clone()),
            _ => None,
        };
        let bytes = self.envelope(hub, Body::Command(cmd));
        let job = match owner {
            Some(conn) => Job::ToOwner {
                hub: hub.to_string(),
                conn,
                bytes,
            },
            None => Job::Channel {
                channel: keys::broadcast_channel(),
                bytes,
            },
        };
        self.queue(job);
    }

    async fn group_ready(&self, hub: &str, group: &str) {
        let channel = keys::group_channel(hub, group);
        let mut rx = self.subscribed.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let done = {
                let i = self.interest.lock();
                i.get(&channel).is_none_or(|e| e.subscribed || !e.wanted)
            };
            if done || !self.is_ready() {
                return;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    async fn remote_connection(&self, hub: &str, id: &str) -> bool {
        presence::connection_entry(self, hub, id).await.is_some()
    }

    async fn remote_user(&self, hub: &str, user: &str) -> bool {
        presence::user_alive(self, hub, user).await
    }

    async fn remote_members(&self, hub: &str, group: &str) -> Vec<Member> {
        presence::members(self, hub, group).await
    }

    async fn history_page(
        &self,
        hub: &str,
        group: &str,
        after: Option<nerve_protocol::Offset>,
        top: usize,
    ) -> Option<crate::cluster::HistoryPage> {
        history::page(self, hub, group, after, top).await
    }

    async fn remote_connections(&self, hub: &str) -> Vec<Member> {
        presence::connections(self, hub).await
    }

    async fn remote_groups(&self, hub: &str) -> Vec<String> {
        presence::groups(self, hub).await
    }

    async fn remote_roles(&self, hub: &str, id: &str) -> Option<Vec<String>> {
        let entry = presence::connection_entry(self, hub, id).await?;
        let roles = entry.splitn(3, '\n').nth(2)?;
        serde_json::from_str(roles).ok()
    }

    async fn user_groups(&self, hub: &str, user: &str) -> Vec<String> {
        let Some(mut c) = self.conn() else {
            return Vec::new();
        };
        use redis::AsyncCommands;
        let members = c.smembers::<_, Vec<String>>(keys::user_groups(hub, user));
        self.guarded(Duration::from_secs(1), members)
            .await
            .unwrap_or_default()
    }

    fn sessions(&self) -> Option<&dyn SessionStore> {
        Some(self)
    }

    async fn flush(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.pending.load(Ordering::Relaxed) > 0
            && self.is_ready()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Leave presence at once rather than after the TTL.
        if let Some(mut c) = self.conn() {
            use redis::AsyncCommands;
            let gone = c.zrem::<_, _, ()>(keys::nodes(), self.presence_name());
            let _ = tokio::time::timeout(Duration::from_millis(500), gone).await;
        }
    }
}

/// Which order lock a group's messages take.
fn shard_of(hub: &str, group: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((hub, group));
    (hash % ORDER_LOCKS as u64) as usize
}
