//! The service frame parser clients use (JSON subprotocols) on arbitrary text: every input is a
//! frame or an error, and a frame it reads is written back as JSON that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nerve_protocol::ServerFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(frame) = ServerFrame::from_json(text)
    {
        assert_eq!(ServerFrame::from_json(&frame.to_json()).ok(), Some(frame));
    }
});
