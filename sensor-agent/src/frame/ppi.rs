//! PPI (Per-Packet Information) headers: a generic radio header that wraps 802.11 or other
//! link types. Only PPI around 802.11 is counted; the 802.11-Common field gives the signal.

use super::Skip;

/// What counting needs from a PPI header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ppi {
    /// Bytes of PPI header before the wrapped frame.
    pub header_len: usize,
    /// dBm antenna signal from the 802.11-Common field, if present.
    pub rssi: Option<i8>,
    /// The 802.11-Common flags say the frame ends with its FCS.
    pub fcs_at_end: bool,
    /// The 802.11-Common flags say the capturing driver found the FCS bad.
    pub bad_fcs: bool,
}

const DLT_IEEE802_11: u32 = 105;
const FIELD_80211_COMMON: u16 = 2;
/// Offset of dBm-Antsignal inside the 802.11-Common field.
const ANTSIGNAL_AT: usize = 18;
/// Offset of the 802.11-Common Flags (u16): 0x0001 FCS present, 0x0004 FCS invalid (PPI
/// specification 1.0.10, section 4.1.2).
const COMMON_FLAGS_AT: usize = 8;
const COMMON_FCS_PRESENT: u16 = 0x0001;
const COMMON_FCS_INVALID: u16 = 0x0004;

/// Parses the PPI header at the start of `data`.
pub fn parse(data: &[u8]) -> Result<Ppi, Skip> {
    if data.len() < 8 || data[0] != 0 {
        return Err(Skip::PpiMalformed);
    }
    let header_len = usize::from(u16::from_le_bytes([data[2], data[3]]));
    if header_len < 8 || header_len > data.len() {
        return Err(Skip::PpiMalformed);
    }
    let dlt = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if dlt != DLT_IEEE802_11 {
        return Err(Skip::PpiNotWifi);
    }
    let common = common_field(&data[8..header_len]).unwrap_or_default();
    let flags = common
        .get(COMMON_FLAGS_AT..COMMON_FLAGS_AT + 2)
        .map_or(0, |f| u16::from_le_bytes([f[0], f[1]]));
    Ok(Ppi {
        header_len,
        rssi: common.get(ANTSIGNAL_AT).map(|&b| b as i8),
        fcs_at_end: flags & COMMON_FCS_PRESENT != 0,
        bad_fcs: flags & COMMON_FCS_INVALID != 0,
    })
}

/// The body of the 802.11-Common field, if the header has one.
fn common_field(mut fields: &[u8]) -> Option<&[u8]> {
    while fields.len() >= 4 {
        let kind = u16::from_le_bytes([fields[0], fields[1]]);
        let len = usize::from(u16::from_le_bytes([fields[2], fields[3]]));
        let body = fields.get(4..4 + len)?;
        if kind == FIELD_80211_COMMON {
            return Some(body);
        }
        fields = &fields[4 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppi_around_wifi_yields_its_length_and_signal() {
        let mut h = vec![0, 0, 0, 0];
        h.extend_from_slice(&105u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&20u16.to_le_bytes());
        let mut common = [0u8; 20];
        common[ANTSIGNAL_AT] = (-70i8) as u8;
        common[COMMON_FLAGS_AT] = (COMMON_FCS_PRESENT | COMMON_FCS_INVALID) as u8;
        h.extend_from_slice(&common);
        let len = h.len() as u16;
        h[2..4].copy_from_slice(&len.to_le_bytes());
        h.extend_from_slice(b"frame");
        assert_eq!(
            parse(&h),
            Ok(Ppi {
                header_len: 32,
                rssi: Some(-70),
                fcs_at_end: true,
                bad_fcs: true,
            })
        );
    }

    #[test]
    fn ppi_around_other_links_or_broken_is_skipped() {
        let mut h = vec![0, 0, 8, 0];
        h.extend_from_slice(&147u32.to_le_bytes());
        assert_eq!(parse(&h), Err(Skip::PpiNotWifi));
        assert_eq!(parse(&[0, 0, 99, 0, 105, 0, 0, 0]), Err(Skip::PpiMalformed));
        assert_eq!(parse(&[1, 0, 8, 0, 105, 0, 0, 0]), Err(Skip::PpiMalformed));
        assert_eq!(parse(&[0, 0]), Err(Skip::PpiMalformed));
    }
}
