//! The embedded broker's permissions: exactly what deploy/mosquitto/crowdflow.acl grants, so
//! the embedded and the external broker hold sensors to the same rules (#14).
//!
//! A sensor (an account named by its sensor id) publishes only its own sketch, status,
//! salt-request and salt-return topics and reads only the salt and salt-recovery topics; the
//! aggregator's account reads sketches, statuses, salt requests and returned salts and
//! publishes salts and recovery requests. Retained messages are refused except on a sensor's
//! own status topic (the protocol retains statuses and nothing else; see
//! [`crowdflow_contract::wire`]).

use crowdflow_contract::wire::{SensorId, TopicKind, Topics};

/// Who an account is to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The aggregator's own account.
    Aggregator,
    /// A sensor's account: the user name is its sensor id.
    Sensor(SensorId),
}

/// The rules for one topic layout and one aggregator account.
#[derive(Debug, Clone)]
pub struct Acl {
    topics: Topics,
    aggregator_account: String,
    aggregator_client_id: String,
}

impl Acl {
    /// Rules under `topics`; `aggregator_account` is the aggregator's user name and
    /// `aggregator_client_id` the client id its persistent session lives under.
    pub fn new(topics: Topics, aggregator_account: &str, aggregator_client_id: &str) -> Acl {
        Acl {
            topics,
            aggregator_account: aggregator_account.to_owned(),
            aggregator_client_id: aggregator_client_id.to_owned(),
        }
    }

    /// The role of an authenticated account, or `None` for a name that is neither the
    /// aggregator's nor a sensor id (such an account may do nothing).
    pub fn role(&self, account: &str) -> Option<Role> {
        if account == self.aggregator_account {
            Some(Role::Aggregator)
        } else {
            SensorId::new(account).ok().map(Role::Sensor)
        }
    }

    /// Whether `role` may connect with `client_id`. The aggregator's client id (and so its
    /// persistent session, with the sketches queued for it) belongs to the aggregator's
    /// account; an agent's or a self-check's client id to the sensor it names. Without this a
    /// sensor could take over the aggregator's session and receive its queued sketches, or
    /// push another sensor off the broker.
    pub fn may_use_client_id(&self, role: &Role, client_id: &str) -> bool {
        // Clients with a password add a suffix keyed by it (for Mosquitto, which cannot bind
        // ids): the id is judged with and without it, and must pass both ways.
        let stripped = crowdflow_contract::mqtt::session_name(client_id);
        [client_id, stripped]
            .iter()
            .all(|id| self.may_use_name(role, id))
            || (stripped != client_id && self.names_only(role, stripped))
    }

    /// The rule for one reading of a client id.
    fn may_use_name(&self, role: &Role, client_id: &str) -> bool {
        let named = ["crowdflow-agent-", "crowdflow-selfcheck-"]
            .iter()
            .find_map(|prefix| client_id.strip_prefix(prefix));
        match role {
            Role::Aggregator => named.is_none(),
            Role::Sensor(id) => {
                client_id != self.aggregator_client_id
                    && named.is_none_or(|named| named == id.as_str())
            }
        }
    }

    /// Whether a suffixed id names exactly `role`'s own session (`crowdflow-agent-ID-…` for
    /// sensor ID), which its unsuffixed reading (naming a sensor `ID-…`) would refuse.
    fn names_only(&self, role: &Role, stripped: &str) -> bool {
        match role {
            Role::Aggregator => stripped == self.aggregator_client_id,
            Role::Sensor(id) => ["crowdflow-agent-", "crowdflow-selfcheck-"]
                .iter()
                .any(|prefix| stripped.strip_prefix(prefix) == Some(id.as_str())),
        }
    }

    /// Whether `role` may publish on `topic` (with the retain flag `retain`); also applied to
    /// the last will at connect.
    pub fn may_publish(&self, role: &Role, topic: &str, retain: bool) -> bool {
        let t = &self.topics;
        match role {
            Role::Aggregator => {
                !retain
                    && (topic == t.salt()
                        || topic == t.salt_recover()
                        || t.classify(topic) == Some(TopicKind::SaltAnswer))
            }
            Role::Sensor(id) => {
                let status = t.status(id);
                if retain {
                    return topic == status;
                }
                topic == t.sketch(id)
                    || topic == status
                    || topic == t.salt_request(id)
                    || topic == t.salt_return(id)
            }
        }
    }

    /// Whether `role` may subscribe to `filter`: only when every topic the filter can match
    /// is one the role may read (a sensor asking for `#` is refused outright).
    pub fn may_subscribe(&self, role: &Role, filter: &str) -> bool {
        let t = &self.topics;
        let p = t.prefix();
        let mut readable = vec![t.salt(), t.salt_recover()];
        if let Role::Sensor(id) = role {
            readable.push(t.salt_answer(id));
        }
        if *role == Role::Aggregator {
            readable.extend([
                format!("{p}/sketch/#"),
                format!("{p}/status/#"),
                format!("{p}/salt/request/#"),
                format!("{p}/salt/return/#"),
            ]);
        }
        readable.iter().any(|allowed| covers(allowed, filter))
    }
}

/// Whether every topic matched by `filter` is matched by `allowed` (both MQTT topic filters).
fn covers(allowed: &str, filter: &str) -> bool {
    let mut wanted = filter.split('/');
    for level in allowed.split('/') {
        match (level, wanted.next()) {
            ("#", _) => return true,
            (_, None | Some("#")) => return false,
            ("+", Some(_)) => {}
            (literal, Some(w)) if literal == w => {}
            _ => return false,
        }
    }
    wanted.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl() -> Acl {
        Acl::new(
            Topics::default(),
            "crowdflow-aggregator",
            "crowdflow-aggregator-1",
        )
    }

    fn sensor(id: &str) -> Role {
        Role::Sensor(SensorId::new(id).expect("valid"))
    }

    #[test]
    fn a_sensor_publishes_its_own_topics_only() {
        let acl = acl();
        let me = sensor("gate-1");
        for topic in [
            "crowdflow/v1/sketch/gate-1",
            "crowdflow/v1/status/gate-1",
            "crowdflow/v1/salt/request/gate-1",
            "crowdflow/v1/salt/return/gate-1",
        ] {
            assert!(acl.may_publish(&me, topic, false), "{topic}");
        }
        for topic in [
            "crowdflow/v1/sketch/gate-2",
            "crowdflow/v1/status/gate-2",
            "crowdflow/v1/salt",
            "crowdflow/v1/salt/recover",
            "crowdflow/v1/salt/return/gate-2",
            "crowdflow/v1/salt/answer/gate-1",
            "crowdflow/v1/sketch/gate-1/x",
            "flood/nobody-listens",
        ] {
            assert!(!acl.may_publish(&me, topic, false), "{topic}");
        }
    }

    #[test]
    fn only_a_sensors_own_status_may_be_retained() {
        let acl = acl();
        let me = sensor("gate-1");
        assert!(acl.may_publish(&me, "crowdflow/v1/status/gate-1", true));
        assert!(!acl.may_publish(&me, "crowdflow/v1/sketch/gate-1", true));
        assert!(!acl.may_publish(&Role::Aggregator, "crowdflow/v1/salt", true));
    }

    #[test]
    fn the_aggregator_announces_and_recovers_salts_only() {
        let acl = acl();
        assert!(acl.may_publish(&Role::Aggregator, "crowdflow/v1/salt", false));
        assert!(acl.may_publish(&Role::Aggregator, "crowdflow/v1/salt/recover", false));
        assert!(acl.may_publish(&Role::Aggregator, "crowdflow/v1/salt/answer/gate-1", false));
        assert!(!acl.may_publish(&Role::Aggregator, "crowdflow/v1/sketch/gate-1", false));
    }

    #[test]
    fn subscriptions_are_refused_unless_wholly_readable() {
        let acl = acl();
        let me = sensor("gate-1");
        for ok in [
            "crowdflow/v1/salt",
            "crowdflow/v1/salt/recover",
            "crowdflow/v1/salt/answer/gate-1",
        ] {
            assert!(acl.may_subscribe(&me, ok), "{ok}");
        }
        for refused in [
            "#",
            "crowdflow/#",
            "crowdflow/v1/+",
            "crowdflow/v1/sketch/+",
            "crowdflow/v1/status/gate-2",
            "crowdflow/v1/salt/answer/gate-2",
            "crowdflow/v1/salt/answer/+",
            "crowdflow/v1/salt/#",
            "crowdflow/v1/salt/+",
            "$share/g/crowdflow/v1/salt",
        ] {
            assert!(!acl.may_subscribe(&me, refused), "{refused}");
        }
        let agg = Role::Aggregator;
        for ok in [
            "crowdflow/v1/sketch/+",
            "crowdflow/v1/sketch/#",
            "crowdflow/v1/status/gate-1",
            "crowdflow/v1/salt",
            "crowdflow/v1/salt/request/+",
            "crowdflow/v1/salt/return/+",
        ] {
            assert!(acl.may_subscribe(&agg, ok), "{ok}");
        }
        for refused in [
            "#",
            "crowdflow/v1/#",
            "crowdflow/v1/salt/#",
            "other/sketch/+",
        ] {
            assert!(!acl.may_subscribe(&agg, refused), "{refused}");
        }
    }

    #[test]
    fn client_ids_are_bound_to_their_accounts() {
        let acl = acl();
        let me = sensor("gate-1");
        assert!(acl.may_use_client_id(&me, "crowdflow-agent-gate-1"));
        assert!(acl.may_use_client_id(&me, "crowdflow-agent-gate-1-0123456789abcdef"));
        assert!(!acl.may_use_client_id(&me, "crowdflow-agent-gate-2-0123456789abcdef"));
        assert!(!acl.may_use_client_id(&me, "crowdflow-aggregator-1-0123456789abcdef"));
        assert!(acl.may_use_client_id(&me, "crowdflow-selfcheck-gate-1"));
        assert!(acl.may_use_client_id(&me, "anything-else"));
        assert!(!acl.may_use_client_id(&me, "crowdflow-agent-gate-2"));
        assert!(!acl.may_use_client_id(&me, "crowdflow-aggregator-1"));
        assert!(acl.may_use_client_id(&Role::Aggregator, "crowdflow-aggregator-1"));
        assert!(!acl.may_use_client_id(&Role::Aggregator, "crowdflow-agent-gate-1"));
    }

    #[test]
    fn accounts_are_the_aggregator_or_sensor_ids() {
        let acl = acl();
        assert_eq!(acl.role("crowdflow-aggregator"), Some(Role::Aggregator));
        assert_eq!(acl.role("gate-1"), Some(sensor("gate-1")));
        assert_eq!(acl.role("not a sensor/id"), None);
    }
}
