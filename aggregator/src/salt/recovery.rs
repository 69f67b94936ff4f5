//! Asking the agents for a salt this aggregator lost in a restart.
//!
//! A lone aggregator that restarts mid-epoch has lost its salts (salts never touch a disk)
//! but has their fingerprints in storage: the running epoch's, and in the hours before a
//! rotation the next epoch's too, which the agents already hold. Before drawing new salts it
//! asks the agents for those ([`SaltRecovery`], for up to `salt.recover_for_s`) and takes a
//! salt back only if its fingerprint is a recorded one, so a sensor cannot plant a salt.
//! Counting then goes on under the same salts, and no device is counted twice because of the
//! restart, not even after the rotation.

use std::time::{Duration, Instant};

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::wire::{SaltAnnouncement, SaltRecovery};
use jiff::Timestamp;

/// How often the request is repeated while waiting (QoS 0: agents reconnecting may miss one).
pub const ASK_EVERY: Duration = Duration::from_secs(2);

/// Lost salts being asked back from the agents.
#[derive(Debug)]
pub struct Recovery {
    /// Fingerprints recorded for the epochs not over yet (one per salt each ever had).
    wanted: Vec<(EpochId, SaltFingerprint)>,
    until: Instant,
    last_ask: Option<Instant>,
}

/// What a waiting recovery wants done now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Still waiting; publish these requests on `salt/recover` (empty between repeats).
    Wait(Vec<SaltRecovery>),
    /// The wait is over: the salt is held again, or no agent answered in time.
    Over,
}

impl Recovery {
    /// A recovery of the salts whose recorded (epoch, fingerprint) pairs are `wanted`, for up
    /// to `wait` from `now`; `None` when there is nothing to recover or recovery is off.
    pub fn start(
        wanted: Vec<(EpochId, SaltFingerprint)>,
        wait: Duration,
        now: Instant,
    ) -> Option<Recovery> {
        (!wanted.is_empty() && !wait.is_zero()).then(|| Recovery {
            wanted,
            until: now + wait,
            last_ask: None,
        })
    }

    /// The epochs whose salts are asked for, oldest first.
    pub fn epochs(&self) -> Vec<EpochId> {
        let mut epochs: Vec<EpochId> = self.wanted.iter().map(|(e, _)| *e).collect();
        epochs.sort();
        epochs.dedup();
        epochs
    }

    /// The next step at `now`; `held` says whether a salt for an epoch is held already (an
    /// agent's answer or a leader's announcement may bring it).
    /// Requests are stamped `at` (wall clock): agents answer only fresh ones.
    pub fn step(&mut self, held: impl Fn(EpochId) -> bool, now: Instant, at: Timestamp) -> Step {
        let missing: Vec<EpochId> = self.epochs().into_iter().filter(|e| !held(*e)).collect();
        if missing.is_empty() {
            return Step::Over;
        }
        if now >= self.until {
            for epoch in &missing {
                tracing::warn!(%epoch, "no agent returned this epoch's salt in time (salt.recover_for_s): drawing a new one (devices heard before and after the restart count once per salt)");
            }
            return Step::Over;
        }
        let due = self
            .last_ask
            .is_none_or(|t| now.saturating_duration_since(t) >= ASK_EVERY);
        if !due {
            return Step::Wait(Vec::new());
        }
        if self.last_ask.is_none() {
            for epoch in &missing {
                tracing::info!(%epoch, "restarted: asking the agents for this epoch's salt");
            }
        }
        self.last_ask = Some(now);
        let requests = self
            .wanted
            .iter()
            .filter(|(epoch, _)| missing.contains(epoch))
            .map(|(epoch, fp)| SaltRecovery {
                epoch: *epoch,
                fp: *fp,
                issued_at: at,
            })
            .collect();
        Step::Wait(requests)
    }

    /// The salts of `returned` that are asked for (an epoch's, with a fingerprint recorded
    /// for it), or `None` when there is none.
    pub fn take_back(&self, mut returned: SaltAnnouncement) -> Option<SaltAnnouncement> {
        returned
            .salts
            .retain(|s| self.wanted.contains(&(s.epoch, s.salt.fingerprint())));
        (!returned.salts.is_empty()).then_some(returned)
    }
}

#[cfg(test)]
mod tests {
    use crowdflow_contract::epoch::RotationSchedule;

    use super::*;
    use crate::salt::SaltAuthority;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    /// An authority holding the epoch of `at`, and its announcement.
    fn authority(id: &str, at: Timestamp) -> (SaltAuthority, EpochId, SaltAnnouncement) {
        let mut a = SaltAuthority::new(id, RotationSchedule::default());
        a.tick(at).expect("entropy");
        let epoch = a.epochs()[0];
        let announced = SaltAnnouncement::decode(&a.announcement(at)).expect("decodes");
        (a, epoch, announced)
    }

    #[test]
    fn nothing_recorded_or_no_wait_means_no_recovery() {
        let (a, epoch, _) = authority("agg-1", ts("2026-04-27T12:00:00Z"));
        let fp = a.fingerprint(epoch).expect("held");
        let now = Instant::now();
        assert!(Recovery::start(vec![], Duration::from_secs(30), now).is_none());
        assert!(Recovery::start(vec![(epoch, fp)], Duration::ZERO, now).is_none());
    }

    #[test]
    fn it_asks_for_every_recorded_fingerprint_every_two_seconds_until_the_wait_is_over() {
        let (a, epoch, _) = authority("agg-1", ts("2026-04-27T12:00:00Z"));
        let (b, _, _) = authority("agg-1", ts("2026-04-27T12:00:00Z"));
        let fps = vec![
            a.fingerprint(epoch).expect("held"),
            b.fingerprint(epoch).expect("held"),
        ];
        let wanted = fps.iter().map(|fp| (epoch, *fp)).collect();
        let t0 = Instant::now();
        let mut r = Recovery::start(wanted, Duration::from_secs(5), t0).expect("on");
        let asked = |step: Step| match step {
            Step::Wait(requests) => requests.iter().map(|q| q.fp).collect::<Vec<_>>(),
            Step::Over => panic!("over too soon"),
        };
        let none = |_| false;
        assert_eq!(asked(r.step(none, t0, Timestamp::UNIX_EPOCH)), fps);
        assert!(asked(r.step(none, t0 + Duration::from_secs(1), Timestamp::UNIX_EPOCH)).is_empty());
        assert_eq!(
            asked(r.step(none, t0 + ASK_EVERY, Timestamp::UNIX_EPOCH)),
            fps
        );
        assert_eq!(
            r.step(none, t0 + Duration::from_secs(5), Timestamp::UNIX_EPOCH),
            Step::Over
        );
    }

    #[test]
    fn a_salt_held_again_ends_the_wait() {
        let (a, epoch, _) = authority("agg-1", ts("2026-04-27T12:00:00Z"));
        let now = Instant::now();
        let wanted = vec![(epoch, a.fingerprint(epoch).expect("held"))];
        let mut r = Recovery::start(wanted, Duration::from_secs(30), now).expect("on");
        assert_eq!(r.step(|_| true, now, Timestamp::UNIX_EPOCH), Step::Over);
    }

    #[test]
    fn only_a_salt_with_a_recorded_fingerprint_is_taken_back() {
        let at = ts("2026-04-27T12:00:00Z");
        let (lost, epoch, returned) = authority("agg-1", at);
        let (_, _, planted) = authority("sensor", at);
        let wanted = vec![(epoch, lost.fingerprint(epoch).expect("held"))];
        let r = Recovery::start(wanted, Duration::from_secs(30), Instant::now()).expect("on");
        assert!(
            r.take_back(planted).is_none(),
            "a salt of a sensor's choosing"
        );
        let back = r.take_back(returned).expect("the recorded salt");
        assert_eq!(back.salts.len(), 1);
        assert_eq!(
            back.salts[0].salt.fingerprint(),
            lost.fingerprint(epoch).expect("held")
        );
    }
}
