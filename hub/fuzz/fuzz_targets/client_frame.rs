//! The client frame parser (JSON subprotocols) on arbitrary text: it must answer every input
//! with a frame or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nerve_protocol::parse_client_frame(text);
    }
});
