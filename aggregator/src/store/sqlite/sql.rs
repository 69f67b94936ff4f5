//! The SQL the SQLite store runs, one constant per statement (so rustfmt formats the code
//! that runs them).

/// One bucket's stored sketch.
pub(super) const SELECT_BUCKET_SKETCH: &str = "
SELECT sketch
FROM zone_sketches
WHERE zone = ?1 AND kind = ?2 AND resolution = ?3 AND bucket = ?4 AND epoch = ?5 AND salt_fp = ?6";

/// Writes a bucket's merged sketch.
pub(super) const UPSERT_SKETCH: &str = "
INSERT INTO zone_sketches (zone, kind, resolution, bucket, epoch, salt_fp, sketch)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (zone, kind, resolution, bucket, epoch, salt_fp)
DO UPDATE SET sketch = excluded.sketch";

/// Writes a bucket's plain numbers.
pub(super) const UPSERT_NUMBER: &str = "
INSERT INTO zone_numbers (zone, kind, resolution, bucket, epoch, salt_fp, estimate, lower, upper)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (zone, kind, resolution, bucket, epoch, salt_fp)
DO UPDATE SET estimate = excluded.estimate, lower = excluded.lower, upper = excluded.upper";

/// One hour's packed minute numbers.
pub(super) const SELECT_PACKED_HOUR: &str = "
SELECT numbers
FROM minute_numbers
WHERE zone = ?1 AND kind = ?2 AND hour = ?3 AND epoch = ?4 AND salt_fp = ?5";

/// Writes one hour's packed minute numbers.
pub(super) const UPSERT_PACKED_HOUR: &str = "
INSERT INTO minute_numbers (zone, kind, hour, epoch, salt_fp, numbers)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (zone, kind, hour, epoch, salt_fp)
DO UPDATE SET numbers = excluded.numbers";

/// Packed minute numbers of one zone and kind with hour starts in `[?3, ?4)`.
pub(super) const SELECT_PACKED_HOURS: &str = "
SELECT hour, epoch, salt_fp, numbers
FROM minute_numbers
WHERE zone = ?1 AND kind = ?2 AND hour >= ?3 AND hour < ?4
ORDER BY hour, epoch, salt_fp";

/// Deletes up to `?2` packed hours whose minutes all start before `?1`.
pub(super) const PURGE_PACKED_HOURS: &str = "
DELETE
FROM minute_numbers
WHERE rowid IN (SELECT rowid
FROM minute_numbers
WHERE hour + 3600 <= ?1
LIMIT ?2)";

/// Queues a written minute bucket for the fold into its hour and day.
pub(super) const QUEUE_MINUTE: &str = "
INSERT INTO rollup_queue (zone, kind, bucket, epoch, salt_fp)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT
DO NOTHING";

/// The queued minutes' stored sketches.
pub(super) const SELECT_QUEUED_MINUTES: &str = "
SELECT q.zone, q.kind, q.bucket, q.epoch, q.salt_fp, s.sketch
FROM rollup_queue q
JOIN zone_sketches s ON s.zone = q.zone AND s.kind = q.kind AND s.resolution = 'minute' AND s.bucket = q.bucket AND s.epoch = q.epoch AND s.salt_fp = q.salt_fp";

/// Whether a minute waits for the fold.
pub(super) const ANY_QUEUED_MINUTE: &str = "
SELECT EXISTS (SELECT 1 FROM rollup_queue)";

/// Empties the rollup queue (in the fold's transaction).
pub(super) const CLEAR_QUEUE: &str = "
DELETE
FROM rollup_queue";

/// `rows` sensor windows (8 parameters each) in one statement; a replay keeps the larger
/// frame count and estimate.
pub(super) fn upsert_windows(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(",\n");
    format!(
        "
INSERT INTO sensor_windows (sensor, kind, window_start, window_s, epoch, salt_fp, frames, estimate)
VALUES {values}
ON CONFLICT (window_start, sensor, kind, epoch, salt_fp)
DO UPDATE SET frames = MAX(frames, excluded.frames), estimate = MAX(estimate, excluded.estimate)"
    )
}

/// `rows` sensors' latest window ends.
pub(super) fn upsert_seen(rows: usize) -> String {
    let values = vec!["(?, ?)"; rows].join(", ");
    format!(
        "
INSERT INTO sensor_seen (sensor, last_window_end)
VALUES {values}
ON CONFLICT (sensor)
DO UPDATE SET last_window_end = MAX(last_window_end, excluded.last_window_end)"
    )
}

/// Adds to a sensor's reject count for one reason.
pub(super) const UPSERT_REJECT: &str = "
INSERT INTO sensor_rejects (sensor, reason, count)
VALUES (?1, ?2, ?3)
ON CONFLICT (sensor, reason)
DO UPDATE SET count = count + excluded.count";

/// Deletes up to `?3` sketches of resolution `?1` before bucket `?2`.
pub(super) const PURGE_SKETCHES: &str = "
DELETE
FROM zone_sketches
WHERE (zone, kind, resolution, bucket, epoch, salt_fp) IN (SELECT zone, kind, resolution, bucket, epoch, salt_fp
FROM zone_sketches
WHERE resolution = ?1 AND bucket < ?2
LIMIT ?3)";

/// Deletes up to `?2` plain numbers before bucket `?1`.
pub(super) const PURGE_NUMBERS: &str = "
DELETE
FROM zone_numbers
WHERE (zone, kind, resolution, bucket, epoch, salt_fp) IN (SELECT zone, kind, resolution, bucket, epoch, salt_fp
FROM zone_numbers
WHERE bucket < ?1
LIMIT ?2)";

/// Deletes up to `?2` sensor windows starting before `?1`.
pub(super) const PURGE_WINDOWS: &str = "
DELETE
FROM sensor_windows
WHERE (window_start, sensor, kind, epoch, salt_fp) IN (SELECT window_start, sensor, kind, epoch, salt_fp
FROM sensor_windows
WHERE window_start < ?1
LIMIT ?2)";

/// Records an epoch's salt fingerprint (idempotent).
pub(super) const INSERT_EPOCH: &str = "
INSERT INTO salt_epochs (epoch, salt_fp, authority, recorded_at)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT
DO NOTHING";

/// Fingerprints of epochs on or after `?1`.
pub(super) const SELECT_EPOCHS: &str = "
SELECT epoch, salt_fp
FROM salt_epochs
WHERE epoch >= ?1
ORDER BY epoch";

/// Zone sketches of one zone, kind and resolution with bucket starts in `[?4, ?5)`.
pub(super) const SELECT_SKETCHES: &str = "
SELECT bucket, epoch, salt_fp, sketch
FROM zone_sketches
WHERE zone = ?1 AND kind = ?2 AND resolution = ?3 AND bucket >= ?4 AND bucket < ?5
ORDER BY bucket, epoch, salt_fp";

/// Plain numbers of one zone, kind and resolution with bucket starts in `[?4, ?5)`.
pub(super) const SELECT_NUMBERS: &str = "
SELECT bucket, epoch, salt_fp, estimate, lower, upper
FROM zone_numbers
WHERE zone = ?1 AND kind = ?2 AND resolution = ?3 AND bucket >= ?4 AND bucket < ?5
ORDER BY bucket, epoch, salt_fp";

/// Per sensor its latest window and frame total, then its rejects by reason. The total
/// saturates instead of failing: SQLite's SUM raises on 64-bit overflow, TOTAL sums in
/// floating point (rows stored before frames were bounded at ingest may be huge).
pub(super) const SELECT_HEALTH: &str = "
SELECT sensor, MAX(window_start), CAST(MIN(TOTAL(frames), 9.2e18) AS INTEGER), NULL, NULL
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
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT
DO NOTHING
RETURNING id";

/// Alerts raised at or after `?1`, newest first, at most `?2`.
pub(super) const SELECT_ALERTS: &str = "
SELECT id, at, zone, kind, level, threshold, value, message, acknowledged_at, acknowledged_by
FROM alerts
WHERE at >= ?1
ORDER BY at DESC, id DESC
LIMIT ?2";

/// Acknowledges the alert (?3 at, ?4 zone, ?5 kind, ?6 level) at ?1 by ?2, unless it
/// already is.
pub(super) const ACKNOWLEDGE_ALERT: &str = "
UPDATE alerts SET acknowledged_at = ?1, acknowledged_by = ?2
WHERE at = ?3 AND zone = ?4 AND kind = ?5 AND level = ?6 AND acknowledged_at IS NULL";
