//! Counting: per-reason frame tallies and per-kind sketches of salted device hashes.

use std::collections::BTreeMap;

use crowdflow_contract::identity::{Kind, hash_device};
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::{Estimate, Precision, Sketch};

use crate::frame::{Heard, Skip};

/// Frames seen, counted per kind and skipped per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Every frame looked at.
    pub frames: u64,
    counted: [u64; 3],
    skipped: [u64; Skip::ALL.len()],
}

impl Tally {
    /// Records one decoded frame.
    #[inline]
    pub fn record(&mut self, outcome: &Result<Heard, Skip>) {
        self.frames += 1;
        match outcome {
            Ok(heard) => self.counted[kind_index(heard.kind())] += 1,
            Err(skip) => self.skipped[*skip as usize] += 1,
        }
    }

    /// Records a frame skipped for `reason` outside decoding.
    pub fn skip(&mut self, reason: Skip) {
        self.frames += 1;
        self.skipped[reason as usize] += 1;
    }

    /// Frames counted under `kind`.
    pub fn counted(&self, kind: Kind) -> u64 {
        self.counted[kind_index(kind)]
    }

    /// Frames skipped for `reason`.
    pub fn skipped(&self, reason: Skip) -> u64 {
        self.skipped[reason as usize]
    }

    /// Non-zero skip counts by label.
    pub fn skipped_by_reason(&self) -> BTreeMap<&'static str, u64> {
        Skip::ALL
            .iter()
            .filter(|r| self.skipped(**r) > 0)
            .map(|r| (r.as_str(), self.skipped(*r)))
            .collect()
    }

    /// Adds another tally into this one.
    pub fn absorb(&mut self, other: &Tally) {
        self.frames += other.frames;
        for (a, b) in self.counted.iter_mut().zip(other.counted) {
            *a += b;
        }
        for (a, b) in self.skipped.iter_mut().zip(other.skipped) {
            *a += b;
        }
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Wifi => 0,
        Kind::WifiRandom => 1,
        Kind::Ble => 2,
    }
}

/// One sketch per kind.
#[derive(Debug, Clone)]
pub struct KindSketches {
    sketches: [Sketch; 3],
    frames: [u64; 3],
}

impl KindSketches {
    /// Empty sketches.
    pub fn new(precision: Precision) -> KindSketches {
        KindSketches {
            sketches: std::array::from_fn(|_| Sketch::new(precision)),
            frames: [0; 3],
        }
    }

    /// Hashes the sighting's address under `salt` and counts it; the address goes no further.
    #[inline]
    pub fn insert(&mut self, salt: &Salt, heard: &Heard) {
        let i = kind_index(heard.kind());
        self.sketches[i].insert(&hash_device(salt, heard.medium, &heard.address));
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

    /// Distinct devices per kind.
    pub fn estimates(&self) -> BTreeMap<Kind, Estimate> {
        Kind::ALL
            .into_iter()
            .map(|k| (k, self.sketch(k).estimate()))
            .collect()
    }
}
