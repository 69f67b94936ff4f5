//! The capture reader (pcap, pcapng, btsnoop) and the decoders behind it on arbitrary files.
#![no_main]

use crowdflow_agent::capture::file::CaptureReader;
use crowdflow_agent::frame::{FramePolicy, decode_packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data) else {
        return;
    };
    let policy = FramePolicy::default();
    let mut out = Vec::new();
    while let Ok(Some(packet)) = reader.next_packet() {
        out.clear();
        decode_packet(&packet, &policy, true, &mut out);
        for sighting in out.iter().flatten() {
            let _ = sighting.heard.kind();
            let _ = sighting.fingerprint.map(|f| *f.digest());
        }
    }
});
