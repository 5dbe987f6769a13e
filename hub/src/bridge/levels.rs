//! Mirrors the agent bus's own counters into the hub's Prometheus metrics, once a second,
//! so a scrape never waits on the bus.

use std::time::Duration;

use nerve_agentbus::Bus;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// How often the bus's counters are copied.
const INTERVAL: Duration = Duration::from_secs(1);

/// Copies the bus's counters into the metrics until `shutdown`.
pub(super) async fn mirror(bus: Bus, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = bus.stats().snapshot();
        let m = metrics::global();
        m.bus_in_flight(s.in_flight);
        m.bus_totals(s.redelivered, s.dead_lettered);
    }
}
