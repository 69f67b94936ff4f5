//! IEEE 802.11 MAC headers: which frames a client device sent, and its address.
//!
//! Only frames whose transmitter is certainly a client count, so access points are never
//! counted: beacons, probe responses, association responses and data from the
//! distribution system are skipped. Authentication and action frames are skipped too,
//! because either side may send them.

use crowdflow_contract::identity::ADDRESS_LEN;

use super::Skip;

/// The client frames the agent can count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// Management subtype 4: a device looking for networks. The default and the main signal.
    ProbeRequest,
    /// Management subtypes 0 and 2: a device joining a network.
    AssociationRequest,
    /// Data frames to the distribution system (ToDS=1, FromDS=0), null-data included:
    /// traffic of a connected device.
    DataToAp,
    /// Control subtype 10: a power-saving connected device.
    PsPoll,
}

impl FrameClass {
    /// Config names.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameClass::ProbeRequest => "probe_request",
            FrameClass::AssociationRequest => "association_request",
            FrameClass::DataToAp => "data_to_ap",
            FrameClass::PsPoll => "ps_poll",
        }
    }

    /// Every class.
    pub const ALL: [FrameClass; 4] = [
        FrameClass::ProbeRequest,
        FrameClass::AssociationRequest,
        FrameClass::DataToAp,
        FrameClass::PsPoll,
    ];
}

/// Which client frame classes count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFrames(u8);

impl Default for ClientFrames {
    /// Probe requests only.
    fn default() -> Self {
        ClientFrames::only(&[FrameClass::ProbeRequest])
    }
}

impl ClientFrames {
    /// Exactly these classes.
    pub fn only(classes: &[FrameClass]) -> ClientFrames {
        ClientFrames(classes.iter().fold(0, |acc, c| acc | (1 << *c as u8)))
    }

    /// Whether `class` counts.
    pub fn allows(self, class: FrameClass) -> bool {
        self.0 & (1 << class as u8) != 0
    }
}

/// The transmitter address of a counted client frame.
pub fn client_transmitter(frame: &[u8], allowed: ClientFrames) -> Result<[u8; ADDRESS_LEN], Skip> {
    let [fc0, flags, ..] = *frame else {
        return Err(Skip::WifiTruncated);
    };
    if fc0 & 0x03 != 0 {
        return Err(Skip::WifiBadVersion);
    }
    let kind = (fc0 >> 2) & 0x03;
    let subtype = fc0 >> 4;
    let to_ds = flags & 0x01 != 0;
    let from_ds = flags & 0x02 != 0;
    let (class, header_len) = match (kind, subtype) {
        (0, 4) => (FrameClass::ProbeRequest, 24),
        (0, 0 | 2) => (FrameClass::AssociationRequest, 24),
        (2, _) if to_ds && !from_ds => (FrameClass::DataToAp, 24),
        (1, 10) => (FrameClass::PsPoll, 16),
        _ => return Err(Skip::NotCounted),
    };
    if !allowed.allows(class) {
        return Err(Skip::NotCounted);
    }
    let address = frame
        .get(10..16)
        .filter(|_| frame.len() >= header_len)
        .ok_or(Skip::WifiTruncated)?;
    let mut out = [0; ADDRESS_LEN];
    out.copy_from_slice(address);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STA: [u8; 6] = [0xda, 0xa1, 0x19, 0x22, 0x69, 0x42];

    fn frame(fc0: u8, flags: u8) -> Vec<u8> {
        let mut f = vec![fc0, flags, 0, 0];
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&STA);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&[0, 0]);
        f
    }

    #[test]
    fn probe_requests_yield_their_source() {
        assert_eq!(
            client_transmitter(&frame(0x40, 0), ClientFrames::default()),
            Ok(STA)
        );
    }

    #[test]
    fn access_point_frames_never_count() {
        let all = ClientFrames::only(&FrameClass::ALL);
        for fc0 in [0x80, 0x50, 0x10, 0x30, 0xb0, 0xd0] {
            // beacon, probe response, assoc/reassoc response, authentication, action
            assert_eq!(
                client_transmitter(&frame(fc0, 0), all),
                Err(Skip::NotCounted),
                "{fc0:#x}"
            );
        }
        // data from the AP to a station
        assert_eq!(
            client_transmitter(&frame(0x08, 0x02), all),
            Err(Skip::NotCounted)
        );
        // WDS / mesh data (both DS bits)
        assert_eq!(
            client_transmitter(&frame(0x08, 0x03), all),
            Err(Skip::NotCounted)
        );
    }

    #[test]
    fn optional_client_frames_count_only_when_enabled() {
        let probe_only = ClientFrames::default();
        let all = ClientFrames::only(&FrameClass::ALL);
        for (fc0, flags) in [(0x00, 0), (0x20, 0), (0x08, 0x01), (0x48, 0x01), (0xa4, 0)] {
            assert_eq!(
                client_transmitter(&frame(fc0, flags), probe_only),
                Err(Skip::NotCounted)
            );
            assert_eq!(
                client_transmitter(&frame(fc0, flags), all),
                Ok(STA),
                "{fc0:#x}"
            );
        }
    }

    #[test]
    fn short_and_odd_frames_are_skipped() {
        let p = ClientFrames::default();
        assert_eq!(client_transmitter(&[], p), Err(Skip::WifiTruncated));
        assert_eq!(client_transmitter(&[0x40], p), Err(Skip::WifiTruncated));
        assert_eq!(
            client_transmitter(&frame(0x40, 0)[..20], p),
            Err(Skip::WifiTruncated)
        );
        assert_eq!(
            client_transmitter(&frame(0x41, 0), p),
            Err(Skip::WifiBadVersion)
        );
    }
}
