//! The PostgreSQL schema: versioned migrations, applied under an advisory lock so that
//! replicas starting together migrate once.

use tokio_postgres::Client;

use super::{db, get};
use crate::store::StoreError;

/// Schema migrations, applied in order; the index + 1 is the version.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE salt_epochs (
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    authority TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (epoch, salt_fp)
);
CREATE TABLE zone_sketches (
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    resolution TEXT NOT NULL CHECK (resolution IN ('minute', 'hour', 'day')),
    bucket BIGINT NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    sketch BYTEA NOT NULL,
    PRIMARY KEY (zone, kind, resolution, bucket, epoch, salt_fp)
);
CREATE TABLE zone_numbers (
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    resolution TEXT NOT NULL CHECK (resolution IN ('minute', 'hour', 'day')),
    bucket BIGINT NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    estimate DOUBLE PRECISION NOT NULL,
    lower DOUBLE PRECISION NOT NULL,
    upper DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (zone, kind, resolution, bucket, epoch, salt_fp)
);
CREATE TABLE sensor_windows (
    sensor TEXT NOT NULL,
    kind TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_s BIGINT NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    frames BIGINT NOT NULL,
    estimate DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sensor, kind, window_start, epoch, salt_fp)
);
CREATE TABLE sensor_rejects (
    sensor TEXT NOT NULL,
    reason TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (sensor, reason)
);
CREATE INDEX zone_sketches_by_age ON zone_sketches (resolution, bucket);
CREATE INDEX zone_numbers_by_age ON zone_numbers (bucket);
CREATE INDEX sensor_windows_by_age ON sensor_windows (window_start);
"#,
    r#"
CREATE TABLE sensor_seen (
    sensor TEXT PRIMARY KEY,
    last_window_end BIGINT NOT NULL
);
INSERT INTO sensor_seen SELECT sensor, MAX(window_start + window_s) FROM sensor_windows GROUP BY sensor;
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    level BIGINT NOT NULL,
    threshold DOUBLE PRECISION,
    value DOUBLE PRECISION,
    message TEXT NOT NULL,
    UNIQUE (at, zone, kind, level)
);
"#,
    // Alerts are acknowledged on the server, by role, for every screen at once.
    r#"
ALTER TABLE alerts ADD COLUMN acknowledged_at BIGINT;
ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
"#,
    // Sensor windows keyed by time first: a batch holds one window of each of hundreds of
    // sensors, which a sensor-first key scattered over as many index pages (#19); by time
    // they go to the index's last pages. Purging by age reads the key's prefix.
    r#"
ALTER TABLE sensor_windows DROP CONSTRAINT sensor_windows_pkey;
ALTER TABLE sensor_windows ADD PRIMARY KEY (window_start, sensor, kind, epoch, salt_fp);
DROP INDEX sensor_windows_by_age;
"#,
    // Minute buckets written since their hour and day last took them in (write.rs folds
    // them at most once a second per replica, and before hour and day reads).
    r#"
CREATE TABLE rollup_queue (
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    PRIMARY KEY (zone, kind, bucket, epoch, salt_fp)
);
"#,
];

/// Any constant shared by all crowdflow replicas: the key of the migration lock.
const MIGRATION_LOCK: i64 = 0x6372_6f77_6466_6c6f;

/// Applies missing migrations; replicas starting together take turns on an advisory lock.
pub(super) async fn migrate(client: &Client) -> Result<(), StoreError> {
    client.batch_execute("BEGIN").await.map_err(db)?;
    let result = async {
        client
            .execute(LOCK_MIGRATIONS, &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        client
            .batch_execute(CREATE_VERSION_TABLE)
            .await
            .map_err(db)?;
        let row = client.query_one(SELECT_VERSION, &[]).await.map_err(db)?;
        let version: i64 = get(&row, 0)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::SchemaTooNew {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            client.batch_execute(sql).await.map_err(db)?;
            client
                .execute(INSERT_VERSION, &[&(i as i64 + 1)])
                .await
                .map_err(db)?;
        }
        Ok(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.map_err(db)?;
    result
}

/// Waits for the migration lock (held until the transaction ends).
pub(super) const LOCK_MIGRATIONS: &str = "
SELECT pg_advisory_xact_lock($1)";

/// The table of applied migrations.
pub(super) const CREATE_VERSION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)";

/// The latest applied migration (0: none).
pub(super) const SELECT_VERSION: &str = "
SELECT COALESCE(MAX(version), 0)
FROM schema_version";

/// Records an applied migration.
pub(super) const INSERT_VERSION: &str = "
INSERT INTO schema_version (version)
VALUES ($1)";
