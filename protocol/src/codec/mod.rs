//! The seam between a session and a wire encoding. A session reads every client frame through
//! [`Codec::decode`] and writes every frame through [`Codec::encode`], so it thinks in typed
//! frames, never in JSON. Each subprotocol is one module implementing the trait: [`json`] for
//! `json.webpubsub.azure.v1` and `json.reliable.webpubsub.azure.v1`, [`protobuf`] for
//! `protobuf.webpubsub.azure.v1` and `protobuf.reliable.webpubsub.azure.v1`, [`raw`] for simple
//! WebSocket clients, and [`mqtt`] for MQTT 3.1.1 and 5.0 (whose packets a session reads through
//! its own packet reader, since MQTT is a byte stream, not one packet per frame).
//!
//! Fan-out encodes a message once per [`Encoding`], not once per recipient: codecs that lay a
//! message out alike (the two JSON protocols) report the same encoding and share its bytes, and
//! a reliable codec numbers the shared frame per connection with [`Codec::sequence`].

pub mod json;
pub mod mqtt;
pub mod protobuf;
pub mod raw;

use bytes::Bytes;

use crate::client_frame::{ClientFrame, FrameError};
use crate::close;
use crate::payload::Payload;
use crate::server_frame::ServerFrame;

/// One WebSocket data frame, borrowed: what a client sent, or an encoded message to number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRef<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame.
    Binary(&'a Bytes),
}

/// One encoded WebSocket data frame, to write (and, for messages, to share among recipients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

/// What one client frame asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A protocol frame (join, send, event, …).
    Frame(ClientFrame),
    /// A simple client's frame: the whole frame is the data; the connection's mode says what
    /// to do with it.
    Raw(Payload),
}

/// Why a client frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame is malformed or invalid; answered on its ack id when it had one.
    #[error("{0}")]
    Invalid(#[from] FrameError),
    /// A binary frame on a text protocol.
    #[error("Binary frames are not part of the JSON protocol; send JSON text frames")]
    UnsupportedData,
    /// A text frame on a binary protocol.
    #[error("Text frames are not part of the protobuf protocol; send binary protobuf frames")]
    TextOnBinaryProtocol,
    /// MQTT packets are a byte stream, read with [`mqtt::PacketReader`], not frame by frame.
    #[error("MQTT packets are read as a stream, not one per frame")]
    PacketStream,
}

impl DecodeError {
    /// The close code for this error when the connection is closed over it.
    pub fn close_code(&self) -> u16 {
        match self {
            DecodeError::Invalid(_) => close::INVALID_PAYLOAD,
            DecodeError::UnsupportedData
            | DecodeError::TextOnBinaryProtocol
            | DecodeError::PacketStream => close::UNSUPPORTED_DATA,
        }
    }
}

/// How a codec lays out a message; codecs with the same encoding write the same bytes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The JSON `type:"message"` frame, without `sequenceId`.
    Json,
    /// The payload alone: text or binary, as a simple client gets it.
    Raw,
    /// A `DownstreamMessage` carrying a `DataMessage`, without `sequence_id`.
    Protobuf,
    /// An MQTT 3.1.1 PUBLISH at QoS 1, before a connection's packet id and QoS.
    Mqtt311,
    /// An MQTT 5.0 PUBLISH at QoS 1 with its content type, before a connection's packet id and
    /// QoS.
    Mqtt5,
}

/// A wire encoding of the Web PubSub client protocol, as a session uses it.
pub trait Codec: Send + Sync {
    /// The subprotocol echoed in the handshake; `None` for simple clients.
    fn subprotocol(&self) -> Option<&'static str>;

    /// How this codec lays out messages, so a message is encoded once per encoding.
    fn encoding(&self) -> Encoding;

    /// Whether messages carry sequence ids and the session outlives a dropped socket.
    fn is_reliable(&self) -> bool {
        false
    }

    /// Reads one frame from the client.
    fn decode(&self, frame: FrameRef<'_>) -> Result<Request, DecodeError>;

    /// Writes one frame for the client; `None` when the protocol has no such frame (a simple
    /// client gets messages only).
    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Frame>;

    /// Numbers a message this codec encoded, for one reliable connection; `None` when the
    /// protocol has no sequence ids.
    fn sequence(&self, message: FrameRef<'_>, sequence_id: u64) -> Option<Frame> {
        let _ = (message, sequence_id);
        None
    }
}
