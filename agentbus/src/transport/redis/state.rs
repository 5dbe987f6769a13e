//! Shared state on Redis: task records (compare-and-set on a version), shared contexts, request
//! replies, correlation logs, the live event feed and the agent registry.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::queue::{enqueue_outcome, push_ack};
use super::{Conn, RedisTransport, map_err, part_key, scripts};
use crate::a2a::AgentCard;
use crate::clock;
use crate::envelope::Envelope;
use crate::task::TaskRecord;
use crate::transport::{
    Delivery, EnqueueOutcome, Partition, SharedContext, TransportError, TransportResult,
};

const TASKS: &str = "bus:tasks";
const AGENTS: &str = "bus:agents";
const EVENTS: &str = "bus:events";
/// Live-feed entry field naming the transport instance that recorded it.
const ORIGIN_FIELD: &str = "o";

fn corrupt(e: impl std::fmt::Display) -> TransportError {
    TransportError::Corrupt(e.to_string())
}

#[derive(Serialize, Deserialize)]
struct Registration {
    card: AgentCard,
    expires_ms: u64,
}

impl RedisTransport {
    fn retention_ms(&self) -> u64 {
        self.config().retention.as_millis() as u64
    }

    pub(super) async fn s_task_load(&self, id: &str) -> TransportResult<Option<TaskRecord>> {
        let json: Option<String> = self
            .conn()
            .hget(format!("bus:{{task:{id}}}"), "rec")
            .await
            .map_err(map_err)?;
        json.map(|j| serde_json::from_str(&j).map_err(corrupt))
            .transpose()
    }

    pub(super) async fn s_task_store(
        &self,
        record: &TaskRecord,
        expected: u64,
    ) -> TransportResult<bool> {
        let json = serde_json::to_string(record).map_err(corrupt)?;
        if expected == 0 && !self.is_cluster() {
            // A new task and its index entry in one round trip. `NX` keeps an existing task's
            // index entry as it was when the store is refused.
            let (stored, _): (i64, i64) = self
                .task_create_pipe(record, &json)
                .query_async(&mut self.conn())
                .await
                .map_err(map_err)?;
            return Ok(stored == 1);
        }
        let stored: i64 = scripts::TASK_CAS
            .key(format!("bus:{{task:{}}}", record.task.id))
            .arg(expected)
            .arg(record.version)
            .arg(json)
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        if stored == 1 && expected == 0 {
            let _: i64 = self
                .conn()
                .zadd(TASKS, &record.task.id, record.created_ms)
                .await
                .map_err(map_err)?;
        }
        Ok(stored == 1)
    }

    /// Creates a task record (version check 0) and adds it to the index (`ZADD NX`).
    fn task_create_pipe(&self, record: &TaskRecord, json: &str) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(scripts::TASK_CAS_LUA)
            .arg(1)
            .arg(format!("bus:{{task:{}}}", record.task.id))
            .arg(0)
            .arg(record.version)
            .arg(json)
            .arg(self.retention_ms())
            .cmd("ZADD")
            .arg(TASKS)
            .arg("NX")
            .arg(record.created_ms)
            .arg(&record.task.id);
        pipe
    }

    /// Appends `json` (an event) to its correlation log and the live feed.
    fn push_record(&self, pipe: &mut redis::Pipeline, env: &Envelope, json: &str) {
        let key = format!("bus:{{corr:{}}}", env.correlation_id());
        pipe.rpush(&key, json)
            .ignore()
            .pexpire(&key, self.retention_ms() as i64)
            .ignore();
        self.push_feed(pipe, json);
    }

    fn push_feed(&self, pipe: &mut redis::Pipeline, json: &str) {
        pipe.cmd("XADD")
            .arg(EVENTS)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config().live_feed_len)
            .arg("*")
            .arg("env")
            .arg(json)
            .arg(ORIGIN_FIELD)
            .arg(&self.inner.origin)
            .ignore();
    }

    /// Hands a recorded event to this process's live receivers (the feed reader skips it).
    fn publish_local(&self, env: &Envelope) {
        if self.inner.live.receiver_count() > 0 {
            let _ = self.inner.live.send(Arc::new(env.clone()));
        }
    }

    /// A new task in two round trips on one Redis: the record and its index entry, then (in
    /// order, in one pipeline) the submission event if the record is new and the message.
    pub(super) async fn s_submit_task(
        &self,
        record: &TaskRecord,
        env: &Envelope,
        p: &Partition,
        deliver_at_ms: Option<u64>,
    ) -> TransportResult<(bool, EnqueueOutcome)> {
        let rec_json = serde_json::to_string(record).map_err(corrupt)?;
        let (stored, _): (i64, i64) = self
            .task_create_pipe(record, &rec_json)
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        let created = stored == 1;
        let json = env.to_json();
        let mut pipe = redis::pipe();
        if created {
            self.push_record(&mut pipe, env, &json);
        }
        pipe.cmd("EVAL")
            .arg(scripts::ENQUEUE_LUA)
            .arg(4)
            .arg(part_key(p, "s"))
            .arg(part_key(p, "d"))
            .arg(part_key(p, "dp"))
            .arg(part_key(p, &format!("dup:{}", env.id)))
            .arg(&json)
            .arg(&env.id)
            .arg(deliver_at_ms.map(|t| t.to_string()).unwrap_or_default())
            .arg(self.config().dedupe_window.as_millis() as u64)
            .arg(clock::now_ms());
        let (outcome,): (String,) = pipe.query_async(&mut self.conn()).await.map_err(map_err)?;
        if created {
            self.publish_local(env);
        }
        Ok((created, enqueue_outcome(&outcome)))
    }

    pub(super) async fn s_task_ids(&self, limit: usize) -> TransportResult<Vec<String>> {
        let stop = limit.max(1) as isize - 1;
        self.conn().zrevrange(TASKS, 0, stop).await.map_err(map_err)
    }

    pub(super) async fn s_context_publish(&self, id: &str, value: &Value) -> TransportResult<u64> {
        scripts::CONTEXT_PUBLISH
            .key(format!("bus:{{ctx:{id}}}"))
            .arg(value.to_string())
            .arg(clock::now_ms())
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)
    }

    pub(super) async fn s_context_load(&self, id: &str) -> TransportResult<Option<SharedContext>> {
        let (v, value, at): (Option<u64>, Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(format!("bus:{{ctx:{id}}}"))
            .arg("v")
            .arg("value")
            .arg("at")
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        match (v, value) {
            (Some(version), Some(json)) => Ok(Some(SharedContext {
                context_id: id.to_string(),
                version,
                value: serde_json::from_str(&json).map_err(corrupt)?,
                updated_ms: at.unwrap_or(0),
            })),
            _ => Ok(None),
        }
    }

    pub(super) async fn s_reply_put(
        &self,
        inbox: &str,
        reply: &Envelope,
        ttl: Duration,
    ) -> TransportResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("bus:{{inbox:{inbox}}}"))
            .arg(reply.to_json())
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(set.is_some())
    }

    pub(super) async fn s_reply_load(&self, inbox: &str) -> TransportResult<Option<Envelope>> {
        let json: Option<String> = self
            .conn()
            .get(format!("bus:{{inbox:{inbox}}}"))
            .await
            .map_err(map_err)?;
        json.map(|j| Envelope::from_json(&j).map_err(corrupt))
            .transpose()
    }

    pub(super) async fn s_record(&self, env: &Envelope) -> TransportResult<()> {
        let key = format!("bus:{{corr:{}}}", env.correlation_id());
        let json = env.to_json();
        // Two slots, so not one script: the log is the record, the feed is a best-effort
        // notification that readers back up by re-reading state. A cluster pipeline must stay in
        // one slot, so there the feed gets its own round trip.
        let mut pipe = redis::pipe();
        if self.is_cluster() {
            pipe.rpush(&key, &json)
                .ignore()
                .pexpire(&key, self.retention_ms() as i64)
                .ignore();
            let _: () = pipe.query_async(&mut self.conn()).await.map_err(map_err)?;
            pipe = redis::pipe();
            self.push_feed(&mut pipe, &json);
        } else {
            self.push_record(&mut pipe, env, &json);
        }
        let _: () = pipe.query_async(&mut self.conn()).await.map_err(map_err)?;
        self.publish_local(env);
        Ok(())
    }

    /// Records an event and settles a delivery in one transaction (one Redis only): if any of
    /// it is refused (say, out of memory), none of it runs and the delivery stays held.
    pub(super) async fn s_record_and_ack(
        &self,
        env: &Envelope,
        d: &Delivery,
    ) -> TransportResult<()> {
        let json = env.to_json();
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.push_record(&mut pipe, env, &json);
        push_ack(&mut pipe, d);
        let _: () = pipe.query_async(&mut self.conn()).await.map_err(map_err)?;
        self.publish_local(env);
        Ok(())
    }

    pub(super) async fn s_correlation(&self, id: &str) -> TransportResult<Vec<Envelope>> {
        let items: Vec<String> = self
            .conn()
            .lrange(format!("bus:{{corr:{id}}}"), 0, -1)
            .await
            .map_err(map_err)?;
        items
            .iter()
            .map(|j| Envelope::from_json(j).map_err(corrupt))
            .collect()
    }

    pub(super) async fn s_agent_put(&self, card: &AgentCard, ttl: Duration) -> TransportResult<()> {
        let reg = Registration {
            card: card.clone(),
            expires_ms: clock::now_ms() + ttl.as_millis() as u64,
        };
        let json = serde_json::to_string(&reg).map_err(corrupt)?;
        let _: i64 = self
            .conn()
            .hset(AGENTS, &card.id, json)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn s_agent_remove(&self, id: &str) -> TransportResult<()> {
        let _: i64 = self.conn().hdel(AGENTS, id).await.map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn s_agents(&self) -> TransportResult<Vec<AgentCard>> {
        let all: Vec<(String, String)> = self.conn().hgetall(AGENTS).await.map_err(map_err)?;
        let now = clock::now_ms();
        let mut cards = Vec::new();
        for (id, json) in all {
            match serde_json::from_str::<Registration>(&json) {
                Ok(reg) if reg.expires_ms > now => cards.push(reg.card),
                _ => {
                    let _: i64 = self.conn().hdel(AGENTS, &id).await.map_err(map_err)?;
                }
            }
        }
        cards.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(cards)
    }

    pub(super) async fn s_push_config_put(
        &self,
        task_id: &str,
        config_id: &str,
        document: &str,
        max: usize,
    ) -> TransportResult<bool> {
        let stored: i64 = scripts::PUSH_CONFIG_PUT
            .key(push_key(task_id))
            .arg(config_id)
            .arg(document)
            .arg(max)
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(stored == 1)
    }

    pub(super) async fn s_push_configs(
        &self,
        task_id: &str,
    ) -> TransportResult<Vec<(String, String)>> {
        let mut all: Vec<(String, String)> = self
            .conn()
            .hgetall(push_key(task_id))
            .await
            .map_err(map_err)?;
        all.sort();
        Ok(all)
    }

    pub(super) async fn s_push_config_delete(
        &self,
        task_id: &str,
        config_id: &str,
    ) -> TransportResult<bool> {
        let n: i64 = self
            .conn()
            .hdel(push_key(task_id), config_id)
            .await
            .map_err(map_err)?;
        Ok(n > 0)
    }
}

type FeedReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

/// Tails `bus:events` and fans entries out to local receivers until `shutdown`.
pub(super) async fn pump_live(
    mut conn: Conn,
    tx: broadcast::Sender<Arc<Envelope>>,
    origin: String,
    shutdown: CancellationToken,
) {
    let mut last: Option<String> = None;
    while !shutdown.is_cancelled() {
        if last.is_none() {
            let newest: redis::RedisResult<Vec<(String, Vec<String>)>> = redis::cmd("XREVRANGE")
                .arg(EVENTS)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await;
            match newest {
                Ok(v) => last = Some(v.first().map_or("0-0".to_string(), |(id, _)| id.clone())),
                Err(_) => {
                    backoff(&shutdown).await;
                    continue;
                }
            }
        }
        let from = last.clone().unwrap_or_else(|| "0-0".to_string());
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(500)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(EVENTS)
            .arg(&from);
        let read = cmd.query_async::<FeedReply>(&mut conn);
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = read => r,
        };
        match res {
            Ok(reply) => {
                for (_, entries) in reply.unwrap_or_default() {
                    for (id, fields) in entries {
                        // Our own events reached local receivers when they were recorded.
                        let own = fields.get(2).is_some_and(|k| k == ORIGIN_FIELD)
                            && fields.get(3) == Some(&origin);
                        let json = fields.get(1).map(String::as_str).unwrap_or_default();
                        if !own && let Ok(env) = Envelope::from_json(json) {
                            let _ = tx.send(Arc::new(env));
                        }
                        last = Some(id);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "live event feed read failed; retrying");
                backoff(&shutdown).await;
            }
        }
    }
}

async fn backoff(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
}

/// A task's push-notification settings: beside its record, in its slot.
fn push_key(task_id: &str) -> String {
    format!("bus:{{task:{task_id}}}:push")
}
