//! Writes: merging a batch into its buckets in one transaction, and purging in chunks.

use std::collections::BTreeMap;

use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Estimate, Precision, Sketch, SketchUnion};
use jiff::Timestamp;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};

use super::sql::{PURGE_NUMBERS, PURGE_SKETCHES, PURGE_WINDOWS};
use super::{Conn, PURGE_CHUNK, Statements, db, get};
use crate::store::{
    Batch, BucketKey, PurgeReport, Resolution, Retention, SaltText, StoreError, count_rejects,
    parse, roll_up, union_by_minute,
};

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
    let mut salt_text = SaltText::default();
    for m in &batch.accepted {
        let (epoch, salt_fp) = salt_text.of(m.epoch, m.salt_fp);
        let key = (
            m.sensor.to_string(),
            m.kind.as_str(),
            m.window_start.as_second(),
            epoch,
            salt_fp,
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

/// Key columns of minute buckets, for the statements that take arrays.
#[derive(Default)]
struct KeyColumns {
    zone: Vec<String>,
    kind: Vec<String>,
    bucket: Vec<i64>,
    epoch: Vec<String>,
    salt_fp: Vec<String>,
}

impl KeyColumns {
    fn push(&mut self, zone: String, kind: String, bucket: i64, epoch: String, salt_fp: String) {
        self.zone.push(zone);
        self.kind.push(kind);
        self.bucket.push(bucket);
        self.epoch.push(epoch);
        self.salt_fp.push(salt_fp);
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.zone,
            &self.kind,
            &self.bucket,
            &self.epoch,
            &self.salt_fp,
        ]
    }
}

/// Stores a batch in one transaction: its minute buckets, queued for their hour and day
/// (folded by [`fold_queued`]), its sensor windows and rejects.
pub(super) async fn merge_in_transaction(
    conn: &mut Conn,
    precision: Precision,
    batch: Batch,
) -> Result<(), StoreError> {
    let minutes = union_by_minute(&batch.accepted, precision);
    let mut queued = KeyColumns::default();
    for k in minutes.keys() {
        let (zone, kind) = (k.zone.clone(), k.kind.to_owned());
        queued.push(zone, kind, k.bucket, k.epoch.clone(), k.salt_fp.clone());
    }
    let windows = window_columns(&batch);
    let rejects = count_rejects(&batch.rejects);
    let s = &conn.s;
    let tx = conn.client.transaction().await.map_err(db)?;
    // The statements that read nothing back go out with the buckets' upsert, pipelined on
    // the connection, instead of a round trip each after it (#19). Their order on the
    // connection is this one in every transaction, so replicas take row locks alike.
    let buckets = merge_unions(&tx, s, precision, minutes);
    let queue = async {
        tx.execute(&s.queue_minutes, &queued.params())
            .await
            .map_err(db)
    };
    let seen_params: [&(dyn ToSql + Sync); 3] = [&windows.sensor, &windows.start, &windows.length];
    let window_params: [&(dyn ToSql + Sync); 8] = [
        &windows.sensor,
        &windows.kind,
        &windows.start,
        &windows.length,
        &windows.epoch,
        &windows.salt_fp,
        &windows.frames,
        &windows.estimate,
    ];
    let sensors = async {
        if windows.sensor.is_empty() {
            return Ok(());
        }
        let seen = tx.execute(&s.upsert_seen, &seen_params);
        let written = tx.execute(&s.upsert_windows, &window_params);
        futures_util::future::try_join(seen, written)
            .await
            .map(|_| ())
            .map_err(db)
    };
    let reject_params: Vec<[&(dyn ToSql + Sync); 3]> = rejects
        .iter()
        .map(|((sensor, reason), n)| [sensor as &(dyn ToSql + Sync), reason, n])
        .collect();
    let rejected = futures_util::future::try_join_all(
        reject_params
            .iter()
            .map(|params| tx.execute(&s.upsert_reject, params)),
    );
    let rejected = async { rejected.await.map(|_| ()).map_err(db) };
    futures_util::future::try_join4(buckets, queue, sensors, rejected).await?;
    tx.commit().await.map_err(db)
}

/// Folds the queued minutes into their hours, and those into their days, in a transaction
/// of its own. The claim waits for batches that queued a minute and have not committed,
/// and the minutes are read after it, so every acknowledged sketch reaches its hour; a
/// minute written again after its claim is queued again (a union is idempotent).
pub(super) async fn fold_queued(conn: &mut Conn, precision: Precision) -> Result<(), StoreError> {
    let s = &conn.s;
    let tx = conn.client.transaction().await.map_err(db)?;
    let claimed = tx.query(&s.claim_queued, &[]).await.map_err(db)?;
    if claimed.is_empty() {
        return tx.commit().await.map_err(db);
    }
    let mut keys = KeyColumns::default();
    for r in &claimed {
        keys.push(get(r, 0)?, get(r, 1)?, get(r, 2)?, get(r, 3)?, get(r, 4)?);
    }
    let rows = tx
        .query(&s.select_minute_sketches, &keys.params())
        .await
        .map_err(db)?;
    let mut minutes = BTreeMap::new();
    for r in &rows {
        let key = BucketKey {
            zone: get(r, 0)?,
            kind: parse::<Kind>(get(r, 1)?, "kind")?.as_str(),
            resolution: Resolution::Minute,
            bucket: get(r, 2)?,
            epoch: get(r, 3)?,
            salt_fp: get(r, 4)?,
        };
        let mut union = SketchUnion::new(precision);
        union.add(&stored_sketch(get(r, 5)?, precision, &key)?);
        minutes.insert(key, union);
    }
    merge_unions(&tx, s, precision, roll_up(&minutes, precision)).await?;
    tx.commit().await.map_err(db)
}

fn stored_sketch(bytes: &[u8], precision: Precision, k: &BucketKey) -> Result<Sketch, StoreError> {
    Sketch::from_stored(bytes, precision)
        .map_err(|e| StoreError::Corrupt(format!("zone {} bucket {}: {e}", k.zone, k.bucket)))
}

/// Merges each union into its stored bucket and writes its numbers.
///
/// Three statements over arrays of every bucket, whatever their number: each bucket's row,
/// inserted with the batch's union if new and locked either way (in key order, so replicas
/// lock rows in one order); then the merged sketches that changed, beside the numbers. A
/// statement per bucket, even pipelined, kept PostgreSQL ingest at 0.36-0.55 of the
/// broker's rate (#19).
async fn merge_unions(
    tx: &Transaction<'_>,
    s: &Statements,
    precision: Precision,
    unions: BTreeMap<BucketKey, SketchUnion>,
) -> Result<(), StoreError> {
    if unions.is_empty() {
        return Ok(());
    }
    let mut ours = BucketColumns::default();
    for (k, union) in &unions {
        ours.push(k);
        ours.sketch
            .push(crate::store::stored_form(k.resolution, &union.to_sketch()));
    }
    let rows = tx
        .query(&s.upsert_sketches, &ours.params())
        .await
        .map_err(db)?;
    let mut stored: BTreeMap<BucketKey, Vec<u8>> = BTreeMap::new();
    for r in &rows {
        let key = BucketKey {
            zone: get(r, 0)?,
            kind: parse::<Kind>(get(r, 1)?, "kind")?.as_str(),
            resolution: parse(get(r, 2)?, "resolution")?,
            bucket: get(r, 3)?,
            epoch: get(r, 4)?,
            salt_fp: get(r, 5)?,
        };
        stored.insert(key, get(r, 6)?);
    }
    let (mut changed, mut numbers) = (BucketColumns::default(), NumberColumns::default());
    for (k, mut union) in unions {
        let Some(bytes) = stored.remove(&k) else {
            return Err(StoreError::Database(format!(
                "zone {} bucket {}: no row came back from the upsert",
                k.zone, k.bucket
            )));
        };
        union.add(&stored_sketch(&bytes, precision, &k)?);
        let sketch = union.to_sketch();
        let merged = crate::store::stored_form(k.resolution, &sketch);
        numbers.push(&k, sketch.estimate());
        if merged != bytes {
            changed.push(&k);
            changed.sketch.push(merged);
        }
    }
    let update = async {
        if changed.zone.is_empty() {
            return Ok(0);
        }
        tx.execute(&s.update_sketches, &changed.params()).await
    };
    let number_params = numbers.params();
    let number = tx.execute(&s.upsert_numbers, &number_params);
    futures_util::future::try_join(update, number)
        .await
        .map_err(db)?;
    Ok(())
}

/// Buckets' keys and sketches, for the statements that take arrays.
#[derive(Default)]
struct BucketColumns {
    zone: Vec<String>,
    kind: Vec<&'static str>,
    resolution: Vec<&'static str>,
    bucket: Vec<i64>,
    epoch: Vec<String>,
    salt_fp: Vec<String>,
    sketch: Vec<Vec<u8>>,
}

impl BucketColumns {
    /// Adds `k`'s key (its sketch is pushed by the caller).
    fn push(&mut self, k: &BucketKey) {
        self.zone.push(k.zone.clone());
        self.kind.push(k.kind);
        self.resolution.push(k.resolution.as_str());
        self.bucket.push(k.bucket);
        self.epoch.push(k.epoch.clone());
        self.salt_fp.push(k.salt_fp.clone());
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.zone,
            &self.kind,
            &self.resolution,
            &self.bucket,
            &self.epoch,
            &self.salt_fp,
            &self.sketch,
        ]
    }
}

/// Buckets' keys and numbers, for [`UPSERT_NUMBERS`](super::sql::UPSERT_NUMBERS).
#[derive(Default)]
struct NumberColumns {
    key: BucketColumns,
    estimate: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
}

impl NumberColumns {
    fn push(&mut self, k: &BucketKey, e: Estimate) {
        self.key.push(k);
        self.estimate.push(e.estimate);
        self.lower.push(e.lower);
        self.upper.push(e.upper);
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        let k = &self.key;
        [
            &k.zone,
            &k.kind,
            &k.resolution,
            &k.bucket,
            &k.epoch,
            &k.salt_fp,
            &self.estimate,
            &self.lower,
            &self.upper,
        ]
    }
}

pub(super) async fn purge_chunk(
    client: &mut Client,
    retention: Retention,
    now: Timestamp,
) -> Result<PurgeReport, StoreError> {
    let tx = client.transaction().await.map_err(db)?;
    let mut report = PurgeReport::default();
    for (resolution, before) in retention.sketch_cutoffs(now) {
        report.sketches += tx
            .execute(
                PURGE_SKETCHES,
                &[&resolution.as_str(), &before, &PURGE_CHUNK],
            )
            .await
            .map_err(db)?;
    }
    if let Some(before) = retention.number_cutoff(now) {
        report.numbers += tx
            .execute(PURGE_NUMBERS, &[&before, &PURGE_CHUNK])
            .await
            .map_err(db)?;
    }
    report.sensor_windows += tx
        .execute(
            PURGE_WINDOWS,
            &[&retention.window_cutoff(now), &PURGE_CHUNK],
        )
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(report)
}
