//! Counting, the third stage: each sighting's address hashed under the epoch's salt into
//! its window's sketches ([`window`], [`sketches`]), physical Wi-Fi devices grouped by
//! fingerprint ([`devices`]), every frame tallied ([`tally`]). The [`Counter`] is the state
//! the capture threads and the publishing loop share.

pub mod devices;
pub mod installation;
pub mod sketches;
pub mod tally;
pub mod window;

use std::collections::BTreeMap;

use crowdflow_contract::identity::Kind;
use crowdflow_contract::wire::{
    AgentState, AgentStatus, OutboxHealth, PROTOCOL_VERSION, SaltAnnouncement, SaltRecovery,
    SensorId, SketchMessage,
};
use jiff::Timestamp;
use zeroize::Zeroizing;

use crate::frame::{Heard, Sighting, Skip};
use crate::salt::{Accepted, SaltKeeper};
use tally::Tally;
use window::Windows;

/// The agent's version string in messages.
pub const AGENT_VERSION: &str = concat!("crowdflow-agent ", env!("CARGO_PKG_VERSION"));

/// Where the capture source is, as the status message says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureState {
    /// No frame yet.
    Starting,
    /// Frames arrive.
    Capturing,
    /// The source failed (the message says why and what to do).
    Failed(String),
    /// Every capture file was replayed.
    Finished,
}

impl std::fmt::Display for CaptureState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureState::Starting => f.write_str("starting"),
            CaptureState::Capturing => f.write_str("capturing"),
            CaptureState::Failed(message) => write!(f, "error: {message}"),
            CaptureState::Finished => f.write_str("finished (all capture files replayed)"),
        }
    }
}

/// Frames, salts and open windows.
#[derive(Debug)]
pub struct Counter {
    sensor: SensorId,
    tally: Tally,
    no_salt: u64,
    salts: SaltKeeper,
    windows: Windows,
    salt_changes: u64,
    capture: CaptureState,
    rate: (Timestamp, u64, f64),
}

impl Counter {
    /// A counter for `sensor` over `windows`.
    pub fn new(sensor: SensorId, windows: Windows) -> Counter {
        Counter {
            sensor,
            tally: Tally::default(),
            no_salt: 0,
            salts: SaltKeeper::default(),
            windows,
            salt_changes: 0,
            capture: CaptureState::Starting,
            rate: (Timestamp::now(), 0, 0.0),
        }
    }

    /// Counts one decoded frame heard at `at` (without a capability fingerprint).
    pub fn record(&mut self, at: Timestamp, outcome: &Result<Heard, Skip>) {
        let sighting = outcome.map(|heard| Sighting {
            heard,
            fingerprint: None,
        });
        self.record_sighting(at, &sighting);
    }

    /// Counts one decoded frame heard at `at`, with its capability fingerprint.
    pub fn record_sighting(&mut self, at: Timestamp, outcome: &Result<Sighting, Skip>) {
        self.tally.record(&outcome.map(|s| s.heard));
        match outcome {
            Ok(s) => tracing::trace!(kind = %s.heard.kind(), rssi = ?s.heard.rssi, "frame counted"),
            Err(skip) => tracing::trace!(reason = skip.as_str(), "frame skipped"),
        }
        if let Ok(sighting) = outcome
            && self
                .windows
                .add_sighting(at, sighting, &self.salts)
                .is_err()
        {
            self.no_salt += 1;
        }
        if self.capture == CaptureState::Starting {
            self.capture = CaptureState::Capturing;
        }
    }

    /// Takes in a salt announcement.
    pub fn accept_salts(&mut self, announcement: SaltAnnouncement, now: Timestamp) -> Accepted {
        let announced: Vec<String> = announcement
            .salts
            .iter()
            .map(|s| s.epoch.to_string())
            .collect();
        let accepted = self.salts.accept(announcement, now);
        if accepted.new_epochs + accepted.replaced > 0 {
            let state = self.salts.state(now);
            // plain values: "in_use=2026-11-30", never Rust's Some(EpochId(..))
            let in_use = state
                .epoch
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none".into());
            let fp = state
                .fp
                .map(|f| f.to_string())
                .unwrap_or_else(|| "none".into());
            tracing::info!(
                announced = %announced.join(","),
                in_use = %in_use,
                fp = %fp,
                new = accepted.new_epochs,
                replaced = accepted.replaced,
                "salt accepted (the epochs announced; the one counting now, with its fingerprint)"
            );
        }
        self.salt_changes += accepted.replaced as u64;
        self.windows.start(now);
        accepted
    }

    /// The salt a restarted authority asks back, if held (see [`SaltKeeper::answer`]).
    pub fn salt_answer(
        &self,
        request: &SaltRecovery,
        sensor: &str,
        now: Timestamp,
    ) -> Option<Zeroizing<Vec<u8>>> {
        self.salts.answer(request, sensor, now)
    }

    /// Whether a salt covers `now`.
    pub fn counting(&self, now: Timestamp) -> bool {
        self.salts.at(now).is_some()
    }

    /// Opens again the published windows from the one containing `from` on (see
    /// [`Windows::reopen`]).
    pub fn reopen(&mut self, from: Timestamp) {
        self.windows.reopen(from);
    }

    /// Closes due windows (and forgets salts of ended epochs). After the capture failed or
    /// its files ended, windows that heard nothing are not published: a radio that stopped,
    /// or a replay past its last frame, would otherwise read as an empty place, where silence
    /// shows the zone without data.
    pub fn close_due(&mut self, now: Timestamp) -> Vec<SketchMessage> {
        let mut out = self
            .windows
            .close_due(now, &self.sensor, &self.salts, AGENT_VERSION);
        if matches!(
            self.capture,
            CaptureState::Failed(_) | CaptureState::Finished
        ) {
            // Per window and medium: a Wi-Fi window that heard addresses of one kind only
            // still publishes its empty kinds (their zero is true).
            let heard: std::collections::HashSet<_> = out
                .iter()
                .filter(|m| m.frames > 0)
                .map(|m| (m.window.start(), m.kind.medium()))
                .collect();
            out.retain(|m| heard.contains(&(m.window.start(), m.kind.medium())));
        }
        for m in &out {
            tracing::debug!(window = %m.window, kind = %m.kind, frames = m.frames, devices = %m.sketch.estimate(), "window closed");
        }
        self.salts.prune(now);
        out
    }

    /// Closes every open window, complete or not (shutdown).
    pub fn close_all(&mut self) -> Vec<SketchMessage> {
        self.windows
            .close_all(&self.sensor, &self.salts, AGENT_VERSION)
    }

    /// What the device estimate has learned of the installation (see [`installation`]).
    pub fn installation(&self) -> (&devices::RssiGate, &devices::ScanCadence) {
        self.windows.installation()
    }

    /// Adds a history learned before a restart (see [`installation`]).
    pub fn add_installation(&mut self, gate: &devices::RssiGate, cadence: &devices::ScanCadence) {
        self.windows.add_installation(gate, cadence);
    }

    /// The capture source failed.
    pub fn capture_error(&mut self, message: String) {
        if !matches!(&self.capture, CaptureState::Failed(m) if *m == message) {
            tracing::error!(
                "capture failed: {message}; windows that hear nothing are not published, so the zone shows no data rather than nobody"
            );
        }
        self.capture = CaptureState::Failed(message);
    }

    /// The capture source has no more frames. A failure stays what the status says (and
    /// keeps silent windows unpublished): a list of files whose one file was missing did
    /// not finish as it should.
    pub fn capture_done(&mut self) {
        if !matches!(self.capture, CaptureState::Failed(_)) {
            tracing::info!(
                "capture files finished; windows that hear nothing are no longer published, so the zone shows no data rather than nobody"
            );
            self.capture = CaptureState::Finished;
        }
    }

    /// Frames seen since start, counted and skipped.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Frames counted under `kind` since start.
    pub fn counted(&self, kind: Kind) -> u64 {
        self.tally.counted(kind)
    }

    /// Frames skipped for `reason` since start.
    pub fn skipped(&self, reason: Skip) -> u64 {
        self.tally.skipped(reason)
    }

    /// Frames refused for lack of a salt since start.
    pub fn without_salt(&self) -> u64 {
        self.no_salt
    }

    /// The status message.
    pub fn status(&mut self, now: Timestamp, outbox: OutboxHealth) -> AgentStatus {
        let (since, frames_then, last_rate) = self.rate;
        let secs = now.duration_since(since).as_secs_f64();
        let rate = if secs >= 1.0 {
            let r = (self.tally.frames - frames_then) as f64 / secs;
            self.rate = (now, self.tally.frames, r);
            r
        } else {
            last_rate
        };
        let mut drops: BTreeMap<String, u64> = self
            .tally
            .skipped_by_reason()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        if self.no_salt > 0 {
            drops.insert("no_salt".into(), self.no_salt);
        }
        if self.salt_changes > 0 {
            drops.insert("salt_replaced".into(), self.salt_changes);
        }
        AgentStatus {
            v: PROTOCOL_VERSION,
            sensor_id: self.sensor.clone(),
            state: AgentState::Online,
            at: Some(now),
            agent_version: Some(AGENT_VERSION.into()),
            frames_per_s: rate,
            frames_total: self.tally.frames,
            drops,
            outbox: Some(outbox),
            salt: Some(self.salts.state(now)),
            capture: Some(self.capture.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crowdflow_contract::identity::Medium;
    use crowdflow_contract::salt::Salt;
    use crowdflow_contract::sketch::Precision;
    use crowdflow_contract::window::WindowLength;
    use crowdflow_contract::wire::EpochSalt;
    use jiff::SignedDuration;

    #[test]
    fn after_the_capture_failed_windows_that_heard_nothing_are_not_published() {
        let now: Timestamp = "2026-04-27T12:00:00Z".parse().expect("ts");
        let kinds = vec![Kind::Wifi, Kind::WifiRandom, Kind::Ble];
        let mut counter = Counter::new(
            SensorId::new("s1").expect("id"),
            Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, kinds),
        );
        counter.accept_salts(
            SaltAnnouncement {
                authority: "test".into(),
                issued_at: now,
                salts: vec![EpochSalt {
                    epoch: "2026-04-27".parse().expect("epoch"),
                    starts: now - SignedDuration::from_hours(2),
                    ends: now + SignedDuration::from_hours(2),
                    salt: Salt::generate().expect("entropy"),
                }],
            },
            now,
        );
        let heard = Heard {
            medium: Medium::Wifi,
            address: [0, 1, 2, 3, 4, 5],
            rssi: None,
            randomized: false,
        };
        let minute = |m: i64| now + SignedDuration::from_mins(m);
        counter.record(minute(0) + SignedDuration::from_secs(10), &Ok(heard));
        // A quiet minute of a working radio publishes its zeros.
        let quiet = counter.close_due(minute(2) + SignedDuration::from_secs(5));
        assert_eq!(quiet.len(), 6, "two minutes of three kinds: {quiet:?}");
        counter.record(minute(2) + SignedDuration::from_secs(10), &Ok(heard));
        counter.capture_error("wlan1 went away".into());
        counter.capture_done();
        let after = counter.close_due(minute(5) + SignedDuration::from_secs(5));
        let published: Vec<(Timestamp, Kind)> =
            after.iter().map(|m| (m.window.start(), m.kind)).collect();
        // The minute that heard Wi-Fi, with its empty Wi-Fi kind; nothing of the silent ones.
        assert_eq!(
            published,
            vec![(minute(2), Kind::Wifi), (minute(2), Kind::WifiRandom)]
        );
    }

    #[test]
    fn after_the_capture_files_ended_windows_that_heard_nothing_are_not_published() {
        let now: Timestamp = "2026-04-27T12:00:00Z".parse().expect("ts");
        let mut counter = Counter::new(
            SensorId::new("s1").expect("id"),
            Windows::new(
                WindowLength::DEFAULT,
                Precision::DEFAULT,
                vec![Kind::Wifi, Kind::WifiRandom],
            ),
        );
        counter.accept_salts(
            SaltAnnouncement {
                authority: "test".into(),
                issued_at: now,
                salts: vec![EpochSalt {
                    epoch: "2026-04-27".parse().expect("epoch"),
                    starts: now - SignedDuration::from_hours(2),
                    ends: now + SignedDuration::from_hours(2),
                    salt: Salt::generate().expect("entropy"),
                }],
            },
            now,
        );
        let heard = Heard {
            medium: Medium::Wifi,
            address: [2, 1, 2, 3, 4, 5],
            rssi: None,
            randomized: true,
        };
        let minute = |m: i64| now + SignedDuration::from_mins(m);
        counter.record(minute(0) + SignedDuration::from_secs(10), &Ok(heard));
        counter.capture_done();
        assert_eq!(counter.capture, CaptureState::Finished);
        let after = counter.close_due(minute(4) + SignedDuration::from_secs(5));
        let published: Vec<(Timestamp, Kind)> =
            after.iter().map(|m| (m.window.start(), m.kind)).collect();
        // The last frames' minute (its Wi-Fi kinds); no zeros for the minutes after the files.
        assert_eq!(
            published,
            vec![(minute(0), Kind::Wifi), (minute(0), Kind::WifiRandom)]
        );
    }
}
