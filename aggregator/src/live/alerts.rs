//! Alerts: raised when a zone's evaluation crosses a level-of-service threshold upwards
//! (once per crossing, with hysteresis before it clears) or goes stale (or recovers), and
//! stored once across replicas.

use std::collections::BTreeMap;

use crate::config::Zone;
use crate::store::{Alert, AlertKind, Store};

use super::evaluation::{ZoneLive, level_name};
use crate::query::floor_minute;
use jiff::{SignedDuration, Timestamp};

/// A raised level clears only once the density is this share below the level's threshold
/// (a deadband, as alarm management practice asks of every alarm: ANSI/ISA-18.2), so a
/// density hovering at a threshold raises one alert, not one a minute.
pub const CLEAR_MARGIN: f64 = 0.10;
/// ... and has stayed there for this many evaluations in a row (an off-delay: about 30 s at
/// the board's 2 s tick).
pub const CLEAR_AFTER: u32 = 15;
/// A gate's stop-and-go sign is raised at most once in this long: the sign is read from
/// minutes five apart and holds for several, and a crew told once steers the gate.
pub const STOP_AND_GO_QUIET: SignedDuration = SignedDuration::from_mins(15);

/// What a level asks of the crew, with the default three thresholds: advise (watch and
/// prepare), act (steer the crowd), critical (stop inflow). Other threshold counts name the
/// level only.
pub fn severity(index: u8, levels: usize) -> String {
    match (levels, index) {
        (4, 1) => "advise".into(),
        (4, 2) => "act".into(),
        (4, 3) => "critical".into(),
        _ => format!("level {index}"),
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Held {
    /// The level last raised (0: none).
    level: u8,
    /// Evaluations in a row below the clearing density.
    calm: u32,
}

/// The levels raised per zone: one alert per crossing upwards, one clear when the zone has
/// calmed below the raised level for [`CLEAR_AFTER`] evaluations.
#[derive(Debug, Default)]
pub struct RaisedLevels {
    held: BTreeMap<String, Held>,
    /// When each gate's stop-and-go sign was last raised.
    stop_and_go: BTreeMap<String, Timestamp>,
    /// Zones last announced silent (a `stale` alert not yet followed by `recovered`).
    silent: BTreeMap<String, bool>,
}

impl RaisedLevels {
    /// Takes up where stored alerts left off (a restart, another replica): the newest level
    /// or clear alert of each zone sets the level held, so a restart raises nothing anew.
    pub fn resume(&mut self, stored: &[Alert]) {
        for a in stored.iter().rev() {
            match a.kind {
                AlertKind::StopAndGo => {
                    self.stop_and_go.insert(a.zone.to_string(), a.at);
                }
                AlertKind::Stale => {
                    self.silent.insert(a.zone.to_string(), true);
                }
                AlertKind::Recovered => {
                    self.silent.insert(a.zone.to_string(), false);
                }
                _ => {}
            }
            if matches!(a.kind, AlertKind::Level | AlertKind::Clear) {
                self.held.insert(
                    a.zone.to_string(),
                    Held {
                        level: a.level.unwrap_or(0),
                        calm: 0,
                    },
                );
            }
        }
    }

    /// The level alert (raise or clear) `after` calls for, if any.
    pub fn step(&mut self, after: &ZoneLive, zone: &Zone) -> Option<Alert> {
        let (Some(level), Some(density)) = (&after.level, after.density) else {
            return None;
        };
        if after.stale {
            return None;
        }
        let held = self.held.entry(after.id.clone()).or_default();
        let levels = zone.thresholds.len() + 1;
        let at = data_time(after);
        if level.index > held.level {
            *held = Held {
                level: level.index,
                calm: 0,
            };
            let threshold = level.from_density.unwrap_or(0.0);
            return Some(Alert {
                id: 0,
                acknowledged_at: None,
                acknowledged_by: None,
                at,
                zone: zone.id.clone(),
                kind: AlertKind::Level,
                level: Some(level.index),
                threshold: level.from_density,
                value: Some(density.estimate),
                message: format!(
                    "{} is {}{}: {:.2} persons/m2 (threshold {threshold:.2})",
                    zone.name,
                    level.name,
                    // The severity where it says more than the level's name.
                    Some(severity(level.index, levels))
                        .filter(|s| *s != level.name)
                        .map_or(String::new(), |s| format!(" ({s})")),
                    density.estimate,
                ),
            });
        }
        let threshold = usize::from(held.level)
            .checked_sub(1)
            .and_then(|i| zone.thresholds.get(i))
            .copied()?;
        let clears_below = threshold * (1.0 - CLEAR_MARGIN);
        if density.estimate >= clears_below {
            held.calm = 0;
            return None;
        }
        held.calm += 1;
        if held.calm < CLEAR_AFTER {
            return None;
        }
        let from = held.level;
        *held = Held {
            level: level.index,
            calm: 0,
        };
        Some(Alert {
            id: 0,
            acknowledged_at: None,
            acknowledged_by: None,
            at,
            zone: zone.id.clone(),
            kind: AlertKind::Clear,
            level: Some(level.index),
            threshold: Some(threshold),
            value: Some(density.estimate),
            message: format!(
                "{} calmed from {} to {}: {:.2} persons/m2, below {clears_below:.2} for {CLEAR_AFTER} evaluations",
                zone.name,
                level_name(usize::from(from), levels),
                level.name,
                density.estimate,
            ),
        })
    }

    /// The stop-and-go alert of a gate whose density rises while its throughput falls, at
    /// most one per [`STOP_AND_GO_QUIET`].
    pub fn stop_and_go(&mut self, after: &ZoneLive, zone: &Zone) -> Option<Alert> {
        let gate = after.gate.as_ref().filter(|g| g.stop_and_go)?;
        if after.stale {
            return None;
        }
        let at = data_time(after);
        if let Some(last) = self.stop_and_go.get(&after.id)
            && at < *last + STOP_AND_GO_QUIET
        {
            return None;
        }
        self.stop_and_go.insert(after.id.clone(), at);
        Some(Alert {
            id: 0,
            acknowledged_at: None,
            acknowledged_by: None,
            at,
            zone: zone.id.clone(),
            kind: AlertKind::StopAndGo,
            level: None,
            threshold: None,
            value: Some(gate.throughput.estimate),
            message: format!(
                "{} stop-and-go: density rising while throughput fell to {:.0} persons/m/min (a fifth below five minutes before); relieve the gate before waves turn to turbulence",
                zone.name, gate.throughput.estimate,
            ),
        })
    }

    /// The staleness alert `after` calls for: `stale` when every sensor of a zone that
    /// reported has gone silent, `recovered` when a zone announced silent reports again.
    /// Until the service has `settled` (run for the silence limit), silence is not
    /// announced: it is the aggregator's own absence (a restart, an upgrade), which the
    /// sensors' outboxes make up for, not the sensors' (state-based suppression, as alarm
    /// management practice asks: ANSI/ISA-18.2); nor while the zone's sensors deliver old
    /// windows (`settled` false then too: they are behind, not silent). A stale alert is
    /// dated when the latest
    /// window became older than the silence `limit`, a recovery at the window that came back.
    pub fn staleness(
        &mut self,
        after: &ZoneLive,
        zone: &Zone,
        settled: bool,
        limit: SignedDuration,
    ) -> Option<Alert> {
        let announced = self.silent.get(&after.id).copied().unwrap_or(false);
        let (kind, message, at) = if after.stale && !announced {
            // A zone that never reported is shown stale but raises nothing.
            if !settled || after.last_data.is_none() {
                return None;
            }
            (
                AlertKind::Stale,
                format!(
                    "{}: all sensors silent for more than two windows",
                    zone.name
                ),
                after
                    .last_data
                    .map_or_else(|| data_time(after), |t| t + limit),
            )
        } else if !after.stale && announced {
            (
                AlertKind::Recovered,
                format!("{}: sensors report again", zone.name),
                data_time(after),
            )
        } else {
            return None;
        };
        self.silent.insert(after.id.clone(), after.stale);
        Some(Alert {
            id: 0,
            acknowledged_at: None,
            acknowledged_by: None,
            at,
            zone: zone.id.clone(),
            kind,
            level: None,
            threshold: None,
            value: None,
            message,
        })
    }
}

/// When an alert happened: the end of the latest window its zone's figures stand on (data
/// time, not the evaluation's clock), so replicas evaluating the same windows date an alert
/// alike and store it once, and a replayed event (the demo at 60x, where a real minute spans
/// an hour of the event) shows each alert at its own moment.
fn data_time(after: &ZoneLive) -> Timestamp {
    after
        .last_data
        .unwrap_or_else(|| floor_minute(after.updated_at))
}

/// Stores `alerts`, returning those no replica stored before with their storage ids (logged
/// as they are raised).
pub async fn record(store: &impl Store, alerts: Vec<Alert>) -> Vec<Alert> {
    let mut raised = Vec::new();
    for mut alert in alerts {
        match store.record_alert(alert.clone()).await {
            Ok(Some(id)) => {
                tracing::warn!(zone = %alert.zone, kind = %alert.kind, "alert: {}", alert.message);
                alert.id = id;
                raised.push(alert);
            }
            Ok(None) => {}
            Err(e) => tracing::error!("cannot store an alert: {e}"),
        }
    }
    raised
}

#[cfg(test)]
mod tests {
    use crate::zone::ZoneId;

    use super::*;
    use crate::live::level;
    use crate::query::Count;

    /// A silence limit: two one-minute windows and 15 s.
    const LIMIT: SignedDuration = SignedDuration::from_secs(135);

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
            people_basis: None,
            density: density.map(|d| Count {
                estimate: d,
                lower: d,
                upper: d,
                upper_bound: false,
            }),
            level: density.map(|d| level(&[2.0, 3.5, 5.0], d)),
            capacity_used: None,
            trend: None,
            flow: None,
            forecast: None,
            gate: None,
            stale,
            last_data: last_data.map(|t| t.parse().expect("ts")),
            updated_at: "2026-04-27T10:00:30Z".parse().expect("ts"),
        }
    }

    fn zone() -> Zone {
        Zone {
            id: ZoneId::new("neude").expect("id"),
            name: "Neude".into(),
            area_m2: 100.0,
            capacity: None,
            occupancy_window_min: 5,
            thresholds: vec![2.0, 3.5, 5.0],
            calibration: BTreeMap::new(),
            polygon: None,
            gate: None,
        }
    }

    #[test]
    fn staleness_follows_transitions_only() {
        let zone = zone();
        let mut raised = RaisedLevels::default();
        let never = zone_live(true, None, None);
        assert!(
            raised.staleness(&never, &zone, true, LIMIT).is_none(),
            "never reported: no alert"
        );
        let live = zone_live(false, Some("2026-04-27T10:00:00Z"), Some(1.0));
        assert!(
            raised.staleness(&live, &zone, true, LIMIT).is_none(),
            "first data is no recovery"
        );
        let silent = zone_live(true, Some("2026-04-27T10:00:00Z"), Some(1.0));
        let a = raised
            .staleness(&silent, &zone, true, LIMIT)
            .expect("stale");
        assert_eq!(a.kind, "stale");
        assert_eq!(
            a.at.to_string(),
            "2026-04-27T10:02:15Z",
            "when the last window grew older than the limit"
        );
        assert!(
            raised.staleness(&silent, &zone, true, LIMIT).is_none(),
            "once"
        );
        let back = raised
            .staleness(&live, &zone, true, LIMIT)
            .expect("recovered");
        assert_eq!(back.kind, "recovered");
        assert_eq!(
            back.at.to_string(),
            "2026-04-27T10:00:00Z",
            "the window back"
        );
        assert!(
            raised.staleness(&live, &zone, true, LIMIT).is_none(),
            "once"
        );
    }

    #[test]
    fn the_aggregators_own_absence_announces_no_silence() {
        let zone = zone();
        let mut raised = RaisedLevels::default();
        // Just started: the zone's data is from before the restart, so it looks silent.
        let silent = zone_live(true, Some("2026-04-27T09:55:00Z"), Some(1.0));
        assert!(raised.staleness(&silent, &zone, false, LIMIT).is_none());
        // The outboxes deliver: no recovery either, as nothing was announced.
        let live = zone_live(false, Some("2026-04-27T10:00:00Z"), Some(1.0));
        assert!(raised.staleness(&live, &zone, false, LIMIT).is_none());
        // Still silent once settled: now it is the sensors'.
        assert_eq!(
            raised
                .staleness(&silent, &zone, true, LIMIT)
                .map(|a| a.kind),
            Some(AlertKind::Stale)
        );
    }

    #[test]
    fn a_density_hovering_at_a_threshold_raises_once_and_clears_once() {
        let zone = zone();
        let mut raised = RaisedLevels::default();
        let at = |d: f64| zone_live(false, Some("2026-04-27T10:00:00Z"), Some(d));
        let mut alerts = Vec::new();
        // 2.13, 1.98, 2.12, 1.95 ... a minute of hovering around 2.0 (busy).
        for i in 0..60 {
            let d = if i % 2 == 0 { 2.13 } else { 1.97 };
            alerts.extend(raised.step(&at(d), &zone));
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(
            (
                alerts[0].kind.as_str(),
                alerts[0].level,
                alerts[0].threshold
            ),
            ("level", Some(1), Some(2.0))
        );
        assert!(
            alerts[0].message.contains("(advise)"),
            "{}",
            alerts[0].message
        );
        // Calm below 1.8 for fewer than CLEAR_AFTER evaluations: still raised.
        for _ in 1..CLEAR_AFTER {
            assert!(raised.step(&at(1.5), &zone).is_none());
        }
        let clear = raised.step(&at(1.5), &zone).expect("cleared");
        assert_eq!((clear.kind.as_str(), clear.level), ("clear", Some(0)));
        assert!(raised.step(&at(1.5), &zone).is_none(), "cleared once");
        // Three thresholds at once: one alert, at the highest.
        let jump = raised.step(&at(5.5), &zone).expect("raised");
        assert_eq!((jump.level, jump.threshold), (Some(3), Some(5.0)));
        assert!(
            jump.message.contains("is critical: ") && !jump.message.contains("(critical)"),
            "said once: {}",
            jump.message
        );
        assert!(
            raised.step(&at(4.0), &zone).is_none(),
            "down a level is not a new alert"
        );
        assert_eq!(
            jump.at.to_string(),
            "2026-04-27T10:00:00Z",
            "dated by the end of the window it stands on"
        );
    }

    #[test]
    fn a_stop_and_go_sign_raises_once_per_quiet_period_and_survives_a_restart() {
        let zone = zone();
        let gate = |stop_and_go: bool| crate::live::evaluation::GateFlow {
            width_m: 4.0,
            throughput: Count {
                estimate: 40.0,
                lower: 30.0,
                upper: 50.0,
                upper_bound: false,
            },
            level: 0,
            level_name: "free-flowing".into(),
            stop_and_go,
            unreliable: false,
        };
        let at_minute = |m: i64, sign: bool| {
            let mut z = zone_live(false, Some("2026-04-27T10:00:00Z"), Some(1.0));
            z.gate = Some(gate(sign));
            let later = SignedDuration::from_mins(m);
            z.updated_at += later;
            z.last_data = z.last_data.map(|t| t + later);
            z
        };
        let mut raised = RaisedLevels::default();
        assert!(raised.stop_and_go(&at_minute(0, false), &zone).is_none());
        let first = raised
            .stop_and_go(&at_minute(1, true), &zone)
            .expect("raised");
        assert_eq!(first.kind, AlertKind::StopAndGo);
        assert!(
            first.message.contains("40 persons/m/min"),
            "{}",
            first.message
        );
        // The sign holds for minutes: no repeat within the quiet period.
        for m in 2..16 {
            assert!(
                raised.stop_and_go(&at_minute(m, true), &zone).is_none(),
                "{m}"
            );
        }
        assert!(raised.stop_and_go(&at_minute(16, true), &zone).is_some());
        // A restart within the quiet period raises nothing anew.
        let mut restarted = RaisedLevels::default();
        restarted.resume(&[first]);
        assert!(restarted.stop_and_go(&at_minute(5, true), &zone).is_none());
        // A stale zone's old sign raises nothing.
        let mut stale = at_minute(40, true);
        stale.stale = true;
        assert!(raised.stop_and_go(&stale, &zone).is_none());
    }

    #[test]
    fn a_restart_takes_up_where_the_stored_alerts_left_off() {
        let zone = zone();
        let stored_alert = |kind: AlertKind, level: Option<u8>| Alert {
            id: 1,
            acknowledged_at: None,
            acknowledged_by: None,
            at: "2026-04-27T09:59:00Z".parse().expect("ts"),
            zone: zone.id.clone(),
            kind,
            level,
            threshold: None,
            value: None,
            message: String::new(),
        };
        // Newest first, as the store lists them.
        let stored = [
            stored_alert(AlertKind::Stale, None),
            stored_alert(AlertKind::Level, Some(1)),
            stored_alert(AlertKind::Recovered, None),
        ];
        let mut raised = RaisedLevels::default();
        raised.resume(&stored);
        let busy = zone_live(false, Some("2026-04-27T10:00:00Z"), Some(2.2));
        assert!(
            raised.step(&busy, &zone).is_none(),
            "busy was raised before the restart"
        );
        let still_silent = zone_live(true, Some("2026-04-27T09:50:00Z"), Some(2.2));
        assert!(
            raised
                .staleness(&still_silent, &zone, true, LIMIT)
                .is_none(),
            "silence was announced before the restart"
        );
        let back = raised
            .staleness(&busy, &zone, false, LIMIT)
            .expect("a recovery");
        assert_eq!(back.kind, "recovered");
        assert_eq!(
            back.at.to_string(),
            "2026-04-27T10:00:00Z",
            "the window back"
        );
    }

    #[test]
    fn alert_kinds_serialize_by_their_snake_case_names() {
        let json: Vec<String> = AlertKind::ALL
            .iter()
            .map(|k| serde_json::to_string(k).expect("serializes"))
            .collect();
        assert_eq!(
            json,
            [
                "\"level\"",
                "\"stale\"",
                "\"recovered\"",
                "\"clear\"",
                "\"stop_and_go\""
            ]
        );
        for (k, j) in AlertKind::ALL.iter().zip(&json) {
            assert_eq!(k.as_str().parse::<AlertKind>(), Ok(*k));
            assert_eq!(format!("\"{k}\""), *j);
        }
        assert!("warning".parse::<AlertKind>().is_err());
    }
}
