//! The HTTP edge: routes, serving with graceful shutdown, the landing page, the operator
//! console, the WebSocket handshake, the REST API and how errors become responses.

pub mod client;
mod console;
pub mod error;
mod landing;
pub mod rest;

use std::net::SocketAddr;
use std::sync::Arc;
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

use crate::config::Config;
use crate::limits::LimitKind;
use crate::metrics;
use crate::node::Node;

/// How long shutdown waits for sessions to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The HTTP routes of the hub.
pub fn routes(node: Arc<Node>) -> HttpRouter {
    HttpRouter::new()
        .route("/", get(landing::page))
        .route("/client/hubs/{hub}", any(client::client_hub_path))
        .route("/client", any(client::client_hub_query))
        .route("/client/", any(client::client_hub_query))
        .route("/clients/mqtt/hubs/{hub}", any(client::client_mqtt))
        .route("/api/health", get(health).head(health))
        .merge(rest_routes(&node.config))
        .merge(crate::bus::routes(node.clone()))
        .merge(console::routes(node.clone()))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(node)
}

/// The REST API, behind CORS when `security.cors_origins` is set.
fn rest_routes(config: &Config) -> HttpRouter<Arc<Node>> {
    let rest = rest::routes();
    match crate::tls::cors_layer(&config.security.cors_origins) {
        Some(cors) => rest.layer(cors),
        None => rest,
    }
}

async fn health(State(node): State<Arc<Node>>) -> StatusCode {
    if node.is_serving() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn ready(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let ready = node.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": ready,
        "connections": node.registry.connection_count(),
        "node": node.broker.node_id(),
        "cluster": node.broker.is_ready(),
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

/// Serves the hub on `listener` until `node.shutdown` is cancelled, then closes every session
/// with a `disconnected` message and waits (briefly) for them to finish.
///
/// Connections are served by hyper directly rather than `axum::serve`, which has no timeout on
/// reading a request head: a client that trickles its headers (slowloris) or never sends any
/// is dropped after `limits.handshake_timeout_ms`.
pub async fn serve(node: Arc<Node>, listener: TcpListener) -> std::io::Result<()> {
    use hyper_util::rt::TokioTimer;

    let app = routes(node.clone());
    node.start_serving();
    let shutdown = node.shutdown.clone();
    // HTTP/1.1 only: WebSockets and the SDKs use it, and HTTP/2 has no request-head timeout.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(node.config.limits.handshake_timeout());
    let tls = match (&node.config.tls.cert_file, &node.config.tls.key_file) {
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
            head_timeout: node.config.limits.handshake_timeout(),
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
    node.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, node.tasks.wait())
        .await
        .is_err()
    {
        info!("shutdown grace period over; closing remaining connections");
    }
    node.broker.flush().await;
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
