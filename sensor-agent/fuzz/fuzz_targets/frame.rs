//! Every frame decoder on arbitrary bytes: the first byte picks the link type (low nibble),
//! whether the file declared a 4-byte FCS (bit 4) and the FCS rule (bit 5).
#![no_main]

use crowdflow_agent::frame::LinkType;
use crowdflow_agent::frame::Packet;
use crowdflow_agent::frame::{
    ClientFrames, FcsRule, FrameClass, FramePolicy, decode, decode_packet, decode_sighting,
};
use libfuzzer_sys::fuzz_target;

const LINKS: [u32; 10] = [105, 127, 192, 251, 256, 119, 272, 187, 201, 254];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let link = LinkType::from_dlt(LINKS[usize::from(selector & 0x0f) % LINKS.len()]);
    let policy = FramePolicy {
        wifi: ClientFrames::only(&FrameClass::ALL),
        min_rssi: None,
        fcs: if selector & 0x20 != 0 {
            FcsRule::Ignore
        } else {
            FcsRule::Check
        },
        ..FramePolicy::default()
    };
    let plain = decode(link, frame, &policy);
    let sighting = decode_sighting(link, frame, &policy);
    // The fingerprint never changes what is heard.
    assert_eq!(plain, sighting.map(|s| s.heard));
    if let Ok(s) = sighting {
        let _ = s.heard.kind();
        let _ = s.fingerprint.map(|f| *f.digest());
    }
    let packet = Packet {
        ts_ns: 0,
        link,
        fcs_len: (selector & 0x10 != 0).then_some(4),
        data: frame,
    };
    let mut out = Vec::new();
    decode_packet(&packet, &policy, selector & 0x40 != 0, &mut out);
    assert!(!out.is_empty(), "every packet is counted or skipped");
});
