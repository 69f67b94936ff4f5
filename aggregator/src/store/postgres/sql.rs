//! The SQL the PostgreSQL store runs, one constant per statement (so rustfmt formats the
//! code that runs them).

/// Inserts buckets' sketches, given as arrays in key order; on conflict locks the row. Returns
/// each bucket's key with what is stored (the batch's sketch where the bucket is new).
pub(super) const UPSERT_SKETCHES: &str = "
INSERT INTO zone_sketches (zone, kind, resolution, bucket, epoch, salt_fp, sketch)
SELECT *
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bytea[])
ON CONFLICT (zone, kind, resolution, bucket, epoch, salt_fp)
DO UPDATE SET sketch = zone_sketches.sketch
RETURNING zone, kind, resolution, bucket, epoch, salt_fp, sketch";

/// Writes buckets' merged sketches back, as arrays (same transaction, rows still locked).
pub(super) const UPDATE_SKETCHES: &str = "
UPDATE zone_sketches s
SET sketch = u.sketch
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bytea[])
    AS u(zone, kind, resolution, bucket, epoch, salt_fp, sketch)
WHERE s.zone = u.zone AND s.kind = u.kind AND s.resolution = u.resolution AND s.bucket = u.bucket
    AND s.epoch = u.epoch AND s.salt_fp = u.salt_fp";

/// Writes buckets' plain numbers, as arrays.
pub(super) const UPSERT_NUMBERS: &str = "
INSERT INTO zone_numbers (zone, kind, resolution, bucket, epoch, salt_fp, estimate, lower, upper)
SELECT *
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::float8[], $8::float8[], $9::float8[])
ON CONFLICT (zone, kind, resolution, bucket, epoch, salt_fp)
DO UPDATE SET estimate = excluded.estimate, lower = excluded.lower, upper = excluded.upper";

/// A batch's sensor windows as arrays; a replay keeps the larger frame count and estimate.
pub(super) const UPSERT_WINDOWS: &str = "
INSERT INTO sensor_windows (sensor, kind, window_start, window_s, epoch, salt_fp, frames, estimate)
SELECT *
FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::float8[])
ON CONFLICT (sensor, kind, window_start, epoch, salt_fp)
DO UPDATE SET frames = GREATEST(sensor_windows.frames, excluded.frames), estimate = GREATEST(sensor_windows.estimate, excluded.estimate)";

/// Adds to a sensor's reject count for one reason.
pub(super) const UPSERT_REJECT: &str = "
INSERT INTO sensor_rejects (sensor, reason, count)
VALUES ($1, $2, $3)
ON CONFLICT (sensor, reason)
DO UPDATE SET count = sensor_rejects.count + excluded.count";

/// Each sensor's latest window end, from a batch's window arrays.
pub(super) const UPSERT_SEEN: &str = "
INSERT INTO sensor_seen (sensor, last_window_end)
SELECT sensor, MAX(start + length)
FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS w(sensor, start, length)
GROUP BY sensor
ON CONFLICT (sensor)
DO UPDATE SET last_window_end = GREATEST(sensor_seen.last_window_end, excluded.last_window_end)";

/// Queues a batch's minute buckets for their hour and day. A queued minute is updated, not
/// skipped: the row lock makes a fold that claims it wait until this batch commits, so the
/// fold reads the minute with the batch in it.
pub(super) const QUEUE_MINUTES: &str = "
INSERT INTO rollup_queue (zone, kind, bucket, epoch, salt_fp)
SELECT *
FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
ON CONFLICT (zone, kind, bucket, epoch, salt_fp)
DO UPDATE SET bucket = excluded.bucket";

/// Takes every queued minute out of the queue (replicas folding at once claim disjoint
/// minutes: a row another fold deleted is skipped once that fold commits).
pub(super) const CLAIM_QUEUED: &str = "
DELETE
FROM rollup_queue
RETURNING zone, kind, bucket, epoch, salt_fp";

/// The sketches of claimed minutes (a statement of its own: it must see what the batches
/// the claim waited for committed).
pub(super) const SELECT_MINUTE_SKETCHES: &str = "
SELECT s.zone, s.kind, s.bucket, s.epoch, s.salt_fp, s.sketch
FROM zone_sketches s
JOIN UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[]) AS q(zone, kind, bucket, epoch, salt_fp)
ON s.zone = q.zone AND s.kind = q.kind AND s.resolution = 'minute' AND s.bucket = q.bucket AND s.epoch = q.epoch AND s.salt_fp = q.salt_fp";

/// Whether any minute waits for its fold.
pub(super) const ANY_QUEUED: &str = "
SELECT EXISTS (SELECT 1 FROM rollup_queue)";

/// Deletes up to `$3` sketches of resolution `$1` before bucket `$2`.
pub(super) const PURGE_SKETCHES: &str = "
DELETE
FROM zone_sketches
WHERE ctid IN (SELECT ctid
FROM zone_sketches
WHERE resolution = $1 AND bucket < $2
LIMIT $3)";

/// Deletes up to `$2` plain numbers before bucket `$1`.
pub(super) const PURGE_NUMBERS: &str = "
DELETE
FROM zone_numbers
WHERE ctid IN (SELECT ctid
FROM zone_numbers
WHERE bucket < $1
LIMIT $2)";

/// Deletes up to `$2` sensor windows starting before `$1`.
pub(super) const PURGE_WINDOWS: &str = "
DELETE
FROM sensor_windows
WHERE ctid IN (SELECT ctid
FROM sensor_windows
WHERE window_start < $1
LIMIT $2)";

/// Records an epoch's salt fingerprint (idempotent).
pub(super) const INSERT_EPOCH: &str = "
INSERT INTO salt_epochs (epoch, salt_fp, authority, recorded_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT
DO NOTHING";

/// Fingerprints of epochs on or after `$1`.
pub(super) const SELECT_EPOCHS: &str = "
SELECT epoch, salt_fp
FROM salt_epochs
WHERE epoch >= $1
ORDER BY epoch";

/// Zone sketches of one zone, kind and resolution with bucket starts in `[$4, $5)`.
pub(super) const SELECT_SKETCHES: &str = "
SELECT bucket, epoch, salt_fp, sketch
FROM zone_sketches
WHERE zone = $1 AND kind = $2 AND resolution = $3 AND bucket >= $4 AND bucket < $5
ORDER BY bucket, epoch, salt_fp";

/// Plain numbers of one zone, kind and resolution with bucket starts in `[$4, $5)`.
pub(super) const SELECT_NUMBERS: &str = "
SELECT bucket, epoch, salt_fp, estimate, lower, upper
FROM zone_numbers
WHERE zone = $1 AND kind = $2 AND resolution = $3 AND bucket >= $4 AND bucket < $5
ORDER BY bucket, epoch, salt_fp";

/// Per sensor its latest window and frame total, then its rejects by reason. The total
/// saturates instead of failing: SUM(bigint) is numeric, and its cast back overflowed on rows
/// stored before frames were bounded at ingest.
pub(super) const SELECT_HEALTH: &str = "
SELECT sensor, MAX(window_start), LEAST(SUM(frames), 9223372036854775807)::bigint, NULL::text, NULL::bigint
FROM sensor_windows
GROUP BY sensor
UNION ALL
SELECT sensor, NULL, NULL, reason, count
FROM sensor_rejects";

/// Every sensor's latest window end.
pub(super) const SELECT_SEEN: &str = "
SELECT sensor, last_window_end
FROM sensor_seen
ORDER BY sensor";

/// Stores an alert unless the same (time, zone, kind, level) is stored; its id when new.
pub(super) const INSERT_ALERT: &str = "
INSERT INTO alerts (at, zone, kind, level, threshold, value, message)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT
DO NOTHING
RETURNING id";

/// Alerts raised at or after `$1`, newest first, at most `$2`.
pub(super) const SELECT_ALERTS: &str = "
SELECT id, at, zone, kind, level, threshold, value, message, acknowledged_at, acknowledged_by
FROM alerts
WHERE at >= $1
ORDER BY at DESC, id DESC
LIMIT $2";

/// Acknowledges the alert ($3 at, $4 zone, $5 kind, $6 level) at $1 by $2, unless it
/// already is.
pub(super) const ACKNOWLEDGE_ALERT: &str = "
UPDATE alerts SET acknowledged_at = $1, acknowledged_by = $2
WHERE at = $3 AND zone = $4 AND kind = $5 AND level = $6 AND acknowledged_at IS NULL";
