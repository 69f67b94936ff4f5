//! HCI LE advertising reports: the advertisers a Bluetooth controller says it heard.
//!
//! One decoder for the live BLE source (a raw HCI socket, [`crate::capture::ble_scan`]) and for
//! recorded HCI traffic (LINKTYPE 187 H:4, 201 H:4 with a direction pseudo-header, 254
//! BlueZ monitor, and btsnoop files, which the capture reader normalizes to 187 or 254), so
//! `replay` of a `btmon -w` recording counts what the live source counted. Controllers
//! check the CRC themselves, so reports are clean. Total: a malformed event yields the
//! reports before the fault and a skip reason; nothing panics.

use crowdflow_contract::identity::Medium;

use super::ble::address_from_le;
use super::{Heard, Skip};
use crate::frame::LinkType;

/// H:4 packet type of an HCI event.
pub(crate) const HCI_EVENT_PKT: u8 = 0x04;
/// The LE Meta event, which carries every LE advertising report.
pub(crate) const EVT_LE_META: u8 = 0x3e;
const LE_ADVERTISING_REPORT: u8 = 0x02;
const LE_DIRECTED_ADVERTISING_REPORT: u8 = 0x0b;
const LE_EXTENDED_ADVERTISING_REPORT: u8 = 0x0d;
/// BlueZ monitor opcode of an event received from the controller.
const MONITOR_EVENT_PKT: u16 = 3;
/// RSSI value meaning "not available".
const RSSI_UNKNOWN: i8 = 127;

/// Decodes one HCI packet as the raw HCI socket reads it (H:4: packet type byte first) into
/// the advertisers it reports. Packets that are not LE advertising reports add nothing.
pub fn advertisers(packet: &[u8], out: &mut Vec<Result<Heard, Skip>>) {
    if let [HCI_EVENT_PKT, event @ ..] = packet {
        le_event(event, out);
    }
}

/// Decodes one packet of an HCI capture of `link` (187, 201 or 254). Adds nothing for
/// packets that are not LE advertising reports (the caller counts them as skipped).
pub(crate) fn decode_capture(link: LinkType, data: &[u8], out: &mut Vec<Result<Heard, Skip>>) {
    match link {
        LinkType::HciH4 => advertisers(data, out),
        // 4-byte direction (0 sent, 1 received), then H:4
        LinkType::HciH4WithPhdr => {
            if let Some(h4) = data.get(4..) {
                advertisers(h4, out);
            }
        }
        // adapter index (u16) and opcode (u16), big-endian, then the packet without H:4 type
        LinkType::BluetoothLinuxMonitor => {
            if let [_, _, op_hi, op_lo, event @ ..] = data
                && u16::from_be_bytes([*op_hi, *op_lo]) == MONITOR_EVENT_PKT
            {
                le_event(event, out);
            }
        }
        _ => {}
    }
}

/// An HCI event (code, parameter length, parameters).
fn le_event(event: &[u8], out: &mut Vec<Result<Heard, Skip>>) {
    let [EVT_LE_META, len, rest @ ..] = event else {
        return; // command completes and other events: nothing to count
    };
    let Some(params) = rest.get(..usize::from(*len)) else {
        out.push(Err(Skip::BleTruncated));
        return;
    };
    match params {
        [LE_ADVERTISING_REPORT, count, reports @ ..] => legacy_reports(*count, reports, out),
        [LE_EXTENDED_ADVERTISING_REPORT, count, reports @ ..] => {
            extended_reports(*count, reports, out)
        }
        [LE_DIRECTED_ADVERTISING_REPORT, count, reports @ ..] => {
            directed_reports(*count, reports, out)
        }
        _ => {}
    }
}

/// Directed reports (only with scanning filter policies 2 and 3): type, address type,
/// address, direct address type, direct address, RSSI: 16 bytes each.
fn directed_reports(count: u8, mut rest: &[u8], out: &mut Vec<Result<Heard, Skip>>) {
    for _ in 0..count {
        let Some((report, tail)) = rest.split_first_chunk::<16>() else {
            out.push(Err(Skip::BleTruncated));
            return;
        };
        out.push(Ok(heard(&report[2..8], report[1], report[15] as i8)));
        rest = tail;
    }
}

fn heard(addr_le: &[u8], address_type: u8, rssi: i8) -> Heard {
    Heard {
        medium: Medium::Ble,
        address: address_from_le(addr_le),
        rssi: (rssi != RSSI_UNKNOWN).then_some(rssi),
        // 0x01 random, 0x03 random identity resolved by the controller
        randomized: address_type & 0x01 != 0,
    }
}

/// Legacy reports, one after the other: type, address type, address, length, data, RSSI.
fn legacy_reports(count: u8, mut rest: &[u8], out: &mut Vec<Result<Heard, Skip>>) {
    for _ in 0..count {
        let [
            _kind,
            address_type,
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            data_len,
            tail @ ..,
        ] = rest
        else {
            out.push(Err(Skip::BleTruncated));
            return;
        };
        let data_len = usize::from(*data_len);
        let Some(&rssi) = tail.get(data_len) else {
            out.push(Err(Skip::BleTruncated));
            return;
        };
        out.push(Ok(heard(
            &[*a0, *a1, *a2, *a3, *a4, *a5],
            *address_type,
            rssi as i8,
        )));
        rest = &tail[data_len + 1..];
    }
}

/// Extended reports: 24 fixed bytes (type u16, address type, address, PHYs, SID, TX power,
/// RSSI, interval u16, direct address type and address, data length) then the data.
fn extended_reports(count: u8, mut rest: &[u8], out: &mut Vec<Result<Heard, Skip>>) {
    for _ in 0..count {
        if rest.len() < 24 {
            out.push(Err(Skip::BleTruncated));
            return;
        }
        let (fixed, tail) = rest.split_at(24);
        let data_len = usize::from(fixed[23]);
        if tail.len() < data_len {
            out.push(Err(Skip::BleTruncated));
            return;
        }
        let address_type = fixed[2];
        if address_type == 0xff {
            out.push(Err(Skip::BleNotAdvertising)); // anonymous advertisement: no sender
        } else {
            out.push(Ok(heard(&fixed[3..9], address_type, fixed[13] as i8)));
        }
        rest = &tail[data_len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_event(reports: &[(u8, [u8; 6], &[u8], i8)]) -> Vec<u8> {
        let mut params = vec![LE_ADVERTISING_REPORT, reports.len() as u8];
        for (addr_type, addr, data, rssi) in reports {
            params.push(0x00);
            params.push(*addr_type);
            params.extend_from_slice(addr);
            params.push(data.len() as u8);
            params.extend_from_slice(data);
            params.push(*rssi as u8);
        }
        let mut packet = vec![HCI_EVENT_PKT, EVT_LE_META, params.len() as u8];
        packet.extend_from_slice(&params);
        packet
    }

    #[test]
    fn legacy_reports_yield_each_advertiser_msb_first() {
        let packet = legacy_event(&[
            (
                0x01,
                [0x16, 0x23, 0x42, 0x82, 0x43, 0x7d],
                &[0x02, 0x01, 0x06],
                -60,
            ),
            (0x00, [0xe8, 0xdd, 0x6e, 0xe5, 0xc5, 0x78], &[], 127),
        ]);
        let mut out = Vec::new();
        advertisers(&packet, &mut out);
        assert_eq!(out.len(), 2);
        let a = out[0].expect("ok");
        assert_eq!(a.address, [0x7d, 0x43, 0x82, 0x42, 0x23, 0x16]);
        assert_eq!((a.rssi, a.randomized), (Some(-60), true));
        let b = out[1].expect("ok");
        assert_eq!(b.address, [0x78, 0xc5, 0xe5, 0x6e, 0xdd, 0xe8]);
        assert_eq!((b.rssi, b.randomized), (None, false));
    }

    #[test]
    fn extended_reports_skip_anonymous_advertisements() {
        let mut params = vec![LE_EXTENDED_ADVERTISING_REPORT, 2];
        for addr_type in [0x01u8, 0xff] {
            let mut fixed = vec![
                0x13,
                0x00,
                addr_type,
                1,
                2,
                3,
                4,
                5,
                6,
                1,
                0,
                0xff,
                0x7f,
                (-70i8) as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                2,
            ];
            fixed.extend_from_slice(&[0xaa, 0xbb]);
            params.extend_from_slice(&fixed);
        }
        let mut packet = vec![HCI_EVENT_PKT, EVT_LE_META, params.len() as u8];
        packet.extend_from_slice(&params);
        let mut out = Vec::new();
        advertisers(&packet, &mut out);
        assert_eq!(out.len(), 2);
        let a = out[0].expect("ok");
        assert_eq!((a.address, a.rssi), ([6, 5, 4, 3, 2, 1], Some(-70)));
        assert_eq!(out[1], Err(Skip::BleNotAdvertising));
    }

    #[test]
    fn malformed_events_never_panic_and_keep_what_came_before() {
        let packet = legacy_event(&[
            (0x01, [1, 2, 3, 4, 5, 6], &[9; 5], -50),
            (0x01, [6, 5, 4, 3, 2, 1], &[], -40),
        ]);
        for cut in 0..packet.len() {
            let mut truncated = packet[..cut].to_vec();
            if truncated.len() >= 3 {
                truncated[2] = (truncated.len() - 3) as u8; // a consistent length, cut reports
            }
            let mut out = Vec::new();
            advertisers(&truncated, &mut out);
            assert!(out.len() <= 2);
        }
        let mut out = Vec::new();
        advertisers(
            &[HCI_EVENT_PKT, EVT_LE_META, 40, LE_ADVERTISING_REPORT, 1],
            &mut out,
        );
        assert_eq!(out, vec![Err(Skip::BleTruncated)]);
        advertisers(&[0x04, 0x0e, 4, 1, 0x0c, 0x20, 0], &mut out); // command complete
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn directed_reports_and_every_capture_header_reach_the_same_decoder() {
        let mut params = vec![LE_DIRECTED_ADVERTISING_REPORT, 1, 0x01, 0x01];
        params.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0x00, 9, 9, 9, 9, 9, 9, (-42i8) as u8]);
        let mut h4 = vec![HCI_EVENT_PKT, EVT_LE_META, params.len() as u8];
        h4.extend_from_slice(&params);
        let mut with_phdr = vec![0, 0, 0, 1];
        with_phdr.extend_from_slice(&h4);
        let mut monitor = vec![0, 0, 0, 3];
        monitor.extend_from_slice(&h4[1..]);
        for (link, data) in [
            (LinkType::HciH4, &h4),
            (LinkType::HciH4WithPhdr, &with_phdr),
            (LinkType::BluetoothLinuxMonitor, &monitor),
        ] {
            let mut out = Vec::new();
            decode_capture(link, data, &mut out);
            assert_eq!(out.len(), 1, "{link}");
            let h = out[0].expect("directed report");
            assert_eq!(
                (h.address, h.rssi, h.randomized),
                ([6, 5, 4, 3, 2, 1], Some(-42), true)
            );
        }
        // a command on the monitor channel (opcode 2) and short headers report nobody
        let mut out = Vec::new();
        decode_capture(
            LinkType::BluetoothLinuxMonitor,
            &[0, 0, 0, 2, 0x0c, 0x20, 0],
            &mut out,
        );
        decode_capture(LinkType::HciH4WithPhdr, &[0, 0], &mut out);
        decode_capture(LinkType::BluetoothLinuxMonitor, &[0, 0, 0], &mut out);
        assert!(out.is_empty());
        // a directed report cut short
        let mut cut = h4[..h4.len() - 3].to_vec();
        cut[2] = (cut.len() - 3) as u8;
        advertisers(&cut, &mut out);
        assert_eq!(out, vec![Err(Skip::BleTruncated)]);
    }
}
