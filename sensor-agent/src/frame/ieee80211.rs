//! IEEE 802.11 MAC headers: which frames a client device sent, and its address.
//!
//! Only frames whose transmitter is certainly a client count, so access points are never
//! counted: beacons, probe responses, association responses and data from the
//! distribution system are skipped. Authentication and action frames are skipped too,
//! because either side may send them.

use crowdflow_contract::identity::{ADDRESS_LEN, FINGERPRINT_LEN};

use super::Skip;

/// The capability fingerprint of a probe request: a digest of the elements that describe
/// what the radio can do and stay the same across a phone's random addresses (Vanhoef et
/// al. 2016, Robyns et al. 2017): Supported Rates (1), Extended Supported Rates (50), HT
/// Capabilities (45), VHT Capabilities (191) and HE Capabilities (255 with extension 35),
/// id, length and contents in the order sent. Never the SSID, never vendor-specific
/// elements, nothing address-like. The digest is 64-bit FNV-1a (a fixed public function,
/// so every sensor of every version computes the same digest for the same radio).
///
/// It lives only in the agent's memory for one window (see `crate::counting::devices`): no `Debug`
/// of its bytes, no `Display`, no serde.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; FINGERPRINT_LEN]);

impl Fingerprint {
    /// The digest, for the salted slot keys of `crowdflow_contract::identity::hash_slot`.
    pub fn digest(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

/// Element ids of probe requests (IEEE 802.11-2020, 9.4.2); the fingerprint reads the rates
/// and the HT, VHT and HE capabilities (HE is 255 with extension id 35), never the SSID or
/// vendor elements.
pub mod element {
    /// SSID.
    pub const SSID: u8 = 0;
    /// Supported rates.
    pub const SUPPORTED_RATES: u8 = 1;
    /// HT capabilities.
    pub const HT_CAPABILITIES: u8 = 45;
    /// Extended supported rates.
    pub const EXTENDED_RATES: u8 = 50;
    /// VHT capabilities.
    pub const VHT_CAPABILITIES: u8 = 191;
    /// Vendor specific.
    pub const VENDOR_SPECIFIC: u8 = 221;
    /// Element id extension.
    pub const EXTENSION: u8 = 255;
    /// HE capabilities (an extension id).
    pub const HE_CAPABILITIES: u8 = 35;
}

use element::{
    EXTENDED_RATES, EXTENSION, HE_CAPABILITIES, HT_CAPABILITIES, SUPPORTED_RATES, VHT_CAPABILITIES,
};

/// The capability fingerprint of a probe request (`frame` without FCS), or `None` for other
/// frames and probe requests without any capability element. Total: a truncated element
/// ends the walk, and what came before it still counts.
pub fn capability_fingerprint(frame: &[u8]) -> Option<Fingerprint> {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let (&fc0, _) = frame.split_first()?;
    if fc0 != 0x40 {
        return None;
    }
    let mut rest = frame.get(24..)?;
    let mut digest = FNV_OFFSET;
    let mut any = false;
    while let [id, len, tail @ ..] = rest {
        let Some(body) = tail.get(..usize::from(*len)) else {
            break;
        };
        let wanted = match *id {
            SUPPORTED_RATES | EXTENDED_RATES | HT_CAPABILITIES | VHT_CAPABILITIES => true,
            EXTENSION => body.first() == Some(&HE_CAPABILITIES),
            _ => false,
        };
        if wanted {
            any = true;
            // The header bytes, then the body as a plain slice loop: a chained iterator
            // cost a windowed replay a tenth of its instructions.
            let fnv = |d: u64, b: u8| (d ^ u64::from(b)).wrapping_mul(FNV_PRIME);
            digest = fnv(fnv(digest, *id), *len);
            for &b in body {
                digest = fnv(digest, b);
            }
        }
        rest = &tail[usize::from(*len)..];
    }
    any.then(|| Fingerprint(digest.to_be_bytes()))
}

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

    /// A probe request: header, SSID, rates, HT capabilities, a vendor element.
    fn probe(ssid: &[u8], vendor: &[u8], rates: &[u8]) -> Vec<u8> {
        let mut f = frame(0x40, 0);
        f.extend_from_slice(&[0, ssid.len() as u8]);
        f.extend_from_slice(ssid);
        f.extend_from_slice(&[1, rates.len() as u8]);
        f.extend_from_slice(rates);
        f.extend_from_slice(&[45, 4, 0x2d, 0x01, 0x13, 0xff]);
        f.extend_from_slice(&[221, vendor.len() as u8]);
        f.extend_from_slice(vendor);
        f
    }

    #[test]
    fn the_fingerprint_ignores_ssid_and_vendor_payloads() {
        let rates = [0x82, 0x84, 0x8b, 0x96];
        let a = capability_fingerprint(&probe(b"", &[0x00, 0x50, 0xf2, 8], &rates));
        let b = capability_fingerprint(&probe(b"home-wifi", &[0x00, 0x17, 0xf2, 9, 9], &rates));
        assert!(a.is_some());
        assert_eq!(a, b);
        let other = capability_fingerprint(&probe(b"", &[0x00, 0x50, 0xf2, 8], &[0x02, 0x04]));
        assert_ne!(a, other, "other rates, other radio");
    }

    #[test]
    fn the_fingerprint_is_the_documented_fnv1a_of_the_capability_elements() {
        let f = probe(b"x", &[1, 2, 3], &[0x82]);
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [1u8, 1, 0x82, 45, 4, 0x2d, 0x01, 0x13, 0xff] {
            digest = (digest ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(
            capability_fingerprint(&f).map(|f| *f.digest()),
            Some(digest.to_be_bytes())
        );
    }

    #[test]
    fn he_capabilities_count_and_other_extensions_do_not() {
        let mut base = frame(0x40, 0);
        base.extend_from_slice(&[1, 1, 0x82]);
        let mut he = base.clone();
        he.extend_from_slice(&[255, 3, 35, 1, 2]);
        let mut other_ext = base.clone();
        other_ext.extend_from_slice(&[255, 3, 2, 1, 2]);
        let fp = capability_fingerprint;
        assert_ne!(fp(&base), fp(&he));
        assert_eq!(fp(&base), fp(&other_ext));
    }

    #[test]
    fn frames_without_capabilities_have_no_fingerprint_and_truncation_is_total() {
        assert_eq!(capability_fingerprint(&[]), None);
        assert_eq!(capability_fingerprint(&frame(0x40, 0)), None);
        assert_eq!(capability_fingerprint(&frame(0x08, 1)), None, "data frame");
        let mut cut = frame(0x40, 0);
        cut.extend_from_slice(&[1, 1, 0x82, 50, 200, 1]);
        let mut whole = frame(0x40, 0);
        whole.extend_from_slice(&[1, 1, 0x82]);
        assert_eq!(capability_fingerprint(&cut), capability_fingerprint(&whole));
        assert_eq!(
            format!("{:?}", capability_fingerprint(&whole)),
            "Some(Fingerprint(..))"
        );
    }

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
