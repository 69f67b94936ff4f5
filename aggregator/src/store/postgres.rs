//! PostgreSQL storage, shared by aggregator replicas: a few pooled connections that
//! reconnect by themselves, a versioned schema migrated under an advisory lock, and every
//! batch one transaction whose bucket upserts lock rows in one global order (so replicas
//! merging into the same bucket serialize instead of losing an update or deadlocking).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Estimate, Precision, Sketch};
use crowdflow_contract::wire::SensorId;
use jiff::Timestamp;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::{
    Alert, Batch, PurgeReport, Resolution, Retention, SensorHealth, Store, StoreError, ZoneNumber,
    ZoneSketch, count_rejects, parse, timestamp, union_by_bucket,
};

/// Schema migrations, applied in order; the index + 1 is the version.
const MIGRATIONS: &[&str] = &[
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
];

/// Any constant shared by all crowdflow replicas: the key of the migration lock.
const MIGRATION_LOCK: i64 = 0x6372_6f77_6466_6c6f;

/// Connections per store: one for ingest, the rest for queries.
const POOL: usize = 4;

/// Rows a purge deletes per transaction.
const PURGE_CHUNK: i64 = 5_000;

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
    upsert_sketch: Statement,
    update_sketch: Statement,
    upsert_number: Statement,
    upsert_windows: Statement,
    upsert_reject: Statement,
    upsert_seen: Statement,
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
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
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
            }),
        };
        migrate(&connect_plain(&store.inner.config).await?).await?;
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

    /// A query connection (round robin over all but the ingest one).
    async fn reader(&self) -> Result<MappedMutexGuard<'_, Conn>, StoreError> {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.conn(1 + n % (POOL - 1)).await
    }
}

async fn connect(config: &tokio_postgres::Config) -> Result<Conn, StoreError> {
    let client = connect_plain(config).await?;
    let s = prepare(&client).await?;
    Ok(Conn { client, s })
}

async fn prepare(client: &Client) -> Result<Statements, StoreError> {
    Ok(Statements {
        // A conflicting upsert locks the row and returns what is stored.
        upsert_sketch: client
            .prepare("INSERT INTO zone_sketches (zone, kind, resolution, bucket, epoch, salt_fp, sketch) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (zone, kind, resolution, bucket, epoch, salt_fp) DO UPDATE SET sketch = zone_sketches.sketch RETURNING sketch")
            .await
            .map_err(db)?,
        update_sketch: client
            .prepare("UPDATE zone_sketches SET sketch = $7 WHERE zone = $1 AND kind = $2 AND resolution = $3 AND bucket = $4 AND epoch = $5 AND salt_fp = $6")
            .await
            .map_err(db)?,
        upsert_number: client
            .prepare("INSERT INTO zone_numbers (zone, kind, resolution, bucket, epoch, salt_fp, estimate, lower, upper) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (zone, kind, resolution, bucket, epoch, salt_fp) DO UPDATE SET estimate = excluded.estimate, lower = excluded.lower, upper = excluded.upper")
            .await
            .map_err(db)?,
        upsert_windows: client
            .prepare("INSERT INTO sensor_windows (sensor, kind, window_start, window_s, epoch, salt_fp, frames, estimate) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::float8[]) ON CONFLICT (sensor, kind, window_start, epoch, salt_fp) DO UPDATE SET frames = GREATEST(sensor_windows.frames, excluded.frames), estimate = GREATEST(sensor_windows.estimate, excluded.estimate)")
            .await
            .map_err(db)?,
        upsert_reject: client
            .prepare("INSERT INTO sensor_rejects (sensor, reason, count) VALUES ($1, $2, $3) ON CONFLICT (sensor, reason) DO UPDATE SET count = sensor_rejects.count + excluded.count")
            .await
            .map_err(db)?,
        upsert_seen: client
            .prepare("INSERT INTO sensor_seen (sensor, last_window_end) SELECT sensor, MAX(start + length) FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS w(sensor, start, length) GROUP BY sensor ON CONFLICT (sensor) DO UPDATE SET last_window_end = GREATEST(sensor_seen.last_window_end, excluded.last_window_end)")
            .await
            .map_err(db)?,
    })
}

/// Applies missing migrations; replicas starting together take turns on an advisory lock.
async fn migrate(client: &Client) -> Result<(), StoreError> {
    client.batch_execute("BEGIN").await.map_err(db)?;
    let result = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await
            .map_err(db)?;
        let row = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await
            .map_err(db)?;
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
                .execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&(i as i64 + 1)],
                )
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

/// Per-sensor windows of a batch, one row per key (a statement may not touch a row twice).
#[derive(Default)]
struct WindowColumns {
    sensor: Vec<String>,
    kind: Vec<String>,
    start: Vec<i64>,
    length: Vec<i64>,
    epoch: Vec<String>,
    salt_fp: Vec<String>,
    frames: Vec<i64>,
    estimate: Vec<f64>,
}

fn window_columns(batch: &Batch) -> WindowColumns {
    // (sensor, kind, start, epoch, fp) -> (length, frames, estimate)
    type Key<'a> = (String, &'a str, i64, String, String);
    let mut rows: BTreeMap<Key<'_>, (i64, i64, f64)> = BTreeMap::new();
    for m in &batch.accepted {
        let key = (
            m.sensor.to_string(),
            m.kind.as_str(),
            m.window_start.as_second(),
            m.epoch.to_string(),
            m.salt_fp.to_string(),
        );
        let value = (
            i64::from(m.window_s),
            i64::try_from(m.frames).unwrap_or(i64::MAX),
            m.sketch.estimate().estimate,
        );
        let row = rows.entry(key).or_insert(value);
        row.1 = row.1.max(value.1);
        row.2 = row.2.max(value.2);
    }
    let mut c = WindowColumns::default();
    for ((sensor, kind, start, epoch, fp), (length, frames, estimate)) in rows {
        c.sensor.push(sensor);
        c.kind.push(kind.to_owned());
        c.start.push(start);
        c.length.push(length);
        c.epoch.push(epoch);
        c.salt_fp.push(fp);
        c.frames.push(frames);
        c.estimate.push(estimate);
    }
    c
}

async fn ingest_batch(
    conn: &mut Conn,
    precision: Precision,
    batch: Batch,
) -> Result<(), StoreError> {
    let unions = union_by_bucket(&batch.accepted, precision);
    let windows = window_columns(&batch);
    let s = &conn.s;
    let tx = conn.client.transaction().await.map_err(db)?;
    for (k, mut union) in unions {
        let (zone, kind, res) = (&k.zone, k.kind, k.resolution.as_str());
        let ours = super::stored_form(k.resolution, &union.to_sketch());
        let row = tx
            .query_one(
                &s.upsert_sketch,
                &[zone, &kind, &res, &k.bucket, &k.epoch, &k.salt_fp, &ours],
            )
            .await
            .map_err(db)?;
        let stored: Vec<u8> = get(&row, 0)?;
        let sketch = Sketch::from_stored(&stored, precision)
            .map_err(|e| StoreError::Corrupt(format!("zone {zone} bucket {}: {e}", k.bucket)))?;
        union.add(&sketch);
        let merged = union.to_sketch();
        let bytes = super::stored_form(k.resolution, &merged);
        if bytes != stored {
            tx.execute(
                &s.update_sketch,
                &[zone, &kind, &res, &k.bucket, &k.epoch, &k.salt_fp, &bytes],
            )
            .await
            .map_err(db)?;
        }
        let e = merged.estimate();
        tx.execute(
            &s.upsert_number,
            &[
                zone,
                &kind,
                &res,
                &k.bucket,
                &k.epoch,
                &k.salt_fp,
                &e.estimate,
                &e.lower,
                &e.upper,
            ],
        )
        .await
        .map_err(db)?;
    }
    if !windows.sensor.is_empty() {
        tx.execute(
            &s.upsert_seen,
            &[&windows.sensor, &windows.start, &windows.length],
        )
        .await
        .map_err(db)?;
        tx.execute(
            &s.upsert_windows,
            &[
                &windows.sensor,
                &windows.kind,
                &windows.start,
                &windows.length,
                &windows.epoch,
                &windows.salt_fp,
                &windows.frames,
                &windows.estimate,
            ],
        )
        .await
        .map_err(db)?;
    }
    for ((sensor, reason), n) in count_rejects(&batch.rejects) {
        tx.execute(&s.upsert_reject, &[&sensor, &reason, &n])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

async fn purge_chunk(
    client: &mut Client,
    retention: Retention,
    now: Timestamp,
) -> Result<PurgeReport, StoreError> {
    let tx = client.transaction().await.map_err(db)?;
    let mut report = PurgeReport::default();
    for (resolution, before) in retention.sketch_cutoffs(now) {
        report.sketches += tx
            .execute(
                "DELETE FROM zone_sketches WHERE ctid IN (SELECT ctid FROM zone_sketches WHERE resolution = $1 AND bucket < $2 LIMIT $3)",
                &[&resolution.as_str(), &before, &PURGE_CHUNK],
            )
            .await
            .map_err(db)?;
    }
    if let Some(before) = retention.number_cutoff(now) {
        report.numbers += tx
            .execute(
                "DELETE FROM zone_numbers WHERE ctid IN (SELECT ctid FROM zone_numbers WHERE bucket < $1 LIMIT $2)",
                &[&before, &PURGE_CHUNK],
            )
            .await
            .map_err(db)?;
    }
    report.sensor_windows += tx
        .execute(
            "DELETE FROM sensor_windows WHERE ctid IN (SELECT ctid FROM sensor_windows WHERE window_start < $1 LIMIT $2)",
            &[&retention.window_cutoff(now), &PURGE_CHUNK],
        )
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(report)
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
                "INSERT INTO salt_epochs (epoch, salt_fp, authority, recorded_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&epoch.to_string(), &fp.to_string(), &authority, &Timestamp::now().as_second()],
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
            .query(
                "SELECT epoch, salt_fp FROM salt_epochs WHERE epoch >= $1 ORDER BY epoch",
                &[&since.to_string()],
            )
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

    async fn ingest(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn(0).await?;
        ingest_batch(&mut conn, self.inner.precision, batch).await
    }

    async fn zone_sketches(
        &self,
        zone: &SensorId,
        kind: Kind,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ZoneSketch>, StoreError> {
        let conn = self.reader().await?;
        let rows = conn
            .client
            .query(
                "SELECT bucket, epoch, salt_fp, sketch FROM zone_sketches WHERE zone = $1 AND kind = $2 AND resolution = $3 AND bucket >= $4 AND bucket < $5 ORDER BY bucket, epoch, salt_fp",
                &[&zone.as_str(), &kind.as_str(), &resolution.as_str(), &from.as_second(), &to.as_second()],
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

    async fn zone_numbers(
        &self,
        zone: &SensorId,
        kind: Kind,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ZoneNumber>, StoreError> {
        let conn = self.reader().await?;
        let rows = conn
            .client
            .query(
                "SELECT bucket, epoch, salt_fp, estimate, lower, upper FROM zone_numbers WHERE zone = $1 AND kind = $2 AND resolution = $3 AND bucket >= $4 AND bucket < $5 ORDER BY bucket, epoch, salt_fp",
                &[&zone.as_str(), &kind.as_str(), &resolution.as_str(), &from.as_second(), &to.as_second()],
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
        let rows = conn
            .client
            .query(
                "SELECT sensor, MAX(window_start), SUM(frames)::bigint, NULL::text, NULL::bigint FROM sensor_windows GROUP BY sensor UNION ALL SELECT sensor, NULL, NULL, reason, count FROM sensor_rejects",
                &[],
            )
            .await
            .map_err(db)?;
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
        let rows = conn
            .client
            .query(
                "SELECT sensor, last_window_end FROM sensor_seen ORDER BY sensor",
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse(get::<&str>(r, 0)?, "sensor id")?,
                    timestamp(get(r, 1)?)?,
                ))
            })
            .collect()
    }

    async fn record_alert(&self, alert: Alert) -> Result<bool, StoreError> {
        let conn = self.conn(0).await?;
        let n = conn
            .client
            .execute(
                "INSERT INTO alerts (at, zone, kind, level, threshold, value, message) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
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
        Ok(n == 1)
    }

    async fn alerts(&self, since: Timestamp, limit: u32) -> Result<Vec<Alert>, StoreError> {
        let conn = self.reader().await?;
        let rows = conn
            .client
            .query(
                "SELECT id, at, zone, kind, level, threshold, value, message FROM alerts WHERE at >= $1 ORDER BY at DESC, id DESC LIMIT $2",
                &[&since.as_second(), &i64::from(limit)],
            )
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
                })
            })
            .collect()
    }

    async fn purge(&self, retention: Retention, now: Timestamp) -> Result<PurgeReport, StoreError> {
        super::purge_in_chunks(|| async move {
            let mut conn = self.reader().await?;
            purge_chunk(&mut conn.client, retention, now).await
        })
        .await
    }
}

/// A throwaway database on a PostgreSQL server, for tests and benchmarks: created with a
/// unique name, dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin: tokio_postgres::Config,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates a database on the server that `admin_url` reaches.
    pub async fn create(admin_url: &str) -> Result<ScratchDatabase, StoreError> {
        let admin: tokio_postgres::Config = admin_url
            .parse()
            .map_err(|e| StoreError::Database(format!("{admin_url}: {e}")))?;
        let nanos = Timestamp::now().as_nanosecond();
        let name = format!("crowdflow_scratch_{}_{}", std::process::id(), nanos);
        let conn = connect_plain(&admin).await?;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(db)?;
        let url = scratch_url(&admin, &name);
        Ok(ScratchDatabase { admin, name, url })
    }

    /// The database's `postgres://` URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A `postgres://` URL (what the config file takes) for database `name` on `admin`'s server.
fn scratch_url(admin: &tokio_postgres::Config, name: &str) -> String {
    let escape = |s: &[u8]| -> String {
        s.iter()
            .map(|&b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let mut userinfo = admin
        .get_user()
        .map(|u| escape(u.as_bytes()))
        .unwrap_or_default();
    if let Some(password) = admin.get_password() {
        userinfo = format!("{userinfo}:{}", escape(password));
    }
    let at = if userinfo.is_empty() { "" } else { "@" };
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    match admin.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => {
            format!("postgres://{userinfo}{at}{host}:{port}/{name}")
        }
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => format!(
            "postgres://{userinfo}{at}/{name}?host={}&port={port}",
            escape(path.as_os_str().as_encoded_bytes())
        ),
        None => format!("postgres://{userinfo}{at}localhost:{port}/{name}"),
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

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside or outside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = connect_plain(&admin).await.ok()?;
                client.batch_execute(&sql).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop scratch database {}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (store, scratch) = open().await;
        let other = PostgresStore::open(scratch.url(), Precision::DEFAULT)
            .await
            .expect("replica");
        let at: Timestamp = "2026-04-27T10:00:00Z".parse().expect("ts");
        let message = |sensor: &str, devices: std::ops::Range<u64>| {
            let mut sketch = Sketch::new(Precision::DEFAULT);
            for i in devices {
                sketch.insert_bytes(&i.to_le_bytes());
            }
            super::super::Accepted {
                sensor: SensorId::new(sensor).expect("id"),
                zone: SensorId::new("neude").expect("id"),
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
            let (ra, rb) = tokio::join!(store.ingest(a), other.ingest(b));
            ra.expect("a");
            rb.expect("b");
        }
        let sketches = store
            .zone_sketches(
                &SensorId::new("neude").expect("id"),
                Kind::Ble,
                Resolution::Minute,
                at,
                at + jiff::SignedDuration::from_secs(60),
            )
            .await
            .expect("read");
        assert_eq!(sketches.len(), 1);
        let estimate = sketches[0].sketch.estimate();
        assert!(
            estimate.lower <= 4000.0 && 4000.0 <= estimate.upper,
            "no update lost: {estimate:?}"
        );
    }
}
