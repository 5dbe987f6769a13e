//! The Azure Web PubSub JSON client protocols, as pure code with no I/O.
//!
//! `client_frame` parses what clients send; `server_frame` encodes what the hub sends, once per
//! message, as shared bytes. Both are unit-tested and fuzzed on their own.

pub mod client_frame;
pub mod payload;
pub mod server_frame;

pub use client_frame::{ClientFrame, FrameError, parse_client_frame};
pub use payload::{DataType, Payload, PayloadError};

/// The WebSocket subprotocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subprotocol {
    /// `json.webpubsub.azure.v1`
    Json,
    /// `json.reliable.webpubsub.azure.v1`
    JsonReliable,
    /// No (or an unknown) subprotocol: raw frames.
    Simple,
}

impl Subprotocol {
    /// Name of the non-reliable JSON subprotocol.
    pub const JSON: &'static str = "json.webpubsub.azure.v1";
    /// Name of the reliable JSON subprotocol.
    pub const JSON_RELIABLE: &'static str = "json.reliable.webpubsub.azure.v1";

    /// Chooses the first subprotocol we speak from the client's offer (comma-separated header
    /// values), or `Simple` when none matches.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Self {
        for p in offered {
            match p.trim() {
                Self::JSON => return Subprotocol::Json,
                Self::JSON_RELIABLE => return Subprotocol::JsonReliable,
                _ => {}
            }
        }
        Subprotocol::Simple
    }

    /// The name echoed in the handshake, if any.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Subprotocol::Json => Some(Self::JSON),
            Subprotocol::JsonReliable => Some(Self::JSON_RELIABLE),
            Subprotocol::Simple => None,
        }
    }

    /// Whether messages carry sequence ids and the session survives a dropped socket.
    pub fn is_reliable(self) -> bool {
        self == Subprotocol::JsonReliable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_first_known_protocol() {
        assert_eq!(
            Subprotocol::negotiate(["foo", "json.reliable.webpubsub.azure.v1"]),
            Subprotocol::JsonReliable
        );
        assert_eq!(
            Subprotocol::negotiate([" json.webpubsub.azure.v1"]),
            Subprotocol::Json
        );
        assert_eq!(Subprotocol::negotiate(["mqtt"]), Subprotocol::Simple);
        assert_eq!(Subprotocol::negotiate([]), Subprotocol::Simple);
    }
}
