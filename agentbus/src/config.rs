//! Bus settings with documented defaults (Service Bus / JetStream-like), in one typed struct so
//! tests can shorten leases and intervals without touching code.

use std::time::Duration;

use crate::transport::TransportConfig;

/// Every knob of the bus. `BusConfig::default()` is what production gets.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Partitions per capability: the unit of per-key ordering and of ownership (default 8).
    pub partitions: u16,
    /// How long a consumer may hold a message (and a partition) without renewing (default 30 s).
    pub lease: Duration,
    /// Deliveries before a message is dead-lettered (default 10).
    pub max_deliveries: u32,
    /// First retry delay; doubles per attempt (default 1 s).
    pub retry_base: Duration,
    /// Longest retry delay (default 5 min).
    pub retry_max: Duration,
    /// Messages one consumer holds at once: the backpressure knob (default 16).
    pub max_in_flight: usize,
    /// Longest blocking read on one partition (default 250 ms).
    pub fetch_wait: Duration,
    /// How often due scheduled and backoff messages are moved into their queue (default 250 ms).
    pub promote_interval: Duration,
    /// How long an agent stays registered without a heartbeat (default 15 s).
    pub agent_ttl: Duration,
    /// How long a canceled handler gets to stop before it is dropped (default 5 s).
    pub cancel_grace: Duration,
    /// How long replies and request deadlines are kept (default 10 min).
    pub reply_ttl: Duration,
    /// Transport settings (dedupe window, retention).
    pub transport: TransportConfig,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            partitions: 8,
            lease: Duration::from_secs(30),
            max_deliveries: 10,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_in_flight: 16,
            fetch_wait: Duration::from_millis(250),
            promote_interval: Duration::from_millis(250),
            agent_ttl: Duration::from_secs(15),
            cancel_grace: Duration::from_secs(5),
            reply_ttl: Duration::from_secs(600),
            transport: TransportConfig::default(),
        }
    }
}

impl BusConfig {
    /// Short leases and intervals for tests and demos (lease 1 s, retries from 50 ms).
    pub fn fast() -> Self {
        BusConfig {
            lease: Duration::from_secs(1),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(400),
            fetch_wait: Duration::from_millis(100),
            promote_interval: Duration::from_millis(50),
            agent_ttl: Duration::from_secs(1),
            cancel_grace: Duration::from_secs(2),
            ..BusConfig::default()
        }
    }

    /// Delay before the retry that follows `deliveries` deliveries (exponential, capped).
    pub fn backoff(&self, deliveries: u32) -> Duration {
        let exp = deliveries.saturating_sub(1).min(20);
        self.retry_base
            .saturating_mul(1u32 << exp)
            .min(self.retry_max)
    }

    /// How often leases, ownership and registrations are renewed.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.lease / 3).min(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = BusConfig::default();
        assert_eq!(c.backoff(1), Duration::from_secs(1));
        assert_eq!(c.backoff(2), Duration::from_secs(2));
        assert_eq!(c.backoff(4), Duration::from_secs(8));
        assert_eq!(c.backoff(30), Duration::from_secs(300));
    }
}
