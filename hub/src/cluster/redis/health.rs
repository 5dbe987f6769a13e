//! Whether this node reaches Redis, and what changes when it stops.
//!
//! Redis is lost the moment its connection closes (the client reports it), an operation fails
//! on the connection, or a heartbeat goes unanswered for [`heartbeat_timeout`]; so a node
//! notices within one heartbeat interval plus that timeout, however Redis went away. From
//! then on nothing waits on Redis: operations under way give up at once, sends are delivered
//! here and counted as not passed on. A resynchronization ends the outage (see `worker`).

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::warn;

use super::RedisBroker;
use crate::metrics;

/// Shortest wait for a heartbeat's answer: long enough for a busy Redis on a busy machine.
const HEARTBEAT_TIMEOUT_MIN: Duration = Duration::from_millis(500);

/// How long a heartbeat waits for its answer before Redis counts as lost: the heartbeat
/// interval, and at least [`HEARTBEAT_TIMEOUT_MIN`].
pub(crate) fn heartbeat_timeout(interval: Duration) -> Duration {
    interval.max(HEARTBEAT_TIMEOUT_MIN)
}

/// Whether an error means the connection to Redis is gone (rather than one command failing).
fn connection_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

impl RedisBroker {
    /// Whether work for Redis is taken: while Redis is reachable, and from the moment a
    /// resynchronization is queued (what is queued after it runs after it).
    pub(crate) fn accepting(&self) -> bool {
        self.ready.load(Ordering::SeqCst) || self.resyncing.load(Ordering::SeqCst)
    }

    /// Redis is out of reach: serve local connections only, and say so.
    pub(crate) fn lost(&self, why: &dyn Display) {
        self.outages.fetch_add(1, Ordering::SeqCst);
        if !self.ready.swap(false, Ordering::SeqCst) {
            return;
        }
        warn!(error = %why, "lost Redis; serving local connections only");
        metrics::global().redis_health(false);
        for i in self.interest.lock().values_mut() {
            i.subscribed = false;
            i.behind = i.group.is_some();
        }
        self.online.send_replace(false);
        // Whoever waits for a subscription stops waiting.
        self.subscribed.send_modify(|g| *g += 1);
    }

    /// Ends an outage that began before `outages` was read as `since`: Redis is reachable
    /// and this node's state is written there again. Returns false if Redis was lost again
    /// meanwhile.
    pub(crate) fn recovered(&self, since: u64) -> bool {
        if self.outages.load(Ordering::SeqCst) != since {
            return false;
        }
        self.online.send_replace(true);
        self.slow.store(false, Ordering::Relaxed);
        self.ready.store(true, Ordering::SeqCst);
        if self.outages.load(Ordering::SeqCst) != since {
            // Lost while we marked it ready: `lost` saw it not ready and did nothing.
            self.ready.store(false, Ordering::SeqCst);
            self.online.send_replace(false);
            return false;
        }
        metrics::global().redis_health(true);
        true
    }

    /// Runs a session's write that holds up its socket: waits for Redis's answer at most
    /// `limit`, and not at all while Redis is slow (such a wait ran out and no heartbeat has
    /// been answered since). Either way the write is on its way once this returns: polled
    /// once, a command is handed to the connection, which sends it in order and after the
    /// session's earlier writes, so it lands shortly after the frames it holds up.
    pub(crate) async fn before_socket<T>(
        &self,
        limit: Duration,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) {
        if self.slow.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(Duration::ZERO, op).await;
            return;
        }
        let started = tokio::time::Instant::now();
        if self.guarded(limit, op).await.is_none() && started.elapsed() >= limit {
            self.slow.store(true, Ordering::Relaxed);
        }
    }

    /// Runs one Redis operation for a caller that must not wait long: at most `limit`, and
    /// no longer than Redis is reachable. A failed connection marks Redis lost at once.
    /// Answers `None` when the operation did not complete (counted as a Redis error).
    pub(crate) async fn guarded<T>(
        &self,
        limit: Duration,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        let mut online = self.online.subscribe();
        let gone = online.wait_for(|up| !*up);
        let outcome = tokio::select! {
            biased;
            r = tokio::time::timeout(limit, op) => r,
            _ = gone => return None,
        };
        match outcome {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                metrics::global().redis_errors.inc();
                if connection_lost(&e) {
                    self.lost(&e);
                }
                None
            }
            Err(_) => {
                metrics::global().redis_errors.inc();
                None
            }
        }
    }
}
