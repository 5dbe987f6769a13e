//! The HTTP server: shared state, routes, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::AccessKeys;
use crate::cluster::{Broker, LocalBroker};
use crate::config::Config;
use crate::limits::{ConnectionBudget, LimitKind, RestRate};
use crate::metrics;
use crate::registry::Registry;
use crate::transport;
use crate::upstream::{Upstream, UpstreamSetup};

/// How long shutdown waits for sessions to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything handlers and sessions share.
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    /// Access keys for tokens.
    pub keys: AccessKeys,
    /// Connections, users and groups.
    pub router: Registry,
    /// Upstream event handlers (CloudEvents webhooks).
    pub upstream: Arc<Upstream>,
    /// How messages and registry operations reach other nodes.
    pub broker: Arc<dyn Broker>,
    /// Cancelled when the hub shuts down.
    pub shutdown: CancellationToken,
    /// Every session task, awaited on shutdown.
    pub tasks: TaskTracker,
    /// Client connections admitted, per node and per user.
    pub budget: ConnectionBudget,
    /// REST request rates per caller.
    pub rest_rate: RestRate,
    ready: AtomicBool,
    public_host: Option<String>,
}

impl AppState {
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
        let state = Arc::new(AppState {
            keys: AccessKeys::new(config.access_keys.clone()),
            upstream: Arc::new(Upstream::new(upstream_setup(&config))),
            config,
            router: Registry::with_membership(broker.clone()),
            broker,
            shutdown,
            tasks: TaskTracker::new(),
            budget,
            rest_rate,
            ready: AtomicBool::new(false),
            public_host,
        });
        state.broker.attach(Arc::downgrade(&state));
        state
    }

    /// Host of the configured public endpoint, if any (lowercase).
    pub fn public_host(&self) -> Option<&str> {
        self.public_host.as_deref()
    }

    /// Whether the hub serves (liveness): started and not shutting down.
    pub fn is_serving(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.shutdown.is_cancelled()
    }

    /// Whether the hub should get traffic (readiness): serving, and in a cluster, reaching
    /// the other nodes through Redis.
    pub fn is_ready(&self) -> bool {
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
    if config.redis_urls.is_empty() {
        return Arc::new(LocalBroker);
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
    };
    crate::cluster::redis::RedisBroker::start(settings, shutdown.clone())
}

/// The HTTP routes of the hub.
pub fn routes(state: Arc<AppState>) -> HttpRouter {
    HttpRouter::new()
        .route("/client/hubs/{hub}", any(transport::client_hub_path))
        .route("/client", any(transport::client_hub_query))
        .route("/client/", any(transport::client_hub_query))
        .route("/api/health", get(health).head(health))
        .merge(rest_routes(&state.config))
        .merge(crate::bridge::routes(state.clone()))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

/// The REST API, behind CORS when `security.cors_origins` is set.
fn rest_routes(config: &Config) -> HttpRouter<Arc<AppState>> {
    let rest = crate::rest::routes();
    match crate::tls::cors_layer(&config.security.cors_origins) {
        Some(cors) => rest.layer(cors),
        None => rest,
    }
}

async fn health(State(app): State<Arc<AppState>>) -> StatusCode {
    if app.is_serving() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn ready(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let ready = app.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": ready,
        "connections": app.router.connection_count(),
        "node": app.broker.node_id(),
        "cluster": app.broker.is_ready(),
    });
    (status, axum::Json(body))
}

async fn render_metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::global().render(),
    )
}

/// Serves the hub on `listener` until `state.shutdown` is cancelled, then closes every session
/// with a `disconnected` message and waits (briefly) for them to finish.
///
/// Connections are served by hyper directly rather than `axum::serve`, which has no timeout on
/// reading a request head: a client that trickles its headers (slowloris) or never sends any
/// is dropped after `limits.handshake_timeout_ms`.
pub async fn serve(state: Arc<AppState>, listener: TcpListener) -> std::io::Result<()> {
    use hyper_util::rt::TokioTimer;

    let app = routes(state.clone());
    state.ready.store(true, Ordering::Relaxed);
    let shutdown = state.shutdown.clone();
    // HTTP/1.1 only: WebSockets and the SDKs use it, and HTTP/2 has no request-head timeout.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.limits.handshake_timeout());
    let tls = match (&state.config.tls.cert_file, &state.config.tls.key_file) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::acceptor(cert, key).map_err(std::io::Error::other)?)
        }
        _ => None,
    };
    let connections = TaskTracker::new();
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY, a second small frame written before the client acknowledged the
        // first (a reply then its ack) waits for the client's delayed ACK: about 40 ms.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<_>| {
            use tower::Service;
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo::<SocketAddr>(remote));
            app.clone().call(req)
        });
        let connection = HttpConnection {
            builder: builder.clone(),
            tls: tls.clone(),
            head_timeout: state.config.limits.handshake_timeout(),
            shutdown: shutdown.clone(),
        };
        connections.spawn(connection.serve(tcp, service));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        info!("shutdown grace period over; closing remaining HTTP connections");
    }
    state.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait())
        .await
        .is_err()
    {
        info!("shutdown grace period over; closing remaining connections");
    }
    state.broker.flush().await;
    Ok(())
}

/// What serving one accepted TCP connection needs.
struct HttpConnection {
    builder: hyper::server::conn::http1::Builder,
    tls: Option<tokio_rustls::TlsAcceptor>,
    head_timeout: Duration,
    shutdown: CancellationToken,
}

impl HttpConnection {
    /// Serves HTTP/1.1 (and WebSocket upgrades) on `tcp`, over TLS when configured; a client
    /// that sends no byte, or no complete TLS handshake or request head in time, is dropped.
    async fn serve<S>(self, tcp: tokio::net::TcpStream, service: S)
    where
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        use tokio_util::either::Either;
        // hyper's header timeout starts with the request head; a client that connects and
        // never sends a byte is bounded here.
        let mut first = [0u8; 1];
        if tokio::time::timeout(self.head_timeout, tcp.peek(&mut first))
            .await
            .is_err()
        {
            LimitKind::HandshakeTimeout.count();
            return;
        }
        let io = match self.tls {
            None => Either::Left(tcp),
            Some(acceptor) => {
                match tokio::time::timeout(self.head_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => Either::Right(s),
                    Ok(Err(e)) => {
                        debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        LimitKind::HandshakeTimeout.count();
                        return;
                    }
                }
            }
        };
        let conn = self
            .builder
            .serve_connection(hyper_util::rt::TokioIo::new(io), service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if result.as_ref().is_err_and(hyper::Error::is_timeout) {
            LimitKind::HandshakeTimeout.count();
        }
    }
}
