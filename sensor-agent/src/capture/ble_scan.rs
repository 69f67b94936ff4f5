//! Live BLE: passive LE scanning on a Bluetooth controller through the kernel's HCI layer
//! (BlueZ). Its advertising reports are decoded by [`crate::frame::hci`], the decoder that
//! reads recorded HCI traffic too, so `replay` of a `btmon` capture counts what this
//! source counts.
//!
//! Passive scanning sends nothing on air. The controller reports every advertisement it
//! hears (duplicate filtering off, so a device is seen again in every window). Controllers
//! check the CRC themselves, so reports are clean. Everything except the socket calls is
//! unit-tested; the socket needs a radio (see docs/installing-a-sensor.md to verify on a Pi).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use crate::counting::Counter;
use crate::frame::hci::{EVT_LE_META, HCI_EVENT_PKT};
use crate::frame::{self, FramePolicy};

const HCI_COMMAND_PKT: u8 = 0x01;
const OGF_LE: u16 = 0x08;
const OCF_SET_SCAN_PARAMETERS: u16 = 0x000b;
const OCF_SET_SCAN_ENABLE: u16 = 0x000c;

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

/// Scans passively on Bluetooth controller `hci<dev>` until the process ends.
pub fn start(
    dev: u16,
    policy: FramePolicy,
    counter: Arc<Mutex<Counter>>,
) -> std::thread::JoinHandle<()> {
    // The sensor's log span follows the thread (every line names the sensor).
    let span = tracing::Span::current();
    std::thread::spawn(move || {
        let _span = span.enter();
        let scanner = match HciScanner::open(dev) {
            Ok(s) => s,
            Err(e) => {
                if let Ok(mut c) = counter.lock() {
                    c.capture_error(format!(
                        "cannot scan on hci{dev}: {e} (is the controller up? `hciconfig hci{dev} up`; the agent needs CAP_NET_RAW and CAP_NET_ADMIN)"
                    ));
                }
                return;
            }
        };
        let mut buf = vec![0u8; 1024];
        let mut sightings = Vec::new();
        loop {
            match scanner.recv(&mut buf) {
                Ok(n) => {
                    sightings.clear();
                    frame::decode_hci_socket(&buf[..n], &policy, &mut sightings);
                    let Ok(mut c) = counter.lock() else { return };
                    let now = Timestamp::now();
                    for outcome in &sightings {
                        c.record_sighting(now, outcome);
                    }
                }
                Err(e) => {
                    if let Ok(mut c) = counter.lock() {
                        c.capture_error(format!("BLE scan on hci{dev} failed: {e}"));
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    })
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
}
