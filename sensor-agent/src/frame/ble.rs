//! Bluetooth LE link-layer packets: advertising PDUs name their advertiser (AdvA).
//!
//! Over-the-air sniffers (HackRF, Ubertooth) record noise: 7-11 % of frames with a bad
//! CRC in the Boston captures, which would inflate device counts 2.5-3x. So the CRC-24 is
//! checked here whenever the capture did not check it.

use crowdflow_contract::identity::{ADDRESS_LEN, Medium};

use super::{Heard, Skip};

/// The access address of all advertising-channel packets.
const ADVERTISING_AA: u32 = 0x8E89_BED6;
/// CRC initial value on advertising channels.
const ADVERTISING_CRC_INIT: u32 = 0x55_5555;

const PHDR_LEN: usize = 10;
const PHDR_SIGNAL_VALID: u16 = 0x0002;
const PHDR_CRC_CHECKED: u16 = 0x0400;
const PHDR_CRC_VALID: u16 = 0x0800;

/// A DLT 256 packet: pseudo-header, then the link-layer packet.
pub fn parse_with_phdr(data: &[u8]) -> Result<Heard, Skip> {
    if data.len() < PHDR_LEN {
        return Err(Skip::BleTruncated);
    }
    let flags = u16::from_le_bytes([data[8], data[9]]);
    if flags & PHDR_CRC_CHECKED != 0 && flags & PHDR_CRC_VALID == 0 {
        return Err(Skip::BleBadCrc);
    }
    let rssi = (flags & PHDR_SIGNAL_VALID != 0).then_some(data[1] as i8);
    parse(&data[PHDR_LEN..], rssi)
}

/// A DLT 251 packet: access address, PDU header, payload, CRC.
pub fn parse(data: &[u8], rssi: Option<i8>) -> Result<Heard, Skip> {
    if data.len() < 4 + 2 + 3 {
        return Err(Skip::BleTruncated);
    }
    if u32::from_le_bytes([data[0], data[1], data[2], data[3]]) != ADVERTISING_AA {
        return Err(Skip::BleNotAdvertising);
    }
    let pdu = &data[4..];
    let header = pdu[0];
    let len = usize::from(pdu[1]);
    let Some(crc_bytes) = pdu.get(2 + len..2 + len + 3) else {
        return Err(Skip::BleTruncated);
    };
    let received = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], 0]);
    if crc24(ADVERTISING_CRC_INIT, &pdu[..2 + len]) != received {
        return Err(Skip::BleBadCrc);
    }
    // ADV_IND, ADV_DIRECT_IND, ADV_NONCONN_IND, SCAN_RSP, ADV_SCAN_IND carry the sender's
    // AdvA first; SCAN_REQ and CONNECT_IND are sent by someone else about the advertiser.
    if !matches!(header & 0x0f, 0 | 1 | 2 | 4 | 6) {
        return Err(Skip::BleNotAdvertising);
    }
    if len < ADDRESS_LEN {
        return Err(Skip::BleTruncated);
    }
    let address = address_from_le(&pdu[2..2 + ADDRESS_LEN]);
    Ok(Heard {
        medium: Medium::Ble,
        address,
        rssi,
        randomized: header & 0x40 != 0,
    })
}

/// A BLE device address as transmitted (least significant byte first), most significant
/// byte first as every crowdflow source normalizes it.
pub(crate) fn address_from_le(le: &[u8]) -> [u8; ADDRESS_LEN] {
    let mut address = [0; ADDRESS_LEN];
    for (out, byte) in address.iter_mut().zip(le.iter().rev()) {
        *out = *byte;
    }
    address
}

/// The BLE link-layer CRC-24 (polynomial x^24+x^10+x^9+x^6+x^4+x^3+x+1), bits LSB first,
/// returned in the byte order it is transmitted in.
pub fn crc24(init: u32, data: &[u8]) -> u32 {
    let mut state =
        (reverse8(init) | reverse8(init >> 8) << 8 | reverse8(init >> 16) << 16) & 0xff_ffff;
    for &byte in data {
        let mut byte = u32::from(byte);
        for _ in 0..8 {
            let next = (state ^ byte) & 1;
            byte >>= 1;
            state >>= 1;
            if next != 0 {
                state |= 1 << 23;
                state ^= 0x5a_6000;
            }
        }
    }
    state
}

fn reverse8(v: u32) -> u32 {
    u32::from((v as u8).reverse_bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ADV_NONCONN_IND from a random address with a correct CRC.
    fn advertisement(adv_a_le: [u8; 6], tx_random: bool) -> Vec<u8> {
        let mut p = ADVERTISING_AA.to_le_bytes().to_vec();
        p.push(0x02 | if tx_random { 0x40 } else { 0 });
        p.push(9);
        p.extend_from_slice(&adv_a_le);
        p.extend_from_slice(&[0x02, 0x01, 0x06]);
        let crc = crc24(ADVERTISING_CRC_INIT, &p[4..]);
        p.extend_from_slice(&crc.to_le_bytes()[..3]);
        p
    }

    #[test]
    fn advertisers_are_named_most_significant_byte_first() {
        let h = parse(
            &advertisement([0x16, 0x23, 0x42, 0x82, 0x43, 0x7d], true),
            None,
        )
        .expect("valid");
        assert_eq!(h.address, [0x7d, 0x43, 0x82, 0x42, 0x23, 0x16]);
        assert!(h.randomized);
        assert_eq!(h.medium, Medium::Ble);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut p = advertisement([1, 2, 3, 4, 5, 6], false);
        p[8] ^= 0x10;
        assert_eq!(parse(&p, None), Err(Skip::BleBadCrc));
    }

    #[test]
    fn data_channel_and_non_advertising_pdus_are_skipped() {
        let mut p = advertisement([1, 2, 3, 4, 5, 6], false);
        p[0] ^= 1;
        assert_eq!(parse(&p, None), Err(Skip::BleNotAdvertising));
        let mut p = ADVERTISING_AA.to_le_bytes().to_vec();
        p.extend_from_slice(&[0x03, 12]); // SCAN_REQ
        p.extend_from_slice(&[0; 12]);
        let crc = crc24(ADVERTISING_CRC_INIT, &p[4..]);
        p.extend_from_slice(&crc.to_le_bytes()[..3]);
        assert_eq!(parse(&p, None), Err(Skip::BleNotAdvertising));
    }

    #[test]
    fn truncated_packets_are_skipped() {
        let p = advertisement([1, 2, 3, 4, 5, 6], false);
        for cut in 0..p.len() {
            assert!(parse(&p[..cut], None).is_err(), "{cut}");
        }
        assert_eq!(parse_with_phdr(&[0; 9]), Err(Skip::BleTruncated));
    }

    #[test]
    fn the_pseudo_header_gives_signal_and_a_checked_crc_verdict() {
        let mut d = vec![37, (-55i8) as u8, 0, 0, 0, 0, 0, 0];
        d.extend_from_slice(&(PHDR_SIGNAL_VALID | PHDR_CRC_CHECKED | PHDR_CRC_VALID).to_le_bytes());
        d.extend_from_slice(&advertisement([1, 2, 3, 4, 5, 6], false));
        assert_eq!(parse_with_phdr(&d).expect("valid").rssi, Some(-55));
        d[8..10].copy_from_slice(&PHDR_CRC_CHECKED.to_le_bytes());
        assert_eq!(parse_with_phdr(&d), Err(Skip::BleBadCrc));
    }
}
