//! Abuse protection: token buckets for per-connection message and byte rates and per-caller
//! REST rates, and the connection budget (per node and per user). Every refusal names a
//! [`LimitKind`], which is also the label of the `nerve_limit_violations` metric, so an
//! operator sees which limit bites.

mod rate;
mod settings;

pub use rate::{Admission, ConnectionBudget, ConnectionRate, RestCaller, RestRate, TokenBucket};
pub use settings::Limits;

use std::time::Duration;

use crate::socket::{Message, Socket};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::metrics;
use crate::protocol::server_frame::ErrorName;
use crate::registry::Connection;
use crate::session::{End, Session};

/// Which limit was hit (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Client frames per second on one connection.
    MessageRate,
    /// Client bytes per second on one connection.
    ByteRate,
    /// REST requests per second from one caller.
    RestRate,
    /// Client connections on this node.
    NodeConnections,
    /// Client connections of one user on this node.
    UserConnections,
    /// Groups one connection is in.
    Groups,
    /// An HTTP request whose headers did not arrive in time.
    HandshakeTimeout,
}

impl LimitKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::MessageRate => "message_rate",
            LimitKind::ByteRate => "byte_rate",
            LimitKind::RestRate => "rest_rate",
            LimitKind::NodeConnections => "node_connections",
            LimitKind::UserConnections => "user_connections",
            LimitKind::Groups => "groups",
            LimitKind::HandshakeTimeout => "handshake_timeout",
        }
    }

    /// Counts one violation of this limit.
    pub fn count(self) {
        metrics::global().limit_violation(self.label());
    }
}

/// Close code: the client broke a policy (its message or byte rate).
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

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

/// Refuses a join that would put `conn` in more groups than allowed (a `Forbidden` ack).
pub fn check_group_count(
    conn: &Connection,
    group: &str,
    limits: &Limits,
) -> Result<(), (ErrorName, String)> {
    let max = limits.max_groups_per_connection;
    if max == 0 || conn.in_group(group) || conn.groups.lock().len() < max {
        return Ok(());
    }
    LimitKind::Groups.count();
    Err((
        ErrorName::Forbidden,
        format!("a connection may be in at most {max} groups; leave one first"),
    ))
}

impl Session {
    /// Accounts a received frame against the connection's rates; over them, the client is
    /// told why and the connection closes with 1008.
    pub(crate) async fn enforce_rate(
        &mut self,
        socket: &mut Socket,
        msg: &Option<Result<Message, crate::socket::Error>>,
    ) -> Option<End> {
        let len = match msg {
            Some(Ok(Message::Text(t))) => t.len(),
            Some(Ok(Message::Binary(b))) => b.len(),
            _ => return None,
        };
        let kind = self.rate.check(len).err()?;
        kind.count();
        let limits = &self.app.config.limits;
        let reason = match kind {
            LimitKind::ByteRate => format!(
                "Rate limit: more than {} bytes per second",
                limits.bytes_per_sec
            ),
            _ => format!(
                "Rate limit: more than {} messages per second",
                limits.messages_per_sec
            ),
        };
        self.close(socket, &reason, CLOSE_POLICY_VIOLATION).await;
        Some(End::Finished)
    }
}
