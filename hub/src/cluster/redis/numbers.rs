//! Numbers on node and broadcast channels, so a node learns which messages never reached it.
//!
//! A group message has its place in the group's history, and a node that was away catches up
//! from it. Messages to a node (its connections, commands for them) and to every node have no
//! history: the node that sends them numbers them per channel (`-origin.number` before the
//! envelope), and writes its latest numbers with each heartbeat. A receiving node counts in
//! `nerve_cluster_drops_total{result="missed"}` the numbers it never got: at once when a later
//! message skips some, or a heartbeat after another node's heartbeat showed them sent.

use std::collections::HashMap;

use super::{RedisBroker, keys};
use crate::metrics;

impl RedisBroker {
    /// The next number of a message on a node or broadcast channel.
    pub(crate) fn number(&self, channel: &str) -> u64 {
        let mut numbers = self.numbers.lock();
        let n = numbers.entry(channel.to_string()).or_default();
        *n += 1;
        *n
    }

    /// The latest numbers of this node's messages, as heartbeats write them (`keys::numbers`).
    pub(crate) fn numbers(&self) -> Vec<(String, String)> {
        let node = &self.settings.node_id;
        self.numbers
            .lock()
            .iter()
            .map(|(ch, n)| (format!("{node}\n{ch}"), format!("{}.{n}", self.origin)))
            .collect()
    }

    /// Gives back the number of a message that was not published (if it is the last).
    pub(crate) fn unnumber(&self, channel: &str, number: u64) {
        if let Some(n) = self.numbers.lock().get_mut(channel)
            && *n == number
        {
            *n -= 1;
        }
    }
}

/// What this node knows of the numbered messages other nodes sent it (`jobs::publish_to`,
/// on its node channel and the broadcast channel), to count the ones that never arrived:
/// a message whose number skips some shows them missed at once; the numbers each node writes
/// with its heartbeats show the ones missed at the end of a stream, a heartbeat later (by
/// then whatever was sent before has arrived, or never will).
#[derive(Default)]
pub(crate) struct Heard {
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
    pub(crate) fn note(&mut self, node: &str, channel: &str, (origin, number): (u64, u64)) {
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
    pub(crate) fn published(&mut self, current: HashMap<(String, String), (u64, u64)>) {
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
    pub(crate) fn for_me(
        me: &str,
        numbers: HashMap<String, String>,
    ) -> HashMap<(String, String), (u64, u64)> {
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
pub(crate) fn number_of(prefix: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(prefix.strip_prefix(b"-")?).ok()?;
    let (origin, number) = s.split_once('.')?;
    Some((origin.parse().ok()?, number.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::{Heard, number_of};

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
}
