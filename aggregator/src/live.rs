//! The live board: every zone's current occupancy, density, level of service, trend and
//! staleness (design §6), re-evaluated every two seconds from storage, with alerts raised
//! when a zone crosses a threshold or goes stale, pushed to the live stream.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crowdflow_contract::identity::Kind;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};

use crate::config::{AggregatorConfig, Zone};
use crate::metrics::Metrics;
use crate::query::{self, Count, count, per_salt};
use crate::store::{Alert, BucketQuery, Resolution, Store, StoreError, ZoneSketch};
use crate::zone::ZoneId;

/// How often the board is re-evaluated without news (staleness, trends, other replicas'
/// commits).
pub const EVALUATE_EVERY: Duration = Duration::from_secs(2);
/// After a commit, how long the board waits for the other sensors' windows of the same
/// moment before it evaluates: one evaluation for all of them.
pub const GATHER: Duration = Duration::from_millis(250);
/// Minutes over which the trend is measured.
pub const TREND_MIN: i64 = 15;

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

/// How occupancy changed over the last [`TREND_MIN`] minutes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trend {
    /// Minutes compared.
    pub minutes: i64,
    /// Change of estimated people (devices when the zone is not calibrated).
    pub change: f64,
    /// "rising", "falling" or "steady".
    pub direction: String,
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
    /// Distinct devices in the window, by kind ("wifi", "wifi_random", "ble").
    pub devices: BTreeMap<String, Count>,
    /// Devices of all kinds (a device has one kind, so kinds add up).
    pub total_devices: Count,
    /// Estimated people: devices x the zone's calibration factor per kind. An estimate;
    /// null when the zone has no calibration.
    pub people: Option<Count>,
    /// People per m2 (null without calibration).
    pub density: Option<Count>,
    /// Level of service from the density estimate (null without calibration).
    pub level: Option<Level>,
    /// People / capacity (null without capacity or calibration).
    pub capacity_used: Option<f64>,
    /// Change over the last 15 minutes.
    pub trend: Option<Trend>,
    /// Every sensor of the zone has been silent for more than two windows.
    pub stale: bool,
    /// End of the newest window any of its sensors sent.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_data: Option<Timestamp>,
    /// When these numbers were computed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// What the live stream carries.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LiveEvent {
    /// A zone's numbers changed.
    Zone(Box<ZoneLive>),
    /// An alert was raised.
    Alert(Alert),
}

/// How long a sensor may be silent before it counts as stale: two windows, plus the time a
/// window takes to close and travel.
pub fn silence_limit(config: &AggregatorConfig) -> SignedDuration {
    SignedDuration::from_secs(2 * i64::from(config.window.seconds()) + 15)
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

fn floor_minute(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second().div_euclid(60) * 60).unwrap_or(t)
}

/// Devices per kind in the occupancy window ending at `now`: the last `window_min` complete
/// minutes and the current one.
fn occupancy(
    sketches: &BTreeMap<Kind, Vec<ZoneSketch>>,
    window_min: u32,
    now: Timestamp,
    p: crowdflow_contract::sketch::Precision,
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

/// Evaluates one zone at `now` from its recent minute sketches and its sensors' last data.
pub async fn evaluate_zone(
    store: &impl Store,
    config: &AggregatorConfig,
    zone: &Zone,
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
    let devices = occupancy(&sketches, w, now, config.precision);
    let before = occupancy(
        &sketches,
        w,
        now - SignedDuration::from_mins(TREND_MIN),
        config.precision,
    );
    let total_devices = query::total(&devices);
    let people = query::people(&zone.calibration, &devices);
    let density = people.map(|p| p.times(1.0 / zone.area_m2));
    let headline = |d: &BTreeMap<Kind, Count>| {
        query::people(&zone.calibration, d).unwrap_or_else(|| query::total(d))
    };
    let (now_n, then_n): (f64, f64) = (headline(&devices).estimate, headline(&before).estimate);
    let change = now_n - then_n;
    let direction = if change.abs() <= (0.05 * now_n.max(then_n)).max(1.0) {
        "steady"
    } else if change > 0.0 {
        "rising"
    } else {
        "falling"
    };
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
        density,
        level: density.map(|d| level(&zone.thresholds, d.estimate)),
        capacity_used: zone
            .capacity
            .filter(|c| *c > 0)
            .zip(people)
            .map(|(c, p)| p.estimate / c as f64),
        trend: Some(Trend {
            minutes: TREND_MIN,
            change,
            direction: direction.into(),
        }),
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
    now: Timestamp,
) -> Result<Vec<ZoneLive>, StoreError> {
    let last = zones_last_data(store, config).await?;
    let mut out = Vec::with_capacity(config.zones.len());
    for zone in config.zones.values() {
        out.push(evaluate_zone(store, config, zone, last.get(&zone.id).copied(), now).await?);
    }
    Ok(out)
}

/// Alerts for the change from `before` to `after` of one zone.
pub fn alerts_between(before: Option<&ZoneLive>, after: &ZoneLive, zone: &Zone) -> Vec<Alert> {
    let mut out = Vec::new();
    let zone_id = zone.id.clone();
    let at = floor_minute(after.updated_at);
    let was_level = before.and_then(|b| b.level.as_ref()).map_or(0, |l| l.index);
    if let (Some(level), Some(density)) = (&after.level, after.density)
        && level.index > was_level
    {
        out.push(Alert {
            id: 0,
            at,
            zone: zone_id.clone(),
            kind: "level".into(),
            level: Some(level.index),
            threshold: level.from_density,
            value: Some(density.estimate),
            message: format!(
                "{} is {}: {:.2} persons/m2 (threshold {:.2})",
                zone.name,
                level.name,
                density.estimate,
                level.from_density.unwrap_or(0.0)
            ),
        });
    }
    // Staleness alerts are about sensors that reported and went silent (and came back): a
    // zone that never reported is shown stale but raises nothing.
    let had_data = before.is_some_and(|b| b.last_data.is_some());
    let was_stale = before.is_some_and(|b| b.stale);
    if had_data && after.stale != was_stale {
        let (kind, message) = if after.stale {
            (
                "stale",
                format!(
                    "{}: all sensors silent for more than two windows",
                    zone.name
                ),
            )
        } else {
            ("recovered", format!("{}: sensors report again", zone.name))
        };
        out.push(Alert {
            id: 0,
            at,
            zone: zone_id,
            kind: kind.into(),
            level: None,
            threshold: None,
            value: None,
            message,
        });
    }
    out
}

#[derive(Debug, Default)]
struct Board {
    zones: Vec<ZoneLive>,
}

/// The shared live board: the latest evaluation and the stream of changes.
#[derive(Debug, Clone)]
pub struct LiveBoard {
    board: Arc<RwLock<Board>>,
    events: broadcast::Sender<LiveEvent>,
    /// Raised when new data was committed.
    news: Arc<Notify>,
}

impl Default for LiveBoard {
    fn default() -> Self {
        LiveBoard {
            board: Arc::default(),
            events: broadcast::channel(1024).0,
            news: Arc::default(),
        }
    }
}

impl LiveBoard {
    /// The latest evaluation of every zone.
    pub fn zones(&self) -> Vec<ZoneLive> {
        self.board
            .read()
            .map(|b| b.zones.clone())
            .unwrap_or_default()
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// Installs a new evaluation, raising and storing alerts; pushes what changed.
    pub async fn update(
        &self,
        store: &impl Store,
        config: &AggregatorConfig,
        metrics: &Metrics,
        zones: Vec<ZoneLive>,
    ) {
        let before = self.zones();
        for z in &zones {
            let old = before.iter().find(|b| b.id == z.id);
            if let Some(zone) = config.zones.values().find(|c| c.id.as_str() == z.id) {
                for alert in alerts_between(old, z, zone) {
                    match store.record_alert(alert.clone()).await {
                        Ok(true) => {
                            tracing::warn!(zone = %alert.zone, kind = %alert.kind, "alert: {}", alert.message);
                            let _ = self.events.send(LiveEvent::Alert(alert));
                        }
                        Ok(false) => {}
                        Err(e) => tracing::error!("cannot store an alert: {e}"),
                    }
                }
            }
            metrics.observe_zone(z);
            let changed = old.is_none_or(|o| {
                let mut o = o.clone();
                o.updated_at = z.updated_at;
                o != *z
            });
            if changed {
                let _ = self.events.send(LiveEvent::Zone(Box::new(z.clone())));
            }
        }
        if let Ok(mut b) = self.board.write() {
            b.zones = zones;
        }
    }

    /// Says that sketches were committed: the board is re-evaluated shortly, not at its next
    /// tick, so a window's numbers reach the screens about [`GATHER`] after they are stored.
    pub fn news(&self) {
        self.news.notify_one();
    }

    /// Re-evaluates after [`LiveBoard::news`] and every [`EVALUATE_EVERY`] until the task is
    /// dropped.
    pub async fn run(self, store: impl Store, config: Arc<AggregatorConfig>, metrics: Metrics) {
        let mut tick = tokio::time::interval(EVALUATE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.news.notified() => {
                    tokio::time::sleep(GATHER).await;
                    tick.reset();
                }
            }
            match evaluate(&store, &config, Timestamp::now()).await {
                Ok(zones) => self.update(&store, &config, &metrics, zones).await,
                Err(e) => tracing::error!("live evaluation failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn zone_live(stale: bool, last_data: Option<&str>, density: Option<f64>) -> ZoneLive {
        ZoneLive {
            id: "neude".into(),
            name: "Neude".into(),
            area_m2: 100.0,
            capacity: None,
            window_min: 5,
            devices: BTreeMap::new(),
            total_devices: Count::ZERO,
            people: None,
            density: density.map(|d| Count {
                estimate: d,
                lower: d,
                upper: d,
                upper_bound: false,
            }),
            level: density.map(|d| level(&[2.0, 3.5, 5.0], d)),
            capacity_used: None,
            trend: None,
            stale,
            last_data: last_data.map(|t| t.parse().expect("ts")),
            updated_at: "2026-04-27T10:00:30Z".parse().expect("ts"),
        }
    }

    #[test]
    fn alerts_follow_transitions_only() {
        let zone = Zone {
            id: ZoneId::new("neude").expect("id"),
            name: "Neude".into(),
            area_m2: 100.0,
            capacity: None,
            occupancy_window_min: 5,
            thresholds: vec![2.0, 3.5, 5.0],
            calibration: BTreeMap::new(),
            polygon: None,
        };
        let never = zone_live(true, None, None);
        assert!(
            alerts_between(None, &never, &zone).is_empty(),
            "never reported: no alert"
        );
        let live = zone_live(false, Some("2026-04-27T10:00:00Z"), Some(1.0));
        assert!(
            alerts_between(Some(&never), &live, &zone).is_empty(),
            "first data is no recovery"
        );
        let silent = zone_live(true, Some("2026-04-27T10:00:00Z"), Some(1.0));
        let a = alerts_between(Some(&live), &silent, &zone);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, "stale");
        assert_eq!(
            alerts_between(Some(&silent), &live, &zone)[0].kind,
            "recovered"
        );
        let crowded = zone_live(false, Some("2026-04-27T10:00:00Z"), Some(4.0));
        let a = alerts_between(Some(&live), &crowded, &zone);
        assert_eq!(
            (a[0].kind.as_str(), a[0].level, a[0].threshold),
            ("level", Some(2), Some(3.5))
        );
        assert!(
            alerts_between(Some(&crowded), &crowded, &zone).is_empty(),
            "no repeat"
        );
        assert_eq!(
            a[0].at.to_string(),
            "2026-04-27T10:00:00Z",
            "raised for its minute"
        );
    }
}
