//! Presence: the writes announcing this node's connections and group members, and the
//! cluster-wide answers from them: whether a connection or user is online on a live node, and
//! who is in a group. Entries of dead node incarnations are ignored (and removed).

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;

use super::{RedisBroker, keys};
use crate::cluster::Member;
use crate::registry::Connection;

/// Longest a presence question waits for Redis (a REST call waits on it).
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// Deletes a hash field whose value starts with ARGV[2] (this node's name).
const FORGET: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
";

impl RedisBroker {
    /// Presence writes announcing a connection.
    pub(crate) fn connection_presence(&self, conn: &Connection) -> Vec<redis::Cmd> {
        let me = self.presence_name();
        let roles = serde_json::to_string(&conn.roles.lock().to_claims()).unwrap_or_default();
        let value = format!("{me}\n{}\n{roles}", conn.user_id.as_deref().unwrap_or(""));
        let mut cmds = vec![
            redis::cmd("HSET")
                .arg(keys::connections(&conn.hub))
                .arg(&*conn.id)
                .arg(&value)
                .to_owned(),
        ];
        if let Some(u) = &conn.user_id {
            cmds.push(
                redis::cmd("HSET")
                    .arg(keys::user(&conn.hub, u))
                    .arg(&*conn.id)
                    .arg(&me)
                    .to_owned(),
            );
        }
        cmds
    }

    /// Removes a presence entry only if this node wrote it: a session resumed elsewhere
    /// keeps the entry its new node wrote.
    pub(crate) fn forget(&self, key: String, conn_id: &str) -> redis::Cmd {
        redis::cmd("EVAL")
            .arg(FORGET)
            .arg(1)
            .arg(key)
            .arg(conn_id)
            .arg(format!("{}#", self.settings.node_id))
            .to_owned()
    }

    /// The presence write announcing a group member.
    pub(crate) fn member_presence(&self, hub: &str, conn: &Connection, group: &str) -> redis::Cmd {
        let value = format!(
            "{}\n{}",
            self.presence_name(),
            conn.user_id.as_deref().unwrap_or("")
        );
        redis::cmd("HSET")
            .arg(keys::members(hub, group))
            .arg(&*conn.id)
            .arg(value)
            .to_owned()
    }
}

impl RedisBroker {
    /// The presence write announcing that a group has a member on this node.
    pub(crate) fn group_presence(&self, hub: &str, group: &str) -> redis::Cmd {
        let me = self.presence_name();
        redis::cmd("HSET")
            .arg(keys::groups(hub))
            .arg(format!("{group}\n{me}"))
            .arg(me)
            .to_owned()
    }

    /// The presence write saying a group has no member left on this node.
    pub(crate) fn group_absence(&self, hub: &str, group: &str) -> redis::Cmd {
        redis::cmd("HDEL")
            .arg(keys::groups(hub))
            .arg(format!("{group}\n{}", self.presence_name()))
            .to_owned()
    }
}

/// A presence entry (`node\nuser`) as a member.
fn member(connection_id: String, entry: &str) -> Member {
    let user = entry.split('\n').nth(1).unwrap_or_default();
    Member {
        connection_id,
        user_id: (!user.is_empty()).then(|| user.to_string()),
    }
}

/// Every connection of a hub on live nodes.
pub(crate) async fn connections(broker: &RedisBroker, hub: &str) -> Vec<Member> {
    live_entries(broker, &keys::connections(hub))
        .await
        .map(|(id, v)| member(id, &v))
        .collect()
}

/// Every group of a hub with a member on a live node.
pub(crate) async fn groups(broker: &RedisBroker, hub: &str) -> Vec<String> {
    let mut names: Vec<String> = live_entries(broker, &keys::groups(hub))
        .await
        .filter_map(|(field, _)| Some(field.rsplit_once('\n')?.0.to_string()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The live node incarnation of a presence value `node#epoch\nuser`.
fn node_of(value: &str) -> &str {
    value.split('\n').next().unwrap_or_default()
}

/// Whether a node incarnation is alive: the cached view from the last heartbeat, checked
/// against Redis for a node not in it (it may have started since).
pub(crate) async fn is_alive(broker: &RedisBroker, conn: &mut super::Conn, node: &str) -> bool {
    if broker.alive.read().contains(node) {
        return true;
    }
    let score = conn.zscore::<_, _, Option<u64>>(keys::nodes(), node);
    let score = broker.guarded(LOOKUP_TIMEOUT, score).await.flatten();
    let ttl = broker.settings.presence_ttl.as_millis() as u64;
    let alive = score.is_some_and(|s| s + ttl > super::worker::now_ms());
    if alive {
        broker.alive.write().insert(node.to_string());
    }
    alive
}

/// A connection's presence entry (`node#epoch\nuser\nroles`), if its node is alive.
pub(crate) async fn connection_entry(broker: &RedisBroker, hub: &str, id: &str) -> Option<String> {
    let mut conn = broker.conn()?;
    let entry = conn.hget::<_, _, Option<String>>(keys::connections(hub), id);
    let v = broker.guarded(LOOKUP_TIMEOUT, entry).await??;
    let node = node_of(&v).to_string();
    is_alive(broker, &mut conn, &node).await.then_some(v)
}

/// Whether a user has a connection on a live node.
pub(crate) async fn user_alive(broker: &RedisBroker, hub: &str, user: &str) -> bool {
    let key = keys::user(hub, user);
    live_entries(broker, &key).await.next().is_some()
}

/// Members of a group on live nodes.
pub(crate) async fn members(broker: &RedisBroker, hub: &str, group: &str) -> Vec<Member> {
    let key = keys::members(hub, group);
    live_entries(broker, &key)
        .await
        .map(|(id, v)| member(id, &v))
        .collect()
}

/// Entries of a presence hash whose node is alive; dead ones are removed on the way.
async fn live_entries(
    broker: &RedisBroker,
    key: &str,
) -> impl Iterator<Item = (String, String)> + use<> {
    let Some(mut conn) = broker.conn() else {
        return Vec::new().into_iter();
    };
    let all = conn.hgetall::<_, HashMap<String, String>>(key);
    let Some(all) = broker.guarded(LOOKUP_TIMEOUT, all).await else {
        return Vec::new().into_iter();
    };
    let mut verdict: HashMap<String, bool> = HashMap::new();
    let (mut live, mut dead) = (Vec::new(), Vec::new());
    for (id, v) in all {
        let node = node_of(&v).to_string();
        let alive = match verdict.get(&node) {
            Some(a) => *a,
            None => {
                let a = is_alive(broker, &mut conn, &node).await;
                verdict.insert(node, a);
                a
            }
        };
        if alive {
            live.push((id, v));
        } else {
            dead.push((id, v));
        }
    }
    if !dead.is_empty() {
        let ids: Vec<&String> = dead.iter().map(|(id, _)| id).collect();
        let _: Result<(), _> = conn.hdel(key, ids).await;
    }
    live.into_iter()
}
