//! One handle over a single Redis or a Redis Cluster: commands, and subscriptions whose
//! messages arrive as RESP3 pushes. On a single Redis the plain `SUBSCRIBE`/`PUBLISH` are used;
//! on a cluster the sharded `SSUBSCRIBE`/`SPUBLISH`, re-subscribed by the client after a
//! reconnect or a slot move.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, RedisResult, Value};

/// Most pushes waiting to be handled; past it pushes are dropped (and counted), never queued
/// without bound.
pub const PUSH_QUEUE: usize = 16 * 1024;

/// Hands RESP3 pushes to the node's receiver without waiting. A message dropped here is
/// counted here if it came on a group channel; on a node or broadcast channel it is counted
/// (as `missed`) when the next one from its node shows the gap.
#[derive(Clone)]
pub struct PushSink(pub tokio::sync::mpsc::Sender<PushInfo>);

impl redis::aio::AsyncPushSender for PushSink {
    fn send(&self, info: PushInfo) -> Result<(), redis::aio::SendError> {
        if let Err(e) = self.0.try_send(info) {
            let on_group = match e.into_inner().data.first() {
                Some(Value::BulkString(ch)) => super::keys::is_group_channel(ch),
                _ => false,
            };
            if on_group {
                crate::metrics::global().cluster_drop("push_queue_full");
            }
        }
        Ok(())
    }
}

/// A connection to a single Redis or to a cluster.
#[derive(Clone)]
pub enum Conn {
    /// A single Redis.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(Box<ClusterConnection>),
}

/// How long one Redis request may take before it counts as a failure.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

impl Conn {
    /// Connects; `urls` with more than one entry (or `cluster`) means a Redis Cluster.
    pub async fn connect(urls: &[String], cluster: bool, sink: PushSink) -> RedisResult<Conn> {
        let urls: Vec<String> = urls.iter().map(|u| with_resp3(u)).collect();
        if cluster || urls.len() > 1 {
            let client = ClusterClientBuilder::new(urls)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(sink)
                .connection_timeout(Duration::from_secs(1))
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(2)
                .build()?;
            let conn = client.get_async_connection().await?;
            return Ok(Conn::Cluster(Box::new(conn)));
        }
        let client = redis::Client::open(urls[0].as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_push_sender(sink)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = client.get_connection_manager_with_config(config).await?;
        Ok(Conn::Single(conn))
    }

    /// Whether channels are sharded (cluster).
    pub fn sharded(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Subscribes to a channel.
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.subscribe(channel).await,
            Conn::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    /// Unsubscribes from a channel.
    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.unsubscribe(channel).await,
            Conn::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }

    /// The publish command for this deployment.
    pub fn publish_command(&self) -> &'static str {
        if self.sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}protocol=resp3")
}

/// Channel and message of a pub/sub push, if it is one.
pub fn message_of(push: PushInfo) -> Option<(Vec<u8>, Vec<u8>)> {
    use redis::PushKind;
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return None;
    }
    let mut it = push.data.into_iter();
    let channel = bytes_of(it.next()?)?;
    let message = bytes_of(it.next()?)?;
    Some((channel, message))
}

/// The shard channel of an `sunsubscribe` push. Redis sends one unasked when the channel's
/// slot moves to another master (a reshard or a failover), besides confirming our own
/// `SUNSUBSCRIBE`.
pub fn shard_unsubscribed(push: &PushInfo) -> Option<String> {
    if push.kind != redis::PushKind::SUnsubscribe {
        return None;
    }
    match push.data.first()? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_ask_for_resp3_once() {
        assert_eq!(with_resp3("redis://h:1/"), "redis://h:1/?protocol=resp3");
        assert_eq!(
            with_resp3("redis://h:1/?db=2"),
            "redis://h:1/?db=2&protocol=resp3"
        );
        assert_eq!(with_resp3("redis://h/?protocol=3"), "redis://h/?protocol=3");
    }

    #[test]
    fn only_pubsub_messages_are_taken_from_pushes() {
        let push = |kind, data| PushInfo { kind, data };
        let msg = push(
            redis::PushKind::SMessage,
            vec![
                Value::BulkString(b"ch".to_vec()),
                Value::BulkString(b"body".to_vec()),
            ],
        );
        assert_eq!(message_of(msg), Some((b"ch".to_vec(), b"body".to_vec())));
        let sub = push(redis::PushKind::Subscribe, vec![Value::Int(1)]);
        assert_eq!(message_of(sub), None);
        let short = push(
            redis::PushKind::Message,
            vec![Value::BulkString(b"ch".to_vec())],
        );
        assert_eq!(message_of(short), None);
    }

    #[test]
    fn shard_unsubscribes_name_their_channel() {
        let push = |kind, data| PushInfo { kind, data };
        let dropped = push(
            redis::PushKind::SUnsubscribe,
            vec![
                Value::BulkString(b"nerve:{g:chat:a}:ch".to_vec()),
                Value::Int(0),
            ],
        );
        assert_eq!(
            shard_unsubscribed(&dropped).as_deref(),
            Some("nerve:{g:chat:a}:ch")
        );
        let plain = push(
            redis::PushKind::Unsubscribe,
            vec![Value::BulkString(b"ch".to_vec()), Value::Int(0)],
        );
        assert_eq!(shard_unsubscribed(&plain), None);
    }
}
