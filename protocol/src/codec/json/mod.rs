//! The JSON subprotocols: `json.webpubsub.azure.v1`, and `json.reliable.webpubsub.azure.v1`,
//! which is the same frames plus a `sequenceId` on every message and session recovery. One JSON
//! object per text frame; binary frames are not part of either.

mod client;
mod object;
mod server;

pub use client::parse_client_frame;
pub use server::{ServerFrameError, with_offset, with_sequence_id};

use serde::Deserialize;

use super::{Codec, DecodeError, Encoding, Frame, FrameRef, Request};
use crate::server_frame::ServerFrame;
use crate::subprotocol::{JSON, JSON_RELIABLE};

/// `json.webpubsub.azure.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

/// `json.reliable.webpubsub.azure.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReliableJsonCodec;

impl Codec for JsonCodec {
    fn subprotocol(&self) -> Option<&'static str> {
        Some(JSON)
    }

    fn encoding(&self) -> Encoding {
        Encoding::Json
    }

    fn decode(&self, frame: FrameRef<'_>) -> Result<Request, DecodeError> {
        match frame {
            FrameRef::Text(text) => Ok(Request::Frame(parse_client_frame(text)?)),
            FrameRef::Binary(_) => Err(DecodeError::UnsupportedData),
        }
    }

    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Frame> {
        Some(Frame::Text(frame.to_json()))
    }
}

impl Codec for ReliableJsonCodec {
    fn subprotocol(&self) -> Option<&'static str> {
        Some(JSON_RELIABLE)
    }

    fn encoding(&self) -> Encoding {
        Encoding::Json
    }

    fn is_reliable(&self) -> bool {
        true
    }

    fn decode(&self, frame: FrameRef<'_>) -> Result<Request, DecodeError> {
        JsonCodec.decode(frame)
    }

    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Frame> {
        JsonCodec.encode(frame)
    }

    fn sequence(&self, message: FrameRef<'_>, sequence_id: u64) -> Option<Frame> {
        match message {
            FrameRef::Text(text) => Some(Frame::Text(with_sequence_id(text, sequence_id))),
            FrameRef::Binary(_) => None,
        }
    }
}

/// An id that should be a string but arrives as a number from some clients.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(u64),
}

impl Id {
    fn into_string(self) -> String {
        match self {
            Id::Text(s) => s,
            Id::Number(n) => n.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_frame::ClientFrame;
    use crate::payload::Payload;
    use crate::server_frame::Sender;
    use bytes::Bytes;

    #[test]
    fn text_frames_decode_and_binary_frames_are_refused() {
        assert_eq!(
            JsonCodec.decode(FrameRef::Text(r#"{"type":"ping"}"#)),
            Ok(Request::Frame(ClientFrame::Ping))
        );
        let bin = Bytes::from_static(b"{}");
        let e = ReliableJsonCodec.decode(FrameRef::Binary(&bin));
        assert_eq!(e, Err(DecodeError::UnsupportedData));
        assert_eq!(e.map_err(|e| e.close_code()), Err(1003));
        let e = JsonCodec.decode(FrameRef::Text("{"));
        assert!(matches!(&e, Err(DecodeError::Invalid(f)) if f.ack_id.is_none()));
        assert_eq!(e.map_err(|e| e.close_code()), Err(1007));
    }

    #[test]
    fn both_protocols_share_the_message_bytes_and_reliable_numbers_them() {
        let p = Payload::text("x");
        let m = ServerFrame::message(Sender::Server, &p);
        assert_eq!(JsonCodec.encoding(), ReliableJsonCodec.encoding());
        let Some(Frame::Text(shared)) = JsonCodec.encode(&m) else {
            panic!("no text frame");
        };
        assert_eq!(
            ReliableJsonCodec.encode(&m),
            Some(Frame::Text(shared.clone()))
        );
        assert_eq!(JsonCodec.sequence(FrameRef::Text(&shared), 5), None);
        let Some(Frame::Text(numbered)) = ReliableJsonCodec.sequence(FrameRef::Text(&shared), 5)
        else {
            panic!("not numbered");
        };
        assert!(numbered.starts_with(r#"{"sequenceId":5,"type":"message""#));
    }
}
