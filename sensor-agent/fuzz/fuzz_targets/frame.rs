//! Every frame decoder on arbitrary bytes: the first byte picks the link type.
#![no_main]

use crowdflow_agent::capture::LinkType;
use crowdflow_agent::frame::{ClientFrames, FrameClass, FramePolicy, decode};
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
    if let Ok(heard) = decode(link, frame, &policy) {
        let _ = heard.kind();
    }
});
