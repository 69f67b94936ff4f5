//! SQLite storage: one file, WAL, versioned schema, every batch one transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Precision, Sketch, SketchUnion};
use crowdflow_contract::wire::SensorId;
use jiff::Timestamp;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params, params_from_iter};

use super::{
    Accepted, Alert, AlertKey, Batch, BucketKey, BucketQuery, PurgeReport, Resolution, Retention,
    SaltText, SensorHealth, Store, StoreError, ZoneNumber, ZoneSketch, count_rejects, fold_into,
    parse, timestamp, union_by_minute,
};

mod minute_numbers;
mod schema;
mod sql;

use sql::*;

/// Rows a purge deletes per transaction, so ingest is never blocked for long.
const PURGE_CHUNK: i64 = 5_000;

/// Rows one multi-row statement writes (sensor windows, sensors' latest windows): a
/// statement per row cost most of a commit's time in SQLite (#19); 64 x 8 parameters stay
/// far below SQLite's limit of 32,766.
const ROWS_PER_STATEMENT: usize = 64;

/// Prepared statements a connection keeps: the multi-row statements of [`execute_rows`]
/// (seven sizes per table) beside the single ones would overflow rusqlite's default of 16
/// and be compiled again and again.
const STATEMENT_CACHE: usize = 64;

/// How often a commit folds the minutes written since into their hour and day buckets.
/// A coarse sketch is 16 KB (HLL_8, read whole by range queries): rewriting every touched
/// one at every commit cost most of a commit at 100 zones (#19). The queue of folded
/// minutes is a table, so a crash loses nothing: the store folds it when it opens, and
/// before it answers any hour or day read.
const FOLD_EVERY: Duration = Duration::from_secs(1);

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn db_value(e: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Read-only connections reads take turns on: in WAL mode readers wait neither for the
/// writer nor for each other, so a history query does not wait behind a commit and its
/// reads (sketches, minute numbers) run side by side.
const READERS: usize = 4;

/// The reader connections.
#[derive(Debug)]
struct Readers {
    pool: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    /// A free reader, or the next one's turn when all are busy.
    fn take(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        let poisoned = || StoreError::Database("connection lock poisoned".into());
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        for i in 0..self.pool.len() {
            match self.pool[(start + i) % self.pool.len()].try_lock() {
                Ok(reader) => return Ok(reader),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Poisoned(_)) => return Err(poisoned()),
            }
        }
        self.pool[start].lock().map_err(|_| poisoned())
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    Ok(conn)
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
    precision: Precision,
    /// When a commit last folded the queued minutes.
    folded_at: Arc<Mutex<Instant>>,
    /// [`FOLD_EVERY`] (tests hold the fold back).
    fold_every: Duration,
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
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn, precision)?;
        fold_now(&mut conn, precision)?;
        let readers = (0..READERS)
            .map(|_| open_reader(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Readers {
                pool: readers,
                next: AtomicUsize::new(0),
            }),
            precision,
            folded_at: Arc::new(Mutex::new(Instant::now())),
            fold_every: FOLD_EVERY,
        })
    }

    /// Runs `f` on a reader connection: beside a commit under way, and beside each other.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, Precision) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let precision = self.precision;
        tokio::task::spawn_blocking(move || f(&*readers.take()?, precision))
            .await
            .map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
    }

    /// Runs the read `f` of buckets of `resolution` on a reader. An hour or day read first
    /// folds the queued minutes, whoever queued them (another process may write the file:
    /// `calibrate`, a second aggregator after a crash). The queue is looked at by the same
    /// reader task, just before the read, so a read with nothing queued costs no extra
    /// round trip (a day's distinct count makes four such reads, #19).
    async fn read_buckets<T: Send + 'static>(
        &self,
        resolution: Resolution,
        f: impl Fn(&Connection, Precision) -> Result<T, StoreError> + Clone + Send + 'static,
    ) -> Result<T, StoreError> {
        if resolution == Resolution::Minute {
            return self.read(f).await;
        }
        let first = f.clone();
        let answer = self
            .read(move |conn, precision| {
                let queued = conn
                    .prepare_cached(ANY_QUEUED_MINUTE)
                    .and_then(|mut s| s.query_row([], |r| r.get::<_, bool>(0)))
                    .map_err(db)?;
                if queued {
                    return Ok(None);
                }
                first(conn, precision).map(Some)
            })
            .await?;
        match answer {
            Some(answer) => Ok(answer),
            None => {
                self.with(fold_now).await?;
                self.read(f).await
            }
        }
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

/// Stores a batch in one transaction: its minute buckets, queued for the rollup; the hour
/// and day buckets only when `fold` (see [`FOLD_EVERY`]).
fn merge_in_transaction(
    conn: &mut Connection,
    precision: Precision,
    batch: Batch,
    fold: bool,
) -> Result<(), StoreError> {
    let minutes = union_by_minute(&batch.accepted, precision);
    let tx = conn.transaction().map_err(db)?;
    {
        let mut queue = tx.prepare_cached(QUEUE_MINUTE).map_err(db)?;
        for k in minutes.keys() {
            queue
                .execute(params![k.zone, k.kind, k.bucket, k.epoch, k.salt_fp])
                .map_err(db)?;
        }
    }
    write_buckets(&tx, precision, minutes)?;
    if fold {
        fold_queued_minutes(&tx, precision)?;
    }
    write_windows(&tx, &batch)?;
    tx.commit().map_err(db)
}

/// Merges each union into its stored bucket (read, merge, write sketch and numbers).
fn write_buckets(
    tx: &Transaction<'_>,
    precision: Precision,
    unions: BTreeMap<BucketKey, SketchUnion>,
) -> Result<(), StoreError> {
    let mut read = tx.prepare_cached(SELECT_BUCKET_SKETCH).map_err(db)?;
    let mut write = tx.prepare_cached(UPSERT_SKETCH).map_err(db)?;
    let mut number = tx.prepare_cached(UPSERT_NUMBER).map_err(db)?;
    let mut minutes: BTreeMap<BucketKey, Vec<minute_numbers::Entry>> = BTreeMap::new();
    for (k, mut union) in unions {
        let (zone, kind, res) = (&k.zone, k.kind, k.resolution.as_str());
        let stored: Option<Vec<u8>> = read
            .query_row(
                params![zone, kind, res, k.bucket, k.epoch, k.salt_fp],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        if let Some(bytes) = stored {
            union.add(&stored_sketch(&bytes, precision, &k)?);
        }
        let merged = union.to_sketch();
        let e = merged.estimate();
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
        if k.resolution == Resolution::Minute {
            let entry = minute_numbers::Entry::at(k.bucket, e);
            minutes
                .entry(k.at(Resolution::Hour))
                .or_default()
                .push(entry);
        } else {
            number
                .execute(params![
                    zone, kind, res, k.bucket, k.epoch, k.salt_fp, e.estimate, e.lower, e.upper
                ])
                .map_err(db)?;
        }
    }
    minute_numbers::write(tx, minutes)
}

fn stored_sketch(bytes: &[u8], precision: Precision, k: &BucketKey) -> Result<Sketch, StoreError> {
    Sketch::from_stored(bytes, precision)
        .map_err(|e| StoreError::Corrupt(format!("zone {} bucket {}: {e}", k.zone, k.bucket)))
}

/// Folds the queued minutes into their hours, and those into their days, and empties the
/// queue. Folding a minute twice changes nothing (a union is idempotent), so a minute
/// written again after its fold is simply queued again.
fn fold_queued_minutes(tx: &Transaction<'_>, precision: Precision) -> Result<(), StoreError> {
    let mut hours: BTreeMap<BucketKey, SketchUnion> = BTreeMap::new();
    {
        let mut queued = tx.prepare_cached(SELECT_QUEUED_MINUTES).map_err(db)?;
        let mut rows = queued.query([]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let kind: Kind = parse(&r.get::<_, String>(1).map_err(db)?, "kind")?;
            let minute = BucketKey {
                zone: r.get(0).map_err(db)?,
                kind: kind.as_str(),
                resolution: Resolution::Minute,
                bucket: r.get(2).map_err(db)?,
                epoch: r.get(3).map_err(db)?,
                salt_fp: r.get(4).map_err(db)?,
            };
            let bytes = r.get_ref(5).map_err(db)?.as_blob().map_err(db_value)?;
            let sketch = stored_sketch(bytes, precision, &minute)?;
            hours
                .entry(minute.at(Resolution::Hour))
                .or_insert_with(|| SketchUnion::new(precision))
                .add(&sketch);
        }
    }
    tx.execute(CLEAR_QUEUE, []).map_err(db)?;
    let mut days = fold_into(&hours, Resolution::Day, precision);
    hours.append(&mut days);
    write_buckets(tx, precision, hours)
}

/// Folds the queued minutes, if any, in a transaction of its own (before hours and days
/// are read, and at start after a crash).
fn fold_now(conn: &mut Connection, precision: Precision) -> Result<(), StoreError> {
    let queued: bool = conn
        .prepare_cached(ANY_QUEUED_MINUTE)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db)?;
    if !queued {
        return Ok(());
    }
    let tx = conn.transaction().map_err(db)?;
    fold_queued_minutes(&tx, precision)?;
    tx.commit().map_err(db)
}

/// The batch's sensor windows, sensors' latest windows and rejects.
fn write_windows(tx: &Transaction<'_>, batch: &Batch) -> Result<(), StoreError> {
    let mut salt_text = SaltText::default();
    execute_rows(tx, &batch.accepted, upsert_windows, |m, params| {
        params.extend(window_values(m, &mut salt_text));
    })?;
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for m in &batch.accepted {
        let end = m.window_start.as_second() + i64::from(m.window_s);
        let e = latest.entry(m.sensor.as_str()).or_insert(end);
        *e = (*e).max(end);
    }
    let latest: Vec<(&str, i64)> = latest.into_iter().collect();
    execute_rows(tx, &latest, upsert_seen, |(sensor, end), params| {
        params.extend([Value::Text((*sensor).to_owned()), Value::Integer(*end)]);
    })?;
    let mut reject = tx.prepare_cached(UPSERT_REJECT).map_err(db)?;
    for ((sensor, reason), n) in count_rejects(&batch.rejects) {
        reject.execute(params![sensor, reason, n]).map_err(db)?;
    }
    Ok(())
}

/// Writes `rows` with the multi-row statement `sql(n)` (`values` gives a row's parameters):
/// [`ROWS_PER_STATEMENT`] rows a statement, the rest in statements of halving size, so a
/// table has at most seven statements to prepare and cache. A statement per row cost most
/// of a commit in SQLite (#19).
fn execute_rows<R>(
    tx: &Transaction<'_>,
    rows: &[R],
    sql: fn(usize) -> String,
    mut values: impl FnMut(&R, &mut Vec<Value>),
) -> Result<(), StoreError> {
    let mut params = Vec::new();
    let mut rest = rows;
    let mut size = ROWS_PER_STATEMENT;
    while !rest.is_empty() {
        while size > rest.len() {
            size /= 2;
        }
        let mut statement = tx.prepare_cached(&sql(size)).map_err(db)?;
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            chunk.iter().for_each(|r| values(r, &mut params));
            statement
                .execute(params_from_iter(params.drain(..)))
                .map_err(db)?;
            rest = tail;
        }
    }
    Ok(())
}

/// The parameters of [`upsert_windows`] for one window.
fn window_values(m: &Accepted, salt_text: &mut SaltText) -> [Value; 8] {
    let (epoch, salt_fp) = salt_text.of(m.epoch, m.salt_fp);
    [
        Value::Text(m.sensor.as_str().to_owned()),
        Value::Text(m.kind.as_str().to_owned()),
        Value::Integer(m.window_start.as_second()),
        Value::Integer(i64::from(m.window_s)),
        Value::Text(epoch),
        Value::Text(salt_fp),
        Value::Integer(i64::try_from(m.frames).unwrap_or(i64::MAX)),
        Value::Real(m.sketch.estimate().estimate),
    ]
}

/// The bucket, epoch and salt that lead every row of a range (columns 0-2); the text ones
/// parsed once per change, not once per row: a range's rows share one epoch and salt (a
/// series reads 72,000 of them).
#[derive(Default)]
struct RowKeys {
    epoch: Option<(String, EpochId)>,
    salt_fp: Option<(String, SaltFingerprint)>,
}

impl RowKeys {
    fn read(
        &mut self,
        r: &rusqlite::Row<'_>,
    ) -> Result<(Timestamp, EpochId, SaltFingerprint), StoreError> {
        Ok((
            timestamp(r.get(0).map_err(db)?)?,
            reparse(&mut self.epoch, r.get_ref(1).map_err(db)?, "epoch")?,
            reparse(
                &mut self.salt_fp,
                r.get_ref(2).map_err(db)?,
                "salt fingerprint",
            )?,
        ))
    }
}

/// `column` parsed, or the last value when its text is the last one's.
fn reparse<T: std::str::FromStr + Copy>(
    last: &mut Option<(String, T)>,
    column: ValueRef<'_>,
    what: &str,
) -> Result<T, StoreError> {
    let text = column.as_str().map_err(db_value)?;
    match last {
        Some((t, v)) if t == text => Ok(*v),
        _ => {
            let v = parse(text, what)?;
            *last = Some((text.to_owned(), v));
            Ok(v)
        }
    }
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
        report.numbers += tx
            .execute(PURGE_PACKED_HOURS, params![before, PURGE_CHUNK])
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
        self.read(move |conn, _| {
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
        let (folded_at, every) = (self.folded_at.clone(), self.fold_every);
        self.with(move |conn, precision| {
            let mut last = folded_at
                .lock()
                .map_err(|_| StoreError::Database("fold clock lock poisoned".into()))?;
            let fold = last.elapsed() >= every;
            merge_in_transaction(conn, precision, batch, fold)?;
            if fold {
                *last = Instant::now();
            }
            Ok(())
        })
        .await
    }

    async fn zone_sketches(&self, query: BucketQuery<'_>) -> Result<Vec<ZoneSketch>, StoreError> {
        let mut one = self.zone_sketches_by_kind(query, &[query.kind]).await?;
        Ok(one.pop().unwrap_or_default())
    }

    /// One read task for every kind: a distinct answer of one tile read its four kinds
    /// through four tasks, each checking the rollup queue (#19).
    async fn zone_sketches_by_kind(
        &self,
        query: BucketQuery<'_>,
        kinds: &[Kind],
    ) -> Result<Vec<Vec<ZoneSketch>>, StoreError> {
        let BucketQuery {
            zone,
            resolution,
            from,
            to,
            ..
        } = query;
        let zone = zone.to_string();
        let kinds = kinds.to_vec();
        self.read_buckets(resolution, move |conn, precision| {
            let mut stmt = conn.prepare_cached(SELECT_SKETCHES).map_err(db)?;
            let mut out = Vec::with_capacity(kinds.len());
            for kind in &kinds {
                let mut rows = stmt
                    .query(params![
                        zone,
                        kind.as_str(),
                        resolution.as_str(),
                        from.as_second(),
                        to.as_second()
                    ])
                    .map_err(db)?;
                let mut keys = RowKeys::default();
                let mut sketches = Vec::new();
                while let Some(r) = rows.next().map_err(db)? {
                    let (bucket, epoch, salt_fp) = keys.read(r)?;
                    let bytes = r.get_ref(3).map_err(db)?.as_blob().map_err(db_value)?;
                    sketches.push(ZoneSketch {
                        bucket,
                        epoch,
                        salt_fp,
                        sketch: Sketch::from_stored(bytes, precision)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    });
                }
                out.push(sketches);
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
        self.read_buckets(resolution, move |conn, _| {
            if resolution == Resolution::Minute {
                return minute_numbers::read(conn, &zone, kind.as_str(), from, to);
            }
            let mut stmt = conn.prepare_cached(SELECT_NUMBERS).map_err(db)?;
            let mut rows = stmt
                .query(params![
                    zone,
                    kind.as_str(),
                    resolution.as_str(),
                    from.as_second(),
                    to.as_second()
                ])
                .map_err(db)?;
            let mut keys = RowKeys::default();
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                let (bucket, epoch, salt_fp) = keys.read(r)?;
                out.push(ZoneNumber {
                    bucket,
                    epoch,
                    salt_fp,
                    devices: crowdflow_contract::sketch::Estimate {
                        estimate: r.get(3).map_err(db)?,
                        lower: r.get(4).map_err(db)?,
                        upper: r.get(5).map_err(db)?,
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    async fn sensor_health(&self) -> Result<Vec<SensorHealth>, StoreError> {
        self.read(move |conn, _| {
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
        self.read(|conn, _| {
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
        self.read(move |conn, _| {
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
        // A queued minute must reach its hour and day before it can be purged.
        self.with(fold_now).await?;
        super::purge_in_chunks(|| self.with(move |conn, _| purge_chunk(conn, retention, now))).await
    }
}

#[cfg(test)]
mod tests {
    use super::schema::{CREATE_VERSION_TABLE, INSERT_VERSION, MIGRATIONS};
    use super::*;
    use crate::zone::ZoneId;

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

    /// A store that has not folded since a batch folds before it answers an hour.
    #[tokio::test]
    async fn an_hour_read_right_after_a_batch_holds_the_batch() {
        use crate::store::suite::{accepted, batch, neude_hour, ts};
        let (mut store, _dir) = open().await;
        store.fold_every = Duration::MAX;
        let at = ts("2026-04-27T10:07:00Z");
        store
            .merge_batch(batch(vec![accepted("s1", at, 0..700)]))
            .await
            .expect("ingest");
        let hour = neude_hour(&store).await;
        assert!((hour.estimate - 700.0).abs() < 0.05 * 700.0);
    }

    /// A store reading a file another process writes folds what that process queued
    /// before it answers an hour (a fresh-clone CI run caught a reader answering from a stale
    /// day after the writer was killed).
    #[tokio::test]
    async fn an_hour_read_folds_what_another_process_queued() {
        use crate::store::suite::{accepted, batch, neude_hour, ts};
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("crowdflow.db");
        let reader = SqliteStore::open(&path, Precision::DEFAULT).expect("reader");
        let mut writer = SqliteStore::open(&path, Precision::DEFAULT).expect("writer");
        writer.fold_every = Duration::MAX;
        writer
            .merge_batch(batch(vec![accepted(
                "s1",
                ts("2026-04-27T10:07:00Z"),
                0..700,
            )]))
            .await
            .expect("ingest");
        let hour = neude_hour(&reader).await;
        assert!((hour.estimate - 700.0).abs() < 0.05 * 700.0);
    }

    /// Version 8 re-keys sensor windows by time: every row survives with its values (the
    /// suite's replay tests run on the new key).
    #[tokio::test]
    async fn a_version_7_database_keeps_its_sensor_windows_keyed_by_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("crowdflow.db");
        {
            let mut conn = Connection::open(&path).expect("raw");
            conn.execute_batch(CREATE_VERSION_TABLE).expect("versions");
            let tx = conn.transaction().expect("tx");
            for (i, m) in MIGRATIONS[..7].iter().enumerate() {
                tx.execute_batch(m.sql).expect("old schema");
                tx.execute(INSERT_VERSION, params![i as i64 + 1])
                    .expect("version");
            }
            for (sensor, start, frames) in [
                ("s1", 1777284000, 40),
                ("s1", 1777284060, 2),
                ("s2", 1777284000, 7),
            ] {
                tx.execute(
                    "INSERT INTO sensor_windows VALUES (?1, 'wifi_random', ?2, 60, '2026-04-27', '0123456789abcdef', ?3, 5.0)",
                    params![sensor, start, frames],
                )
                .expect("v7 row");
            }
            tx.commit().expect("commit");
        }
        let store = SqliteStore::open(&path, Precision::DEFAULT).expect("migrate");
        let frames = |store: &SqliteStore| {
            let store = store.clone();
            async move {
                let mut h: Vec<_> = store
                    .sensor_health()
                    .await
                    .expect("health")
                    .into_iter()
                    .map(|h| (h.sensor.to_string(), h.frames))
                    .collect();
                h.sort();
                h
            }
        };
        assert_eq!(
            frames(&store).await,
            [("s1".to_owned(), 42), ("s2".to_owned(), 7)]
        );
        let conn = Connection::open(&path).expect("raw");
        let key: String = conn
            .query_row(
                "SELECT group_concat(name) FROM pragma_index_info('sqlite_autoindex_sensor_windows_1')",
                [],
                |r| r.get(0),
            )
            .expect("key");
        assert_eq!(key, "window_start,sensor,kind,epoch,salt_fp");
    }

    /// Minutes written but not yet folded when the process dies reach their hour and day
    /// when the store opens again, and the hour then holds what folding at every commit gave.
    #[tokio::test]
    async fn minutes_queued_at_a_crash_reach_their_hour_and_day_at_reopen() {
        use crate::store::suite::{batches_of_one_hour as batches, neude_hour as hour};
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("crowdflow.db");
        let eager = {
            let (mut store, _eager_dir) = open().await;
            store.fold_every = Duration::ZERO;
            for b in batches() {
                store.merge_batch(b).await.expect("ingest");
            }
            hour(&store).await
        };
        {
            let mut store = SqliteStore::open(&path, Precision::DEFAULT).expect("open");
            store.fold_every = Duration::MAX;
            for b in batches() {
                store.merge_batch(b).await.expect("ingest");
            }
        }
        let raw = Connection::open(&path).expect("raw");
        let count = |sql: &str| raw.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql);
        let coarse = "SELECT count(*) FROM zone_sketches WHERE resolution <> 'minute'";
        assert_eq!(count(coarse), 0, "nothing folded before the crash");
        assert_eq!(count("SELECT count(*) FROM rollup_queue"), 4);
        let store = SqliteStore::open(&path, Precision::DEFAULT).expect("reopen");
        assert_eq!(count("SELECT count(*) FROM rollup_queue"), 0);
        assert_eq!(count(coarse), 2, "an hour and a day");
        assert_eq!(hour(&store).await, eager);
        assert!(
            (eager.estimate - 1_340.0).abs() < 0.05 * 1_340.0,
            "{eager:?}"
        );
    }

    /// A version 6 database's minute number rows are packed by the hour when it opens, and
    /// read back the same: cut ranges, two salts in one hour (a rotation) interleaved.
    #[tokio::test]
    async fn minute_number_rows_are_packed_by_the_hour_and_read_back_the_same() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("crowdflow.db");
        let hour = 1_777_284_000; // 2026-04-27T10:00:00Z
        let rows = [
            (hour - 60, "2026-04-26", "00000000000000aa", 5.0),
            (hour, "2026-04-26", "00000000000000aa", 10.0),
            (hour + 120, "2026-04-26", "00000000000000aa", 12.0),
            (hour + 120, "2026-04-27", "00000000000000bb", 3.0),
            (hour + 180, "2026-04-27", "00000000000000bb", 4.0),
            (hour + 3600, "2026-04-27", "00000000000000bb", 6.0),
        ];
        {
            let mut conn = Connection::open(&path).expect("raw");
            let tx = conn.transaction().expect("tx");
            tx.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (6);",
            )
            .expect("v6 marker");
            for m in &MIGRATIONS[..6] {
                tx.execute_batch(m.sql).expect("v6 schema");
            }
            for (bucket, epoch, fp, estimate) in rows {
                tx.execute(
                    "INSERT INTO zone_numbers VALUES ('neude', 'ble', 'minute', ?1, ?2, ?3, ?4, ?5, ?6)",
                    params![bucket, epoch, fp, estimate, estimate - 1.0, estimate + 1.0],
                )
                .expect("v6 row");
            }
            tx.commit().expect("commit");
        }
        let store = SqliteStore::open(&path, Precision::DEFAULT).expect("migrate");
        let read = async |from: i64, to: i64| {
            store
                .zone_numbers(BucketQuery {
                    zone: &ZoneId::new("neude").expect("id"),
                    kind: Kind::Ble,
                    resolution: Resolution::Minute,
                    from: timestamp(from).expect("from"),
                    to: timestamp(to).expect("to"),
                })
                .await
                .expect("minute numbers")
                .iter()
                .map(|n| {
                    (
                        n.bucket.as_second(),
                        n.salt_fp.to_string(),
                        n.devices.estimate,
                    )
                })
                .collect::<Vec<_>>()
        };
        let all: Vec<_> = rows
            .iter()
            .map(|(b, _, fp, e)| (*b, fp.to_string(), *e))
            .collect();
        assert_eq!(read(hour - 3600, hour + 7200).await, all);
        assert_eq!(read(hour + 60, hour + 181).await, all[2..5]);
        let raw = Connection::open(&path).expect("raw");
        let count = |sql: &str| raw.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql);
        assert_eq!(
            count("SELECT count(*) FROM minute_numbers"),
            4,
            "hours x salts"
        );
        assert_eq!(
            count("SELECT count(*) FROM zone_numbers WHERE resolution = 'minute'"),
            0
        );
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
