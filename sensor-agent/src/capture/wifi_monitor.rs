//! Live Wi-Fi capture: a raw AF_PACKET socket on a monitor-mode interface (radiotap frames),
//! a channel hopper, and the thread that feeds what it hears to the counter ([`start`]).
//!
//! `unsafe` here is the socket set-up (std has no AF_PACKET; docs/decisions/12-unsafe-code.md);
//! each block says why it is sound. Everything after `recv` is the same total decoder the
//! file replay uses, so it is tested without a radio.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use crate::counting::Counter;
use crate::frame::{self, FramePolicy, LinkType};

/// ARPHRD_IEEE80211_RADIOTAP: the link type of an interface in monitor mode.
const ARPHRD_RADIOTAP: u32 = 803;

/// Why live capture cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No such interface.
    #[error("interface {0} not found: check `ip link`, and that the Wi-Fi adapter is plugged in")]
    NoInterface(String),
    /// The interface is not in monitor mode.
    #[error(
        "interface {0} is not in monitor mode (link type {1}, need 803): run \
         `crowdflow-monitor-mode {0}` or `iw dev {0} set type monitor && ip link set {0} up`"
    )]
    NotMonitor(String, u32),
    /// The interface name is not a plain name.
    #[error("{0:?} is not a network interface name")]
    BadName(String),
    /// The socket could not be opened (usually a missing CAP_NET_RAW).
    #[error(
        "cannot open a raw socket on {0}: {1} (the agent needs CAP_NET_RAW; the systemd unit grants it)"
    )]
    Socket(String, io::Error),
}

/// Whether `interface` is a plain interface name (at most 15 of A-Z a-z 0-9 _ . -).
pub fn valid_name(interface: &str) -> bool {
    !interface.is_empty()
        && interface.len() <= 15
        && interface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && interface != "."
        && interface != ".."
}

/// Checks that `interface` exists and is in monitor mode.
pub fn check_monitor_interface(interface: &str) -> Result<(), LiveError> {
    if !valid_name(interface) {
        return Err(LiveError::BadName(interface.to_owned()));
    }
    let path = Path::new("/sys/class/net").join(interface).join("type");
    let link = std::fs::read_to_string(&path)
        .map_err(|_| LiveError::NoInterface(interface.to_owned()))?
        .trim()
        .parse::<u32>()
        .map_err(|_| LiveError::NoInterface(interface.to_owned()))?;
    if link == ARPHRD_RADIOTAP {
        Ok(())
    } else {
        Err(LiveError::NotMonitor(interface.to_owned(), link))
    }
}

/// A raw packet socket bound to one interface.
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
}

impl RawSocket {
    /// Opens a socket receiving every frame of a monitor-mode `interface`.
    pub fn open(interface: &str) -> Result<RawSocket, LiveError> {
        check_monitor_interface(interface)?;
        let socket_error = |e| LiveError::Socket(interface.to_owned(), e);
        let name = CString::new(interface).map_err(|_| LiveError::BadName(interface.to_owned()))?;
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        if raw < 0 {
            return Err(socket_error(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(LiveError::NoInterface(interface.to_owned()));
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value we then fill in.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol;
        address.sll_ifindex =
            i32::try_from(index).map_err(|_| LiveError::NoInterface(interface.to_owned()))?;
        // SAFETY: the pointer and length describe `address`, which outlives the call.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(socket_error(io::Error::last_os_error()));
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: the pointer and length describe `timeout`, which outlives the call.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast::<libc::c_void>(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if set < 0 {
            return Err(socket_error(io::Error::last_os_error()));
        }
        Ok(RawSocket { fd })
    }

    /// Receives one frame into `buf`; `Ok(None)` after 200 ms without a frame.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: the pointer and length describe `buf`, exclusively borrowed for the call.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Ok(None)
            }
            _ => Err(e),
        }
    }
}

/// The channel plan, visited in order and then again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopPlan {
    /// Channels in visiting order (repeats weight a channel).
    pub channels: Vec<u16>,
    /// Time on each.
    pub dwell: Duration,
}

impl HopPlan {
    /// The channel for the `step`-th dwell.
    pub fn channel(&self, step: usize) -> Option<u16> {
        (!self.channels.is_empty()).then(|| self.channels[step % self.channels.len()])
    }

    /// Share of time on each channel, for the documentation and the status.
    pub fn shares(&self) -> Vec<(u16, f64)> {
        let mut shares: Vec<(u16, f64)> = Vec::new();
        for &c in &self.channels {
            match shares.iter_mut().find(|(ch, _)| *ch == c) {
                Some(entry) => entry.1 += 1.0,
                None => shares.push((c, 1.0)),
            }
        }
        let total = self.channels.len().max(1) as f64;
        shares.iter_mut().for_each(|s| s.1 /= total);
        shares
    }
}

/// Tunes `interface` to `channel` with `iw` (nl80211), as installers do by hand.
pub fn set_channel(interface: &str, channel: u16) -> io::Result<()> {
    let status = std::process::Command::new("iw")
        .args(["dev", interface, "set", "channel", &channel.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`iw dev {interface} set channel {channel}` failed ({status})"
        )))
    }
}

/// Captures from a monitor-mode interface, hopping channels, until the process ends.
pub fn start(
    plan: HopPlan,
    interface: String,
    policy: FramePolicy,
    counter: Arc<Mutex<Counter>>,
) -> std::thread::JoinHandle<()> {
    let hopper_counter = counter.clone();
    let hopper_interface = interface.clone();
    // The sensor's log span follows the thread (every line names the sensor).
    let span = tracing::Span::current();
    std::thread::spawn(move || {
        let _span = span.enter();
        let mut step = 0;
        while let Some(channel) = plan.channel(step) {
            if let Err(e) = set_channel(&hopper_interface, channel)
                && let Ok(mut c) = hopper_counter.lock()
            {
                c.capture_error(format!("channel hopping: {e}"));
            }
            std::thread::sleep(plan.dwell);
            step = step.wrapping_add(1);
        }
    });
    // The sensor's log span follows the thread (every line names the sensor).
    let span = tracing::Span::current();
    std::thread::spawn(move || {
        let _span = span.enter();
        let socket = match RawSocket::open(&interface) {
            Ok(s) => s,
            Err(e) => {
                if let Ok(mut c) = counter.lock() {
                    c.capture_error(e.to_string());
                }
                return;
            }
        };
        let mut buf = vec![0u8; 65_536];
        loop {
            match socket.recv(&mut buf) {
                Ok(Some(n)) => {
                    let outcome = frame::decode_sighting(LinkType::Radiotap, &buf[..n], &policy);
                    match counter.lock() {
                        Ok(mut c) => c.record_sighting(Timestamp::now(), &outcome),
                        Err(_) => return,
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    if let Ok(mut c) = counter.lock() {
                        c.capture_error(format!("capture on {interface} failed: {e}"));
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
    fn the_default_plan_weights_1_6_11() {
        let plan = HopPlan {
            channels: vec![1, 6, 11, 1, 6, 11, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13],
            dwell: Duration::from_millis(250),
        };
        assert_eq!(plan.channel(0), Some(1));
        assert_eq!(plan.channel(17), Some(6));
        let shares = plan.shares();
        assert_eq!(shares[0], (1, 2.0 / 16.0));
        assert_eq!(shares.len(), 13);
    }

    #[test]
    fn interfaces_that_are_not_in_monitor_mode_are_refused_with_the_fix() {
        // The loopback interface is never in monitor mode (link type 772).
        let err = check_monitor_interface("lo").expect_err("not monitor");
        assert!(matches!(err, LiveError::NotMonitor(_, 772)), "{err}");
        assert!(
            err.to_string().contains("iw dev lo set type monitor"),
            "{err}"
        );
        assert!(matches!(
            check_monitor_interface("wlan-none9"),
            Err(LiveError::NoInterface(_))
        ));
        for bad in ["", "../etc", "a/b", "way-too-long-interface"] {
            assert!(
                matches!(check_monitor_interface(bad), Err(LiveError::BadName(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            RawSocket::open("lo"),
            Err(LiveError::NotMonitor(_, 772))
        ));
    }
}
