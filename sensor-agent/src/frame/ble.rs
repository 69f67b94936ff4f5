//! Bluetooth LE link-layer packets: advertising PDUs name their advertiser (AdvA), legacy
//! ones first in the payload, Bluetooth 5 extended ones (ADV_EXT_IND, AUX_ADV_IND,
//! AUX_SCAN_RSP, AUX_CHAIN_IND, AUX_CONNECT_RSP) in the common extended advertising payload's
//! header when its AdvA flag is set (Core 5.x Vol 6 Part B 2.3.4). Read from LINKTYPE 251,
//! 256 (pseudo-header) and 272 (Nordic's nRF Sniffer for Bluetooth LE).
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
    let payload = &pdu[2..2 + len];
    let adv_a = match header & 0x0f {
        // ADV_IND, ADV_DIRECT_IND, ADV_NONCONN_IND, SCAN_RSP, ADV_SCAN_IND carry the sender's
        // AdvA first; SCAN_REQ and CONNECT_IND are sent by someone else about the advertiser.
        0 | 1 | 2 | 4 | 6 => payload.get(..ADDRESS_LEN).ok_or(Skip::BleTruncated)?,
        // the extended family (7) and AUX_CONNECT_RSP (8), sent by the advertiser
        7 | 8 => extended_adv_a(payload)?,
        _ => return Err(Skip::BleNotAdvertising),
    };
    let address = address_from_le(adv_a);
    Ok(Heard {
        medium: Medium::Ble,
        address,
        rssi,
        randomized: header & 0x40 != 0,
    })
}

/// AdvA from a common extended advertising payload: extended header length (6 bits) and
/// AdvMode, then the header's flags byte, then AdvA first when flag bit 0 is set. PDUs
/// without AdvA (an ADV_EXT_IND pointing to its AUX_ADV_IND, anonymous advertising) do not
/// name a sender.
fn extended_adv_a(payload: &[u8]) -> Result<&[u8], Skip> {
    let Some(&first) = payload.first() else {
        return Err(Skip::BleTruncated);
    };
    let header_len = usize::from(first & 0x3f);
    if header_len == 0 {
        return Err(Skip::BleNotAdvertising);
    }
    let header = payload.get(1..1 + header_len).ok_or(Skip::BleTruncated)?;
    if header[0] & 0x01 == 0 {
        return Err(Skip::BleNotAdvertising);
    }
    header.get(1..1 + ADDRESS_LEN).ok_or(Skip::BleTruncated)
}

/// nRF Sniffer header: board id (1); UART header (6): payload length (2, or header length
/// and payload length in protocol version 1), protocol version, packet counter (2), packet
/// id; BLE header (10): its length (10), flags, channel, RSSI (magnitude of the negative
/// dBm), event counter (2), timestamp (4). Wireshark's `packet-nordic_ble.c`, Nordic's
/// `SnifferAPI/Packet.py` (which drops the firmware's padding byte before writing pcap).
const NORDIC_HEADER_LEN: usize = 17;
const NORDIC_BLE_HEADER_LEN: u8 = 10;
/// Packet ids of sniffed packets: 0x02 advertising PDU (protocol 3), 0x06 any PDU (1 and 2)
/// or data PDU (3).
const NORDIC_PACKET_IDS: [u8; 2] = [0x02, 0x06];
const NORDIC_FLAG_CRC_OK: u8 = 0x01;
const NORDIC_PHY_CODED: u8 = 2;

/// The legacy header of nRF Sniffer 1.x (firmware 0.9.7 and before): marker 0xBEEF instead
/// of the board id, then packet id (1), packet counter (2), unused (2), payload length (1),
/// and the BLE header without its length byte: flags, channel, RSSI at the same offsets as
/// in later versions (Wireshark's `packet-nordic_ble.c`, protocol version 0).
const NORDIC_LEGACY_MARKER: [u8; 2] = [0xbe, 0xef];
/// Its UART header: marker and the six bytes after it.
const NORDIC_LEGACY_UART_LEN: usize = 8;
/// Its only sniffed-packet id (EVENT_PACKET, any PDU).
const NORDIC_LEGACY_PACKET_ID: u8 = 0x06;

/// A LINKTYPE 272 packet: the sniffer's header, then the link-layer packet (with a coding
/// indicator byte after the access address on the LE Coded PHY).
pub fn parse_nordic(data: &[u8]) -> Result<Heard, Skip> {
    let Some((header, ll)) = data.split_at_checked(NORDIC_HEADER_LEN) else {
        return Err(Skip::BleTruncated);
    };
    if header[..2] == NORDIC_LEGACY_MARKER {
        if NORDIC_LEGACY_UART_LEN + usize::from(header[7]) != data.len() {
            return Err(Skip::BleTruncated);
        }
        if header[2] != NORDIC_LEGACY_PACKET_ID {
            return Err(Skip::BleNotAdvertising);
        }
    } else {
        if header[7] != NORDIC_BLE_HEADER_LEN {
            return Err(Skip::BleTruncated);
        }
        if !NORDIC_PACKET_IDS.contains(&header[6]) {
            return Err(Skip::BleNotAdvertising);
        }
    }
    let flags = header[8];
    if flags & NORDIC_FLAG_CRC_OK == 0 {
        return Err(Skip::BleBadCrc);
    }
    let rssi = i8::try_from(-i16::from(header[10])).unwrap_or(i8::MIN);
    if (flags >> 4) & 0x07 == NORDIC_PHY_CODED {
        // drop the coding indicator between access address and PDU
        let mut packet = [0u8; 4 + 2 + 255 + 3];
        let (Some(aa), Some(pdu)) = (ll.get(..4), ll.get(5..)) else {
            return Err(Skip::BleTruncated);
        };
        let pdu = &pdu[..pdu.len().min(packet.len() - 4)];
        packet[..4].copy_from_slice(aa);
        packet[4..4 + pdu.len()].copy_from_slice(pdu);
        return parse(&packet[..4 + pdu.len()], Some(rssi));
    }
    parse(ll, Some(rssi))
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

    fn pdu(header: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = ADVERTISING_AA.to_le_bytes().to_vec();
        p.push(header);
        p.push(payload.len() as u8);
        p.extend_from_slice(payload);
        let crc = crc24(ADVERTISING_CRC_INIT, &p[4..]);
        p.extend_from_slice(&crc.to_le_bytes()[..3]);
        p
    }

    #[test]
    fn extended_pdus_count_their_adv_a_and_only_when_present() {
        // AUX_ADV_IND: ext header length 9 (flags, AdvA, ADI), random TxAdd
        let aux = [9, 0x09, 1, 2, 3, 4, 5, 6, 0x01, 0x10, 0x02, 0x01, 0x06];
        let h = parse(&pdu(0x47, &aux), None).expect("AdvA");
        assert_eq!((h.address, h.randomized), ([6, 5, 4, 3, 2, 1], true));
        // AUX_CONNECT_RSP (type 8) names the advertiser too
        assert!(parse(&pdu(0x08, &aux), None).is_ok());
        // ADV_EXT_IND with ADI and AuxPtr only, and one with an empty extended header
        let pointer = [6, 0x18, 0x01, 0x10, 0x00, 0x00, 0x00];
        assert_eq!(
            parse(&pdu(0x07, &pointer), None),
            Err(Skip::BleNotAdvertising)
        );
        assert_eq!(
            parse(&pdu(0x07, &[0x00]), None),
            Err(Skip::BleNotAdvertising)
        );
        // AdvA flag set but the header ends early; an empty payload
        assert_eq!(
            parse(&pdu(0x07, &[3, 0x01, 1, 2]), None),
            Err(Skip::BleTruncated)
        );
        assert_eq!(parse(&pdu(0x07, &[]), None), Err(Skip::BleTruncated));
        assert_eq!(
            parse(&pdu(0x07, &[40, 0x01, 1]), None),
            Err(Skip::BleTruncated)
        );
    }

    fn nordic(flags: u8, id: u8, ll: &[u8]) -> Vec<u8> {
        let mut p = vec![0x01, 0, 0, 3, 0, 0, id, 10, flags, 37, 55, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(ll);
        p
    }

    #[test]
    fn nrf_sniffer_packets_give_a_negative_rssi_and_the_sniffer_crc_verdict() {
        let adv = advertisement([1, 2, 3, 4, 5, 6], true);
        assert_eq!(
            parse_nordic(&nordic(0x01, 0x02, &adv)).expect("ok").rssi,
            Some(-55)
        );
        assert_eq!(
            parse_nordic(&nordic(0x00, 0x02, &adv)),
            Err(Skip::BleBadCrc)
        );
        assert_eq!(
            parse_nordic(&nordic(0x01, 0x0e, &adv)),
            Err(Skip::BleNotAdvertising)
        );
        let mut wrong_header = nordic(0x01, 0x02, &adv);
        wrong_header[7] = 9;
        assert_eq!(parse_nordic(&wrong_header), Err(Skip::BleTruncated));
        // LE Coded: a coding indicator byte follows the access address
        let mut coded = adv.clone();
        coded.insert(4, 0x01);
        assert!(parse_nordic(&nordic(0x21, 0x02, &coded)).is_ok());
        assert!(parse_nordic(&nordic(0x21, 0x02, &coded[..4])).is_err());
        // nRF Sniffer 1.x (0.9.7): the 0xBEEF marker and no BLE header length.
        let mut legacy = vec![0xbe, 0xef, 0x06, 7, 0, 0, 0, (9 + adv.len()) as u8];
        legacy.extend_from_slice(&[0x01, 37, 60, 0, 0, 0, 0, 0, 0]);
        legacy.extend_from_slice(&adv);
        assert_eq!(parse_nordic(&legacy).expect("legacy").rssi, Some(-60));
        legacy[7] += 1;
        assert_eq!(parse_nordic(&legacy), Err(Skip::BleTruncated), "length");
        legacy[7] -= 1;
        legacy[8] = 0;
        assert_eq!(parse_nordic(&legacy), Err(Skip::BleBadCrc));
        let full = nordic(0x01, 0x02, &adv);
        for cut in 0..full.len() {
            assert!(parse_nordic(&full[..cut]).is_err(), "{cut}");
        }
    }
}
