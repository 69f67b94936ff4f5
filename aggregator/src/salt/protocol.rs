//! The salt protocol of one replica: the authority, leadership and recovery together, fed
//! with what arrives on the salt topics and with clock ticks, answering with [`Action`]s for
//! the service to carry out (publish, record). No broker, store or clock inside.

use std::time::{Duration, Instant};

use crowdflow_contract::authority_key::{SigningKey, TrustedKeys};
use crowdflow_contract::salt::SaltError;
use crowdflow_contract::wire::{SaltAnnouncement, SaltAnswer, SaltRecovery};
use jiff::Timestamp;
use zeroize::Zeroizing;

use super::authority::{Drawn, SaltAuthority};
use super::leadership::{Heard, Leadership};
use super::recovery::{Recovery, Step};

/// Housekeeping (drawing, announcing, asking) runs at most this often unless an
/// announcement is due.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// Announcements asked for (salt requests, a new salt) are sent at most this often.
const MIN_ANNOUNCE_GAP: Duration = Duration::from_secs(1);

/// What the service does on the protocol's behalf, in the order given.
pub enum Action {
    /// A salt is in use: accept sketches under its fingerprint and record the fingerprint.
    Record(Drawn),
    /// Publish this announcement on the salt topic (QoS 0, never retained: no broker stores
    /// a salt), then call [`SaltProtocol::announced`] if it went out.
    Announce(Zeroizing<Vec<u8>>),
    /// Publish `payload` (the request, signed) on the `salt/recover` topic (QoS 0).
    AskRecovery {
        /// What is asked.
        request: SaltRecovery,
        /// The signed request.
        payload: Vec<u8>,
    },
    /// Whether this replica is the authority now (for the leader metric).
    Lead(bool),
    /// A salt message was refused, for this reason (counted in full, logged a few lines a
    /// minute by the caller: anyone the broker lets publish there can cause it at will).
    Refused {
        /// The metric label.
        reason: &'static str,
        /// What was wrong, for the log.
        why: String,
    },
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Record(d) => f.debug_tuple("Record").field(d).finish(),
            // The payload holds salts: never shown.
            Action::Announce(_) => f.write_str("Announce(..)"),
            Action::AskRecovery { request, .. } => {
                f.debug_tuple("AskRecovery").field(request).finish()
            }
            Action::Lead(leads) => f.debug_tuple("Lead").field(leads).finish(),
            Action::Refused { reason, .. } => f.debug_tuple("Refused").field(reason).finish(),
        }
    }
}

/// How a replica signs what it announces and whose announcements it believes.
#[derive(Debug)]
pub struct Signing {
    /// This replica's key: every announcement and recovery request it sends is signed.
    pub key: SigningKey,
    /// The other replicas' public keys (`salt.trusted_keys`); its own is trusted too.
    pub trusted: TrustedKeys,
}

/// One replica's part in the salt protocol.
#[derive(Debug)]
pub struct SaltProtocol {
    authority: SaltAuthority,
    key: SigningKey,
    /// Keys whose announcements this replica adopts: its own and its peers'.
    trusted: TrustedKeys,
    leadership: Leadership,
    /// A lost salt being asked back, until it is back or the wait is over.
    recovery: Option<Recovery>,
    announce_every: Duration,
    /// An announcement was asked for (a salt request, a new or recovered salt).
    announce_due: bool,
    last_announce: Option<Instant>,
    last_housekeeping: Option<Instant>,
}

impl SaltProtocol {
    /// The protocol of `authority`, announcing every `announce_every` while it leads, first
    /// waiting for `recovery` when there is one.
    pub fn new(
        authority: SaltAuthority,
        leadership: Leadership,
        recovery: Option<Recovery>,
        announce_every: Duration,
        signing: Signing,
    ) -> SaltProtocol {
        let trusted = signing.trusted.with(signing.key.public_key());
        SaltProtocol {
            authority,
            key: signing.key,
            trusted,
            leadership,
            recovery,
            announce_every,
            announce_due: true,
            last_announce: None,
            last_housekeeping: None,
        }
    }

    /// `answer` signed with this replica's key, as announcements are.
    pub fn sign_answer(&self, answer: &SaltAnswer) -> Vec<u8> {
        answer.sign(&self.key)
    }

    /// An announcement heard on the salt topic at `now`: a lower id's salts are adopted,
    /// when a trusted key signed them. A retained one is ignored: the authority never
    /// retains, so a retained announcement was planted (or is stale).
    pub fn on_announcement(&mut self, payload: &[u8], retained: bool, now: Instant) -> Vec<Action> {
        if retained {
            return vec![Action::Refused {
                reason: "retained",
                why: "a retained salt announcement (salts are never retained)".into(),
            }];
        }
        let announcement = match SaltAnnouncement::decode_signed(payload, &self.trusted) {
            Ok((announcement, _)) => announcement,
            Err(e) => {
                return vec![Action::Refused {
                    reason: e.reason(),
                    why: format!("a salt announcement: {e}"),
                }];
            }
        };
        match self.leadership.heard(&announcement.authority, now) {
            Heard::Leader => records(self.authority.adopt(announcement)),
            Heard::Own | Heard::Follower => Vec::new(),
        }
    }

    /// A sensor asked for the salt: announce soon.
    pub fn on_request(&mut self) {
        self.announce_due = true;
    }

    /// A salt an agent returned on `topic`: taken back if it is one a recovery waits for (by
    /// epoch and fingerprint); the recovery ends when every epoch it asked for is held.
    pub fn on_return(&mut self, topic: &str, payload: &[u8]) -> Vec<Action> {
        let Some(recovery) = &self.recovery else {
            return Vec::new(); // not asked, or already recovered
        };
        let epochs = recovery.epochs();
        let Ok(returned) = SaltAnnouncement::decode(payload) else {
            tracing::warn!(topic, "ignoring an undecodable returned salt");
            return Vec::new();
        };
        let Some(returned) = recovery.take_back(returned) else {
            tracing::warn!(
                topic,
                "ignoring a returned salt whose fingerprint was never recorded for its epoch"
            );
            return Vec::new();
        };
        let adopted = self.authority.adopt(returned);
        for d in &adopted {
            tracing::info!(epoch = %d.epoch, topic, "salt recovered from an agent: counting goes on under it");
        }
        if epochs
            .iter()
            .all(|e| self.authority.fingerprint(*e).is_some())
        {
            self.recovery = None;
        }
        self.announce_due = true;
        records(adopted)
    }

    /// Housekeeping at `now` (`at` on the wall clock): leadership, then, while leading, the
    /// recovery's requests or the salts drawn and the announcement due.
    pub fn tick(&mut self, now: Instant, at: Timestamp) -> Result<Vec<Action>, SaltError> {
        let recent = |t: Option<Instant>, within: Duration| {
            t.is_some_and(|t| now.saturating_duration_since(t) < within)
        };
        if recent(self.last_housekeeping, HOUSEKEEPING_EVERY) && !self.announce_due {
            return Ok(Vec::new());
        }
        self.last_housekeeping = Some(now);
        let leads = self.leadership.leads(now);
        let mut actions = vec![Action::Lead(leads)];
        if !leads {
            return Ok(actions);
        }
        if let Some(recovery) = &mut self.recovery {
            let authority = &self.authority;
            match recovery.step(|e| authority.fingerprint(e).is_some(), now, at) {
                Step::Wait(requests) => {
                    let key = &self.key;
                    actions.extend(requests.into_iter().map(|request| Action::AskRecovery {
                        payload: request.sign(key),
                        request,
                    }));
                    // What is back already (the running epoch's salt, say) is announced
                    // while the rest is awaited; nothing is drawn until the wait is over.
                    if self.announce_due
                        && !self.authority.epochs().is_empty()
                        && !recent(self.last_announce, MIN_ANNOUNCE_GAP)
                    {
                        actions.push(self.announcement(at));
                    }
                    return Ok(actions);
                }
                Step::Over => self.recovery = None,
            }
        }
        let drawn = self.authority.tick(at)?;
        if !drawn.is_empty() {
            self.announce_due = true;
        }
        actions.extend(records(drawn));
        let stale = !recent(self.last_announce, self.announce_every);
        if (self.announce_due && !recent(self.last_announce, MIN_ANNOUNCE_GAP)) || stale {
            actions.push(self.announcement(at));
        }
        Ok(actions)
    }

    /// The signed announcement of every held salt.
    fn announcement(&self, at: Timestamp) -> Action {
        let body = self.authority.announcement(at);
        Action::Announce(SaltAnnouncement::sign_encoded(&body, &self.key))
    }

    /// The announcement of the last [`Action::Announce`] went out at `now`.
    pub fn announced(&mut self, now: Instant) {
        self.announce_due = false;
        self.last_announce = Some(now);
    }
}

fn records(drawn: Vec<Drawn>) -> Vec<Action> {
    drawn.into_iter().map(Action::Record).collect()
}

#[cfg(test)]
mod tests {
    use crowdflow_contract::epoch::{EpochId, RotationSchedule};

    use super::*;

    const EVERY: Duration = Duration::from_secs(10);

    fn at() -> Timestamp {
        "2026-04-27T12:00:00Z".parse().expect("ts")
    }

    /// Two replicas' keys, each trusting the other's (as `salt.trusted_keys` says).
    fn keys() -> &'static (SigningKey, SigningKey) {
        static KEYS: std::sync::OnceLock<(SigningKey, SigningKey)> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            (
                SigningKey::generate().expect("entropy"),
                SigningKey::generate().expect("entropy"),
            )
        })
    }

    fn signing(id: &str) -> Signing {
        let (one, two) = keys();
        let (own, peer) = if id == "agg-2" {
            (two, one)
        } else {
            (one, two)
        };
        Signing {
            key: SigningKey::from_pem(&own.to_pem()).expect("pem"),
            trusted: TrustedKeys::new(vec![peer.public_key()]),
        }
    }

    fn trusted() -> TrustedKeys {
        let (one, two) = keys();
        TrustedKeys::new(vec![one.public_key(), two.public_key()])
    }

    fn protocol(id: &str, recovery: Option<Recovery>, now: Instant) -> SaltProtocol {
        SaltProtocol::new(
            SaltAuthority::new(id, RotationSchedule::default()),
            Leadership::new(id, EVERY, false, now),
            recovery,
            EVERY,
            signing(id),
        )
    }

    /// What the service did for some actions (every publish succeeding).
    #[derive(Debug, Default)]
    struct Done {
        recorded: Vec<Drawn>,
        announced: Option<SaltAnnouncement>,
        asked: Vec<SaltRecovery>,
        leads: Option<bool>,
    }

    fn carry_out(p: &mut SaltProtocol, actions: Vec<Action>, now: Instant) -> Done {
        let mut done = Done::default();
        for action in actions {
            match action {
                Action::Record(d) => done.recorded.push(d),
                Action::Announce(payload) => {
                    let (announced, _) =
                        SaltAnnouncement::decode_signed(&payload, &trusted()).expect("signed");
                    done.announced = Some(announced);
                    p.announced(now);
                }
                Action::AskRecovery { request, payload } => {
                    let now = request.issued_at;
                    assert_eq!(
                        SaltRecovery::decode_signed(&payload, &trusted(), now),
                        Ok(request),
                        "requests go out signed"
                    );
                    done.asked.push(request);
                }
                Action::Lead(l) => done.leads = Some(l),
                Action::Refused { .. } => {}
            }
        }
        done
    }

    /// Ticks at `now` and carries out what the tick asks.
    fn tick(p: &mut SaltProtocol, now: Instant) -> Done {
        let actions = p.tick(now, at()).expect("entropy");
        carry_out(p, actions, now)
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_lone_leader_draws_records_and_announces_on_schedule_and_on_request() {
        let t0 = Instant::now();
        let mut p = protocol("agg-1", None, t0);
        let first = tick(&mut p, t0);
        assert_eq!(first.leads, Some(true));
        assert_eq!(first.recorded.len(), 1);
        let announced = first.announced.expect("announced at once");
        assert_eq!(announced.salts[0].salt.fingerprint(), first.recorded[0].fp);
        let half = t0 + Duration::from_millis(500);
        assert!(
            p.tick(half, at()).expect("entropy").is_empty(),
            "once a second"
        );
        let quiet = tick(&mut p, secs(t0, 2));
        assert!(
            quiet.recorded.is_empty() && quiet.announced.is_none(),
            "nothing due"
        );
        p.on_request();
        let answer = tick(&mut p, secs(t0, 3));
        assert!(answer.announced.is_some(), "a request is answered");
        let repeat = tick(&mut p, secs(t0, 3) + EVERY);
        assert!(repeat.announced.is_some(), "announced every interval");
    }

    #[test]
    fn a_follower_adopts_the_leaders_salts_and_announces_nothing() {
        let t0 = Instant::now();
        let mut leader = protocol("agg-1", None, t0);
        let mut follower = protocol("agg-2", None, t0);
        let Some(Action::Announce(payload)) = leader
            .tick(t0, at())
            .expect("entropy")
            .into_iter()
            .find(|a| matches!(a, Action::Announce(_)))
        else {
            panic!("the leader announces");
        };
        assert!(
            matches!(
                follower.on_announcement(&payload, true, t0).as_slice(),
                [Action::Refused {
                    reason: "retained",
                    ..
                }]
            ),
            "a retained announcement is refused"
        );
        let heard = follower.on_announcement(&payload, false, t0);
        let adopted = carry_out(&mut follower, heard, t0);
        assert_eq!(adopted.recorded.len(), 1, "the leader's salt is recorded");
        let follows = tick(&mut follower, t0);
        assert_eq!(follows.leads, Some(false));
        assert!(follows.recorded.is_empty() && follows.announced.is_none());
        assert!(
            leader.on_announcement(&payload, false, t0).is_empty(),
            "its own announcement changes nothing"
        );
    }

    #[test]
    fn an_announcement_not_signed_by_a_trusted_key_is_ignored_whatever_its_id() {
        let t0 = Instant::now();
        let mut p = protocol("agg-2", None, t0);
        let mut planted = SaltAuthority::new("aaa-lowest", RotationSchedule::default());
        planted.tick(at()).expect("entropy");
        let intruder = SigningKey::generate().expect("entropy");
        let signed = SaltAnnouncement::sign_encoded(&planted.announcement(at()), &intruder);
        let refused = |actions: Vec<Action>| matches!(actions.as_slice(), [Action::Refused { .. }]);
        assert!(
            refused(p.on_announcement(&signed, false, t0)),
            "untrusted key"
        );
        let unsigned = planted.announcement(at());
        assert!(refused(p.on_announcement(&unsigned, false, t0)), "unsigned");
        let own = tick(&mut p, t0);
        assert_eq!(
            own.leads,
            Some(true),
            "a planted low id takes no leadership"
        );
        let announced = own.announced.expect("announces its own salt");
        assert_ne!(
            announced.salts[0].salt.fingerprint(),
            planted.fingerprint(announced.salts[0].epoch).expect("held"),
            "not the planted salt"
        );
    }

    /// `lost`'s salt for the epoch of [`at`], and a protocol restarted with its fingerprint
    /// recorded, waiting 30 s for it.
    fn restarted(t0: Instant) -> (SaltAuthority, EpochId, SaltProtocol) {
        let mut lost = SaltAuthority::new("agg-1", RotationSchedule::default());
        lost.tick(at()).expect("entropy");
        let epoch = lost.epochs()[0];
        let wanted = lost
            .fingerprint(epoch)
            .map(|fp| (epoch, fp))
            .into_iter()
            .collect();
        let recovery = Recovery::start(wanted, Duration::from_secs(30), t0);
        (lost, epoch, protocol("agg-1", recovery, t0))
    }

    #[test]
    fn a_restarted_authority_asks_for_its_salt_and_announces_the_returned_one() {
        let t0 = Instant::now();
        let (lost, epoch, mut p) = restarted(t0);
        let asking = tick(&mut p, t0);
        assert!(
            asking.recorded.is_empty() && asking.announced.is_none(),
            "nothing drawn"
        );
        assert_eq!(
            asking.asked.iter().map(|r| r.fp).collect::<Vec<_>>(),
            lost.fingerprint(epoch).into_iter().collect::<Vec<_>>()
        );
        let back = p.on_return("crowdflow/v1/salt/return/s1", &lost.announcement(at()));
        let back = carry_out(&mut p, back, t0);
        assert_eq!(
            back.recorded.iter().map(|d| Some(d.fp)).collect::<Vec<_>>(),
            vec![lost.fingerprint(epoch)]
        );
        let after = tick(&mut p, secs(t0, 1));
        assert!(
            after.recorded.is_empty() && after.asked.is_empty(),
            "no new salt, no asking"
        );
        let announced = after.announced.expect("the recovered salt is announced");
        assert_eq!(
            Some(announced.salts[0].salt.fingerprint()),
            lost.fingerprint(epoch)
        );
    }

    #[test]
    fn without_an_answer_a_new_salt_is_drawn_after_the_wait() {
        let t0 = Instant::now();
        let (lost, epoch, mut p) = restarted(t0);
        let waiting = tick(&mut p, secs(t0, 29));
        assert!(
            waiting.recorded.is_empty() && !waiting.asked.is_empty(),
            "still asking"
        );
        let drawn = tick(&mut p, secs(t0, 30));
        assert_eq!(drawn.recorded.len(), 1);
        assert_ne!(
            Some(drawn.recorded[0].fp),
            lost.fingerprint(epoch),
            "a new salt"
        );
        assert!(drawn.announced.is_some());
        let late = p.on_return("t", &lost.announcement(at()));
        assert!(late.is_empty(), "an answer after the wait is ignored");
    }

    #[test]
    fn restarted_before_a_rotation_it_takes_back_the_next_epochs_salt_too() {
        // Six hours before the 02:00 UTC rotation both salts are held and recorded.
        let evening: Timestamp = "2026-04-27T21:00:00Z".parse().expect("ts");
        let mut lost = SaltAuthority::new("agg-1", RotationSchedule::default());
        lost.tick(evening).expect("entropy");
        let epochs = lost.epochs();
        assert_eq!(epochs.len(), 2, "the running and the next epoch");
        let fp = |e: EpochId| lost.fingerprint(e).expect("held");
        let wanted = epochs.iter().map(|e| (*e, fp(*e))).collect();
        let t0 = Instant::now();
        let mut p = protocol(
            "agg-1",
            Recovery::start(wanted, Duration::from_secs(30), t0),
            t0,
        );
        let carry = |p: &mut SaltProtocol, now: Instant| {
            let actions = p.tick(now, evening).expect("entropy");
            carry_out(p, actions, now)
        };
        let asking = carry(&mut p, t0);
        assert_eq!(asking.asked.len(), 2, "both epochs asked for");
        // An agent that answers for the running epoch only.
        let mut running = SaltAnnouncement::decode(&lost.announcement(evening)).expect("decodes");
        running.salts.retain(|s| s.epoch == epochs[0]);
        let back = p.on_return("crowdflow/v1/salt/return/s1", &running.encode());
        assert_eq!(carry_out(&mut p, back, t0).recorded.len(), 1);
        let partial = carry(&mut p, secs(t0, 2));
        assert!(
            partial.recorded.is_empty(),
            "no next salt drawn while waiting"
        );
        assert_eq!(
            partial.asked.iter().map(|r| r.epoch).collect::<Vec<_>>(),
            vec![epochs[1]],
            "still asking for the next epoch's"
        );
        let announced = partial
            .announced
            .expect("the recovered salt is announced meanwhile");
        assert_eq!(announced.salts.len(), 1);
        let back = p.on_return("crowdflow/v1/salt/return/s1", &lost.announcement(evening));
        assert_eq!(carry_out(&mut p, back, secs(t0, 3)).recorded.len(), 1);
        let after = carry(&mut p, secs(t0, 4));
        assert!(after.recorded.is_empty() && after.asked.is_empty());
        let fps: Vec<_> = after
            .announced
            .expect("announced")
            .salts
            .iter()
            .map(|s| s.salt.fingerprint())
            .collect();
        assert_eq!(
            fps,
            vec![fp(epochs[0]), fp(epochs[1])],
            "the same two salts as before"
        );
    }
}
