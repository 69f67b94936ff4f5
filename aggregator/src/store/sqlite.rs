//! SQLite storage: one file, WAL, versioned schema, every batch one transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Precision, Sketch, SketchUnion};
use crowdflow_contract::wire::SensorId;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Accepted, Resolution, SensorHealth, Store, StoreError, ZoneSketch};

/// Schema migrations, applied in order; the index + 1 is the version.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    precision: Precision,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path, precision: Precision) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            precision,
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, Precision) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let precision = self.precision;
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Database("connection lock poisoned".into()))?;
            f(&mut guard, precision)
        })
        .await
        .map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(db)?;
    let version: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![i as i64 + 1],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
    }
    Ok(())
}

type Key = (String, &'static str, Resolution, i64, String, String);

fn ingest_batch(
    conn: &mut Connection,
    precision: Precision,
    batch: Vec<Accepted>,
) -> Result<(), StoreError> {
    // Union the batch in memory first: one read-merge-write per bucket, not per message.
    let mut unions: BTreeMap<Key, SketchUnion> = BTreeMap::new();
    for m in &batch {
        for resolution in Resolution::ALL {
            let key = (
                m.zone.to_string(),
                m.kind.as_str(),
                resolution,
                resolution.bucket(m.window_start),
                m.epoch.to_string(),
                m.salt_fp.to_string(),
            );
            unions
                .entry(key)
                .or_insert_with(|| SketchUnion::new(precision))
                .add(&m.sketch);
        }
    }
    let tx = conn.transaction().map_err(db)?;
    {
        let mut read = tx
            .prepare_cached("SELECT sketch FROM zone_sketches WHERE zone = ?1 AND kind = ?2 AND resolution = ?3 AND bucket = ?4 AND epoch = ?5 AND salt_fp = ?6")
            .map_err(db)?;
        let mut write = tx
            .prepare_cached("INSERT INTO zone_sketches (zone, kind, resolution, bucket, epoch, salt_fp, sketch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (zone, kind, resolution, bucket, epoch, salt_fp) DO UPDATE SET sketch = excluded.sketch")
            .map_err(db)?;
        for ((zone, kind, resolution, bucket, epoch, fp), mut union) in unions {
            let stored: Option<Vec<u8>> = read
                .query_row(
                    params![zone, kind, resolution.as_str(), bucket, epoch, fp],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if let Some(bytes) = stored {
                let sketch = Sketch::from_stored(&bytes, precision).map_err(|e| {
                    StoreError::Corrupt(format!("zone {zone} bucket {bucket}: {e}"))
                })?;
                union.add(&sketch);
            }
            write
                .execute(params![
                    zone,
                    kind,
                    resolution.as_str(),
                    bucket,
                    epoch,
                    fp,
                    union.to_sketch().encode()
                ])
                .map_err(db)?;
        }
        let mut window = tx
            .prepare_cached("INSERT INTO sensor_windows (sensor, kind, window_start, window_s, epoch, salt_fp, frames, estimate) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (sensor, kind, window_start, epoch, salt_fp) DO UPDATE SET frames = MAX(frames, excluded.frames), estimate = MAX(estimate, excluded.estimate)")
            .map_err(db)?;
        for m in &batch {
            window
                .execute(params![
                    m.sensor.as_str(),
                    m.kind.as_str(),
                    m.window_start.as_second(),
                    m.window_s,
                    m.epoch.to_string(),
                    m.salt_fp.to_string(),
                    i64::try_from(m.frames).unwrap_or(i64::MAX),
                    m.sketch.estimate().estimate
                ])
                .map_err(db)?;
        }
    }
    tx.commit().map_err(db)
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("stored {what} does not parse")))
}

impl Store for SqliteStore {
    async fn record_epoch(
        &self,
        epoch: EpochId,
        fp: SaltFingerprint,
        authority: &str,
    ) -> Result<(), StoreError> {
        let authority = authority.to_owned();
        self.with(move |conn, _| {
            conn.execute(
                "INSERT INTO salt_epochs (epoch, salt_fp, authority, recorded_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![epoch.to_string(), fp.to_string(), authority, Timestamp::now().as_second()],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn known_epochs(
        &self,
        since: EpochId,
    ) -> Result<Vec<(EpochId, SaltFingerprint)>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn
                .prepare("SELECT epoch, salt_fp FROM salt_epochs WHERE epoch >= ?1 ORDER BY epoch")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![since.to_string()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (e, f) = row.map_err(db)?;
                out.push((parse(&e, "epoch")?, parse(&f, "salt fingerprint")?));
            }
            Ok(out)
        })
        .await
    }

    async fn ingest(&self, batch: Vec<Accepted>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.with(move |conn, precision| ingest_batch(conn, precision, batch))
            .await
    }

    async fn zone_sketches(
        &self,
        zone: &SensorId,
        kind: Kind,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ZoneSketch>, StoreError> {
        let zone = zone.to_string();
        self.with(move |conn, precision| {
            let mut stmt = conn
                .prepare_cached("SELECT bucket, epoch, salt_fp, sketch FROM zone_sketches WHERE zone = ?1 AND kind = ?2 AND resolution = ?3 AND bucket >= ?4 AND bucket < ?5 ORDER BY bucket, epoch, salt_fp")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![zone, kind.as_str(), resolution.as_str(), from.as_second(), to.as_second()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Vec<u8>>(3)?))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (bucket, epoch, fp, bytes) = row.map_err(db)?;
                out.push(ZoneSketch {
                    bucket: Timestamp::from_second(bucket).map_err(|_| StoreError::Corrupt("bucket out of range".into()))?,
                    epoch: parse(&epoch, "epoch")?,
                    salt_fp: parse(&fp, "salt fingerprint")?,
                    sketch: Sketch::from_stored(&bytes, precision).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn sensor_health(&self) -> Result<Vec<SensorHealth>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn.prepare("SELECT sensor, MAX(window_start), SUM(frames) FROM sensor_windows GROUP BY sensor ORDER BY sensor").map_err(db)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, i64>(2)?))).map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (sensor, last, frames) = row.map_err(db)?;
                out.push(SensorHealth {
                    sensor: parse(&sensor, "sensor id")?,
                    last_window: last.and_then(|s| Timestamp::from_second(s).ok()),
                    frames: u64::try_from(frames).unwrap_or(0),
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(range: std::ops::Range<u64>) -> Sketch {
        let mut s = Sketch::new(Precision::DEFAULT);
        for i in range {
            s.insert_bytes(&i.to_le_bytes());
        }
        s
    }

    fn accepted(sensor: &str, minute: &str, devices: std::ops::Range<u64>) -> Accepted {
        Accepted {
            sensor: SensorId::new(sensor).expect("id"),
            zone: SensorId::new("neude").expect("id"),
            kind: Kind::WifiRandom,
            window_start: minute.parse().expect("ts"),
            window_s: 60,
            epoch: "2026-04-27".parse().expect("epoch"),
            salt_fp: "0123456789abcdef".parse().expect("fp"),
            frames: devices.end - devices.start,
            sketch: sketch(devices),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    #[tokio::test]
    async fn two_sensors_in_a_zone_are_unioned_and_replays_change_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqliteStore::open(&dir.path().join("db/crowdflow.db"), Precision::DEFAULT)
            .expect("open");
        let zone = SensorId::new("neude").expect("id");
        let batch = vec![
            accepted("s1", "2026-04-27T10:00:00Z", 0..600),
            accepted("s2", "2026-04-27T10:00:00Z", 400..1000),
            accepted("s1", "2026-04-27T10:01:00Z", 0..100),
        ];
        store.ingest(batch.clone()).await.expect("ingest");
        store.ingest(batch).await.expect("replay");
        let minutes = store
            .zone_sketches(
                &zone,
                Kind::WifiRandom,
                Resolution::Minute,
                ts("2026-04-27T10:00:00Z"),
                ts("2026-04-27T11:00:00Z"),
            )
            .await
            .expect("read");
        assert_eq!(minutes.len(), 2);
        assert_eq!(minutes[0].sketch.estimate().estimate.round(), 1000.0);
        assert_eq!(minutes[1].sketch.estimate().estimate.round(), 100.0);
        let hours = store
            .zone_sketches(
                &zone,
                Kind::WifiRandom,
                Resolution::Hour,
                ts("2026-04-27T00:00:00Z"),
                ts("2026-04-28T00:00:00Z"),
            )
            .await
            .expect("read");
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].sketch.estimate().estimate.round(), 1000.0);
        let health = store.sensor_health().await.expect("health");
        assert_eq!(health.len(), 2);
        assert_eq!(health[0].frames, 700, "replays do not double frame totals");
        assert_eq!(health[0].last_window, Some(ts("2026-04-27T10:01:00Z")));
    }

    #[tokio::test]
    async fn epochs_and_schema_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("crowdflow.db");
        let epoch: EpochId = "2026-04-27".parse().expect("epoch");
        let fp: SaltFingerprint = "0123456789abcdef".parse().expect("fp");
        {
            let store = SqliteStore::open(&path, Precision::DEFAULT).expect("open");
            store
                .record_epoch(epoch, fp, "agg-1")
                .await
                .expect("record");
            store
                .record_epoch(epoch, fp, "agg-1")
                .await
                .expect("idempotent");
        }
        let store = SqliteStore::open(&path, Precision::DEFAULT).expect("reopen");
        assert_eq!(
            store
                .known_epochs("2026-04-01".parse().expect("epoch"))
                .await
                .expect("read"),
            vec![(epoch, fp)]
        );
        assert!(
            store
                .known_epochs("2026-04-28".parse().expect("epoch"))
                .await
                .expect("read")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_with_advice() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("crowdflow.db");
        drop(SqliteStore::open(&path, Precision::DEFAULT).expect("open"));
        Connection::open(&path)
            .expect("raw")
            .execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .expect("bump");
        let err = SqliteStore::open(&path, Precision::DEFAULT).expect_err("too new");
        assert!(err.to_string().contains("upgrade crowdflow"), "{err}");
    }
}
