//! Upstream event handlers: the hub tells the application's webhook what clients do, as
//! CloudEvents over HTTP, the way the service does.
//!
//! `connect` and user events are blocking (their reply matters); `connected`, `disconnected`
//! and group joined/left are notifications sent in the background with retries. Every call
//! has a timeout, and every handler passes the OPTIONS validation handshake once before its
//! first event.

pub mod cloudevents;
pub mod connect;
mod notify;
pub mod pipe;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use nerve_protocol::{DataType, Metadata, Payload};
use tracing::{Instrument, debug, warn};

use crate::auth::AccessKeys;

pub use cloudevents::EventContext;
pub use connect::{ConnectOutcome, ConnectRefused, ConnectRequest, ConnectResponse};
pub use notify::Notice;
pub use pipe::{EventPipe, Job, PipeReply};
pub use settings::{EventHandlerSettings, EventKind, UpstreamSettings};

/// Why an upstream call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No handler of the hub takes this event.
    #[error("no event handler is configured for event '{0}'")]
    NoHandler(String),
    /// The handler did not answer in time.
    #[error("the event handler did not answer within {0} ms")]
    Timeout(u64),
    /// The handler answered with a non-2xx status.
    #[error("the event handler answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the reply body.
        body: String,
    },
    /// The handler could not be reached, or its reply was unusable.
    #[error("cannot use the event handler: {0}")]
    Unreachable(String),
    /// The handler refused the OPTIONS validation handshake.
    #[error("the event handler at {0} did not pass the validation handshake")]
    NotValidated(String),
}

/// A successful (2xx) upstream reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Content-Type, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
    /// `ce-connectionState`, if the reply set it.
    pub state: Option<String>,
}

/// What the hub remembers per connection for its upstream.
#[derive(Debug, Clone, Default)]
struct ConnInfo {
    subprotocol: Option<Arc<str>>,
    state: Option<String>,
}

/// The upstream client of a node: handlers per hub, an HTTP client and the notification queue.
pub struct Upstream {
    http: reqwest::Client,
    settings: UpstreamSettings,
    handlers: BTreeMap<String, Vec<EventHandlerSettings>>,
    keys: AccessKeys,
    origin: String,
    max_body: usize,
    validated: DashMap<String, ()>,
    conns: DashMap<Arc<str>, ConnInfo>,
    notifier: OnceLock<notify::Queues>,
}

/// What the upstream client is built from (the node gathers it from the configuration).
pub struct UpstreamSetup {
    /// The `[upstream]` section.
    pub settings: UpstreamSettings,
    /// Event handlers per hub (lowercase hub name).
    pub handlers: BTreeMap<String, Vec<EventHandlerSettings>>,
    /// Access keys, which sign every event (`ce-signature`).
    pub keys: AccessKeys,
    /// The hub's public endpoint, whose host is the events' origin.
    pub public_endpoint: Option<String>,
    /// The listen address, the origin when there is no public endpoint.
    pub listen_ip: String,
    /// Largest event body read from a handler.
    pub max_body: usize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({} hubs)", self.handlers.len())
    }
}

impl Upstream {
    /// Builds the client.
    pub fn new(setup: UpstreamSetup) -> Self {
        let timeout = Duration::from_millis(setup.settings.timeout_ms);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = &setup.settings.ca_file {
            // Checked when the configuration was loaded; a file changed since is reported.
            match settings::extra_roots(path) {
                Ok(roots) => {
                    for root in roots {
                        builder = builder.add_root_certificate(root);
                    }
                }
                Err(e) => tracing::error!(error = %e, "extra upstream roots not loaded"),
            }
        }
        let http = builder.build().unwrap_or_else(|e| {
            tracing::error!(error = %e, "upstream HTTP client with default settings");
            reqwest::Client::default()
        });
        let origin = match &setup.public_endpoint {
            Some(e) => host_of(e),
            None => setup.listen_ip,
        };
        Upstream {
            http,
            settings: setup.settings,
            handlers: setup
                .handlers
                .into_iter()
                .filter(|(_, h)| !h.is_empty())
                .collect(),
            keys: setup.keys,
            origin,
            max_body: setup.max_body,
            validated: DashMap::new(),
            conns: DashMap::new(),
            notifier: OnceLock::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// Whether the hub has any event handler.
    pub fn has_handlers(&self, hub: &str) -> bool {
        self.handlers.contains_key(hub)
    }

    /// The first handler of `hub` that takes `event`.
    pub fn handler(&self, hub: &str, event: EventKind<'_>) -> Option<&EventHandlerSettings> {
        self.handlers.get(hub)?.iter().find(|h| h.handles(event))
    }

    /// Whether some handler of `hub` takes `event`.
    pub fn handles(&self, hub: &str, event: EventKind<'_>) -> bool {
        self.handler(hub, event).is_some()
    }

    /// Remembers a new connection's subprotocol and connection state (for hubs with handlers).
    pub fn register(
        &self,
        conn: &EventContext,
        subprotocol: Option<String>,
        state: Option<String>,
    ) {
        if !self.has_handlers(&conn.hub) {
            return;
        }
        self.conns.insert(
            conn.connection_id.clone(),
            ConnInfo {
                subprotocol: subprotocol.map(Arc::from),
                state,
            },
        );
    }

    /// The event context of a connection: its identity, with the subprotocol a connect
    /// handler chose for it, if any.
    pub fn context(&self, mut conn: EventContext) -> EventContext {
        if let Some(i) = self.conns.get(&conn.connection_id) {
            conn.subprotocol = i.subprotocol.clone();
        }
        conn
    }

    /// Sends the blocking `connect` event. `Ok(None)` when no handler takes it.
    pub async fn connect(
        &self,
        ctx: &EventContext,
        request: &ConnectRequest,
    ) -> Result<Option<ConnectOutcome>, ConnectRefused> {
        if !self.handles(&ctx.hub, EventKind::Connect) {
            return Ok(None);
        }
        let body = serde_json::to_vec(request).unwrap_or_default();
        let reply = match self
            .post(
                ctx,
                EventKind::Connect,
                "application/json",
                body.into(),
                None,
                &Metadata::default(),
            )
            .await
        {
            Ok(r) => r,
            Err(UpstreamError::Status { status, body }) => {
                let status = axum::http::StatusCode::from_u16(status)
                    .ok()
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                return Err(ConnectRefused {
                    status,
                    message: if body.is_empty() {
                        "The connect event handler refused the connection".into()
                    } else {
                        body
                    },
                });
            }
            Err(e) => {
                warn!(hub = %ctx.hub, error = %e, "connect event failed");
                return Err(ConnectRefused {
                    status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    message: format!("The connect event failed: {e}"),
                });
            }
        };
        let response = if reply.status == 204 || reply.body.iter().all(u8::is_ascii_whitespace) {
            ConnectResponse::default()
        } else {
            serde_json::from_slice(&reply.body).map_err(|e| ConnectRefused {
                status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("The connect event handler sent an invalid reply: {e}"),
            })?
        };
        Ok(Some(ConnectOutcome {
            response,
            state: reply.state,
        }))
    }

    /// Sends a blocking user event; returns the payload to relay to the client, if any.
    pub async fn user_event(
        &self,
        ctx: &EventContext,
        event: &str,
        payload: &Payload,
    ) -> Result<Option<Payload>, UpstreamError> {
        let (ct, body) = match payload.data_type {
            DataType::Json => ("application/json", payload.json.clone()),
            DataType::Text => ("text/plain; charset=utf-8", payload.raw.clone()),
            DataType::Binary => ("application/octet-stream", payload.raw.clone()),
            DataType::Protobuf => ("application/x-protobuf", payload.raw.clone()),
        };
        let state = self
            .conns
            .get(&ctx.connection_id)
            .and_then(|i| i.state.clone());
        let reply = self
            .post(
                ctx,
                EventKind::User(event),
                ct,
                body,
                state,
                &payload.metadata,
            )
            .await?;
        if let Some(s) = reply.state
            && let Some(mut i) = self.conns.get_mut(&ctx.connection_id)
        {
            i.state = Some(s);
        }
        if reply.status == 204 || reply.body.is_empty() {
            return Ok(None);
        }
        Ok(Some(reply_payload(
            reply.content_type.as_deref(),
            reply.body,
        )))
    }

    /// Queues a non-blocking notification (no-op when no handler takes it). Never waits.
    pub fn notify(self: &Arc<Self>, ctx: EventContext, notice: Notice) {
        if !self.handles(&ctx.hub, notice.kind()) {
            return;
        }
        let state = self
            .conns
            .get(&ctx.connection_id)
            .and_then(|i| i.state.clone());
        notify::enqueue(self, ctx, notice, state);
    }

    /// Sends `disconnected` for a finished connection and forgets it.
    pub fn disconnected(self: &Arc<Self>, conn: EventContext, reason: &str) {
        if !self.has_handlers(&conn.hub) {
            return;
        }
        let id = conn.connection_id.clone();
        let ctx = self.context(conn);
        self.notify(
            ctx,
            Notice::Disconnected {
                reason: reason.to_string(),
            },
        );
        self.conns.remove(&id);
    }

    /// POSTs one event to its handler (validating the handler first) and reads the reply;
    /// every call is counted in the upstream metrics by outcome.
    pub async fn post(
        &self,
        ctx: &EventContext,
        event: EventKind<'_>,
        content_type: &str,
        body: Bytes,
        state: Option<String>,
        metadata: &Metadata,
    ) -> Result<Reply, UpstreamError> {
        let span = crate::request_span!(
            "upstream",
            otel.name = %format_args!("upstream {}", event.name()),
            otel.kind = "client",
            hub = %ctx.hub,
            event = event.name(),
            connection_id = %ctx.connection_id,
            user = ctx.user_id.as_deref().unwrap_or(""),
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result = self
            .call(ctx, event, content_type, body, state, metadata)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(UpstreamError::NoHandler(_)) => Err("no_handler"),
            Err(UpstreamError::Timeout(_)) => Err("timeout"),
            Err(UpstreamError::Status { .. }) => Err("status"),
            Err(UpstreamError::Unreachable(_)) => Err("unreachable"),
            Err(UpstreamError::NotValidated(_)) => Err("not_validated"),
        };
        // The outcome's kind only: error texts can hold the handler URL and its query keys.
        span.record("outcome", outcome.err().unwrap_or("ok"));
        if outcome.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        crate::metrics::global().upstream_call(outcome);
        result
    }

    async fn call(
        &self,
        ctx: &EventContext,
        event: EventKind<'_>,
        content_type: &str,
        body: Bytes,
        state: Option<String>,
        metadata: &Metadata,
    ) -> Result<Reply, UpstreamError> {
        let handler = self
            .handler(&ctx.hub, event)
            .ok_or_else(|| UpstreamError::NoHandler(event.name().to_string()))?;
        self.validate(handler, &ctx.hub).await?;
        let url = cloudevents::resolve_url(&handler.url_template, &ctx.hub, event.name());
        let mut req = self
            .http
            .post(&url)
            .timeout(self.timeout())
            .header("content-type", content_type)
            .body(body);
        for (k, v) in
            cloudevents::headers(event, ctx, &self.origin, self.keys.all(), state.as_deref())
        {
            req = req.header(k, v);
        }
        // The message's metadata, one header per entry, as the service forwards it.
        for (k, v) in metadata.iter() {
            let name = format!(
                "{}{}",
                nerve_protocol::metadata::HEADER_PREFIX,
                k.to_ascii_lowercase()
            );
            req = req.header(name, v);
        }
        // CloudEvents distributed tracing, binary mode: the W3C headers of the hub's span.
        for (k, v) in crate::telemetry::current_headers() {
            req = req.header(k, v);
        }
        debug!(%url, event = event.name(), "upstream call");
        let resp = req.send().await.map_err(|e| self.error(e))?;
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type");
        let state =
            header("ce-connectionstate").filter(|s| s.len() <= cloudevents::MAX_STATE_BYTES);
        let body = self.read_body(resp).await?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(UpstreamError::Status { status, body: text });
        }
        Ok(Reply {
            status,
            content_type,
            body,
            state,
        })
    }

    /// The OPTIONS handshake: once per handler URL, remembered after it succeeds.
    async fn validate(
        &self,
        handler: &EventHandlerSettings,
        hub: &str,
    ) -> Result<(), UpstreamError> {
        let url = cloudevents::resolve_url(&handler.url_template, hub, "validate");
        if self.validated.contains_key(&url) {
            return Ok(());
        }
        let resp = self
            .http
            .request(reqwest::Method::OPTIONS, &url)
            .timeout(self.timeout())
            .header("webhook-request-origin", &self.origin)
            .header("ce-awpsversion", "1.0")
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let allowed = resp
            .headers()
            .get_all("webhook-allowed-origin")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|o| origin_allowed(o.trim(), &self.origin));
        if resp.status().is_success() && allowed {
            self.validated.insert(url, ());
            Ok(())
        } else {
            warn!(%url, status = resp.status().as_u16(), "event handler failed the validation handshake");
            Err(UpstreamError::NotValidated(url))
        }
    }

    async fn read_body(&self, mut resp: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.error(e))? {
            if buf.len() + chunk.len() > self.max_body {
                return Err(UpstreamError::Unreachable(format!(
                    "the reply is larger than {} bytes",
                    self.max_body
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    fn error(&self, e: reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            UpstreamError::Timeout(self.settings.timeout_ms)
        } else {
            UpstreamError::Unreachable(e.to_string())
        }
    }
}

/// Turns an upstream reply body into a payload by its Content-Type (binary when unknown).
pub fn reply_payload(content_type: Option<&str>, body: Bytes) -> Payload {
    let dt = content_type
        .and_then(DataType::from_content_type)
        .unwrap_or(DataType::Binary);
    Payload::from_body(dt, body.clone()).unwrap_or_else(|_| match std::str::from_utf8(&body) {
        Ok(s) => Payload::text(s),
        Err(_) => Payload::binary(body),
    })
}

/// Whether a `WebHook-Allowed-Origin` entry admits `origin`: `*`, or the same host (a port or
/// scheme in the entry is ignored; loopback names are interchangeable).
fn origin_allowed(entry: &str, origin: &str) -> bool {
    if entry == "*" {
        return true;
    }
    let host = host_of(entry);
    let loopback = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "[::1]" | "::1");
    host == origin.to_ascii_lowercase() || (loopback(&host) && loopback(origin))
}

fn host_of(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(endpoint);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h.to_ascii_lowercase(),
        _ => authority.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_payloads_follow_content_type() {
        let p = reply_payload(
            Some("application/json; charset=utf-8"),
            Bytes::from_static(b"{\"a\":1}"),
        );
        assert_eq!(p.data_type, DataType::Json);
        let p = reply_payload(Some("text/plain; charset=utf-8"), Bytes::from_static(b"hi"));
        assert_eq!(p.data_type, DataType::Text);
        let p = reply_payload(None, Bytes::from_static(&[0, 1]));
        assert_eq!(p.data_type, DataType::Binary);
        let p = reply_payload(Some("application/json"), Bytes::from_static(b"not json"));
        assert_eq!(p.data_type, DataType::Text);
        assert_eq!(host_of("https://Pub.Example:8443/x"), "pub.example");
        assert_eq!(host_of("http://h"), "h");
        assert!(origin_allowed("*", "x"));
        assert!(origin_allowed("pub.example:8080", "pub.example"));
        assert!(origin_allowed("localhost:3000", "127.0.0.1"));
        assert!(!origin_allowed("evil.example", "pub.example"));
    }
}
