//! SQLite storage: one file, WAL, versioned schema, every batch one transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::wire::SensorId;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Alert, AlertKey, Batch, BucketQuery, PurgeReport, Retention, SensorHealth, Store, StoreError,
    ZoneNumber, ZoneSketch, count_rejects, parse, timestamp, union_by_bucket,
};

mod schema;
mod sql;

use sql::*;

/// Rows a purge deletes per transaction, so ingest is never blocked for long.
const PURGE_CHUNK: i64 = 5_000;

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
        schema::migrate(&mut conn, precision)?;
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

fn merge_in_transaction(
    conn: &mut Connection,
    precision: Precision,
    batch: Batch,
) -> Result<(), StoreError> {
    let unions = union_by_bucket(&batch.accepted, precision);
    let tx = conn.transaction().map_err(db)?;
    {
        let mut read = tx.prepare_cached(SELECT_BUCKET_SKETCH).map_err(db)?;
        let mut write = tx.prepare_cached(UPSERT_SKETCH).map_err(db)?;
        let mut number = tx.prepare_cached(UPSERT_NUMBER).map_err(db)?;
        for (k, mut union) in unions {
            let stored: Option<Vec<u8>> = read
                .query_row(
                    params![
                        k.zone,
                        k.kind,
                        k.resolution.as_str(),
                        k.bucket,
                        k.epoch,
                        k.salt_fp
                    ],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if let Some(bytes) = stored {
                let sketch = Sketch::from_stored(&bytes, precision).map_err(|e| {
                    StoreError::Corrupt(format!("zone {} bucket {}: {e}", k.zone, k.bucket))
                })?;
                union.add(&sketch);
            }
            let merged = union.to_sketch();
            let e = merged.estimate();
            let (zone, kind, res) = (&k.zone, k.kind, k.resolution.as_str());
            write
                .execute(params![
                    zone,
                    kind,
                    res,
                    k.bucket,
                    k.epoch,
                    k.salt_fp,
                    super::stored_form(k.resolution, &merged)
                ])
                .map_err(db)?;
            number
                .execute(params![
                    zone, kind, res, k.bucket, k.epoch, k.salt_fp, e.estimate, e.lower, e.upper
                ])
                .map_err(db)?;
        }
        let mut window = tx.prepare_cached(UPSERT_WINDOW).map_err(db)?;
        let mut seen = tx.prepare_cached(UPSERT_SEEN).map_err(db)?;
        for m in &batch.accepted {
            seen.execute(params![
                m.sensor.as_str(),
                m.window_start.as_second() + i64::from(m.window_s)
            ])
            .map_err(db)?;
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
        let mut reject = tx.prepare_cached(UPSERT_REJECT).map_err(db)?;
        for ((sensor, reason), n) in count_rejects(&batch.rejects) {
            reject.execute(params![sensor, reason, n]).map_err(db)?;
        }
    }
    tx.commit().map_err(db)
}

/// Deletes at most [`PURGE_CHUNK`] rows of each expired kind in one transaction.
fn purge_chunk(
    conn: &mut Connection,
    retention: Retention,
    now: Timestamp,
) -> Result<PurgeReport, StoreError> {
    let tx = conn.transaction().map_err(db)?;
    let mut report = PurgeReport::default();
    for (resolution, before) in retention.sketch_cutoffs(now) {
        report.sketches += tx
            .execute(
                PURGE_SKETCHES,
                params![resolution.as_str(), before, PURGE_CHUNK],
            )
            .map_err(db)? as u64;
    }
    if let Some(before) = retention.number_cutoff(now) {
        report.numbers += tx
            .execute(PURGE_NUMBERS, params![before, PURGE_CHUNK])
            .map_err(db)? as u64;
    }
    report.sensor_windows += tx
        .execute(
            PURGE_WINDOWS,
            params![retention.window_cutoff(now), PURGE_CHUNK],
        )
        .map_err(db)? as u64;
    tx.commit().map_err(db)?;
    Ok(report)
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
                INSERT_EPOCH,
                params![
                    epoch.to_string(),
                    fp.to_string(),
                    authority,
                    Timestamp::now().as_second()
                ],
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
            let mut stmt = conn.prepare(SELECT_EPOCHS).map_err(db)?;
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

    async fn merge_batch(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.with(move |conn, precision| merge_in_transaction(conn, precision, batch))
            .await
    }

    async fn zone_sketches(&self, query: BucketQuery<'_>) -> Result<Vec<ZoneSketch>, StoreError> {
        let BucketQuery {
            zone,
            kind,
            resolution,
            from,
            to,
        } = query;
        let zone = zone.to_string();
        self.with(move |conn, precision| {
            let mut stmt = conn.prepare_cached(SELECT_SKETCHES).map_err(db)?;
            let rows = stmt
                .query_map(
                    params![
                        zone,
                        kind.as_str(),
                        resolution.as_str(),
                        from.as_second(),
                        to.as_second()
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Vec<u8>>(3)?,
                        ))
                    },
                )
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (bucket, epoch, fp, bytes) = row.map_err(db)?;
                out.push(ZoneSketch {
                    bucket: timestamp(bucket)?,
                    epoch: parse(&epoch, "epoch")?,
                    salt_fp: parse(&fp, "salt fingerprint")?,
                    sketch: Sketch::from_stored(&bytes, precision)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn zone_numbers(&self, query: BucketQuery<'_>) -> Result<Vec<ZoneNumber>, StoreError> {
        let BucketQuery {
            zone,
            kind,
            resolution,
            from,
            to,
        } = query;
        let zone = zone.to_string();
        self.with(move |conn, _| {
            let mut stmt = conn.prepare_cached(SELECT_NUMBERS).map_err(db)?;
            let rows = stmt
                .query_map(
                    params![
                        zone,
                        kind.as_str(),
                        resolution.as_str(),
                        from.as_second(),
                        to.as_second()
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, f64>(3)?,
                            r.get::<_, f64>(4)?,
                            r.get::<_, f64>(5)?,
                        ))
                    },
                )
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (bucket, epoch, fp, estimate, lower, upper) = row.map_err(db)?;
                out.push(ZoneNumber {
                    bucket: timestamp(bucket)?,
                    epoch: parse(&epoch, "epoch")?,
                    salt_fp: parse(&fp, "salt fingerprint")?,
                    devices: crowdflow_contract::sketch::Estimate {
                        estimate,
                        lower,
                        upper,
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    async fn sensor_health(&self) -> Result<Vec<SensorHealth>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn.prepare(SELECT_HEALTH).map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })
                .map_err(db)?;
            let mut health = super::HealthBuilder::default();
            for row in rows {
                let (sensor, last, frames, reason, count) = row.map_err(db)?;
                health.add(&sensor, last, frames, reason.zip(count))?;
            }
            Ok(health.finish())
        })
        .await
    }

    async fn sensors_seen(&self) -> Result<Vec<(SensorId, Timestamp)>, StoreError> {
        self.with(|conn, _| {
            let mut stmt = conn.prepare_cached(SELECT_SEEN).map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (sensor, end) = row.map_err(db)?;
                out.push((parse(&sensor, "sensor id")?, timestamp(end)?));
            }
            Ok(out)
        })
        .await
    }

    async fn record_alert(&self, alert: Alert) -> Result<Option<i64>, StoreError> {
        self.with(move |conn, _| {
            conn.query_row(
                INSERT_ALERT,
                params![
                    alert.at.as_second(),
                    alert.zone.as_str(),
                    alert.kind.as_str(),
                    alert.level.map_or(-1, i64::from),
                    alert.threshold,
                    alert.value,
                    alert.message
                ],
                |row| row.get(0),
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn acknowledge_alert(
        &self,
        key: AlertKey,
        role: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let role = role.to_owned();
        self.with(move |conn, _| {
            let n = conn
                .execute(
                    ACKNOWLEDGE_ALERT,
                    params![
                        at.as_second(),
                        role,
                        key.at.as_second(),
                        key.zone.as_str(),
                        key.kind.as_str(),
                        key.level.map_or(-1, i64::from)
                    ],
                )
                .map_err(db)?;
            Ok(n == 1)
        })
        .await
    }

    async fn alerts(&self, since: Timestamp, limit: u32) -> Result<Vec<Alert>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn.prepare_cached(SELECT_ALERTS).map_err(db)?;
            let rows = stmt
                .query_map(params![since.as_second(), limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<f64>>(5)?,
                        r.get::<_, Option<f64>>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, Option<i64>>(8)?,
                        r.get::<_, Option<String>>(9)?,
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at, zone, kind, level, threshold, value, message, acked_at, acked_by) =
                    row.map_err(db)?;
                out.push(Alert {
                    id,
                    at: timestamp(at)?,
                    zone: parse(&zone, "zone id")?,
                    kind: parse(&kind, "alert kind")?,
                    level: u8::try_from(level).ok(),
                    threshold,
                    value,
                    message,
                    acknowledged_at: acked_at.map(timestamp).transpose()?,
                    acknowledged_by: acked_by,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn purge(&self, retention: Retention, now: Timestamp) -> Result<PurgeReport, StoreError> {
        super::purge_in_chunks(|| self.with(move |conn, _| purge_chunk(conn, retention, now))).await
    }
}

#[cfg(test)]
mod tests {
    use super::schema::MIGRATIONS;
    use super::*;
    use crate::store::Resolution;
    use crate::zone::ZoneId;
    use crowdflow_contract::identity::Kind;

    async fn open() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqliteStore::open(&dir.path().join("db/crowdflow.db"), Precision::DEFAULT)
            .expect("open");
        (store, dir)
    }

    super::super::suite::store_suite!(open());

    #[tokio::test]
    async fn epochs_survive_a_reopen() {
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
        }
        let store = SqliteStore::open(&path, Precision::DEFAULT).expect("reopen");
        assert_eq!(
            store
                .known_epochs("2026-04-01".parse().expect("epoch"))
                .await
                .expect("read"),
            vec![(epoch, fp)]
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

    #[tokio::test]
    async fn a_version_1_database_gets_numbers_for_its_sketches() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("crowdflow.db");
        let mut s = Sketch::new(Precision::DEFAULT);
        for i in 0u64..500 {
            s.insert_bytes(&i.to_le_bytes());
        }
        {
            let mut conn = Connection::open(&path).expect("raw");
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);",
            )
            .expect("v1 marker");
            let tx = conn.transaction().expect("tx");
            tx.execute_batch(MIGRATIONS[0].sql).expect("v1 schema");
            tx.execute(
                "INSERT INTO zone_sketches VALUES ('neude', 'wifi_random', 'hour', 1777284000, '2026-04-27', '0123456789abcdef', ?1)",
                params![s.encode()],
            )
            .expect("v1 row");
            tx.commit().expect("commit");
        }
        let store = SqliteStore::open(&path, Precision::DEFAULT).expect("migrate");
        let numbers = store
            .zone_numbers(BucketQuery {
                zone: &ZoneId::new("neude").expect("id"),
                kind: Kind::WifiRandom,
                resolution: Resolution::Hour,
                from: Timestamp::from_second(1777284000).expect("ts"),
                to: Timestamp::from_second(1777287600).expect("ts"),
            })
            .await
            .expect("numbers");
        assert_eq!(numbers.len(), 1);
        assert_eq!(numbers[0].devices.estimate.round(), 500.0);
    }

    #[tokio::test]
    async fn a_large_purge_goes_in_chunks_and_finishes() {
        let (store, _dir) = open().await;
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let accepted: Vec<_> = (0..(PURGE_CHUNK + 100))
            .map(|i| super::super::Accepted {
                sensor: SensorId::new("s1").expect("id"),
                zone: ZoneId::new("neude").expect("id"),
                kind: Kind::Ble,
                window_start: start + jiff::SignedDuration::from_secs(60 * i),
                window_s: 60,
                epoch: "2026-01-01".parse().expect("epoch"),
                salt_fp: "0123456789abcdef".parse().expect("fp"),
                frames: 1,
                sketch: Sketch::new(Precision::DEFAULT),
            })
            .collect();
        store
            .merge_batch(Batch {
                accepted,
                rejects: Vec::new(),
            })
            .await
            .expect("ingest");
        let report = store
            .purge(
                Retention::default(),
                "2027-01-01T00:00:00Z".parse().expect("ts"),
            )
            .await
            .expect("purge");
        assert_eq!(report.sensor_windows, PURGE_CHUNK as u64 + 100);
        assert!(report.sketches > PURGE_CHUNK as u64, "{report:?}");
    }
}
