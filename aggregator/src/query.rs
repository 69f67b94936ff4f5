//! The numbers users see, computed from stored sketches (design §6): distinct devices over a
//! range, flows between zones and dwell, each with its bounds.
//!
//! Sketches of different salts are never unioned: the same device has unrelated hashes under
//! two salts. A range crossing salt epochs is the sum of per-salt distincts, flagged as an
//! upper bound; an intersection exists only within one salt (devices are unlinkable across
//! epochs by design), so a flow across epochs counts only its same-epoch part and says so.

use std::collections::BTreeMap;

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Estimate, Precision, SketchUnion};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::store::{BucketQuery, Resolution, Store, StoreError, ZoneSketch};
use crate::zone::ZoneId;

/// A count with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Count {
    /// Point estimate.
    pub estimate: f64,
    /// Lower bound (95 %).
    pub lower: f64,
    /// Upper bound (95 %).
    pub upper: f64,
    /// Summed over several salt epochs (the same device may be counted once per epoch), so an
    /// upper bound of the distinct count.
    pub upper_bound: bool,
}

impl Count {
    /// Nothing counted.
    pub const ZERO: Count = Count {
        estimate: 0.0,
        lower: 0.0,
        upper: 0.0,
        upper_bound: false,
    };

    /// One salt's estimate.
    pub fn from_estimate(e: Estimate) -> Count {
        Count {
            estimate: e.estimate,
            lower: e.lower,
            upper: e.upper,
            upper_bound: false,
        }
    }

    /// The sum of two counts of disjoint things (bounds add).
    pub fn plus(self, other: Count) -> Count {
        Count {
            estimate: self.estimate + other.estimate,
            lower: self.lower + other.lower,
            upper: self.upper + other.upper,
            upper_bound: self.upper_bound || other.upper_bound,
        }
    }

    /// The same bucket under another salt (a rotation): the sum, an upper bound of the
    /// distinct count (a device may be counted once per salt).
    pub fn and_other_salt(self, other: Count) -> Count {
        Count {
            upper_bound: true,
            ..self.plus(other)
        }
    }

    /// Scaled by a non-negative factor (calibration).
    pub fn times(self, factor: f64) -> Count {
        Count {
            estimate: self.estimate * factor,
            lower: self.lower * factor,
            upper: self.upper * factor,
            upper_bound: self.upper_bound,
        }
    }
}

/// Devices of all address kinds: an address has one kind, so they add up
/// (`wifi_derandomized` is another view of the Wi-Fi addresses and is not added).
pub fn total(devices: &BTreeMap<Kind, Count>) -> Count {
    devices
        .iter()
        .filter(|(k, _)| Kind::ADDRESSES.contains(k))
        .fold(Count::ZERO, |s, (_, c)| s.plus(*c))
}

/// Counts keyed by kind name, as the API shows them.
pub fn by_name(devices: &BTreeMap<Kind, Count>) -> BTreeMap<String, Count> {
    devices
        .iter()
        .map(|(k, c)| (k.as_str().to_owned(), *c))
        .collect()
}

/// Per-salt unions of stored sketches.
pub type PerSalt = BTreeMap<(EpochId, SaltFingerprint), SketchUnion>;

/// Unions `sketches` per salt.
pub fn per_salt<'a>(sketches: impl IntoIterator<Item = &'a ZoneSketch>, p: Precision) -> PerSalt {
    let mut out = PerSalt::new();
    for z in sketches {
        out.entry((z.epoch, z.salt_fp))
            .or_insert_with(|| SketchUnion::new(p))
            .add(&z.sketch);
    }
    out
}

/// Distinct devices of per-salt unions: summed over salts, flagged when more than one.
pub fn count(unions: &PerSalt) -> Count {
    let mut total = Count::ZERO;
    for u in unions.values() {
        total = total.plus(Count::from_estimate(u.estimate()));
    }
    total.upper_bound = unions.len() > 1;
    total
}

/// The start of the minute holding `t`.
pub fn floor_minute(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second().div_euclid(60) * 60).unwrap_or(t)
}

/// Devices per kind in the occupancy window ending at `now`: the last `window_min` complete
/// minutes and the current one.
pub fn occupancy(
    sketches: &BTreeMap<Kind, Vec<ZoneSketch>>,
    window_min: u32,
    now: Timestamp,
    p: Precision,
) -> BTreeMap<Kind, Count> {
    let end = floor_minute(now) + SignedDuration::from_mins(1);
    let start = end - SignedDuration::from_mins(i64::from(window_min) + 1);
    sketches
        .iter()
        .map(|(kind, all)| {
            let inside = all.iter().filter(|z| z.bucket >= start && z.bucket < end);
            (*kind, count(&per_salt(inside, p)))
        })
        .collect()
}

/// What is wrong with a range, and at which end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The start is not on a whole minute.
    #[error("must be on a whole minute")]
    StartNotWholeMinute,
    /// The end is not on a whole minute.
    #[error("must be on a whole minute")]
    EndNotWholeMinute,
    /// The end is not after the start.
    #[error("must be after the start")]
    EndsBeforeStart,
    /// Longer than the query allows.
    #[error("makes the range longer than this query allows")]
    TooLong,
}

impl RangeError {
    /// Whether the start (rather than the end) is at fault.
    pub fn at_start(self) -> bool {
        self == RangeError::StartNotWholeMinute
    }
}

/// One stretch of a range read at one resolution: bucket starts in `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Resolution of the buckets.
    pub resolution: Resolution,
    /// First bucket start.
    pub from: Timestamp,
    /// End of the last bucket.
    pub to: Timestamp,
}

/// The coarsest buckets that tile `[from, to)` exactly (both on whole minutes): whole UTC
/// days as day buckets, whole hours around them as hour buckets, minutes at the edges.
pub fn tiles(from: Timestamp, to: Timestamp) -> Vec<Tile> {
    let mut out = Vec::new();
    split(from.as_second(), to.as_second(), Resolution::Day, &mut out);
    out.sort_by_key(|t| t.from);
    out
}

fn split(from: i64, to: i64, resolution: Resolution, out: &mut Vec<Tile>) {
    if from >= to {
        return;
    }
    let size = resolution.seconds();
    let first = from.div_euclid(size) * size + if from % size == 0 { 0 } else { size };
    let last = to.div_euclid(size) * size;
    let finer = match resolution {
        Resolution::Day => Some(Resolution::Hour),
        Resolution::Hour => Some(Resolution::Minute),
        Resolution::Minute => None,
    };
    if first < last || finer.is_none() {
        let (a, b) = if finer.is_none() {
            (from, to)
        } else {
            (first, last)
        };
        if let (Ok(a), Ok(b)) = (Timestamp::from_second(a), Timestamp::from_second(b)) {
            out.push(Tile {
                resolution,
                from: a,
                to: b,
            });
        }
        if let Some(finer) = finer {
            split(from, first, finer, out);
            split(last, to, finer, out);
        }
    } else if let Some(finer) = finer {
        split(from, to, finer, out);
    }
}

/// Stored sketches covering `[from, to)` with the fewest buckets, for each of `kinds` (in
/// its order): one store read per tile for all kinds.
pub async fn covering(
    store: &impl Store,
    zone: &ZoneId,
    kinds: &[Kind],
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Vec<ZoneSketch>>, StoreError> {
    let mut out = vec![Vec::new(); kinds.len()];
    for t in tiles(from, to) {
        let query = BucketQuery {
            zone,
            kind: kinds.first().copied().unwrap_or(Kind::Wifi),
            resolution: t.resolution,
            from: t.from,
            to: t.to,
        };
        let read = store.zone_sketches_by_kind(query, kinds).await?;
        for (all, sketches) in out.iter_mut().zip(read) {
            all.extend(sketches);
        }
    }
    Ok(out)
}

/// |A ∩ B| with its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Overlap {
    /// Point estimate.
    pub estimate: f64,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// The bounds are wider than the value: do not read it as precise.
    pub unreliable: bool,
    /// The two sides span different salt epochs: only their same-epoch part can be linked.
    pub crosses_epochs: bool,
}

impl Overlap {
    /// Nothing in common.
    pub const ZERO: Overlap = Overlap {
        estimate: 0.0,
        lower: 0.0,
        upper: 0.0,
        unreliable: false,
        crosses_epochs: false,
    };

    /// The sum of two overlaps of disjoint things (bounds add).
    pub fn plus(self, o: Overlap) -> Overlap {
        let mut sum = Overlap {
            estimate: self.estimate + o.estimate,
            lower: self.lower + o.lower,
            upper: self.upper + o.upper,
            unreliable: false,
            crosses_epochs: self.crosses_epochs || o.crosses_epochs,
        };
        sum.unreliable = sum.upper - sum.lower > sum.estimate;
        sum
    }
}

/// Inclusion–exclusion: |A ∩ B| = |A| + |B| − |A ∪ B|, with bounds from the extremes of the
/// three intervals, clamped to `[0, min(|A|, |B|)]`.
pub fn intersect(a: Estimate, b: Estimate, union: Estimate) -> Overlap {
    let cap = a.upper.min(b.upper);
    let estimate =
        (a.estimate + b.estimate - union.estimate).clamp(0.0, a.estimate.min(b.estimate));
    let lower = (a.lower + b.lower - union.upper).max(0.0).min(estimate);
    let upper = (a.upper + b.upper - union.lower).min(cap).max(estimate);
    Overlap {
        estimate,
        lower,
        upper,
        unreliable: upper - lower > estimate,
        crosses_epochs: false,
    }
}

/// |A ∩ B| of two per-salt unions: summed over the salts both have. Each side's estimate is
/// computed once per union (a flow matrix asks for it once per cell), |A ∪ B| in one pass
/// over both sides' registers.
pub fn overlap(a: &PerSalt, b: &PerSalt) -> Overlap {
    let mut total = Overlap::ZERO;
    for (salt, ua) in a {
        if let Some(ub) = b.get(salt) {
            total = total.plus(intersect(
                ua.estimate(),
                ub.estimate(),
                ua.union_estimate(ub),
            ));
        }
    }
    // A side with no data has nothing that could not be linked: its overlap is exactly zero.
    total.crosses_epochs = !a.is_empty()
        && !b.is_empty()
        && (a.keys().any(|s| !b.contains_key(s)) || b.keys().any(|s| !a.contains_key(s)));
    // Devices of a salt one side lacks cannot be linked: the overlap is unknown, not 0.
    total.unreliable = total.crosses_epochs || total.upper - total.lower > total.estimate;
    total
}

/// Devices of `b` not in `a` (arrivals, when `a` is the minute before; departures the other
/// way round): |B| - |A ∩ B|, its bounds from both sides' bounds. Flagged unreliable like a
/// flow when the bounds are wider than the value; across a salt rotation every device of
/// `b` looks new, flagged `crosses_epochs`.
pub fn difference(a: &PerSalt, b: &PerSalt) -> Overlap {
    let all = count(b);
    let both = overlap(a, b);
    let estimate = (all.estimate - both.estimate).max(0.0);
    let lower = (all.lower - both.upper).max(0.0);
    let upper = (all.upper - both.lower).max(0.0);
    Overlap {
        estimate,
        lower,
        upper,
        unreliable: upper - lower > estimate,
        crosses_epochs: both.crosses_epochs,
    }
}

/// A half-open time range on whole minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Start.
    pub from: Timestamp,
    /// End (exclusive).
    pub to: Timestamp,
}

impl Range {
    /// Checks a user's range: ordered, on whole minutes, at most `max` long.
    pub fn new(from: Timestamp, to: Timestamp, max: SignedDuration) -> Result<Range, RangeError> {
        let whole = |t: Timestamp| t.as_second() % 60 == 0 && t.subsec_nanosecond() == 0;
        if !whole(from) {
            return Err(RangeError::StartNotWholeMinute);
        }
        if !whole(to) {
            return Err(RangeError::EndNotWholeMinute);
        }
        if to <= from {
            return Err(RangeError::EndsBeforeStart);
        }
        if to.duration_since(from) > max {
            return Err(RangeError::TooLong);
        }
        Ok(Range { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crowdflow_contract::sketch::Sketch;

    #[test]
    fn the_total_adds_address_kinds_and_not_their_physical_device_view() {
        let c = |n: f64| Count {
            estimate: n,
            lower: n,
            upper: n,
            upper_bound: false,
        };
        let devices = BTreeMap::from([
            (Kind::Wifi, c(3.0)),
            (Kind::WifiRandom, c(40.0)),
            (Kind::Ble, c(5.0)),
            (Kind::WifiDerandomized, c(9.0)),
        ]);
        assert_eq!(total(&devices).estimate, 48.0);
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn sketch(range: std::ops::Range<u64>) -> Sketch {
        let mut s = Sketch::new(Precision::DEFAULT);
        range.for_each(|i| s.insert_bytes(&i.to_le_bytes()));
        s
    }

    fn stored(epoch: &str, fp: &str, devices: std::ops::Range<u64>) -> ZoneSketch {
        ZoneSketch {
            bucket: ts("2026-04-27T10:00:00Z"),
            epoch: epoch.parse().expect("epoch"),
            salt_fp: fp.parse().expect("fp"),
            sketch: sketch(devices),
        }
    }

    #[test]
    fn tiles_use_the_coarsest_buckets_and_cover_the_range_exactly() {
        let t = tiles(ts("2026-04-26T22:59:00Z"), ts("2026-04-29T01:30:00Z"));
        let shape: Vec<_> = t
            .iter()
            .map(|t| (t.resolution, t.from.to_string(), t.to.to_string()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (
                    Resolution::Minute,
                    "2026-04-26T22:59:00Z".into(),
                    "2026-04-26T23:00:00Z".into()
                ),
                (
                    Resolution::Hour,
                    "2026-04-26T23:00:00Z".into(),
                    "2026-04-27T00:00:00Z".into()
                ),
                (
                    Resolution::Day,
                    "2026-04-27T00:00:00Z".into(),
                    "2026-04-29T00:00:00Z".into()
                ),
                (
                    Resolution::Hour,
                    "2026-04-29T00:00:00Z".into(),
                    "2026-04-29T01:00:00Z".into()
                ),
                (
                    Resolution::Minute,
                    "2026-04-29T01:00:00Z".into(),
                    "2026-04-29T01:30:00Z".into()
                ),
            ]
        );
        let inside = tiles(ts("2026-04-27T10:05:00Z"), ts("2026-04-27T10:07:00Z"));
        assert_eq!(inside.len(), 1);
        assert_eq!(inside[0].resolution, Resolution::Minute);
        let whole_day = tiles(ts("2026-04-27T00:00:00Z"), ts("2026-04-28T00:00:00Z"));
        assert_eq!(whole_day.len(), 1);
        assert_eq!(whole_day[0].resolution, Resolution::Day);
    }

    #[test]
    fn counts_across_salts_add_up_and_are_flagged() {
        let one = per_salt(
            &[
                stored("2026-04-27", "0000000000000001", 0..500),
                stored("2026-04-27", "0000000000000001", 250..1000),
            ],
            Precision::DEFAULT,
        );
        let c = count(&one);
        assert_eq!(c.estimate.round(), 1000.0);
        assert!(!c.upper_bound);
        let two = per_salt(
            &[
                stored("2026-04-27", "0000000000000001", 0..500),
                stored("2026-04-28", "0000000000000002", 0..500),
            ],
            Precision::DEFAULT,
        );
        let c = count(&two);
        assert_eq!(
            c.estimate.round(),
            1000.0,
            "the same devices under two salts count twice"
        );
        assert!(c.upper_bound);
    }

    #[test]
    fn overlaps_of_constructed_sets_fall_within_their_bounds() {
        for (a, b, truth) in [
            (0..20_000u64, 10_000..30_000u64, 10_000.0),
            (0..50_000, 45_000..60_000, 5_000.0),
            (0..5_000, 0..5_000, 5_000.0),
            (0..3_000, 10_000..13_000, 0.0),
        ] {
            let pa = per_salt(
                &[stored("2026-04-27", "0000000000000001", a)],
                Precision::DEFAULT,
            );
            let pb = per_salt(
                &[stored("2026-04-27", "0000000000000001", b)],
                Precision::DEFAULT,
            );
            let o = overlap(&pa, &pb);
            assert!(
                o.lower <= truth && truth <= o.upper,
                "{truth} outside {o:?}"
            );
            assert!(!o.crosses_epochs);
        }
        let small = overlap(
            &per_salt(
                &[stored("2026-04-27", "0000000000000001", 0..50_000)],
                Precision::DEFAULT,
            ),
            &per_salt(
                &[stored("2026-04-27", "0000000000000001", 49_900..80_000)],
                Precision::DEFAULT,
            ),
        );
        assert!(
            small.unreliable,
            "100 of 50,000 cannot be told from noise: {small:?}"
        );
    }

    #[test]
    fn overlaps_link_only_within_one_salt() {
        let a = per_salt(
            &[stored("2026-04-27", "0000000000000001", 0..1000)],
            Precision::DEFAULT,
        );
        let b = per_salt(
            &[stored("2026-04-28", "0000000000000002", 0..1000)],
            Precision::DEFAULT,
        );
        let o = overlap(&a, &b);
        assert_eq!(o.estimate, 0.0);
        assert!(o.crosses_epochs);
        let nothing = overlap(&a, &BTreeMap::new());
        assert_eq!(nothing.estimate, 0.0);
        assert!(
            !nothing.crosses_epochs,
            "an empty side links exactly: {nothing:?}"
        );
    }

    #[test]
    fn ranges_are_checked() {
        let day = SignedDuration::from_hours(24);
        assert!(Range::new(ts("2026-04-27T10:00:00Z"), ts("2026-04-27T11:00:00Z"), day).is_ok());
        assert!(Range::new(ts("2026-04-27T11:00:00Z"), ts("2026-04-27T10:00:00Z"), day).is_err());
        assert!(Range::new(ts("2026-04-27T10:00:30Z"), ts("2026-04-27T11:00:00Z"), day).is_err());
        assert!(Range::new(ts("2026-04-27T10:00:00Z"), ts("2026-04-29T11:00:00Z"), day).is_err());
    }
}
