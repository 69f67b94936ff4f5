//! What the aggregator stored, read back as a user of the numbers would.

use crowdflow_aggregator::store::{BucketQuery, Resolution, Store};
use crowdflow_aggregator::zone::ZoneId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use jiff::{SignedDuration, Timestamp};

/// Frames stored over all sensors.
pub async fn frames(store: &impl Store) -> u64 {
    store
        .sensor_health()
        .await
        .map(|h| h.iter().map(|s| s.frames).sum())
        .unwrap_or(0)
}

/// Waits up to `timeout` until at least `frames` frames are stored; returns how many are.
pub async fn wait_for_frames(store: &impl Store, frames: u64, timeout: std::time::Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let stored = self::frames(store).await;
        if stored >= frames || tokio::time::Instant::now() >= deadline {
            return stored;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Devices of `kind` in `zone` over the last two hours at `resolution`: the union of each
/// salt's buckets, summed over salts (sketches of different salts are never unioned).
pub async fn devices(store: &impl Store, zone: &str, kind: Kind, resolution: Resolution) -> f64 {
    let now = Timestamp::now();
    let zone = ZoneId::new(zone).expect("zone id");
    let stored = store
        .zone_sketches(BucketQuery {
            zone: &zone,
            kind,
            resolution,
            from: now - SignedDuration::from_hours(2),
            to: now + SignedDuration::from_hours(1),
        })
        .await
        .expect("read zone sketches");
    crowdflow_aggregator::query::per_salt(&stored, Precision::DEFAULT)
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
