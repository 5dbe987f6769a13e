//! Queue operations on Redis Streams: enqueue with dedupe and scheduling, consumer-group reads,
//! lease takeover and renewal, settlement (ack, retry, dead-letter), promotion of delayed
//! messages, dead-letter inspection and redrive, partition ownership.

use std::time::Duration;

use redis::AsyncCommands;

use super::{GROUP, RedisTransport, map_err, part_key, scripts};
use crate::clock;
use crate::envelope::Envelope;
use crate::transport::{
    DeadLetter, Delivery, EnqueueOutcome, Partition, TransportError, TransportResult,
};

const CAPABILITIES: &str = "bus:capabilities";
/// Most delayed messages moved into a stream per promotion call.
const PROMOTE_BATCH: usize = 500;

type StreamReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

fn decode_env(json: &str) -> TransportResult<Envelope> {
    Envelope::from_json(json).map_err(|e| TransportError::Corrupt(e.to_string()))
}

fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .chunks(2)
        .find(|kv| kv.first().is_some_and(|k| k == name))
        .and_then(|kv| kv.get(1))
        .map(String::as_str)
}

/// Settles a delivery: two plain commands on one key, cheaper for Redis than a script, and
/// nothing can claim the entry between them once it is acknowledged.
pub(super) fn push_ack(pipe: &mut redis::Pipeline, d: &Delivery) {
    let key = part_key(&d.partition, "s");
    pipe.xack(&key, GROUP, &[&d.entry_id])
        .ignore()
        .xdel(&key, &[&d.entry_id])
        .ignore();
}

pub(super) fn enqueue_outcome(reply: &str) -> EnqueueOutcome {
    match reply {
        "duplicate" => EnqueueOutcome::Duplicate,
        "scheduled" => EnqueueOutcome::Scheduled,
        _ => EnqueueOutcome::Enqueued,
    }
}

impl RedisTransport {
    async fn ensure_group(&self, p: &Partition) -> TransportResult<()> {
        let known = self
            .inner
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(p);
        if known {
            return Ok(());
        }
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(part_key(p, "s"))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match res {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(map_err(e)),
        }
        self.inner
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.clone());
        Ok(())
    }

    fn forget_group(&self, p: &Partition) {
        self.inner
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(p);
    }

    pub(super) async fn q_enqueue(
        &self,
        p: &Partition,
        env: &Envelope,
        deliver_at_ms: Option<u64>,
    ) -> TransportResult<EnqueueOutcome> {
        let outcome: String = scripts::ENQUEUE
            .key(part_key(p, "s"))
            .key(part_key(p, "d"))
            .key(part_key(p, "dp"))
            .key(part_key(p, &format!("dup:{}", env.id)))
            .arg(env.to_json())
            .arg(&env.id)
            .arg(deliver_at_ms.map(|t| t.to_string()).unwrap_or_default())
            .arg(self.config().dedupe_window.as_millis() as u64)
            .arg(clock::now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(enqueue_outcome(&outcome))
    }

    pub(super) async fn q_cancel_scheduled(
        &self,
        p: &Partition,
        id: &str,
    ) -> TransportResult<bool> {
        let n: i64 = scripts::CANCEL_SCHEDULED
            .key(part_key(p, "d"))
            .key(part_key(p, "dp"))
            .arg(id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(n > 0)
    }

    pub(super) async fn q_fetch(
        &self,
        p: &Partition,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> TransportResult<Vec<Delivery>> {
        self.ensure_group(p).await?;
        let mut conn = self.take_blocking().await?;
        let res: redis::RedisResult<StreamReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max.max(1))
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(part_key(p, "s"))
            .arg(">")
            .query_async(&mut conn)
            .await;
        let reply = match res {
            Ok(r) => {
                self.give_back_blocking(conn);
                r
            }
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    self.forget_group(p);
                }
                return Err(map_err(e));
            }
        };
        let mut out = Vec::new();
        for (_, entries) in reply.unwrap_or_default() {
            for (entry_id, fields) in entries {
                let env = decode_env(field(&fields, "env").unwrap_or_default())?;
                out.push(Delivery {
                    partition: p.clone(),
                    entry_id,
                    deliveries: 1 + env.attempt,
                    envelope: env,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn q_claim_stale(
        &self,
        p: &Partition,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> TransportResult<Vec<Delivery>> {
        self.ensure_group(p).await?;
        let claimed: Vec<(String, String, u32)> = scripts::CLAIM_STALE
            .key(part_key(p, "s"))
            .arg(GROUP)
            .arg(min_idle.as_millis() as u64)
            .arg(max.max(1))
            .arg(consumer)
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        claimed
            .into_iter()
            .map(|(entry_id, json, count)| {
                let env = decode_env(&json)?;
                Ok(Delivery {
                    partition: p.clone(),
                    entry_id,
                    deliveries: count + env.attempt,
                    envelope: env,
                })
            })
            .collect()
    }

    pub(super) async fn q_renew(
        &self,
        p: &Partition,
        consumer: &str,
        ids: &[String],
    ) -> TransportResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(part_key(p, "s"))
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn q_ack(&self, d: &Delivery) -> TransportResult<()> {
        let mut pipe = redis::pipe();
        push_ack(&mut pipe, d);
        let _: () = pipe.query_async(&mut self.conn()).await.map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn q_retry_at(&self, d: &Delivery, due_ms: u64) -> TransportResult<()> {
        let mut env = d.envelope.clone();
        env.attempt = env.attempt.saturating_add(1);
        let p = &d.partition;
        let _: i64 = scripts::RETRY
            .key(part_key(p, "s"))
            .key(part_key(p, "d"))
            .key(part_key(p, "dp"))
            .arg(GROUP)
            .arg(&d.entry_id)
            .arg(env.to_json())
            .arg(&env.id)
            .arg(due_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn q_dead_letter(
        &self,
        d: &Delivery,
        reason: &str,
        description: &str,
    ) -> TransportResult<()> {
        let p = &d.partition;
        let _: i64 = scripts::DEAD_LETTER
            .key(part_key(p, "s"))
            .key(part_key(p, "dlq"))
            .arg(GROUP)
            .arg(&d.entry_id)
            .arg(d.envelope.to_json())
            .arg(reason)
            .arg(description)
            .arg(d.deliveries)
            .arg(clock::now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn q_promote_due(&self, p: &Partition, now_ms: u64) -> TransportResult<usize> {
        let n: usize = scripts::PROMOTE
            .key(part_key(p, "s"))
            .key(part_key(p, "d"))
            .key(part_key(p, "dp"))
            .arg(now_ms)
            .arg(PROMOTE_BATCH)
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(n)
    }

    pub(super) async fn q_dead_letters(
        &self,
        p: &Partition,
        max: usize,
    ) -> TransportResult<Vec<DeadLetter>> {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(part_key(p, "dlq"))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(max.max(1))
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        entries
            .into_iter()
            .map(|(entry_id, f)| {
                Ok(DeadLetter {
                    partition: p.clone(),
                    entry_id,
                    envelope: decode_env(field(&f, "env").unwrap_or_default())?,
                    reason: field(&f, "reason").unwrap_or_default().to_string(),
                    description: field(&f, "description").unwrap_or_default().to_string(),
                    deliveries: field(&f, "deliveries")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    dead_lettered_ms: field(&f, "at").and_then(|s| s.parse().ok()).unwrap_or(0),
                })
            })
            .collect()
    }

    pub(super) async fn q_redrive(&self, p: &Partition, entry_id: &str) -> TransportResult<bool> {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(part_key(p, "dlq"))
            .arg(entry_id)
            .arg(entry_id)
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        let Some((_, fields)) = entries.into_iter().next() else {
            return Ok(false);
        };
        let mut env = decode_env(field(&fields, "env").unwrap_or_default())?;
        env.attempt = 0;
        let n: i64 = scripts::REDRIVE
            .key(part_key(p, "s"))
            .key(part_key(p, "dlq"))
            .arg(entry_id)
            .arg(env.to_json())
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(n > 0)
    }

    pub(super) async fn q_declare_capability(&self, cap: &str, parts: u16) -> TransportResult<()> {
        let _: i64 = self
            .conn()
            .hset(CAPABILITIES, cap, parts)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn q_capabilities(&self) -> TransportResult<Vec<(String, u16)>> {
        let mut caps: Vec<(String, u16)> =
            self.conn().hgetall(CAPABILITIES).await.map_err(map_err)?;
        caps.sort();
        Ok(caps)
    }

    pub(super) async fn q_consumer_heartbeat(
        &self,
        cap: &str,
        consumer: &str,
        ttl: Duration,
    ) -> TransportResult<usize> {
        scripts::HEARTBEAT
            .key(format!("bus:{{cap:{cap}}}:consumers"))
            .arg(consumer)
            .arg(clock::now_ms())
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)
    }

    pub(super) async fn q_consumer_leave(&self, cap: &str, consumer: &str) -> TransportResult<()> {
        let _: i64 = self
            .conn()
            .zrem(format!("bus:{{cap:{cap}}}:consumers"), consumer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn q_acquire(
        &self,
        p: &Partition,
        consumer: &str,
        lease: Duration,
    ) -> TransportResult<bool> {
        let n: i64 = scripts::ACQUIRE
            .key(part_key(p, "owner"))
            .arg(consumer)
            .arg(lease.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(n == 1)
    }

    pub(super) async fn q_release(&self, p: &Partition, consumer: &str) -> TransportResult<()> {
        let _: i64 = scripts::RELEASE
            .key(part_key(p, "owner"))
            .arg(consumer)
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
