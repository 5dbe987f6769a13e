//! The WebSocket subprotocols a connection can speak, how one is chosen from a client's offer,
//! and which codec speaks it.

use crate::codec::Codec;
use crate::codec::json::{JsonCodec, ReliableJsonCodec};
use crate::codec::mqtt;
use crate::codec::protobuf::{ProtobufCodec, ReliableProtobufCodec};
use crate::codec::raw::RawCodec;

/// Name of the non-reliable JSON subprotocol (also the agent socket's).
pub const JSON: &str = "json.webpubsub.azure.v1";
/// Name of the reliable JSON subprotocol.
pub const JSON_RELIABLE: &str = "json.reliable.webpubsub.azure.v1";
/// Name of the non-reliable protobuf subprotocol.
pub const PROTOBUF: &str = "protobuf.webpubsub.azure.v1";
/// Name of the reliable protobuf subprotocol.
pub const PROTOBUF_RELIABLE: &str = "protobuf.reliable.webpubsub.azure.v1";

/// The WebSocket subprotocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subprotocol {
    /// `json.webpubsub.azure.v1`
    Json,
    /// `json.reliable.webpubsub.azure.v1`
    JsonReliable,
    /// `protobuf.webpubsub.azure.v1`
    Protobuf,
    /// `protobuf.reliable.webpubsub.azure.v1`
    ProtobufReliable,
    /// No (or an unknown) subprotocol: raw frames.
    Simple,
    /// `mqtt` at protocol level 4, on the MQTT endpoint only.
    Mqtt311,
    /// `mqtt` at protocol level 5, on the MQTT endpoint only.
    Mqtt5,
}

impl Subprotocol {
    /// Every Web PubSub subprotocol, in the order an offer is matched against (MQTT is served
    /// on its own endpoint, so an offer of `mqtt` on the Web PubSub one is no match).
    pub const ALL: [Subprotocol; 5] = [
        Subprotocol::Json,
        Subprotocol::JsonReliable,
        Subprotocol::Protobuf,
        Subprotocol::ProtobufReliable,
        Subprotocol::Simple,
    ];

    /// Chooses the first subprotocol we speak from the client's offer (comma-separated header
    /// values), or `Simple` when none matches.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Self {
        for p in offered {
            let p = p.trim();
            if let Some(known) = Self::ALL.into_iter().find(|s| s.name() == Some(p)) {
                return known;
            }
        }
        Subprotocol::Simple
    }

    /// The codec that reads and writes this subprotocol's frames.
    pub fn codec(self) -> &'static dyn Codec {
        match self {
            Subprotocol::Json => &JsonCodec,
            Subprotocol::JsonReliable => &ReliableJsonCodec,
            Subprotocol::Protobuf => &ProtobufCodec,
            Subprotocol::ProtobufReliable => &ReliableProtobufCodec,
            Subprotocol::Simple => &RawCodec,
            Subprotocol::Mqtt311 => &mqtt::MQTT311,
            Subprotocol::Mqtt5 => &mqtt::MQTT5,
        }
    }

    /// The name echoed in the handshake, if any.
    pub fn name(self) -> Option<&'static str> {
        self.codec().subprotocol()
    }

    /// The MQTT version, for MQTT connections.
    pub fn mqtt_version(self) -> Option<mqtt::Version> {
        match self {
            Subprotocol::Mqtt311 => Some(mqtt::Version::V311),
            Subprotocol::Mqtt5 => Some(mqtt::Version::V5),
            _ => None,
        }
    }

    /// The subprotocol of an MQTT connection of `version`.
    pub fn mqtt(version: mqtt::Version) -> Self {
        match version {
            mqtt::Version::V311 => Subprotocol::Mqtt311,
            mqtt::Version::V5 => Subprotocol::Mqtt5,
        }
    }

    /// Whether messages carry sequence ids and the session survives a dropped socket.
    pub fn is_reliable(self) -> bool {
        self.codec().is_reliable()
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

    #[test]
    fn names_and_reliability_come_from_the_codecs() {
        assert_eq!(Subprotocol::Json.name(), Some(JSON));
        assert_eq!(Subprotocol::JsonReliable.name(), Some(JSON_RELIABLE));
        assert_eq!(Subprotocol::Simple.name(), None);
        assert!(Subprotocol::JsonReliable.is_reliable());
        assert!(!Subprotocol::Json.is_reliable());
    }
}
