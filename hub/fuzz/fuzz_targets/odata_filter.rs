//! The OData filter parser (REST group operations) on arbitrary text: an error with a position
//! (and the service's wording of it) or a filter, never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = nerve_hub::filter::Filter::parse(text) {
            let _ = e.service_message(text);
        }
    }
});
