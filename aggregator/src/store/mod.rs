//! Storage: one trait, two implementations (SQLite embedded, PostgreSQL for replicas).
//!
//! What is kept: per (zone, kind, resolution, bucket, epoch, salt fingerprint) one sketch,
//! the union of every sensor's windows in it, at minute, hour and day resolution (all three
//! updated by each ingest batch, so rollups are incremental), and beside each sketch its
//! plain numbers (estimate and bounds), which outlive the sketch under the retention policy;
//! per sensor window the frames and estimate, and per sensor the rejects by reason, for
//! health; and each epoch's salt fingerprint (never the salt). Unions are idempotent, so a
//! replayed batch changes nothing.

mod postgres;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use std::collections::BTreeMap;
use std::future::Future;

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Estimate, Precision, Sketch, SketchUnion};
use crowdflow_contract::wire::SensorId;
use jiff::Timestamp;

use crate::zone::ZoneId;
pub use postgres::PostgresStore;
#[cfg(any(test, feature = "testing"))]
pub use postgres::ScratchDatabase;
pub use sqlite::SqliteStore;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// Stored data does not decode (corruption or a foreign writer).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The schema is newer than this build understands.
    #[error(
        "the database schema is version {found}, this build knows up to {known}: upgrade crowdflow"
    )]
    SchemaTooNew {
        /// Version in the database.
        found: i64,
        /// Latest version this build knows.
        known: i64,
    },
}

/// Bucket sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One (UTC) day.
    Day,
}

impl Resolution {
    /// All resolutions.
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// Bucket length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
            Resolution::Day => 86_400,
        }
    }

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
        }
    }

    /// The bucket (start, unix seconds) containing `t`.
    pub fn bucket(self, t: Timestamp) -> i64 {
        t.as_second().div_euclid(self.seconds()) * self.seconds()
    }
}

impl std::str::FromStr for Resolution {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resolution::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(())
    }
}

/// One validated sketch message, ready to store.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Who measured.
    pub sensor: SensorId,
    /// The sensor's zone.
    pub zone: ZoneId,
    /// Address class.
    pub kind: Kind,
    /// Window start.
    pub window_start: Timestamp,
    /// Window length in seconds.
    pub window_s: u32,
    /// Salt epoch.
    pub epoch: EpochId,
    /// Salt fingerprint.
    pub salt_fp: SaltFingerprint,
    /// The devices heard.
    pub sketch: Sketch,
    /// Frames counted into it.
    pub frames: u64,
}

/// A message from a known sensor that ingest refused, counted in the sensor's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The sensor named by the topic.
    pub sensor: SensorId,
    /// The reject reason label.
    pub reason: &'static str,
}

/// What one commit stores. The messages behind it are acknowledged only after it commits.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Validated sketches.
    pub accepted: Vec<Accepted>,
    /// Refused messages of known sensors.
    pub rejects: Vec<Rejected>,
}

impl Batch {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty() && self.rejects.is_empty()
    }
}

/// Which stored buckets a read wants: one zone and kind at one resolution, with bucket
/// starts in `[from, to)`.
#[derive(Debug, Clone, Copy)]
pub struct BucketQuery<'a> {
    /// The zone.
    pub zone: &'a ZoneId,
    /// Address class.
    pub kind: Kind,
    /// Bucket size.
    pub resolution: Resolution,
    /// First bucket start included.
    pub from: Timestamp,
    /// Bucket starts before this.
    pub to: Timestamp,
}

/// A stored zone sketch.
#[derive(Debug, Clone)]
pub struct ZoneSketch {
    /// Bucket start.
    pub bucket: Timestamp,
    /// Salt epoch.
    pub epoch: EpochId,
    /// Salt fingerprint.
    pub salt_fp: SaltFingerprint,
    /// Union of the zone's sensors in the bucket.
    pub sketch: Sketch,
}

/// The plain numbers of a stored zone bucket (kept after its sketch is purged).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneNumber {
    /// Bucket start.
    pub bucket: Timestamp,
    /// Salt epoch.
    pub epoch: EpochId,
    /// Salt fingerprint.
    pub salt_fp: SaltFingerprint,
    /// Distinct devices of the zone in the bucket.
    pub devices: Estimate,
}

/// Per-sensor health from stored windows and rejects.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorHealth {
    /// The sensor.
    pub sensor: SensorId,
    /// Start of its latest stored window.
    pub last_window: Option<Timestamp>,
    /// Frames in stored windows.
    pub frames: u64,
    /// Refused messages by reason.
    pub rejects: BTreeMap<String, u64>,
}

/// An alert event: a zone crossing a level-of-service threshold or going stale.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// Storage id (0 before it is stored).
    pub id: i64,
    /// When it happened: the end of the window its figures stand on (for `stale`, when
    /// that window grew older than the silence limit), so replicas store it once.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The zone.
    #[schema(value_type = String)]
    pub zone: ZoneId,
    /// What it is about.
    pub kind: AlertKind,
    /// Level-of-service index reached (for "level").
    pub level: Option<u8>,
    /// The threshold crossed, persons per m2 (for "level").
    pub threshold: Option<f64>,
    /// The density estimate that crossed it (for "level").
    pub value: Option<f64>,
    /// Human-readable text.
    pub message: String,
    /// When it was acknowledged (null: not yet).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub acknowledged_at: Option<Timestamp>,
    /// Who acknowledged it: the token's configured name and its role ("control-room
    /// (viewer)"; "anonymous (planner)" without a token).
    pub acknowledged_by: Option<String>,
}

/// Which alert: replicas store an alert once by these four.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertKey {
    /// Its time, as listed.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The zone id.
    pub zone: String,
    /// Its kind.
    pub kind: AlertKind,
    /// Its level (null for staleness).
    pub level: Option<u8>,
}

/// What an alert is about; serialized and stored by its snake_case name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A level-of-service threshold crossed upwards.
    Level,
    /// Every sensor of the zone silent for more than two windows.
    Stale,
    /// The sensors of a stale zone report again.
    Recovered,
    /// A raised level cleared: the zone calmed below its threshold by a margin, for a while.
    Clear,
    /// A gate's density rises while its throughput falls: the stop-and-go sign.
    StopAndGo,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 5] = [
        AlertKind::Level,
        AlertKind::Stale,
        AlertKind::Recovered,
        AlertKind::Clear,
        AlertKind::StopAndGo,
    ];

    /// The name it is serialized and stored under.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Level => "level",
            AlertKind::Stale => "stale",
            AlertKind::Recovered => "recovered",
            AlertKind::Clear => "clear",
            AlertKind::StopAndGo => "stop_and_go",
        }
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AlertKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(())
    }
}

/// Compares with a serialized name, as clients see it.
impl PartialEq<&str> for AlertKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How long stored data is kept, in days; `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Minute sketches (and per-sensor windows).
    pub minute_sketch_days: u32,
    /// Hour sketches.
    pub hour_sketch_days: u32,
    /// Day sketches.
    pub day_sketch_days: Option<u32>,
    /// Plain numbers of every resolution.
    pub number_days: Option<u32>,
}

impl Default for Retention {
    /// The design's defaults: minute sketches 30 days, hour sketches a year, the rest kept.
    fn default() -> Self {
        Retention {
            minute_sketch_days: 30,
            hour_sketch_days: 365,
            day_sketch_days: None,
            number_days: None,
        }
    }
}

impl Retention {
    /// Per resolution, the bucket start (unix seconds) before which sketches go.
    fn sketch_cutoffs(&self, now: Timestamp) -> Vec<(Resolution, i64)> {
        [
            (Resolution::Minute, Some(self.minute_sketch_days)),
            (Resolution::Hour, Some(self.hour_sketch_days)),
            (Resolution::Day, self.day_sketch_days),
        ]
        .into_iter()
        .filter_map(|(r, days)| days.map(|d| (r, cutoff(now, d))))
        .collect()
    }

    /// The window start before which per-sensor windows go.
    fn window_cutoff(&self, now: Timestamp) -> i64 {
        cutoff(now, self.minute_sketch_days)
    }

    /// The bucket start before which plain numbers go.
    fn number_cutoff(&self, now: Timestamp) -> Option<i64> {
        self.number_days.map(|d| cutoff(now, d))
    }
}

fn cutoff(now: Timestamp, days: u32) -> i64 {
    now.as_second() - i64::from(days) * 86_400
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Zone sketches removed.
    pub sketches: u64,
    /// Plain numbers removed.
    pub numbers: u64,
    /// Per-sensor windows removed.
    pub sensor_windows: u64,
}

impl PurgeReport {
    fn add(&mut self, other: PurgeReport) {
        self.sketches += other.sketches;
        self.numbers += other.numbers;
        self.sensor_windows += other.sensor_windows;
    }
}

/// Runs `chunk` (one small purge transaction) until it removes nothing, so that a large purge
/// never holds up ingest for long; returns the sum.
async fn purge_in_chunks<F, Fut>(mut chunk: F) -> Result<PurgeReport, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<PurgeReport, StoreError>>,
{
    let mut total = PurgeReport::default();
    loop {
        let removed = chunk().await?;
        if removed == PurgeReport::default() {
            return Ok(total);
        }
        total.add(removed);
    }
}

/// Collects [`SensorHealth`] from rows of windows and of rejects, in sensor order.
#[derive(Default)]
struct HealthBuilder(BTreeMap<String, SensorHealth>);

impl HealthBuilder {
    fn add(
        &mut self,
        sensor: &str,
        last_window: Option<i64>,
        frames: Option<i64>,
        reject: Option<(String, i64)>,
    ) -> Result<(), StoreError> {
        if !self.0.contains_key(sensor) {
            let health = SensorHealth {
                sensor: parse(sensor, "sensor id")?,
                last_window: None,
                frames: 0,
                rejects: BTreeMap::new(),
            };
            self.0.insert(sensor.to_owned(), health);
        }
        let Some(h) = self.0.get_mut(sensor) else {
            return Ok(());
        };
        if let Some(last) = last_window {
            h.last_window = Some(timestamp(last)?);
        }
        h.frames += frames.and_then(|f| u64::try_from(f).ok()).unwrap_or(0);
        if let Some((reason, count)) = reject {
            *h.rejects.entry(reason).or_insert(0) += u64::try_from(count).unwrap_or(0);
        }
        Ok(())
    }

    fn finish(self) -> Vec<SensorHealth> {
        self.0.into_values().collect()
    }
}

/// Identity of one stored zone bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BucketKey {
    zone: String,
    kind: &'static str,
    resolution: Resolution,
    bucket: i64,
    epoch: String,
    salt_fp: String,
}

/// The text forms of the epochs and salt fingerprints of a batch's messages, formatted once
/// per change, not once per message: a batch's messages share one or two, and formatting
/// them per message cost a tenth of a commit (#19).
#[derive(Default)]
struct SaltText {
    last: Option<((EpochId, SaltFingerprint), (String, String))>,
}

impl SaltText {
    /// `epoch` and `fp` as stored (text).
    fn of(&mut self, epoch: EpochId, fp: SaltFingerprint) -> (String, String) {
        match &self.last {
            Some((key, text)) if *key == (epoch, fp) => text.clone(),
            _ => {
                let text = (epoch.to_string(), fp.to_string());
                self.last = Some(((epoch, fp), text.clone()));
                text
            }
        }
    }
}

/// Each sketch of a batch in its minute bucket, so each bucket costs one read-merge-write,
/// in one global order (which also keeps concurrent replicas from deadlocking on row locks).
fn union_by_minute(batch: &[Accepted], precision: Precision) -> BTreeMap<BucketKey, SketchUnion> {
    let mut unions: BTreeMap<BucketKey, SketchUnion> = BTreeMap::new();
    let mut salt_text = SaltText::default();
    for m in batch {
        let (epoch, salt_fp) = salt_text.of(m.epoch, m.salt_fp);
        let key = BucketKey {
            zone: m.zone.to_string(),
            kind: m.kind.as_str(),
            resolution: Resolution::Minute,
            bucket: Resolution::Minute.bucket(m.window_start),
            epoch,
            salt_fp,
        };
        unions
            .entry(key)
            .or_insert_with(|| SketchUnion::new(precision))
            .add(&m.sketch);
    }
    unions
}

/// The hour and day buckets of minute unions: minutes fold into hours, hours into days (a
/// union of unions is the union of their sketches, so a dense sketch is merged once, not
/// three times).
fn roll_up(
    minutes: &BTreeMap<BucketKey, SketchUnion>,
    precision: Precision,
) -> BTreeMap<BucketKey, SketchUnion> {
    let mut hours = fold_into(minutes, Resolution::Hour, precision);
    let mut days = fold_into(&hours, Resolution::Day, precision);
    hours.append(&mut days);
    hours
}

/// Finer buckets' unions folded into the buckets of `resolution` that hold them.
fn fold_into(
    finer: &BTreeMap<BucketKey, SketchUnion>,
    resolution: Resolution,
    precision: Precision,
) -> BTreeMap<BucketKey, SketchUnion> {
    let mut coarse: BTreeMap<BucketKey, SketchUnion> = BTreeMap::new();
    for (key, union) in finer {
        coarse
            .entry(key.at(resolution))
            .or_insert_with(|| SketchUnion::new(precision))
            .add_union(union);
    }
    coarse
}

impl BucketKey {
    /// The bucket of `resolution` this bucket lies in.
    fn at(&self, resolution: Resolution) -> BucketKey {
        BucketKey {
            resolution,
            bucket: self.bucket.div_euclid(resolution.seconds()) * resolution.seconds(),
            ..self.clone()
        }
    }
}

/// The bytes a bucket's sketch is stored as: minute sketches (the most numerous, mostly
/// sparse) in the compact wire form, hour and day sketches (merged by every range query) in
/// the form a union merges fastest.
fn stored_form(resolution: Resolution, sketch: &Sketch) -> Vec<u8> {
    match resolution {
        Resolution::Minute => sketch.encode(),
        Resolution::Hour | Resolution::Day => sketch.encode_for_merging(),
    }
}

/// Reject counts of a batch by (sensor, reason).
fn count_rejects(rejects: &[Rejected]) -> BTreeMap<(&str, &'static str), i64> {
    let mut counts = BTreeMap::new();
    for r in rejects {
        *counts.entry((r.sensor.as_str(), r.reason)).or_insert(0) += 1;
    }
    counts
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("stored {what} does not parse")))
}

fn timestamp(seconds: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_second(seconds)
        .map_err(|_| StoreError::Corrupt(format!("stored time {seconds} is out of range")))
}

/// What every storage backend offers.
pub trait Store: Clone + Send + Sync + 'static {
    /// Records that `epoch`'s salt has fingerprint `fp` (idempotent).
    fn record_epoch(
        &self,
        epoch: EpochId,
        fp: SaltFingerprint,
        authority: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Fingerprints of epochs on or after `since`.
    fn known_epochs(
        &self,
        since: EpochId,
    ) -> impl Future<Output = Result<Vec<(EpochId, SaltFingerprint)>, StoreError>> + Send;

    /// Merges a batch into minute, hour and day buckets, their numbers, sensor windows and
    /// reject counts, atomically.
    fn merge_batch(&self, batch: Batch) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The zone sketches `query` names.
    fn zone_sketches(
        &self,
        query: BucketQuery<'_>,
    ) -> impl Future<Output = Result<Vec<ZoneSketch>, StoreError>> + Send;

    /// The zone sketches `query` names for each of `kinds` (in its order; `query.kind` is
    /// not read): a distinct answer reads every kind of each tile. By default one read per
    /// kind, side by side; a store that can answers in one.
    fn zone_sketches_by_kind(
        &self,
        query: BucketQuery<'_>,
        kinds: &[Kind],
    ) -> impl Future<Output = Result<Vec<Vec<ZoneSketch>>, StoreError>> + Send {
        futures_util::future::try_join_all(
            kinds
                .iter()
                .map(move |&kind| self.zone_sketches(BucketQuery { kind, ..query })),
        )
    }

    /// The plain numbers of the buckets `query` names.
    fn zone_numbers(
        &self,
        query: BucketQuery<'_>,
    ) -> impl Future<Output = Result<Vec<ZoneNumber>, StoreError>> + Send;

    /// Latest window, frame total and rejects of every sensor that sent anything.
    fn sensor_health(&self) -> impl Future<Output = Result<Vec<SensorHealth>, StoreError>> + Send;

    /// End of every sensor's latest stored window (one row per sensor: cheap to poll).
    fn sensors_seen(
        &self,
    ) -> impl Future<Output = Result<Vec<(SensorId, Timestamp)>, StoreError>> + Send;

    /// Stores an alert unless the same (time, zone, kind, level) is stored: its id if new,
    /// `None` when a replica stored it first.
    fn record_alert(
        &self,
        alert: Alert,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Acknowledges an alert at `at` by `role`; false when no unacknowledged alert matches.
    fn acknowledge_alert(
        &self,
        key: AlertKey,
        role: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Alerts raised at or after `since`, newest first, at most `limit`.
    fn alerts(
        &self,
        since: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Alert>, StoreError>> + Send;

    /// Deletes what `retention` no longer keeps, as of `now`.
    fn purge(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> impl Future<Output = Result<PurgeReport, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hour and day buckets made from the batch's minute unions hold exactly the sketch
    /// that merging every message into each of its buckets gives (minutes across an hour
    /// and a day boundary, two zones, sparse and dense sketches).
    #[test]
    fn coarse_buckets_from_minute_unions_equal_the_unions_of_their_messages() {
        let precision = Precision::DEFAULT;
        let epoch = EpochId::new(jiff::civil::date(2026, 12, 1)).expect("epoch");
        let salt_fp = crowdflow_contract::salt::Salt::generate()
            .expect("salt")
            .fingerprint();
        let start: Timestamp = "2026-12-01T23:57:00Z".parse().expect("time");
        let batch: Vec<Accepted> = (0..60u64)
            .map(|i| {
                let mut sketch = Sketch::new(precision);
                let devices = if i % 7 == 0 { 3_000 } else { 15 };
                (i * 100..i * 100 + devices).for_each(|d| sketch.insert_bytes(&d.to_le_bytes()));
                Accepted {
                    sensor: SensorId::new(&format!("s{}", i % 3)).expect("sensor"),
                    zone: ZoneId::new(if i % 2 == 0 { "a" } else { "b" }).expect("zone"),
                    kind: Kind::Wifi,
                    window_start: start + jiff::SignedDuration::from_secs(i as i64 * 10),
                    window_s: 10,
                    epoch,
                    salt_fp,
                    sketch,
                    frames: 1,
                }
            })
            .collect();
        let mut reference: BTreeMap<BucketKey, SketchUnion> = BTreeMap::new();
        for m in &batch {
            for resolution in Resolution::ALL {
                let key = BucketKey {
                    zone: m.zone.to_string(),
                    kind: m.kind.as_str(),
                    resolution,
                    bucket: resolution.bucket(m.window_start),
                    epoch: m.epoch.to_string(),
                    salt_fp: m.salt_fp.to_string(),
                };
                reference
                    .entry(key)
                    .or_insert_with(|| SketchUnion::new(precision))
                    .add(&m.sketch);
            }
        }
        let mut got = union_by_minute(&batch, precision);
        got.append(&mut roll_up(&got, precision));
        let keys = |m: &BTreeMap<BucketKey, SketchUnion>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&got), keys(&reference));
        let days = got
            .keys()
            .filter(|k| k.resolution == Resolution::Day)
            .count();
        assert_eq!(days, 4, "two zones, each across midnight");
        for (key, union) in &got {
            assert_eq!(
                union.to_sketch().encode(),
                reference[key].to_sketch().encode(),
                "{key:?}"
            );
        }
    }
}
