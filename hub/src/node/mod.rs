//! The node: the state every layer above the cluster shares (configuration, keys, the
//! registry, the broker, the upstream client, budgets, shutdown), and in [`ops`] the one
//! home of every registry operation (join, leave, close, grant, revoke) that client frames,
//! REST calls and other nodes' commands run.

#[cfg(test)]
mod broker_suite;
mod ops;
pub mod presence;

pub use ops::Announce;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::AccessKeys;
use crate::cluster::Command;
use crate::cluster::{Broker, HistoryPolicy, Inbound, LocalBroker};
use crate::config::Config;
use crate::limits::{ConnectionBudget, RestRate};
use crate::livetrace::LiveTrace;
use crate::registry::Registry;
use crate::upstream::{Upstream, UpstreamSetup};

/// One hub node: what handlers and sessions share.
pub struct Node {
    /// The effective configuration.
    pub(crate) config: Config,
    /// Access keys for tokens.
    pub(crate) keys: AccessKeys,
    /// Connections, users and groups.
    pub(crate) registry: Registry,
    /// Upstream event handlers (CloudEvents webhooks).
    pub(crate) upstream: Arc<Upstream>,
    /// How messages and registry operations reach other nodes.
    pub(crate) broker: Arc<dyn Broker>,
    /// Cancelled when the hub shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Every session task, awaited on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Client connections admitted, per node and per user.
    pub(crate) budget: ConnectionBudget,
    /// REST request rates per caller.
    pub(crate) rest_rate: RestRate,
    /// What happens on this node, for the console's watchers.
    pub(crate) trace: Arc<LiveTrace>,
    ready: AtomicBool,
    public_host: Option<String>,
}

impl Node {
    /// Builds the state from a configuration.
    pub fn new(config: Config, shutdown: CancellationToken) -> Arc<Self> {
        let public_host = config.public_endpoint.as_deref().map(|e| {
            let n = crate::auth::normalize_audience(e);
            let rest = n.split_once("://").map(|(_, r)| r).unwrap_or(&n);
            rest.split('/').next().unwrap_or_default().to_string()
        });
        let broker = broker_for(&config, &shutdown);
        let budget = ConnectionBudget::new(&config.limits);
        let rest_rate = RestRate::new(&config.limits);
        let payloads = config.console.payloads_allowed(config.listen);
        let node = Arc::new(Node {
            keys: AccessKeys::new(config.access_keys.clone()),
            upstream: Arc::new(Upstream::new(upstream_setup(&config))),
            config,
            registry: Registry::with_membership(broker.clone()),
            broker,
            shutdown,
            tasks: TaskTracker::new(),
            budget,
            rest_rate,
            trace: Arc::new(LiveTrace::new(payloads)),
            ready: AtomicBool::new(false),
            public_host,
        });
        let inbound: Arc<dyn Inbound> = node.clone();
        node.broker.attach(Arc::downgrade(&inbound));
        node
    }

    /// Marks the node as serving (its listener is accepting).
    pub(crate) fn start_serving(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The access keys tokens are signed with.
    pub fn keys(&self) -> &AccessKeys {
        &self.keys
    }

    /// The endpoint as a caller reaches this node: the public endpoint, else this
    /// listener's scheme with the request's `Host`.
    pub(crate) fn endpoint_for(&self, headers: &http::HeaderMap) -> String {
        if let Some(p) = &self.config.public_endpoint {
            return p.trim_end_matches('/').to_string();
        }
        let scheme = if self.config.tls.enabled() {
            "https"
        } else {
            "http"
        };
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| !h.is_empty())
            .map_or_else(
                || crate::config::reachable(self.config.listen).to_string(),
                str::to_string,
            );
        format!("{scheme}://{host}")
    }

    /// Host of the configured public endpoint, if any (lowercase).
    pub(crate) fn public_host(&self) -> Option<&str> {
        self.public_host.as_deref()
    }

    /// Whether the hub serves (liveness): started and not shutting down.
    pub(crate) fn is_serving(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.shutdown.is_cancelled()
    }

    /// Whether the hub should get traffic (readiness): serving, and in a cluster, reaching
    /// the other nodes through Redis.
    pub(crate) fn is_ready(&self) -> bool {
        self.is_serving() && self.broker.is_ready()
    }
}

/// What the upstream client needs of the configuration.
fn upstream_setup(config: &Config) -> UpstreamSetup {
    UpstreamSetup {
        settings: config.upstream.clone(),
        handlers: config
            .hubs
            .iter()
            .map(|(k, s)| (k.clone(), s.event_handlers.clone()))
            .collect(),
        keys: AccessKeys::new(config.access_keys.clone()),
        public_endpoint: config.public_endpoint.clone(),
        listen_ip: config.listen.ip().to_string(),
        max_body: config.limits.max_frame_bytes,
    }
}

/// The in-memory broker, or the Redis broker when Redis is configured.
fn broker_for(config: &Config, shutdown: &CancellationToken) -> Arc<dyn Broker> {
    let history = HistoryPolicy::new(
        config
            .hubs
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.history.clone()?))),
    );
    if config.redis_urls.is_empty() {
        return Arc::new(LocalBroker::new(history));
    }
    let c = &config.cluster;
    let settings = crate::cluster::redis::RedisSettings {
        urls: config.redis_urls.clone(),
        cluster: config.redis_cluster,
        node_id: config.node_id.clone(),
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        presence_ttl: Duration::from_millis(c.presence_ttl_ms),
        history_len: c.history_len,
        history_ttl: Duration::from_secs(c.history_ttl_secs),
        session_ttl: Duration::from_secs(c.session_ttl_secs),
        outbox_messages: config.limits.outbox_messages,
        outbox_bytes: config.limits.outbox_bytes,
        history,
    };
    crate::cluster::redis::RedisBroker::start(settings, shutdown.clone())
}

impl Inbound for Node {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn run(&self, hub: &str, cmd: &Command) {
        self.run_local(hub, cmd);
    }
}
