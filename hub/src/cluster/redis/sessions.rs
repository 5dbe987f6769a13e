//! Reliable sessions kept in Redis, so a client whose node died (or drained) resumes on any
//! node: the record (identity, roles, reconnection token hash, owning node, groups and how far
//! each group's history was delivered) and the unacknowledged frames, written before they
//! reach the socket. Everything expires `session_ttl` after the last write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::worker::parse_id;
use super::{RedisBroker, keys};
use crate::cluster::envelope::{Body, Envelope};
use crate::cluster::{Command, Resumable, Scope, SessionRecord, SessionStore, Target, token_hash};
use crate::metrics;
use crate::router::{Delivery, Position};

/// Clears the owning node if it is still ARGV[1].
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
  return redis.call('HSET', KEYS[1], 'node', '')
end
return 0
";

/// Deletes a session (record and frames) if ARGV[1] holds it.
const REMOVE: &str = r"
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
";

/// Longest a session write may hold up its connection's writes.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Most history entries replayed per group on resumption.
const REPLAY_MAX: usize = 1000;

fn failed<T>(r: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>) -> Option<T> {
    match r {
        Ok(Ok(v)) => Some(v),
        _ => {
            metrics::global().redis_errors.inc();
            None
        }
    }
}

fn id_string((ms, seq): (u64, u64)) -> String {
    format!("{ms}-{seq}")
}

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
                ],
            )
            .ignore()
            .expire(&key, ttl as i64)
            .ignore()
            .to_owned();
        failed(tokio::time::timeout(WRITE_TIMEOUT, p.exec_async(&mut c)).await);
    }

    async fn append(
        &self,
        conn: &str,
        frames: &[(u64, String)],
        positions: &[(Arc<str>, (u64, u64))],
    ) {
        let Some(mut c) = self.conn() else { return };
        let ttl = self.settings.session_ttl.as_secs() as i64;
        let buf = keys::session_frames(conn);
        let meta = keys::session(conn);
        let mut p = redis::pipe();
        if !frames.is_empty() {
            let items: Vec<String> = frames.iter().map(|(s, f)| format!("{s}\n{f}")).collect();
            p.rpush(&buf, items).ignore().expire(&buf, ttl).ignore();
        }
        if let Some((last, _)) = frames.last() {
            p.hset(&meta, "seq", *last).ignore();
        }
        for (g, id) in positions {
            p.hset(&meta, format!("g:{g}"), id_string(*id)).ignore();
        }
        p.expire(&meta, ttl).ignore();
        failed(tokio::time::timeout(WRITE_TIMEOUT, p.exec_async(&mut c)).await);
    }

    async fn trim(&self, conn: &str, count: usize) {
        let Some(mut c) = self.conn() else { return };
        let r = c.ltrim::<_, ()>(keys::session_frames(conn), count as isize, -1);
        failed(tokio::time::timeout(WRITE_TIMEOUT, r).await);
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
        let id = match failed(tokio::time::timeout(WRITE_TIMEOUT, last).await) {
            Some(r) => r.ids.first().map_or("0-0".to_string(), |e| e.id.clone()),
            None => return,
        };
        let r = c.hset_nx::<_, _, _, ()>(keys::session(conn), format!("g:{group}"), id);
        failed(tokio::time::timeout(WRITE_TIMEOUT, r).await);
    }

    async fn left(&self, conn: &str, group: &str) {
        let Some(mut c) = self.conn() else { return };
        let r = c.hdel::<_, _, ()>(keys::session(conn), format!("g:{group}"));
        failed(tokio::time::timeout(WRITE_TIMEOUT, r).await);
    }

    async fn claim(&self, hub: &str, conn: &str, token: &str) -> Option<Resumable> {
        let mut c = self.conn()?;
        let meta = keys::session(conn);
        let mut fields: HashMap<String, String> =
            failed(tokio::time::timeout(WRITE_TIMEOUT, c.hgetall(&meta)).await)?;
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
            self.takeover(hub, conn, &record.node, &mut c).await;
        }
        let claimed = c.hset::<_, _, _, ()>(&meta, "node", &self.settings.node_id);
        failed(tokio::time::timeout(WRITE_TIMEOUT, claimed).await)?;
        let raw: Vec<String> = failed(
            tokio::time::timeout(WRITE_TIMEOUT, c.lrange(keys::session_frames(conn), 0, -1)).await,
        )?;
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
        let last_sequence_id = fields.get("seq").and_then(|s| s.parse().ok()).unwrap_or(0);
        Some(Resumable {
            record,
            groups,
            frames,
            last_sequence_id,
        })
    }

    async fn history(
        &self,
        hub: &str,
        group: &str,
        after: (u64, u64),
    ) -> Vec<(Arc<Delivery>, Scope)> {
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
        let Some(reply) = failed(tokio::time::timeout(WRITE_TIMEOUT * 4, r).await) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in reply.ids {
            let Some(id) = parse_id(entry.id.as_bytes()) else {
                continue;
            };
            let Some(redis::Value::BulkString(bytes)) = entry.map.get("m") else {
                continue;
            };
            let Ok(Envelope {
                body: Body::Message(m),
                ..
            }) = Envelope::decode(bytes)
            else {
                continue;
            };
            if m.target != Target::Group(group.to_string()) {
                continue;
            }
            let pos = Position {
                group: Arc::from(group),
                id,
            };
            out.push((Delivery::from_parts(m.frame, m.payload, Some(pos)), m.scope));
        }
        out
    }

    async fn release(&self, conn: &str) {
        let Some(mut c) = self.conn() else { return };
        // Only while this node holds it: a node that claimed it since keeps it.
        let script = redis::Script::new(RELEASE);
        let mut call = script.key(keys::session(conn));
        call.arg(&self.settings.node_id);
        let r = call.invoke_async::<i64>(&mut c);
        failed(tokio::time::timeout(WRITE_TIMEOUT, r).await);
    }

    async fn remove(&self, conn: &str) {
        let Some(mut c) = self.conn() else { return };
        // Only while this node holds it: a node that claimed it since keeps it.
        let script = redis::Script::new(REMOVE);
        let mut call = script.key(keys::session(conn));
        call.key(keys::session_frames(conn))
            .arg(&self.settings.node_id);
        let r = call.invoke_async::<i64>(&mut c);
        failed(tokio::time::timeout(WRITE_TIMEOUT, r).await);
    }
}

impl RedisBroker {
    /// Asks a live owner to let go of a session and waits (briefly) until it has.
    async fn takeover(&self, hub: &str, conn: &str, owner: &str, c: &mut super::Conn) {
        let alive = self
            .alive
            .read()
            .iter()
            .any(|n| n.split('#').next() == Some(owner));
        if !alive {
            return;
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
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
