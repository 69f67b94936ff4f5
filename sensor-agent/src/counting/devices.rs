//! Physical Wi-Fi devices of one window: de-randomization by capability fingerprint, in
//! memory only.
//!
//! Phones randomize their Wi-Fi address (iOS takes a new one for almost every scan burst,
//! Android one per interval), so distinct addresses overcount people about tenfold. The
//! capability elements of their probe requests stay the same across a phone's addresses
//! (Vanhoef et al. 2016, Robyns et al. 2017, Baccichet et al. 2024). Per window:
//!
//! 1. frames weaker than the installation's [`RssiGate`] are left out (devices beyond the
//!    zone are heard too; the gate is learned from the sensor's own signal levels);
//! 2. every probe request with a [`Fingerprint`] joins the group of that fingerprint, each
//!    address (as its salted hash) active from its first to its last frame of the window;
//! 3. a group of a single frame is dropped (a passer-by heard once, or noise);
//! 4. a group counts as the largest number of its addresses active at one moment: a phone
//!    changes address but never holds two at once, while two phones of one model overlap;
//! 5. frames without a fingerprint (data frames, PS-Poll) count by their address.
//!
//! Globally administered addresses go through the groups too (some devices and anonymized
//! datasets randomize without setting the locally-administered bit), but a hardware address
//! ([`crate::frame::oui::is_hardware`]: an IEEE-assigned OUI) is a device by itself: a group
//! counts at least its hardware addresses, each inserted as its salted hash (the member the
//! `wifi` kind has for it), and slots for the rest of its concurrency.
//!
//! What leaves the window is a sketch of the `wifi_derandomized` kind whose members are
//! (fingerprint, slot) keys hashed under the epoch salt like addresses
//! ([`crowdflow_contract::identity::hash_slot`]): a zone's sensors and an occupancy window's
//! minutes union to the largest concurrency any of them saw per fingerprint. The fingerprints,
//! the per-address intervals and the grouping are dropped with the window.
//!
//! Measured on the shared lab days (`sensor-agent/research/`, 15-minute windows): 14 of 15
//! windows with >= 5 people at 0.6-1.6 devices per person (median 1.13; addresses: 18.5);
//! one-phone captures 1-2 devices each, merged two and three at a time 2-4 and 3-5.
//! Known limits: two phones of one model that never probe at the same moment of a window
//! count as one (dense crowds of one model undercount); a phone probing on 2.4 and 5 GHz
//! shows two fingerprints.

use crowdflow_contract::identity::{DeviceHash, hash_slots};
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::Sketch;
use jiff::{SignedDuration, Timestamp};

use crate::frame::Fingerprint;

/// Frames with a signal reading needed before a gate is learned (a few minutes of a busy
/// sensor; with fewer, the histogram's modes are noise).
pub const MIN_GATE_SAMPLES: f64 = 500.0;

/// The far mode's mean must be at or below this (dBm) for the gate to apply: devices beyond
/// the zone are heard near the receiver's sensitivity (-90 to -95 dBm for Pi and ESP32
/// radios). A distribution whose lower mode is stronger has no far devices to cut (one phone
/// on a desk, a closed room), and Otsu would split the near devices themselves.
pub const FAR_MODE_DBM: f64 = -80.0;

/// Half-life of the signal history in the live agent: a moved sensor re-learns in a day.
pub const GATE_HALF_LIFE: SignedDuration = SignedDuration::from_hours(24);

/// The zone's signal gate, learned from the installation's own signal distribution.
///
/// A histogram of the RSSI of every Wi-Fi frame (1 dB bins, no identities), and Otsu's
/// threshold between its near mode (the zone) and its far mode (neighbours, corridor,
/// street), used only when the far mode lies at the edge of reception ([`FAR_MODE_DBM`]).
/// A fixed -70 dBm gate cut the same phones in a year when they were heard 10 dB weaker;
/// the learned gate moves with the installation. On the lab days it learns -72 dBm.
#[derive(Debug, Clone)]
pub struct RssiGate {
    bins: [f64; 256],
}

impl Default for RssiGate {
    fn default() -> Self {
        RssiGate { bins: [0.0; 256] }
    }
}

impl RssiGate {
    /// Records one frame's signal.
    #[inline]
    pub fn observe(&mut self, rssi: i8) {
        self.bins[usize::from(rssi as u8 ^ 0x80)] += 1.0;
    }

    /// Ages the history by `elapsed` (half-life [`GATE_HALF_LIFE`]).
    pub fn decay(&mut self, elapsed: SignedDuration) {
        let factor = 0.5f64.powf(elapsed.as_secs_f64() / GATE_HALF_LIFE.as_secs_f64());
        for b in &mut self.bins {
            *b *= factor;
        }
    }

    /// The learned gate in dBm, or `None` (too few frames, or no far mode).
    pub fn learned(&self) -> Option<i8> {
        let dbm = |i: usize| i as f64 - 128.0;
        let n: f64 = self.bins.iter().sum();
        if n < MIN_GATE_SAMPLES {
            return None;
        }
        let total: f64 = self.bins.iter().enumerate().map(|(i, c)| dbm(i) * c).sum();
        let (mut w_low, mut s_low) = (0.0, 0.0);
        let mut best: Option<(f64, usize, f64)> = None;
        // Threshold t: frames below bin t are far, from t up near.
        for t in 1..self.bins.len() {
            w_low += self.bins[t - 1];
            s_low += dbm(t - 1) * self.bins[t - 1];
            let w_high = n - w_low;
            if w_low <= 0.0 || w_high <= 0.0 {
                continue;
            }
            let (m_low, m_high) = (s_low / w_low, (total - s_low) / w_high);
            let between = w_low * w_high * (m_low - m_high).powi(2);
            if best.is_none_or(|(b, _, _)| between > b) {
                best = Some((between, t, m_low));
            }
        }
        let (_, t, far_mean) = best?;
        (far_mean <= FAR_MODE_DBM).then(|| (t as i16 - 128) as i8)
    }
}

/// An address's first and last moment (ms) in the window, and its frames.
type Span = (i32, i32, u32);

/// Partitions of a window's fingerprinted frames, by the top bits of their address key.
const PARTITIONS: usize = 256;

/// One probe request with a fingerprint, for grouping at the window's end.
#[derive(Clone, Copy)]
struct FrameMark {
    /// [`index_key`] of its (address, fingerprint).
    key: u64,
    /// Milliseconds since the window's start (negative for a late frame of an earlier
    /// window counted in this one).
    ms: i32,
    fingerprint: Fingerprint,
    rssi: Option<i8>,
}

/// One window's sightings of Wi-Fi devices, by salted address hash and fingerprint.
/// No address, no fingerprint bytes in any output: only the slot keys of [`Self::finish`].
///
/// Frames are appended to one list as heard, put in order of 256 partitions by their address
/// key at the window's end, and grouped one partition at a time: a table of every address of a busy
/// window, looked up per frame, missed the cache on almost every frame (a third of a
/// windowed replay's time, #19); a partition's addresses fit in the first-level cache.
pub struct DeviceGroups {
    start: Timestamp,
    /// Probe requests with a fingerprint, in arrival order (partitioned at the end).
    marks: Vec<FrameMark>,
    /// Frames without a fingerprint (data frames, PS-Poll): counted by address.
    bare: Vec<(DeviceHash, Option<i8>)>,
    /// The hardware addresses among the marks, by their [`index_key`]: each one device.
    hardware: foldhash::HashMap<u64, DeviceHash>,
}

impl std::fmt::Debug for DeviceGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let frames = self.marks.len() + self.bare.len();
        f.debug_struct("DeviceGroups")
            .field("frames", &frames)
            .finish_non_exhaustive()
    }
}

impl DeviceGroups {
    /// Empty state of the window starting at `start`.
    pub fn new(start: Timestamp) -> DeviceGroups {
        DeviceGroups {
            start,
            marks: Vec::new(),
            bare: Vec::new(),
            hardware: foldhash::HashMap::default(),
        }
    }

    /// The first instant of the window.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// Milliseconds from the window's start to `at` (negative for a late frame of an earlier
    /// window), as [`Self::observe_ms`] takes them.
    pub fn ms_since_start(&self, at: Timestamp) -> i32 {
        at.duration_since(self.start)
            .as_millis()
            .clamp(i32::MIN.into(), i32::MAX.into()) as i32
    }

    /// Records one Wi-Fi frame heard `ms` milliseconds after the window's start; `hardware`
    /// for a hardware address ([`crate::frame::oui::is_hardware`]).
    #[inline]
    pub fn observe_ms(
        &mut self,
        device: DeviceHash,
        fingerprint: Option<Fingerprint>,
        ms: i32,
        rssi: Option<i8>,
        hardware: bool,
    ) {
        let Some(fingerprint) = fingerprint else {
            self.bare.push((device, rssi));
            return;
        };
        let key = index_key(&device, &fingerprint);
        if hardware {
            self.hardware.entry(key).or_insert(device);
        }
        self.marks.push(FrameMark {
            key,
            ms,
            fingerprint,
            rssi,
        });
    }

    /// Inserts the window's physical devices into `sketch`: a (fingerprint, slot) key per
    /// concurrent address of each group, the address hash of frames without fingerprint.
    /// Frames weaker than `gate` (dBm) are left out. Returns the number of devices.
    pub fn finish(&self, salt: &Salt, gate: Option<i8>, sketch: &mut Sketch) -> u64 {
        let heard = |rssi: Option<i8>| match (gate, rssi) {
            (Some(g), Some(r)) => r >= g,
            _ => true,
        };
        let mut bare: Vec<&DeviceHash> = self
            .bare
            .iter()
            .filter(|(_, rssi)| heard(*rssi))
            .map(|(device, _)| device)
            .collect();
        bare.sort_unstable_by_key(|d| d.table_key());
        bare.dedup_by_key(|d| d.table_key());
        for device in &bare {
            sketch.insert(device);
        }
        let mut devices = bare.len() as u64;
        // Each address's key and span (first and last moment, frames), one partition at a
        // time.
        let mut spans: Vec<(Fingerprint, Span, u64)> = Vec::new();
        let mut index: foldhash::HashMap<u64, usize> = foldhash::HashMap::default();
        for partition in partitions(&self.marks).chunk_by(|a, b| partition_of(a) == partition_of(b))
        {
            index.clear();
            for m in partition.iter().filter(|m| heard(m.rssi)) {
                let next = spans.len();
                let at = *index.entry(m.key).or_insert(next);
                if at == next {
                    spans.push((m.fingerprint, (m.ms, m.ms, 1), m.key));
                } else {
                    let span = &mut spans[at].1;
                    *span = (span.0.min(m.ms), span.1.max(m.ms), span.2 + 1);
                }
            }
        }
        spans.sort_unstable_by_key(|(fingerprint, _, _)| *fingerprint);
        let mut group: Vec<Span> = Vec::new();
        let mut keys = Vec::new();
        for same in spans.chunk_by(|a, b| a.0 == b.0) {
            if same.iter().map(|(_, s, _)| s.2).sum::<u32>() < 2 {
                continue;
            }
            group.clear();
            group.extend(same.iter().map(|(_, s, _)| *s));
            // Hardware addresses are one device each, by their hash (as the `wifi` kind
            // counts them, so minutes and sensors union them), also when heard once: a
            // channel-hopping sensor hears a computer probing once a minute in one frame
            // (requiring two read the lab's calibrated people 20 % off instead of 8 %). Slots
            // count the rest of what concurrency finds.
            let mut hardware = 0u16;
            for device in same.iter().filter_map(|(_, _, key)| self.hardware.get(key)) {
                sketch.insert(device);
                hardware = hardware.saturating_add(1);
            }
            let slots = concurrency(&group).saturating_sub(hardware);
            keys.clear();
            hash_slots(salt, same[0].0.digest(), slots, &mut keys);
            for key in &keys {
                sketch.insert(key);
            }
            devices += u64::from(hardware) + u64::from(slots);
        }
        devices
    }
}

/// The partition of a mark: the top bits of its key.
fn partition_of(m: &FrameMark) -> usize {
    (m.key >> 56) as usize % PARTITIONS
}

/// The marks ordered by partition (a counting sort, stable): frames are appended to one
/// list as heard (a list per partition grew by copying, a tenth of a windowed replay, #15)
/// and sorted once at the window's end.
fn partitions(marks: &[FrameMark]) -> Vec<FrameMark> {
    let mut starts = [0usize; PARTITIONS + 1];
    for m in marks {
        starts[partition_of(m) + 1] += 1;
    }
    for p in 0..PARTITIONS {
        starts[p + 1] += starts[p];
    }
    let Some(first) = marks.first() else {
        return Vec::new();
    };
    let mut out = vec![*first; marks.len()];
    for m in marks {
        let at = &mut starts[partition_of(m)];
        out[*at] = *m;
        *at += 1;
    }
    out
}

/// The key of an (address, fingerprint) pair: the address's salted hash is uniform, so
/// eight of its bytes, mixed with the fingerprint's, tell pairs apart but for a 2^-64
/// chance per pair (two addresses of a window would then count as one; the sketch's own
/// coupons collide far more often).
fn index_key(device: &DeviceHash, fingerprint: &Fingerprint) -> u64 {
    device.table_key() ^ u64::from_le_bytes(*fingerprint.digest())
}

/// The largest number of intervals `[first, last]` that hold one moment (an address that
/// starts when another ends overlaps it: both were heard at that moment).
fn concurrency(spans: &[Span]) -> u16 {
    let mut events: Vec<(i32, i8)> = spans
        .iter()
        .flat_map(|&(a, b, _)| [(a, 1), (b, -1)])
        .collect();
    // Starts before ends at the same moment.
    events.sort_unstable_by_key(|&(t, d)| (t, -d));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += i32::from(d);
        most = most.max(now);
    }
    u16::try_from(most).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crowdflow_contract::identity::{Medium, hash_device};
    use crowdflow_contract::salt::SALT_LEN;
    use crowdflow_contract::sketch::Precision;

    fn salt() -> Salt {
        Salt::from_slice(&[7; SALT_LEN]).expect("32 bytes")
    }

    fn fp(frame_rates: u8) -> Fingerprint {
        let mut f = vec![0x40, 0, 0, 0];
        f.extend_from_slice(&[0; 20]);
        f.extend_from_slice(&[1, 1, frame_rates]);
        crate::frame::capability_fingerprint(&f).expect("fingerprint")
    }

    fn t0() -> Timestamp {
        "2026-04-27T12:00:00Z".parse().expect("ts")
    }

    fn at(s: i64) -> Timestamp {
        t0() + SignedDuration::from_secs(s)
    }

    fn dev(i: u8) -> DeviceHash {
        hash_device(&salt(), Medium::Wifi, &[0x02, 0, 0, 0, 0, i])
    }

    /// A probe request of model `fp` from address `i` at `t`.
    fn probe(g: &mut DeviceGroups, i: u8, fp: u8, t: Timestamp, rssi: Option<i8>, hw: bool) {
        let ms = g.ms_since_start(t);
        g.observe_ms(dev(i), Some(self::fp(fp)), ms, rssi, hw);
    }

    fn count(g: &DeviceGroups, gate: Option<i8>) -> u64 {
        let mut s = Sketch::new(Precision::DEFAULT);
        let n = g.finish(&salt(), gate, &mut s);
        assert_eq!(s.estimate().estimate.round() as u64, n);
        n
    }

    #[test]
    fn a_phone_rotating_its_address_counts_once() {
        let mut g = DeviceGroups::new(t0());
        for i in 0..20u8 {
            // a new address every burst of two frames
            probe(&mut g, i, 0x82, at(i64::from(i) * 30), Some(-50), false);
            probe(&mut g, i, 0x82, at(i64::from(i) * 30 + 1), Some(-50), false);
        }
        assert_eq!(count(&g, None), 1);
    }

    #[test]
    fn two_phones_of_one_model_probing_together_count_twice_and_other_models_apart() {
        let mut g = DeviceGroups::new(t0());
        for (i, s) in [(1, 10), (2, 10), (1, 20), (2, 21)] {
            probe(&mut g, i, 0x82, at(s), Some(-50), false);
        }
        probe(&mut g, 3, 0x02, at(5), Some(-50), false);
        probe(&mut g, 3, 0x02, at(6), Some(-50), false);
        assert_eq!(count(&g, None), 3);
    }

    #[test]
    fn single_frame_groups_and_frames_below_the_gate_are_left_out() {
        let mut g = DeviceGroups::new(t0());
        probe(&mut g, 1, 0x82, at(1), Some(-50), false);
        probe(&mut g, 2, 0x02, at(1), Some(-90), false);
        probe(&mut g, 2, 0x02, at(9), Some(-91), false);
        assert_eq!(count(&g, None), 1);
        assert_eq!(count(&g, Some(-72)), 0);
    }

    #[test]
    fn frames_without_fingerprint_count_by_address() {
        let mut g = DeviceGroups::new(t0());
        g.observe_ms(dev(1), None, g.ms_since_start(at(1)), None, false);
        g.observe_ms(dev(1), None, g.ms_since_start(at(2)), None, false);
        g.observe_ms(dev(2), None, g.ms_since_start(at(2)), None, false);
        assert_eq!(count(&g, Some(-70)), 2);
    }

    #[test]
    fn the_gate_is_the_valley_between_near_and_far_and_absent_without_a_far_mode() {
        let mut gate = RssiGate::default();
        assert_eq!(gate.learned(), None, "no history");
        for _ in 0..400 {
            gate.observe(-58);
            gate.observe(-90);
        }
        let learned = gate.learned().expect("bimodal");
        assert!((-89..=-59).contains(&learned), "{learned}");
        let mut desk = RssiGate::default();
        for i in 0..1000 {
            desk.observe(-40 - (i % 20) as i8);
        }
        assert_eq!(desk.learned(), None, "one phone on a desk: nothing is far");
        gate.decay(GATE_HALF_LIFE * 10);
        assert_eq!(gate.learned(), None, "forgotten after ten half-lives");
    }

    #[test]
    fn late_frames_of_an_earlier_window_keep_their_moments() {
        let mut g = DeviceGroups::new(t0());
        for i in 0..10u8 {
            // one phone, a new address every 30 s, heard in the minutes before the window
            let t = at(i64::from(i) * 30 - 600);
            probe(&mut g, i, 0x82, t, Some(-50), false);
            probe(
                &mut g,
                i,
                0x82,
                t + SignedDuration::from_secs(1),
                Some(-50),
                false,
            );
        }
        assert_eq!(count(&g, None), 1);
    }

    #[test]
    fn hardware_addresses_are_a_device_each_and_never_add_to_a_phone_leaking_its_own() {
        // Thirteen computers of one model probing a minute apart: concurrency sees one at a
        // time, their hardware addresses say thirteen.
        let mut g = DeviceGroups::new(t0());
        for i in 0..13u8 {
            for s in [0, 1] {
                probe(&mut g, i, 0x82, at(i64::from(i) * 4 + s), Some(-50), true);
            }
        }
        assert_eq!(count(&g, None), 13);
        // A phone that sends its hardware address in one burst and random ones otherwise
        // (an older iPhone in the probing-patterns captures): one device, not two.
        let mut g = DeviceGroups::new(t0());
        for i in 0..6u8 {
            probe(&mut g, i, 0x82, at(i64::from(i) * 10), Some(-50), i == 3);
            probe(&mut g, i, 0x82, at(i64::from(i) * 10), Some(-50), i == 3);
        }
        assert_eq!(count(&g, None), 1);
        // The same computer's frames in two minutes union to one device: its hash, not a slot.
        let sketch_of = |start: i64| {
            let mut g = DeviceGroups::new(at(start));
            for s in [0, 1] {
                probe(&mut g, 7, 0x82, at(start + s), Some(-50), true);
            }
            let mut sketch = Sketch::new(crowdflow_contract::sketch::Precision::DEFAULT);
            assert_eq!(g.finish(&salt(), None, &mut sketch), 1);
            sketch
        };
        let mut union = sketch_of(0);
        union.merge(&sketch_of(60));
        assert_eq!(union.estimate().estimate.round(), 1.0);
    }

    #[test]
    fn debug_shows_sizes_only() {
        let mut g = DeviceGroups::new(t0());
        probe(&mut g, 1, 0x82, at(1), Some(-50), false);
        assert_eq!(format!("{g:?}"), "DeviceGroups { frames: 1, .. }");
    }
}
