//! Frame decoding: from captured bytes to "this device was heard", or a reason to skip.
//!
//! Total over all inputs: every frame yields a [`Heard`] or a [`Skip`] reason that is
//! counted per reason; nothing panics, nothing is logged (a frame carries addresses).
//! The address in [`Heard`] is on its way to the salted hash and goes no further.

pub(crate) mod ble;
mod fcs;
pub mod hci;
mod ieee80211;
mod link_type;
pub mod oui;
mod ppi;
mod radiotap;
mod registry;

use crowdflow_contract::identity::{ADDRESS_LEN, Kind, Medium};

pub use ble::crc24;
pub use ieee80211::{ClientFrames, Fingerprint, FrameClass, capability_fingerprint, element};
pub use link_type::{LinkType, SUPPORTED};

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch (as recorded; may go backwards).
    pub ts_ns: i64,
    /// Link-layer type of the interface it was captured on.
    pub link: LinkType,
    /// Bytes of frame check sequence at the end of `data`, when the file declares it (the
    /// pcap header's FCS annotation, a pcapng interface's `if_fcslen`); `None` when it does
    /// not say (radiotap then says it per frame).
    pub fcs_len: Option<u8>,
    /// The captured bytes. Empty for a packet of an unsupported link type whose data was
    /// larger than [`crate::capture::file::MAX_RECORD`] (skipped unread).
    pub data: &'a [u8],
}

/// A device heard in one frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// Wi-Fi or BLE.
    pub medium: Medium,
    /// The transmitter address, most significant byte first.
    pub address: [u8; ADDRESS_LEN],
    /// Received signal strength in dBm, when the capture recorded it.
    pub rssi: Option<i8>,
    /// The address is randomized (Wi-Fi: locally administered; BLE: TxAdd random).
    pub randomized: bool,
}

impl std::fmt::Debug for Heard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the address.
        f.debug_struct("Heard")
            .field("medium", &self.medium)
            .field("rssi", &self.rssi)
            .field("randomized", &self.randomized)
            .finish_non_exhaustive()
    }
}

impl Heard {
    /// The sketch kind this sighting counts under.
    pub fn kind(&self) -> Kind {
        Kind::classify(self.medium, &self.address)
    }
}

/// Why a frame was not counted. The labels are metric label values and JSON keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// The link type is not one the agent reads.
    UnsupportedLinkType,
    /// Radiotap header shorter than its fixed part or than its own length field.
    RadiotapTruncated,
    /// Radiotap version is not 0.
    RadiotapBadVersion,
    /// Radiotap length field or present bitmaps inconsistent.
    RadiotapBadLength,
    /// The frame's FCS does not match its contents (checked by the agent when the capture
    /// keeps the FCS), or, when the capture dropped it, the driver flagged it bad.
    BadFcs,
    /// PPI header inconsistent.
    PpiMalformed,
    /// PPI wraps a link type other than 802.11.
    PpiNotWifi,
    /// 802.11 frame shorter than its header.
    WifiTruncated,
    /// 802.11 protocol version other than 0.
    WifiBadVersion,
    /// A frame type not counted (beacons, probe responses, other AP frames, ...).
    NotCounted,
    /// BLE packet shorter than its header or declared length.
    BleTruncated,
    /// BLE packet failed its CRC-24 (noise).
    BleBadCrc,
    /// BLE packet on a data channel or of a PDU type that does not name its sender (an
    /// extended advertising PDU without AdvA included); in HCI captures, a command, ACL
    /// data or an event that is not an LE advertising report.
    BleNotAdvertising,
    /// Weaker than the configured RSSI threshold.
    TooFar,
    /// The last record of a capture file was cut off.
    CaptureTruncated,
}

impl Skip {
    /// Every reason, for complete reports.
    pub const ALL: [Skip; 15] = [
        Skip::UnsupportedLinkType,
        Skip::RadiotapTruncated,
        Skip::RadiotapBadVersion,
        Skip::RadiotapBadLength,
        Skip::BadFcs,
        Skip::PpiMalformed,
        Skip::PpiNotWifi,
        Skip::WifiTruncated,
        Skip::WifiBadVersion,
        Skip::NotCounted,
        Skip::BleTruncated,
        Skip::BleBadCrc,
        Skip::BleNotAdvertising,
        Skip::TooFar,
        Skip::CaptureTruncated,
    ];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::UnsupportedLinkType => "unsupported_link_type",
            Skip::RadiotapTruncated => "radiotap_truncated",
            Skip::RadiotapBadVersion => "radiotap_bad_version",
            Skip::RadiotapBadLength => "radiotap_bad_length",
            Skip::BadFcs => "bad_fcs",
            Skip::PpiMalformed => "ppi_malformed",
            Skip::PpiNotWifi => "ppi_not_wifi",
            Skip::WifiTruncated => "wifi_truncated",
            Skip::WifiBadVersion => "wifi_bad_version",
            Skip::NotCounted => "not_counted_frame_type",
            Skip::BleTruncated => "ble_truncated",
            Skip::BleBadCrc => "ble_bad_crc",
            Skip::BleNotAdvertising => "ble_not_advertising",
            Skip::TooFar => "below_rssi_threshold",
            Skip::CaptureTruncated => "capture_truncated",
        }
    }

    /// Whether the reason means the frame was malformed (as opposed to deliberately ignored).
    pub fn is_malformed(self) -> bool {
        !matches!(
            self,
            Skip::NotCounted | Skip::TooFar | Skip::BleNotAdvertising | Skip::UnsupportedLinkType
        )
    }
}

/// What counts: which frames, and how far away a device may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FramePolicy {
    /// Which client frames count on Wi-Fi.
    pub wifi: ClientFrames,
    /// Frames weaker than this (dBm) are skipped; frames without RSSI are kept.
    pub min_rssi: Option<i8>,
    /// Whether a Wi-Fi frame's FCS decides if it counts (see [`FcsRule`]).
    pub fcs: FcsRule,
    /// How the physical-device estimate reads a capability group
    /// ([`crate::counting::devices::DeviceRule`]).
    pub devices: crate::counting::devices::DeviceRule,
}

/// What a Wi-Fi frame's frame check sequence decides. The rule and its reasons are in
/// `frame/fcs.rs` and docs/installing-a-sensor.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FcsRule {
    /// A kept FCS is checked by the agent and decides; without one, the driver's bad-FCS
    /// flag decides. A frame with a wrong FCS has bit errors, possibly in its address, and
    /// would count a device that does not exist (the BLE CRC-24 is checked for the same
    /// reason).
    #[default]
    Check,
    /// Every frame counts whatever its FCS or flag says, as tshark counts by default: for
    /// captures whose addresses were rewritten without recomputing the FCS (anonymized
    /// public datasets).
    Ignore,
}

/// A device heard in one frame, with the frame's capability fingerprint when it has one
/// (probe requests): what the per-window device estimate needs. In memory only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// The device heard.
    pub heard: Heard,
    /// The capability fingerprint of a probe request.
    pub fingerprint: Option<Fingerprint>,
}

/// Decodes one captured frame of a link type whose frames name one device each (radio
/// link types). An HCI packet can report several devices: this returns the first; capture
/// files go through [`decode_packet`], which returns them all.
pub fn decode(link: LinkType, data: &[u8], policy: &FramePolicy) -> Result<Heard, Skip> {
    if link.is_hci() {
        return first_report(link, data, policy).map(|s| s.heard);
    }
    decode_frame(link, data, None, policy, false).map(|s| s.heard)
}

/// Decodes one frame with its capability fingerprint (a few dozen nanoseconds more per
/// probe request than [`decode`]); of an HCI packet, the first report, as [`decode`].
#[inline]
pub fn decode_sighting(
    link: LinkType,
    data: &[u8],
    policy: &FramePolicy,
) -> Result<Sighting, Skip> {
    if link.is_hci() {
        return first_report(link, data, policy);
    }
    decode_frame(link, data, None, policy, true)
}

fn first_report(link: LinkType, data: &[u8], policy: &FramePolicy) -> Result<Sighting, Skip> {
    let mut out = Vec::new();
    decode_hci(link, data, policy, &mut out);
    out.into_iter()
        .next()
        .unwrap_or(Err(Skip::BleNotAdvertising))
}

/// Decodes one packet of a capture file into every sighting it carries, in order: one for
/// a radio frame (with its capability fingerprint if `fingerprints`: only the device
/// estimate reads it, and a replay without windows is faster without), one per report of
/// an HCI LE advertising report event, a skip reason for anything else. The file's FCS
/// annotation (`fcs_len`) is honoured.
pub fn decode_packet(
    packet: &Packet<'_>,
    policy: &FramePolicy,
    fingerprints: bool,
    out: &mut Vec<Result<Sighting, Skip>>,
) {
    if packet.link.is_hci() {
        decode_hci(packet.link, packet.data, policy, out);
    } else {
        out.push(decode_frame(
            packet.link,
            packet.data,
            packet.fcs_len,
            policy,
            fingerprints,
        ));
    }
}

fn decode_hci(
    link: LinkType,
    data: &[u8],
    policy: &FramePolicy,
    out: &mut Vec<Result<Sighting, Skip>>,
) {
    let mut reports = Vec::new();
    hci::decode_capture(link, data, &mut reports);
    if reports.is_empty() {
        out.push(Err(Skip::BleNotAdvertising));
    }
    gate_reports(reports, policy, out);
}

/// Every advertiser a controller reports in one HCI packet read from a live socket (H:4),
/// gated by `policy` as recorded HCI traffic is. Packets that are not advertising reports
/// add nothing: a live socket also reads the controller's answers to its commands.
pub fn decode_hci_socket(data: &[u8], policy: &FramePolicy, out: &mut Vec<Result<Sighting, Skip>>) {
    let mut reports = Vec::new();
    hci::advertisers(data, &mut reports);
    gate_reports(reports, policy, out);
}

fn gate_reports(
    reports: Vec<Result<Heard, Skip>>,
    policy: &FramePolicy,
    out: &mut Vec<Result<Sighting, Skip>>,
) {
    out.extend(
        reports
            .into_iter()
            .map(|r| r.and_then(|heard| within_range(unprinted(heard), policy))),
    );
}

fn decode_frame(
    link: LinkType,
    data: &[u8],
    file_fcs_len: Option<u8>,
    policy: &FramePolicy,
    fingerprint: bool,
) -> Result<Sighting, Skip> {
    let sighting = match link {
        LinkType::Radiotap => {
            let radio = radiotap::parse(data)?;
            let fcs_len = if radio.fcs_at_end {
                Some(4)
            } else {
                file_fcs_len
            };
            let body = fcs::checked_body(
                &data[radio.header_len..],
                fcs_len,
                radio.bad_fcs,
                policy.fcs,
            )?;
            wifi(body, radio.rssi, policy, fingerprint)?
        }
        LinkType::Ieee80211 => wifi(
            fcs::checked_body(data, file_fcs_len, false, policy.fcs)?,
            None,
            policy,
            fingerprint,
        )?,
        LinkType::Ppi => {
            let ppi = ppi::parse(data)?;
            let fcs_len = if ppi.fcs_at_end {
                Some(4)
            } else {
                file_fcs_len
            };
            let body =
                fcs::checked_body(&data[ppi.header_len..], fcs_len, ppi.bad_fcs, policy.fcs)?;
            wifi(body, ppi.rssi, policy, fingerprint)?
        }
        LinkType::BleLl => unprinted(ble::parse(data, None)?),
        LinkType::BleLlWithPhdr => unprinted(ble::parse_with_phdr(data)?),
        LinkType::NordicBle => unprinted(ble::parse_nordic(data)?),
        LinkType::HciH4
        | LinkType::HciH4WithPhdr
        | LinkType::BluetoothLinuxMonitor
        | LinkType::Other(_) => return Err(Skip::UnsupportedLinkType),
    };
    within_range(sighting, policy)
}

/// The RSSI threshold: frames weaker than `min_rssi` are too far away.
fn within_range(sighting: Sighting, policy: &FramePolicy) -> Result<Sighting, Skip> {
    match (policy.min_rssi, sighting.heard.rssi) {
        (Some(min), Some(rssi)) if rssi < min => Err(Skip::TooFar),
        _ => Ok(sighting),
    }
}

fn unprinted(heard: Heard) -> Sighting {
    Sighting {
        heard,
        fingerprint: None,
    }
}

fn wifi(
    frame: &[u8],
    rssi: Option<i8>,
    policy: &FramePolicy,
    fingerprint: bool,
) -> Result<Sighting, Skip> {
    let address = ieee80211::client_transmitter(frame, policy.wifi)?;
    Ok(Sighting {
        heard: Heard {
            medium: Medium::Wifi,
            address,
            rssi,
            randomized: address[0] & 0x02 != 0,
        },
        fingerprint: if fingerprint {
            ieee80211::capability_fingerprint(frame)
        } else {
            None
        },
    })
}
