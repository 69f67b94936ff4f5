//! PostgreSQL storage, shared by aggregator replicas: a few pooled connections that
//! reconnect by themselves, a versioned schema migrated under an advisory lock, and every
//! batch one transaction whose bucket upserts lock rows in one global order (so replicas
//! merging into the same bucket serialize instead of losing an update or deadlocking).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Estimate, Precision, Sketch};
use crowdflow_contract::wire::SensorId;
use jiff::Timestamp;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::{
    Alert, AlertKey, Batch, BucketQuery, PurgeReport, Resolution, Retention, SensorHealth, Store,
    StoreError, ZoneNumber, ZoneSketch, parse, timestamp,
};

mod schema;
#[cfg(any(test, feature = "testing"))]
mod scratch;
mod sql;
mod write;

#[cfg(any(test, feature = "testing"))]
pub use scratch::ScratchDatabase;
use sql::*;
use write::{fold_queued, merge_in_transaction, purge_chunk};

/// Connections per store: one for ingest, the rest for queries.
const POOL: usize = 4;

/// Rows a purge deletes per transaction.
const PURGE_CHUNK: i64 = 5_000;

/// How often a replica folds the minutes written since into their hour and day buckets.
/// Reading, merging and rewriting every touched 16 KB hour and day sketch at every commit
/// held PostgreSQL ingest at 0.36 of the broker's rate (#19). The queue is a table, so a
/// crash loses nothing, and any replica folds it before it answers an hour or day read.
const FOLD_EVERY: Duration = Duration::from_secs(1);

fn db(e: tokio_postgres::Error) -> StoreError {
    // The Display of a server error is only "db error"; its message is in the source.
    match e.as_db_error() {
        Some(d) => StoreError::Database(format!("{}: {}", d.code().code(), d.message())),
        None => StoreError::Database(e.to_string()),
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

/// Statements every connection prepares once.
struct Statements {
    upsert_sketches: Statement,
    update_sketches: Statement,
    upsert_numbers: Statement,
    upsert_windows: Statement,
    upsert_reject: Statement,
    upsert_seen: Statement,
    queue_minutes: Statement,
    claim_queued: Statement,
    select_minute_sketches: Statement,
    any_queued: Statement,
}

struct Conn {
    client: Client,
    s: Statements,
}

struct Inner {
    config: tokio_postgres::Config,
    precision: Precision,
    pool: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
    /// When this replica last folded the queued minutes.
    folded_at: SyncMutex<Instant>,
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
    /// [`FOLD_EVERY`] (tests hold the fold back).
    fold_every: Duration,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("dbname", &self.inner.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (libpq URL or key=value form) and migrates it.
    pub async fn open(url: &str, precision: Precision) -> Result<PostgresStore, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Database(format!("storage.url: {e}")))?;
        let store = PostgresStore {
            inner: Arc::new(Inner {
                config,
                precision,
                pool: (0..POOL).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(1),
                folded_at: SyncMutex::new(Instant::now()),
            }),
            fold_every: FOLD_EVERY,
        };
        schema::migrate(&connect_plain(&store.inner.config).await?).await?;
        Ok(store)
    }

    /// Connection `slot` of the pool, (re)connected if needed.
    async fn conn(&self, slot: usize) -> Result<MappedMutexGuard<'_, Conn>, StoreError> {
        let mut guard = self.inner.pool[slot % POOL].lock().await;
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            *guard = Some(connect(&self.inner.config).await?);
        }
        MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| StoreError::Database("no connection".into()))
    }

    /// Whether this replica's last fold is [`FOLD_EVERY`] ago (and if so, it is now).
    fn fold_due(&self) -> bool {
        let Ok(mut last) = self.inner.folded_at.lock() else {
            return true;
        };
        let due = last.elapsed() >= self.fold_every;
        if due {
            *last = Instant::now();
        }
        due
    }

    /// Folds the queued minutes, if any wait: before an hour or a day is read or purged.
    async fn fold_if_queued(&self) -> Result<(), StoreError> {
        let mut conn = self.reader().await?;
        let row = conn
            .client
            .query_one(&conn.s.any_queued, &[])
            .await
            .map_err(db)?;
        if get::<bool>(&row, 0)? {
            fold_queued(&mut conn, self.inner.precision).await?;
        }
        Ok(())
    }

    /// A query connection (round robin over all but the ingest one).
    async fn reader(&self) -> Result<MappedMutexGuard<'_, Conn>, StoreError> {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.conn(1 + n % (POOL - 1)).await
    }
}

async fn connect(config: &tokio_postgres::Config) -> Result<Conn, StoreError> {
    let client = connect_plain(config).await?;
    // The prepared statements below are the commit's and the fold's: one plan each, made once.
    // Left to choose, the server planned them again at every execution (their array
    // parameters change length); its malloc and free, a third of its samples at ingest, went
    // with the generic plans (#19).
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .map_err(db)?;
    let s = prepare(&client).await?;
    Ok(Conn { client, s })
}

async fn prepare(client: &Client) -> Result<Statements, StoreError> {
    Ok(Statements {
        // A conflicting upsert locks the row and returns what is stored.
        upsert_sketches: client.prepare(UPSERT_SKETCHES).await.map_err(db)?,
        update_sketches: client.prepare(UPDATE_SKETCHES).await.map_err(db)?,
        upsert_numbers: client.prepare(UPSERT_NUMBERS).await.map_err(db)?,
        upsert_windows: client.prepare(UPSERT_WINDOWS).await.map_err(db)?,
        upsert_reject: client.prepare(UPSERT_REJECT).await.map_err(db)?,
        upsert_seen: client.prepare(UPSERT_SEEN).await.map_err(db)?,
        queue_minutes: client.prepare(QUEUE_MINUTES).await.map_err(db)?,
        claim_queued: client.prepare(CLAIM_QUEUED).await.map_err(db)?,
        select_minute_sketches: client.prepare(SELECT_MINUTE_SKETCHES).await.map_err(db)?,
        any_queued: client.prepare(ANY_QUEUED).await.map_err(db)?,
    })
}

impl Store for PostgresStore {
    async fn record_epoch(
        &self,
        epoch: EpochId,
        fp: SaltFingerprint,
        authority: &str,
    ) -> Result<(), StoreError> {
        let conn = self.conn(0).await?;
        conn.client
            .execute(
                INSERT_EPOCH,
                &[
                    &epoch.to_string(),
                    &fp.to_string(),
                    &authority,
                    &Timestamp::now().as_second(),
                ],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn known_epochs(
        &self,
        since: EpochId,
    ) -> Result<Vec<(EpochId, SaltFingerprint)>, StoreError> {
        let conn = self.reader().await?;
        let rows = conn
            .client
            .query(SELECT_EPOCHS, &[&since.to_string()])
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse(get::<&str>(r, 0)?, "epoch")?,
                    parse(get::<&str>(r, 1)?, "salt fingerprint")?,
                ))
            })
            .collect()
    }

    async fn merge_batch(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn(0).await?;
        merge_in_transaction(&mut conn, self.inner.precision, batch).await?;
        if self.fold_due() {
            fold_queued(&mut conn, self.inner.precision).await?;
        }
        Ok(())
    }

    async fn zone_sketches(&self, query: BucketQuery<'_>) -> Result<Vec<ZoneSketch>, StoreError> {
        let BucketQuery {
            zone,
            kind,
            resolution,
            from,
            to,
        } = query;
        if resolution != Resolution::Minute {
            self.fold_if_queued().await?;
        }
        let conn = self.reader().await?;
        let rows = conn
            .client
            .query(
                SELECT_SKETCHES,
                &[
                    &zone.as_str(),
                    &kind.as_str(),
                    &resolution.as_str(),
                    &from.as_second(),
                    &to.as_second(),
                ],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ZoneSketch {
                    bucket: timestamp(get(r, 0)?)?,
                    epoch: parse(get::<&str>(r, 1)?, "epoch")?,
                    salt_fp: parse(get::<&str>(r, 2)?, "salt fingerprint")?,
                    sketch: Sketch::from_stored(get(r, 3)?, self.inner.precision)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn zone_numbers(&self, query: BucketQuery<'_>) -> Result<Vec<ZoneNumber>, StoreError> {
        let BucketQuery {
            zone,
            kind,
            resolution,
            from,
            to,
        } = query;
        if resolution != Resolution::Minute {
            self.fold_if_queued().await?;
        }
        let conn = self.reader().await?;
        let rows = conn
            .client
            .query(
                SELECT_NUMBERS,
                &[
                    &zone.as_str(),
                    &kind.as_str(),
                    &resolution.as_str(),
                    &from.as_second(),
                    &to.as_second(),
                ],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ZoneNumber {
                    bucket: timestamp(get(r, 0)?)?,
                    epoch: parse(get::<&str>(r, 1)?, "epoch")?,
                    salt_fp: parse(get::<&str>(r, 2)?, "salt fingerprint")?,
                    devices: Estimate {
                        estimate: get(r, 3)?,
                        lower: get(r, 4)?,
                        upper: get(r, 5)?,
                    },
                })
            })
            .collect()
    }

    async fn sensor_health(&self) -> Result<Vec<SensorHealth>, StoreError> {
        let conn = self.reader().await?;
        let rows = conn.client.query(SELECT_HEALTH, &[]).await.map_err(db)?;
        let mut health = super::HealthBuilder::default();
        for r in &rows {
            let reason: Option<String> = get(r, 3)?;
            let count: Option<i64> = get(r, 4)?;
            health.add(get(r, 0)?, get(r, 1)?, get(r, 2)?, reason.zip(count))?;
        }
        Ok(health.finish())
    }

    async fn sensors_seen(&self) -> Result<Vec<(SensorId, Timestamp)>, StoreError> {
        let conn = self.reader().await?;
        let rows = conn.client.query(SELECT_SEEN, &[]).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse(get::<&str>(r, 0)?, "sensor id")?,
                    timestamp(get(r, 1)?)?,
                ))
            })
            .collect()
    }

    async fn record_alert(&self, alert: Alert) -> Result<Option<i64>, StoreError> {
        let conn = self.conn(0).await?;
        let row = conn
            .client
            .query_opt(
                INSERT_ALERT,
                &[
                    &alert.at.as_second(),
                    &alert.zone.as_str(),
                    &alert.kind.as_str(),
                    &alert.level.map_or(-1, i64::from),
                    &alert.threshold,
                    &alert.value,
                    &alert.message,
                ],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn acknowledge_alert(
        &self,
        key: AlertKey,
        role: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let conn = self.conn(0).await?;
        let n = conn
            .client
            .execute(
                ACKNOWLEDGE_ALERT,
                &[
                    &at.as_second(),
                    &role,
                    &key.at.as_second(),
                    &key.zone.as_str(),
                    &key.kind.as_str(),
                    &key.level.map_or(-1, i64::from),
                ],
            )
            .await
            .map_err(db)?;
        Ok(n == 1)
    }

    async fn alerts(&self, since: Timestamp, limit: u32) -> Result<Vec<Alert>, StoreError> {
        let conn = self.reader().await?;
        let rows = conn
            .client
            .query(SELECT_ALERTS, &[&since.as_second(), &i64::from(limit)])
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Alert {
                    id: get(r, 0)?,
                    at: timestamp(get(r, 1)?)?,
                    zone: parse(get::<&str>(r, 2)?, "zone id")?,
                    kind: parse(get::<&str>(r, 3)?, "alert kind")?,
                    level: u8::try_from(get::<i64>(r, 4)?).ok(),
                    threshold: get(r, 5)?,
                    value: get(r, 6)?,
                    message: get(r, 7)?,
                    acknowledged_at: get::<Option<i64>>(r, 8)?.map(timestamp).transpose()?,
                    acknowledged_by: get(r, 9)?,
                })
            })
            .collect()
    }

    async fn purge(&self, retention: Retention, now: Timestamp) -> Result<PurgeReport, StoreError> {
        // A queued minute purged before its fold would never reach its hour.
        self.fold_if_queued().await?;
        super::purge_in_chunks(|| async move {
            let mut conn = self.reader().await?;
            purge_chunk(&mut conn.client, retention, now).await
        })
        .await
    }
}

async fn connect_plain(config: &tokio_postgres::Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL connection closed: {}", db(e));
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::schema::MIGRATIONS;
    use super::*;
    use crate::store::Resolution;
    use crate::zone::ZoneId;
    use crowdflow_contract::identity::Kind;
    use crowdflow_contract::sketch::SketchUnion;

    /// The server the PostgreSQL tests use; `scripts/test.sh` starts one and sets this
    /// (the whole-system tests read the same variable).
    const SERVER_ENV: &str = "CROWDFLOW_TEST_POSTGRES";

    async fn open() -> (PostgresStore, ScratchDatabase) {
        let Ok(server) = std::env::var(SERVER_ENV) else {
            panic!(
                "{SERVER_ENV} is not set: run `bash scripts/test.sh` (it starts a PostgreSQL), or set it to a server URL such as postgres://postgres@127.0.0.1:5432/postgres"
            )
        };
        let scratch = ScratchDatabase::create(&server).await.expect("scratch db");
        let store = PostgresStore::open(scratch.url(), Precision::DEFAULT)
            .await
            .expect("open");
        (store, scratch)
    }

    super::super::suite::store_suite!(open());

    #[tokio::test]
    async fn replicas_opening_together_migrate_once() {
        let (store, scratch) = open().await;
        let (a, b) = tokio::join!(
            PostgresStore::open(scratch.url(), Precision::DEFAULT),
            PostgresStore::open(scratch.url(), Precision::DEFAULT)
        );
        a.expect("replica a");
        b.expect("replica b");
        let conn = store.conn(0).await.expect("conn");
        let row = conn
            .client
            .query_one("SELECT COUNT(*) FROM schema_version", &[])
            .await
            .expect("versions");
        assert_eq!(row.get::<_, i64>(0), MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_with_advice() {
        let (store, scratch) = open().await;
        store
            .conn(0)
            .await
            .expect("conn")
            .client
            .batch_execute("INSERT INTO schema_version (version) VALUES (99)")
            .await
            .expect("bump");
        let err = PostgresStore::open(scratch.url(), Precision::DEFAULT)
            .await
            .expect_err("too new");
        assert!(err.to_string().contains("upgrade crowdflow"), "{err}");
    }

    #[tokio::test]
    async fn concurrent_replicas_merging_one_bucket_lose_nothing() {
        // Both fold after every batch, so folds race with each other and with batches.
        let (mut store, scratch) = open().await;
        store.fold_every = Duration::ZERO;
        let mut other = PostgresStore::open(scratch.url(), Precision::DEFAULT)
            .await
            .expect("replica");
        other.fold_every = Duration::ZERO;
        let at: Timestamp = "2026-04-27T10:00:00Z".parse().expect("ts");
        let message = |sensor: &str, devices: std::ops::Range<u64>| {
            let mut sketch = Sketch::new(Precision::DEFAULT);
            for i in devices {
                sketch.insert_bytes(&i.to_le_bytes());
            }
            super::super::Accepted {
                sensor: SensorId::new(sensor).expect("id"),
                zone: ZoneId::new("neude").expect("id"),
                kind: Kind::Ble,
                window_start: at,
                window_s: 60,
                epoch: "2026-04-27".parse().expect("epoch"),
                salt_fp: "0123456789abcdef".parse().expect("fp"),
                frames: 1,
                sketch,
            }
        };
        for round in 0..20u64 {
            let a = Batch {
                accepted: vec![message("s1", round * 100..round * 100 + 100)],
                rejects: Vec::new(),
            };
            let b = Batch {
                accepted: vec![message(
                    "s2",
                    10_000 + round * 100..10_000 + round * 100 + 100,
                )],
                rejects: Vec::new(),
            };
            let (ra, rb) = tokio::join!(store.merge_batch(a), other.merge_batch(b));
            ra.expect("a");
            rb.expect("b");
        }
        for resolution in Resolution::ALL {
            let sketches = store
                .zone_sketches(BucketQuery {
                    zone: &ZoneId::new("neude").expect("id"),
                    kind: Kind::Ble,
                    resolution,
                    from: timestamp(resolution.bucket(at)).expect("bucket"),
                    to: at + jiff::SignedDuration::from_secs(60),
                })
                .await
                .expect("read");
            assert_eq!(sketches.len(), 1, "{resolution:?}");
            let estimate = sketches[0].sketch.estimate();
            assert!(
                estimate.lower <= 4000.0 && 4000.0 <= estimate.upper,
                "no update lost in the {resolution:?}: {estimate:?}"
            );
        }
    }

    /// A fold waits for a batch that queued a minute it claims, and reads the minute as
    /// that batch left it: a batch that has written its minute but not committed when a
    /// replica folds still reaches the hour.
    #[tokio::test]
    async fn a_fold_waits_for_the_batch_that_queued_its_minute() {
        use crate::store::suite::{accepted, batch, neude_hour, ts};
        let at = ts("2026-04-27T10:00:00Z");
        let (mut store, scratch) = open().await;
        store.fold_every = Duration::MAX;
        store
            .merge_batch(batch(vec![accepted("s1", at, 0..500)]))
            .await
            .expect("first batch");
        // Another replica's batch, paused between its writes and its commit.
        let mut raw = connect_plain(&scratch.url().parse().expect("url"))
            .await
            .expect("raw");
        let tx = raw.transaction().await.expect("tx");
        let mut both = SketchUnion::new(Precision::DEFAULT);
        for m in [
            accepted("s1", at, 0..500),
            accepted("s2", at, 10_000..11_000),
        ] {
            both.add(&m.sketch);
        }
        let key = (
            vec!["neude"],
            vec![Kind::WifiRandom.as_str()],
            vec![at.as_second()],
            vec!["2026-04-27"],
            vec!["0123456789abcdef"],
        );
        tx.execute(
            "UPDATE zone_sketches SET sketch = $1 WHERE resolution = 'minute'",
            &[&both.to_sketch().encode()],
        )
        .await
        .expect("minute written");
        tx.execute(QUEUE_MINUTES, &[&key.0, &key.1, &key.2, &key.3, &key.4])
            .await
            .expect("minute queued");
        let read_hour = tokio::spawn({
            let store = store.clone();
            async move { neude_hour(&store).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!read_hour.is_finished(), "the fold waits for the batch");
        tx.commit().await.expect("commit");
        let devices = read_hour.await.expect("task");
        assert!(
            devices.lower <= 1_500.0 && 1_500.0 <= devices.upper,
            "the paused batch reached the hour: {devices:?}"
        );
    }

    /// Minutes queued and not folded when a replica dies reach their hour and day when any
    /// replica reads them, and the hour then holds what folding at every batch gave.
    #[tokio::test]
    async fn queued_minutes_reach_their_hour_and_day_at_the_next_read() {
        use crate::store::suite::{batches_of_one_hour as batches, neude_hour as hour};
        let (mut eager, _eager_db) = open().await;
        eager.fold_every = Duration::ZERO;
        for b in batches() {
            eager.merge_batch(b).await.expect("ingest");
        }
        let eager = hour(&eager).await;
        let (mut dying, scratch) = open().await;
        dying.fold_every = Duration::MAX;
        for b in batches() {
            dying.merge_batch(b).await.expect("ingest");
        }
        drop(dying);
        let raw = connect_plain(&scratch.url().parse().expect("url"))
            .await
            .expect("raw");
        let count = async |sql: &str| -> i64 { raw.query_one(sql, &[]).await.expect(sql).get(0) };
        let coarse = "SELECT count(*) FROM zone_sketches WHERE resolution <> 'minute'";
        assert_eq!(count(coarse).await, 0, "nothing folded before the crash");
        assert_eq!(count("SELECT count(*) FROM rollup_queue").await, 4);
        let replica = PostgresStore::open(scratch.url(), Precision::DEFAULT)
            .await
            .expect("replica");
        assert_eq!(hour(&replica).await, eager);
        assert_eq!(count("SELECT count(*) FROM rollup_queue").await, 0);
        assert_eq!(count(coarse).await, 2, "an hour and a day");
        assert!(
            (eager.estimate - 1_340.0).abs() < 0.05 * 1_340.0,
            "{eager:?}"
        );
    }
}
