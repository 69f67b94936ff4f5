//! Link-layer types: the tcpdump LINKTYPE numbers a capture declares, and which of them
//! the agent decodes.

use std::fmt;

use crowdflow_contract::identity::Medium;

/// Link-layer types the agent reads (tcpdump LINKTYPE numbers).
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
    /// 272: Nordic Semiconductor's nRF Sniffer for Bluetooth LE (board, flags, RSSI, LL packet).
    NordicBle,
    /// 187: Bluetooth HCI UART transport (H:4): packet type byte, then the HCI packet.
    HciH4,
    /// 201: H:4 with a 4-byte direction pseudo-header.
    HciH4WithPhdr,
    /// 254: BlueZ's monitor channel (`btmon`): adapter and opcode header, then the packet.
    BluetoothLinuxMonitor,
    /// Anything else.
    Other(u32),
}

impl LinkType {
    /// From the numeric LINKTYPE (the lower 16 bits of a pcap header's field).
    pub fn from_dlt(dlt: u32) -> LinkType {
        match dlt {
            105 => LinkType::Ieee80211,
            127 => LinkType::Radiotap,
            192 => LinkType::Ppi,
            251 => LinkType::BleLl,
            256 => LinkType::BleLlWithPhdr,
            272 => LinkType::NordicBle,
            187 => LinkType::HciH4,
            201 => LinkType::HciH4WithPhdr,
            254 => LinkType::BluetoothLinuxMonitor,
            other => LinkType::Other(other),
        }
    }

    /// The numeric LINKTYPE.
    pub fn dlt(self) -> u32 {
        match self {
            LinkType::Ieee80211 => 105,
            LinkType::Radiotap => 127,
            LinkType::Ppi => 192,
            LinkType::BleLl => 251,
            LinkType::BleLlWithPhdr => 256,
            LinkType::NordicBle => 272,
            LinkType::HciH4 => 187,
            LinkType::HciH4WithPhdr => 201,
            LinkType::BluetoothLinuxMonitor => 254,
            LinkType::Other(n) => n,
        }
    }

    /// Whether the agent can decode frames of this type.
    pub fn is_supported(self) -> bool {
        !matches!(self, LinkType::Other(_))
    }

    /// The medium its frames come from; `None` for a type the agent does not decode.
    pub fn medium(self) -> Option<Medium> {
        match self {
            LinkType::Ieee80211 | LinkType::Radiotap | LinkType::Ppi => Some(Medium::Wifi),
            LinkType::Other(_) => None,
            _ => Some(Medium::Ble),
        }
    }

    /// Whether one packet can report several devices (HCI events carry up to 25 reports).
    pub fn is_hci(self) -> bool {
        matches!(
            self,
            LinkType::HciH4 | LinkType::HciH4WithPhdr | LinkType::BluetoothLinuxMonitor
        )
    }
}

/// "272 (NORDIC_BLE)": the number and its tcpdump registry name.
impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match super::registry::name(self.dlt()) {
            Some(name) => write!(f, "{} ({name})", self.dlt()),
            None => write!(f, "{} (not in the LINKTYPE registry)", self.dlt()),
        }
    }
}

/// The supported link types, for error messages.
pub const SUPPORTED: &str = "105 (IEEE802_11), 127 (IEEE802_11_RADIOTAP), 192 (PPI), \
    251 (BLUETOOTH_LE_LL), 256 (BLUETOOTH_LE_LL_WITH_PHDR), 272 (NORDIC_BLE), \
    187 (BLUETOOTH_HCI_H4), 201 (BLUETOOTH_HCI_H4_WITH_PHDR), 254 (BLUETOOTH_LINUX_MONITOR) \
    and btsnoop files";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_types_are_named_by_the_registry_never_unknown() {
        assert_eq!(LinkType::from_dlt(272).to_string(), "272 (NORDIC_BLE)");
        assert_eq!(LinkType::from_dlt(1).to_string(), "1 (ETHERNET)");
        assert_eq!(
            LinkType::from_dlt(119).to_string(),
            "119 (IEEE802_11_PRISM)"
        );
        assert_eq!(
            LinkType::from_dlt(60_000).to_string(),
            "60000 (not in the LINKTYPE registry)"
        );
        for dlt in [105, 127, 192, 251, 256, 272, 187, 201, 254] {
            let link = LinkType::from_dlt(dlt);
            assert!(link.is_supported() && link.dlt() == dlt, "{link}");
            assert!(SUPPORTED.contains(&link.to_string()), "{link}");
        }
    }
}
