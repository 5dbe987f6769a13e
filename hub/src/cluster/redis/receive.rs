//! The broker's receiver: turns what other nodes publish into local deliveries and commands,
//! notices at once when the connection to Redis closes, and after an outage catches each
//! group up from its history before the group's next live message, so what other nodes sent
//! while this one was away (or reconnecting) still arrives, once and in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, PushInfo, PushKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::conn::{Conn, message_of, shard_unsubscribed};
use super::numbers::{Heard, number_of};
use super::sessions::REPLAY_MAX;
use super::{RedisBroker, keys};
use crate::cluster::envelope::{Body, Envelope, Message};
use crate::cluster::{Inbound, Scope, Target, deliver_local};
use crate::metrics;
use crate::registry::{Delivery, Position, Published};

/// Longest wait for a group's history when catching up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the worker and the watchdog ask of the receiver.
pub(crate) enum Ask {
    /// Catch a group channel up from its history (it may have missed messages).
    CatchUp(String),
    /// Every node's latest numbers, as a heartbeat read them (`keys::numbers`).
    Numbers(HashMap<String, String>),
}

/// Delivers what other nodes publish, and does what the worker and the watchdog ask before
/// further pushes.
pub(crate) async fn receive(
    broker: Arc<RedisBroker>,
    mut pushes: mpsc::Receiver<PushInfo>,
    mut asks: mpsc::UnboundedReceiver<Ask>,
    shutdown: CancellationToken,
) {
    let mut asked = true;
    let mut heard = Heard::default();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            a = asks.recv(), if asked => match a {
                Some(Ask::CatchUp(channel)) => catch_up(&broker, &channel, None).await,
                Some(Ask::Numbers(numbers)) => {
                    heard.published(Heard::for_me(&broker.settings.node_id, numbers));
                }
                None => asked = false,
            },
            p = pushes.recv() => match p {
                Some(p) => on_push(&broker, &mut heard, p).await,
                None => return,
            },
        }
    }
}

async fn on_push(broker: &Arc<RedisBroker>, heard: &mut Heard, push: PushInfo) {
    if push.kind == PushKind::Disconnection {
        // A Redis Cluster client reconnects each node by itself; a single Redis is gone.
        if matches!(*broker.conn.read(), Some(Conn::Single(_))) {
            metrics::global().redis_errors.inc();
            broker.lost(&"the connection to Redis closed");
        }
        return;
    }
    if let Some(channel) = shard_unsubscribed(&push) {
        broker.subscription_dropped(channel);
        return;
    }
    let Some((channel, message)) = message_of(push) else {
        return;
    };
    let Some(sp) = message.iter().position(|b| *b == b' ') else {
        return;
    };
    let id = parse_id(&message[..sp]);
    let env = match Envelope::decode(&message[sp + 1..]) {
        Ok(e) => e,
        Err(e) => {
            metrics::global().cluster_drop("bad_envelope");
            warn!(error = %e, "unreadable message from another node");
            return;
        }
    };
    let Some(inbound) = broker.inbound() else {
        return;
    };
    let mine = env.origin == broker.settings.node_id;
    if let Some(number) = number_of(&message[..sp])
        && !mine
    {
        heard.note(&env.origin, &String::from_utf8_lossy(&channel), number);
    }
    match env.body {
        Body::Message(m) => {
            if matches!(m.target, Target::Group(_)) {
                let channel = String::from_utf8_lossy(&channel);
                if let Some(id) = id
                    && !live(broker, &channel, id).await
                {
                    return;
                }
                // This node delivered its own group messages when it sent them, except to
                // groups whose history clients read: those reach every node's members from
                // here, in the history's order, with their offsets.
                if m.published
                    .is_some_and(|(origin, _)| origin == broker.origin)
                    && !broker.keeps(&env.hub, &m.target)
                {
                    return;
                }
            } else if mine {
                return;
            }
            let stamp = broker.keeps(&env.hub, &m.target);
            deliver(inbound.as_ref(), &env.hub, m, id, stamp);
        }
        Body::Command(cmd) if !mine => inbound.run(&env.hub, &cmd),
        Body::Command(_) => {}
    }
}

/// Delivers a message from another node into this node's registry.
fn deliver(inbound: &dyn Inbound, hub: &str, m: Message, id: Option<(u64, u64)>, stamp: bool) {
    let Some(hub) = inbound.registry().hub(hub) else {
        return;
    };
    metrics::global().cluster_messages_in.inc();
    let (target, scope, d) = delivery_of(m, id, stamp);
    deliver_local(&hub, &target, &scope, &d);
}

/// A message from another node (or a group's history) as this node delivers it: who it is
/// for, who is left out, and the delivery (with its history position, for a group, and
/// its offset in the frame when `stamp`: the group keeps a history clients read).
pub(crate) fn delivery_of(
    m: Message,
    id: Option<(u64, u64)>,
    stamp: bool,
) -> (Target, Scope, Arc<Delivery>) {
    let group = match &m.target {
        Target::Group(g) => Some(Arc::<str>::from(g.as_str())),
        _ => None,
    };
    let position = group
        .clone()
        .zip(id)
        .map(|(group, id)| Position { group, id });
    let published = group
        .zip(m.published)
        .map(|(group, (origin, seq))| Published { group, origin, seq });
    let frame = match (&position, stamp) {
        (Some(p), true) => nerve_protocol::codec::json::with_offset(&m.frame, p.id.into()),
        _ => m.frame,
    };
    let d = Delivery::from_parts(frame, m.payload, position, published, m.expires_at);
    (m.target, m.scope, d)
}

/// A group message of a history stream: its entry id and the message, if it is one for
/// `group`.
pub(crate) fn history_entry(entry: &StreamId, group: &str) -> Option<((u64, u64), Message)> {
    let id = parse_id(entry.id.as_bytes())?;
    let Some(redis::Value::BulkString(bytes)) = entry.map.get("m") else {
        return None;
    };
    let Ok(Envelope {
        body: Body::Message(m),
        ..
    }) = Envelope::decode(bytes)
    else {
        return None;
    };
    (m.target == Target::Group(group.to_string())).then_some((id, m))
}

/// A live group message arrived: catch the group up first if it is behind. Answers whether
/// to deliver the message (not if a catch-up brought it already).
async fn live(broker: &Arc<RedisBroker>, channel: &str, id: (u64, u64)) -> bool {
    let behind = broker
        .interest
        .lock()
        .get(channel)
        .is_some_and(|i| i.behind);
    if behind {
        catch_up(broker, channel, Some(id)).await;
    }
    let mut interest = broker.interest.lock();
    let Some(e) = interest.get_mut(channel) else {
        return true;
    };
    if let Some(upto) = e.caught_up {
        if id <= upto {
            return false;
        }
        e.caught_up = None;
    }
    e.seen = e.seen.max(id);
    true
}

/// Delivers a group's history entries this node has not received (after the last one it
/// saw, and before `before` when a live message is waiting), except its own.
async fn catch_up(broker: &Arc<RedisBroker>, channel: &str, before: Option<(u64, u64)>) {
    let (hub, group, after) = {
        let mut interest = broker.interest.lock();
        let Some(e) = interest.get_mut(channel) else {
            return;
        };
        let Some((hub, group)) = e.group.clone().filter(|_| e.behind && e.wanted) else {
            e.behind = false;
            return;
        };
        (hub, group, e.seen)
    };
    // Still out of reach: the next resynchronization asks again.
    let Some(mut c) = broker.conn() else {
        return;
    };
    let end = before.map_or_else(|| "+".to_string(), |id| format!("({}", id_string(id)));
    let read = c.xrange_count::<_, _, _, _, StreamRangeReply>(
        keys::history(&hub, &group),
        format!("({}", id_string(after)),
        end,
        REPLAY_MAX,
    );
    let reply = broker.guarded(CATCH_UP_TIMEOUT, read).await;
    let local = broker.inbound().and_then(|i| i.registry().hub(&hub));
    let mut last = None;
    let mut brought = 0usize;
    for (id, m) in reply
        .iter()
        .flat_map(|r| &r.ids)
        .filter_map(|e| history_entry(e, &group))
    {
        last = Some(id);
        if m.published
            .is_some_and(|(origin, _)| origin == broker.origin)
            && !broker.keeps(&hub, &m.target)
        {
            continue;
        }
        if let Some(h) = &local {
            brought += 1;
            metrics::global().cluster_messages_in.inc();
            let stamp = broker.keeps(&hub, &m.target);
            let (target, scope, d) = delivery_of(m, Some(id), stamp);
            deliver_local(h, &target, &scope, &d);
        }
    }
    if reply.is_none() {
        warn!(%group, "cannot read a group's history to catch up after an outage");
    } else if brought > 0 {
        tracing::info!(%group, brought, "caught up with a group's messages sent during an outage");
    }
    let mut interest = broker.interest.lock();
    if let Some(e) = interest.get_mut(channel) {
        e.behind = false;
        if let Some(last) = last {
            e.seen = e.seen.max(last);
            if before.is_none() {
                e.caught_up = Some(last);
            }
        }
    }
}

/// A stream entry id as Redis writes it.
pub(crate) fn id_string((ms, seq): (u64, u64)) -> String {
    format!("{ms}-{seq}")
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
