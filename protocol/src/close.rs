//! The one table of how the hub says no: the WebSocket close codes it ends connections with,
//! and the error names of failed acks, invoke responses and stream closes. Clients compare
//! against the same constants, so a code or a name cannot drift between the two sides.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Close code: the hub is going away (shutdown, idle socket, session moved); clients reconnect.
pub const GOING_AWAY: u16 = 1001;
/// Close code: a frame of a type the protocol has no use for (binary on a JSON protocol).
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Close code: a frame that could not be understood (not JSON, not UTF-8, missing fields).
pub const INVALID_PAYLOAD: u16 = 1007;
/// Close code 1008 (policy violation): the session is over and a reliable client must not try
/// to recover it, only connect afresh. Every refusal that ends a session uses it (rate limit,
/// permission, full buffer, closed by REST, unknown session).
pub const NO_RECOVERY: u16 = 1008;
/// Close code: a message over the size limit.
pub const TOO_BIG: u16 = 1009;
/// Close code: the node cannot take the connection now; the client may retry (elsewhere).
pub const TRY_AGAIN_LATER: u16 = 1013;

/// The error name of a failed request, as the `name` of an `error` object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorName {
    /// The caller lacks the role.
    Forbidden,
    /// The ack id was used before on this connection.
    Duplicate,
    /// The frame or the operation's data is malformed or invalid.
    BadRequest,
    /// Nothing handles the request (no event handler, no such task or operation).
    NotFound,
    /// The answer did not come in time.
    Timeout,
    /// The hub failed.
    InternalServerError,
    /// Not possible in the current state (a terminal task, a second registration).
    Conflict,
    /// A backing service (the bus's Redis) cannot be reached; retry.
    Unavailable,
    /// The token is missing or invalid.
    Unauthorized,
}

impl ErrorName {
    /// Every name, for parsing and tests.
    pub const ALL: [ErrorName; 9] = [
        ErrorName::Forbidden,
        ErrorName::Duplicate,
        ErrorName::BadRequest,
        ErrorName::NotFound,
        ErrorName::Timeout,
        ErrorName::InternalServerError,
        ErrorName::Conflict,
        ErrorName::Unavailable,
        ErrorName::Unauthorized,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorName::Forbidden => "Forbidden",
            ErrorName::Duplicate => "Duplicate",
            ErrorName::BadRequest => "BadRequest",
            ErrorName::NotFound => "NotFound",
            ErrorName::Timeout => "Timeout",
            ErrorName::InternalServerError => "InternalServerError",
            ErrorName::Conflict => "Conflict",
            ErrorName::Unavailable => "Unavailable",
            ErrorName::Unauthorized => "Unauthorized",
        }
    }

    /// The name for its wire form, if it is one of ours.
    pub fn parse(name: &str) -> Option<ErrorName> {
        ErrorName::ALL.into_iter().find(|n| n.as_str() == name)
    }
}

impl fmt::Display for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ErrorName::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error name `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in ErrorName::ALL {
            assert_eq!(ErrorName::parse(n.as_str()), Some(n));
            assert_eq!(
                serde_json::to_value(n).ok(),
                Some(serde_json::Value::from(n.as_str()))
            );
        }
        assert_eq!(ErrorName::parse("Nope"), None);
    }
}
