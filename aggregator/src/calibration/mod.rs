//! Calibration (design §6, issue #16): fitting `people = factor x (devices - floor)` per zone
//! against head counts, for `crowdflow-aggregator calibrate` and `POST /api/v1/calibration`.
//!
//! Each head count of COUNTS.csv ([`counts`]) is set against the zone's stored minute
//! numbers: `x` = the mean over the stored minutes in `[start, end)` of the zone's devices of
//! one kind per minute (a minute of two salts, a rotation, is their sum, as
//! [`crate::people::per_minute`] takes it). That is the unit `people.rs` applies the factor
//! to, so the fitted line is the one the aggregator will use. Per zone and kind a robust line
//! is fitted and judged on held-out counts ([`fit`]); the kind that predicts held-out counts
//! best is picked, and the report ([`report`]) shows every kind beside "naive addresses"
//! (Wi-Fi addresses taken as people), with the TOML to paste.
//!
//! Only plain numbers are read (they outlive the minute sketches under the retention
//! policy); nothing per device exists here, and the report holds only fitted numbers.

pub mod counts;
pub mod fit;
pub mod report;

use std::collections::BTreeMap;

use crowdflow_contract::epoch::RotationSchedule;
use crowdflow_contract::identity::Kind;
use jiff::{SignedDuration, Timestamp};

use crate::config::Zone;
use crate::store::{BucketQuery, Resolution, Store, StoreError};
use crate::zone::ZoneId;
use counts::{CountsError, Field, Observation, Problem, RowError};
use fit::{FitError, FoldError, Point};
pub use report::{KindFit, KindReport, Prediction, Report, ZoneReport};

/// A zone needs at least this many counts with stored minutes. With fewer, each of the four
/// blocks of a one-day validation holds one count and is predicted from four or fewer, and
/// the Theil–Sen line shrugs off at most one bad count (its breakdown point is 29 %).
pub const MIN_OBSERVATIONS: usize = 6;
/// At most this many counts per zone: the fit compares every pair (125,000 pairs here) once
/// per held-out day (500 days held out take 0.5 s per kind in a release build), and a
/// calibration gains nothing from more (40 counts over a few days make a good one).
pub const MAX_OBSERVATIONS: usize = 500;
/// Counted spans closer than this are read from the store in one query.
const READ_GAP: SignedDuration = SignedDuration::from_hours(1);
/// Factors above this are refused by the config loader (persons per device).
pub const MAX_FACTOR: f64 = 100.0;
/// Errors above this are refused by the config loader (relative half-width, 10 = +-1000 %).
pub const MAX_ERROR: f64 = 10.0;

/// Why calibration could not start.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// COUNTS.csv has bad rows.
    #[error(transparent)]
    Counts(#[from] CountsError),
    /// The store could not be read.
    #[error("reading the stored minutes: {0}")]
    Store(#[from] StoreError),
    /// The fitting task ended without a report (a bug: it does not fail on any input).
    #[error("the fit did not finish: {0}")]
    Aborted(String),
}

/// Why a zone got no calibration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZoneRefusal {
    /// Too few counts with stored minutes.
    #[error(
        "too few observations: {usable} counts with stored minutes, at least {MIN_OBSERVATIONS} needed"
    )]
    TooFew {
        /// Counts with stored minutes.
        usable: usize,
    },
    /// More counts than the fit takes.
    #[error(
        "too many observations: {count} counts, at most {MAX_OBSERVATIONS} per zone (keep a few days' worth)"
    )]
    TooMany {
        /// Counts with stored minutes.
        count: usize,
    },
    /// The counts do not spread.
    #[error(transparent)]
    NoSpread(FitError),
    /// Every kind was refused (see each).
    #[error("no kind could be fitted (see each kind)")]
    NoKind,
}

/// Why a kind of a zone got no line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KindRefusal {
    /// The store has no minute of this kind in the counted spans.
    #[error("no stored minutes of this kind")]
    NoMinutes,
    /// Too few counts have minutes of this kind.
    #[error("{usable} counts with stored minutes of this kind, at least {MIN_OBSERVATIONS} needed")]
    TooFew {
        /// Counts with minutes of this kind.
        usable: usize,
    },
    /// No line through all counts.
    #[error(transparent)]
    Fit(FitError),
    /// No line without one of the held-out groups.
    #[error(transparent)]
    Fold(FoldError),
    /// A factor the config would refuse.
    #[error(
        "persons per device {factor:.1} is above {MAX_FACTOR}: this kind hears almost nothing here"
    )]
    FactorTooLarge {
        /// The factor found.
        factor: f64,
    },
    /// Held-out counts are predicted worse than the config admits.
    #[error(
        "held-out error {error:.1} is above {MAX_ERROR} (+-1000 %): these devices do not follow people here"
    )]
    ErrorTooLarge {
        /// The error found.
        error: f64,
    },
}

/// Fits every zone of COUNTS.csv (`counts`, as given) against the stored minutes; the
/// held-out days are the epochs of `rotation` (local days).
pub async fn calibrate(
    store: &impl Store,
    zones: &BTreeMap<ZoneId, Zone>,
    rotation: &RotationSchedule,
    counts: &[u8],
) -> Result<Report, CalibrationError> {
    let observations = counts::parse(counts, zones)?;
    let mut by_zone: BTreeMap<&ZoneId, Vec<&Observation>> = BTreeMap::new();
    for o in &observations {
        by_zone.entry(&o.zone).or_default().push(o);
    }
    let mut read = Vec::new();
    for (id, rows) in by_zone {
        let Some(zone) = zones.get(id) else { continue };
        let minutes = Minutes::read(store, id, &rows).await?;
        let rows: Vec<Observation> = rows.into_iter().cloned().collect();
        read.push((zone.clone(), rows, minutes));
    }
    // The fits take up to seconds for hundreds of counts over as many days: off the async
    // workers, which serve the API meanwhile.
    let rotation = rotation.clone();
    let reports = tokio::task::spawn_blocking(move || {
        read.iter()
            .map(|(zone, rows, minutes)| {
                let rows: Vec<&Observation> = rows.iter().collect();
                zone_report(zone, &rows, minutes, &rotation)
            })
            .collect()
    })
    .await
    .map_err(|e| CalibrationError::Aborted(e.to_string()))?;
    Ok(Report::new(reports))
}

/// A zone's stored devices per minute and kind (salts summed), over the counted spans.
#[derive(Debug, Default)]
pub struct Minutes(BTreeMap<Kind, BTreeMap<Timestamp, f64>>);

impl Minutes {
    /// Reads the minutes of `zone` covering `rows`, one query per kind and run of nearby spans.
    pub async fn read(
        store: &impl Store,
        zone: &ZoneId,
        rows: &[&Observation],
    ) -> Result<Minutes, StoreError> {
        let mut minutes = Minutes::default();
        for (from, to) in spans(rows) {
            for kind in Kind::ALL {
                let numbers = store
                    .zone_numbers(BucketQuery {
                        zone,
                        kind,
                        resolution: Resolution::Minute,
                        from,
                        to,
                    })
                    .await?;
                for n in numbers {
                    minutes.add(kind, n.bucket, n.devices.estimate);
                }
            }
        }
        Ok(minutes)
    }

    /// Adds `devices` to `kind`'s minute `at` (a second salt's number is summed).
    pub fn add(&mut self, kind: Kind, at: Timestamp, devices: f64) {
        *self.0.entry(kind).or_default().entry(at).or_default() += devices;
    }

    /// The mean devices of `kind` over its stored minutes in `[start, end)`.
    fn mean(&self, kind: Kind, start: Timestamp, end: Timestamp) -> Option<f64> {
        let (n, sum) = self
            .0
            .get(&kind)?
            .range(start..end)
            .fold((0usize, 0.0), |(n, s), (_, d)| (n + 1, s + d));
        (n > 0).then(|| sum / n as f64)
    }

    /// The mean over `[start, end)` of each minute's Wi-Fi addresses (`wifi` +
    /// `wifi_random`), as naive address counting takes them for people.
    fn addresses(&self, start: Timestamp, end: Timestamp) -> Option<f64> {
        let mut per_minute: BTreeMap<Timestamp, f64> = BTreeMap::new();
        for kind in [Kind::Wifi, Kind::WifiRandom] {
            for (t, d) in self
                .0
                .get(&kind)
                .into_iter()
                .flat_map(|m| m.range(start..end))
            {
                *per_minute.entry(*t).or_default() += d;
            }
        }
        let n = per_minute.len();
        (n > 0).then(|| per_minute.values().sum::<f64>() / n as f64)
    }

    /// The minutes in `[start, end)` that any kind has stored.
    fn stored(&self, start: Timestamp, end: Timestamp) -> usize {
        self.0
            .values()
            .flat_map(|m| m.range(start..end).map(|(t, _)| *t))
            .collect::<std::collections::BTreeSet<Timestamp>>()
            .len()
    }
}

/// The counted spans, runs closer than [`READ_GAP`] merged: what is read from the store.
fn spans(rows: &[&Observation]) -> Vec<(Timestamp, Timestamp)> {
    let mut sorted: Vec<(Timestamp, Timestamp)> = rows.iter().map(|o| (o.start, o.end)).collect();
    sorted.sort();
    let mut merged: Vec<(Timestamp, Timestamp)> = Vec::new();
    for (start, end) in sorted {
        match merged.last_mut() {
            Some(last) if start <= last.1 + READ_GAP => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Fits one zone's counts.
pub fn zone_report(
    zone: &Zone,
    rows: &[&Observation],
    minutes: &Minutes,
    rotation: &RotationSchedule,
) -> ZoneReport {
    let mut report = ZoneReport::new(zone, rows.len());
    let mut usable: Vec<&Observation> = Vec::new();
    for o in rows {
        let stored = minutes.stored(o.start, o.end);
        let span = usize::try_from(o.end.duration_since(o.start).as_mins()).unwrap_or(0);
        let (zone, start, end) = (zone.id.clone(), o.start, o.end);
        let problem = match stored {
            0 => Problem::OutsideStoredData { zone, start, end },
            s if s * 2 < span => Problem::MostlyUnstored {
                zone,
                start,
                end,
                stored: s,
                minutes: span,
            },
            s => {
                usable.push(o);
                if s < span {
                    let problem = Problem::PartlyStored {
                        zone,
                        start,
                        end,
                        stored: s,
                        minutes: span,
                    };
                    report.partly_stored.push(RowError {
                        line: o.line,
                        field: Field::Span,
                        problem,
                    });
                }
                continue;
            }
        };
        report.outside.push(RowError {
            line: o.line,
            field: Field::Span,
            problem,
        });
    }
    report.usable = usable.len();
    let y: Vec<Point> = usable
        .iter()
        .map(|o| Point {
            x: 0.0,
            y: o.people,
            start: o.start,
        })
        .collect();
    let refusal = if usable.len() < MIN_OBSERVATIONS {
        Some(ZoneRefusal::TooFew {
            usable: usable.len(),
        })
    } else if usable.len() > MAX_OBSERVATIONS {
        Some(ZoneRefusal::TooMany {
            count: usable.len(),
        })
    } else {
        fit::people_spread(&y).err().map(ZoneRefusal::NoSpread)
    };
    if let Some(r) = refusal {
        report.refused = Some(r);
        return report;
    }
    let starts: Vec<Timestamp> = usable.iter().map(|o| o.start).collect();
    let (validation, groups) = fit::groups(&starts, rotation);
    report.validation = Some(validation);
    report.kinds = Kind::ALL
        .into_iter()
        .map(|kind| kind_report(kind, &usable, &groups, minutes))
        .collect();
    let mut naive = (Vec::new(), Vec::new(), Vec::new());
    for o in &usable {
        if let Some(x) = minutes.addresses(o.start, o.end) {
            naive.0.push(o.line);
            naive.1.push(Point {
                x,
                y: o.people,
                start: o.start,
            });
            naive.2.push(x);
        }
    }
    let (lines, points, x) = naive;
    let y: Vec<f64> = points.iter().map(|p| p.y).collect();
    report.naive = (!y.is_empty()).then(|| fit::scores(&y, &x));
    report.naive_predictions = predictions(&lines, &points, &x);
    report.pick();
    report
}

/// Fits one kind of a zone and judges it on held-out counts.
fn kind_report(
    kind: Kind,
    usable: &[&Observation],
    groups: &[fit::Group],
    minutes: &Minutes,
) -> KindReport {
    let mut points = Vec::new();
    let mut point_groups = Vec::new();
    let mut lines = Vec::new();
    for (o, g) in usable.iter().zip(groups) {
        if let Some(x) = minutes.mean(kind, o.start, o.end) {
            points.push(Point {
                x,
                y: o.people,
                start: o.start,
            });
            point_groups.push(g.clone());
            lines.push(o.line);
        }
    }
    let (fit, predictions, refused) = match fit_kind(&points, &point_groups) {
        Ok((fit, predicted)) => (Some(fit), predictions(&lines, &points, &predicted), None),
        Err(r) => (None, Vec::new(), Some(r)),
    };
    KindReport {
        kind,
        observations: points.len(),
        fit,
        refused,
        predictions,
    }
}

/// Each count with its devices and the people predicted for it.
fn predictions(lines: &[u64], points: &[Point], predicted: &[f64]) -> Vec<Prediction> {
    lines
        .iter()
        .zip(points)
        .zip(predicted)
        .map(|((line, p), predicted)| Prediction {
            line: *line,
            people: p.y,
            devices: p.x,
            predicted: *predicted,
        })
        .collect()
}

/// The kind's line and every count's held-out prediction.
fn fit_kind(points: &[Point], groups: &[fit::Group]) -> Result<(KindFit, Vec<f64>), KindRefusal> {
    if points.is_empty() {
        return Err(KindRefusal::NoMinutes);
    }
    if points.len() < MIN_OBSERVATIONS {
        return Err(KindRefusal::TooFew {
            usable: points.len(),
        });
    }
    fit::people_spread(points).map_err(KindRefusal::Fit)?;
    fit::device_spread(points).map_err(KindRefusal::Fit)?;
    let line = fit::theil_sen(points).map_err(KindRefusal::Fit)?;
    if line.factor > MAX_FACTOR {
        return Err(KindRefusal::FactorTooLarge {
            factor: line.factor,
        });
    }
    let predicted = fit::held_out(points, groups).map_err(KindRefusal::Fold)?;
    let y: Vec<f64> = points.iter().map(|p| p.y).collect();
    let held_out = fit::scores(&y, &predicted);
    if held_out.error > MAX_ERROR {
        return Err(KindRefusal::ErrorTooLarge {
            error: held_out.error,
        });
    }
    Ok((KindFit::new(line, held_out), predicted))
}

#[cfg(test)]
mod tests;
