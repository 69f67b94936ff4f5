//! Capture sources: everything that yields frames, and the one event they all produce.
//!
//! Files ([`mod@file`]) are read here; live sources (monitor-mode Wi-Fi, BLE) and programs
//! embedding the agent ([`crate::in_process`]) produce the same [`crate::frame::Heard`] events
//! through [`crate::frame`].

pub mod file;
pub mod hci;
pub mod live;

use std::fmt;

/// Link-layer types the agent reads (pcap DLT numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// 105: IEEE 802.11 without a radio header.
    Ieee80211,
    /// 127: 802.11 with a radiotap header.
    Radiotap,
    /// 192: Per-Packet Information header.
    Ppi,
    /// 251: Bluetooth LE link layer.
    BleLl,
    /// 256: Bluetooth LE link layer with a pseudo-header (RF channel, signal power, flags).
    BleLlWithPhdr,
    /// Anything else.
    Other(u32),
}

impl LinkType {
    /// From the numeric DLT.
    pub fn from_dlt(dlt: u32) -> LinkType {
        match dlt {
            105 => LinkType::Ieee80211,
            127 => LinkType::Radiotap,
            192 => LinkType::Ppi,
            251 => LinkType::BleLl,
            256 => LinkType::BleLlWithPhdr,
            other => LinkType::Other(other),
        }
    }

    /// The numeric DLT.
    pub fn dlt(self) -> u32 {
        match self {
            LinkType::Ieee80211 => 105,
            LinkType::Radiotap => 127,
            LinkType::Ppi => 192,
            LinkType::BleLl => 251,
            LinkType::BleLlWithPhdr => 256,
            LinkType::Other(n) => n,
        }
    }

    /// Whether the agent can decode frames of this type.
    pub fn is_supported(self) -> bool {
        !matches!(self, LinkType::Other(_))
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LinkType::Ieee80211 => "IEEE802_11",
            LinkType::Radiotap => "IEEE802_11_RADIOTAP",
            LinkType::Ppi => "PPI",
            LinkType::BleLl => "BLUETOOTH_LE_LL",
            LinkType::BleLlWithPhdr => "BLUETOOTH_LE_LL_WITH_PHDR",
            LinkType::Other(119) => "PRISM_HEADER",
            LinkType::Other(1) => "ETHERNET",
            LinkType::Other(_) => "unknown",
        };
        write!(f, "{} ({name})", self.dlt())
    }
}

/// The supported link types, for error messages.
pub const SUPPORTED: &str =
    "105 (802.11), 127 (radiotap), 192 (PPI), 251 (BLE LL), 256 (BLE LL with PHDR)";
