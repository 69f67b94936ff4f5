//! Salt epochs: which salt an instant belongs to.
//!
//! An epoch is named by the local date on which it starts ([`EpochId`]) and runs from that
//! date's rotation time (default 04:00 Europe/Amsterdam, so a night event is not cut at
//! midnight) to the next date's. Boundaries are computed in the IANA zone, so epochs are
//! 23 or 25 hours long on DST days. A rotation time that falls into a DST gap starts the
//! epoch at the first instant after the gap; one that falls into a fold starts it at the
//! first occurrence.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::window::Window;

/// Errors of epoch handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    /// Not an IANA time zone name known to the bundled database.
    #[error("unknown time zone {0:?} (expected an IANA name such as Europe/Amsterdam)")]
    TimeZone(String),
    /// Not a valid `HH:MM` rotation time.
    #[error("rotation time must be HH:MM (24 h), e.g. 04:00")]
    RotationTime,
    /// Not a valid epoch id.
    #[error("epoch must be a date YYYY-MM-DD between 2000 and 2199")]
    Id,
}

/// The name of an epoch: the local date on which it starts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EpochId(Date);

impl EpochId {
    /// The epoch that starts on `date`.
    pub fn new(date: Date) -> Result<Self, EpochError> {
        if (2000..=2199).contains(&date.year()) {
            Ok(EpochId(date))
        } else {
            Err(EpochError::Id)
        }
    }

    /// The local date the epoch starts on.
    pub fn date(&self) -> Date {
        self.0
    }

    /// The following epoch.
    pub fn next(&self) -> EpochId {
        EpochId(self.0.tomorrow().unwrap_or(self.0))
    }

    /// The preceding epoch.
    pub fn previous(&self) -> EpochId {
        EpochId(self.0.yesterday().unwrap_or(self.0))
    }
}

impl fmt::Display for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpochId({})", self.0)
    }
}

impl FromStr for EpochId {
    type Err = EpochError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 10 {
            return Err(EpochError::Id);
        }
        let date: Date = s.parse().map_err(|_| EpochError::Id)?;
        EpochId::new(date)
    }
}

impl Serialize for EpochId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EpochId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The part of a window that falls into one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSpan {
    /// The epoch of this part.
    pub epoch: EpochId,
    /// First instant of the part.
    pub from: Timestamp,
    /// First instant after the part.
    pub to: Timestamp,
}

/// When salts rotate: a local time of day in an IANA time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationSchedule {
    at: Time,
    tz: TimeZone,
    tz_name: String,
}

impl Default for RotationSchedule {
    /// 04:00 Europe/Amsterdam.
    fn default() -> Self {
        Self::new(Time::constant(4, 0, 0, 0), "Europe/Amsterdam")
            .unwrap_or_else(|_| Self::fixed_utc(Time::constant(4, 0, 0, 0)))
    }
}

impl RotationSchedule {
    /// A schedule rotating at `at` local time in the zone named `tz_name`.
    pub fn new(at: Time, tz_name: &str) -> Result<Self, EpochError> {
        let tz = TimeZone::get(tz_name).map_err(|_| EpochError::TimeZone(tz_name.to_owned()))?;
        Ok(RotationSchedule {
            at,
            tz,
            tz_name: tz_name.to_owned(),
        })
    }

    /// Parses a `HH:MM` rotation time and a zone name, as written in config files.
    pub fn parse(at: &str, tz_name: &str) -> Result<Self, EpochError> {
        let (h, m) = at.split_once(':').ok_or(EpochError::RotationTime)?;
        let valid = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !valid(h) || !valid(m) {
            return Err(EpochError::RotationTime);
        }
        let hour: i8 = h.parse().map_err(|_| EpochError::RotationTime)?;
        let minute: i8 = m.parse().map_err(|_| EpochError::RotationTime)?;
        let time = Time::new(hour, minute, 0, 0).map_err(|_| EpochError::RotationTime)?;
        Self::new(time, tz_name)
    }

    fn fixed_utc(at: Time) -> Self {
        RotationSchedule {
            at,
            tz: TimeZone::UTC,
            tz_name: "UTC".to_owned(),
        }
    }

    /// The rotation time of day.
    pub fn rotation_time(&self) -> Time {
        self.at
    }

    /// The IANA zone name.
    pub fn time_zone(&self) -> &str {
        &self.tz_name
    }

    /// The epoch that `t` belongs to.
    pub fn epoch_at(&self, t: Timestamp) -> EpochId {
        let date = t.to_zoned(self.tz.clone()).date();
        let epoch = EpochId(date);
        match self.start_of(epoch) {
            Some(start) if t < start => epoch.previous(),
            _ => epoch,
        }
    }

    /// First instant of `epoch` (`None` only outside the representable range).
    pub fn start_of(&self, epoch: EpochId) -> Option<Timestamp> {
        let local = epoch.0.to_datetime(self.at);
        // `to_zoned` resolves gaps to the later and folds to the earlier instant.
        local.to_zoned(self.tz.clone()).ok().map(|z| z.timestamp())
    }

    /// First instant after `epoch`.
    pub fn end_of(&self, epoch: EpochId) -> Option<Timestamp> {
        self.start_of(epoch.next())
    }

    /// Splits a window at epoch boundaries; most windows lie in one epoch.
    pub fn spans(&self, window: &Window) -> Vec<EpochSpan> {
        let mut spans = Vec::with_capacity(1);
        let mut from = window.start();
        while from < window.end() {
            let epoch = self.epoch_at(from);
            let to = self
                .end_of(epoch)
                .map_or(window.end(), |end| end.min(window.end()));
            if to <= from {
                break;
            }
            spans.push(EpochSpan { epoch, from, to });
            from = to;
        }
        spans
    }

    /// How long `epoch` lasts, in hours (23, 24 or 25 around DST changes).
    pub fn hours(&self, epoch: EpochId) -> Option<i64> {
        let start = self.start_of(epoch)?;
        let end = self.end_of(epoch)?;
        Some(end.duration_since(start).as_hours())
    }

    /// Instants of the next rotation after `t`.
    pub fn next_rotation(&self, t: Timestamp) -> Option<Timestamp> {
        self.end_of(self.epoch_at(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowLength;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn epoch(s: &str) -> EpochId {
        s.parse().expect("epoch")
    }

    #[test]
    fn default_rotation_is_four_in_the_morning_in_amsterdam() {
        let s = RotationSchedule::default();
        assert_eq!(s.time_zone(), "Europe/Amsterdam");
        // Winter: 04:00 CET is 03:00 UTC.
        assert_eq!(s.epoch_at(ts("2026-01-15T02:59:59Z")), epoch("2026-01-14"));
        assert_eq!(s.epoch_at(ts("2026-01-15T03:00:00Z")), epoch("2026-01-15"));
        // Summer: 04:00 CEST is 02:00 UTC.
        assert_eq!(s.epoch_at(ts("2026-04-27T01:59:59Z")), epoch("2026-04-26"));
        assert_eq!(s.epoch_at(ts("2026-04-27T02:00:00Z")), epoch("2026-04-27"));
    }

    #[test]
    fn a_night_event_stays_in_one_epoch_across_midnight() {
        let s = RotationSchedule::default();
        assert_eq!(
            s.epoch_at(ts("2026-04-26T21:30:00Z")),
            s.epoch_at(ts("2026-04-27T01:30:00Z"))
        );
    }

    #[test]
    fn spring_forward_2026_gives_a_23_hour_epoch() {
        // Clocks go 02:00 CET -> 03:00 CEST on Sunday 2026-03-29.
        let s = RotationSchedule::default();
        assert_eq!(
            s.start_of(epoch("2026-03-28")),
            Some(ts("2026-03-28T03:00:00Z"))
        );
        assert_eq!(
            s.end_of(epoch("2026-03-28")),
            Some(ts("2026-03-29T02:00:00Z"))
        );
        assert_eq!(s.hours(epoch("2026-03-28")), Some(23));
        assert_eq!(s.epoch_at(ts("2026-03-29T01:59:59Z")), epoch("2026-03-28"));
        assert_eq!(s.epoch_at(ts("2026-03-29T02:00:00Z")), epoch("2026-03-29"));
        assert_eq!(s.hours(epoch("2026-03-29")), Some(24));
    }

    #[test]
    fn fall_back_2026_gives_a_25_hour_epoch() {
        // Clocks go 03:00 CEST -> 02:00 CET on Sunday 2026-10-25.
        let s = RotationSchedule::default();
        assert_eq!(
            s.start_of(epoch("2026-10-24")),
            Some(ts("2026-10-24T02:00:00Z"))
        );
        assert_eq!(
            s.end_of(epoch("2026-10-24")),
            Some(ts("2026-10-25T03:00:00Z"))
        );
        assert_eq!(s.hours(epoch("2026-10-24")), Some(25));
        assert_eq!(s.epoch_at(ts("2026-10-25T02:30:00Z")), epoch("2026-10-24"));
        assert_eq!(s.epoch_at(ts("2026-10-25T03:00:00Z")), epoch("2026-10-25"));
    }

    #[test]
    fn rotation_inside_the_dst_gap_starts_after_the_gap() {
        // 02:30 does not exist on 2026-03-29 in Amsterdam; the epoch starts at 03:30 CEST.
        let s = RotationSchedule::parse("02:30", "Europe/Amsterdam").expect("valid");
        assert_eq!(
            s.start_of(epoch("2026-03-29")),
            Some(ts("2026-03-29T01:30:00Z"))
        );
        assert_eq!(s.hours(epoch("2026-03-28")), Some(24));
        assert_eq!(s.hours(epoch("2026-03-29")), Some(23));
    }

    #[test]
    fn rotation_inside_the_dst_fold_happens_once() {
        // 02:30 happens twice on 2026-10-25; the epoch starts at the first (CEST) one and
        // the second 02:30 (CET) does not start another epoch.
        let s = RotationSchedule::parse("02:30", "Europe/Amsterdam").expect("valid");
        assert_eq!(
            s.start_of(epoch("2026-10-25")),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        assert_eq!(s.epoch_at(ts("2026-10-25T01:15:00Z")), epoch("2026-10-25"));
        assert_eq!(s.epoch_at(ts("2026-10-25T01:45:00Z")), epoch("2026-10-25"));
        assert_eq!(s.hours(epoch("2026-10-24")), Some(24));
        assert_eq!(s.hours(epoch("2026-10-25")), Some(25));
    }

    #[test]
    fn a_window_straddling_the_rotation_is_split_at_the_rotation_instant() {
        // 04:00 in Kathmandu (UTC+05:45) is 22:15 UTC: a 1 h window from 22:00 UTC straddles it.
        let s = RotationSchedule::parse("04:00", "Asia/Kathmandu").expect("valid");
        let len = WindowLength::new(3600).expect("valid");
        let w = Window::containing(ts("2026-06-01T22:10:00Z"), len);
        let spans = s.spans(&w);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0].epoch, epoch("2026-06-01"));
        assert_eq!(
            (spans[0].from, spans[0].to),
            (w.start(), ts("2026-06-01T22:15:00Z"))
        );
        assert_eq!(spans[1].epoch, epoch("2026-06-02"));
        assert_eq!(
            (spans[1].from, spans[1].to),
            (ts("2026-06-01T22:15:00Z"), w.end())
        );
    }

    #[test]
    fn aligned_windows_in_amsterdam_never_straddle_the_default_rotation() {
        let s = RotationSchedule::default();
        let mut w = Window::containing(ts("2026-03-28T00:00:00Z"), WindowLength::DEFAULT);
        while w.start() < ts("2026-03-30T00:00:00Z") {
            assert_eq!(s.spans(&w).len(), 1, "{w}");
            w = w.next();
        }
    }

    #[test]
    fn bad_schedules_name_what_is_wrong() {
        assert_eq!(
            RotationSchedule::parse("04:00", "Mars/Olympus"),
            Err(EpochError::TimeZone("Mars/Olympus".into()))
        );
        for bad in ["4:00", "24:00", "04:60", "0400", "04:00:00", ""] {
            assert_eq!(
                RotationSchedule::parse(bad, "UTC"),
                Err(EpochError::RotationTime),
                "{bad}"
            );
        }
    }

    #[test]
    fn epoch_ids_parse_only_plain_dates() {
        assert_eq!(epoch("2026-04-27").to_string(), "2026-04-27");
        for bad in [
            "2026-4-27",
            "2026-02-30",
            "1999-12-31",
            "2200-01-01",
            "x",
            "2026-04-27T00",
        ] {
            assert!(bad.parse::<EpochId>().is_err(), "{bad}");
        }
    }
}
