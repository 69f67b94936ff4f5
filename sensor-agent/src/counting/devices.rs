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
//! Concurrency is a lower bound: in a dense crowd, the phones of one model rarely probe at
//! the same moment, and a group of forty reads one to three. So a minute in which the groups
//! but the busiest average at least [`CROWD_DEVICES_PER_GROUP`] devices' worth of scans
//! ([`ScanCadence`]: the scans one device makes in a minute, learned from the addresses heard
//! in two or more scans) is read as a crowd, and each group counts at least its scans over
//! the cadence. In a room, most models are one phone each, and one phone scanning fast is one
//! group among several (and left out of the average), so the average stays below the
//! threshold (the lab days' busiest minute: 2.15).
//!
//! Measured on the shared lab days (`sensor-agent/research/`, 15-minute windows): 14 of 15
//! windows with >= 5 people at 0.6-1.6 devices per person (median 1.13; addresses: 18.5);
//! one-phone captures 1-2 devices each, merged two and three at a time 2-4 and 3-5. On the
//! simulator's three squares (one-minute windows, `simulator/tests/device_estimate.rs`), the
//! squares' sensors read their heard devices within +-15 % in 262 of 276 minutes
//! (concurrency alone: none).
//! Known limits: a sparse crowd of one model (a bridge people cross, a few per model) reads
//! its concurrency, below its phones; a phone probing on 2.4 and 5 GHz shows two
//! fingerprints.

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
    /// The history of frames per 1 dB bin (-128 to 127 dBm), as [`Self::bins`] gives it;
    /// `None` unless 256 bins.
    pub fn from_bins(bins: &[f64]) -> Option<RssiGate> {
        Some(RssiGate {
            bins: bins.try_into().ok()?,
        })
    }

    /// Frames per 1 dB bin, -128 to 127 dBm.
    pub fn bins(&self) -> &[f64; 256] {
        &self.bins
    }

    /// Adds `other`'s history (a restarted agent's, to what it heard since).
    pub fn add(&mut self, other: &RssiGate) {
        for (b, o) in self.bins.iter_mut().zip(&other.bins) {
            *b += o;
        }
    }

    /// Records one frame's signal.
    #[inline]
    pub fn observe(&mut self, rssi: i8) {
        self.bins[usize::from(rssi as u8 ^ 0x80)] += 1.0;
    }

    /// Ages the history by `elapsed` (half-life [`GATE_HALF_LIFE`]).
    pub fn decay(&mut self, elapsed: SignedDuration) {
        let factor = aged(elapsed);
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

/// The installation's scan cadence: scans of one device in a minute, given it was heard.
///
/// Learned from the random addresses heard in two or more scans of a minute (Android-like
/// ones kept for an interval; an iOS-like address lasts one scan; hardware addresses are
/// left out, their devices scan on their own schedule), their scan
/// counts taken as Poisson truncated below 2, which corrects for only seeing the addresses
/// that recur: E[k | k >= 2] = l (1 - e^-l) / (1 - e^-l - l e^-l) is solved for l, and the
/// cadence is E[k | k >= 1] = l / (1 - e^-l). Two sums, no identities; aged like the gate.
#[derive(Debug, Clone, Default)]
pub struct ScanCadence {
    addresses: f64,
    scans: f64,
}

/// How a group's devices are read, as the installer sets it (`capture.device_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRule {
    /// Through their scans in crowd minutes, by concurrency elsewhere: a room's fast phone
    /// reads one.
    #[default]
    Auto,
    /// Through their scans in every minute, once a cadence is learned: for a passage, street
    /// or square where people pass, a few of each model (the simulator's bridge read 0.55 of
    /// its devices by concurrency, 1.0 by scans). In a room, a phone scanning fast reads as
    /// several.
    Scans,
}

impl DeviceRule {
    /// The rule named `auto` or `scans` (`capture.device_count`, `replay --device-count`).
    pub fn named(name: &str) -> Option<DeviceRule> {
        match name {
            "auto" => Some(DeviceRule::Auto),
            "scans" => Some(DeviceRule::Scans),
            _ => None,
        }
    }

    /// Recurring random addresses a cadence needs under this rule.
    pub fn min_cadence_addresses(self) -> f64 {
        match self {
            DeviceRule::Auto => MIN_CADENCE_ADDRESSES,
            DeviceRule::Scans => MIN_CADENCE_ADDRESSES_SCANS,
        }
    }
}

/// Recurring random addresses needed before a cadence is learned under
/// [`DeviceRule::Auto`]: a few minutes of the simulator's squares. Fewer teach a room's few
/// slow devices' pace: with 50, one lab day replayed alone learned 1.4 scans a minute (the
/// three days 2.5) and read two quarter hours as crowds (55 and 40 devices for 35 and 29).
pub const MIN_CADENCE_ADDRESSES: f64 = 100.0;

/// Recurring random addresses needed under [`DeviceRule::Scans`], where the installer has
/// said the place is a passage and no room is to be guarded: the fewest whose cadence is
/// within +-15 % at two standard errors. The truncated-Poisson estimate's relative standard
/// error is 0.61-0.64 / sqrt(n) for cadences of 1.6-3.2 scans a minute (its Fisher
/// information, sensor-agent/research/README.md), so (2 x 0.62 / 0.15)^2 = 68, rounded up.
/// The simulator's bridge hears 84 in its hour.
pub const MIN_CADENCE_ADDRESSES_SCANS: f64 = 70.0;

/// Devices' worth of scans per group, on average over a minute's groups but its busiest,
/// from which the minute is read as a crowd. The shared lab days (5-29 people) stay at or
/// below 2.15; the simulator's squares (hundreds of phones a minute) read 13 at the median,
/// 2.9 at the 5th percentile.
pub const CROWD_DEVICES_PER_GROUP: f64 = 3.0;

/// Devices' worth of scans the median group of a minute must carry, too, for the minute to be
/// read as a crowd: half the groups must be busy, so a few phones scanning every second or
/// two (each its own model), or a transmitter's few made-up models, cannot make a room a
/// crowd by themselves (a fresh user's trial added three such phones to a lab day and read 68
/// more devices without it). The lab's busiest minute: 2.55; the simulator's squares lose no
/// minute to it.
pub const CROWD_MEDIAN_DEVICES: f64 = 2.0;

/// Groups a minute needs to be read as a crowd: with one or two, their average is what one
/// fast phone makes (two phones of one model merged read 4-5).
pub const CROWD_MIN_GROUPS: usize = 3;

/// A group's frames closer than this (ms) are one scan: a real iPhone's addresses within
/// one scan are 20-110 ms apart (probing-patterns captures).
const SCAN_JOIN_MS: i32 = 150;

/// One address's frames further apart than this (ms) are separate scans of it.
const ADDRESS_SCAN_GAP_MS: i32 = 1_000;

/// The cadence's unit of time.
const MINUTE_MS: i32 = 60_000;

impl ScanCadence {
    /// The cadence of `addresses` recurring addresses with `scans` scans in all, as
    /// [`Self::sums`] gives them.
    pub fn from_sums(addresses: f64, scans: f64) -> ScanCadence {
        ScanCadence { addresses, scans }
    }

    /// The recurring addresses seen, and their scans (aged).
    pub fn sums(&self) -> (f64, f64) {
        (self.addresses, self.scans)
    }

    /// Records the scans of one address in one minute (one scan says nothing of a cadence).
    pub fn observe(&mut self, scans: u32) {
        if scans >= 2 {
            self.addresses += 1.0;
            self.scans += f64::from(scans);
        }
    }

    /// Ages the history by `elapsed` (half-life [`GATE_HALF_LIFE`]).
    pub fn decay(&mut self, elapsed: SignedDuration) {
        let factor = aged(elapsed);
        self.addresses *= factor;
        self.scans *= factor;
    }

    /// Adds what `other` learned (windows taught apart, as a replay does on every core, or a
    /// restarted agent's history).
    pub fn add(&mut self, other: &ScanCadence) {
        self.addresses += other.addresses;
        self.scans += other.scans;
    }

    /// Scans of one device per minute, or `None` before the rule's
    /// [`DeviceRule::min_cadence_addresses`].
    pub fn learned(&self, rule: DeviceRule) -> Option<f64> {
        if self.addresses < rule.min_cadence_addresses() {
            return None;
        }
        let mean = self.scans / self.addresses;
        let truncated = |l: f64| {
            let e = (-l).exp();
            l * (1.0 - e) / (1.0 - e - l * e)
        };
        let (mut lo, mut hi) = (1e-6f64, 1e4f64);
        for _ in 0..100 {
            let mid = (lo + hi) / 2.0;
            if truncated(mid) < mean {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo / (1.0 - (-lo).exp()))
    }
}

/// One address in the window: its first and last moment (ms), its frames, and its scans in
/// the minute of its latest frame.
#[derive(Clone, Copy)]
struct Span {
    first: i32,
    last: i32,
    frames: u32,
    latest: i32,
    scans: u32,
    /// Not a hardware address: its scans teach the cadence.
    phone: bool,
}

impl Span {
    fn new(ms: i32, phone: bool) -> Span {
        Span {
            first: ms,
            last: ms,
            frames: 1,
            latest: ms,
            scans: 1,
            phone,
        }
    }

    /// Adds a frame heard after the others (in time order); a minute's scans that end
    /// here go to `minute_scans`.
    fn add(&mut self, ms: i32, minute_scans: &mut impl FnMut(u32)) {
        self.first = self.first.min(ms);
        self.last = self.last.max(ms);
        self.frames += 1;
        if ms.div_euclid(MINUTE_MS) != self.latest.div_euclid(MINUTE_MS) {
            if self.phone {
                minute_scans(self.scans);
            }
            self.scans = 1;
        } else if ms - self.latest > ADDRESS_SCAN_GAP_MS {
            self.scans += 1;
        }
        self.latest = ms;
    }
}

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
    /// What [`Self::teach`] found, under its gate, for [`Self::finish`] to reuse.
    taught: Option<(Option<i8>, Grouping)>,
}

/// A window's frames above a gate, grouped: each address's span, sorted by fingerprint, and
/// each group's scans per minute.
struct Grouping {
    /// (fingerprint, span, address key), in fingerprint order.
    spans: Vec<(Fingerprint, Span, u64)>,
    /// In fingerprint order.
    minutes: Vec<GroupMinute>,
}

/// One group's scans in one minute of the window: (fingerprint, minute, scans corrected for
/// the time the join was busy, [`ScanTally`]).
type GroupMinute = (Fingerprint, i32, f64);

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
            taught: None,
        }
    }

    /// The first instant of the window.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// Probe requests with a fingerprint so far.
    pub fn fingerprinted(&self) -> usize {
        self.marks.len()
    }

    /// Makes room for `frames` more probe requests with a fingerprint.
    pub fn reserve(&mut self, frames: usize) {
        self.marks.reserve(frames);
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

    /// Teaches `cadence` the scans of the window's recurring addresses (frames weaker than
    /// `gate`, dBm, left out).
    pub fn teach(&mut self, gate: Option<i8>, cadence: &mut ScanCadence) {
        let grouping = self.grouping(gate, |scans| cadence.observe(scans));
        self.taught = Some((gate, grouping));
    }

    /// The window's fingerprinted frames above `gate`, grouped; `address_scans` gets the
    /// scans of each address in each minute.
    fn grouping(&self, gate: Option<i8>, mut address_scans: impl FnMut(u32)) -> Grouping {
        // Scans are read in time order. Frames come so from one radio; a replay of captures
        // that overlap in time (two sensors of a zone, given as two files) appends the
        // second's after the first's, and read in that order its scans were lost: the
        // estimate was half that of the same frames merged into one file (a fresh user's
        // trial). A stable sort keeps a moment's frames in arrival order.
        let in_order;
        let marks: &[FrameMark] = if self.marks.is_sorted_by_key(|m| m.ms) {
            &self.marks
        } else {
            let mut sorted = self.marks.clone();
            sorted.sort_by_key(|m| m.ms);
            in_order = sorted;
            &in_order
        };
        // Each address's span, one partition at a time.
        let mut spans: Vec<(Fingerprint, Span, u64)> = Vec::new();
        let mut index: foldhash::HashMap<u64, usize> = foldhash::HashMap::default();
        for partition in partitions(marks).chunk_by(|a, b| partition_of(a) == partition_of(b)) {
            index.clear();
            for m in partition.iter().filter(|m| heard(gate, m.rssi)) {
                let next = spans.len();
                let at = *index.entry(m.key).or_insert(next);
                if at == next {
                    // A hardware address's device scans on its own schedule (a lab's
                    // computers probe about once a minute) and would teach phones' cadence
                    // half of it; phones keep random addresses.
                    let phone = !self.hardware.contains_key(&m.key);
                    spans.push((m.fingerprint, Span::new(m.ms, phone), m.key));
                } else {
                    spans[at].1.add(m.ms, &mut address_scans);
                }
            }
        }
        for (_, span, _) in &spans {
            if span.phone {
                address_scans(span.scans);
            }
        }
        spans.sort_unstable_by_key(|(fingerprint, _, _)| *fingerprint);
        // Each group's scans per minute, tallied as its frames come; a burst's frames come
        // one after another, so the previous frame's group is tried first.
        let mut tallies: Vec<(Fingerprint, ScanTally, u32)> = Vec::new();
        let mut at: foldhash::HashMap<Fingerprint, usize> = foldhash::HashMap::default();
        let mut previous: Option<(Fingerprint, usize)> = None;
        let mut minutes = Vec::new();
        for m in marks.iter().filter(|m| heard(gate, m.rssi)) {
            let i = match previous {
                Some((fingerprint, i)) if fingerprint == m.fingerprint => i,
                _ => *at.entry(m.fingerprint).or_insert_with(|| {
                    tallies.push((m.fingerprint, ScanTally::new(m.ms), 0));
                    tallies.len() - 1
                }),
            };
            let (fingerprint, tally, frames) = &mut tallies[i];
            if *frames > 0
                && let Some((minute, scans)) = tally.add(m.ms)
            {
                minutes.push((*fingerprint, minute, scans));
            }
            *frames += 1;
            previous = Some((m.fingerprint, i));
        }
        // A group of a single frame is dropped, as in the count.
        for (fingerprint, tally, frames) in &tallies {
            if *frames >= 2 {
                let (minute, scans) = tally.finish();
                minutes.push((*fingerprint, minute, scans));
            }
        }
        minutes.sort_unstable_by_key(|&(fingerprint, minute, _)| (fingerprint, minute));
        Grouping { spans, minutes }
    }

    /// Inserts the window's physical devices into `sketch`: a (fingerprint, slot) key per
    /// device of each group, the address hash of frames without fingerprint. Frames weaker
    /// than `gate` (dBm) are left out; `cadence` ([`ScanCadence::learned`]) reads the
    /// minutes of a crowd. Returns the number of devices.
    pub fn finish(
        &self,
        salt: &Salt,
        gate: Option<i8>,
        cadence: Option<f64>,
        rule: DeviceRule,
        sketch: &mut Sketch,
    ) -> u64 {
        let heard = |rssi: Option<i8>| heard(gate, rssi);
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
        let computed;
        let grouping = match &self.taught {
            Some((taught, grouping)) if *taught == gate => grouping,
            _ => {
                computed = self.grouping(gate, |_| {});
                &computed
            }
        };
        let crowd = cadence.map_or_else(Vec::new, |per_device| {
            crowd_counts(&grouping.minutes, per_device, rule)
        });
        let spans = &grouping.spans;
        let mut group: Vec<Span> = Vec::new();
        let mut keys = Vec::new();
        for same in spans.chunk_by(|a, b| a.0 == b.0) {
            if same.iter().map(|(_, s, _)| s.frames).sum::<u32>() < 2 {
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
            // A crowd's scans say how many phones, never more than the addresses heard (a
            // phone needs one at least; a transmitter repeating one address is one).
            let scans = crowd
                .binary_search_by_key(&same[0].0, |(f, _)| *f)
                .map_or(0, |i| crowd[i].1)
                .min(u16::try_from(same.len()).unwrap_or(u16::MAX));
            let slots = concurrency(&group).max(scans).saturating_sub(hardware);
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

/// What is left of the installation's history after `elapsed` (half-life
/// [`GATE_HALF_LIFE`]).
fn aged(elapsed: SignedDuration) -> f64 {
    0.5f64.powf(elapsed.as_secs_f64() / GATE_HALF_LIFE.as_secs_f64())
}

/// Whether a frame of signal `rssi` passes `gate` (dBm); a frame without a reading does.
fn heard(gate: Option<i8>, rssi: Option<i8>) -> bool {
    match (gate, rssi) {
        (Some(g), Some(r)) => r >= g,
        _ => true,
    }
}

/// One group's scans in the minute being heard, tallied as its frames come (in time order
/// but for late frames, which join the scan being heard or, from an earlier minute, are left
/// out), corrected for scans of different phones that ran together: frames closer than
/// [`SCAN_JOIN_MS`] are one scan, so each scan keeps the join busy from its first frame to
/// [`SCAN_JOIN_MS`] after its last, and a scan that starts meanwhile is not seen. That is a
/// paralyzable dead time (Knoll, *Radiation Detection and Measurement*, 4th ed., ch. 4):
/// scans starting at random are seen at their rate times the time not busy, so the rate is the
/// scans seen over that live time. A group of a few phones is almost never busy (the
/// correction is nil); in the simulator's Koningsdag, a model's hundreds of phones kept it
/// busy most of a minute, and uncorrected scans read half the devices. The live time is taken
/// as at least a tenth of the minute.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ScanTally {
    minute: i32,
    /// The scan being heard: its first and last frame (ms).
    first: i32,
    last: i32,
    scans: u32,
    /// Frames of the minute: the scans it can hide are at most its frames.
    frames: u32,
    /// Time the join was busy with the scans before it (ms).
    busy: i64,
}

impl ScanTally {
    fn new(ms: i32) -> ScanTally {
        ScanTally {
            minute: ms.div_euclid(MINUTE_MS),
            first: ms,
            last: ms,
            scans: 1,
            frames: 1,
            busy: 0,
        }
    }

    /// Adds a frame; when it opens a later minute, returns the minute before and its scans.
    fn add(&mut self, ms: i32) -> Option<(i32, f64)> {
        let minute = ms.div_euclid(MINUTE_MS);
        if minute > self.minute {
            let done = self.finish();
            *self = ScanTally::new(ms);
            return Some(done);
        }
        if minute < self.minute {
            return None;
        }
        self.frames += 1;
        if ms - self.last > SCAN_JOIN_MS {
            self.busy += i64::from(self.last - self.first) + i64::from(SCAN_JOIN_MS);
            self.scans += 1;
            self.first = ms;
        }
        self.last = self.last.max(ms);
        None
    }

    /// The minute and its scans over its live time.
    fn finish(&self) -> (i32, f64) {
        let busy = self.busy + i64::from(self.last - self.first) + i64::from(SCAN_JOIN_MS);
        let live = (i64::from(MINUTE_MS) - busy).max(i64::from(MINUTE_MS / 10));
        // Every scan has a frame: a sender of lone frames spaced just above the join (a
        // transmitter, not phones) is not read as twice its scans.
        let scans = (f64::from(self.scans) * f64::from(MINUTE_MS) / live as f64)
            .min(f64::from(self.frames));
        (self.minute, scans)
    }
}

/// Per fingerprint (in order), the devices its scans say in the minutes read as a crowd:
/// the largest round(scans / `per_device`) over those minutes.
fn crowd_counts(
    minutes: &[GroupMinute],
    per_device: f64,
    rule: DeviceRule,
) -> Vec<(Fingerprint, u16)> {
    let mut by_minute = minutes.to_vec();
    by_minute.sort_unstable_by_key(|&(_, minute, _)| minute);
    let crowded: Vec<i32> = by_minute
        .chunk_by(|a, b| a.1 == b.1)
        .filter(|same| {
            rule == DeviceRule::Scans
                || (same.len() >= CROWD_MIN_GROUPS && is_crowd(same, per_device))
        })
        .map(|same| same[0].1)
        .collect();
    // `minutes` is in fingerprint order already.
    minutes
        .chunk_by(|a, b| a.0 == b.0)
        .filter_map(|group| {
            let most = group
                .iter()
                .filter(|m| crowded.binary_search(&m.1).is_ok())
                .map(|m| (m.2 / per_device).round())
                .fold(0.0f64, f64::max);
            (most > 0.0).then(|| (group[0].0, most.min(f64::from(u16::MAX)) as u16))
        })
        .collect()
}

/// Whether one minute's groups (two or more) are a crowd's: the groups but the busiest
/// average at least [`CROWD_DEVICES_PER_GROUP`] devices' worth of scans, and the median group
/// carries [`CROWD_MEDIAN_DEVICES`]. The busiest is left out so that one phone scanning fast
/// (a lab phone made 28 scans in a minute) cannot make a room a crowd by itself, the median
/// so that a few cannot.
fn is_crowd(groups: &[GroupMinute], per_device: f64) -> bool {
    let mut worth: Vec<f64> = groups.iter().map(|m| m.2 / per_device).collect();
    worth.sort_unstable_by(f64::total_cmp);
    let Some((_, others)) = worth.split_last() else {
        return false;
    };
    let median = (worth[(worth.len() - 1) / 2] + worth[worth.len() / 2]) / 2.0;
    let mean = others.iter().sum::<f64>() / others.len().max(1) as f64;
    mean >= CROWD_DEVICES_PER_GROUP && median >= CROWD_MEDIAN_DEVICES
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
        .flat_map(|s| [(s.first, 1), (s.last, -1)])
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
        let n = g.finish(&salt(), gate, None, DeviceRule::Auto, &mut s);
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
            assert_eq!(
                g.finish(&salt(), None, None, DeviceRule::Auto, &mut sketch),
                1
            );
            sketch
        };
        let mut union = sketch_of(0);
        union.merge(&sketch_of(60));
        assert_eq!(union.estimate().estimate.round(), 1.0);
    }

    #[test]
    fn the_cadence_is_learned_from_recurring_addresses_only() {
        let mut cadence = ScanCadence::default();
        for i in 0..99 {
            cadence.observe(3);
            cadence.observe(1);
            if i == 68 {
                assert_eq!(cadence.learned(DeviceRule::Scans), None, "69 are too few");
            }
        }
        assert_eq!(
            cadence.learned(DeviceRule::Auto),
            None,
            "99 recurring addresses are too few"
        );
        // An installer's passage (scans) learns from 70, within +-15 % at two standard errors.
        let scans = cadence.learned(DeviceRule::Scans).expect("99 addresses");
        assert!((2.35..2.45).contains(&scans), "{scans}");
        cadence.observe(3);
        // E[k | k >= 2] = 3 is a Poisson rate of 2.1, so 2.4 scans per heard device-minute
        // (the shared lab days learn 2.4 too).
        let learned = cadence.learned(DeviceRule::Auto).expect("100 addresses");
        assert!((2.35..2.45).contains(&learned), "{learned}");
        cadence.decay(GATE_HALF_LIFE);
        assert_eq!(
            cadence.learned(DeviceRule::Auto),
            None,
            "half of it after a half-life"
        );
    }

    /// A minute of `phones` phones of model `fp` (addresses `first..`), each one scan of two
    /// frames at its own moment, a new address per scan as iOS takes.
    fn one_scan_each(g: &mut DeviceGroups, fp: u8, first: u8, phones: u8, spacing_s: i64) {
        for i in 0..phones {
            let t = at(i64::from(i) * spacing_s);
            probe(g, first + i, fp, t, Some(-50), false);
            let ms = g.ms_since_start(t) + 20;
            g.observe_ms(dev(first + i), Some(self::fp(fp)), ms, Some(-50), false);
        }
    }

    fn count_with(g: &DeviceGroups, cadence: Option<f64>) -> u64 {
        count_under(g, cadence, DeviceRule::Auto)
    }

    fn count_under(g: &DeviceGroups, cadence: Option<f64>, rule: DeviceRule) -> u64 {
        let mut s = Sketch::new(Precision::DEFAULT);
        g.finish(&salt(), None, cadence, rule, &mut s)
    }

    #[test]
    fn a_crowd_counts_its_scans_over_the_cadence_and_a_room_its_concurrency() {
        // Three models, 12-30 phones each scanning once in the minute: concurrency sees one
        // phone a model, the scans over a cadence of one scan a minute all of them.
        let mut crowd = DeviceGroups::new(t0());
        one_scan_each(&mut crowd, 0x82, 0, 30, 2);
        one_scan_each(&mut crowd, 0x02, 100, 20, 3);
        one_scan_each(&mut crowd, 0x04, 200, 12, 5);
        assert_eq!(count_with(&crowd, None), 3);
        assert_eq!(count_with(&crowd, Some(1.0)), 62);
        // The join was busy 0.17 s a scan: 30 scans read 32.8 (less than 10 % of the minute
        // busy, as scans at random would leave), so 16 + 11 + 6 at two scans a device.
        assert_eq!(count_with(&crowd, Some(2.0)), 33);
        // A room: one phone scanning every 2 s beside two quiet models is one phone, though
        // its 28 scans (as many as a lab phone made) are fourteen devices' worth alone.
        let mut room = DeviceGroups::new(t0());
        one_scan_each(&mut room, 0x82, 0, 28, 2);
        one_scan_each(&mut room, 0x02, 100, 2, 20);
        one_scan_each(&mut room, 0x04, 200, 1, 20);
        assert_eq!(count_with(&room, Some(2.0)), 3);
        // Nor do three such phones beside eight quiet models: the median group is quiet.
        let mut fast = DeviceGroups::new(t0());
        for (k, model) in [0x82u8, 0x84, 0x8b].into_iter().enumerate() {
            one_scan_each(&mut fast, model, 40 * k as u8, 28, 2);
        }
        for model in 0..8u8 {
            one_scan_each(&mut fast, 0x10 + model, 130 + model, 1, 20);
        }
        assert_eq!(count_with(&fast, Some(2.0)), 11);
        // Unless the installer says people pass here: then every group reads its scans.
        assert_eq!(count_under(&room, Some(2.0), DeviceRule::Scans), 17);
        // Scans of one address are one device, however many (a transmitter repeating it).
        let mut repeated = DeviceGroups::new(t0());
        for (fp, first) in [(0x82, 0), (0x02, 1), (0x04, 2)] {
            for s in 0..30 {
                probe(&mut repeated, first, fp, at(s * 2), Some(-50), false);
            }
        }
        assert_eq!(count_with(&repeated, Some(1.0)), 3);
        // Two groups are not a crowd, whatever they scan.
        let mut two = DeviceGroups::new(t0());
        one_scan_each(&mut two, 0x82, 0, 30, 2);
        one_scan_each(&mut two, 0x02, 100, 30, 2);
        assert_eq!(count_with(&two, Some(1.0)), 2);
    }

    #[test]
    fn frames_appended_out_of_time_order_read_as_in_it() {
        // Two sensors' captures of one crowd replayed as two files: the second's frames come
        // after the first's whole window. Read in arrival order, the second's scans were
        // lost (a fresh user's trial: half the devices); they are read in time order.
        let mut together = DeviceGroups::new(t0());
        let (mut first, mut second) = (DeviceGroups::new(t0()), DeviceGroups::new(t0()));
        for (model, base) in [(0x82u8, 0u8), (0x02, 100), (0x04, 200)] {
            one_scan_each(&mut together, model, base, 30, 2);
            one_scan_each(&mut first, model, base, 15, 4);
            for i in 0..15u8 {
                // The other sensor's phones, between the first's.
                let t = at(i64::from(i) * 4 + 2);
                for extra_ms in [0, 20] {
                    let ms = second.ms_since_start(t) + extra_ms;
                    second.observe_ms(dev(base + 15 + i), Some(fp(model)), ms, Some(-50), false);
                }
            }
        }
        let mut appended = first;
        appended.marks.extend_from_slice(&second.marks);
        assert_eq!(count_with(&together, Some(1.0)), 90);
        assert_eq!(count_with(&appended, Some(1.0)), 90);
        let (mut in_order, mut out_of_order) = (ScanCadence::default(), ScanCadence::default());
        together.teach(None, &mut in_order);
        appended.teach(None, &mut out_of_order);
        assert_eq!(in_order.sums(), out_of_order.sums());
    }

    #[test]
    fn scans_that_ran_together_are_recovered_from_the_live_time() {
        // 600 scans (two frames 20 ms apart) at random moments of a minute, as a model's
        // hundreds of phones make them: the join sees a fifth of them as apart.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut moments = Vec::new();
        for _ in 0..600 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = (x % 60_000) as i32;
            moments.extend([t, t + 20]);
        }
        moments.sort_unstable();
        let joined = 1 + moments
            .windows(2)
            .filter(|w| w[1] - w[0] > SCAN_JOIN_MS)
            .count();
        assert!(joined < 200, "{joined}");
        let live_scans = |moments: &[i32]| {
            let mut tally = ScanTally::new(moments[0]);
            for &ms in &moments[1..] {
                assert_eq!(tally.add(ms), None, "one minute");
            }
            tally.finish().1
        };
        let live = live_scans(&moments);
        assert!(
            (540.0..660.0).contains(&live),
            "{live} of 600 ({joined} apart)"
        );
        // Scans far apart are left as they are; a late frame joins the scan being heard.
        assert!((live_scans(&[0, 20, 30_000, 30_020, 30_010]) - 2.0).abs() < 0.02);
        // A frame of the next minute closes this one; a lone frame is one scan, however
        // busy its 150 ms kept the join.
        let mut tally = ScanTally::new(59_000);
        assert_eq!(tally.add(61_000), Some((0, 1.0)));
        assert_eq!(tally.finish().0, 1);
    }

    #[test]
    fn a_window_teaches_the_cadence_the_scans_of_its_recurring_addresses() {
        // 120 phones keeping their address, each heard in 3 scans 20 s apart; and one iOS
        // phone whose addresses last one scan each (they teach nothing).
        let mut g = DeviceGroups::new(t0());
        for i in 0..120u8 {
            for s in [0, 20, 40] {
                probe(&mut g, i, 0x82, at(s), Some(-50), false);
            }
        }
        one_scan_each(&mut g, 0x02, 200, 30, 2);
        // Fifty computers probing twice a minute by their hardware addresses teach nothing
        // either (with them, the cadence would read 2.0).
        for i in 130..180u8 {
            for s in [1, 31] {
                probe(&mut g, i, 0x04, at(s), Some(-50), true);
            }
        }
        let mut cadence = ScanCadence::default();
        g.teach(None, &mut cadence);
        let taught = count_with(&g, cadence.learned(DeviceRule::Auto));
        let learned = cadence
            .learned(DeviceRule::Auto)
            .expect("120 recurring addresses");
        assert!((2.4..2.5).contains(&learned), "{learned}");
        // Below the gate, nothing is learned.
        let mut gated = ScanCadence::default();
        g.teach(Some(-40), &mut gated);
        assert_eq!(gated.learned(DeviceRule::Auto), None);
        // What teach found is what finish would find (under another gate it looks again).
        assert_eq!(taught, count_with(&g, cadence.learned(DeviceRule::Auto)));
        assert_eq!(taught, 171);
    }

    #[test]
    fn debug_shows_sizes_only() {
        let mut g = DeviceGroups::new(t0());
        probe(&mut g, 1, 0x82, at(1), Some(-50), false);
        assert_eq!(format!("{g:?}"), "DeviceGroups { frames: 1, .. }");
    }
}
