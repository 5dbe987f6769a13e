//! The WebSocket a session owns: tokio-tungstenite over an upgraded HTTP/1.1 connection, and
//! in [`upgrade`] the handshake that makes one.
//!
//! Defined below the registry so that a reliable client's new socket can travel through its
//! connection's control channel to the session that waits for it, and so that the frames the
//! registry encodes once are the very values written to every socket (no copy, no re-check).

pub mod upgrade;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use nerve_protocol::Frame;

pub use tungstenite::protocol::CloseFrame;
pub use tungstenite::protocol::WebSocketConfig;
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::{Error, Message, Utf8Bytes};

/// A server-side WebSocket.
pub type Socket = tokio_tungstenite::WebSocketStream<TokioIo<Upgraded>>;

/// The message that writes a frame a codec encoded (no copy: the text becomes shared bytes).
pub fn message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::Text(Utf8Bytes::from(text)),
        Frame::Binary(bytes) => Message::Binary(bytes),
    }
}

/// A close frame with `code` and `reason` (cut to the 123 bytes a close frame allows).
pub fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(truncate_reason(reason)),
    }))
}

/// WebSocket close reasons are limited to 123 bytes.
fn truncate_reason(reason: &str) -> String {
    if reason.len() <= 123 {
        return reason.to_string();
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let Message::Close(Some(f)) = close_frame(nerve_protocol::close::NO_RECOVERY, &long) else {
            panic!("not a close frame");
        };
        assert!(f.reason.len() <= 123);
        assert_eq!(u16::from(f.code), nerve_protocol::close::NO_RECOVERY);
        assert!(long.starts_with(f.reason.as_str()));
    }
}
