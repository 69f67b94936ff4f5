//! The storage test suite every backend runs (`store_suite!` in each backend's tests).

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Estimate, Precision, Sketch};
use crowdflow_contract::wire::SensorId;
use jiff::{SignedDuration, Timestamp};

use crate::zone::ZoneId;

use super::{
    Accepted, Alert, Batch, BucketQuery, PurgeReport, Rejected, Resolution, Retention, Store,
};

fn sketch(range: std::ops::Range<u64>) -> Sketch {
    let mut s = Sketch::new(Precision::DEFAULT);
    for i in range {
        s.insert_bytes(&i.to_le_bytes());
    }
    s
}

pub(crate) fn accepted(sensor: &str, at: Timestamp, devices: std::ops::Range<u64>) -> Accepted {
    Accepted {
        sensor: id(sensor),
        zone: zone("neude"),
        kind: Kind::WifiRandom,
        window_start: at,
        window_s: 60,
        epoch: "2026-04-27".parse().expect("epoch"),
        salt_fp: "0123456789abcdef".parse().expect("fp"),
        frames: devices.end - devices.start,
        sketch: sketch(devices),
    }
}

pub(crate) fn batch(accepted: Vec<Accepted>) -> Batch {
    Batch {
        accepted,
        rejects: Vec::new(),
    }
}

fn id(s: &str) -> SensorId {
    SensorId::new(s).expect("id")
}

pub(crate) fn zone(s: &str) -> ZoneId {
    ZoneId::new(s).expect("zone id")
}

pub(crate) fn ts(s: &str) -> Timestamp {
    s.parse().expect("ts")
}

/// Three batches of the hour 10:00-11:00 of 2026-04-27 at neude: minutes 0 to 2 of one
/// sensor, and minute 59 of another sent again and again (the rollup tests' load).
pub(crate) fn batches_of_one_hour() -> impl Iterator<Item = Batch> {
    let at = |minute: u32| ts(&format!("2026-04-27T10:{minute:02}:00Z"));
    (0..3u64).map(move |i| {
        batch(vec![
            accepted("s1", at(i as u32), i * 400..i * 400 + 500),
            accepted("s2", at(59), 5_000 + i * 10..5_000 + i * 10 + 20),
        ])
    })
}

/// The stored number of neude's hour 10:00-11:00 of 2026-04-27 ([`accepted`]'s kind),
/// which must be exactly one.
pub(crate) async fn neude_hour(store: &impl Store) -> Estimate {
    let numbers = store
        .zone_numbers(BucketQuery {
            zone: &zone("neude"),
            kind: Kind::WifiRandom,
            resolution: Resolution::Hour,
            from: ts("2026-04-27T10:00:00Z"),
            to: ts("2026-04-27T11:00:00Z"),
        })
        .await
        .expect("hour");
    assert_eq!(numbers.len(), 1, "{numbers:?}");
    numbers[0].devices
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

async fn estimates(
    store: &impl Store,
    resolution: Resolution,
    from: &str,
    to: &str,
) -> Vec<(Timestamp, f64)> {
    store
        .zone_sketches(BucketQuery {
            zone: &zone("neude"),
            kind: Kind::WifiRandom,
            resolution,
            from: ts(from),
            to: ts(to),
        })
        .await
        .expect("read sketches")
        .into_iter()
        .map(|z| (z.bucket, z.sketch.estimate().estimate.round()))
        .collect()
}

pub(crate) async fn two_sensors_in_a_zone_are_unioned_and_replays_change_nothing(
    store: impl Store,
) {
    let b = batch(vec![
        accepted("s1", ts("2026-04-27T10:00:00Z"), 0..600),
        accepted("s2", ts("2026-04-27T10:00:00Z"), 400..1000),
        accepted("s1", ts("2026-04-27T10:01:00Z"), 0..100),
        accepted("s2", ts("2026-04-27T11:30:00Z"), 5000..5050),
    ]);
    store.merge_batch(b.clone()).await.expect("ingest");
    store.merge_batch(b).await.expect("replay");
    let from = "2026-04-27T00:00:00Z";
    let to = "2026-04-28T00:00:00Z";
    assert_eq!(
        estimates(&store, Resolution::Minute, from, to).await,
        vec![
            (ts("2026-04-27T10:00:00Z"), 1000.0),
            (ts("2026-04-27T10:01:00Z"), 100.0),
            (ts("2026-04-27T11:30:00Z"), 50.0)
        ]
    );
    assert_eq!(
        estimates(&store, Resolution::Hour, from, to).await,
        vec![
            (ts("2026-04-27T10:00:00Z"), 1000.0),
            (ts("2026-04-27T11:00:00Z"), 50.0)
        ]
    );
    assert_eq!(
        estimates(&store, Resolution::Day, from, to).await,
        vec![(ts("2026-04-27T00:00:00Z"), 1050.0)]
    );
    let numbers = store
        .zone_numbers(BucketQuery {
            zone: &zone("neude"),
            kind: Kind::WifiRandom,
            resolution: Resolution::Hour,
            from: ts(from),
            to: ts(to),
        })
        .await
        .expect("numbers");
    assert_eq!(numbers.len(), 2);
    assert_eq!(numbers[0].devices.estimate.round(), 1000.0);
    assert!(numbers[0].devices.lower <= 1000.0 && numbers[0].devices.upper >= 1000.0);
    assert_eq!(numbers[0].epoch, "2026-04-27".parse().expect("epoch"));
    let other_kind = store
        .zone_sketches(BucketQuery {
            zone: &zone("neude"),
            kind: Kind::Ble,
            resolution: Resolution::Minute,
            from: ts(from),
            to: ts(to),
        })
        .await
        .expect("read");
    assert!(other_kind.is_empty(), "kinds are kept apart");
    let health = store.sensor_health().await.expect("health");
    assert_eq!(health.len(), 2);
    assert_eq!(health[0].sensor, id("s1"));
    assert_eq!(health[0].frames, 700, "replays do not double frame totals");
    assert_eq!(health[0].last_window, Some(ts("2026-04-27T10:01:00Z")));
    assert_eq!(health[1].last_window, Some(ts("2026-04-27T11:30:00Z")));
    // Every kind in one read: each kind's answer as read alone, in the order asked.
    store
        .merge_batch(batch(vec![Accepted {
            kind: Kind::Ble,
            ..accepted("s3", ts("2026-04-27T10:00:00Z"), 0..70)
        }]))
        .await
        .expect("ble");
    for resolution in [Resolution::Minute, Resolution::Hour, Resolution::Day] {
        let neude = zone("neude");
        let query = |kind| BucketQuery {
            zone: &neude,
            kind,
            resolution,
            from: ts(from),
            to: ts(to),
        };
        let kinds = [Kind::Ble, Kind::Wifi, Kind::WifiRandom];
        let together = store
            .zone_sketches_by_kind(query(Kind::Wifi), &kinds)
            .await
            .expect("read by kind");
        assert_eq!(together.len(), kinds.len());
        for (kind, got) in kinds.into_iter().zip(&together) {
            let alone = store.zone_sketches(query(kind)).await.expect("read");
            let key = |z: &super::ZoneSketch| (z.bucket, z.sketch.estimate().estimate.round());
            assert_eq!(
                got.iter().map(key).collect::<Vec<_>>(),
                alone.iter().map(key).collect::<Vec<_>>(),
                "{kind:?} {resolution:?}"
            );
        }
        assert!(!together[0].is_empty() && together[1].is_empty() && !together[2].is_empty());
    }
}

pub(crate) async fn epochs_are_recorded_once(store: impl Store) {
    let epoch: EpochId = "2026-04-27".parse().expect("epoch");
    let fp: SaltFingerprint = "0123456789abcdef".parse().expect("fp");
    store
        .record_epoch(epoch, fp, "agg-1")
        .await
        .expect("record");
    store
        .record_epoch(epoch, fp, "agg-2")
        .await
        .expect("idempotent");
    let since = |d: &str| d.parse::<EpochId>().expect("epoch");
    assert_eq!(
        store.known_epochs(since("2026-04-01")).await.expect("read"),
        vec![(epoch, fp)]
    );
    assert!(
        store
            .known_epochs(since("2026-04-28"))
            .await
            .expect("read")
            .is_empty()
    );
}

pub(crate) async fn rejects_accumulate_in_sensor_health(store: impl Store) {
    let reject = |sensor: &str, reason: &'static str| Rejected {
        sensor: id(sensor),
        reason,
    };
    let first = Batch {
        accepted: vec![accepted("s1", ts("2026-04-27T10:00:00Z"), 0..10)],
        rejects: vec![reject("s1", "salt_mismatch"), reject("s9", "window_future")],
    };
    store.merge_batch(first).await.expect("ingest");
    let second = Batch {
        accepted: Vec::new(),
        rejects: vec![reject("s1", "salt_mismatch"), reject("s1", "sketch")],
    };
    store.merge_batch(second).await.expect("ingest");
    let health = store.sensor_health().await.expect("health");
    assert_eq!(health.len(), 2, "{health:?}");
    let s1 = &health[0];
    assert_eq!(s1.frames, 10);
    assert_eq!(s1.rejects.get("salt_mismatch"), Some(&2));
    assert_eq!(s1.rejects.get("sketch"), Some(&1));
    let s9 = &health[1];
    assert_eq!(s9.sensor, id("s9"));
    assert_eq!(
        s9.last_window, None,
        "a sensor with only rejects has no window"
    );
    assert_eq!(s9.rejects.get("window_future"), Some(&1));
    store
        .merge_batch(Batch::default())
        .await
        .expect("empty batch");
}

/// A frame total past 64 bits (rows stored before ingest bounded `frames`) saturates; the
/// admin view answered 503 for a month once one message carried 2^64-1.
pub(crate) async fn frame_totals_saturate_instead_of_failing(store: impl Store) {
    let huge = |at: &str| Accepted {
        frames: u64::MAX,
        ..accepted("s1", ts(at), 0..10)
    };
    store
        .merge_batch(batch(vec![
            huge("2026-04-27T10:00:00Z"),
            huge("2026-04-27T10:01:00Z"),
        ]))
        .await
        .expect("ingest");
    let health = store
        .sensor_health()
        .await
        .expect("the health view answers");
    assert!(health[0].frames > u64::MAX / 4, "{health:?}");
}

pub(crate) async fn purge_keeps_what_retention_says(store: impl Store) {
    let now = ts("2027-06-01T12:00:00Z");
    let old = now - days(40);
    let recent = now - days(10);
    let ancient = now - days(400);
    store
        .merge_batch(batch(vec![
            accepted("s1", ancient, 0..30),
            accepted("s1", old, 0..20),
            accepted("s1", recent, 0..10),
        ]))
        .await
        .expect("ingest");
    let count = async |resolution: Resolution| {
        store
            .zone_sketches(BucketQuery {
                zone: &zone("neude"),
                kind: Kind::WifiRandom,
                resolution,
                from: ancient - days(2),
                to: now,
            })
            .await
            .expect("read")
            .len()
    };
    let report = store.purge(Retention::default(), now).await.expect("purge");
    assert_eq!(
        report,
        PurgeReport {
            sketches: 3, // the minute sketches at -400 d and -40 d, the hour at -400 d
            numbers: 0,
            sensor_windows: 2,
        }
    );
    assert_eq!(count(Resolution::Minute).await, 1);
    assert_eq!(count(Resolution::Hour).await, 2);
    assert_eq!(count(Resolution::Day).await, 3, "day sketches are kept");
    let numbers = store
        .zone_numbers(BucketQuery {
            zone: &zone("neude"),
            kind: Kind::WifiRandom,
            resolution: Resolution::Minute,
            from: ancient - days(1),
            to: now,
        })
        .await
        .expect("numbers");
    assert_eq!(numbers.len(), 3, "numbers outlive their sketches");
    assert_eq!(numbers[0].devices.estimate.round(), 30.0);
    let health = store.sensor_health().await.expect("health");
    assert_eq!(
        health[0].frames, 10,
        "expired windows left the health totals"
    );
    assert_eq!(
        store.purge(Retention::default(), now).await.expect("again"),
        PurgeReport::default(),
        "a second purge finds nothing"
    );
    let short = Retention {
        minute_sketch_days: 1,
        hour_sketch_days: 1,
        day_sketch_days: Some(1),
        number_days: Some(100),
    };
    let report = store.purge(short, now).await.expect("purge");
    assert_eq!(report.sketches, 1 + 2 + 3);
    assert_eq!(report.numbers, 3, "the -400 d minute, hour and day numbers");
}

pub(crate) async fn alerts_are_stored_once_and_listed_newest_first(store: impl Store) {
    let alert = |at: &str, kind: &str, level: Option<u8>| Alert {
        id: 0,
        acknowledged_at: None,
        acknowledged_by: None,
        at: ts(at),
        zone: zone("neude"),
        kind: kind.parse().expect("an alert kind"),
        level,
        threshold: level.map(|_| 3.5),
        value: level.map(|_| 3.7),
        message: "Neude is crowded".into(),
    };
    let first = store
        .record_alert(alert("2026-04-27T10:00:00Z", "level", Some(2)))
        .await
        .expect("first")
        .expect("stored");
    assert!(
        store
            .record_alert(alert("2026-04-27T10:00:00Z", "level", Some(2)))
            .await
            .expect("again")
            .is_none(),
        "a second replica raising the same alert at the same time stores nothing"
    );
    let stale = store
        .record_alert(alert("2026-04-27T10:05:00Z", "stale", None))
        .await
        .expect("stale")
        .expect("stored");
    assert_ne!(first, stale, "each stored alert has its own id");
    let listed = store
        .alerts(ts("2026-04-27T00:00:00Z"), 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].kind, "stale");
    assert_eq!(listed[0].level, None);
    assert_eq!(listed[1].level, Some(2));
    assert_eq!(listed[1].value, Some(3.7));
    assert_eq!(
        (listed[0].id, listed[1].id),
        (stale, first),
        "listed with the ids recording gave"
    );
    assert_eq!(listed[1].acknowledged_at, None);
    // Acknowledged once, by role, for every screen.
    let key = super::AlertKey {
        at: ts("2026-04-27T10:00:00Z"),
        zone: "neude".into(),
        kind: "level".parse().expect("kind"),
        level: Some(2),
    };
    let at = ts("2026-04-27T10:03:00Z");
    assert!(
        store
            .acknowledge_alert(key.clone(), "viewer", at)
            .await
            .expect("ack")
    );
    assert!(
        !store
            .acknowledge_alert(key.clone(), "admin", at)
            .await
            .expect("again"),
        "an acknowledged alert stays acknowledged by the first"
    );
    let other = super::AlertKey {
        level: Some(3),
        ..key
    };
    assert!(
        !store
            .acknowledge_alert(other, "viewer", at)
            .await
            .expect("none")
    );
    let listed = store
        .alerts(ts("2026-04-27T00:00:00Z"), 10)
        .await
        .expect("list");
    assert_eq!(listed[1].acknowledged_at, Some(at));
    assert_eq!(listed[1].acknowledged_by.as_deref(), Some("viewer"));
    assert_eq!(listed[0].acknowledged_at, None);
    assert_eq!(
        store
            .alerts(ts("2026-04-27T10:01:00Z"), 10)
            .await
            .expect("since")
            .len(),
        1
    );
    assert_eq!(
        store
            .alerts(ts("2026-04-27T00:00:00Z"), 1)
            .await
            .expect("limit")
            .len(),
        1
    );
}

pub(crate) async fn sensors_seen_follow_their_latest_window(store: impl Store) {
    store
        .merge_batch(batch(vec![
            accepted("s1", ts("2026-04-27T10:05:00Z"), 0..5),
            accepted("s1", ts("2026-04-27T10:01:00Z"), 0..5),
            accepted("s2", ts("2026-04-27T09:00:00Z"), 0..5),
        ]))
        .await
        .expect("ingest");
    store
        .merge_batch(batch(vec![accepted(
            "s1",
            ts("2026-04-27T10:02:00Z"),
            0..5,
        )]))
        .await
        .expect("late window");
    assert_eq!(
        store.sensors_seen().await.expect("seen"),
        vec![
            (id("s1"), ts("2026-04-27T10:06:00Z")),
            (id("s2"), ts("2026-04-27T09:01:00Z"))
        ]
    );
}

/// Runs every suite test against the stores `$open` (an async expression giving the store
/// and a guard that keeps its database alive) makes.
macro_rules! store_suite {
    ($open:expr) => {
        $crate::store::suite::store_suite!(@tests $open;
            two_sensors_in_a_zone_are_unioned_and_replays_change_nothing,
            epochs_are_recorded_once,
            rejects_accumulate_in_sensor_health,
            frame_totals_saturate_instead_of_failing,
            purge_keeps_what_retention_says,
            alerts_are_stored_once_and_listed_newest_first,
            sensors_seen_follow_their_latest_window,
        );
    };
    (@tests $open:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $open.await;
                $crate::store::suite::$name(store).await;
            }
        )*
    };
}
pub(crate) use store_suite;
