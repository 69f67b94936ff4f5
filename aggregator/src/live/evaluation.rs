//! Evaluating a zone's live numbers (design §6): occupancy over the zone's window, people by
//! calibration, density, level of service, trend and staleness. Reads storage, raises
//! nothing: alerts are [`super::alerts`]' job.

use std::collections::BTreeMap;

use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::flow::{self, ZoneFlow};
use crate::config::{AggregatorConfig, Zone};
use crate::forecast::{self, Forecast};
use crate::metrics::ZoneGauges;
use crate::people::{self, Floors, PeopleBasis};
use crate::query::{
    self, Count, Overlap, PerSalt, count, difference, floor_minute, occupancy, per_salt,
};
use crate::store::{BucketQuery, Resolution, Store, StoreError, ZoneSketch};
use crate::zone::ZoneId;

/// Minutes over which the trend is measured.
pub const TREND_MIN: i64 = 15;
/// A change counts as a trend beyond this share of the larger of the two numbers (and
/// beyond one person or device).
const STEADY_SHARE: f64 = 0.05;

/// A zone's level of service.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Level {
    /// 0 (free) up to the number of thresholds.
    pub index: u8,
    /// "free", "busy", "crowded", "critical" (with the default three thresholds).
    pub name: String,
    /// The density (persons per m2) at which this level starts; none for level 0.
    pub from_density: Option<f64>,
}

/// Which way occupancy went; serialized lower-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrendDirection {
    /// Up by more than the steady band.
    Rising,
    /// Down by more than the steady band.
    Falling,
    /// Within 5 % (and one person or device) of where it was.
    Steady,
}

/// How occupancy changed over the last [`TREND_MIN`] minutes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trend {
    /// Minutes compared.
    pub minutes: i64,
    /// Change of estimated people (devices when the zone is not calibrated).
    pub change: f64,
    /// "rising", "falling" or "steady".
    pub direction: TrendDirection,
}

impl Trend {
    /// The trend from `then` to `now` (people, or devices without calibration) over
    /// [`TREND_MIN`] minutes.
    pub fn between(then: f64, now: f64) -> Trend {
        let change = now - then;
        let direction = if change.abs() <= (STEADY_SHARE * now.max(then)).max(1.0) {
            TrendDirection::Steady
        } else if change > 0.0 {
            TrendDirection::Rising
        } else {
            TrendDirection::Falling
        };
        Trend {
            minutes: TREND_MIN,
            change,
            direction,
        }
    }
}

/// A passage's throughput: people through per metre of width per minute.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GateFlow {
    /// Clear width in metres.
    pub width_m: f64,
    /// Persons per metre per minute entering in the last complete minute (the inflow in
    /// people, over the width), with the interval of sketch and calibration error.
    pub throughput: Count,
    /// 0 below the first threshold, then 1 (amber), 2 (red), ...
    pub level: u8,
    /// "free-flowing", "amber", "red" (with the default two thresholds).
    pub level_name: String,
    /// Density rising while throughput falls (by a fifth against five minutes before): the
    /// sign of stop-and-go waves that precede crowd turbulence (Helbing, Johansson &
    /// Al-Abideen 2007, "Dynamics of crowd disasters", Phys. Rev. E 75).
    pub stop_and_go: bool,
    /// Fewer than [`flow::MIN_SAMPLE`] devices passed in the minute: a count that small
    /// varies by half from minute to minute, so the figure and its level are not to be
    /// read as precise.
    pub unreliable: bool,
}

/// One zone as the live view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ZoneLive {
    /// Zone id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Area in m2.
    pub area_m2: f64,
    /// Capacity in persons, if configured.
    pub capacity: Option<u64>,
    /// Minutes of the occupancy window.
    pub window_min: u32,
    /// Distinct addresses in the window, by kind: "wifi" (global addresses), "wifi_random"
    /// (randomized addresses), "ble", and "wifi_derandomized" (physical Wi-Fi devices: another view
    /// of the Wi-Fi frames, never added to the other two; a dense crowd read through its scans, a
    /// passage of a few of each phone model a lower bound: docs/counting-devices.md). Kinds no sensor of the zone sent lately are left out.
    pub devices: BTreeMap<String, Count>,
    /// Distinct addresses of the address kinds (wifi, wifi_random, ble; an address has one kind,
    /// so they add up). Not physical devices: a phone randomizing its address is many of them.
    pub total_devices: Count,
    /// Estimated people: factor x (devices - floor) per calibrated kind, the interval
    /// combining the sketch's error with the calibration's. Null when the zone has no
    /// calibration.
    pub people: Option<Count>,
    /// How `people` was made: calibrated or a guess, the error, factor and floor per kind.
    pub people_basis: Option<PeopleBasis>,
    /// People per m2 (null without calibration).
    pub density: Option<Count>,
    /// Level of service from the density estimate (null without calibration).
    pub level: Option<Level>,
    /// People / capacity (null without capacity or calibration).
    pub capacity_used: Option<f64>,
    /// Change over the last 15 minutes.
    pub trend: Option<Trend>,
    /// Inflow and outflow of the last complete minute, net flow and time to capacity.
    pub flow: Option<ZoneFlow>,
    /// Throughput of a passage (zones with `gate_width_m`; null elsewhere or without
    /// calibration).
    pub gate: Option<GateFlow>,
    /// People present 15 minutes after the last settled minute, with a 95 % interval
    /// ([`crate::forecast`]); null without calibration or with under 40 stored minutes.
    pub forecast: Option<Forecast>,
    /// Every sensor of the zone has been silent for more than two windows.
    pub stale: bool,
    /// End of the newest window any of its sensors sent.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_data: Option<Timestamp>,
    /// When these numbers were computed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl ZoneLive {
    /// The zone's numbers as metric gauges.
    pub fn gauges(&self) -> ZoneGauges<'_> {
        ZoneGauges {
            zone: &self.id,
            devices: self
                .devices
                .iter()
                .map(|(kind, c)| (kind.as_str(), c.estimate))
                .collect(),
            people: self.people.map(|p| p.estimate),
            density: self.density.map(|d| d.estimate),
            level: self.level.as_ref().map(|l| l.index),
            stale: self.stale,
        }
    }
}

/// The time a window takes to close at its sensor and travel to the store.
pub const WINDOW_TRAVEL: SignedDuration = SignedDuration::from_secs(15);

/// How long a sensor may be silent before it counts as stale: two windows, plus the time a
/// window takes to close and travel.
pub fn silence_limit(config: &AggregatorConfig) -> SignedDuration {
    SignedDuration::from_secs(2 * i64::from(config.window.seconds())) + WINDOW_TRAVEL
}

/// The last minute whose windows have arrived at `now`: a minute just ended is read only
/// after [`WINDOW_TRAVEL`], so its figures are not shown from part of its windows and
/// recomputed seconds later (a gate's throughput dropped out at each minute's turn).
fn settled_minute(now: Timestamp) -> Timestamp {
    floor_minute(now - WINDOW_TRAVEL) - SignedDuration::from_mins(1)
}

/// The end of the settled minutes at `now`, for a zone whose newest window ended at
/// `last_data`: a minute's people are read once its windows have arrived, that is once the
/// zone's sensors have sent a window that ends at or after the minute's end (sensors' windows
/// are aligned to UTC and sent together), or [`WINDOW_TRAVEL`] after its end at the latest.
/// Read from part of its windows, a just-ended minute showed too few people: a zone with a
/// one-minute occupancy window read low, or 0 when none had arrived, for the first seconds of
/// every minute.
pub fn settled_end(now: Timestamp, last_data: Option<Timestamp>) -> Timestamp {
    let current = floor_minute(now);
    if last_data.is_some_and(|t| t >= current) {
        current
    } else {
        floor_minute(now - WINDOW_TRAVEL)
    }
}

/// The level-of-service names for `thresholds`.
pub(crate) fn level_name(index: usize, levels: usize) -> String {
    const NAMES: [&str; 4] = ["free", "busy", "crowded", "critical"];
    if levels == NAMES.len() {
        NAMES[index].to_owned()
    } else {
        format!("level {index}")
    }
}

/// The level of a density.
pub fn level(thresholds: &[f64], density: f64) -> Level {
    let index = thresholds.iter().take_while(|t| density >= **t).count();
    Level {
        index: u8::try_from(index).unwrap_or(u8::MAX),
        name: level_name(index, thresholds.len() + 1),
        from_density: index.checked_sub(1).map(|i| thresholds[i]),
    }
}

/// People present in the zone: the mean people of the occupancy window's minutes before
/// `end` (see [`settled_end`]) that hold data. `None` without calibration.
fn present(
    zone: &Zone,
    floors: &Floors,
    sketches: &BTreeMap<Kind, Vec<ZoneSketch>>,
    end: Timestamp,
    p: Precision,
) -> Option<Count> {
    let window = i64::from(zone.occupancy_window_min);
    let minutes = minutes_people(zone, floors, sketches, end, window, p);
    window_mean(zone, &minutes, end)
}

/// People present: the mean of the occupancy window's minutes before `end` among `minutes`
/// (null without calibration).
fn window_mean(zone: &Zone, minutes: &[(Timestamp, Count)], end: Timestamp) -> Option<Count> {
    if zone.calibration.is_empty() {
        return None;
    }
    let since = end - SignedDuration::from_mins(zone.occupancy_window_min.into());
    let inside: Vec<Count> = minutes
        .iter()
        .filter(|(m, _)| *m >= since)
        .map(|(_, c)| *c)
        .collect();
    Some(people::mean(&inside).unwrap_or(Count::ZERO))
}

/// People of each of the `n` minutes before `end` that hold data, oldest first.
fn minutes_people(
    zone: &Zone,
    floors: &Floors,
    sketches: &BTreeMap<Kind, Vec<ZoneSketch>>,
    end: Timestamp,
    n: i64,
    p: Precision,
) -> Vec<(Timestamp, Count)> {
    (1..=n)
        .rev()
        .map(|back| end - SignedDuration::from_mins(back))
        .filter_map(|minute| {
            let heard: BTreeMap<Kind, Count> = zone
                .calibration
                .keys()
                .filter_map(|kind| {
                    let inside: Vec<_> = sketches
                        .get(kind)?
                        .iter()
                        .filter(|z| z.bucket == minute)
                        .collect();
                    (!inside.is_empty()).then(|| (*kind, count(&per_salt(inside, p))))
                })
                .collect();
            if heard.is_empty() {
                return None;
            }
            people::estimate(zone, floors, &heard).map(|c| (minute, c))
        })
        .collect()
}

/// People [`forecast::HORIZON_MIN`] minutes after the last settled minute, from the zone's
/// stored minutes of the [`forecast::HISTORY_MIN`] before; `error` is the calibration's.
async fn people_forecast(
    store: &impl Store,
    zone: &Zone,
    floors: &Floors,
    error: f64,
    end: Timestamp,
) -> Result<Option<Forecast>, StoreError> {
    if zone.calibration.is_empty() {
        return Ok(None);
    }
    let to = end;
    let from = to - SignedDuration::from_mins(forecast::HISTORY_MIN as i64);
    let minutes: Vec<f64> = people::per_minute(store, zone, floors, from, to)
        .await?
        .into_iter()
        .map(|(_, c)| c.estimate)
        .collect();
    Ok(forecast::ahead(&minutes, forecast::HORIZON_MIN).map(|f| with_calibration_error(f, error)))
}

/// The forecast's interval widened by the calibration's relative `error` (in quadrature):
/// the series it extrapolates carries the factor's error, which its own residuals cannot
/// show (a guessed factor, +-50 %, is as uncertain 15 minutes ahead as now).
fn with_calibration_error(f: Forecast, error: f64) -> Forecast {
    let spread = error * f.estimate.max(0.0);
    let lower = f.estimate - (f.estimate - f.lower).hypot(spread);
    let upper = f.estimate + (f.upper - f.estimate).hypot(spread);
    Forecast {
        lower: lower.max(0.0),
        upper,
        ..f
    }
}

/// Devices of `kind` new to the zone in `minute` (not heard the minute before).
fn arrivals(all: &[ZoneSketch], minute: Timestamp, p: Precision) -> Option<Overlap> {
    let (then, now) = minute_pair(all, minute, p)?;
    Some(difference(&then, &now))
}

/// The per-salt unions of the minute before `minute` and of `minute`, when both hold data.
fn minute_pair(all: &[ZoneSketch], minute: Timestamp, p: Precision) -> Option<(PerSalt, PerSalt)> {
    let at = |m: Timestamp| per_salt(all.iter().filter(|z| z.bucket == m), p);
    let (then, now) = (at(minute - SignedDuration::from_mins(1)), at(minute));
    (!then.is_empty() && !now.is_empty()).then_some((then, now))
}

/// The throughput of a gate zone in its last complete minute.
fn gate_flow(
    zone: &Zone,
    sketches: &BTreeMap<Kind, Vec<ZoneSketch>>,
    now: Timestamp,
    p: Precision,
    trend: Option<&Trend>,
) -> Option<GateFlow> {
    let gate = zone.gate.as_ref()?;
    let minute = settled_minute(now);
    // Persons per metre, and the devices they stand on.
    let through = |m: Timestamp| -> Option<(Count, f64)> {
        let mut devices = BTreeMap::new();
        for kind in zone.calibration.keys() {
            let a = arrivals(sketches.get(kind)?, m, p)?;
            devices.insert(
                *kind,
                Count {
                    estimate: a.estimate,
                    lower: a.lower,
                    upper: a.upper,
                    upper_bound: a.crosses_epochs,
                },
            );
        }
        let heard: f64 = devices.values().map(|c| c.estimate).sum();
        // Arrivals are all moving: no static floor to take off.
        people::estimate_above(zone, &devices, 0.0).map(|c| (c.times(1.0 / gate.width_m), heard))
    };
    let (throughput, heard) = through(minute)?;
    let earlier = through(minute - SignedDuration::from_mins(5)).map(|(c, _)| c);
    let level = gate
        .thresholds
        .iter()
        .take_while(|t| throughput.estimate >= **t)
        .count();
    let unreliable = heard < flow::MIN_SAMPLE;
    // A fall of a fifth in a handful of devices is noise, not a sign.
    let stop_and_go = !unreliable
        && trend.is_some_and(|t| t.direction == TrendDirection::Rising)
        && earlier.is_some_and(|e| throughput.estimate < 0.8 * e.estimate);
    Some(GateFlow {
        width_m: gate.width_m,
        throughput,
        level: u8::try_from(level).unwrap_or(u8::MAX),
        level_name: gate_level_name(level, gate.thresholds.len()),
        stop_and_go,
        unreliable,
    })
}

fn gate_level_name(index: usize, thresholds: usize) -> String {
    match (thresholds, index) {
        (_, 0) => "free-flowing".into(),
        (2, 1) => "amber".into(),
        (2, 2) => "red".into(),
        _ => format!("level {index}"),
    }
}

/// Evaluates one zone at `now` from its recent minute sketches and its sensors' last data.
pub async fn evaluate_zone(
    store: &impl Store,
    config: &AggregatorConfig,
    zone: &Zone,
    floors: &Floors,
    last_data: Option<Timestamp>,
    now: Timestamp,
) -> Result<ZoneLive, StoreError> {
    let w = zone.occupancy_window_min;
    let from = floor_minute(now) - SignedDuration::from_mins(TREND_MIN + i64::from(w) + 1);
    let to = floor_minute(now) + SignedDuration::from_mins(1);
    let mut sketches = BTreeMap::new();
    for kind in Kind::ALL {
        let s = store
            .zone_sketches(BucketQuery {
                zone: &zone.id,
                kind,
                resolution: Resolution::Minute,
                from,
                to,
            })
            .await?;
        sketches.insert(kind, s);
    }
    let mut devices = occupancy(&sketches, w, now, config.precision);
    // Kinds no sensor of the zone sent in the last minutes are left out, not shown as 0: a
    // zone of sensors that publish no physical-device estimate (the demo's, older agents)
    // read "wifi_derandomized: 0" beside 1,500 people.
    devices.retain(|kind, _| sketches.get(kind).is_some_and(|s| !s.is_empty()));
    let before = occupancy(
        &sketches,
        w,
        now - SignedDuration::from_mins(TREND_MIN),
        config.precision,
    );
    let total_devices = query::total(&devices);
    // The recent minutes' people, read once: the window's mean and the net rate's fit.
    let end = settled_end(now, last_data);
    let recent = minutes_people(
        zone,
        floors,
        &sketches,
        end,
        i64::from(w).max(flow::NET_MIN),
        config.precision,
    );
    let people = window_mean(zone, &recent, end);
    let density = people.map(|p| p.times(1.0 / zone.area_m2));
    let headline = |at: Timestamp, d: &BTreeMap<Kind, Count>| {
        present(
            zone,
            floors,
            &sketches,
            settled_end(at, last_data),
            config.precision,
        )
        .unwrap_or_else(|| query::total(d))
    };
    // A trend needs data from its start: one minute after a zone's first data there is none.
    let since = floor_minute(now) - SignedDuration::from_mins(TREND_MIN);
    let trend = sketches
        .values()
        .flatten()
        .any(|z| z.bucket <= since)
        .then(|| {
            Trend::between(
                headline(now - SignedDuration::from_mins(TREND_MIN), &before).estimate,
                people.unwrap_or(total_devices).estimate,
            )
        });
    let flow = people.and_then(|people| {
        flow::zone_flow(
            zone,
            &sketches,
            settled_minute(now),
            people,
            &recent,
            config.precision,
        )
    });
    let people_basis = people::basis(zone, floors);
    let error = people_basis.as_ref().map_or(0.0, |b| b.error);
    let forecast = people_forecast(store, zone, floors, error, end).await?;
    let gate = gate_flow(zone, &sketches, now, config.precision, trend.as_ref());
    let grace = silence_limit(config);
    Ok(ZoneLive {
        id: zone.id.to_string(),
        name: zone.name.clone(),
        area_m2: zone.area_m2,
        capacity: zone.capacity,
        window_min: w,
        devices: query::by_name(&devices),
        total_devices,
        people,
        people_basis,
        density,
        level: density.map(|d| level(&zone.thresholds, d.estimate)),
        capacity_used: zone
            .capacity
            .filter(|c| *c > 0)
            .zip(people)
            .map(|(c, p)| p.estimate / c as f64),
        trend,
        flow,
        gate,
        forecast,
        stale: last_data.is_none_or(|t| t < now - grace),
        last_data,
        updated_at: now,
    })
}

/// The newest window end of each zone's sensors.
pub async fn zones_last_data(
    store: &impl Store,
    config: &AggregatorConfig,
) -> Result<BTreeMap<ZoneId, Timestamp>, StoreError> {
    let mut out: BTreeMap<ZoneId, Timestamp> = BTreeMap::new();
    for (sensor, end) in store.sensors_seen().await? {
        if let Some(s) = config.sensors.get(&sensor) {
            let e = out.entry(s.zone.clone()).or_insert(end);
            *e = (*e).max(end);
        }
    }
    Ok(out)
}

/// Evaluates every zone at `now`.
pub async fn evaluate(
    store: &impl Store,
    config: &AggregatorConfig,
    floors: &Floors,
    now: Timestamp,
) -> Result<Vec<ZoneLive>, StoreError> {
    floors
        .refresh_if_due(store, config.zones.values(), now)
        .await?;
    let last = zones_last_data(store, config).await?;
    let mut out = Vec::with_capacity(config.zones.len());
    for zone in config.zones.values() {
        out.push(
            evaluate_zone(
                store,
                config,
                zone,
                floors,
                last.get(&zone.id).copied(),
                now,
            )
            .await?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forecast_carries_the_calibrations_error() {
        let f = Forecast {
            minutes_ahead: 15,
            estimate: 3000.0,
            lower: 2800.0,
            upper: 3200.0,
        };
        let wide = with_calibration_error(f, 0.5);
        assert!(
            (wide.upper - (3000.0 + 200f64.hypot(1500.0))).abs() < 1e-9,
            "{wide:?}"
        );
        assert!(wide.lower >= 0.0 && wide.lower < 1500.0, "{wide:?}");
        assert_eq!(with_calibration_error(f, 0.0), f);
    }

    #[test]
    fn levels_follow_the_thresholds() {
        let t = [2.0, 3.5, 5.0];
        assert_eq!(level(&t, 0.4).name, "free");
        assert_eq!(level(&t, 2.0).name, "busy");
        assert_eq!(level(&t, 4.0).index, 2);
        let critical = level(&t, 7.0);
        assert_eq!((critical.index, critical.name.as_str()), (3, "critical"));
        assert_eq!(critical.from_density, Some(5.0));
        assert_eq!(level(&[1.0], 3.0).name, "level 1");
    }

    #[test]
    fn a_trend_is_steady_within_five_percent_or_one_and_serializes_lower_case() {
        let direction = |then, now| Trend::between(then, now).direction;
        assert_eq!(direction(100.0, 105.0), TrendDirection::Steady);
        assert_eq!(direction(100.0, 106.0), TrendDirection::Rising);
        assert_eq!(direction(106.0, 100.0), TrendDirection::Falling);
        assert_eq!(direction(3.0, 4.0), TrendDirection::Steady, "one device");
        assert_eq!(direction(3.0, 5.0), TrendDirection::Rising);
        let json = |d: TrendDirection| serde_json::to_string(&d).expect("serializes");
        assert_eq!(
            [
                TrendDirection::Rising,
                TrendDirection::Falling,
                TrendDirection::Steady
            ]
            .map(json),
            ["\"rising\"", "\"falling\"", "\"steady\""]
        );
    }
}
