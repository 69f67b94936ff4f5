//! Store-and-forward of finished sketch messages: in order, bounded, surviving restarts.
//!
//! Each message is one file `<seq>.json` (the encoded envelope: a sketch, never an address
//! or a hash) written atomically (temp file, fsync, rename). Delivery takes the oldest;
//! a message leaves the outbox only when the broker acknowledged it. Beyond the bound the
//! oldest messages are dropped and counted: the live view needs the newest windows most,
//! and the loss is reported in the status and metrics, never silent.
//!
//! An outbox belongs to one sensor id ([`Outbox::open_for`]): after an installer changes
//! `sensor_id`, the old id's queued sketches would be published under the new id's topic and
//! rejected by the aggregator (their envelope names the old id). They are moved aside, into
//! `other-sensors/<old id>/`, counted and logged, and never sent as the new sensor.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crowdflow_contract::wire::SensorId;

/// Outbox failures.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The directory cannot be created, listed, written or read.
    #[error("outbox {path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Sequence number: delivery order.
    pub seq: u64,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The on-disk queue.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    max_bytes: u64,
    /// (seq, size) of every queued file, oldest first.
    index: VecDeque<(u64, u64)>,
    bytes: u64,
    next_seq: u64,
    overflowed: u64,
    set_aside: u64,
}

/// Where another sensor id's queued messages are kept, under the outbox directory.
pub const OTHER_SENSORS: &str = "other-sensors";

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Outbox {
    /// Opens (creating if needed) the outbox in `dir`, picking up what a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Outbox, OutboxError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut index = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                // Leftover temp files of an interrupted write are incomplete: remove them.
                if name.to_str().is_some_and(|n| n.ends_with(".tmp")) {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            };
            let size = entry.metadata().map_err(io_error(dir))?.len();
            index.push((seq, size));
        }
        index.sort_unstable();
        let bytes = index.iter().map(|(_, s)| s).sum();
        let next_seq = index.last().map_or(0, |(seq, _)| seq + 1);
        Ok(Outbox {
            dir: dir.to_owned(),
            max_bytes,
            index: index.into(),
            bytes,
            next_seq,
            overflowed: 0,
            set_aside: 0,
        })
    }

    /// Opens the outbox of sensor `owner`: like [`Outbox::open`], and queued messages whose
    /// envelope names another sensor id are moved to `other-sensors/<id>/` (kept for the
    /// operator, never sent), counted in [`Outbox::set_aside`] and logged once per id.
    pub fn open_for(dir: &Path, max_bytes: u64, owner: &SensorId) -> Result<Outbox, OutboxError> {
        let mut outbox = Outbox::open(dir, max_bytes)?;
        let mut moved: std::collections::BTreeMap<String, u64> = Default::default();
        for (seq, _) in outbox.index.clone() {
            let path = outbox.path(seq);
            let payload = fs::read(&path).map_err(io_error(&path))?;
            let Some(sender) = envelope_sensor(&payload) else {
                continue; // unreadable: the aggregator's reject says why
            };
            if sender == owner.as_str() {
                continue;
            }
            let aside = dir.join(OTHER_SENSORS).join(&sender);
            fs::create_dir_all(&aside).map_err(io_error(&aside))?;
            let to = aside.join(format!("{seq:020}.json"));
            fs::rename(&path, &to).map_err(io_error(&to))?;
            if let Some(pos) = outbox.index.iter().position(|(s, _)| *s == seq) {
                let (_, size) = outbox.index.remove(pos).unwrap_or_default();
                outbox.bytes -= size;
            }
            outbox.set_aside += 1;
            *moved.entry(sender).or_default() += 1;
        }
        for (sender, n) in moved {
            tracing::warn!(
                component = "outbox",
                queued_by = %sender,
                kept_aside = n,
                dir = %dir.join(OTHER_SENSORS).join(&sender).display(),
                "queued sketches of another sensor id are kept aside, not sent under this sensor's topic"
            );
        }
        Ok(outbox)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Queues a message durably; drops (and counts) the oldest beyond the bound.
    pub fn push(&mut self, payload: &[u8]) -> Result<u64, OutboxError> {
        let seq = self.next_seq;
        let path = self.path(seq);
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        {
            let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
            file.write_all(payload).map_err(io_error(&tmp))?;
            file.sync_all().map_err(io_error(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        self.next_seq += 1;
        self.index.push_back((seq, payload.len() as u64));
        self.bytes += payload.len() as u64;
        while self.bytes > self.max_bytes && self.index.len() > 1 {
            if let Some((old, _)) = self.index.front().copied() {
                self.remove(old)?;
                self.overflowed += 1;
            }
        }
        Ok(seq)
    }

    /// The oldest message, if any.
    pub fn peek(&self) -> Result<Option<Queued>, OutboxError> {
        let Some(&(seq, _)) = self.index.front() else {
            return Ok(None);
        };
        let path = self.path(seq);
        let payload = fs::read(&path).map_err(io_error(&path))?;
        Ok(Some(Queued { seq, payload }))
    }

    /// Removes a delivered message.
    pub fn ack(&mut self, seq: u64) -> Result<(), OutboxError> {
        self.remove(seq)
    }

    fn remove(&mut self, seq: u64) -> Result<(), OutboxError> {
        if let Some(pos) = self.index.iter().position(|(s, _)| *s == seq) {
            let (_, size) = self.index.remove(pos).unwrap_or_default();
            self.bytes -= size;
            let path = self.path(seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
        Ok(())
    }

    /// Messages waiting.
    pub fn depth(&self) -> u64 {
        self.index.len() as u64
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Messages dropped at the bound since this process started.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Messages of another sensor id moved aside when this outbox was opened.
    pub fn set_aside(&self) -> u64 {
        self.set_aside
    }
}

/// Messages queued in `dir` by sensor ids other than `owner`, by id, read without changing
/// anything (for `selfcheck`; [`Outbox::open_for`] sets them aside at the agent's start).
pub fn queued_by_others(dir: &Path, owner: &SensorId) -> std::collections::BTreeMap<String, u64> {
    let mut others = std::collections::BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return others;
    };
    for entry in entries.flatten() {
        let queued = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .is_some_and(|n| n.parse::<u64>().is_ok());
        let sender = queued
            .then(|| fs::read(entry.path()).ok())
            .flatten()
            .and_then(|payload| envelope_sensor(&payload));
        if let Some(sender) = sender.filter(|s| s != owner.as_str()) {
            *others.entry(sender).or_insert(0) += 1;
        }
    }
    others
}

/// The `sensor_id` an encoded envelope names, if it is a JSON object with one.
fn envelope_sensor(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        sensor_id: String,
    }
    serde_json::from_slice::<Envelope>(payload)
        .ok()
        .map(|e| e.sensor_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_out_in_order_and_leave_only_when_acknowledged() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut o = Outbox::open(dir.path(), 1 << 20).expect("open");
        for i in 0..3u8 {
            o.push(&[i; 10]).expect("push");
        }
        let first = o.peek().expect("read").expect("queued");
        assert_eq!(first.payload, vec![0; 10]);
        assert_eq!(
            o.peek().expect("read").expect("queued").seq,
            first.seq,
            "peek does not consume"
        );
        o.ack(first.seq).expect("ack");
        assert_eq!(
            o.peek().expect("read").expect("queued").payload,
            vec![1; 10]
        );
        assert_eq!((o.depth(), o.bytes()), (2, 20));
    }

    #[test]
    fn the_queue_survives_a_restart_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let mut o = Outbox::open(dir.path(), 1 << 20).expect("open");
            for i in 0..12u8 {
                o.push(&[i]).expect("push");
            }
            let s = o.peek().expect("read").expect("queued").seq;
            o.ack(s).expect("ack");
        }
        std::fs::write(dir.path().join("00000000000000000099.tmp"), b"half").expect("tmp");
        let mut o = Outbox::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(o.depth(), 11);
        let mut seen = Vec::new();
        while let Some(q) = o.peek().expect("read") {
            seen.push(q.payload[0]);
            o.ack(q.seq).expect("ack");
        }
        assert_eq!(seen, (1..12).collect::<Vec<u8>>());
        assert!(!dir.path().join("00000000000000000099.tmp").exists());
        assert_eq!(
            o.push(b"x").expect("push"),
            12,
            "sequence continues after a restart"
        );
    }

    #[test]
    fn beyond_the_bound_the_oldest_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut o = Outbox::open(dir.path(), 100).expect("open");
        for i in 0..25u8 {
            o.push(&[i; 10]).expect("push");
        }
        assert_eq!(o.depth(), 10);
        assert_eq!(o.overflowed(), 15);
        assert_eq!(
            o.peek().expect("read").expect("queued").payload,
            vec![15; 10]
        );
        assert!(o.bytes() <= 100);
    }

    fn envelope(sensor: &str, n: u8) -> Vec<u8> {
        format!("{{\"v\":1,\"sensor_id\":\"{sensor}\",\"n\":{n}}}").into_bytes()
    }

    #[test]
    fn another_sensor_ids_queued_sketches_are_kept_aside_not_sent() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let mut o = Outbox::open(dir.path(), 1 << 20).expect("open");
            o.push(&envelope("neude-01", 0)).expect("push");
            o.push(&envelope("neude-02", 1)).expect("push");
            o.push(b"not json").expect("push");
            o.push(&envelope("neude-01", 3)).expect("push");
        }
        let owner = SensorId::new("neude-02").expect("id");
        let mut o = Outbox::open_for(dir.path(), 1 << 20, &owner).expect("open");
        assert_eq!((o.set_aside(), o.depth()), (2, 2));
        let mut sent = Vec::new();
        while let Some(q) = o.peek().expect("read") {
            sent.push(q.payload.clone());
            o.ack(q.seq).expect("ack");
        }
        assert_eq!(sent, vec![envelope("neude-02", 1), b"not json".to_vec()]);
        let aside = dir.path().join(OTHER_SENSORS).join("neude-01");
        assert_eq!(std::fs::read_dir(&aside).expect("kept").count(), 2);
        // reopened: nothing more to move, the kept ones stay out of the queue
        let o = Outbox::open_for(dir.path(), 1 << 20, &owner).expect("reopen");
        assert_eq!((o.set_aside(), o.depth()), (0, 0));
    }
}
