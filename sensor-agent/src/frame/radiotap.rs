//! Radiotap headers: how long they are, and the two fields counting needs
//! (Flags: FCS present / bad FCS; dBm antenna signal).

use super::Skip;

/// What counting needs from a radiotap header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Radio {
    /// Bytes of radiotap header before the 802.11 frame.
    pub header_len: usize,
    /// dBm antenna signal of the first (combined) antenna, if present.
    pub rssi: Option<i8>,
    /// The frame ends with a 4-byte FCS.
    pub fcs_at_end: bool,
    /// The driver says the FCS did not match.
    pub bad_fcs: bool,
}

const FLAG_FCS_AT_END: u8 = 0x10;
const FLAG_BAD_FCS: u8 = 0x40;

/// (alignment, size) of the radiotap fields 0..=5: TSFT, Flags, Rate, Channel, FHSS, dBm signal.
const FIELDS: [(usize, usize); 6] = [(8, 8), (1, 1), (1, 1), (2, 4), (2, 2), (1, 1)];

/// Parses the radiotap header at the start of `data`.
pub fn parse(data: &[u8]) -> Result<Radio, Skip> {
    if data.len() < 8 {
        return Err(Skip::RadiotapTruncated);
    }
    if data[0] != 0 {
        return Err(Skip::RadiotapBadVersion);
    }
    let header_len = usize::from(u16::from_le_bytes([data[2], data[3]]));
    if header_len < 8 {
        return Err(Skip::RadiotapBadLength);
    }
    if header_len > data.len() {
        return Err(Skip::RadiotapTruncated);
    }
    let header = &data[..header_len];
    let present = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    // Skip the extended present words; the first word's fields come first in the data.
    let mut pos = 8;
    let mut word = present;
    while word & (1 << 31) != 0 {
        let next = header.get(pos..pos + 4).ok_or(Skip::RadiotapBadLength)?;
        word = u32::from_le_bytes([next[0], next[1], next[2], next[3]]);
        pos += 4;
    }
    let mut radio = Radio {
        header_len,
        rssi: None,
        fcs_at_end: false,
        bad_fcs: false,
    };
    for (bit, &(align, size)) in FIELDS.iter().enumerate() {
        if present & (1 << bit) == 0 {
            continue;
        }
        pos = pos.next_multiple_of(align);
        let field = header.get(pos..pos + size).ok_or(Skip::RadiotapBadLength)?;
        match bit {
            1 => {
                radio.fcs_at_end = field[0] & FLAG_FCS_AT_END != 0;
                radio.bad_fcs = field[0] & FLAG_BAD_FCS != 0;
            }
            5 => radio.rssi = Some(field[0] as i8),
            _ => {}
        }
        pos += size;
    }
    Ok(radio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_signal_are_read_at_their_aligned_offsets() {
        // present: TSFT | Flags | Rate | Channel | dBm signal; TSFT forces 8-byte alignment.
        let mut h = vec![0, 0, 0, 0];
        h.extend_from_slice(&(1u32 | 2 | 4 | 8 | 32).to_le_bytes());
        h.extend_from_slice(&[0; 8]); // TSFT at 8
        h.push(FLAG_FCS_AT_END); // Flags at 16
        h.push(2); // Rate at 17
        h.extend_from_slice(&[0x85, 0x09, 0xa0, 0x00]); // Channel at 18
        h.push((-61i8) as u8); // signal at 22
        h.push(0);
        let len = h.len() as u16;
        h[2..4].copy_from_slice(&len.to_le_bytes());
        let r = parse(&h).expect("valid");
        assert_eq!(
            r,
            Radio {
                header_len: 24,
                rssi: Some(-61),
                fcs_at_end: true,
                bad_fcs: false
            }
        );
    }

    #[test]
    fn extended_bitmaps_are_skipped_before_the_fields() {
        let mut h = vec![0, 0, 0, 0];
        h.extend_from_slice(&(2u32 | 32 | 1 << 31).to_le_bytes());
        h.extend_from_slice(&(32u32).to_le_bytes());
        h.push(FLAG_BAD_FCS);
        h.push((-40i8) as u8);
        h.extend_from_slice(&[0, 0]);
        let len = h.len() as u16;
        h[2..4].copy_from_slice(&len.to_le_bytes());
        let r = parse(&h).expect("valid");
        assert_eq!((r.rssi, r.bad_fcs, r.header_len), (Some(-40), true, 16));
    }

    #[test]
    fn inconsistent_headers_are_skipped_with_a_reason() {
        assert_eq!(parse(&[0; 4]), Err(Skip::RadiotapTruncated));
        assert_eq!(
            parse(&[1, 0, 8, 0, 0, 0, 0, 0]),
            Err(Skip::RadiotapBadVersion)
        );
        assert_eq!(
            parse(&[0, 0, 4, 0, 0, 0, 0, 0]),
            Err(Skip::RadiotapBadLength)
        );
        assert_eq!(
            parse(&[0, 0, 200, 0, 0, 0, 0, 0]),
            Err(Skip::RadiotapTruncated)
        );
        // present word claims an extension that does not fit
        assert_eq!(
            parse(&[0, 0, 8, 0, 0, 0, 0, 0x80]),
            Err(Skip::RadiotapBadLength)
        );
        // claims a signal field but the header ends
        assert_eq!(
            parse(&[0, 0, 8, 0, 32, 0, 0, 0]),
            Err(Skip::RadiotapBadLength)
        );
    }
}
