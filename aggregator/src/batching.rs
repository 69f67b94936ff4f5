//! Ingest batches, acknowledged only after they are committed.
//!
//! Sketch messages are acknowledged to the broker only after the batch holding them is
//! committed to storage (persistent session, manual acks), so a crash between receive and
//! commit loses nothing: the broker redelivers, and merging is idempotent. Acknowledgements
//! follow arrival order, as MQTT requires. A batch is [taken](Batcher::take) for its commit
//! while the next one gathers (one commit at a time, so batches commit and are acknowledged
//! in order); a failed commit is [put back](Batcher::put_back) in front of the pending
//! messages for the next attempt (unacknowledged, so a restart gets them redelivered).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::store::{Accepted, Batch, Rejected, Store, StoreError};
use crate::zone::ZoneId;

/// Messages stored per transaction at most. Brokers stop sending once their in-flight window
/// of unacknowledged messages is full (and we acknowledge only after commit), so batches
/// must stay well below that window: 2,000 on the embedded broker; set Mosquitto's
/// `max_inflight_messages` accordingly (deploy/ does). The window holds one batch committing
/// and the next gathering; with 512 and 1,000, a commit's fixed cost (every minute bucket it
/// touches read and rewritten) was paid twice as often: Mosquitto + PostgreSQL stored 0.40 of
/// the broker's rate, 0.46 with 1,024 and 2,000 (`benches/peers`, #19).
pub const MAX_BATCH: usize = 1024;
/// Longest a received message waits before its batch is committed.
pub const MAX_WAIT: Duration = Duration::from_millis(20);

/// The batch being gathered, with the messages behind it (`M`: a received publish).
#[derive(Debug)]
pub struct Batcher<M> {
    /// What the received sketch messages add to storage.
    pending: Batch,
    /// Those messages in arrival order (acks must follow that order).
    unacked: Vec<M>,
    /// When the oldest pending message arrived.
    since: Option<Instant>,
}

impl<M> Default for Batcher<M> {
    fn default() -> Self {
        Batcher {
            pending: Batch::default(),
            unacked: Vec::new(),
            since: None,
        }
    }
}

/// A batch taken for its commit, with the messages to acknowledge once it is stored.
#[derive(Debug)]
pub struct Taken<M> {
    /// What to store, in one transaction.
    pub batch: Batch,
    /// Its messages in arrival order.
    pub messages: Vec<M>,
    /// When the oldest of them arrived.
    since: Option<Instant>,
}

impl<M> Taken<M> {
    /// Stores the batch in one transaction (the batch is kept for a retry on failure).
    pub async fn commit(&self, store: &impl Store) -> Result<(), StoreError> {
        store.merge_batch(self.batch.clone()).await
    }

    /// The zones it stores sketches of (the live board has news of them once committed).
    pub fn zones(&self) -> BTreeSet<ZoneId> {
        self.batch.accepted.iter().map(|a| a.zone.clone()).collect()
    }
}

impl<M> Batcher<M> {
    /// Adds a message that ingest accepted, received at `now`.
    pub fn accept(&mut self, accepted: Accepted, message: M, now: Instant) {
        self.pending.accepted.push(accepted);
        self.hold(message, now);
    }

    /// Adds a message that ingest refused, received at `now`: a known sensor's reject is
    /// stored in its health; one under an unknown name (`None`) is only acknowledged.
    pub fn reject(&mut self, rejected: Option<Rejected>, message: M, now: Instant) {
        self.pending.rejects.extend(rejected);
        self.hold(message, now);
    }

    fn hold(&mut self, message: M, now: Instant) {
        self.since.get_or_insert(now);
        self.unacked.push(message);
    }

    /// Messages waiting for a commit.
    pub fn len(&self) -> usize {
        self.unacked.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.unacked.is_empty()
    }

    /// Whether the batch is to be committed now, full.
    pub fn is_full(&self) -> bool {
        self.unacked.len() >= MAX_BATCH
    }

    /// Whether the batch is to be committed at `now`, its oldest message having waited
    /// [`MAX_WAIT`].
    pub fn is_due(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|t| now.saturating_duration_since(t) >= MAX_WAIT)
    }

    /// Hands over the pending batch for its commit and starts a new one.
    pub fn take(&mut self) -> Taken<M> {
        Taken {
            batch: std::mem::take(&mut self.pending),
            messages: std::mem::take(&mut self.unacked),
            since: self.since.take(),
        }
    }

    /// Puts back a batch whose commit failed, in front of the messages that arrived since
    /// (acknowledgements keep arrival order); the next commit stores both.
    pub fn put_back(&mut self, mut taken: Taken<M>) {
        taken.batch.accepted.append(&mut self.pending.accepted);
        taken.batch.rejects.append(&mut self.pending.rejects);
        taken.messages.append(&mut self.unacked);
        self.pending = taken.batch;
        self.unacked = taken.messages;
        self.since = taken.since.into_iter().chain(self.since).min();
    }
}

#[cfg(test)]
mod tests {
    use crowdflow_contract::wire::SensorId;

    use super::*;

    fn rejected(sensor: &str) -> Option<Rejected> {
        Some(Rejected {
            sensor: SensorId::new(sensor).expect("id"),
            reason: "bad_json",
        })
    }

    #[test]
    fn a_batch_is_due_after_the_wait_of_its_oldest_message() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        assert!(!b.is_due(t0 + MAX_WAIT), "nothing waits");
        b.reject(None, 1, t0);
        b.reject(rejected("s1"), 2, t0 + MAX_WAIT / 2);
        assert!(!b.is_due(t0 + MAX_WAIT / 2));
        assert!(b.is_due(t0 + MAX_WAIT), "timed from the oldest");
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn a_batch_is_full_at_the_largest_transaction() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        for m in 0..MAX_BATCH - 1 {
            b.reject(None, m, t0);
        }
        assert!(!b.is_full());
        b.reject(None, MAX_BATCH, t0);
        assert!(b.is_full());
    }

    #[test]
    fn messages_are_released_in_arrival_order_only_once_committed() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        for m in ["a", "b", "c"] {
            b.reject(rejected("s1"), m, t0);
        }
        b.reject(None, "d", t0);
        assert_eq!(b.pending.rejects.len(), 3, "unknown names are not stored");
        let taken = b.take();
        assert_eq!(taken.messages, ["a", "b", "c", "d"]);
        assert!(taken.zones().is_empty());
        assert!(b.is_empty() && b.pending.is_empty() && !b.is_due(t0 + MAX_WAIT));
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_of_what_arrived_since() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        b.reject(rejected("s1"), "a", t0);
        let failed = b.take();
        b.reject(rejected("s2"), "b", t0 + MAX_WAIT / 2);
        b.put_back(failed);
        assert!(
            b.is_due(t0 + MAX_WAIT),
            "timed from the failed batch's oldest"
        );
        let retry = b.take();
        assert_eq!(retry.messages, ["a", "b"]);
        let sensors: Vec<&str> = retry
            .batch
            .rejects
            .iter()
            .map(|r| r.sensor.as_str())
            .collect();
        assert_eq!(sensors, ["s1", "s2"]);
    }

    #[tokio::test]
    async fn a_committed_batch_is_stored_before_its_messages_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::SqliteStore::open(
            &dir.path().join("db.sqlite"),
            crowdflow_contract::sketch::Precision::DEFAULT,
        )
        .expect("opens");
        let t0 = Instant::now();
        let mut b = Batcher::default();
        b.reject(rejected("s1"), "a", t0);
        b.reject(rejected("s1"), "b", t0);
        let taken = b.take();
        taken.commit(&store).await.expect("commits");
        assert_eq!(taken.messages, ["a", "b"]);
        let health = store.sensor_health().await.expect("reads");
        assert_eq!(health.len(), 1);
        assert_eq!(health[0].rejects.get("bad_json"), Some(&2));
    }
}
