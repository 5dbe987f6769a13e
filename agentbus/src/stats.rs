//! Counters of what this process's agents did with their deliveries, for whoever embeds the
//! bus to export (the hub turns them into Prometheus metrics). Plain atomics: reading them
//! never touches the transport.

use std::sync::atomic::{AtomicU64, Ordering};

/// What this process's agents did with their deliveries since the bus was created.
#[derive(Debug, Default)]
pub struct BusStats {
    delivered: AtomicU64,
    redelivered: AtomicU64,
    dead_lettered: AtomicU64,
    handling: AtomicU64,
}

/// A copy of [`BusStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStatsSnapshot {
    /// Deliveries handed to an agent here, first attempts and redeliveries.
    pub delivered: u64,
    /// Deliveries that were not the message's first (a lease lapsed or a retry was due).
    pub redelivered: u64,
    /// Messages this process moved to a dead-letter queue.
    pub dead_lettered: u64,
    /// Deliveries being handled right now: taken, not yet acknowledged or given back.
    pub in_flight: u64,
}

impl BusStats {
    /// The counters now.
    pub fn snapshot(&self) -> BusStatsSnapshot {
        BusStatsSnapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            in_flight: self.handling.load(Ordering::Relaxed),
        }
    }

    /// Counts a delivery (its `deliveries` so far, this one included) and holds it in flight
    /// until the guard drops.
    pub(crate) fn delivery(&self, deliveries: u32) -> InFlight<'_> {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if deliveries > 1 {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        self.handling.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    pub(crate) fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
}

/// A delivery being handled; dropping it ends the in-flight count.
pub(crate) struct InFlight<'a>(&'a BusStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_deliveries_redeliveries_and_in_flight() {
        let s = BusStats::default();
        let first = s.delivery(1);
        let again = s.delivery(3);
        s.dead_lettered();
        assert_eq!(
            s.snapshot(),
            BusStatsSnapshot {
                delivered: 2,
                redelivered: 1,
                dead_lettered: 1,
                in_flight: 2
            }
        );
        drop(first);
        drop(again);
        assert_eq!(s.snapshot().in_flight, 0);
    }
}
