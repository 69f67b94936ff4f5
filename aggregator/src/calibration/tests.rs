//! Calibration against a real SQLite store holding known minutes: the line recovered, the
//! refusals per zone and kind, and the printed TOML read back by the config loader.

use std::path::Path;

use crowdflow_contract::sketch::{Precision, Sketch};
use jiff::SignedDuration;

use super::*;
use crate::config::{AggregatorConfig, Calibration, Floor};
use crate::store::{Accepted, Batch, SqliteStore};

pub(crate) const CONFIG: &str = r#"[broker]
mode = "embedded"
listen = "127.0.0.1:1883"
[storage]
kind = "sqlite"
path = "unused.db"
[[zones]]
id = "hall"
name = "Hall"
area_m2 = 400.0
[[zones]]
id = "lab"
name = "Lab"
area_m2 = 80.0
calibration = { ble = 0.5 }
[[sensors]]
id = "lab-1"
zone = "lab"
[[sensors]]
id = "hall-1"
zone = "hall"
"#;

fn config(text: &str) -> AggregatorConfig {
    AggregatorConfig::parse(text, Path::new("c.toml"), None).expect("config")
}

fn sketch(devices: std::ops::Range<u64>) -> Sketch {
    let mut s = Sketch::new(Precision::DEFAULT);
    devices.for_each(|i| s.insert_bytes(&i.to_le_bytes()));
    s
}

fn t(s: &str) -> Timestamp {
    s.parse().expect("ts")
}

/// One stored minute of `kind` in `zone` holding `n` devices (distinct per minute).
pub(crate) fn minute(zone: &str, kind: Kind, at: Timestamp, n: u64) -> Accepted {
    let base = at.as_second().unsigned_abs() * 10_000;
    Accepted {
        sensor: crowdflow_contract::wire::SensorId::new(&format!("{zone}-1")).expect("id"),
        zone: ZoneId::new(zone).expect("zone"),
        kind,
        window_start: at,
        window_s: 60,
        epoch: at
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string()
            .parse()
            .expect("epoch"),
        salt_fp: "0000000000000001".parse().expect("fp"),
        frames: n,
        sketch: sketch(base..base + n),
    }
}

/// The lab: people = 0.5 x (devices - 10) on three days, 10 quarter hours a day of
/// `wifi_derandomized` minutes; Wi-Fi addresses 12 per person and some; BLE a constant 30.
/// Returns the store and COUNTS.csv (the true people of each quarter hour, one wild).
pub(crate) async fn lab(dir: &Path) -> (SqliteStore, String) {
    let store = SqliteStore::open(&dir.join("c.db"), Precision::DEFAULT).expect("open");
    let mut csv = String::from("zone,start,end,people\n");
    let mut accepted = Vec::new();
    for (d, day) in ["2026-05-04", "2026-05-05", "2026-05-06"]
        .iter()
        .enumerate()
    {
        for q in 0..10i64 {
            let start = t(&format!("{day}T08:00:00Z")) + SignedDuration::from_mins(15 * q);
            let people = ((q * 7 + d as i64 * 3) % 40) as u64;
            for m in 0..15 {
                let at = start + SignedDuration::from_mins(m);
                accepted.push(minute("lab", Kind::WifiDerandomized, at, 10 + 2 * people));
                let noise = ((q * 53 + d as i64 * 17) % 60) as u64;
                accepted.push(minute("lab", Kind::WifiRandom, at, 12 * people + noise));
                accepted.push(minute("lab", Kind::Ble, at, 30));
            }
            // Day 2's fourth count was miswritten (people x 4).
            let counted = if (d, q) == (1, 3) { people * 4 } else { people };
            csv += &format!(
                "lab,{start},{},{counted}\n",
                start + SignedDuration::from_mins(15)
            );
        }
    }
    store
        .merge_batch(Batch {
            accepted,
            rejects: Vec::new(),
        })
        .await
        .expect("store");
    (store, csv)
}

#[tokio::test]
async fn the_lab_line_is_recovered_and_pasted_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let (store, counts) = lab(dir.path()).await;
    let c = config(CONFIG);
    let report = calibrate(&store, &c.zones, &c.rotation, counts.as_bytes())
        .await
        .expect("report");
    let text = report.to_string();
    eprintln!("{text}");
    assert_eq!(report.fitted, 1);
    let lab = &report.zones[0];
    assert_eq!(lab.zone.as_str(), "lab");
    assert_eq!(
        lab.validation,
        Some(fit::Validation::LeaveOneDayOut { days: 3 })
    );
    assert_eq!(lab.picked, Some(Kind::WifiDerandomized));
    let fit = lab.picked_fit().expect("fit");
    // HLL estimates of up to 90 devices are within a device or so.
    assert!((fit.factor - 0.5).abs() < 0.02, "{fit:?}");
    assert!((fit.floor - 10.0).abs() < 1.5, "{fit:?}");
    assert_eq!(fit.observations, 30);
    assert!(fit.held_out.median_error < 0.05, "{fit:?}");
    assert!(!fit.held_out.error_is_floor);
    let by_kind = |k: Kind| lab.kinds.iter().find(|r| r.kind == k).expect("kind");
    assert!(
        matches!(
            by_kind(Kind::Ble).refused,
            Some(KindRefusal::Fit(FitError::NoDeviceSpread { .. }))
        ),
        "{text}"
    );
    assert_eq!(by_kind(Kind::Wifi).refused, Some(KindRefusal::NoMinutes));
    // Wi-Fi addresses are 12 per person: naive counting is 1100 % off.
    let naive = lab.naive.expect("naive");
    assert!(naive.median_error > 5.0, "{naive:?}");
    assert!(text.contains("naive addresses"), "{text}");
    assert!(text.contains("* wifi_derandomized"), "{text}");
    assert!(text.contains("few observations") == fit.held_out.error_is_floor);
    // Dense crowds are read through their scans, checked on the simulator only: the report
    // says up to how many persons the counts went and which address line to use beyond.
    let caution = lab.caution.as_deref().expect("caution");
    let most = counts
        .lines()
        .filter_map(|l| l.rsplit(',').next()?.trim().parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(
        caution.contains(&format!("reach {most:.0} persons")),
        "{caution}"
    );
    assert!(
        caution.contains("replace its line by: wifi_random = {"),
        "{caution}"
    );
    assert!(text.contains(&format!("caution: {caution}")), "{text}");
    assert!(lab.toml.as_deref().expect("toml").contains("# caution: "));

    // The TOML, put at the end of the lab's entry, is what the config loader reads back.
    let toml = lab.toml.as_deref().expect("toml");
    assert!(report.toml.contains(toml));
    assert!(text.contains(toml), "{text}");
    let pasted = CONFIG.replace("calibration = { ble = 0.5 }\n", "");
    let pasted = pasted.replace(
        "[[sensors]]\nid = \"lab-1\"",
        &format!("{toml}[[sensors]]\nid = \"lab-1\""),
    );
    let loaded = config(&pasted);
    let zone = &loaded.zones[&ZoneId::new("lab").expect("id")];
    assert_eq!(
        zone.calibration.get(&Kind::WifiDerandomized),
        Some(&Calibration {
            factor: fit.factor,
            floor: Floor::Devices(fit.floor),
            error: Some(fit.error),
            observations: Some(30),
        })
    );
    assert_eq!(zone.calibration.len(), 1);
    let people = crate::people::basis(zone, &crate::people::Floors::default()).expect("basis");
    assert!(people.calibrated);
}

#[tokio::test]
async fn a_refused_zone_does_not_keep_another_from_its_fit() {
    let dir = tempfile::tempdir().expect("tmp");
    let (store, mut counts) = lab(dir.path()).await;
    let mut accepted = Vec::new();
    // The hall: stored minutes, but five counts only (the last with 10 of its 15 minutes
    // stored, fitted on those), one count outside them and one with 5 of 15 stored.
    for q in 0..5i64 {
        let start = t("2026-05-04T12:00:00Z") + SignedDuration::from_mins(15 * q);
        for m in 0..if q == 4 { 10 } else { 15 } {
            let at = start + SignedDuration::from_mins(m);
            accepted.push(minute("hall", Kind::Ble, at, 10 * q.unsigned_abs()));
        }
        counts += &format!(
            "hall,{start},{},{}\n",
            start + SignedDuration::from_mins(15),
            5 * q
        );
    }
    counts += "hall,2026-05-10T12:00:00Z,2026-05-10T12:15:00Z,4\n";
    for m in 0..5 {
        let at = t("2026-05-11T12:00:00Z") + SignedDuration::from_mins(m);
        accepted.push(minute("hall", Kind::Ble, at, 10));
    }
    counts += "hall,2026-05-11T12:00:00Z,2026-05-11T12:15:00Z,4\n";
    store
        .merge_batch(Batch {
            accepted,
            rejects: Vec::new(),
        })
        .await
        .expect("store");
    let c = config(CONFIG);
    let report = calibrate(&store, &c.zones, &c.rotation, counts.as_bytes())
        .await
        .expect("report");
    let text = report.to_string();
    assert_eq!(report.fitted, 1, "{text}");
    let hall = &report.zones[0];
    assert_eq!(hall.zone.as_str(), "hall");
    assert_eq!(hall.refused, Some(ZoneRefusal::TooFew { usable: 5 }));
    assert_eq!(hall.outside.len(), 2);
    assert_eq!(hall.outside[0].line, 37);
    assert_eq!(hall.outside[0].field, Field::Span);
    assert!(
        text.contains("line 37, start..end: no stored minute of zone hall"),
        "{text}"
    );
    assert!(
        text.contains("line 38, start..end: only 5 of the 15 minutes"),
        "{text}"
    );
    assert_eq!(hall.partly_stored.len(), 1);
    assert!(
        text.contains("note: line 36, start..end: 10 of the 15 minutes"),
        "{text}"
    );
    assert!(text.contains("too few observations: 5 counts"), "{text}");
    assert_eq!(report.zones[1].picked, Some(Kind::WifiDerandomized));
}

#[tokio::test]
async fn counts_without_spread_are_refused_saying_which() {
    let dir = tempfile::tempdir().expect("tmp");
    let (store, counts) = lab(dir.path()).await;
    let c = config(CONFIG);
    // Every count says 20 persons: no spread in people.
    let flat: String = counts
        .lines()
        .map(|l| match l.rsplit_once(',') {
            Some((head, _)) if l.starts_with("lab") => format!("{head},20\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let report = calibrate(&store, &c.zones, &c.rotation, flat.as_bytes())
        .await
        .expect("report");
    assert_eq!(report.fitted, 0);
    let refusal = report.zones[0].refused.clone().expect("refused");
    assert!(
        matches!(
            refusal,
            ZoneRefusal::NoSpread(FitError::NoPeopleSpread { .. })
        ),
        "{refusal:?}"
    );
    assert!(refusal.to_string().contains("no spread in people (y)"));
}

#[tokio::test]
async fn a_bad_file_is_refused_before_the_store_is_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let (store, _) = lab(dir.path()).await;
    let c = config(CONFIG);
    let e = calibrate(
        &store,
        &c.zones,
        &c.rotation,
        b"zone,start,end,people\nlab,2026-05-04T08:00:00Z,2026-05-04T08:15:00Z,-2\n",
    )
    .await
    .expect_err("refused");
    let CalibrationError::Counts(e) = e else {
        panic!("{e}")
    };
    assert_eq!((e.rows[0].line, e.rows[0].field), (2, Field::People));
}

#[test]
fn nearby_spans_are_read_together() {
    let o = |start: &str, end: &str| Observation {
        line: 2,
        zone: ZoneId::new("lab").expect("id"),
        start: t(start),
        end: t(end),
        people: 1.0,
    };
    let rows = [
        o("2026-05-04T10:00:00Z", "2026-05-04T10:15:00Z"),
        o("2026-05-04T08:00:00Z", "2026-05-04T08:15:00Z"),
        o("2026-05-04T08:30:00Z", "2026-05-04T08:45:00Z"),
        o("2026-05-05T08:00:00Z", "2026-05-05T09:00:00Z"),
    ];
    let refs: Vec<&Observation> = rows.iter().collect();
    assert_eq!(
        spans(&refs),
        [
            (t("2026-05-04T08:00:00Z"), t("2026-05-04T08:45:00Z")),
            (t("2026-05-04T10:00:00Z"), t("2026-05-04T10:15:00Z")),
            (t("2026-05-05T08:00:00Z"), t("2026-05-05T09:00:00Z")),
        ]
    );
}

#[test]
fn a_minute_of_two_salts_is_their_sum() {
    let mut m = Minutes::default();
    let at = t("2026-05-04T08:00:00Z");
    m.add(Kind::Ble, at, 10.0);
    m.add(Kind::Ble, at, 5.0);
    m.add(Kind::Ble, at + SignedDuration::from_mins(1), 3.0);
    assert_eq!(
        m.mean(Kind::Ble, at, at + SignedDuration::from_mins(2)),
        Some(9.0)
    );
    assert_eq!(
        m.mean(Kind::Wifi, at, at + SignedDuration::from_mins(2)),
        None
    );
    m.add(Kind::Wifi, at, 1.0);
    m.add(Kind::WifiRandom, at, 2.0);
    m.add(Kind::WifiRandom, at + SignedDuration::from_mins(1), 4.0);
    assert_eq!(
        m.addresses(at, at + SignedDuration::from_mins(2)),
        Some(3.5)
    );
}
