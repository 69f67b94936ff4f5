//! Every frame decoder on arbitrary bytes: the first byte picks the link type.
#![no_main]

use crowdflow_agent::capture::LinkType;
use crowdflow_agent::frame::{ClientFrames, FrameClass, FramePolicy, decode, decode_sighting};
use libfuzzer_sys::fuzz_target;

const LINKS: [u32; 6] = [105, 127, 192, 251, 256, 119];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let link = LinkType::from_dlt(LINKS[usize::from(selector) % LINKS.len()]);
    let policy = FramePolicy {
        wifi: ClientFrames::only(&FrameClass::ALL),
        min_rssi: None,
    };
    let plain = decode(link, frame, &policy);
    let sighting = decode_sighting(link, frame, &policy);
    // The fingerprint never changes what is heard.
    assert_eq!(plain, sighting.map(|s| s.heard));
    if let Ok(s) = sighting {
        let _ = s.heard.kind();
        let _ = s.fingerprint.map(|f| *f.digest());
    }
});
