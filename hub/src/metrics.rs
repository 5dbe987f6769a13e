//! Prometheus metrics of the hub, served at `/metrics`.
//!
//! One process-wide registry: counters are cheap atomics, so they sit directly on hot paths.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label: which path a message took (`ws`, `rest`, `upstream`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// The path.
    pub path: &'static str,
}

/// Label: an outcome (`ok`, an error name, a reason).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// The outcome.
    pub result: &'static str,
}

/// Label: which limit was hit (see `limits::LimitKind`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The limit.
    pub kind: &'static str,
}

/// Label: a REST operation (`sendToGroup`, `addConnectionToGroup`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The operation.
    pub route: &'static str,
}

/// A histogram family built with the hub's latency buckets.
type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 0.1 ms to about 3.3 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric of the hub.
pub struct Metrics {
    registry: Registry,
    /// Open connections.
    pub connections: Gauge,
    /// Connections accepted since start.
    pub connections_opened: Counter,
    /// Group joins.
    pub joins: Counter,
    /// Group leaves.
    pub leaves: Counter,
    /// Messages received, by path.
    pub messages_in: Family<PathLabel, Counter>,
    /// Bytes received, by path.
    pub bytes_in: Family<PathLabel, Counter>,
    /// Messages written to clients.
    pub messages_out: Counter,
    /// Bytes written to clients.
    pub bytes_out: Counter,
    /// Acks sent, by result.
    pub acks: Family<ResultLabel, Counter>,
    /// Connections cut off because their outbox was full.
    pub slow_consumer_kicks: Counter,
    /// Refused tokens, by reason.
    pub auth_failures: Family<ResultLabel, Counter>,
    /// Connections closed for protocol errors, by reason.
    pub protocol_errors: Family<ResultLabel, Counter>,
    /// Reliable sessions resumed after a dropped socket.
    pub reconnections: Counter,
    /// 1 while the cluster broker reaches Redis (always 1 on a single node).
    pub redis_up: Gauge,
    /// Failed Redis operations of the cluster broker.
    pub redis_errors: Counter,
    /// Times the cluster broker regained Redis and resynchronized.
    pub redis_recoveries: Counter,
    /// Messages or operations the cluster could not pass on, by reason.
    pub cluster_drops: Family<ResultLabel, Counter>,
    /// Messages received from other nodes.
    pub cluster_messages_in: Counter,
    /// Group history entries trimmed or not kept, by reason (`max_messages`, `max_age`,
    /// `max_groups`).
    pub history_trimmed: Family<ResultLabel, Counter>,
    /// Requests refused or connections closed by a limit, by kind.
    pub limit_violations: Family<KindLabel, Counter>,
    /// REST request latency in seconds, by operation.
    pub rest_latency: Latencies<RouteLabel>,
    /// Upstream (webhook) calls, by result (`ok` or a failure reason).
    pub upstream_calls: Family<ResultLabel, Counter>,
    /// Failed upstream calls, by reason.
    pub upstream_failures: Family<ResultLabel, Counter>,
    /// Latency of the cluster broker's Redis round trips, in seconds.
    pub redis_latency: Histogram,
    /// Messages waiting in the agent bus's queues.
    pub bus_depth: Gauge,
    /// Agent bus messages delivered and not yet acknowledged.
    pub bus_in_flight: Gauge,
    /// Agent bus messages delivered again after a missed acknowledgement.
    pub bus_redeliveries: Counter,
    /// Agent bus messages moved to a dead-letter queue.
    pub bus_dead_letters: Counter,
    /// Tasks alive on the hub's async runtime, read at each scrape: connections, sessions and
    /// background loops; a number that keeps growing under steady load is a leak.
    pub runtime_tasks: Gauge,
    /// Plain running totals the console samples (not exported: the labelled metrics above
    /// say the same with more detail).
    pub totals: Totals,
}

/// Running totals across labels, read by the console once a second.
#[derive(Debug, Default)]
pub struct Totals {
    /// Messages received, every path.
    pub messages_in: AtomicU64,
    /// Message bytes received, every path.
    pub bytes_in: AtomicU64,
    /// Refused tokens, protocol errors and limit violations.
    pub errors: AtomicU64,
    /// REST calls answered, and the microseconds they took in all.
    pub rest_calls: AtomicU64,
    /// Microseconds REST calls took, summed.
    pub rest_micros: AtomicU64,
    /// Redis round trips of the cluster broker.
    pub redis_calls: AtomicU64,
    /// Microseconds Redis round trips took, summed.
    pub redis_micros: AtomicU64,
}

impl Totals {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a total.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("nerve");
        let m = Metrics {
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            joins: Counter::default(),
            leaves: Counter::default(),
            messages_in: Family::default(),
            bytes_in: Family::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            acks: Family::default(),
            slow_consumer_kicks: Counter::default(),
            auth_failures: Family::default(),
            protocol_errors: Family::default(),
            reconnections: Counter::default(),
            redis_up: Gauge::default(),
            redis_errors: Counter::default(),
            redis_recoveries: Counter::default(),
            cluster_drops: Family::default(),
            cluster_messages_in: Counter::default(),
            history_trimmed: Family::default(),
            limit_violations: Family::default(),
            rest_latency: Family::new_with_constructor(latency_histogram),
            upstream_calls: Family::default(),
            upstream_failures: Family::default(),
            redis_latency: latency_histogram(),
            bus_depth: Gauge::default(),
            bus_in_flight: Gauge::default(),
            bus_redeliveries: Counter::default(),
            bus_dead_letters: Counter::default(),
            runtime_tasks: Gauge::default(),
            totals: Totals::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_opened",
            "Client connections accepted",
            m.connections_opened.clone(),
        );
        registry.register("group_joins", "Group joins", m.joins.clone());
        registry.register("group_leaves", "Group leaves", m.leaves.clone());
        registry.register(
            "messages_in",
            "Messages received, by path",
            m.messages_in.clone(),
        );
        registry.register(
            "bytes_in",
            "Message bytes received, by path",
            m.bytes_in.clone(),
        );
        registry.register(
            "messages_out",
            "Messages written to clients",
            m.messages_out.clone(),
        );
        registry.register("bytes_out", "Bytes written to clients", m.bytes_out.clone());
        registry.register("acks", "Acks sent to clients, by result", m.acks.clone());
        registry.register(
            "slow_consumer_kicks",
            "Connections closed because their outbox was full",
            m.slow_consumer_kicks.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused access tokens, by reason",
            m.auth_failures.clone(),
        );
        registry.register(
            "protocol_errors",
            "Frames refused or connections closed for protocol errors, by reason",
            m.protocol_errors.clone(),
        );
        registry.register(
            "reconnections",
            "Reliable sessions resumed",
            m.reconnections.clone(),
        );
        registry.register(
            "redis_up",
            "1 while the cluster broker reaches Redis",
            m.redis_up.clone(),
        );
        registry.register(
            "redis_errors",
            "Failed Redis operations of the cluster broker",
            m.redis_errors.clone(),
        );
        registry.register(
            "redis_recoveries",
            "Times the cluster broker regained Redis and resynchronized",
            m.redis_recoveries.clone(),
        );
        registry.register(
            "cluster_drops",
            "Messages or operations the cluster could not pass on, by reason",
            m.cluster_drops.clone(),
        );
        registry.register(
            "cluster_messages_in",
            "Messages received from other nodes",
            m.cluster_messages_in.clone(),
        );
        registry.register(
            "history_trimmed",
            "Group history entries trimmed or not kept, by reason",
            m.history_trimmed.clone(),
        );
        m.register_operations(&mut registry);
        Metrics { registry, ..m }
    }

    fn register_operations(&self, registry: &mut Registry) {
        registry.register(
            "limit_violations",
            "Requests refused or connections closed by a limit, by kind",
            self.limit_violations.clone(),
        );
        registry.register(
            "rest_request_duration_seconds",
            "REST request latency, by operation",
            self.rest_latency.clone(),
        );
        registry.register(
            "upstream_calls",
            "Upstream event handler calls, by result",
            self.upstream_calls.clone(),
        );
        registry.register(
            "upstream_failures",
            "Failed upstream event handler calls, by reason",
            self.upstream_failures.clone(),
        );
        registry.register(
            "redis_latency_seconds",
            "Latency of the cluster broker's Redis round trips",
            self.redis_latency.clone(),
        );
        registry.register(
            "bus_depth",
            "Messages waiting in the agent bus's queues",
            self.bus_depth.clone(),
        );
        registry.register(
            "bus_in_flight",
            "Agent bus messages delivered and not yet acknowledged",
            self.bus_in_flight.clone(),
        );
        registry.register(
            "bus_redeliveries",
            "Agent bus messages delivered again",
            self.bus_redeliveries.clone(),
        );
        registry.register(
            "bus_dead_letters",
            "Agent bus messages moved to a dead-letter queue",
            self.bus_dead_letters.clone(),
        );
        registry.register(
            "runtime_tasks",
            "Tasks alive on the hub's async runtime",
            self.runtime_tasks.clone(),
        );
    }

    /// Counts a refusal by a limit (`limits::LimitKind::label`).
    pub fn limit_violation(&self, kind: &'static str) {
        self.limit_violations
            .get_or_create(&KindLabel { kind })
            .inc();
        Totals::add(&self.totals.errors, 1);
    }

    /// Records how long a REST operation took.
    pub fn rest_request(&self, route: &'static str, took: Duration) {
        self.rest_latency
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
        Totals::add(&self.totals.rest_calls, 1);
        Totals::add(&self.totals.rest_micros, took.as_micros() as u64);
    }

    /// Counts an upstream call: `Ok(())`, or `Err(reason)` for a failure (`timeout`,
    /// `status_5xx`, `connect`, …).
    pub fn upstream_call(&self, outcome: Result<(), &'static str>) {
        let result = match outcome {
            Ok(()) => "ok",
            Err(reason) => {
                self.upstream_failures
                    .get_or_create(&ResultLabel { result: reason })
                    .inc();
                reason
            }
        };
        self.upstream_calls
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Hook for the cluster broker: Redis is reachable or not.
    pub fn redis_health(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    /// Hook for the cluster broker: one Redis round trip took `took`.
    pub fn redis_round_trip(&self, took: Duration) {
        self.redis_latency.observe(took.as_secs_f64());
        Totals::add(&self.totals.redis_calls, 1);
        Totals::add(&self.totals.redis_micros, took.as_micros() as u64);
    }

    /// Agent bus: deliveries being handled on this node right now.
    pub fn bus_in_flight(&self, in_flight: u64) {
        self.bus_in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    /// Agent bus: messages waiting in the queues of every capability.
    pub fn bus_depth(&self, depth: u64) {
        self.bus_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Agent bus: raises the redelivery and dead-letter counters to the bus's own totals
    /// (the bus counts; this only mirrors, so the counters never go backwards).
    pub fn bus_totals(&self, redelivered: u64, dead_lettered: u64) {
        let redeliveries = self.bus_redeliveries.get();
        if redelivered > redeliveries {
            self.bus_redeliveries.inc_by(redelivered - redeliveries);
        }
        let dead = self.bus_dead_letters.get();
        if dead_lettered > dead {
            self.bus_dead_letters.inc_by(dead_lettered - dead);
        }
    }

    /// Counts an ack by result.
    pub fn ack(&self, result: &'static str) {
        self.acks.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts something the cluster could not pass on.
    pub fn cluster_drop(&self, result: &'static str) {
        self.cluster_drops_by(result, 1);
    }

    /// Counts `n` things the cluster could not pass on.
    pub fn cluster_drops_by(&self, result: &'static str, n: u64) {
        self.cluster_drops
            .get_or_create(&ResultLabel { result })
            .inc_by(n);
    }

    /// Counts `n` group history entries trimmed (or not kept) for a reason.
    pub fn history_trim(&self, result: &'static str, n: u64) {
        if n > 0 {
            self.history_trimmed
                .get_or_create(&ResultLabel { result })
                .inc_by(n);
        }
    }

    /// Counts a protocol error by reason.
    pub fn protocol_error(&self, result: &'static str) {
        self.protocol_errors
            .get_or_create(&ResultLabel { result })
            .inc();
        Totals::add(&self.totals.errors, 1);
    }

    /// Counts a refused token by reason.
    pub fn auth_failure(&self, result: &'static str) {
        self.auth_failures
            .get_or_create(&ResultLabel { result })
            .inc();
        Totals::add(&self.totals.errors, 1);
    }

    /// Counts a received message.
    pub fn message_in(&self, path: &'static str, bytes: usize) {
        self.messages_in.get_or_create(&PathLabel { path }).inc();
        self.bytes_in
            .get_or_create(&PathLabel { path })
            .inc_by(bytes as u64);
        Totals::add(&self.totals.messages_in, 1);
        Totals::add(&self.totals.bytes_in, bytes as u64);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = runtime.metrics().num_alive_tasks();
            self.runtime_tasks
                .set(i64::try_from(tasks).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
