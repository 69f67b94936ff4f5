//! Frames seen: counted per kind, skipped per reason (the status's and metrics' figures).

use std::collections::BTreeMap;

use crowdflow_contract::identity::Kind;

use crate::frame::{Heard, Skip};

/// Frames seen, counted per kind and skipped per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Every frame looked at.
    pub frames: u64,
    counted: [u64; KINDS],
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

    /// The frames that failed their FCS since `before`, when nothing counted beside them:
    /// what a capture whose addresses were rewritten (anonymized) looks like, as the FCS was
    /// not recomputed.
    pub fn all_failed_fcs_since(&self, before: &Tally) -> Option<u64> {
        let bad = self.skipped(Skip::BadFcs) - before.skipped(Skip::BadFcs);
        let counted: u64 = Kind::ADDRESSES
            .iter()
            .map(|&k| self.counted(k) - before.counted(k))
            .sum();
        (bad > 0 && counted == 0).then_some(bad)
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

pub(super) const KINDS: usize = Kind::ALL.len();

pub(super) fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Wifi => 0,
        Kind::WifiRandom => 1,
        Kind::Ble => 2,
        Kind::WifiDerandomized => 3,
    }
}
