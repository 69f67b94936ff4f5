//! Live BLE: passive LE scanning on a Bluetooth controller through the kernel's HCI layer
//! (BlueZ), and the decoding of its advertising reports.
//!
//! Passive scanning sends nothing on air. The controller reports every advertisement it
//! hears (duplicate filtering off, so a device is seen again in every window). Controllers
//! check the CRC themselves, so reports are clean. Everything except the socket calls is
//! unit-tested; the socket needs a radio (see docs/installing-a-sensor.md to verify on a Pi).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crowdflow_contract::identity::Medium;

use crate::frame::ble::address_from_le;
use crate::frame::{Heard, Skip};

const HCI_COMMAND_PKT: u8 = 0x01;
const HCI_EVENT_PKT: u8 = 0x04;
const EVT_LE_META: u8 = 0x3e;
const LE_ADVERTISING_REPORT: u8 = 0x02;
const LE_EXTENDED_ADVERTISING_REPORT: u8 = 0x0d;
const OGF_LE: u16 = 0x08;
const OCF_SET_SCAN_PARAMETERS: u16 = 0x000b;
const OCF_SET_SCAN_ENABLE: u16 = 0x000c;
/// RSSI value meaning "not available".
const RSSI_UNKNOWN: i8 = 127;

fn command(ocf: u16, params: &[u8]) -> Vec<u8> {
    let opcode = (OGF_LE << 10) | ocf;
    let mut packet = vec![HCI_COMMAND_PKT];
    packet.extend_from_slice(&opcode.to_le_bytes());
    packet.push(params.len() as u8);
    packet.extend_from_slice(params);
    packet
}

/// LE Set Scan Parameters: passive, 100 ms interval and window (continuous), public own
/// address, accept all advertisements.
pub fn set_scan_parameters() -> Vec<u8> {
    let interval: u16 = 0x00a0; // 160 x 0.625 ms = 100 ms
    let mut params = vec![0x00]; // passive: no scan requests are sent
    params.extend_from_slice(&interval.to_le_bytes());
    params.extend_from_slice(&interval.to_le_bytes());
    params.extend_from_slice(&[0x00, 0x00]);
    command(OCF_SET_SCAN_PARAMETERS, &params)
}

/// LE Set Scan Enable, without duplicate filtering.
pub fn set_scan_enable(enable: bool) -> Vec<u8> {
    command(OCF_SET_SCAN_ENABLE, &[u8::from(enable), 0x00])
}

/// Decodes one HCI packet read from the socket into the advertisers it reports. Total: a
/// malformed event yields the reports before the fault and a skip reason.
pub fn advertisers(packet: &[u8], out: &mut Vec<Result<Heard, Skip>>) {
    let [HCI_EVENT_PKT, EVT_LE_META, len, rest @ ..] = packet else {
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
        _ => {}
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

const AF_BLUETOOTH: i32 = 31;
const BTPROTO_HCI: i32 = 1;
const SOL_HCI: i32 = 0;
const HCI_FILTER: i32 = 2;
const HCI_CHANNEL_RAW: u16 = 0;

#[repr(C)]
struct SockaddrHci {
    family: u16,
    dev: u16,
    channel: u16,
}

#[repr(C)]
struct HciFilter {
    type_mask: u32,
    event_mask: [u32; 2],
    opcode: u16,
}

/// A raw HCI socket on controller `hciN`, scanning passively.
#[derive(Debug)]
pub struct HciScanner {
    fd: OwnedFd,
}

impl HciScanner {
    /// Opens `hci<dev>` and starts passive scanning (needs CAP_NET_RAW and CAP_NET_ADMIN).
    pub fn open(dev: u16) -> io::Result<HciScanner> {
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                AF_BLUETOOTH,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                BTPROTO_HCI,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let address = SockaddrHci {
            family: AF_BLUETOOTH as u16,
            dev,
            channel: HCI_CHANNEL_RAW,
        };
        // SAFETY: the pointer and length describe `address`, which outlives the call.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                std::mem::size_of::<SockaddrHci>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        let filter = HciFilter {
            type_mask: 1 << HCI_EVENT_PKT,
            event_mask: [0, 1 << (EVT_LE_META - 32)],
            opcode: 0,
        };
        // SAFETY: the pointer and length describe `filter`, which outlives the call.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_HCI,
                HCI_FILTER,
                (&raw const filter).cast(),
                std::mem::size_of::<HciFilter>() as libc::socklen_t,
            )
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        let scanner = HciScanner { fd };
        scanner.send(&set_scan_enable(false))?;
        scanner.send(&set_scan_parameters())?;
        scanner.send(&set_scan_enable(true))?;
        Ok(scanner)
    }

    fn send(&self, packet: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `packet`, borrowed for the call.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Reads one HCI packet.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buf`, exclusively borrowed for the call.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Drop for HciScanner {
    fn drop(&mut self) {
        let _ = self.send(&set_scan_enable(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_commands_have_the_spec_layout() {
        assert_eq!(
            set_scan_parameters(),
            vec![
                0x01, 0x0b, 0x20, 7, 0x00, 0xa0, 0x00, 0xa0, 0x00, 0x00, 0x00
            ]
        );
        assert_eq!(set_scan_enable(true), vec![0x01, 0x0c, 0x20, 2, 1, 0]);
    }

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
}
