//! Alerts: raised when a zone's evaluation crosses a level-of-service threshold upwards or
//! goes stale (or recovers), and stored once across replicas.

use crate::config::Zone;
use crate::store::{Alert, AlertKind, Store};

use super::evaluation::ZoneLive;
use crate::query::floor_minute;

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
            kind: AlertKind::Level,
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
                AlertKind::Stale,
                format!(
                    "{}: all sensors silent for more than two windows",
                    zone.name
                ),
            )
        } else {
            (
                AlertKind::Recovered,
                format!("{}: sensors report again", zone.name),
            )
        };
        out.push(Alert {
            id: 0,
            at,
            zone: zone_id,
            kind,
            level: None,
            threshold: None,
            value: None,
            message,
        });
    }
    out
}

/// Stores `alerts`, returning those no replica stored before (logged as they are raised).
pub async fn record(store: &impl Store, alerts: Vec<Alert>) -> Vec<Alert> {
    let mut raised = Vec::new();
    for alert in alerts {
        match store.record_alert(alert.clone()).await {
            Ok(true) => {
                tracing::warn!(zone = %alert.zone, kind = %alert.kind, "alert: {}", alert.message);
                raised.push(alert);
            }
            Ok(false) => {}
            Err(e) => tracing::error!("cannot store an alert: {e}"),
        }
    }
    raised
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::zone::ZoneId;

    use super::*;
    use crate::live::level;
    use crate::query::Count;

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

    #[test]
    fn alert_kinds_serialize_by_their_lower_case_names() {
        let json: Vec<String> = AlertKind::ALL
            .iter()
            .map(|k| serde_json::to_string(k).expect("serializes"))
            .collect();
        assert_eq!(json, ["\"level\"", "\"stale\"", "\"recovered\""]);
        for k in AlertKind::ALL {
            assert_eq!(k.as_str().parse::<AlertKind>(), Ok(k));
        }
        assert!("warning".parse::<AlertKind>().is_err());
    }
}
