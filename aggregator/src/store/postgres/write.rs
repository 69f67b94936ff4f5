//! Writes: merging a batch into its buckets in one transaction, and purging in chunks.

use std::collections::BTreeMap;

use crowdflow_contract::sketch::{Precision, Sketch};
use futures_util::future::try_join_all;
use jiff::Timestamp;
use tokio_postgres::Client;

use super::sql::{PURGE_NUMBERS, PURGE_SKETCHES, PURGE_WINDOWS};
use super::{Conn, PURGE_CHUNK, db, get};
use crate::store::{Batch, PurgeReport, Retention, StoreError, count_rejects, union_by_bucket};

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

pub(super) async fn merge_in_transaction(
    conn: &mut Conn,
    precision: Precision,
    batch: Batch,
) -> Result<(), StoreError> {
    let unions = union_by_bucket(&batch.accepted, precision);
    let windows = window_columns(&batch);
    let s = &conn.s;
    let tx = conn.client.transaction().await.map_err(db)?;
    // Two pipelined rounds instead of two or three round trips per bucket, one after the
    // other (PostgreSQL ingest ran at a fifth of the broker's rate): every bucket's row,
    // inserted with the batch's union if new and locked either way; then the merged sketches
    // and numbers. The statements run in key order, so replicas lock rows in one order.
    let buckets: Vec<_> = unions.into_iter().collect();
    let t = &tx;
    let ours: Vec<Vec<u8>> = buckets
        .iter()
        .map(|(k, union)| crate::store::stored_form(k.resolution, &union.to_sketch()))
        .collect();
    let rows = try_join_all(buckets.iter().zip(&ours).map(|((k, _), bytes)| {
        let res = k.resolution.as_str();
        async move {
            t.query_one(
                &s.upsert_sketch,
                &[
                    &k.zone, &k.kind, &res, &k.bucket, &k.epoch, &k.salt_fp, bytes,
                ],
            )
            .await
        }
    }))
    .await
    .map_err(db)?;
    let mut merged = Vec::with_capacity(buckets.len());
    for ((k, mut union), row) in buckets.into_iter().zip(rows) {
        let stored: Vec<u8> = get(&row, 0)?;
        let sketch = Sketch::from_stored(&stored, precision).map_err(|e| {
            StoreError::Corrupt(format!("zone {} bucket {}: {e}", k.zone, k.bucket))
        })?;
        union.add(&sketch);
        let sketch = union.to_sketch();
        let bytes = crate::store::stored_form(k.resolution, &sketch);
        let changed = (bytes != stored).then_some(bytes);
        merged.push((k, changed, sketch.estimate()));
    }
    try_join_all(merged.iter().map(|(k, changed, e)| {
        let res = k.resolution.as_str();
        async move {
            if let Some(bytes) = changed {
                t.execute(
                    &s.update_sketch,
                    &[
                        &k.zone, &k.kind, &res, &k.bucket, &k.epoch, &k.salt_fp, bytes,
                    ],
                )
                .await?;
            }
            t.execute(
                &s.upsert_number,
                &[
                    &k.zone,
                    &k.kind,
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
        }
    }))
    .await
    .map_err(db)?;
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
