//! Abuse protection: token buckets for per-connection message and byte rates and per-caller
//! REST rates, and the connection budget (per node and per user). Every refusal names a
//! [`LimitKind`], which is also the label of the `nerve_limit_violations` metric, so an
//! operator sees which limit bites.

mod rate;
mod settings;

pub use rate::{Admission, ConnectionBudget, ConnectionRate, RestCaller, RestRate};
pub use settings::Limits;

use crate::metrics;

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
