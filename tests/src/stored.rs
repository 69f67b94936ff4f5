//! What the aggregator stored, read back as a user of the numbers would.

use std::collections::BTreeMap;

use crowdflow_aggregator::store::{Resolution, SqliteStore, Store};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Precision, SketchUnion};
use crowdflow_contract::wire::SensorId;
use jiff::{SignedDuration, Timestamp};

/// Frames stored over all sensors.
pub async fn frames(store: &SqliteStore) -> u64 {
    store
        .sensor_health()
        .await
        .map(|h| h.iter().map(|s| s.frames).sum())
        .unwrap_or(0)
}

/// Devices of `kind` in `zone` over the last two hours at `resolution`: the union of each
/// salt's buckets, summed over salts (sketches of different salts are never unioned).
pub async fn devices(store: &SqliteStore, zone: &str, kind: Kind, resolution: Resolution) -> f64 {
    let now = Timestamp::now();
    let zone = SensorId::new(zone).expect("zone id");
    let stored = store
        .zone_sketches(
            &zone,
            kind,
            resolution,
            now - SignedDuration::from_hours(2),
            now + SignedDuration::from_hours(1),
        )
        .await
        .expect("read zone sketches");
    let mut per_salt: BTreeMap<String, SketchUnion> = BTreeMap::new();
    for z in &stored {
        per_salt
            .entry(format!("{}/{}", z.epoch, z.salt_fp))
            .or_insert_with(|| SketchUnion::new(Precision::DEFAULT))
            .add(&z.sketch);
    }
    per_salt
        .values()
        .map(|u| u.estimate().estimate.round())
        .sum()
}
