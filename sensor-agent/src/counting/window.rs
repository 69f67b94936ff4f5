//! Windows of counting: one [`WindowCount`] per (window, epoch salt), closed into sketch
//! messages once the window is over. The physical-device estimate (`crate::counting::devices`) of a
//! window is made when it closes, under the signal gate learned so far, and its grouping
//! state is dropped with it.
//!
//! A window normally lies in one epoch; one that straddles a rotation (or a salt change)
//! gets one sketch set per salt, so no sketch ever mixes two salts.

use std::collections::BTreeMap;

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::{Kind, Medium};
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::{Window, WindowLength};
use crowdflow_contract::wire::{SensorId, SketchMessage};
use jiff::{SignedDuration, Timestamp};

use super::devices::{DeviceRule, RssiGate, ScanCadence};
use super::sketches::{KindSketches, WindowCount};
use crate::frame::{Heard, Sighting};
use crate::salt::SaltKeeper;

/// How long after its end a window stays open for late frames (capture buffering).
pub const CLOSE_DELAY: SignedDuration = SignedDuration::from_secs(2);

/// The frame could not be counted: no salt covers its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSalt;

type Key = (Timestamp, EpochId, SaltFingerprint);

/// Open windows and their sketches.
#[derive(Debug)]
pub struct Windows {
    length: WindowLength,
    precision: Precision,
    kinds: Vec<Kind>,
    open: BTreeMap<Key, WindowCount>,
    /// The next window to close: windows are closed in order, each exactly once.
    next: Option<Window>,
    /// The installation's signal history, for the device estimate's gate.
    gate: RssiGate,
    /// The installation's scan cadence, for the device estimate of a crowd.
    cadence: ScanCadence,
    /// How groups are read (`capture.device_count`).
    rule: DeviceRule,
    /// A gate configured by the operator replaces the learned one.
    fixed_gate: Option<Option<i8>>,
}

impl Windows {
    /// Windows of `length`, publishing sketches of `kinds`.
    pub fn new(length: WindowLength, precision: Precision, kinds: Vec<Kind>) -> Windows {
        Windows {
            length,
            precision,
            kinds,
            open: BTreeMap::new(),
            next: None,
            gate: RssiGate::default(),
            cadence: ScanCadence::default(),
            rule: DeviceRule::default(),
            fixed_gate: None,
        }
    }

    /// Uses the operator's zone gate (`capture.min_rssi_dbm`, already applied to every frame)
    /// instead of learning one: with `Some`, the device estimate adds no gate of its own.
    pub fn with_configured_gate(mut self, min_rssi: Option<i8>) -> Windows {
        if min_rssi.is_some() {
            self.fixed_gate = Some(None);
        }
        self
    }

    /// What the device estimate has learned of the installation: its signal history and
    /// scan cadence ([`super::installation`] keeps them across restarts).
    pub fn installation(&self) -> (&RssiGate, &ScanCadence) {
        (&self.gate, &self.cadence)
    }

    /// Adds a history learned before (a restarted agent's) to what was heard since.
    pub fn add_installation(&mut self, gate: &RssiGate, cadence: &ScanCadence) {
        self.gate.add(gate);
        self.cadence.add(cadence);
    }

    /// Reads capability groups under the installer's `rule` (`capture.device_count`).
    pub fn with_device_rule(mut self, rule: DeviceRule) -> Windows {
        self.rule = rule;
        self
    }

    /// Counts a sighting at `t` under the salt that covers `t` (no fingerprint).
    pub fn add(&mut self, t: Timestamp, heard: &Heard, salts: &SaltKeeper) -> Result<(), NoSalt> {
        let sighting = Sighting {
            heard: *heard,
            fingerprint: None,
        };
        self.add_sighting(t, &sighting, salts)
    }

    /// Counts a sighting at `t` under the salt that covers `t`.
    pub fn add_sighting(
        &mut self,
        t: Timestamp,
        sighting: &Sighting,
        salts: &SaltKeeper,
    ) -> Result<(), NoSalt> {
        if let (Medium::Wifi, Some(rssi)) = (sighting.heard.medium, sighting.heard.rssi) {
            self.gate.observe(rssi);
        }
        let epoch = salts.at(t).ok_or(NoSalt)?;
        let mut window = Window::containing(t, self.length);
        match self.next {
            // A frame for a window already published (the clock stepped back, or capture
            // lagged more than CLOSE_DELAY): count it in the oldest open window rather than
            // lose it or publish a window twice.
            Some(next) if window.start() < next.start() => window = next,
            Some(_) => {}
            None => self.next = Some(window),
        }
        let key = (window.start(), epoch.epoch, epoch.salt.fingerprint());
        let precision = self.precision;
        self.open
            .entry(key)
            .or_insert_with(|| WindowCount::new(precision, window.start()))
            .insert(&epoch.salt, t, sighting);
        Ok(())
    }

    /// Opens again the windows from the one containing `from` on, if already published:
    /// frames heard late for them are then counted in their own windows (published again;
    /// the aggregator's union of the two sends is the whole window) instead of all in the
    /// oldest open one.
    pub fn reopen(&mut self, from: Timestamp) {
        let window = Window::containing(from, self.length);
        if self.next.is_some_and(|next| window.start() < next.start()) {
            self.next = Some(window);
        }
    }

    /// Starts the window sequence at `now` (so quiet windows are published as zero).
    pub fn start(&mut self, now: Timestamp) {
        self.next
            .get_or_insert(Window::containing(now, self.length));
    }

    /// Closes every window that ended at least [`CLOSE_DELAY`] before `now`, into one
    /// message per kind and salt. A window with no frames still yields (empty) sketches
    /// when a salt covered it, so the aggregator sees "nobody" rather than silence.
    pub fn close_due(
        &mut self,
        now: Timestamp,
        sensor: &SensorId,
        salts: &SaltKeeper,
        version: &str,
    ) -> Vec<SketchMessage> {
        let mut out = Vec::new();
        while let Some(window) = self.next {
            if window.end() + CLOSE_DELAY > now {
                break;
            }
            let keys: Vec<Key> = self
                .open
                .keys()
                .filter(|k| k.0 == window.start())
                .copied()
                .collect();
            if let (true, Some(e)) = (keys.is_empty(), salts.at(window.start())) {
                let empty = KindSketches::nobody(self.precision);
                out.extend(self.messages(
                    window,
                    e.epoch,
                    e.salt.fingerprint(),
                    &empty,
                    sensor,
                    version,
                ));
            }
            let gate = self.device_gate();
            for key in keys {
                if let Some(mut count) = self.open.remove(&key) {
                    let salt = salts.by_fingerprint(key.2);
                    count.teach(gate, &mut self.cadence);
                    let sketches =
                        count.finish(salt, gate, self.cadence.learned(self.rule), self.rule);
                    out.extend(self.messages(window, key.1, key.2, &sketches, sensor, version));
                }
            }
            self.gate.decay(self.length.duration());
            self.cadence.decay(self.length.duration());
            self.next = Some(window.next());
        }
        out
    }

    fn messages(
        &self,
        window: Window,
        epoch: EpochId,
        salt_fp: SaltFingerprint,
        sketches: &KindSketches,
        sensor: &SensorId,
        version: &str,
    ) -> Vec<SketchMessage> {
        self.kinds
            .iter()
            .filter(|&&kind| kind != Kind::WifiDerandomized || sketches.has_devices())
            .map(|&kind| SketchMessage {
                sensor_id: sensor.clone(),
                kind,
                window,
                epoch,
                salt_fp,
                sketch: sketches.sketch(kind).clone(),
                frames: sketches.frames(kind),
                agent_version: version.to_owned(),
            })
            .collect()
    }

    /// Closes every open window now, complete or not (the agent is stopping: what it heard
    /// goes to the outbox instead of being lost). A window continued after a restart is
    /// sent again with the rest; the aggregator's union makes the two one.
    pub fn close_all(
        &mut self,
        sensor: &SensorId,
        salts: &SaltKeeper,
        version: &str,
    ) -> Vec<SketchMessage> {
        let open = std::mem::take(&mut self.open);
        let gate = self.device_gate();
        let mut out = Vec::new();
        for ((start, epoch, fp), mut count) in open {
            let window = Window::containing(start, self.length);
            count.teach(gate, &mut self.cadence);
            let sketches = count.finish(
                salts.by_fingerprint(fp),
                gate,
                self.cadence.learned(self.rule),
                self.rule,
            );
            out.extend(self.messages(window, epoch, fp, &sketches, sensor, version));
        }
        out
    }

    /// The gate of the device estimate: the configured one, else the learned one.
    fn device_gate(&self) -> Option<i8> {
        self.fixed_gate.unwrap_or_else(|| self.gate.learned())
    }

    /// Windows currently open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crowdflow_contract::identity::Medium;
    use crowdflow_contract::salt::Salt;
    use crowdflow_contract::wire::{EpochSalt, SaltAnnouncement};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn keeper(rotation: &str) -> SaltKeeper {
        let mut k = SaltKeeper::default();
        let salts = vec![
            EpochSalt {
                epoch: "2026-04-27".parse().expect("epoch"),
                starts: ts("2026-04-27T02:00:00Z"),
                ends: ts(rotation),
                salt: Salt::generate().expect("entropy"),
            },
            EpochSalt {
                epoch: "2026-04-28".parse().expect("epoch"),
                starts: ts(rotation),
                ends: ts("2026-04-29T02:00:00Z"),
                salt: Salt::generate().expect("entropy"),
            },
        ];
        k.accept(
            SaltAnnouncement {
                authority: "agg".into(),
                issued_at: ts("2026-04-27T12:00:00Z"),
                salts,
            },
            ts("2026-04-27T12:00:00Z"),
        );
        k
    }

    fn heard(i: u8) -> Heard {
        Heard {
            medium: Medium::Wifi,
            address: [0, 1, 2, 3, 4, i],
            rssi: None,
            randomized: false,
        }
    }

    fn sensor() -> SensorId {
        SensorId::new("s1").expect("valid")
    }

    /// Hears `sighting` at second `s` and millisecond `ms` of the minute from 12:00.
    fn hear(w: &mut Windows, salts: &SaltKeeper, sighting: &Sighting, s: i64, ms: i64) {
        let t = ts("2026-04-27T12:00:00Z")
            + SignedDuration::from_secs(s)
            + SignedDuration::from_millis(ms);
        w.add_sighting(t, sighting, salts).expect("salt");
    }

    /// The physical devices of the first minute, as published.
    fn devices(w: &mut Windows, salts: &SaltKeeper) -> f64 {
        w.close_due(ts("2026-04-27T12:01:05Z"), &sensor(), salts, "t")
            .iter()
            .find(|m| m.kind == Kind::WifiDerandomized)
            .expect("devices")
            .sketch
            .estimate()
            .estimate
    }

    #[test]
    fn the_live_agent_reads_a_crowd_once_it_has_learned_the_scan_cadence() {
        let salts = keeper("2026-04-28T02:00:00Z");
        let crowd = |w: &mut Windows| {
            // Three models whose phones take a new address per scan: 30, 20 and 12 phones
            // scanning once each in the minute.
            for (model, phones, every) in [(10, 30u8, 2), (11, 20, 3), (12, 12, 5)] {
                for i in 0..phones {
                    for ms in [0, 20] {
                        hear(w, &salts, &probe(model, i), i64::from(i) * every, ms);
                    }
                }
            }
        };
        let kinds = vec![Kind::Wifi, Kind::WifiDerandomized];
        // Without addresses that recur there is no cadence: concurrency, one per model.
        let mut w = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, kinds.clone());
        crowd(&mut w);
        assert_eq!(devices(&mut w, &salts).round(), 3.0);
        // 120 phones keeping their address, heard in three scans each, teach 2.4 scans a
        // minute: the crowd's 62 phones read 13 + 9 + 5 beside the 120.
        let mut w = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, kinds);
        crowd(&mut w);
        for i in 0..120u8 {
            for s in [1, 21, 41] {
                hear(&mut w, &salts, &probe(13, i), s, 0);
            }
        }
        let n = devices(&mut w, &salts);
        assert!((145.0..=151.0).contains(&n), "{n}");
    }

    #[test]
    fn stopping_closes_the_open_windows_complete_or_not() {
        let salts = keeper("2026-04-28T02:00:00Z");
        let mut w = Windows::new(
            WindowLength::DEFAULT,
            Precision::DEFAULT,
            vec![Kind::Wifi, Kind::WifiRandom],
        );
        for i in 0..5 {
            w.add(ts("2026-04-27T12:00:10Z"), &heard(i), &salts)
                .expect("salt");
        }
        let out = w.close_all(&sensor(), &salts, "t");
        assert_eq!(out.len(), 2, "one message per kind of the open window");
        assert_eq!(out[0].frames, 5);
        assert_eq!(out[0].window.start(), ts("2026-04-27T12:00:00Z"));
        assert!(
            w.close_all(&sensor(), &salts, "t").is_empty(),
            "nothing twice"
        );
    }

    #[test]
    fn a_window_closes_once_with_one_message_per_kind() {
        let salts = keeper("2026-04-28T02:00:00Z");
        let mut w = Windows::new(
            WindowLength::DEFAULT,
            Precision::DEFAULT,
            vec![Kind::Wifi, Kind::WifiRandom],
        );
        for i in 0..10 {
            w.add(ts("2026-04-27T12:00:10Z"), &heard(i), &salts)
                .expect("salt");
            w.add(ts("2026-04-27T12:00:50Z"), &heard(i), &salts)
                .expect("salt");
        }
        assert!(
            w.close_due(ts("2026-04-27T12:01:01Z"), &sensor(), &salts, "t")
                .is_empty()
        );
        let out = w.close_due(ts("2026-04-27T12:01:02Z"), &sensor(), &salts, "t");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].kind, Kind::Wifi);
        assert_eq!(out[0].frames, 20);
        assert_eq!(out[0].sketch.estimate().estimate.round(), 10.0);
        assert_eq!(out[1].frames, 0);
        assert!(
            w.close_due(ts("2026-04-27T12:01:30Z"), &sensor(), &salts, "t")
                .is_empty()
        );
    }

    #[test]
    fn quiet_windows_are_published_as_zero() {
        let salts = keeper("2026-04-28T02:00:00Z");
        let mut w = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, vec![Kind::Wifi]);
        w.start(ts("2026-04-27T12:00:00Z"));
        let out = w.close_due(ts("2026-04-27T12:03:05Z"), &sensor(), &salts, "t");
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|m| m.sketch.is_empty() && m.frames == 0));
        assert_eq!(out[2].window.start(), ts("2026-04-27T12:02:00Z"));
    }

    #[test]
    fn late_frames_of_reopened_windows_count_in_their_own() {
        let salts = keeper("2026-04-28T02:00:00Z");
        let mut w = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, vec![Kind::Wifi]);
        w.start(ts("2026-04-27T12:00:00Z"));
        // Published empty before the frames of 12:00 and 12:01 arrived.
        assert_eq!(
            w.close_due(ts("2026-04-27T12:02:05Z"), &sensor(), &salts, "t")
                .len(),
            2
        );
        w.reopen(ts("2026-04-27T12:00:00Z"));
        for i in 0..5 {
            w.add(ts("2026-04-27T12:00:30Z"), &heard(i), &salts)
                .expect("salt");
            w.add(ts("2026-04-27T12:01:30Z"), &heard(10 + i), &salts)
                .expect("salt");
        }
        let out = w.close_due(ts("2026-04-27T12:02:05Z"), &sensor(), &salts, "t");
        let frames: Vec<(Timestamp, u64)> =
            out.iter().map(|m| (m.window.start(), m.frames)).collect();
        assert_eq!(
            frames,
            [
                (ts("2026-04-27T12:00:00Z"), 5),
                (ts("2026-04-27T12:01:00Z"), 5)
            ],
            "each minute its own frames, not both in the open 12:02"
        );
        // Reopening at or after the open window changes nothing.
        w.reopen(ts("2026-04-27T12:02:30Z"));
        assert!(
            w.close_due(ts("2026-04-27T12:02:05Z"), &sensor(), &salts, "t")
                .is_empty()
        );
    }

    #[test]
    fn a_window_straddling_a_rotation_gives_one_sketch_per_salt() {
        let salts = keeper("2026-04-28T02:00:30Z");
        let mut w = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, vec![Kind::Wifi]);
        w.add(ts("2026-04-28T02:00:10Z"), &heard(1), &salts)
            .expect("salt");
        w.add(ts("2026-04-28T02:00:40Z"), &heard(1), &salts)
            .expect("salt");
        let out = w.close_due(ts("2026-04-28T02:01:05Z"), &sensor(), &salts, "t");
        assert_eq!(out.len(), 2);
        assert_ne!(out[0].salt_fp, out[1].salt_fp);
        assert_eq!(out[0].epoch.to_string(), "2026-04-27");
        assert_eq!(out[1].epoch.to_string(), "2026-04-28");
    }

    /// A probe request of a phone model (its supported rates) from a random address.
    fn probe(model: u8, address: u8) -> Sighting {
        let mut f = vec![0x40, 0, 0, 0];
        f.extend_from_slice(&[0; 20]);
        f.extend_from_slice(&[1, 2, 0x82, model]);
        Sighting {
            heard: Heard {
                medium: Medium::Wifi,
                address: [0x02, 9, 9, 9, 9, address],
                rssi: Some(-50),
                randomized: true,
            },
            fingerprint: crate::frame::capability_fingerprint(&f),
        }
    }

    #[test]
    fn rotating_phones_publish_as_physical_devices_and_sensors_union_to_the_larger_count() {
        let salts = keeper("2026-04-28T02:00:00Z");
        let kinds = vec![Kind::WifiRandom, Kind::WifiDerandomized];
        let mut a = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, kinds.clone());
        let mut b = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, kinds);
        for second in 0..50u8 {
            let t = ts("2026-04-27T12:00:00Z") + SignedDuration::from_secs(i64::from(second));
            // two phones of model 1 probing together, each with a new address per burst,
            // and one of model 2; sensor b hears only one phone of model 1
            a.add_sighting(t, &probe(1, second), &salts).expect("salt");
            a.add_sighting(t, &probe(1, 100 + second), &salts)
                .expect("salt");
            a.add_sighting(t, &probe(2, 200 - second), &salts)
                .expect("salt");
            b.add_sighting(t, &probe(1, second), &salts).expect("salt");
        }
        let now = ts("2026-04-27T12:01:05Z");
        let (out_a, out_b) = (
            a.close_due(now, &sensor(), &salts, "t"),
            b.close_due(now, &sensor(), &salts, "t"),
        );
        let devices = |out: &[SketchMessage]| {
            out.iter()
                .find(|m| m.kind == Kind::WifiDerandomized)
                .map(|m| m.sketch.clone())
                .expect("a device sketch")
        };
        assert_eq!(
            out_a[0].sketch.estimate().estimate.round(),
            150.0,
            "addresses"
        );
        assert_eq!(devices(&out_a).estimate().estimate.round(), 3.0);
        assert_eq!(devices(&out_b).estimate().estimate.round(), 1.0);
        let mut union = crowdflow_contract::sketch::SketchUnion::new(Precision::DEFAULT);
        union.add(&devices(&out_a));
        union.add(&devices(&out_b));
        assert_eq!(union.estimate().estimate.round(), 3.0, "the zone's union");
    }

    #[test]
    fn frames_without_a_salt_are_refused() {
        let mut w = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, vec![Kind::Wifi]);
        assert_eq!(
            w.add(
                ts("2026-04-27T12:00:00Z"),
                &heard(1),
                &SaltKeeper::default()
            ),
            Err(NoSalt)
        );
    }

    #[test]
    fn a_late_frame_goes_into_the_oldest_open_window() {
        let salts = keeper("2026-04-28T02:00:00Z");
        let mut w = Windows::new(WindowLength::DEFAULT, Precision::DEFAULT, vec![Kind::Wifi]);
        w.add(ts("2026-04-27T12:00:10Z"), &heard(1), &salts)
            .expect("salt");
        let first = w.close_due(ts("2026-04-27T12:01:05Z"), &sensor(), &salts, "t");
        assert_eq!(first.len(), 1);
        w.add(ts("2026-04-27T12:00:20Z"), &heard(2), &salts)
            .expect("salt");
        let next = w.close_due(ts("2026-04-27T12:02:05Z"), &sensor(), &salts, "t");
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].window.start(), ts("2026-04-27T12:01:00Z"));
        assert_eq!(next[0].frames, 1);
    }
}
