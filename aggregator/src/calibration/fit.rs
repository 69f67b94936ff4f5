//! The line from devices to people, and how well it predicts head counts it was not fitted on.
//!
//! `people = factor x (devices - floor)` is fitted as `y = a x + b` by the Theil–Sen
//! estimator: the slope is the median of the slopes between every pair of observations, the
//! intercept the median of `y - a x` (H. Theil, "A rank-invariant method of linear and
//! polynomial regression analysis", 1950; P. K. Sen, "Estimates of the regression coefficient
//! based on Kendall's tau", JASA 63, 1968). It ignores up to 29 % of wild observations (a
//! miscount, a coach parked by the sensor, a sensor that was off for part of a count) where
//! least squares would follow them. Pairs of two empty counts are left out ([`theil_sen`]).
//!
//! The fit is judged on observations it was not fitted on: leave-one-day-out when the counts
//! span two or more days (a zone's devices per person change from day to day: other
//! visitors, other weather, other phones), else leave-one-block-out over four blocks in time.
//! A day is a salt epoch: the local day from the rotation time (04:00 Europe/Amsterdam by
//! default), so an evening event that runs past midnight, local or UTC, stays one day.
//! The `error` the aggregator widens people by is the split-conformal quantile of those
//! held-out residuals (J. Lei, M. G'Sell, A. Rinaldo, R. J. Tibshirani, L. Wasserman,
//! "Distribution-free predictive inference for regression", JASA 113, 2018): the
//! `ceil(0.95 (n + 1))`-th smallest of the `n` relative residuals, which covers a new count
//! with probability at least 95 % when days are exchangeable.

use std::collections::BTreeMap;

use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use jiff::Timestamp;
use serde::Serialize;

/// Relative errors are taken against at least this many persons: a room of 0 or 2 people
/// predicted as 3 is off by a person or two, not by 50 % or infinity. The same scale the
/// people interval applies the error on ([`crate::people::ERROR_SCALE_MIN_PERSONS`]), so
/// the `error` measured here is the one the interval needs.
pub const MIN_PERSONS: f64 = crate::people::ERROR_SCALE_MIN_PERSONS;
/// Share of the `error` quantile (95 % prediction interval).
pub const COVERAGE: f64 = 0.95;
/// A held-out prediction within this relative error counts as "within +-20 %".
pub const WITHIN: f64 = 0.2;
/// Blocks in time of leave-one-block-out (counts of a single day).
pub const BLOCKS: usize = 4;
/// Counts must range over at least this many persons to fit a slope on: narrower, and the
/// slope is set by the few persons a hand count is off by.
pub const MIN_PEOPLE_RANGE: f64 = 5.0;
/// Devices must range over at least this many to fit a slope on (sketches of a few devices
/// are exact; below two, the line's slope rests on a device or two).
pub const MIN_DEVICE_RANGE: f64 = 2.0;
/// Both ranges must also span this share of their largest value: a busy zone counted only
/// between 900 and 950 persons says what a person is worth only within counting noise
/// (hand counts of crowds are rarely closer than +-5 to 10 %).
pub const MIN_RELATIVE_RANGE: f64 = 0.1;

/// One observation: mean devices per minute over a count's span, and the persons counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Devices (the mean of the stored minutes in the span).
    pub x: f64,
    /// Persons counted.
    pub y: f64,
    /// Start of the count (for the validation's days and blocks).
    pub start: Timestamp,
}

/// A fitted line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Persons per device above the floor.
    pub factor: f64,
    /// Devices there whoever comes (0 or more).
    pub floor: f64,
}

impl Line {
    /// The persons `devices` stand for, never below 0 (as `people::people_of` applies it).
    pub fn people(&self, devices: f64) -> f64 {
        (self.factor * (devices - self.floor)).max(0.0)
    }
}

/// Why no line could be fitted.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Every observation has the same devices, or too nearly.
    #[error(
        "no spread in devices (x): they range from {min:.1} to {max:.1}, a slope needs at least {MIN_DEVICE_RANGE} devices and {pct:.0} % of the largest",
        pct = MIN_RELATIVE_RANGE * 100.0
    )]
    NoDeviceSpread {
        /// Fewest devices.
        min: f64,
        /// Most devices.
        max: f64,
    },
    /// The counts are all about the same.
    #[error(
        "no spread in people (y): the counts range from {min} to {max}, a slope needs at least {MIN_PEOPLE_RANGE} persons and {pct:.0} % of the largest: count quiet and busy times",
        pct = MIN_RELATIVE_RANGE * 100.0
    )]
    NoPeopleSpread {
        /// Fewest persons.
        min: f64,
        /// Most persons.
        max: f64,
    },
    /// More devices go with fewer people (or with none).
    #[error(
        "persons per device {factor:.3} is not above 0: these devices do not rise with people here"
    )]
    FactorNotPositive {
        /// The slope found.
        factor: f64,
    },
}

/// Whether `values` range widely enough to fit a slope on.
fn spread(values: impl Iterator<Item = f64>, min_range: f64) -> Result<(), (f64, f64)> {
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let range = max - min;
    if range >= min_range && range >= MIN_RELATIVE_RANGE * max.abs() {
        Ok(())
    } else {
        Err((min, max))
    }
}

/// Checks that the counts spread enough to fit on (the same for every kind of a zone).
pub fn people_spread(points: &[Point]) -> Result<(), FitError> {
    spread(points.iter().map(|p| p.y), MIN_PEOPLE_RANGE)
        .map_err(|(min, max)| FitError::NoPeopleSpread { min, max })
}

/// Checks that the devices spread enough to fit on.
pub fn device_spread(points: &[Point]) -> Result<(), FitError> {
    spread(points.iter().map(|p| p.x), MIN_DEVICE_RANGE)
        .map_err(|(min, max)| FitError::NoDeviceSpread { min, max })
}

/// An empty count (0 persons): its devices are the zone's static ones, it sits at the floor.
fn empty(p: &Point) -> bool {
    p.y <= 0.0
}

/// The Theil–Sen line through `points`, as factor and floor.
///
/// Pairs of two empty counts are left out of the slopes: both sit at the floor, their
/// devices differ only by the static devices' noise, and their slope is 0 whatever a person
/// is worth. Sen's estimator leaves out pairs tied in `x` for the same reason; ties in `y`
/// are rare among counts of people present, but a zone counted mostly while empty (a lab at
/// night: 28 of 43 counts of brno-lab) would otherwise get the slope 0 of its many empty
/// pairs. Empty counts still weigh in the intercept: they are where the floor is.
///
/// A positive intercept would be a negative floor (fewer than no static devices): then the
/// floor is 0 and the factor the median of `y / x` over occupied counts (an empty count's
/// ratio is 0 whatever the factor), the line through the origin that the same median logic
/// gives.
pub fn theil_sen(points: &[Point]) -> Result<Line, FitError> {
    let no_spread = || {
        let (min, max) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.x), hi.max(p.x))
            });
        FitError::NoDeviceSpread { min, max }
    };
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, p) in points.iter().enumerate() {
        for q in &points[i + 1..] {
            let dx = q.x - p.x;
            if dx.abs() > 1e-9 && !(empty(p) && empty(q)) {
                slopes.push((q.y - p.y) / dx);
            }
        }
    }
    let a = median(&mut slopes).ok_or_else(no_spread)?;
    if a.is_nan() || a <= 0.0 {
        return Err(FitError::FactorNotPositive { factor: a });
    }
    let mut intercepts: Vec<f64> = points.iter().map(|p| p.y - a * p.x).collect();
    let b = median(&mut intercepts).ok_or_else(no_spread)?;
    if b <= 0.0 {
        return Ok(Line {
            factor: a,
            // -b / a; + 0.0 turns the -0.0 of b = 0 into 0.
            floor: -b / a + 0.0,
        });
    }
    let mut ratios: Vec<f64> = points
        .iter()
        .filter(|p| !empty(p) && p.x > 1e-9)
        .map(|p| p.y / p.x)
        .collect();
    match median(&mut ratios) {
        Some(f) if f > 0.0 => Ok(Line {
            factor: f,
            floor: 0.0,
        }),
        Some(f) => Err(FitError::FactorNotPositive { factor: f }),
        None => Err(no_spread()),
    }
}

/// The median (the mean of the middle two of an even count); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (_, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..n / 2]
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(upper);
    Some((lower + upper) / 2.0)
}

/// How the held-out observations were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Validation {
    /// Each day's counts predicted by the line fitted on the other days.
    LeaveOneDayOut {
        /// Days (salt epochs: local days from the rotation time) of the counts' starts.
        days: usize,
    },
    /// Counts of one day: four blocks in time, each predicted by the line of the others.
    LeaveOneBlockOut {
        /// Blocks.
        blocks: usize,
    },
}

impl std::fmt::Display for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Validation::LeaveOneDayOut { days } => {
                write!(f, "leave-one-day-out over {days} days")
            }
            Validation::LeaveOneBlockOut { blocks } => {
                write!(
                    f,
                    "leave-one-block-out over {blocks} blocks in time (one day)"
                )
            }
        }
    }
}

/// A group of held-out observations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// A day: the salt epoch (named by the local date it starts on).
    Day(EpochId),
    /// The n-th block in time (1-based).
    Block(usize),
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Day(d) => write!(f, "day {d}"),
            Group::Block(b) => write!(f, "block {b} of {BLOCKS}"),
        }
    }
}

/// The validation for counts starting at `starts`, and each count's group; days are the
/// epochs of `rotation`.
pub fn groups(starts: &[Timestamp], rotation: &RotationSchedule) -> (Validation, Vec<Group>) {
    let days: Vec<Group> = starts
        .iter()
        .map(|&t| Group::Day(rotation.epoch_at(t)))
        .collect();
    let distinct: std::collections::BTreeSet<&Group> = days.iter().collect();
    if distinct.len() >= 2 {
        let days_n = distinct.len();
        return (Validation::LeaveOneDayOut { days: days_n }, days);
    }
    let mut order: Vec<usize> = (0..starts.len()).collect();
    order.sort_by_key(|&i| (starts[i], i));
    let mut blocks = vec![Group::Block(1); starts.len()];
    for (rank, &i) in order.iter().enumerate() {
        blocks[i] = Group::Block(rank * BLOCKS / starts.len().max(1) + 1);
    }
    (Validation::LeaveOneBlockOut { blocks: BLOCKS }, blocks)
}

/// A held-out group whose remaining counts could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("validation: without {group}, the other counts give no line ({error})")]
pub struct FoldError {
    /// The group held out.
    pub group: Group,
    /// Why the rest gave no line.
    pub error: FitError,
}

/// Every observation predicted by the line fitted without its group.
pub fn held_out(points: &[Point], groups: &[Group]) -> Result<Vec<f64>, FoldError> {
    let mut predicted = vec![0.0; points.len()];
    let mut by_group: BTreeMap<&Group, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by_group.entry(g).or_default().push(i);
    }
    for (group, members) in by_group {
        let training: Vec<Point> = points
            .iter()
            .zip(groups)
            .filter(|(_, g)| *g != group)
            .map(|(p, _)| *p)
            .collect();
        let line = theil_sen(&training).map_err(|error| FoldError {
            group: group.clone(),
            error,
        })?;
        for i in members {
            predicted[i] = line.people(points[i].x);
        }
    }
    Ok(predicted)
}

/// How predictions compare with the counts.
///
/// Percentages are taken over the counts of at least [`MIN_PERSONS`] (where there are people
/// to be relative to, and where a people figure matters); quiet counts are judged in persons.
/// Otherwise a zone counted mostly while empty would be judged by how well it predicts
/// nobody (brno-lab: 28 of 43 counts empty, where every kind is within a person or two).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Scores {
    /// Median of `|y - yhat| / y` over the counts of at least 5 persons (0.12 = 12 %); over
    /// every count, as `|y - yhat| / max(y, 5)`, when none has 5.
    pub median_error: f64,
    /// Share of those counts predicted within +-20 %.
    pub within_20: f64,
    /// Counts of at least 5 persons (the ones the two figures above are taken over).
    pub occupied: usize,
    /// Median of `|y - yhat|` in persons, over every count.
    pub median_error_persons: f64,
    /// The split-conformal quantile of `|y - yhat| / max(yhat, 5 persons)` over every count:
    /// the relative half-width of the 95 % prediction interval (what `error` in the config
    /// means).
    pub error: f64,
    /// Fewer than 19 counts: `error` is the largest residual, a floor rather than a bound.
    pub error_is_floor: bool,
    /// Counts compared.
    pub observations: usize,
}

/// The rank of the split-conformal quantile among `n` sorted residuals (1-based).
fn conformal_rank(n: usize) -> usize {
    (COVERAGE * (n as f64 + 1.0)).ceil() as usize
}

/// Whether the held-out error of `n` counts is only a floor: under 19 counts no residual is
/// the conformal [`COVERAGE`] quantile (Lei et al. 2018), so the largest stands in.
pub fn is_floor(n: usize) -> bool {
    conformal_rank(n) > n
}

/// Scores of the predictions `yhat` of the counts `y` (same length, not empty).
pub fn scores(y: &[f64], yhat: &[f64]) -> Scores {
    let n = y.len().min(yhat.len());
    let pairs = || y.iter().zip(yhat);
    let occupied = pairs().filter(|(y, _)| **y >= MIN_PERSONS).count();
    let mut relative: Vec<f64> = pairs()
        .filter(|(y, _)| occupied == 0 || **y >= MIN_PERSONS)
        .map(|(y, p)| (y - p).abs() / y.max(MIN_PERSONS))
        .collect();
    let mut persons: Vec<f64> = pairs().map(|(y, p)| (y - p).abs()).collect();
    let mut conformal: Vec<f64> = pairs()
        .map(|(y, p)| (y - p).abs() / p.max(MIN_PERSONS))
        .collect();
    conformal.sort_by(f64::total_cmp);
    let rank = conformal_rank(n);
    let error_is_floor = is_floor(n);
    let error = conformal
        .get(rank.min(n).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    Scores {
        within_20: relative.iter().filter(|e| **e <= WITHIN + 1e-12).count() as f64
            / relative.len().max(1) as f64,
        median_error: median(&mut relative).unwrap_or(0.0),
        occupied,
        median_error_persons: median(&mut persons).unwrap_or(0.0),
        error,
        error_is_floor,
        observations: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32, minute: i64) -> Timestamp {
        let d: Timestamp = format!("2026-05-{day:02}T08:00:00Z").parse().expect("ts");
        d + jiff::SignedDuration::from_mins(minute)
    }

    fn points(xy: &[(f64, f64)]) -> Vec<Point> {
        xy.iter()
            .enumerate()
            .map(|(i, &(x, y))| Point {
                x,
                y,
                start: at(4, 15 * i as i64),
            })
            .collect()
    }

    #[test]
    fn a_known_line_is_recovered_through_outliers() {
        // people = 0.8 x (devices - 14), with 5 of 30 counts wildly off.
        let mut xy: Vec<(f64, f64)> = (0..30)
            .map(|i| {
                let x = 14.0 + 3.0 * f64::from(i);
                (x, 0.8 * (x - 14.0))
            })
            .collect();
        for i in [3, 9, 15, 21, 27] {
            xy[i].1 *= 3.0;
            xy[i].1 += 40.0;
        }
        let line = theil_sen(&points(&xy)).expect("line");
        assert!((line.factor - 0.8).abs() < 1e-9, "{line:?}");
        assert!((line.floor - 14.0).abs() < 1e-9, "{line:?}");
        // Least squares would follow them: its slope is far off.
        let n = xy.len() as f64;
        let (mx, my) = (
            xy.iter().map(|p| p.0).sum::<f64>() / n,
            xy.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let ls = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>()
            / xy.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
        assert!((ls - 0.8).abs() > 0.1, "least squares {ls}");
    }

    #[test]
    fn a_negative_floor_becomes_zero_with_the_median_ratio() {
        // people = 2 + 0.5 x: the line would say -4 devices are there whoever comes.
        let xy: Vec<(f64, f64)> = (1..=10)
            .map(|i| (10.0 * f64::from(i), 2.0 + 5.0 * f64::from(i)))
            .collect();
        let line = theil_sen(&points(&xy)).expect("line");
        assert_eq!(line.floor, 0.0);
        let mut ratios: Vec<f64> = xy.iter().map(|(x, y)| y / x).collect();
        assert_eq!(Some(line.factor), median(&mut ratios));
        assert_eq!(line.people(-5.0), 0.0, "never below zero");
    }

    #[test]
    fn many_empty_counts_do_not_flatten_the_line() {
        // people = 0.5 x (devices - 4): 8 occupied counts, and 20 empty ones whose devices
        // wander between 3 and 5 (the static devices, heard more or less well).
        let mut xy: Vec<(f64, f64)> = (1..=8)
            .map(|i| {
                let x = 4.0 + 4.0 * f64::from(i);
                (x, 0.5 * (x - 4.0))
            })
            .collect();
        xy.extend((0..20).map(|i| (3.0 + f64::from(i % 3), 0.0)));
        let line = theil_sen(&points(&xy)).expect("line");
        assert!((line.factor - 0.5).abs() < 0.02, "{line:?}");
        assert!((line.floor - 4.0).abs() < 0.5, "{line:?}");
        let all_empty = points(&[(1.0, 0.0), (3.0, 0.0), (5.0, 0.0)]);
        assert!(theil_sen(&all_empty).is_err());
    }

    #[test]
    fn falling_or_flat_lines_are_refused() {
        let falling = points(&[(10.0, 9.0), (20.0, 5.0), (30.0, 1.0)]);
        assert!(matches!(
            theil_sen(&falling),
            Err(FitError::FactorNotPositive { .. })
        ));
        let flat = points(&[(10.0, 9.0), (10.0, 5.0), (10.0, 1.0)]);
        assert!(matches!(
            theil_sen(&flat),
            Err(FitError::NoDeviceSpread { .. })
        ));
        assert!(device_spread(&points(&[(100.0, 1.0), (105.0, 9.0)])).is_err());
        assert!(device_spread(&points(&[(1.0, 1.0), (2.0, 9.0)])).is_err());
        assert!(device_spread(&points(&[(0.0, 1.0), (3.0, 9.0)])).is_ok());
        assert!(people_spread(&points(&[(0.0, 900.0), (3.0, 950.0)])).is_err());
        assert!(people_spread(&points(&[(0.0, 0.0), (3.0, 5.0)])).is_ok());
    }

    #[test]
    fn leave_one_day_out_predicts_each_day_from_the_others() {
        // Three days on one line, the third day's devices per person doubled.
        let mut pts = Vec::new();
        for day in [4, 5, 6] {
            for i in 0..8 {
                let x = 10.0 + 10.0 * f64::from(i);
                let per = if day == 6 { 0.25 } else { 0.5 };
                pts.push(Point {
                    x,
                    y: per * (x - 10.0),
                    start: at(day, 15 * i64::from(i)),
                });
            }
        }
        let starts: Vec<Timestamp> = pts.iter().map(|p| p.start).collect();
        let (validation, groups) = groups(&starts, &RotationSchedule::default());
        assert_eq!(validation, Validation::LeaveOneDayOut { days: 3 });
        let yhat = held_out(&pts, &groups).expect("folds");
        let y: Vec<f64> = pts.iter().map(|p| p.y).collect();
        let s = scores(&y, &yhat);
        // Day 6 held out is predicted by days 4-5 (slope 0.5): twice its counts.
        let day6: Vec<f64> = (16..24).map(|i| yhat[i] / y[i].max(1e-9)).collect();
        assert!(day6[1..].iter().all(|r| (r - 2.0).abs() < 1e-9), "{day6:?}");
        assert!(!s.error_is_floor && s.observations == 24);
        assert!(s.error >= 0.5, "{s:?}");
    }

    #[test]
    fn one_day_is_validated_in_four_blocks() {
        let starts: Vec<Timestamp> = (0..10).rev().map(|i| at(4, 15 * i)).collect();
        let (validation, groups) = groups(&starts, &RotationSchedule::default());
        assert_eq!(validation, Validation::LeaveOneBlockOut { blocks: 4 });
        // The latest start (index 0) is in the last block, the earliest in the first.
        assert_eq!(groups[0], Group::Block(4));
        assert_eq!(groups[9], Group::Block(1));
        let per_block = |b| groups.iter().filter(|g| **g == Group::Block(b)).count();
        assert_eq!((1..=4).map(per_block).sum::<usize>(), 10);
        assert!((1..=4).all(|b| per_block(b) >= 2));
    }

    #[test]
    fn an_evening_past_midnight_is_one_day() {
        // Counts every hour from 20:00 to 03:00 local (CEST, UTC+2) on two evenings: eight
        // UTC dates and four local dates, but two salt epochs (days from 04:00 local).
        let evening = |d: &str| -> Vec<Timestamp> {
            let first: Timestamp = format!("{d}T18:00:00Z").parse().expect("ts");
            (0..8)
                .map(|h| first + jiff::SignedDuration::from_hours(h))
                .collect()
        };
        let starts: Vec<Timestamp> = [evening("2026-04-27"), evening("2026-04-28")].concat();
        let (validation, groups) = groups(&starts, &RotationSchedule::default());
        assert_eq!(validation, Validation::LeaveOneDayOut { days: 2 });
        assert!(groups[..8].iter().all(|g| *g == groups[0]), "{groups:?}");
        assert!(groups[8..].iter().all(|g| *g == groups[8]), "{groups:?}");
        assert_eq!(groups[0].to_string(), "day 2026-04-27");
    }

    #[test]
    fn the_error_is_the_conformal_quantile_or_a_floor() {
        // 19 residuals of 1..19 persons on predictions of 100: rank ceil(0.95 x 20) = 19.
        let y: Vec<f64> = (1..=19).map(|i| 100.0 + f64::from(i)).collect();
        let yhat = vec![100.0; 19];
        let s = scores(&y, &yhat);
        assert!((s.error - 0.19).abs() < 1e-12 && !s.error_is_floor, "{s:?}");
        // 39 residuals: rank ceil(0.95 x 40) = 38.
        let y: Vec<f64> = (1..=39).map(|i| 100.0 + f64::from(i)).collect();
        let s = scores(&y, &[100.0; 39]);
        assert!((s.error - 0.38).abs() < 1e-12, "{s:?}");
        // 10: fewer than 19, the largest, flagged.
        let y: Vec<f64> = (1..=10).map(|i| 100.0 + f64::from(i)).collect();
        let s = scores(&y, &[100.0; 10]);
        assert!((s.error - 0.10).abs() < 1e-12 && s.error_is_floor, "{s:?}");
        // Small predictions are judged against 5 persons.
        let s = scores(&[0.0, 2.0], &[1.0, 1.0]);
        assert!((s.error - 0.2).abs() < 1e-12, "{s:?}");
        assert!(
            (s.median_error - 0.2).abs() < 1e-12 && s.within_20 == 1.0,
            "{s:?}"
        );
        assert_eq!(s.occupied, 0);
        // Percentages come from the counts of 5 or more; empty ones count in persons.
        let s = scores(&[0.0, 0.0, 0.0, 10.0, 20.0], &[1.0, 2.0, 0.0, 11.0, 30.0]);
        assert_eq!(s.occupied, 2);
        assert!((s.median_error - 0.3).abs() < 1e-12, "{s:?}");
        assert!((s.within_20 - 0.5).abs() < 1e-12, "{s:?}");
        assert!((s.median_error_persons - 1.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_middle_mean() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut []), None);
    }
}
