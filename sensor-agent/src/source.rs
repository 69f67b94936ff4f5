//! Running capture sources: a thread that decodes frames and hands each sighting, with its
//! time, to the counter. Live radios plug in here; capture files are replayed at their
//! recorded pace, shifted to the present.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use crate::capture::file::CaptureReader;
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

fn replay_file(
    path: &PathBuf,
    policy: &FramePolicy,
    counter: &Mutex<Counter>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut reader = CaptureReader::new(BufReader::new(File::open(path)?))?;
    let started = Instant::now();
    let now = Timestamp::now();
    let mut first_ns: Option<i64> = None;
    while let Some(packet) = reader.next_packet()? {
        let t0 = *first_ns.get_or_insert(packet.ts_ns);
        let offset =
            Duration::from_nanos(u64::try_from(packet.ts_ns.saturating_sub(t0)).unwrap_or(0));
        if let Some(wait) = offset.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let at = now + SignedDuration::try_from(offset).unwrap_or(SignedDuration::ZERO);
        let outcome = frame::decode(packet.link, packet.data, policy);
        match counter.lock() {
            Ok(mut c) => c.record(at, &outcome),
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}
