//! The console's charts: once a second, this node's metrics are read and the differences since
//! the last second kept as one sample, in a ring of the last `console.history_secs` seconds.
//! Counts (connections, groups, users) come from the registry, rates from the metrics' totals.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::metrics::{self, Totals};
use crate::node::Node;

/// How often a sample is taken.
const EVERY: Duration = Duration::from_secs(1);

/// One second of this node.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Unix milliseconds at the end of the second.
    pub t: u64,
    /// Open client connections.
    pub connections: u64,
    /// Groups with a member here.
    pub groups: u64,
    /// Users with a connection here.
    pub users: u64,
    /// Messages received in the second (client frames and REST sends).
    pub messages_in: u64,
    /// Messages written to clients in the second.
    pub messages_out: u64,
    /// Message bytes received in the second.
    pub bytes_in: u64,
    /// Bytes written to clients in the second.
    pub bytes_out: u64,
    /// Mean REST latency in the second, in milliseconds (none without calls).
    pub rest_latency_ms: Option<f64>,
    /// Mean Redis round trip in the second, in milliseconds (none without Redis traffic).
    pub redis_latency_ms: Option<f64>,
    /// Refused tokens, protocol errors and limit violations in the second.
    pub errors: u64,
    /// Connections cut off as slow consumers in the second.
    pub slow_consumer_cuts: u64,
    /// Whether the cluster reaches Redis (always true on a single in-memory node).
    pub redis_up: bool,
    /// Messages waiting in the agent bus's queues.
    pub bus_depth: u64,
    /// Agent bus messages delivered and not settled.
    pub bus_in_flight: u64,
}

/// The running totals a sample is the difference of.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    errors: u64,
    slow: u64,
    rest_calls: u64,
    rest_micros: u64,
    redis_calls: u64,
    redis_micros: u64,
}

impl Reading {
    fn now() -> Self {
        let m = metrics::global();
        let t = &m.totals;
        Reading {
            messages_in: Totals::get(&t.messages_in),
            messages_out: m.messages_out.get(),
            bytes_in: Totals::get(&t.bytes_in),
            bytes_out: m.bytes_out.get(),
            errors: Totals::get(&t.errors),
            slow: m.slow_consumer_kicks.get(),
            rest_calls: Totals::get(&t.rest_calls),
            rest_micros: Totals::get(&t.rest_micros),
            redis_calls: Totals::get(&t.redis_calls),
            redis_micros: Totals::get(&t.redis_micros),
        }
    }
}

/// The ring of samples.
pub struct Samples {
    ring: Mutex<VecDeque<Sample>>,
    capacity: usize,
}

impl Samples {
    /// An empty ring of `capacity` seconds.
    pub fn new(capacity: usize) -> Self {
        Samples {
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
        }
    }

    fn push(&self, s: Sample) {
        let mut ring = self.ring.lock();
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(s);
    }

    /// The last `seconds` samples, oldest first.
    pub fn last(&self, seconds: usize) -> Vec<Sample> {
        let ring = self.ring.lock();
        let skip = ring.len().saturating_sub(seconds);
        ring.iter().skip(skip).cloned().collect()
    }

    /// How many seconds the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Samples `node` into `samples` every second until the node shuts down.
pub async fn run(node: Arc<Node>, samples: Arc<Samples>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Reading::now();
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Reading::now();
        let s = sample(&node, &last, &now);
        if let Ok(json) = serde_json::to_string(&s) {
            node.broker.share_stats(json);
        }
        samples.push(s);
        last = now;
    }
}

fn sample(node: &Node, a: &Reading, b: &Reading) -> Sample {
    let (mut groups, mut users) = (0, 0);
    for h in node.registry.hubs() {
        groups += h.group_count() as u64;
        users += h.user_count() as u64;
    }
    let m = metrics::global();
    Sample {
        t: crate::auth::now_secs() * 1000,
        connections: node.registry.connection_count() as u64,
        groups,
        users,
        messages_in: b.messages_in.saturating_sub(a.messages_in),
        messages_out: b.messages_out.saturating_sub(a.messages_out),
        bytes_in: b.bytes_in.saturating_sub(a.bytes_in),
        bytes_out: b.bytes_out.saturating_sub(a.bytes_out),
        rest_latency_ms: mean_ms(b.rest_calls - a.rest_calls, b.rest_micros - a.rest_micros),
        redis_latency_ms: mean_ms(
            b.redis_calls - a.redis_calls,
            b.redis_micros - a.redis_micros,
        ),
        errors: b.errors.saturating_sub(a.errors),
        slow_consumer_cuts: b.slow.saturating_sub(a.slow),
        redis_up: node.broker.is_ready(),
        bus_depth: u64::try_from(m.bus_depth.get()).unwrap_or(0),
        bus_in_flight: u64::try_from(m.bus_in_flight.get()).unwrap_or(0),
    }
}

fn mean_ms(calls: u64, micros: u64) -> Option<f64> {
    (calls > 0).then(|| micros as f64 / calls as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_its_newest_seconds() {
        let ring = Samples::new(3);
        for t in 0..5 {
            ring.push(Sample {
                t,
                ..Sample::default()
            });
        }
        let ts: Vec<u64> = ring.last(10).iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![2, 3, 4]);
        assert_eq!(ring.last(1)[0].t, 4);
        assert_eq!(mean_ms(0, 5), None);
        assert_eq!(mean_ms(2, 3000), Some(1.5));
    }
}
