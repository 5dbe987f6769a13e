//! HTTP errors in the service's shape: a JSON body `{code, message}` (plus `details` when
//! Nerve has more to say than the service's message) and `x-ms-error-code`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::limits::{LimitKind, Limits};

/// An error answered over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (also sent as `x-ms-error-code`).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// A further explanation, where `message` is worded as the service words it.
    pub detail: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Detail<'a>>,
}

/// One entry of `details`, shaped as the error itself (the Azure error model).
#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// The same error with a further explanation in `details`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code,
            message: &self.message,
            details: self
                .detail
                .iter()
                .map(|message| Detail {
                    code: self.code,
                    message,
                })
                .collect(),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut()
            .insert("x-ms-error-code", HeaderValue::from_static(self.code));
        resp
    }
}

/// The HTTP answer to a handshake over a connection limit: 503 for the node, 429 for a user.
pub fn refused_connection(kind: LimitKind, limits: &Limits) -> Response {
    let err = match kind {
        LimitKind::UserConnections => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyConnections",
            format!(
                "this user already has {} connections on this node, the limit",
                limits.max_connections_per_user
            ),
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServerBusy",
            format!(
                "this node holds {} connections, its limit; try another node or later",
                limits.max_connections
            ),
        ),
    };
    err.into_response()
}

/// The HTTP answer to a REST call over its caller's rate: 429 with `Retry-After`.
pub fn rest_rate_refused(retry: Duration) -> Response {
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "too many REST requests for this access key (or failed authentications from this address); slow down and retry",
    )
    .into_response();
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry.as_secs().max(1)),
    );
    resp
}

/// A request to a WebSocket endpoint that is no WebSocket handshake.
impl IntoResponse for crate::socket::upgrade::Refused {
    fn into_response(self) -> Response {
        ApiError::new(self.status, "InvalidRequest", self.message).into_response()
    }
}
