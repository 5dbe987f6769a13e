//! The MQTT packet reader on arbitrary bytes, in both versions and split at every frame
//! boundary the input suggests, and the per-connection stamping of a shared PUBLISH: every
//! input gets packets or an error, never a panic, and the buffer stays bounded.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nerve_protocol::codec::mqtt::{PacketReader, Version, packets, stamp};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    for version in [Version::V311, Version::V5] {
        let mut reader = PacketReader::new(4096);
        let _ = reader.connect_version();
        for part in [&data[..split], &data[split..]] {
            reader.push(part);
            while let Ok(Some(p)) = reader.next(version) {
                let _ = packets::inbound(p.clone());
                let _ = packets::hello(p);
            }
        }
        let _ = stamp(version, &Bytes::copy_from_slice(data), 1, 7, Some(3));
    }
});
