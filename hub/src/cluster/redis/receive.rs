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

/// What this node knows of the numbered messages other nodes sent it (`jobs::publish_to`,
/// on its node channel and the broadcast channel), to count the ones that never arrived:
/// a message whose number skips some shows them missed at once; the numbers each node writes
/// with its heartbeats show the ones missed at the end of a stream, a heartbeat later (by
/// then whatever was sent before has arrived, or never will).
#[derive(Default)]
struct Heard {
    /// Per node and channel: the node process that numbers them, and the highest number
    /// heard or counted as missed.
    last: HashMap<(String, String), (u64, u64)>,
    /// The numbers the previous heartbeat read.
    previous: HashMap<(String, String), (u64, u64)>,
    /// Heartbeats read so far (the first two only set where counting starts: what was sent
    /// before this node listened is no concern of it).
    reads: u32,
    /// Messages counted as missed.
    missed: u64,
}

impl Heard {
    /// Notes a numbered message; counts the ones before it that never arrived.
    fn note(&mut self, node: &str, channel: &str, (origin, number): (u64, u64)) {
        let key = (node.to_string(), channel.to_string());
        match self.last.get_mut(&key) {
            Some((from, last)) if *from == origin => {
                let gap = number.saturating_sub(*last + 1);
                *last = (*last).max(number);
                self.miss(gap);
            }
            // The first from this node process (or from its restart): the ones before it
            // were sent while this node listened, unless it has only just begun.
            _ => {
                self.last.insert(key, (origin, number));
                if self.reads > 2 {
                    self.miss(number - 1);
                }
            }
        }
    }

    /// Takes the numbers other nodes had sent this node as of a heartbeat it answered
    /// (`for_me`): what the previous heartbeat showed sent and never arrived is missed.
    fn published(&mut self, current: HashMap<(String, String), (u64, u64)>) {
        self.reads = self.reads.saturating_add(1);
        if self.reads <= 2 {
            for (key, (origin, sent)) in &current {
                let e = self.last.entry(key.clone()).or_insert((*origin, *sent));
                if e.0 == *origin {
                    e.1 = e.1.max(*sent);
                }
            }
            self.previous = current;
            return;
        }
        let previous = std::mem::replace(&mut self.previous, current);
        for (key, (origin, sent)) in previous {
            match self.last.get_mut(&key) {
                Some((from, last)) if *from == origin => {
                    let gap = sent.saturating_sub(*last);
                    *last = (*last).max(sent);
                    self.miss(gap);
                }
                // New, or restarted since, and none of its messages came.
                _ => {
                    self.last.insert(key, (origin, sent));
                    self.miss(sent);
                }
            }
        }
    }

    fn miss(&mut self, n: u64) {
        if n > 0 {
            self.missed += n;
            metrics::global().cluster_drops_by("missed", n);
        }
    }

    /// The numbers of other nodes on the channels this node listens to.
    fn for_me(me: &str, numbers: HashMap<String, String>) -> HashMap<(String, String), (u64, u64)> {
        let mine = keys::node_channel(me);
        let everyone = keys::broadcast_channel();
        numbers
            .into_iter()
            .filter_map(|(field, value)| {
                let (node, channel) = field.split_once('\n')?;
                let listened = channel == mine || channel == everyone;
                if node == me || !listened {
                    return None;
                }
                let (origin, number) = value.split_once('.')?;
                let key = (node.to_string(), channel.to_string());
                Some((key, (origin.parse().ok()?, number.parse().ok()?)))
            })
            .collect()
    }
}

/// The number of a message on a node or broadcast channel: `-origin.number`.
fn number_of(prefix: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(prefix.strip_prefix(b"-")?).ok()?;
    let (origin, number) = s.split_once('.')?;
    Some((origin.parse().ok()?, number.parse().ok()?))
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
                // This node delivered its own group messages when it sent them.
                if m.published
                    .is_some_and(|(origin, _)| origin == broker.origin)
                {
                    return;
                }
            } else if mine {
                return;
            }
            deliver(inbound.as_ref(), &env.hub, m, id);
        }
        Body::Command(cmd) if !mine => inbound.run(&env.hub, &cmd),
        Body::Command(_) => {}
    }
}

/// Delivers a message from another node into this node's registry.
fn deliver(inbound: &dyn Inbound, hub: &str, m: Message, id: Option<(u64, u64)>) {
    let Some(hub) = inbound.registry().hub(hub) else {
        return;
    };
    metrics::global().cluster_messages_in.inc();
    let (target, scope, d) = delivery_of(m, id);
    deliver_local(&hub, &target, &scope, &d);
}

/// A message from another node (or a group's history) as this node delivers it: who it is
/// for, who is left out, and the delivery (with its history position, for a group).
pub(crate) fn delivery_of(m: Message, id: Option<(u64, u64)>) -> (Target, Scope, Arc<Delivery>) {
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
    let d = Delivery::from_parts(m.frame, m.payload, position, published);
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
        {
            continue;
        }
        if let Some(h) = &local {
            brought += 1;
            metrics::global().cluster_messages_in.inc();
            let (target, scope, d) = delivery_of(m, Some(id));
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
    use super::{Heard, number_of, parse_id};

    #[test]
    fn channel_numbers_parse_and_gaps_count() {
        assert_eq!(number_of(b"-17.4"), Some((17, 4)));
        assert_eq!(number_of(b"-"), None);
        assert_eq!(number_of(b"1700000000000-3"), None);
        let mut heard = Heard::default();
        heard.note("n1", "ch", (7, 1));
        heard.note("n1", "ch", (7, 2));
        heard.note("n1", "ch", (7, 2));
        assert_eq!(heard.missed, 0);
        heard.note("n1", "ch", (7, 6));
        assert_eq!(heard.missed, 3, "3, 4 and 5 never came");
        // A restarted node numbers afresh; another channel has its own numbers.
        heard.note("n1", "ch", (8, 1));
        heard.note("n1", "other", (8, 9));
        assert_eq!(heard.missed, 3, "this node has only just begun listening");
    }

    #[test]
    fn heartbeats_show_the_last_messages_missed_a_heartbeat_later() {
        let everyone = crate::cluster::redis::keys::broadcast_channel();
        let read = |n: u64| {
            let numbers = [(format!("n2\n{everyone}"), format!("5.{n}"))].into();
            Heard::for_me("n1", numbers)
        };
        let mut heard = Heard::default();
        // What was sent before this node listened is not counted.
        heard.published(read(4));
        heard.published(read(6));
        heard.note("n2", &everyone, (5, 7));
        assert_eq!(heard.missed, 0);
        // 8 and 9 were sent, as the heartbeat before says, and never came.
        heard.published(read(9));
        assert_eq!(heard.missed, 0, "they may still be on their way");
        heard.published(read(9));
        assert_eq!(heard.missed, 2);
        heard.note("n2", &everyone, (5, 10));
        assert_eq!(heard.missed, 2);
        // Listening for a while now: a node's first message tells of those before it.
        heard.note("n3", &everyone, (6, 4));
        assert_eq!(heard.missed, 5);
        heard.published(read(10));
        heard.published(read(10));
        assert_eq!(heard.missed, 5);
        // Its own numbers and other nodes' channels are not this node's concern.
        let own = [(format!("n1\n{everyone}"), "3.1".to_string())].into();
        assert!(Heard::for_me("n1", own).is_empty());
        let other = [("n2\nnerve:{n:n3}:ch".to_string(), "5.1".to_string())].into();
        assert!(Heard::for_me("n1", other).is_empty());
    }

    #[test]
    fn stream_ids_parse_and_order() {
        assert_eq!(parse_id(b"1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert!(parse_id(b"17-2") < parse_id(b"17-10"));
        assert_eq!(parse_id(b"-"), None);
        assert_eq!(parse_id(b"12"), None);
        assert_eq!(parse_id(&[0xff, b'-', b'1']), None);
    }
}
