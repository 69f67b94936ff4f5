//! The hourly retention purge, beside ingest.
//!
//! Every replica purges (purging is idempotent); a purge deletes in small transactions in a
//! task of its own, so ingest goes on meanwhile, and a failure is retried at the next run.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use prometheus::IntCounterVec;

use crate::store::{Retention, Store};

/// How often expired data is purged.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// When the purge runs: at start, then every [`PURGE_EVERY`].
#[derive(Debug)]
pub struct PurgeSchedule {
    due: Instant,
}

impl PurgeSchedule {
    /// A schedule whose first purge is due at `now`.
    pub fn starting(now: Instant) -> PurgeSchedule {
        PurgeSchedule { due: now }
    }

    /// Whether a purge is due at `now`; if so, the next one is due [`PURGE_EVERY`] later.
    pub fn take_due(&mut self, now: Instant) -> bool {
        let due = now >= self.due;
        if due {
            self.due = now + PURGE_EVERY;
        }
        due
    }
}

/// What the purge counts removed rows of (the `what` label).
pub const PURGED: [&str; 3] = ["sketches", "numbers", "sensor_windows"];

/// Starts one purge of what `retention` no longer keeps, counting removed rows into
/// `purged` (by what).
pub fn spawn(store: impl Store, retention: Retention, purged: IntCounterVec) {
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        match store.purge(retention, Timestamp::now()).await {
            Ok(report) => {
                let counts = [report.sketches, report.numbers, report.sensor_windows];
                for (what, n) in PURGED.into_iter().zip(counts) {
                    purged.with_label_values(&[what]).inc_by(n);
                }
                tracing::info!(
                    sketches = report.sketches,
                    numbers = report.numbers,
                    sensor_windows = report.sensor_windows,
                    "retention purge done"
                );
            }
            Err(e) => tracing::error!("retention purge failed: {e}"),
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_runs_at_start_and_then_hourly() {
        let t0 = Instant::now();
        let mut s = PurgeSchedule::starting(t0);
        assert!(s.take_due(t0), "at start");
        assert!(!s.take_due(t0 + PURGE_EVERY - Duration::from_secs(1)));
        assert!(s.take_due(t0 + PURGE_EVERY));
        assert!(!s.take_due(t0 + PURGE_EVERY), "once per run");
    }
}
