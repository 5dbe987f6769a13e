//! The agent bus envelope decoder on arbitrary text: never a panic, and every envelope it
//! accepts survives a round trip through its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nerve_agentbus::Envelope;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(envelope) = Envelope::from_json(text) {
        let again = Envelope::from_json(&envelope.to_json());
        assert!(again.is_ok(), "an accepted envelope does not re-parse: {again:?}");
    }
});
