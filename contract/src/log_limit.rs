//! Rate-limited log lines for what outsiders can cause at will: rejected sketches, failed
//! logins, refused connections. A flood of them must not flood the journal (and bury the
//! lines that matter, or fill the disk), so each reason logs at most [`BURST`] lines per
//! [`WINDOW`], then one line saying how many more were left out. The metrics still count
//! every one of them; the log only shows that it happens and what it looks like.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lines per reason and window: enough to see what the trouble looks like.
pub const BURST: u32 = 5;
/// The window: a minute, so a steady flood costs six lines a minute per reason.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Which lines of one kind (`what`) may be logged, per reason.
#[derive(Debug)]
pub struct LogLimit {
    what: &'static str,
    burst: u32,
    window: Duration,
    slots: Mutex<HashMap<&'static str, Slot>>,
}

/// One reason's current window.
#[derive(Debug, Clone, Copy)]
struct Slot {
    since: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// [`BURST`] lines per reason per [`WINDOW`]; `what` names the lines in the summary
    /// ("sketch rejects").
    pub fn per_minute(what: &'static str) -> LogLimit {
        LogLimit::new(what, BURST, WINDOW)
    }

    /// `burst` lines per reason per `window`.
    pub fn new(what: &'static str, burst: u32, window: Duration) -> LogLimit {
        LogLimit {
            what,
            burst,
            window,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line about `reason` may be logged at `now`; if not, it is counted for the
    /// summary. A window that has ended is summarized first.
    pub fn allow(&self, reason: &'static str, now: Instant) -> bool {
        self.admit(reason, now, true).is_some()
    }

    /// Opens a new window for `reason` when the last has ended (summarizing it when
    /// `summarize`), then admits or counts one line; `Some(left out in the window before)`
    /// when it may be logged.
    fn admit(&self, reason: &'static str, now: Instant, summarize: bool) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.entry(reason).or_insert(Slot {
            since: now,
            logged: 0,
            suppressed: 0,
        });
        let mut before = 0;
        if now.saturating_duration_since(slot.since) >= self.window {
            if summarize {
                self.summarize(reason, slot);
            }
            before = slot.suppressed;
            *slot = Slot {
                since: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if slot.logged < self.burst {
            slot.logged += 1;
            Some(before)
        } else {
            slot.suppressed += 1;
            None
        }
    }

    /// For a condition that repeats steadily (a retry loop): whether a line about `reason`
    /// may be logged at `now`, and if so how many were left out in the window before, for
    /// the line itself to say (one line a window, no separate summary; do not
    /// [`LogLimit::flush`] such reasons).
    pub fn allow_counting(&self, reason: &'static str, now: Instant) -> Option<u64> {
        self.admit(reason, now, false)
    }

    /// Logs the summary of every window that has ended by `now` and forgets it; call it now
    /// and then, so that the count of left-out lines shows soon after a flood, not only at
    /// the next line of the same reason.
    pub fn flush(&self, now: Instant) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|reason, slot| {
            let ended = now.saturating_duration_since(slot.since) >= self.window;
            if ended {
                self.summarize(reason, slot);
            }
            !ended
        });
    }

    /// Lines about `reason` left out of the current window so far.
    pub fn suppressed(&self, reason: &str) -> u64 {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.get(reason).map_or(0, |s| s.suppressed)
    }

    fn summarize(&self, reason: &str, slot: &Slot) {
        if slot.suppressed > 0 {
            tracing::warn!(
                reason,
                suppressed = slot.suppressed,
                "{}: {} more with this reason in {} s not logged",
                self.what,
                slot.suppressed,
                self.window.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Runs `f` with log lines captured; returns them.
    fn captured(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn a_flood_logs_a_burst_per_reason_then_one_summary() {
        let limit = LogLimit::new("sketch rejects", 3, Duration::from_secs(60));
        let t0 = Instant::now();
        let allowed = (0..100)
            .filter(|i| limit.allow("bad_json", t0 + Duration::from_millis(*i)))
            .count();
        assert_eq!(allowed, 3);
        assert_eq!(limit.suppressed("bad_json"), 97);
        // Another reason has its own allowance.
        assert!(limit.allow("salt_mismatch", t0));
        let log = captured(|| {
            limit.flush(t0 + Duration::from_secs(30));
            limit.flush(t0 + Duration::from_secs(61));
            limit.flush(t0 + Duration::from_secs(200));
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(
            lines[0].contains("sketch rejects: 97 more with this reason in 60 s not logged")
                && lines[0].contains("reason=\"bad_json\""),
            "{log}"
        );
    }

    #[test]
    fn a_new_window_allows_a_new_burst_and_summarizes_the_last() {
        let limit = LogLimit::new("failed logins", 2, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..5 {
            limit.allow("unknown_token", t0);
        }
        let log = captured(|| {
            assert!(limit.allow("unknown_token", t0 + Duration::from_secs(60)));
        });
        assert!(log.contains("failed logins: 3 more"), "{log}");
        assert_eq!(limit.suppressed("unknown_token"), 0);
    }

    #[test]
    fn a_quiet_reason_logs_no_summary() {
        let limit = LogLimit::per_minute("refused connections");
        let t0 = Instant::now();
        assert!(limit.allow("connection_limit", t0));
        let log = captured(|| limit.flush(t0 + WINDOW * 2));
        assert!(log.is_empty(), "{log}");
    }
}
