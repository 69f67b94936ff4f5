//! The pcap/pcapng reader and the decoders behind it on arbitrary files.
#![no_main]

use crowdflow_agent::capture::file::CaptureReader;
use crowdflow_agent::frame::{FramePolicy, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data) else {
        return;
    };
    let policy = FramePolicy::default();
    while let Ok(Some(packet)) = reader.next_packet() {
        let _ = decode(packet.link, packet.data, &policy);
    }
});
