//! Mirrors the agent bus into the hub's Prometheus metrics in the background, so a scrape
//! never waits on the bus: its own counters once a second, and the queue depth (which asks the
//! transport, one call per partition) every few seconds.

use std::time::Duration;

use nerve_agentbus::Bus;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// How often the bus's counters are copied.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// How often the queues are asked how deep they are.
const DEPTH_EVERY: u32 = 2;

/// Copies the bus's counters and queue depth into the metrics until `shutdown`.
pub(super) async fn mirror(bus: Bus, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(COUNTERS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = bus.stats().snapshot();
        let m = metrics::global();
        m.bus_in_flight(s.in_flight);
        m.bus_totals(s.redelivered, s.dead_lettered);
        ticks = ticks.wrapping_add(1);
        if ticks % DEPTH_EVERY == 1 {
            match bus.total_queue_levels().await {
                Ok(levels) => m.bus_depth(levels.waiting),
                Err(e) => tracing::debug!(error = %e, "agent bus queue depth unavailable"),
            }
        }
    }
}
