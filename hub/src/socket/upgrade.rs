//! The WebSocket handshake (RFC 6455 §4.2) as an axum extractor: it checks the upgrade
//! request, lets the handler pick a subprotocol and the socket's buffer limits, answers 101
//! and hands the upgraded connection to the session as a tokio-tungstenite [`Socket`].

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;
use tungstenite::protocol::Role;

use super::{Socket, WebSocketConfig};

/// Why a request is no WebSocket handshake (answered as an `InvalidRequest` error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong.
    pub message: &'static str,
}

/// A request to upgrade to a WebSocket.
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    offered: Vec<String>,
    selected: Option<HeaderValue>,
    config: WebSocketConfig,
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Refused> {
        let refuse = |status, message| Refused { status, message };
        if parts.method != Method::GET {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket handshake is a GET request",
            ));
        }
        let h = &parts.headers;
        if !has_token(h, header::CONNECTION, "upgrade")
            || !has_token(h, header::UPGRADE, "websocket")
        {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint takes WebSocket connections only (Connection: Upgrade, Upgrade: websocket)",
            ));
        }
        if !has_token(h, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Version must be 13",
            ));
        }
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the Sec-WebSocket-Key header is missing",
            ));
        };
        let offered = h
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            ));
        };
        Ok(WsUpgrade {
            key,
            on_upgrade,
            offered,
            selected: None,
            config: WebSocketConfig::default(),
        })
    }
}

/// Whether a comma-separated header holds `token` (any case).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl WsUpgrade {
    /// The subprotocols the client offered, in its order.
    pub fn offered(&self) -> &[String] {
        &self.offered
    }

    /// Answers with this subprotocol.
    pub fn select_protocol(&mut self, name: HeaderValue) {
        self.selected = Some(name);
    }

    /// The socket's buffer and message limits.
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// Answers 101 and runs `session` on the socket once the client has it.
    pub fn on_upgrade<F, Fut>(self, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let WsUpgrade {
            key,
            on_upgrade,
            selected,
            config,
            ..
        } = self;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    debug!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            session(socket).await;
        });
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(p) = selected {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
        }
        response
    }
}
