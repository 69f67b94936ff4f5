//! The salt authority: draws each epoch's salt, announces current and (ahead of rotation)
//! next salts, and forgets salts of ended epochs.
//!
//! Salts live in this struct only: never on disk, never in logs, zeroized on drop. What
//! outlives them is each epoch's fingerprint (a keyed hash of a constant, safe to store),
//! which ingest uses to accept sketches of current and recently ended epochs. A restarted
//! aggregator first asks the agents for the running epoch's salt and adopts it if its
//! fingerprint is the recorded one ([`super::recovery`]); only failing that it draws a new
//! salt, and both fingerprints are then known and their sketches kept apart.

use std::collections::BTreeMap;

use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use crowdflow_contract::salt::{Salt, SaltError, SaltFingerprint};
use crowdflow_contract::wire::{EpochSaltRef, SaltAnnouncement};
use jiff::{SignedDuration, Timestamp};
use zeroize::Zeroizing;

/// How long before a rotation the next epoch's salt is drawn and announced, so agents
/// hold it when the epoch starts even if they miss announcements around the rotation.
const LOOKAHEAD: SignedDuration = SignedDuration::from_hours(6);
/// How long an ended epoch's salt is still announced (agents' last window of it).
const GRACE: SignedDuration = SignedDuration::from_mins(10);

struct Held {
    salt: Salt,
    starts: Timestamp,
    ends: Timestamp,
}

/// The salts of this deployment.
pub struct SaltAuthority {
    id: String,
    schedule: RotationSchedule,
    held: BTreeMap<EpochId, Held>,
}

impl std::fmt::Debug for SaltAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltAuthority")
            .field("id", &self.id)
            .field("epochs", &self.held.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An epoch whose salt was drawn (reported so its fingerprint can be recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drawn {
    /// The epoch.
    pub epoch: EpochId,
    /// Its salt's fingerprint.
    pub fp: SaltFingerprint,
}

impl SaltAuthority {
    /// An authority named `id` rotating by `schedule`, holding no salt yet.
    pub fn new(id: &str, schedule: RotationSchedule) -> SaltAuthority {
        SaltAuthority {
            id: id.to_owned(),
            schedule,
            held: BTreeMap::new(),
        }
    }

    /// Brings the salts up to `now`: draws the current epoch's salt and, within the
    /// look-ahead, the next one's; drops (zeroizes) salts of epochs over by more than the
    /// grace. Returns what was drawn.
    pub fn tick(&mut self, now: Timestamp) -> Result<Vec<Drawn>, SaltError> {
        let mut drawn = Vec::new();
        let current = self.schedule.epoch_at(now);
        let mut wanted = vec![current];
        if self
            .schedule
            .end_of(current)
            .is_some_and(|end| end - LOOKAHEAD <= now)
        {
            wanted.push(current.next());
        }
        for epoch in wanted {
            if self.held.contains_key(&epoch) {
                continue;
            }
            let (Some(starts), Some(ends)) =
                (self.schedule.start_of(epoch), self.schedule.end_of(epoch))
            else {
                continue;
            };
            let salt = Salt::generate()?;
            drawn.push(Drawn {
                epoch,
                fp: salt.fingerprint(),
            });
            self.held.insert(epoch, Held { salt, starts, ends });
        }
        self.held.retain(|_, h| h.ends + GRACE >= now);
        Ok(drawn)
    }

    /// The announcement of every held salt (zeroized when dropped).
    pub fn announcement(&self, now: Timestamp) -> Zeroizing<Vec<u8>> {
        let refs: Vec<EpochSaltRef<'_>> = self
            .held
            .iter()
            .map(|(epoch, h)| EpochSaltRef {
                epoch: *epoch,
                starts: h.starts,
                ends: h.ends,
                salt: &h.salt,
            })
            .collect();
        SaltAnnouncement::encode_refs(&self.id, now, &refs)
    }

    /// Takes over salts announced by another replica (the leader), so that all replicas
    /// would announce the same salt if they became the authority.
    pub fn adopt(&mut self, announcement: SaltAnnouncement) -> Vec<Drawn> {
        let mut adopted = Vec::new();
        for s in announcement.salts {
            let same = self
                .held
                .get(&s.epoch)
                .is_some_and(|h| h.salt.fingerprint() == s.salt.fingerprint());
            if !same {
                adopted.push(Drawn {
                    epoch: s.epoch,
                    fp: s.salt.fingerprint(),
                });
                self.held.insert(
                    s.epoch,
                    Held {
                        salt: s.salt,
                        starts: s.starts,
                        ends: s.ends,
                    },
                );
            }
        }
        adopted
    }

    /// The fingerprint of the salt for `epoch`, while it is held.
    pub fn fingerprint(&self, epoch: EpochId) -> Option<SaltFingerprint> {
        self.held.get(&epoch).map(|h| h.salt.fingerprint())
    }

    /// The epochs held.
    pub fn epochs(&self) -> Vec<EpochId> {
        self.held.keys().copied().collect()
    }

    /// This authority's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    #[test]
    fn the_current_salt_is_drawn_and_the_next_only_ahead_of_rotation() {
        let mut a = SaltAuthority::new("agg-1", RotationSchedule::default());
        let drawn = a.tick(ts("2026-04-27T12:00:00Z")).expect("entropy");
        assert_eq!(drawn.len(), 1);
        assert_eq!(drawn[0].epoch.to_string(), "2026-04-27");
        assert!(
            a.tick(ts("2026-04-27T12:01:00Z"))
                .expect("entropy")
                .is_empty(),
            "no new salt within the epoch"
        );
        // Rotation is 2026-04-28T02:00Z (04:00 CEST); six hours ahead the next salt appears.
        let drawn = a.tick(ts("2026-04-27T20:00:00Z")).expect("entropy");
        assert_eq!(drawn.len(), 1);
        assert_eq!(drawn[0].epoch.to_string(), "2026-04-28");
        let decoded =
            SaltAnnouncement::decode(&a.announcement(ts("2026-04-27T20:00:00Z"))).expect("decodes");
        assert_eq!(decoded.salts.len(), 2);
        assert_eq!(decoded.authority, "agg-1");
        assert_eq!(decoded.salts[1].starts, ts("2026-04-28T02:00:00Z"));
    }

    #[test]
    fn salts_of_ended_epochs_are_forgotten_after_the_grace() {
        let mut a = SaltAuthority::new("agg-1", RotationSchedule::default());
        a.tick(ts("2026-04-27T23:00:00Z")).expect("entropy");
        assert_eq!(a.epochs().len(), 2);
        a.tick(ts("2026-04-28T02:05:00Z")).expect("entropy");
        assert_eq!(a.epochs().len(), 2, "kept through the grace");
        a.tick(ts("2026-04-28T02:11:00Z")).expect("entropy");
        assert_eq!(
            a.epochs().iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            vec!["2026-04-28"]
        );
    }

    #[test]
    fn a_replica_adopts_the_leaders_salts() {
        let mut leader = SaltAuthority::new("agg-1", RotationSchedule::default());
        let mut follower = SaltAuthority::new("agg-2", RotationSchedule::default());
        let now = ts("2026-04-27T12:00:00Z");
        leader.tick(now).expect("entropy");
        follower.tick(now).expect("entropy");
        let epoch = leader.epochs()[0];
        assert_ne!(leader.fingerprint(epoch), follower.fingerprint(epoch));
        let adopted =
            follower.adopt(SaltAnnouncement::decode(&leader.announcement(now)).expect("decodes"));
        assert_eq!(adopted.len(), 1);
        assert_eq!(leader.fingerprint(epoch), follower.fingerprint(epoch));
    }

    #[test]
    fn debug_output_never_shows_salt_bytes() {
        let mut a = SaltAuthority::new("agg-1", RotationSchedule::default());
        a.tick(ts("2026-04-27T12:00:00Z")).expect("entropy");
        let shown = format!("{a:?}");
        assert!(
            shown.contains("2026-04-27") && !shown.contains("salt:"),
            "{shown}"
        );
    }
}
