//! Per-kind sketches of salted device hashes: what one window of one salt counted.

use std::collections::BTreeMap;

use crowdflow_contract::identity::{DeviceHash, Kind, Medium, hash_device};
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::{Estimate, Precision, Sketch, SketchUnion};
use jiff::Timestamp;

use super::devices::{DeviceGroups, DeviceRule, ScanCadence};
use super::tally::{KINDS, kind_index};
use crate::frame::{Sighting, oui};

/// One sketch per kind.
#[derive(Debug, Clone)]
pub struct KindSketches {
    sketches: [Sketch; KINDS],
    frames: [u64; KINDS],
    devices: bool,
}

impl KindSketches {
    /// Empty sketches.
    pub fn new(precision: Precision) -> KindSketches {
        KindSketches {
            sketches: std::array::from_fn(|_| Sketch::new(precision)),
            frames: [0; KINDS],
            devices: false,
        }
    }

    /// Empty sketches of a window where nothing was heard: zero physical devices too.
    pub fn nobody(precision: Precision) -> KindSketches {
        KindSketches {
            devices: true,
            ..KindSketches::new(precision)
        }
    }

    /// Whether the `wifi_derandomized` sketch holds the window's device estimate.
    pub fn has_devices(&self) -> bool {
        self.devices
    }

    /// Counts an address already hashed under the window's salt.
    #[inline]
    pub fn insert_hash(&mut self, kind: Kind, device: &DeviceHash) {
        let i = kind_index(kind);
        self.sketches[i].insert(device);
        self.frames[i] += 1;
    }

    /// The sketch of `kind`.
    pub fn sketch(&self, kind: Kind) -> &Sketch {
        &self.sketches[kind_index(kind)]
    }

    /// Frames counted into the sketch of `kind`.
    pub fn frames(&self, kind: Kind) -> u64 {
        self.frames[kind_index(kind)]
    }

    /// Distinct devices per kind (`wifi_derandomized` only when it holds an estimate).
    pub fn estimates(&self) -> BTreeMap<Kind, Estimate> {
        Kind::ALL
            .into_iter()
            .filter(|&k| k != Kind::WifiDerandomized || self.devices)
            .map(|k| (k, self.sketch(k).estimate()))
            .collect()
    }
}

/// The union of many windows' address sketches and frames, kept as one sketch union per
/// kind until the end: merging window by window rebuilt each kind's sketch every time, most
/// of a replay of months in short windows (#15).
#[derive(Debug)]
pub struct KindUnion {
    unions: [SketchUnion; Kind::ADDRESSES.len()],
    frames: [u64; Kind::ADDRESSES.len()],
}

impl KindUnion {
    /// An empty union.
    pub fn new(precision: Precision) -> KindUnion {
        KindUnion {
            unions: std::array::from_fn(|_| SketchUnion::new(precision)),
            frames: [0; Kind::ADDRESSES.len()],
        }
    }

    /// Adds a window's address sketches and frames.
    pub fn add(&mut self, window: &KindSketches) {
        for (i, kind) in Kind::ADDRESSES.into_iter().enumerate() {
            self.unions[i].add(window.sketch(kind));
            self.frames[i] += window.frames(kind);
        }
    }

    /// Adds the union into `whole` (its address sketches and frames).
    pub fn add_into(self, whole: &mut KindSketches) {
        for ((kind, mut union), frames) in Kind::ADDRESSES
            .into_iter()
            .zip(self.unions)
            .zip(self.frames)
        {
            let k = kind_index(kind);
            union.add(&whole.sketches[k]);
            whole.sketches[k] = union.to_sketch();
            whole.frames[k] += frames;
        }
    }
}

/// Everything counted in one window under one salt: the address sketches, and the Wi-Fi
/// sightings the physical-device estimate groups when the window ends (in memory only).
#[derive(Debug)]
pub struct WindowCount {
    sketches: KindSketches,
    devices: DeviceGroups,
}

/// Whether a sighting is a grouped probe request (Wi-Fi, with a fingerprint) from a hardware
/// address ([`oui::is_hardware`]): each such address is one device in the estimate. Only
/// those need the OUI table, whose 512 KiB a busy replay misses the cache in on most frames.
#[inline]
pub fn is_grouped_hardware(sighting: &Sighting) -> bool {
    sighting.heard.medium == Medium::Wifi
        && sighting.fingerprint.is_some()
        && oui::is_hardware(&sighting.heard.address)
}

impl WindowCount {
    /// An empty count of the window starting at `start`.
    pub fn new(precision: Precision, start: Timestamp) -> WindowCount {
        WindowCount {
            sketches: KindSketches::new(precision),
            devices: DeviceGroups::new(start),
        }
    }

    /// The first instant of the window.
    pub fn start(&self) -> Timestamp {
        self.devices.start()
    }

    /// The window's sightings kept for the device estimate (see [`DeviceGroups`]).
    pub fn devices(&self) -> &DeviceGroups {
        &self.devices
    }

    /// Makes room for `frames` more sightings for the device estimate: a replay opens a
    /// window with room for what the previous one held, where growing by doubling copied
    /// and faulted in its list again and again.
    pub fn reserve(&mut self, frames: usize) {
        self.devices.reserve(frames);
    }

    /// Hashes the sighting's address under `salt`, counts it under its kind and keeps the
    /// hash with the fingerprint for the device estimate; the address goes no further.
    #[inline]
    pub fn insert(&mut self, salt: &Salt, at: Timestamp, sighting: &Sighting) {
        let heard = &sighting.heard;
        self.insert_hashed(
            &hash_device(salt, heard.medium, &heard.address),
            at,
            sighting,
        );
    }

    /// As [`Self::insert`], with the address already hashed under the window's salt.
    #[inline]
    pub fn insert_hashed(&mut self, device: &DeviceHash, at: Timestamp, sighting: &Sighting) {
        let ms = self.devices.ms_since_start(at);
        self.insert_hashed_ms(device, ms, sighting, is_grouped_hardware(sighting));
    }

    /// As [`Self::insert_hashed`], heard `ms` milliseconds after the window's start (replay:
    /// no time arithmetic per frame). The frames of `wifi_derandomized` are the Wi-Fi
    /// kinds' (its messages carry none: per-sensor frame totals add kinds up). `hardware` is
    /// [`is_grouped_hardware`] of the sighting (a replay looks it up for a batch of frames
    /// at a time).
    #[inline]
    pub fn insert_hashed_ms(
        &mut self,
        device: &DeviceHash,
        ms: i32,
        sighting: &Sighting,
        hardware: bool,
    ) {
        let heard = &sighting.heard;
        self.sketches.insert_hash(heard.kind(), device);
        if heard.medium == Medium::Wifi {
            self.devices
                .observe_ms(*device, sighting.fingerprint, ms, heard.rssi, hardware);
        }
    }

    /// Teaches the installation's scan `cadence` the window's recurring addresses, with
    /// frames weaker than `gate` (dBm) left out.
    pub fn teach(&mut self, gate: Option<i8>, cadence: &mut ScanCadence) {
        self.devices.teach(gate, cadence);
    }

    /// The window's sketches, the `wifi_derandomized` one filled from the grouped sightings
    /// with frames weaker than `gate` (dBm) left out, a crowd's minutes read under `cadence`
    /// (scans per device-minute, [`ScanCadence::learned`]) under the installer's `rule`; the
    /// grouping state is dropped
    /// here. Without the window's salt (forgotten already) there is no device estimate, and
    /// [`KindSketches::has_devices`] says so.
    pub fn finish(
        self,
        salt: Option<&Salt>,
        gate: Option<i8>,
        cadence: Option<f64>,
        rule: DeviceRule,
    ) -> KindSketches {
        let mut sketches = self.sketches;
        if let Some(salt) = salt {
            let i = kind_index(Kind::WifiDerandomized);
            self.devices
                .finish(salt, gate, cadence, rule, &mut sketches.sketches[i]);
            sketches.devices = true;
        }
        sketches
    }
}
