//! Which replica is the salt authority: the lowest authority id heard recently leads.
//!
//! Every replica listens to the salt topic. A replica that has heard an announcement from a
//! lower authority id within three announcement intervals follows it (adopts its salts,
//! announces nothing); otherwise it leads. So exactly one salt per epoch reaches the agents,
//! and when the leader dies the next-lowest replica takes over with the salts it adopted. A
//! new replica on an external broker listens [`LISTEN_FIRST`] before it may lead; on the
//! embedded broker there is no peer to wait for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a new replica listens for a leader before it leads.
pub const LISTEN_FIRST: Duration = Duration::from_secs(3);
/// A leader counts as alive for this many of its announcement intervals after it was heard.
const ALIVE_INTERVALS: u32 = 3;

/// What an announcement heard on the salt topic means for this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Our own announcement, echoed by the broker.
    Own,
    /// From a lower authority id: it leads, adopt its salts.
    Leader,
    /// From a higher authority id: it follows us (or will).
    Follower,
}

/// The leadership view of one replica.
#[derive(Debug)]
pub struct Leadership {
    id: String,
    /// How long a peer counts as alive after it was heard.
    alive_for: Duration,
    /// Until when a new replica only listens.
    listen_until: Option<Instant>,
    /// Lower authority ids and when they were last heard.
    leaders: BTreeMap<String, Instant>,
}

impl Leadership {
    /// The view of replica `id`, whose peers announce every `announce_every`; `listen_first`
    /// (replicas share an external broker) makes it listen [`LISTEN_FIRST`] from `now` first.
    pub fn new(id: &str, announce_every: Duration, listen_first: bool, now: Instant) -> Leadership {
        Leadership {
            id: id.to_owned(),
            alive_for: announce_every * ALIVE_INTERVALS,
            listen_until: listen_first.then(|| now + LISTEN_FIRST),
            leaders: BTreeMap::new(),
        }
    }

    /// Notes an announcement by `authority` heard at `now`.
    pub fn heard(&mut self, authority: &str, now: Instant) -> Heard {
        match authority.cmp(self.id.as_str()) {
            std::cmp::Ordering::Equal => Heard::Own,
            std::cmp::Ordering::Greater => Heard::Follower,
            std::cmp::Ordering::Less => {
                self.leaders.insert(authority.to_owned(), now);
                Heard::Leader
            }
        }
    }

    /// Whether this replica is the authority at `now`: done listening, and no lower id heard
    /// within the last three announcement intervals.
    pub fn leads(&self, now: Instant) -> bool {
        let listening = self.listen_until.is_some_and(|until| now < until);
        let follows = self
            .leaders
            .values()
            .any(|seen| now.saturating_duration_since(*seen) < self.alive_for);
        !listening && !follows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(10);

    #[test]
    fn a_lone_replica_on_the_embedded_broker_leads_at_once() {
        let now = Instant::now();
        assert!(Leadership::new("agg-1", EVERY, false, now).leads(now));
    }

    #[test]
    fn a_new_replica_on_an_external_broker_listens_first() {
        let t0 = Instant::now();
        let l = Leadership::new("agg-2", EVERY, true, t0);
        assert!(!l.leads(t0));
        assert!(!l.leads(t0 + LISTEN_FIRST - Duration::from_millis(1)));
        assert!(l.leads(t0 + LISTEN_FIRST));
    }

    #[test]
    fn a_lower_id_leads_until_silent_for_three_intervals() {
        let t0 = Instant::now();
        let mut l = Leadership::new("agg-2", EVERY, false, t0);
        assert_eq!(l.heard("agg-1", t0), Heard::Leader);
        assert!(
            !l.leads(t0 + EVERY * 3 - Duration::from_millis(1)),
            "follows"
        );
        assert!(l.leads(t0 + EVERY * 3), "the leader is gone: takes over");
        assert_eq!(l.heard("agg-1", t0 + EVERY * 4), Heard::Leader);
        assert!(
            !l.leads(t0 + EVERY * 4),
            "the leader is back: follows again"
        );
    }

    #[test]
    fn own_and_higher_ids_change_nothing() {
        let t0 = Instant::now();
        let mut l = Leadership::new("agg-2", EVERY, false, t0);
        assert_eq!(l.heard("agg-2", t0), Heard::Own);
        assert_eq!(l.heard("agg-3", t0), Heard::Follower);
        assert!(l.leads(t0));
    }
}
