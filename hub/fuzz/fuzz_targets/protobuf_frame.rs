//! The protobuf subprotocols' frame reader on arbitrary bytes, and the per-connection numbering
//! of an encoded message: every input gets a frame or an error, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nerve_protocol::codec::protobuf::{parse_upstream, with_sequence_id};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let _ = parse_upstream(&bytes);
    let _ = with_sequence_id(&bytes, u64::from(data.len() as u32));
});
