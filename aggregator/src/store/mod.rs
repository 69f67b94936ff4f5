//! Storage: one trait, two implementations (SQLite embedded, PostgreSQL for replicas).
//!
//! What is kept: per (zone, kind, resolution, bucket, epoch, salt fingerprint) one sketch,
//! the union of every sensor's windows in it, at minute, hour and day resolution (all three
//! updated by each ingest batch, so rollups are incremental); per sensor window the frames
//! and estimate, for health and idempotent frame totals; and each epoch's salt fingerprint
//! (never the salt). Unions are idempotent, so a replayed batch changes nothing.

mod sqlite;

use std::future::Future;

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::Sketch;
use crowdflow_contract::wire::SensorId;
use jiff::Timestamp;

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

/// One validated sketch message, ready to store.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Who measured.
    pub sensor: SensorId,
    /// The sensor's zone.
    pub zone: SensorId,
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

/// Per-sensor health from stored windows.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorHealth {
    /// The sensor.
    pub sensor: SensorId,
    /// Start of its latest stored window.
    pub last_window: Option<Timestamp>,
    /// Frames in stored windows.
    pub frames: u64,
}

/// What every storage backend offers.
pub trait Store: Send + Sync + 'static {
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

    /// Merges a batch into minute, hour and day buckets and sensor windows, atomically.
    fn ingest(&self, batch: Vec<Accepted>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Zone sketches of one kind and resolution with bucket starts in `[from, to)`.
    fn zone_sketches(
        &self,
        zone: &SensorId,
        kind: Kind,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<Vec<ZoneSketch>, StoreError>> + Send;

    /// Latest window and frame total of every sensor that sent anything.
    fn sensor_health(&self) -> impl Future<Output = Result<Vec<SensorHealth>, StoreError>> + Send;
}
