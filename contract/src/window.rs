//! Counting windows: fixed-length intervals aligned to the UTC wall clock.
//!
//! Every sensor cuts time at the same instants (multiples of the window length since the Unix
//! epoch), so sketches of one window from many sensors can be unioned without any clock
//! negotiation. Lengths must divide a day, so windows also tile days and hours.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

/// Seconds in a day: window lengths must divide it.
const DAY_S: u32 = 86_400;

/// Errors of window construction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The length does not divide a day or is out of range.
    #[error("window length must be between 10 s and 86400 s and divide 86400 s, got {0} s")]
    Length(u64),
    /// The start instant is not a multiple of the length.
    #[error("window start is not aligned to a multiple of {0} s since 1970-01-01T00:00:00Z")]
    Unaligned(u32),
}

/// A validated window length in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowLength(u32);

impl WindowLength {
    /// The default: one minute.
    pub const DEFAULT: WindowLength = WindowLength(60);

    /// Validates a length: at least 10 s and a divisor of 86400 s.
    pub fn new(seconds: u64) -> Result<Self, WindowError> {
        match u32::try_from(seconds) {
            Ok(s) if (10..=DAY_S).contains(&s) && DAY_S.is_multiple_of(s) => Ok(WindowLength(s)),
            _ => Err(WindowError::Length(seconds)),
        }
    }

    /// The length in seconds.
    pub fn seconds(self) -> u32 {
        self.0
    }

    /// The length as a duration.
    pub fn duration(self) -> SignedDuration {
        SignedDuration::from_secs(i64::from(self.0))
    }
}

impl Default for WindowLength {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One counting window `[start, start + length)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    start: Timestamp,
    length: WindowLength,
}

impl Window {
    /// The window of `length` that contains `t`.
    pub fn containing(t: Timestamp, length: WindowLength) -> Window {
        let len = i64::from(length.0);
        let start = t.as_second().div_euclid(len) * len;
        Window {
            // Flooring a valid timestamp by at most a day stays in jiff's range
            // (which starts on a day boundary).
            start: Timestamp::from_second(start).unwrap_or(Timestamp::MIN),
            length,
        }
    }

    /// The window that starts at `start`, which must be aligned.
    pub fn starting_at(start: Timestamp, length: WindowLength) -> Result<Window, WindowError> {
        let aligned =
            start.subsec_nanosecond() == 0 && start.as_second() % i64::from(length.0) == 0;
        if aligned {
            Ok(Window { start, length })
        } else {
            Err(WindowError::Unaligned(length.0))
        }
    }

    /// First instant of the window.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// First instant after the window.
    pub fn end(&self) -> Timestamp {
        self.start
            .checked_add(self.length.duration())
            .unwrap_or(Timestamp::MAX)
    }

    /// The window length.
    pub fn length(&self) -> WindowLength {
        self.length
    }

    /// Whether `t` falls inside the window.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end()
    }

    /// The window right after this one.
    pub fn next(&self) -> Window {
        Window {
            start: self.end(),
            length: self.length,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}s", self.start, self.length.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn windows_are_aligned_to_the_utc_clock() {
        let w = Window::containing(ts("2026-04-27T10:00:59.999Z"), WindowLength::DEFAULT);
        assert_eq!(w.start(), ts("2026-04-27T10:00:00Z"));
        assert_eq!(w.end(), ts("2026-04-27T10:01:00Z"));
        assert!(w.contains(ts("2026-04-27T10:00:00Z")));
        assert!(!w.contains(ts("2026-04-27T10:01:00Z")));
        assert_eq!(w.next().start(), w.end());
    }

    #[test]
    fn windows_before_1970_floor_downwards() {
        let w = Window::containing(ts("1969-12-31T23:59:30Z"), WindowLength::DEFAULT);
        assert_eq!(w.start(), ts("1969-12-31T23:59:00Z"));
    }

    #[test]
    fn lengths_must_divide_a_day() {
        for ok in [10, 60, 300, 900, 3600, 86_400] {
            assert!(WindowLength::new(ok).is_ok(), "{ok}");
        }
        for bad in [0, 7, 61, 86_401, u64::MAX] {
            assert_eq!(WindowLength::new(bad), Err(WindowError::Length(bad)));
        }
    }

    #[test]
    fn unaligned_starts_are_rejected() {
        let len = WindowLength::new(300).expect("valid");
        assert!(Window::starting_at(ts("2026-04-27T10:05:00Z"), len).is_ok());
        assert_eq!(
            Window::starting_at(ts("2026-04-27T10:06:00Z"), len),
            Err(WindowError::Unaligned(300))
        );
        assert!(Window::starting_at(ts("2026-04-27T10:05:00.5Z"), len).is_err());
    }
}
