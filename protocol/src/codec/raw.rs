//! Simple WebSocket clients (no subprotocol, or one we do not speak): every frame a client sends
//! is data, and all it receives is the data of messages, text or binary as the payload is.
//! There are no acks, no `connected` and no `disconnected`.

use super::{Codec, DecodeError, Encoding, Frame, FrameRef, Request};
use crate::payload::Payload;
use crate::server_frame::ServerFrame;

/// Raw frames for simple clients.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    fn subprotocol(&self) -> Option<&'static str> {
        None
    }

    fn encoding(&self) -> Encoding {
        Encoding::Raw
    }

    fn decode(&self, frame: FrameRef<'_>) -> Result<Request, DecodeError> {
        Ok(Request::Raw(match frame {
            FrameRef::Text(text) => Payload::text(text),
            FrameRef::Binary(bytes) => Payload::binary(bytes.clone()),
        }))
    }

    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Frame> {
        let ServerFrame::Message(m) = frame else {
            return None;
        };
        let p = &m.payload;
        if p.raw_is_binary() {
            return Some(Frame::Binary(p.raw.clone()));
        }
        // Text and JSON payloads hold UTF-8 by construction; anything else goes out as bytes.
        Some(match std::str::from_utf8(&p.raw) {
            Ok(text) => Frame::Text(text.to_string()),
            Err(_) => Frame::Binary(p.raw.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::DataType;
    use crate::server_frame::Sender;
    use bytes::Bytes;

    #[test]
    fn frames_are_the_data() {
        let text = RawCodec.decode(FrameRef::Text("hi"));
        assert_eq!(text, Ok(Request::Raw(Payload::text("hi"))));
        let b = Bytes::from_static(&[0, 159]);
        assert_eq!(
            RawCodec.decode(FrameRef::Binary(&b)),
            Ok(Request::Raw(Payload::binary(b.clone())))
        );
        let json = Payload::from_body(DataType::Json, Bytes::from_static(b"\"s\"")).unwrap();
        assert_eq!(
            RawCodec.encode(&ServerFrame::message(Sender::Server, &json)),
            Some(Frame::Text("\"s\"".into()))
        );
        let bin = Payload::binary(b.clone());
        assert_eq!(
            RawCodec.encode(&ServerFrame::message(Sender::group("g", None), &bin)),
            Some(Frame::Binary(b))
        );
        assert_eq!(RawCodec.encode(&ServerFrame::Pong), None);
        assert_eq!(RawCodec.encode(&ServerFrame::disconnected("bye")), None);
    }
}
