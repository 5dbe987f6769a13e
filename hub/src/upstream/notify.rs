//! Non-blocking notifications (connected, disconnected, group joined/left): queued without
//! waiting, sent by a few background tasks with retries and exponential backoff.
//!
//! The queue is split into one bounded shard per task, chosen by connection id, so the events
//! of one connection are sent in order (connected before disconnected) even across retries.
//! A full shard drops the new event and logs it: a slow upstream never blocks a session.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use nerve_protocol::Metadata;
use tracing::warn;

use super::{EventContext, EventKind, Upstream, UpstreamError};

/// A notification for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The connection is established (body `{}`).
    Connected,
    /// The connection ended (body `{"reason":…}`).
    Disconnected {
        /// Why, as the client was told.
        reason: String,
    },
    /// The connection joined a group (body `{"group":…}`).
    Joined {
        /// The group.
        group: String,
    },
    /// The connection left a group (body `{"group":…}`).
    Left {
        /// The group.
        group: String,
    },
}

impl Notice {
    /// The event this notice is.
    pub fn kind(&self) -> EventKind<'static> {
        match self {
            Notice::Connected => EventKind::Connected,
            Notice::Disconnected { .. } => EventKind::Disconnected,
            Notice::Joined { .. } => EventKind::Joined,
            Notice::Left { .. } => EventKind::Left,
        }
    }

    fn body(&self) -> Vec<u8> {
        let v = match self {
            Notice::Connected => serde_json::json!({}),
            Notice::Disconnected { reason } => serde_json::json!({ "reason": reason }),
            Notice::Joined { group } | Notice::Left { group } => {
                serde_json::json!({ "group": group })
            }
        };
        v.to_string().into_bytes()
    }
}

struct Item {
    ctx: EventContext,
    notice: Notice,
    state: Option<String>,
}

/// The sending ends of the queue shards.
pub(super) struct Queues {
    shards: Vec<flume::Sender<Item>>,
}

/// Queues a notice; drops it (with a warning) when its shard is full.
pub(super) fn enqueue(
    up: &Arc<Upstream>,
    ctx: EventContext,
    notice: Notice,
    state: Option<String>,
) {
    let queues = up.notifier.get_or_init(|| start(up));
    if queues.shards.is_empty() {
        return;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ctx.connection_id.hash(&mut h);
    let shard = (h.finish() % queues.shards.len() as u64) as usize;
    let item = Item { ctx, notice, state };
    if let Err(e) = queues.shards[shard].try_send(item) {
        let item = e.into_inner();
        warn!(
            hub = %item.ctx.hub,
            connection = %item.ctx.connection_id,
            event = item.notice.kind().name(),
            "upstream notification queue full; event dropped"
        );
    }
}

fn start(up: &Arc<Upstream>) -> Queues {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Queues { shards: Vec::new() };
    };
    let s = up.settings();
    let per_shard = (s.queue_capacity / s.workers).max(1);
    let shards = (0..s.workers)
        .map(|_| {
            let (tx, rx) = flume::bounded(per_shard);
            rt.spawn(worker(Arc::downgrade(up), rx));
            tx
        })
        .collect();
    Queues { shards }
}

async fn worker(up: Weak<Upstream>, rx: flume::Receiver<Item>) {
    while let Ok(item) = rx.recv_async().await {
        let Some(up) = up.upgrade() else { return };
        deliver(&up, item).await;
    }
}

async fn deliver(up: &Upstream, item: Item) {
    let s = up.settings();
    let mut delay = Duration::from_millis(s.retry_backoff_ms);
    let body = bytes::Bytes::from(item.notice.body());
    let kind = item.notice.kind();
    for attempt in 0..=s.retries {
        let r = up
            .post(
                &item.ctx,
                kind,
                "application/json",
                body.clone(),
                item.state.clone(),
                &Metadata::default(),
            )
            .await;
        let retry = match &r {
            Ok(_) | Err(UpstreamError::NoHandler(_)) => return,
            Err(UpstreamError::Status { status, .. }) => *status >= 500 || *status == 429,
            Err(_) => true,
        };
        if let Err(e) = r
            && (!retry || attempt == s.retries)
        {
            warn!(
                hub = %item.ctx.hub,
                connection = %item.ctx.connection_id,
                event = kind.name(),
                attempts = attempt + 1,
                error = %e,
                "upstream notification failed"
            );
            return;
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
}
