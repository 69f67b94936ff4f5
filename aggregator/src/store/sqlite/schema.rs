//! The SQLite schema: versioned migrations, each SQL with an optional data fill in Rust
//! (where SQL cannot compute what a new table needs).

use std::collections::BTreeMap;

use crowdflow_contract::sketch::{Estimate, Precision, Sketch};
use rusqlite::{Connection, Transaction, params};

use super::db;
use super::minute_numbers::{Entry, encode};
use super::sql::UPSERT_PACKED_HOUR;
use crate::store::StoreError;

/// Fills data a migration's SQL cannot compute.
type Fill = fn(&Transaction<'_>, Precision) -> Result<(), StoreError>;

/// One schema step: SQL, then an optional data fill in Rust.
pub(super) struct Migration {
    pub(super) sql: &'static str,
    fill: Option<Fill>,
}

/// Schema migrations, applied in order; the index + 1 is the version.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        sql: r#"
CREATE TABLE salt_epochs (
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    authority TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (epoch, salt_fp)
);
CREATE TABLE zone_sketches (
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    resolution TEXT NOT NULL CHECK (resolution IN ('minute', 'hour', 'day')),
    bucket INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (zone, kind, resolution, bucket, epoch, salt_fp)
) WITHOUT ROWID;
CREATE TABLE sensor_windows (
    sensor TEXT NOT NULL,
    kind TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_s INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    frames INTEGER NOT NULL,
    estimate REAL NOT NULL,
    PRIMARY KEY (sensor, kind, window_start, epoch, salt_fp)
) WITHOUT ROWID;
"#,
        fill: None,
    },
    Migration {
        sql: r#"
CREATE TABLE zone_numbers (
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    resolution TEXT NOT NULL CHECK (resolution IN ('minute', 'hour', 'day')),
    bucket INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    estimate REAL NOT NULL,
    lower REAL NOT NULL,
    upper REAL NOT NULL,
    PRIMARY KEY (zone, kind, resolution, bucket, epoch, salt_fp)
) WITHOUT ROWID;
CREATE TABLE sensor_rejects (
    sensor TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (sensor, reason)
) WITHOUT ROWID;
CREATE INDEX zone_sketches_by_age ON zone_sketches (resolution, bucket);
CREATE INDEX zone_numbers_by_age ON zone_numbers (bucket);
CREATE INDEX sensor_windows_by_age ON sensor_windows (window_start);
"#,
        fill: Some(fill_numbers),
    },
    Migration {
        sql: r#"
CREATE TABLE sensor_seen (
    sensor TEXT PRIMARY KEY,
    last_window_end INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO sensor_seen SELECT sensor, MAX(window_start + window_s) FROM sensor_windows GROUP BY sensor;
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    level INTEGER NOT NULL,
    threshold REAL,
    value REAL,
    message TEXT NOT NULL,
    UNIQUE (at, zone, kind, level)
);
"#,
        fill: None,
    },
    // A WITHOUT ROWID table stores a row bigger than ~1/20 of a page in overflow pages of its
    // own: a 1.2 KB minute sketch took 4.6 KB on disk. A rowid table packs them.
    Migration {
        sql: r#"
CREATE TABLE zone_sketches_packed (
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    resolution TEXT NOT NULL CHECK (resolution IN ('minute', 'hour', 'day')),
    bucket INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    sketch BLOB NOT NULL,
    UNIQUE (zone, kind, resolution, bucket, epoch, salt_fp)
);
INSERT INTO zone_sketches_packed SELECT zone, kind, resolution, bucket, epoch, salt_fp, sketch FROM zone_sketches;
DROP TABLE zone_sketches;
ALTER TABLE zone_sketches_packed RENAME TO zone_sketches;
CREATE INDEX zone_sketches_by_age ON zone_sketches (resolution, bucket);
"#,
        fill: None,
    },
    // Alerts are acknowledged on the server, by role, for every screen at once.
    Migration {
        sql: r#"
ALTER TABLE alerts ADD COLUMN acknowledged_at INTEGER;
ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
"#,
        fill: None,
    },
    // Minute buckets written since their hour and day last took them in (the store folds
    // them at most once a second, and before hour and day reads).
    Migration {
        sql: r#"
CREATE TABLE rollup_queue (
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    PRIMARY KEY (zone, kind, bucket, epoch, salt_fp)
) WITHOUT ROWID;
"#,
        fill: None,
    },
    // Minute numbers packed by the hour (minute_numbers.rs). A rowid table: packed rows of
    // up to 1.5 KB would overflow pages of their own in a WITHOUT ROWID one.
    Migration {
        sql: r#"
CREATE TABLE minute_numbers (
    zone TEXT NOT NULL,
    kind TEXT NOT NULL,
    hour INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    numbers BLOB NOT NULL,
    UNIQUE (zone, kind, hour, epoch, salt_fp)
);
CREATE INDEX minute_numbers_by_age ON minute_numbers (hour);
"#,
        fill: Some(pack_minute_numbers),
    },
    // Sensor windows keyed by time first: a batch holds one window of each of hundreds of
    // sensors, which a sensor-first key scattered over as many leaf pages (most of a
    // commit's writes, #19); by time they are appended to the last pages. Purging by age
    // reads the key's prefix, so the age index goes.
    Migration {
        sql: r#"
CREATE TABLE sensor_windows_by_time (
    sensor TEXT NOT NULL,
    kind TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_s INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    salt_fp TEXT NOT NULL,
    frames INTEGER NOT NULL,
    estimate REAL NOT NULL,
    PRIMARY KEY (window_start, sensor, kind, epoch, salt_fp)
) WITHOUT ROWID;
INSERT INTO sensor_windows_by_time
SELECT sensor, kind, window_start, window_s, epoch, salt_fp, frames, estimate
FROM sensor_windows;
DROP TABLE sensor_windows;
ALTER TABLE sensor_windows_by_time RENAME TO sensor_windows;
"#,
        fill: None,
    },
];

pub(super) fn migrate(conn: &mut Connection, precision: Precision) -> Result<(), StoreError> {
    conn.execute_batch(CREATE_VERSION_TABLE).map_err(db)?;
    let version: i64 = conn
        .query_row(SELECT_VERSION, [], |r| r.get(0))
        .map_err(db)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known,
        });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(migration.sql).map_err(db)?;
        if let Some(fill) = migration.fill {
            fill(&tx, precision)?;
        }
        tx.execute(INSERT_VERSION, params![i as i64 + 1])
            .map_err(db)?;
        tx.commit().map_err(db)?;
    }
    Ok(())
}

/// Version 2: numbers for the sketches stored before numbers were kept.
fn fill_numbers(tx: &Transaction<'_>, precision: Precision) -> Result<(), StoreError> {
    let mut read = tx.prepare(SELECT_ALL_SKETCHES).map_err(db)?;
    let mut rows = read.query([]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let bytes: Vec<u8> = r.get(6).map_err(db)?;
        let sketch = Sketch::from_stored(&bytes, precision)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let e = sketch.estimate();
        tx.execute(
            INSERT_NUMBER,
            params![
                r.get::<_, String>(0).map_err(db)?,
                r.get::<_, String>(1).map_err(db)?,
                r.get::<_, String>(2).map_err(db)?,
                r.get::<_, i64>(3).map_err(db)?,
                r.get::<_, String>(4).map_err(db)?,
                r.get::<_, String>(5).map_err(db)?,
                e.estimate,
                e.lower,
                e.upper
            ],
        )
        .map_err(db)?;
    }
    Ok(())
}

/// Version 7: the minute rows of `zone_numbers` packed by the hour into `minute_numbers`.
/// Rows come in key order, so an hour's minutes are neighbours (its salts interleaved).
fn pack_minute_numbers(tx: &Transaction<'_>, _: Precision) -> Result<(), StoreError> {
    type Hour = (String, String, i64);
    let started = std::time::Instant::now();
    let mut minutes = 0u64;
    let mut pending: Option<Hour> = None;
    let mut salts: BTreeMap<(String, String), Vec<Entry>> = BTreeMap::new();
    let flush = |hour: &Hour, salts: &mut BTreeMap<(String, String), Vec<Entry>>| {
        let mut write = tx.prepare_cached(UPSERT_PACKED_HOUR).map_err(db)?;
        for ((epoch, salt_fp), entries) in std::mem::take(salts) {
            write
                .execute(params![
                    hour.0,
                    hour.1,
                    hour.2,
                    epoch,
                    salt_fp,
                    encode(&entries)
                ])
                .map_err(db)?;
        }
        Ok::<_, StoreError>(())
    };
    {
        let mut read = tx.prepare(SELECT_MINUTE_NUMBER_ROWS).map_err(db)?;
        let mut rows = read.query([]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let bucket: i64 = r.get(2).map_err(db)?;
            let hour: Hour = (
                r.get(0).map_err(db)?,
                r.get(1).map_err(db)?,
                bucket.div_euclid(3600) * 3600,
            );
            if pending.as_ref() != Some(&hour)
                && let Some(done) = pending.replace(hour)
            {
                flush(&done, &mut salts)?;
            }
            let entry = Entry::at(
                bucket,
                Estimate {
                    estimate: r.get(5).map_err(db)?,
                    lower: r.get(6).map_err(db)?,
                    upper: r.get(7).map_err(db)?,
                },
            );
            salts
                .entry((r.get(3).map_err(db)?, r.get(4).map_err(db)?))
                .or_default()
                .push(entry);
            minutes += 1;
        }
    }
    if let Some(done) = pending {
        flush(&done, &mut salts)?;
    }
    tx.execute(DELETE_MINUTE_NUMBER_ROWS, []).map_err(db)?;
    if minutes > 0 {
        tracing::info!(
            minutes,
            seconds = started.elapsed().as_secs_f64(),
            "minute numbers packed by the hour (schema version 7)"
        );
    }
    Ok(())
}

/// Version 7 reads the minute rows of `zone_numbers` in key order.
pub(super) const SELECT_MINUTE_NUMBER_ROWS: &str = "
SELECT zone, kind, bucket, epoch, salt_fp, estimate, lower, upper
FROM zone_numbers
WHERE resolution = 'minute'
ORDER BY zone, kind, bucket, epoch, salt_fp";

/// And then drops them.
pub(super) const DELETE_MINUTE_NUMBER_ROWS: &str = "
DELETE
FROM zone_numbers
WHERE resolution = 'minute'";

/// The table of applied migrations.
pub(super) const CREATE_VERSION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)";

/// The latest applied migration (0: none).
pub(super) const SELECT_VERSION: &str = "
SELECT COALESCE(MAX(version), 0)
FROM schema_version";

/// Records an applied migration.
pub(super) const INSERT_VERSION: &str = "
INSERT INTO schema_version (version)
VALUES (?1)";

/// Every stored zone sketch (version 2 fills their numbers).
pub(super) const SELECT_ALL_SKETCHES: &str = "
SELECT zone, kind, resolution, bucket, epoch, salt_fp, sketch
FROM zone_sketches";

/// One filled number (version 2).
pub(super) const INSERT_NUMBER: &str = "
INSERT INTO zone_numbers
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
