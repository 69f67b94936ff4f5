//! What the ingest benchmarks share: the messages of a load and how to tell they are stored.

use crowdflow_aggregator::store::Store;
use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::window::{Window, WindowLength};
use jiff::{SignedDuration, Timestamp};

/// `[salt]` rotation at the next UTC hour but one: the current epoch began about 23 hours
/// ago, so a load finds the ended windows it needs in it whatever the time of day (with the
/// default 04:00 Amsterdam rotation a bench started just after it looped forever).
pub fn rotation_in_an_hour() -> String {
    let hour = (Timestamp::now().as_second().div_euclid(3600) + 2).rem_euclid(24);
    format!("rotation = \"{hour:02}:00\"\ntime_zone = \"UTC\"\n")
}

/// A sketch of the `n` devices numbered from `first`.
pub fn sketch(first: u64, n: u64) -> Sketch {
    let mut s = Sketch::new(Precision::DEFAULT);
    (first..first + n).for_each(|k| s.insert_bytes(&k.to_le_bytes()));
    s
}

/// `count` ended 10 s windows of `epoch`, newest first, that lie in it whole.
pub fn windows(schedule: &RotationSchedule, epoch: EpochId, count: usize) -> Vec<Window> {
    let mut w = Window::containing(
        Timestamp::now() - SignedDuration::from_secs(20),
        WindowLength::new(10).expect("10 s"),
    );
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let spans = schedule.spans(&w);
        if spans.iter().all(|s| s.epoch == epoch) {
            out.push(w);
        } else {
            assert!(
                spans.iter().all(|s| s.epoch >= epoch),
                "fewer than {count} windows in epoch {epoch}"
            );
        }
        w = Window::containing(w.start() - SignedDuration::from_secs(1), w.length());
    }
    out
}

/// Frames stored in all (one per message in the benchmarks' loads).
pub async fn stored(store: &impl Store) -> u64 {
    store
        .sensor_health()
        .await
        .map(|h| h.iter().map(|s| s.frames).sum())
        .unwrap_or(0)
}
