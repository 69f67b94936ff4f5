//! Estimated people (design §6, second round): per zone and kind,
//! `people = factor x (devices - floor)`, with an interval that combines the sketch's error
//! with the calibration's.
//!
//! A device count is not a head count: some people carry no device that is heard, some carry
//! several, and static devices (a lab's computers, a shop's beacons, clients of the routers
//! around) are there whoever comes. The factor and the floor come from `calibrate` (a robust
//! fit against head counts, [`crate::calibration`]); a bare factor is a guess and is shown as
//! one (`calibrated: false`, [`UNCALIBRATED_ERROR`]). A floor not given is learned from the
//! zone's own quiet periods ([`Floors`]); nothing per device is kept for it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crowdflow_contract::identity::Kind;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::config::{Calibration, Floor, Zone};
use crate::query::Count;
use crate::store::{BucketQuery, Resolution, Store, StoreError};
use crate::zone::ZoneId;

/// Relative half-width of the people interval of a zone nobody calibrated (+-50 %).
///
/// Devices per person differ by site and crowd far more than sketches err: on the brno-lab
/// days a line fitted on one day was within +-30 % on the other for 93 % of windows only
/// after de-randomization (docs/counting-devices.md), and raw address counts ran at 18 per
/// person; published ratios of heard devices to people range over a factor of two or more
/// between sites (Duives et al. 2020, "Wi-Fi sensing for crowd monitoring"). A guessed
/// factor earns no narrower interval than that.
pub const UNCALIBRATED_ERROR: f64 = 0.5;
/// The calibration's error is relative to the people estimate, but never to fewer than this
/// many persons: a zone where nobody is heard may still hold a few people, and a relative
/// error of nothing is nothing. `calibrate` measures held-out errors on the same scale.
pub const ERROR_SCALE_MIN_PERSONS: f64 = 5.0;
/// The learned floor is this quantile of the zone's minute counts.
pub const FLOOR_QUANTILE: f64 = 0.05;
/// Over this many days of stored minutes.
pub const FLOOR_DAYS: i64 = 7;
/// A floor is learned only from at least this many stored minutes (12 hours): fewer may all
/// be busy ones, and a floor learned from a crowd would subtract people.
pub const FLOOR_MIN_MINUTES: usize = 720;
/// Learned floors are refreshed this often.
pub const FLOOR_REFRESH: SignedDuration = SignedDuration::from_mins(15);

/// Where a kind's floor came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FloorSource {
    /// Set in the config (by `calibrate` or a site survey).
    Configured,
    /// Learned from the zone's quiet periods.
    Learned,
    /// To be learned, but fewer than [`FLOOR_MIN_MINUTES`] minutes are stored yet: 0 until then.
    Learning,
}

/// How one kind's devices became people.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KindBasis {
    /// Persons per device.
    pub factor: f64,
    /// Static devices subtracted first (devices).
    pub floor: f64,
    /// Where the floor came from.
    pub floor_source: FloorSource,
    /// Head counts the factor was fitted on (null for a guessed factor).
    pub observations: Option<u32>,
}

/// How a zone's people figure was made: which kinds feed it, and how sure it is.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PeopleBasis {
    /// Every kind's factor was fitted on head counts (`calibrate`); false when any is a guess.
    pub calibrated: bool,
    /// Relative half-width (95 %) of the calibration's error used in the interval: the
    /// fit's held-out error, or [`UNCALIBRATED_ERROR`] for a guess.
    pub error: f64,
    /// A fitted kind had fewer than 19 head counts: its `error` is the largest held-out
    /// residual, a floor of the half-width rather than a 95 % bound (`calibrate` says so).
    pub error_is_floor: bool,
    /// The kinds that feed the figure.
    pub kinds: BTreeMap<String, KindBasis>,
}

/// A floor learned from stored minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedFloor {
    /// Devices (the [`FLOOR_QUANTILE`] of the minute counts).
    pub devices: f64,
    /// Minutes it was learned from.
    pub minutes: usize,
}

/// The learned floors of every zone and kind, shared by the live board and the API.
#[derive(Debug, Clone, Default)]
pub struct Floors {
    learned: Arc<RwLock<BTreeMap<(ZoneId, Kind), LearnedFloor>>>,
    refreshed: Arc<RwLock<Option<Timestamp>>>,
}

impl Floors {
    /// The learned floor of a zone's kind, if enough minutes are stored.
    pub fn get(&self, zone: &ZoneId, kind: Kind) -> Option<LearnedFloor> {
        self.learned
            .read()
            .ok()
            .and_then(|m| m.get(&(zone.clone(), kind)).copied())
    }

    /// Re-learns the floors of every zone and kind whose calibration asks for one, when
    /// the last refresh is older than [`FLOOR_REFRESH`].
    pub async fn refresh_if_due(
        &self,
        store: &impl Store,
        zones: impl Iterator<Item = &Zone>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let due = self
            .refreshed
            .read()
            .map(|r| r.is_none_or(|t| now.duration_since(t) >= FLOOR_REFRESH))
            .unwrap_or(true);
        if !due {
            return Ok(());
        }
        let mut learned = BTreeMap::new();
        for zone in zones {
            for (kind, c) in &zone.calibration {
                if c.floor == Floor::Learned
                    && let Some(f) = learn_floor(store, &zone.id, *kind, now).await?
                {
                    learned.insert((zone.id.clone(), *kind), f);
                }
            }
        }
        if let Ok(mut m) = self.learned.write() {
            *m = learned;
        }
        if let Ok(mut r) = self.refreshed.write() {
            *r = Some(now);
        }
        Ok(())
    }
}

/// The [`FLOOR_QUANTILE`] of a zone's stored minute counts of `kind` over the last
/// [`FLOOR_DAYS`] days; `None` with fewer than [`FLOOR_MIN_MINUTES`] minutes.
pub async fn learn_floor(
    store: &impl Store,
    zone: &ZoneId,
    kind: Kind,
    now: Timestamp,
) -> Result<Option<LearnedFloor>, StoreError> {
    let numbers = store
        .zone_numbers(BucketQuery {
            zone,
            kind,
            resolution: Resolution::Minute,
            from: now - SignedDuration::from_hours(24 * FLOOR_DAYS),
            to: now,
        })
        .await?;
    // A minute of two salts (a rotation) is the sum of both.
    let mut per_minute: BTreeMap<Timestamp, f64> = BTreeMap::new();
    for n in numbers {
        *per_minute.entry(n.bucket).or_default() += n.devices.estimate;
    }
    let minutes = per_minute.len();
    if minutes < FLOOR_MIN_MINUTES {
        return Ok(None);
    }
    let mut values: Vec<f64> = per_minute.into_values().collect();
    values.sort_by(f64::total_cmp);
    let at = ((minutes - 1) as f64 * FLOOR_QUANTILE).round() as usize;
    Ok(Some(LearnedFloor {
        devices: values[at.min(minutes - 1)].round(),
        minutes,
    }))
}

/// The people of one minute's `devices` in `zone`; `None` when the zone has no calibration
/// at all (a device count is then shown as devices, never as made-up people).
///
/// People are a presence figure: factor and floor apply to the devices of one minute (the
/// unit `calibrate` fits on and the floor is learned from). Over longer spans addresses
/// rotate (a BLE address lives about 15 minutes) and people come and go, so devices over an
/// hour are not people over an hour; a span's people are the mean of its minutes ([`mean`]).
pub fn estimate(zone: &Zone, floors: &Floors, devices: &BTreeMap<Kind, Count>) -> Option<Count> {
    people(
        zone,
        |kind| devices.get(&kind).copied(),
        |kind, c| floor_of(zone, floors, kind, c).0,
    )
}

/// The people of `devices` with every kind's floor replaced by `floor`: for devices that are
/// all moving (arrivals at a gate), among which no static device is.
pub fn estimate_above(zone: &Zone, devices: &BTreeMap<Kind, Count>, floor: f64) -> Option<Count> {
    people(zone, |kind| devices.get(&kind).copied(), |_, _| floor)
}

/// The people of one minute whose devices of each kind `devices` gives.
fn people(
    zone: &Zone,
    devices: impl Fn(Kind) -> Option<Count>,
    floor: impl Fn(Kind, &Calibration) -> f64,
) -> Option<Count> {
    (!zone.calibration.is_empty()).then(|| {
        zone.calibration.iter().fold(Count::ZERO, |sum, (kind, c)| {
            let d = devices(*kind).unwrap_or(Count::ZERO);
            sum.plus(people_of(d, c.factor, floor(*kind, c), error_of(c)))
        })
    })
}

/// How the zone's people are made; `None` without calibration.
pub fn basis(zone: &Zone, floors: &Floors) -> Option<PeopleBasis> {
    (!zone.calibration.is_empty()).then(|| PeopleBasis {
        calibrated: zone.calibration.values().all(Calibration::is_fitted),
        error: zone.calibration.values().map(error_of).fold(0.0, f64::max),
        error_is_floor: zone.calibration.values().any(|c| {
            c.is_fitted()
                && c.observations
                    .is_some_and(|n| crate::calibration::fit::is_floor(n as usize))
        }),
        kinds: zone
            .calibration
            .iter()
            .map(|(kind, c)| {
                let (floor, floor_source) = floor_of(zone, floors, *kind, c);
                let basis = KindBasis {
                    factor: c.factor,
                    floor,
                    floor_source,
                    observations: c.observations,
                };
                (kind.as_str().to_owned(), basis)
            })
            .collect(),
    })
}

/// People present on average over several minutes: the mean of their estimates and of their
/// bounds (the calibration's error is the same in every minute, so it does not average out).
pub fn mean(minutes: &[Count]) -> Option<Count> {
    let n = minutes.len() as f64;
    (!minutes.is_empty()).then(|| {
        let sum = minutes.iter().fold(Count::ZERO, |s, c| s.plus(*c));
        Count {
            estimate: sum.estimate / n,
            lower: sum.lower / n,
            upper: sum.upper / n,
            upper_bound: sum.upper_bound,
        }
    })
}

/// People of each stored minute of `zone` in `[from, to)`, in time order, from the stored
/// minute numbers of its calibrated kinds; empty without calibration.
pub async fn per_minute(
    store: &impl Store,
    zone: &Zone,
    floors: &Floors,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<(Timestamp, Count)>, StoreError> {
    let mut numbers: Vec<(Timestamp, Kind, Count)> = Vec::new();
    for kind in zone.calibration.keys() {
        let stored = store
            .zone_numbers(BucketQuery {
                zone: &zone.id,
                kind: *kind,
                resolution: Resolution::Minute,
                from,
                to,
            })
            .await?;
        numbers.extend(
            stored
                .into_iter()
                .map(|n| (n.bucket, *kind, Count::from_estimate(n.devices))),
        );
    }
    // Minute by minute without a map per minute (a day is 1,440 of them): a stable sort
    // keeps each kind's salts in the store's order.
    numbers.sort_by_key(|(t, kind, _)| (*t, *kind));
    let floor = floors_by_kind(zone, floors);
    Ok(numbers
        .chunk_by(|a, b| a.0 == b.0)
        .filter_map(|minute| {
            let devices = |kind: Kind| {
                minute
                    .iter()
                    .filter(|(_, k, _)| *k == kind)
                    .map(|(_, _, c)| *c)
                    .reduce(Count::and_other_salt)
            };
            people(zone, devices, |kind, _| floor_at(&floor, kind)).map(|p| (minute[0].0, p))
        })
        .collect())
}

/// Each calibrated kind's floor, looked up once for many minutes (a learned one is behind a
/// lock).
fn floors_by_kind(zone: &Zone, floors: &Floors) -> BTreeMap<Kind, f64> {
    zone.calibration
        .iter()
        .map(|(kind, c)| (*kind, floor_of(zone, floors, *kind, c).0))
        .collect()
}

fn floor_at(floors: &BTreeMap<Kind, f64>, kind: Kind) -> f64 {
    floors.get(&kind).copied().unwrap_or(0.0)
}

/// People of each minute of `devices` (a zone's minute numbers by kind, salts summed) that
/// holds a calibrated kind: what [`per_minute`] makes of the numbers it reads, for a caller
/// that has read them already.
pub fn of_minutes(
    zone: &Zone,
    floors: &Floors,
    devices: &BTreeMap<Timestamp, BTreeMap<Kind, Count>>,
) -> BTreeMap<Timestamp, Count> {
    let floor = floors_by_kind(zone, floors);
    devices
        .iter()
        .filter(|(_, d)| d.keys().any(|k| zone.calibration.contains_key(k)))
        .filter_map(|(t, d)| {
            people(
                zone,
                |kind| d.get(&kind).copied(),
                |kind, _| floor_at(&floor, kind),
            )
            .map(|p| (*t, p))
        })
        .collect()
}

fn error_of(c: &Calibration) -> f64 {
    match c.error {
        Some(e) if c.is_fitted() => e,
        e => e.unwrap_or(0.0).max(UNCALIBRATED_ERROR),
    }
}

fn floor_of(zone: &Zone, floors: &Floors, kind: Kind, c: &Calibration) -> (f64, FloorSource) {
    match c.floor {
        Floor::Devices(d) => (d, FloorSource::Configured),
        Floor::Learned => floors
            .get(&zone.id, kind)
            .map_or((0.0, FloorSource::Learning), |f| {
                (f.devices, FloorSource::Learned)
            }),
    }
}

/// `sqrt(a^2 + b^2)`: independent errors added. Not `f64::hypot`, which guards against
/// overflow at several times the cost: persons and devices are far from it, and a day's
/// people are 1,440 minutes of three of these (#19).
fn quadrature(a: f64, b: f64) -> f64 {
    (a * a + b * b).sqrt()
}

/// The normal quantile of a two-sided 95 % interval.
const Z95: f64 = 1.96;

/// `factor x (devices - floor)`, its interval three independent errors added in quadrature:
/// the sketch's, the calibration's relative error `error` (of at least
/// [`ERROR_SCALE_MIN_PERSONS`]), and the minute's counting noise ([`counting_noise`]).
pub fn people_of(devices: Count, factor: f64, floor: f64, error: f64) -> Count {
    let above = |d: f64| factor * (d - floor).max(0.0);
    let p = above(devices.estimate);
    let calibration = error * p.max(ERROR_SCALE_MIN_PERSONS);
    let spread = quadrature(calibration, counting_noise(p, factor));
    let down = quadrature(p - above(devices.lower), spread);
    let up = quadrature(above(devices.upper) - p, spread);
    Count {
        estimate: p,
        lower: (p - down).max(0.0),
        upper: p + up,
        upper_bound: devices.upper_bound,
    }
}

/// The 95 % half-width, in persons, of who happens to be heard in one minute around
/// `people` estimated with `factor` persons per device.
///
/// Whether a person's phone advertises or probes within a given minute is close to a coin
/// toss per person, so the devices of `n` persons vary from minute to minute as a Poisson
/// count does: a count of `d` devices stands for `factor x d` persons give or take
/// `factor x sqrt(d)`, that is `sqrt(factor x people)`. With several devices per person
/// (a factor below 1) the devices come in clusters, and the spread is that of the persons
/// heard, `sqrt(people)`. The calibration's error does not hold this term: `calibrate` fits
/// on counts over several minutes, where it averages out, and in a small zone the minute
/// then strays from its count far more than the fit's error (a demo trial: a zone of about 60
/// persons, calibrated at +-8 %, held its truth in a third of the minutes).
pub fn counting_noise(people: f64, factor: f64) -> f64 {
    Z95 * (factor.max(1.0) * people.max(0.0)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{accepted, batch, ts, zone};
    use crate::store::{Accepted, SqliteStore};
    use crowdflow_contract::sketch::Precision;

    /// Minute by minute, `per_minute` gives what `estimate` gives for the minute's devices
    /// of each calibrated kind, a rotation's two salts summed; uncalibrated kinds and
    /// minutes of them alone give nothing.
    #[tokio::test]
    async fn stored_minutes_become_people_minute_by_minute() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqliteStore::open(&dir.path().join("p.db"), Precision::DEFAULT).expect("db");
        let at = |m: u32| ts(&format!("2026-04-27T10:{m:02}:00Z"));
        let of = |kind: Kind, m: u32, devices: std::ops::Range<u64>, salt: &str| Accepted {
            kind,
            salt_fp: salt.parse().expect("fp"),
            ..accepted("s1", at(m), devices)
        };
        let (a, b) = ("00000000000000aa", "00000000000000bb");
        store
            .merge_batch(batch(vec![
                of(Kind::WifiRandom, 0, 0..100, a),
                of(Kind::Ble, 0, 0..40, a),
                of(Kind::WifiRandom, 1, 0..50, a),
                of(Kind::WifiRandom, 1, 0..30, b),
                of(Kind::Ble, 2, 0..20, b),
                of(Kind::Wifi, 3, 0..500, a),
            ]))
            .await
            .expect("ingest");
        let mut z = Zone {
            id: zone("neude"),
            name: "Neude".into(),
            area_m2: 100.0,
            capacity: None,
            occupancy_window_min: 5,
            thresholds: Vec::new(),
            calibration: BTreeMap::new(),
            polygon: None,
            gate: None,
        };
        for (kind, factor) in [(Kind::WifiRandom, 0.5), (Kind::Ble, 0.25)] {
            z.calibration.insert(
                kind,
                Calibration {
                    factor,
                    floor: Floor::Devices(3.0),
                    error: Some(0.2),
                    observations: Some(10),
                },
            );
        }
        let floors = Floors::default();
        let got = per_minute(&store, &z, &floors, at(0), at(10))
            .await
            .expect("people");
        let numbers = async |kind: Kind| {
            store
                .zone_numbers(BucketQuery {
                    zone: &z.id,
                    kind,
                    resolution: Resolution::Minute,
                    from: at(0),
                    to: at(10),
                })
                .await
                .expect("numbers")
        };
        let mut want_devices: BTreeMap<Timestamp, BTreeMap<Kind, Count>> = BTreeMap::new();
        for kind in [Kind::WifiRandom, Kind::Ble] {
            for n in numbers(kind).await {
                let c = Count::from_estimate(n.devices);
                want_devices
                    .entry(n.bucket)
                    .or_default()
                    .entry(kind)
                    .and_modify(|sum| *sum = sum.and_other_salt(c))
                    .or_insert(c);
            }
        }
        let want: Vec<(Timestamp, Count)> = want_devices
            .iter()
            .filter_map(|(t, d)| estimate(&z, &floors, d).map(|p| (*t, p)))
            .collect();
        assert_eq!(
            got.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![at(0), at(1), at(2)]
        );
        assert_eq!(got, want);
        assert!(got[1].1.upper_bound, "two salts: an upper bound");
        assert!((got[0].1.estimate - (0.5 * 97.0 + 0.25 * 37.0)).abs() < 2.0);
    }

    fn devices(estimate: f64, lower: f64, upper: f64) -> Count {
        Count {
            estimate,
            lower,
            upper,
            upper_bound: false,
        }
    }

    #[test]
    fn the_floor_is_subtracted_before_the_factor_and_never_below_zero() {
        let p = people_of(devices(114.0, 110.0, 118.0), 0.5, 14.0, 0.2);
        assert_eq!(p.estimate, 50.0);
        let p = people_of(devices(10.0, 9.0, 11.0), 0.5, 14.0, 0.2);
        assert_eq!((p.estimate, p.lower), (0.0, 0.0));
        assert_eq!(p.upper, 1.0, "nobody heard is not certainly nobody there");
    }

    #[test]
    fn the_interval_combines_sketch_calibration_and_counting_errors() {
        // Exact sketch: calibration +-30 and counting 1.96 sqrt(100) = +-19.6.
        let p = people_of(devices(100.0, 100.0, 100.0), 1.0, 0.0, 0.3);
        let half = 30.0_f64.hypot(19.6);
        assert!((p.lower - (100.0 - half)).abs() < 1e-9, "{p:?}");
        assert!((p.upper - (100.0 + half)).abs() < 1e-9, "{p:?}");
        // Sketch +-8 people, calibration +-6 and counting 1.96 sqrt(50) (a factor below 1:
        // two devices a person, the persons' spread).
        let p = people_of(devices(100.0, 84.0, 116.0), 0.5, 0.0, 0.12);
        let half = 8.0_f64.hypot(6.0).hypot(1.96 * 50.0_f64.sqrt());
        assert!((p.estimate - 50.0).abs() < 1e-9);
        assert!((p.lower - (50.0 - half)).abs() < 1e-9, "{p:?}");
        assert!((p.upper - (50.0 + half)).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn counting_noise_weighs_on_small_zones() {
        // A factor of 1.3 (persons per device): +-2.2 sqrt(people).
        let relative = |people: f64| counting_noise(people, 1.3) / people;
        assert!(relative(60.0) > 0.25, "{}", relative(60.0));
        assert!(relative(5000.0) < 0.035, "{}", relative(5000.0));
        assert_eq!(counting_noise(0.0, 1.3), 0.0);
    }

    #[test]
    fn a_span_is_the_mean_of_its_minutes() {
        let m = mean(&[devices(10.0, 8.0, 12.0), devices(20.0, 16.0, 26.0)]).expect("minutes");
        assert_eq!((m.estimate, m.lower, m.upper), (15.0, 12.0, 19.0));
        assert_eq!(mean(&[]), None);
    }

    /// A 100 m2 zone calibrated on one kind.
    fn square(kind: Kind, calibration: Calibration) -> Zone {
        Zone {
            id: ZoneId::new("square").expect("id"),
            name: "Square".into(),
            area_m2: 100.0,
            capacity: None,
            occupancy_window_min: 5,
            thresholds: vec![2.0],
            calibration: [(kind, calibration)].into(),
            polygon: None,
            gate: None,
        }
    }

    #[test]
    fn a_guessed_factor_is_uncalibrated_and_never_zero_width() {
        let zone = square(
            Kind::Ble,
            Calibration {
                factor: 1.3,
                floor: Floor::Learned,
                error: None,
                observations: None,
            },
        );
        let d = [(Kind::Ble, devices(1000.0, 1000.0, 1000.0))].into();
        let floors = Floors::default();
        let p = estimate(&zone, &floors, &d).expect("calibration");
        let basis = basis(&zone, &floors).expect("calibration");
        assert!(!basis.calibrated);
        assert_eq!(basis.error, UNCALIBRATED_ERROR);
        assert_eq!(basis.kinds["ble"].floor_source, FloorSource::Learning);
        assert!((p.estimate - 1300.0).abs() < 1e-9);
        assert!(p.lower <= 650.0 + 1e-9 && p.upper >= 1950.0 - 1e-9);
        assert!(!basis.error_is_floor, "a guess says uncalibrated instead");
    }

    #[test]
    fn a_fit_on_fewer_than_19_counts_has_an_error_floor() {
        let zone_fitted_on = |n: u32| {
            square(
                Kind::Wifi,
                Calibration {
                    factor: 0.8,
                    floor: Floor::Devices(0.0),
                    error: Some(0.01),
                    observations: Some(n),
                },
            )
        };
        let floors = Floors::default();
        let few = basis(&zone_fitted_on(18), &floors).expect("calibration");
        assert!(few.calibrated && few.error_is_floor);
        let enough = basis(&zone_fitted_on(19), &floors).expect("calibration");
        assert!(enough.calibrated && !enough.error_is_floor);
    }
}
