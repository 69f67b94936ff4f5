//! What the aggregator stored, read back as a user of the numbers would.

use std::collections::BTreeMap;

use crowdflow_aggregator::store::{Resolution, Store};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Precision, SketchUnion};
use crowdflow_contract::wire::SensorId;
use jiff::{SignedDuration, Timestamp};

/// Frames stored over all sensors.
pub async fn frames(store: &impl Store) -> u64 {
    store
        .sensor_health()
        .await
        .map(|h| h.iter().map(|s| s.frames).sum())
        .unwrap_or(0)
}

/// Devices of `kind` in `zone` over the last two hours at `resolution`: the union of each
/// salt's buckets, summed over salts (sketches of different salts are never unioned).
pub async fn devices(store: &impl Store, zone: &str, kind: Kind, resolution: Resolution) -> f64 {
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

/// Every row of a crowdflow PostgreSQL database as text, for privacy scans (the server's
/// files are not the test's to read).
pub async fn postgres_dump(url: &str) -> Vec<u8> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect for the dump");
    tokio::spawn(connection);
    let mut out = Vec::new();
    for table in [
        "salt_epochs",
        "zone_sketches",
        "zone_numbers",
        "sensor_windows",
        "sensor_rejects",
        "schema_version",
    ] {
        for row in client
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .expect("dump table")
        {
            out.extend_from_slice(row.get::<_, &str>(0).as_bytes());
            out.push(b'\n');
        }
    }
    out
}
