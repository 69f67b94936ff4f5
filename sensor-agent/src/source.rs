//! Running capture sources: a thread that decodes frames and hands each sighting, with its
//! time, to the counter. Live radios plug in here; capture files are replayed at their
//! recorded pace, shifted to the present.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use crate::capture::LinkType;
use crate::capture::file::CaptureReader;
use crate::capture::hci::{HciScanner, advertisers};
use crate::capture::live::{HopPlan, RawSocket, set_channel};
use crate::counter::Counter;
use crate::frame::{self, FramePolicy};

/// Replays `files` (forever if `repeat`) as if they were being captured now.
pub fn replay_as_live(
    files: Vec<PathBuf>,
    repeat: bool,
    policy: FramePolicy,
    counter: Arc<Mutex<Counter>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        wait_for_salt(&counter);
        loop {
            for path in &files {
                if let Err(e) = replay_file(path, &policy, &counter)
                    && let Ok(mut c) = counter.lock()
                {
                    c.capture_error(format!("{}: {e}", path.display()));
                }
            }
            if !repeat {
                if let Ok(mut c) = counter.lock() {
                    c.capture_done();
                }
                return;
            }
        }
    })
}

/// Holds a replay back until a salt is held. A file stands for a radio that is already on:
/// started at once, its first seconds would race the salt's arrival and be dropped as
/// uncountable (a live radio does lose those; a trial should not lose them by chance).
fn wait_for_salt(counter: &Mutex<Counter>) {
    let mut told = false;
    loop {
        match counter.lock() {
            Ok(c) if c.counting(Timestamp::now()) => return,
            Ok(_) => {}
            Err(_) => return,
        }
        if !told {
            tracing::info!("waiting for a salt from the aggregator before replaying the capture");
            told = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Captures from a monitor-mode interface, hopping channels, until the process ends.
pub fn live_wifi(
    plan: HopPlan,
    interface: String,
    policy: FramePolicy,
    counter: Arc<Mutex<Counter>>,
) -> std::thread::JoinHandle<()> {
    let hopper_counter = counter.clone();
    let hopper_interface = interface.clone();
    std::thread::spawn(move || {
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
    std::thread::spawn(move || {
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

/// Scans passively on Bluetooth controller `hci<dev>` until the process ends.
pub fn live_ble(
    dev: u16,
    policy: FramePolicy,
    counter: Arc<Mutex<Counter>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
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
        let mut reports = Vec::new();
        loop {
            match scanner.recv(&mut buf) {
                Ok(n) => {
                    reports.clear();
                    advertisers(&buf[..n], &mut reports);
                    let Ok(mut c) = counter.lock() else { return };
                    let now = Timestamp::now();
                    for outcome in &reports {
                        let outcome = match outcome {
                            Ok(h)
                                if policy
                                    .min_rssi
                                    .zip(h.rssi)
                                    .is_some_and(|(min, rssi)| rssi < min) =>
                            {
                                Err(crate::frame::Skip::TooFar)
                            }
                            other => *other,
                        };
                        c.record(now, &outcome);
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

fn replay_file(
    path: &PathBuf,
    policy: &FramePolicy,
    counter: &Mutex<Counter>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut reader = CaptureReader::new(BufReader::new(File::open(path)?))?;
    let started = Instant::now();
    let now = Timestamp::now();
    let mut first_ns: Option<i64> = None;
    let mut outcomes = Vec::new();
    while let Some(packet) = reader.next_packet()? {
        let t0 = *first_ns.get_or_insert(packet.ts_ns);
        let offset =
            Duration::from_nanos(u64::try_from(packet.ts_ns.saturating_sub(t0)).unwrap_or(0));
        if let Some(wait) = offset.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let at = now + SignedDuration::try_from(offset).unwrap_or(SignedDuration::ZERO);
        // Every sighting of the packet (an HCI event carries several), the file's FCS
        // declaration honoured: what `replay` counts.
        outcomes.clear();
        frame::decode_packet(&packet, policy, &mut outcomes);
        let Ok(mut c) = counter.lock() else {
            return Ok(());
        };
        for outcome in &outcomes {
            c.record_sighting(at, outcome);
        }
    }
    Ok(())
}
