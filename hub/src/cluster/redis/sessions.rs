//! Reliable sessions kept in Redis, so a client whose node died (or drained) resumes on any
//! node: the record (identity, roles, reconnection token hash, owning node, groups and how far
//! each group's history was delivered) and the unacknowledged frames, written before they
//! reach the socket. Everything expires `session_ttl` after the last write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::jobs::Job;
use super::receive::{delivery_of, history_entry, id_string, parse_id};
use super::{RedisBroker, keys};
use crate::cluster::{
    Command, Progress, Resumable, Scope, SessionRecord, SessionStore, token_hash,
};
use crate::metrics;
use crate::registry::Delivery;

/// Clears the owning node if it is still ARGV[1]; returns the session's incarnation, hub and
/// user then (nothing otherwise).
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'node', '')
  local f = redis.call('HMGET', KEYS[1], 'inc', 'hub', 'user')
  return {f[1] or '', f[2] or '', f[3] or ''}
end
return {}
";

/// Appends a message for a detached session (KEYS: record, frames). ARGV: the node
/// incarnation believed dead (empty: only a released session qualifies), the frame without
/// `sequenceId`, the most frames and bytes kept, the TTL in seconds. The frame is stamped with
/// the session's next sequence id. Answers `stored`, `gone` (no such session), `dropped` (past
/// the caps: the session is deleted, as an overflowing reliable session ends) or
/// `held <node>` (a live node holds it).
const STORE_DETACHED: &str = r#"
local node = redis.call('HGET', KEYS[1], 'node')
if not node then return 'gone' end
if node ~= '' then
  if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'inc') ~= ARGV[1] then
    return 'held ' .. node
  end
end
local frames = redis.call('LRANGE', KEYS[2], 0, -1)
local bytes = 0
for _, f in ipairs(frames) do bytes = bytes + #f end
local id = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local entry = id .. '\n{"sequenceId":' .. id .. ',' .. string.sub(ARGV[2], 2)
if #frames >= tonumber(ARGV[3]) or bytes + #entry > tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 'dropped'
end
redis.call('RPUSH', KEYS[2], entry)
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 'stored'
"#;

/// Moves the sessions of dead node incarnations (KEYS: heartbeats, held, detached) into the
/// detached set; ARGV: now and the presence TTL in milliseconds. Returns the detached set.
const SWEEP: &str = r"
local alive = {}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1] - ARGV[2], '+inf')) do
  alive[n] = true
end
local held = redis.call('HGETALL', KEYS[2])
for i = 1, #held, 2 do
  local inc = string.match(held[i + 1], '^[^\n]*')
  if not alive[inc] then
    redis.call('HSET', KEYS[3], held[i], held[i + 1] .. '\n' .. ARGV[1])
    redis.call('HDEL', KEYS[2], held[i])
  end
end
return redis.call('HGETALL', KEYS[3])
";

/// Writes a session again, whole (KEYS: record, frames), unless another node than ARGV[1]
/// holds it. ARGV: node, incarnation, TTL in seconds, hub, user, roles, token hash, last
/// sequence id; then the number of positions and published numbers and their field/value
/// pairs; then the number of groups without a position and their names (kept where known,
/// else replayed from the start); then the unacknowledged frames. Fields of groups the
/// session is no longer in are removed. Returns 1 if written.
const REWRITE: &str = r"
local node = redis.call('HGET', KEYS[1], 'node')
if node and node ~= '' and node ~= ARGV[1] then return 0 end
local i = 9
local set = {}
for _ = 1, tonumber(ARGV[i]) do
  set[ARGV[i + 1]] = ARGV[i + 2]
  i = i + 2
end
i = i + 1
local unplaced = {}
for _ = 1, tonumber(ARGV[i]) do
  unplaced['g:' .. ARGV[i + 1]] = true
  i = i + 1
end
i = i + 1
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local kind = string.sub(f, 1, 2)
  if (kind == 'g:' or kind == 'o:') and not set[f] and not unplaced[f] then
    redis.call('HDEL', KEYS[1], f)
  end
end
redis.call('HSET', KEYS[1], 'hub', ARGV[4], 'user', ARGV[5], 'roles', ARGV[6],
  'token', ARGV[7], 'node', ARGV[1], 'inc', ARGV[2], 'seq', ARGV[8])
for f, v in pairs(set) do redis.call('HSET', KEYS[1], f, v) end
for f, _ in pairs(unplaced) do redis.call('HSETNX', KEYS[1], f, '0-0') end
redis.call('DEL', KEYS[2])
if #ARGV >= i then redis.call('RPUSH', KEYS[2], unpack(ARGV, i)) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
";

/// Deletes a session (record and frames) if ARGV[1] holds it.
const REMOVE: &str = r"
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
";

/// Longest a session's write holds up its socket: past it the frames go out anyway (the
/// write is on its way and lands after them), so a slow or hung Redis never stalls a client.
const SOCKET_WAIT: Duration = Duration::from_millis(25);
/// Longest any other session operation waits for Redis.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Most history entries replayed per group on resumption (or read in a catch-up).
pub(crate) const REPLAY_MAX: usize = 1000;

#[async_trait]
impl SessionStore for RedisBroker {
    async fn create(&self, conn: &str, record: &SessionRecord) {
        let Some(mut c) = self.conn() else { return };
        let key = keys::session(conn);
        let ttl = self.settings.session_ttl.as_secs();
        let roles = serde_json::to_string(&record.roles).unwrap_or_default();
        let p = redis::pipe()
            .del(keys::session_frames(conn))
            .ignore()
            .hset_multiple(
                &key,
                &[
                    ("hub", record.hub.as_str()),
                    ("user", record.user.as_deref().unwrap_or("")),
                    ("roles", roles.as_str()),
                    ("token", record.token_hash.as_str()),
                    ("node", self.settings.node_id.as_str()),
                    ("inc", self.presence_name().as_str()),
                ],
            )
            .ignore()
            .expire(&key, ttl as i64)
            .ignore()
            .to_owned();
        self.guarded(WRITE_TIMEOUT, p.exec_async(&mut c)).await;
        self.hold(&mut c, conn, &record.hub, record.user.as_deref())
            .await;
    }

    async fn append(&self, conn: &str, progress: &Progress) {
        let Some(mut c) = self.conn() else { return };
        let ttl = self.settings.session_ttl.as_secs() as i64;
        let buf = keys::session_frames(conn);
        let meta = keys::session(conn);
        let mut p = redis::pipe();
        if progress.acked > 0 {
            p.ltrim(&buf, progress.acked as isize, -1).ignore();
        }
        if !progress.frames.is_empty() {
            let items: Vec<String> = progress
                .frames
                .iter()
                .map(|(s, f)| format!("{s}\n{f}"))
                .collect();
            p.rpush(&buf, items).ignore().expire(&buf, ttl).ignore();
        }
        if let Some((last, _)) = progress.frames.last() {
            p.hset(&meta, "seq", *last).ignore();
        }
        for (g, id) in &progress.positions {
            p.hset(&meta, format!("g:{g}"), id_string(*id)).ignore();
        }
        for (g, n) in &progress.published {
            p.hset(&meta, format!("o:{g}"), id_string(*n)).ignore();
        }
        p.expire(&meta, ttl).ignore();
        self.before_socket(SOCKET_WAIT, p.exec_async(&mut c)).await;
    }

    async fn rewrite(&self, conn: &str, whole: &Resumable) {
        let Some(mut c) = self.conn() else { return };
        let r = &whole.record;
        let mut set: Vec<(String, String)> = Vec::new();
        let mut unplaced = Vec::new();
        for (g, pos) in &whole.groups {
            match pos {
                Some(id) => set.push((format!("g:{g}"), id_string(*id))),
                None => unplaced.push(g.as_str()),
            }
        }
        for (g, n) in &whole.published {
            set.push((format!("o:{g}"), id_string(*n)));
        }
        let script = redis::Script::new(REWRITE);
        let mut call = script.key(keys::session(conn));
        call.key(keys::session_frames(conn))
            .arg(&self.settings.node_id)
            .arg(self.presence_name())
            .arg(self.settings.session_ttl.as_secs().max(1))
            .arg(&r.hub)
            .arg(r.user.as_deref().unwrap_or(""))
            .arg(serde_json::to_string(&r.roles).unwrap_or_default())
            .arg(&r.token_hash)
            .arg(whole.last_sequence_id)
            .arg(set.len());
        for (f, v) in &set {
            call.arg(f).arg(v);
        }
        call.arg(unplaced.len());
        for g in unplaced {
            call.arg(g);
        }
        for (seq, frame) in &whole.frames {
            call.arg(format!("{seq}\n{frame}"));
        }
        let written = self
            .guarded(WRITE_TIMEOUT, call.invoke_async::<i64>(&mut c))
            .await;
        if written == Some(1) {
            self.hold(&mut c, conn, &r.hub, r.user.as_deref()).await;
        }
    }

    async fn joined(&self, hub: &str, conn: &str, group: &str) {
        let Some(mut c) = self.conn() else { return };
        // Where the group's history ends now: a later resumption replays from here.
        let last = c.xrevrange_count::<_, _, _, _, redis::streams::StreamRangeReply>(
            keys::history(hub, group),
            "+",
            "-",
            1,
        );
        let id = match self.guarded(WRITE_TIMEOUT, last).await {
            Some(r) => r.ids.first().map_or("0-0".to_string(), |e| e.id.clone()),
            None => return,
        };
        let r = c.hset_nx::<_, _, _, ()>(keys::session(conn), format!("g:{group}"), id);
        self.guarded(WRITE_TIMEOUT, r).await;
    }

    async fn left(&self, conn: &str, group: &str) {
        let Some(mut c) = self.conn() else { return };
        let r = c.hdel::<_, _, ()>(keys::session(conn), format!("g:{group}"));
        self.guarded(WRITE_TIMEOUT, r).await;
    }

    async fn claim(&self, hub: &str, conn: &str, token: &str) -> Option<Resumable> {
        let mut c = self.conn()?;
        let meta = keys::session(conn);
        let mut fields: HashMap<String, String> =
            self.guarded(WRITE_TIMEOUT, c.hgetall(&meta)).await?;
        let record = SessionRecord {
            hub: fields.remove("hub")?,
            user: fields.remove("user").filter(|u| !u.is_empty()),
            roles: serde_json::from_str(fields.get("roles")?).ok()?,
            token_hash: fields.remove("token")?,
            node: fields.remove("node").unwrap_or_default(),
        };
        if record.hub != hub || record.token_hash != token_hash(token) {
            return None;
        }
        if !record.node.is_empty() && record.node != self.settings.node_id {
            let owner = fields.get("inc").cloned().unwrap_or_default();
            if self.takeover(hub, conn, &record.node, &owner, &mut c).await {
                // The owner wrote its last frames and positions as it let go: read them now,
                // or a group message it stamped last would be replayed a second time.
                fields = self.guarded(WRITE_TIMEOUT, c.hgetall(&meta)).await?;
            }
        }
        // From here on, messages for a detached session are no longer stored for it: they
        // go to this node (see `store_detached`).
        let mine = [
            ("node", self.settings.node_id.clone()),
            ("inc", self.presence_name()),
        ];
        let claimed = c.hset_multiple::<_, _, _, ()>(&meta, &mine);
        self.guarded(WRITE_TIMEOUT, claimed).await?;
        self.hold(&mut c, conn, hub, record.user.as_deref()).await;
        let frames = c.lrange(keys::session_frames(conn), 0, -1);
        let raw: Vec<String> = self.guarded(WRITE_TIMEOUT, frames).await?;
        let frames = raw
            .into_iter()
            .filter_map(|e| {
                let (seq, frame) = e.split_once('\n')?;
                Some((seq.parse().ok()?, frame.to_string()))
            })
            .collect();
        let groups = fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("g:")?.to_string(), parse_id(v.as_bytes()))))
            .collect();
        let published = fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("o:")?.to_string(), parse_id(v.as_bytes())?)))
            .collect();
        let last_sequence_id = fields.get("seq").and_then(|s| s.parse().ok()).unwrap_or(0);
        Some(Resumable {
            record,
            groups,
            frames,
            last_sequence_id,
            published,
        })
    }

    async fn history(
        &self,
        hub: &str,
        group: &str,
        after: (u64, u64),
    ) -> Vec<(Arc<Delivery>, Scope)> {
        // This node delivers its own group messages to its members at once and skips them
        // when they come back from Redis: one it sent before the resumed session registered
        // here reaches the session only through the history, so the history must hold it.
        let (done, passed_on) = tokio::sync::oneshot::channel();
        if self.queue(Job::Barrier(done)) {
            let _ = tokio::time::timeout(WRITE_TIMEOUT * 4, passed_on).await;
        }
        let Some(mut c) = self.conn() else {
            return Vec::new();
        };
        let start = format!("({}", id_string(after));
        let r = c.xrange_count::<_, _, _, _, redis::streams::StreamRangeReply>(
            keys::history(hub, group),
            start,
            "+",
            REPLAY_MAX,
        );
        let Some(reply) = self.guarded(WRITE_TIMEOUT * 4, r).await else {
            return Vec::new();
        };
        reply
            .ids
            .iter()
            .filter_map(|e| history_entry(e, group))
            .map(|(id, m)| {
                let stamp = self.keeps(hub, &m.target);
                let (_, scope, d) = delivery_of(m, Some(id), stamp);
                (d, scope)
            })
            .collect()
    }

    async fn release(&self, conn: &str) {
        let Some(mut c) = self.conn() else { return };
        // Only while this node holds it: a node that claimed it since keeps it.
        let script = redis::Script::new(RELEASE);
        let mut call = script.key(keys::session(conn));
        call.arg(&self.settings.node_id);
        let r = call.invoke_async::<Vec<String>>(&mut c);
        let Some(released) = self.guarded(WRITE_TIMEOUT, r).await else {
            return;
        };
        let [inc, hub, user] = released.as_slice() else {
            return;
        };
        // Messages for it are kept with the session until a node resumes it.
        let value = format!("{inc}\n{hub}\n{user}\n{}", super::worker::now_ms());
        let p = redis::pipe()
            .hdel(keys::held_sessions(), conn)
            .ignore()
            .hset(keys::detached_sessions(), conn, value)
            .ignore()
            .to_owned();
        self.guarded(WRITE_TIMEOUT, p.exec_async(&mut c)).await;
    }

    async fn remove(&self, conn: &str) {
        let Some(mut c) = self.conn() else { return };
        // Only while this node holds it: a node that claimed it since keeps it.
        let script = redis::Script::new(REMOVE);
        let mut call = script.key(keys::session(conn));
        call.key(keys::session_frames(conn))
            .arg(&self.settings.node_id);
        let r = call.invoke_async::<i64>(&mut c);
        if self.guarded(WRITE_TIMEOUT, r).await.is_some_and(|n| n > 0) {
            self.unindex(&mut c, conn).await;
        }
    }
}

/// What became of a message for a session no live node serves.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Appended to the session's frames: the node that resumes it sends it.
    Appended,
    /// No such session (never reliable, over, or expired).
    Gone,
    /// Past the session's caps: the session was deleted.
    Dropped,
    /// A live node holds the session: send it there.
    Held(String),
}

impl RedisBroker {
    /// Records that this node holds a session (so its death detaches it).
    async fn hold(&self, c: &mut super::Conn, conn: &str, hub: &str, user: Option<&str>) {
        let value = format!("{}\n{hub}\n{}", self.presence_name(), user.unwrap_or(""));
        let p = redis::pipe()
            .hset(keys::held_sessions(), conn, value)
            .ignore()
            .hdel(keys::detached_sessions(), conn)
            .ignore()
            .to_owned();
        self.guarded(WRITE_TIMEOUT, p.exec_async(c)).await;
    }

    /// Forgets a session in the held and detached sets.
    pub(crate) async fn unindex(&self, c: &mut super::Conn, conn: &str) {
        let p = redis::pipe()
            .hdel(keys::held_sessions(), conn)
            .ignore()
            .hdel(keys::detached_sessions(), conn)
            .ignore()
            .to_owned();
        self.guarded(WRITE_TIMEOUT, p.exec_async(c)).await;
    }

    /// Appends a message for each session `(conn, dead)` no live node serves: its record
    /// names no node, or names incarnation `dead` (which presence or pub/sub found gone). One
    /// script per session, in its slot, so a node claiming the session meanwhile either finds
    /// the message in the frames it loads or gets it live; the scripts go in one pipeline.
    pub(crate) async fn store_detached(
        &self,
        c: &mut super::Conn,
        sessions: &[(&str, &str)],
        frame: &str,
    ) -> redis::RedisResult<Vec<Kept>> {
        let (messages, bytes) = (self.settings.outbox_messages, self.settings.outbox_bytes);
        let ttl = self.settings.session_ttl.as_secs().max(1);
        let mut p = redis::pipe();
        for (conn, dead) in sessions {
            p.cmd("EVAL")
                .arg(STORE_DETACHED)
                .arg(2)
                .arg(keys::session(conn))
                .arg(keys::session_frames(conn))
                .arg(*dead)
                .arg(frame)
                .arg(messages)
                .arg(bytes)
                .arg(ttl);
        }
        let answers: Vec<String> = p.query_async(c).await?;
        Ok(answers
            .iter()
            .map(|a| {
                let kept = match a.as_str() {
                    "stored" => Kept::Appended,
                    "dropped" => Kept::Dropped,
                    "gone" => Kept::Gone,
                    held => Kept::Held(held.strip_prefix("held ").unwrap_or_default().to_string()),
                };
                if kept == Kept::Dropped {
                    metrics::global().cluster_drop("detached_session_full");
                }
                kept
            })
            .collect())
    }

    /// Moves the sessions of dead node incarnations into the detached set and returns it.
    pub(crate) async fn sweep(
        &self,
        c: &mut super::Conn,
    ) -> redis::RedisResult<HashMap<String, String>> {
        let script = redis::Script::new(SWEEP);
        let mut call = script.key(keys::nodes());
        call.key(keys::held_sessions())
            .key(keys::detached_sessions())
            .arg(super::worker::now_ms())
            .arg(self.settings.presence_ttl.as_millis() as u64);
        call.invoke_async(c).await
    }

    /// Asks a live owner (node `owner`, incarnation `incarnation`) to let go of a session and
    /// waits (briefly) until it has; answers whether the owner was alive.
    async fn takeover(
        &self,
        hub: &str,
        conn: &str,
        owner: &str,
        incarnation: &str,
        c: &mut super::Conn,
    ) -> bool {
        let seen = self
            .alive
            .read()
            .iter()
            .any(|n| n.split('#').next() == Some(owner));
        // Asked of Redis when the last heartbeat's view lacks it (a node that started since):
        // an owner wrongly thought dead would go on serving the session beside this node.
        if !seen && !super::presence::is_alive(self, c, incarnation).await {
            return false;
        }
        use crate::cluster::Broker;
        self.command(
            hub,
            Command::Takeover {
                conn: conn.to_string(),
            },
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline {
            let node: Option<String> = c.hget(keys::session(conn), "node").await.unwrap_or(None);
            if node.as_deref() != Some(owner) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}
