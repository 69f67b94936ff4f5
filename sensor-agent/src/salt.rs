//! The agent's salts: current and next epoch, in memory only.
//!
//! Salts arrive in [`SaltAnnouncement`]s from the aggregator. The keeper holds them until
//! their epoch is over (plus a grace for the last window), then drops them, which zeroizes
//! them. If the authority announces a different salt for an epoch the keeper already holds
//! (an aggregator restarted and drew a new one), the new salt wins from then on and the
//! change is counted: sketches carry the fingerprint, so the two are never mixed.

use crowdflow_contract::salt::{Salt, SaltFingerprint};
use crowdflow_contract::wire::{
    EpochSalt, EpochSaltRef, SaltAnnouncement, SaltRecovery, SaltState,
};
use jiff::{SignedDuration, Timestamp};
use zeroize::Zeroizing;

/// How long an ended epoch's salt is kept for frames of its last window.
const GRACE: SignedDuration = SignedDuration::from_mins(10);

/// What an announcement changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Epochs not known before.
    pub new_epochs: usize,
    /// Epochs whose salt was replaced by a different one.
    pub replaced: usize,
}

/// Current and upcoming salts.
#[derive(Debug, Default)]
pub struct SaltKeeper {
    epochs: Vec<EpochSalt>,
}

impl SaltKeeper {
    /// Takes in an announcement's salts.
    pub fn accept(&mut self, announcement: SaltAnnouncement, now: Timestamp) -> Accepted {
        let mut accepted = Accepted::default();
        for incoming in announcement.salts {
            if incoming.ends + GRACE < now {
                continue; // already over: never start counting under it
            }
            match self.epochs.iter_mut().find(|e| e.epoch == incoming.epoch) {
                Some(held) if held.salt.fingerprint() == incoming.salt.fingerprint() => {}
                Some(held) => {
                    *held = incoming;
                    accepted.replaced += 1;
                }
                None => {
                    self.epochs.push(incoming);
                    accepted.new_epochs += 1;
                }
            }
        }
        self.epochs.sort_by_key(|e| e.starts);
        self.prune(now);
        accepted
    }

    /// Drops (and so zeroizes) salts whose epoch ended more than the grace ago.
    pub fn prune(&mut self, now: Timestamp) {
        self.epochs.retain(|e| e.ends + GRACE >= now);
    }

    /// The salt for an instant.
    pub fn at(&self, t: Timestamp) -> Option<&EpochSalt> {
        self.epochs.iter().find(|e| e.covers(t))
    }

    /// The salt of `fp`, if still held.
    pub fn by_fingerprint(&self, fp: SaltFingerprint) -> Option<&Salt> {
        self.epochs
            .iter()
            .find(|e| e.salt.fingerprint() == fp)
            .map(|e| &e.salt)
    }

    /// The answer to an authority that lost a salt: the requested salt, if this keeper holds
    /// exactly it (same epoch, same fingerprint), as an announcement by `sensor`.
    pub fn answer(
        &self,
        request: &SaltRecovery,
        sensor: &str,
        now: Timestamp,
    ) -> Option<Zeroizing<Vec<u8>>> {
        let held = self
            .epochs
            .iter()
            .find(|e| e.epoch == request.epoch && e.salt.fingerprint() == request.fp)?;
        let salt = EpochSaltRef {
            epoch: held.epoch,
            starts: held.starts,
            ends: held.ends,
            salt: &held.salt,
        };
        Some(SaltAnnouncement::encode_refs(sensor, now, &[salt]))
    }

    /// The salt situation in the terms of the status message.
    pub fn state(&self, now: Timestamp) -> SaltState {
        match self.at(now) {
            Some(e) => SaltState {
                counting: true,
                epoch: Some(e.epoch),
                fp: Some(e.salt.fingerprint()),
                reason: None,
            },
            None => SaltState {
                counting: false,
                epoch: None,
                fp: None,
                reason: Some(if self.epochs.is_empty() {
                    "no salt received from the aggregator yet: not counting (check the broker \
                     connection and that the aggregator runs)"
                        .into()
                } else {
                    "no salt for the current epoch: not counting (the aggregator has not \
                     announced it; check its clock and ours)"
                        .into()
                }),
            },
        }
    }

    /// How many epochs are held.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Whether no salt is held.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn epoch_salt(day: &str, starts: &str, ends: &str) -> EpochSalt {
        EpochSalt {
            epoch: day.parse().expect("epoch"),
            starts: ts(starts),
            ends: ts(ends),
            salt: Salt::generate().expect("entropy"),
        }
    }

    fn announce(salts: Vec<EpochSalt>) -> SaltAnnouncement {
        SaltAnnouncement {
            authority: "agg".into(),
            issued_at: ts("2026-04-27T12:00:00Z"),
            salts,
        }
    }

    #[test]
    fn salts_are_found_by_instant_and_dropped_after_their_epoch() {
        let mut k = SaltKeeper::default();
        let now = ts("2026-04-27T12:00:00Z");
        let a = k.accept(
            announce(vec![
                epoch_salt("2026-04-27", "2026-04-27T02:00:00Z", "2026-04-28T02:00:00Z"),
                epoch_salt("2026-04-28", "2026-04-28T02:00:00Z", "2026-04-29T02:00:00Z"),
            ]),
            now,
        );
        assert_eq!(
            a,
            Accepted {
                new_epochs: 2,
                replaced: 0
            }
        );
        assert_eq!(
            k.at(now).map(|e| e.epoch.to_string()),
            Some("2026-04-27".into())
        );
        assert_eq!(
            k.at(ts("2026-04-28T03:00:00Z"))
                .map(|e| e.epoch.to_string()),
            Some("2026-04-28".into())
        );
        assert!(k.state(now).counting);
        k.prune(ts("2026-04-28T02:11:00Z"));
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn without_a_salt_the_state_says_why_it_is_not_counting() {
        let k = SaltKeeper::default();
        let s = k.state(ts("2026-04-27T12:00:00Z"));
        assert!(!s.counting);
        assert!(s.reason.expect("reason").contains("no salt received"));
    }

    #[test]
    fn a_new_salt_for_a_held_epoch_replaces_it_and_is_counted() {
        let mut k = SaltKeeper::default();
        let now = ts("2026-04-27T12:00:00Z");
        k.accept(
            announce(vec![epoch_salt(
                "2026-04-27",
                "2026-04-27T02:00:00Z",
                "2026-04-28T02:00:00Z",
            )]),
            now,
        );
        let before = k.state(now).fp;
        let a = k.accept(
            announce(vec![epoch_salt(
                "2026-04-27",
                "2026-04-27T02:00:00Z",
                "2026-04-28T02:00:00Z",
            )]),
            now,
        );
        assert_eq!(a.replaced, 1);
        assert_ne!(k.state(now).fp, before);
        // the same salt again changes nothing
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn salts_of_epochs_long_over_are_never_taken() {
        let mut k = SaltKeeper::default();
        let a = k.accept(
            announce(vec![epoch_salt(
                "2026-04-20",
                "2026-04-20T02:00:00Z",
                "2026-04-21T02:00:00Z",
            )]),
            ts("2026-04-27T12:00:00Z"),
        );
        assert_eq!(a.new_epochs, 0);
        assert!(k.is_empty());
    }

    #[test]
    fn only_the_exact_salt_asked_for_is_returned() {
        let mut k = SaltKeeper::default();
        let now = ts("2026-04-27T12:00:00Z");
        let held = epoch_salt("2026-04-27", "2026-04-27T02:00:00Z", "2026-04-28T02:00:00Z");
        let fp = held.salt.fingerprint();
        k.accept(announce(vec![held]), now);
        let epoch = "2026-04-27".parse().expect("epoch");
        let answer = k
            .answer(
                &SaltRecovery {
                    epoch,
                    fp,
                    issued_at: now,
                },
                "gate-1",
                now,
            )
            .expect("held");
        let returned = SaltAnnouncement::decode(&answer).expect("an announcement");
        assert_eq!(returned.authority, "gate-1");
        assert_eq!(returned.salts.len(), 1);
        assert_eq!(returned.salts[0].salt.fingerprint(), fp);
        let other = Salt::generate().expect("entropy").fingerprint();
        assert!(
            k.answer(
                &SaltRecovery {
                    epoch,
                    fp: other,
                    issued_at: now
                },
                "gate-1",
                now
            )
            .is_none(),
            "another salt's fingerprint"
        );
        let next_day = "2026-04-28".parse().expect("epoch");
        assert!(
            k.answer(
                &SaltRecovery {
                    epoch: next_day,
                    fp,
                    issued_at: now,
                },
                "gate-1",
                now
            )
            .is_none(),
            "another epoch"
        );
    }
}
