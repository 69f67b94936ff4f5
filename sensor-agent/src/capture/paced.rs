//! Capture files as a live source: replayed at their recorded pace, shifted to the present,
//! into the same counter a radio feeds (`source = "pcap"` in the config: trials, and
//! installers checking a set-up without a radio).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::file::CaptureReader;
use crate::counting::Counter;
use crate::frame::{self, FramePolicy};

/// Replays `files` (forever if `repeat`) as if they were being captured now.
pub fn replay_as_live(
    files: Vec<PathBuf>,
    repeat: bool,
    policy: FramePolicy,
    counter: Arc<Mutex<Counter>>,
) -> std::thread::JoinHandle<()> {
    // The sensor's log span follows the thread (every line names the sensor).
    let span = tracing::Span::current();
    std::thread::spawn(move || {
        let _span = span.enter();
        wait_for_salt(&counter);
        loop {
            for path in &files {
                let before = counter.lock().map(|c| c.tally().clone()).ok();
                if let Err(e) = replay_file(path, &policy, &counter)
                    && let Ok(mut c) = counter.lock()
                {
                    c.capture_error(format!("{}: {e}", path.display()));
                }
                let bad = before.and_then(|before| {
                    let c = counter.lock().ok()?;
                    c.tally().all_failed_fcs_since(&before)
                });
                if let Some(bad) = bad {
                    // What replay's hint says; `run` always checks the FCS, as a radio needs.
                    tracing::warn!(
                        "{}: nothing counted: all {bad} frames with a frame check sequence failed it \
                         (skipped as bad_fcs). Anonymized captures keep the old FCS: count such \
                         a file with `crowdflow-agent replay --ignore-fcs`",
                        path.display(),
                    );
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
        frame::decode_packet(&packet, policy, true, &mut outcomes);
        let Ok(mut c) = counter.lock() else {
            return Ok(());
        };
        for outcome in &outcomes {
            c.record_sighting(at, outcome);
        }
    }
    Ok(())
}
