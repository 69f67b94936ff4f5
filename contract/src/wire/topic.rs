use super::{SensorId, WireError};

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "crowdflow/v1";

/// What a topic under the prefix carries (one variant per row of the table in [`super`]).
///
/// The sensor level of `Sketch`, `Status`, `SaltRequest` and `SaltReturn` topics is not
/// checked here: [`Topics::sensor_of`] does that, so a message under a malformed sensor
/// level still reaches its handler and is refused there with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// `{prefix}/sketch/{sensor_id}`: a sensor's sketch message.
    Sketch,
    /// `{prefix}/status/{sensor_id}`: a sensor's status.
    Status,
    /// `{prefix}/salt`: the authority's salt announcement.
    Salt,
    /// `{prefix}/salt/request/{sensor_id}`: a sensor asking for the salt.
    SaltRequest,
    /// `{prefix}/salt/recover`: a restarted authority asking for a salt it lost.
    SaltRecover,
    /// `{prefix}/salt/return/{sensor_id}`: a sensor returning a salt it was asked for.
    SaltReturn,
    /// `{prefix}/salt/answer/{sensor_id}`: the aggregator telling a sensor that asked for the
    /// salt whether it knows it ([`super::SaltAnswer`]).
    SaltAnswer,
}

/// The levels under the prefix that name a sensor, by kind.
const SENSOR_LEVELS: [(&str, TopicKind); 5] = [
    ("sketch/", TopicKind::Sketch),
    ("status/", TopicKind::Status),
    ("salt/request/", TopicKind::SaltRequest),
    ("salt/return/", TopicKind::SaltReturn),
    ("salt/answer/", TopicKind::SaltAnswer),
];

/// The topic layout under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Topics {
    /// A layout under `prefix`, which must be a plain topic path (no wildcards, no `$` start,
    /// no empty levels).
    pub fn new(prefix: &str) -> Result<Topics, WireError> {
        let ok = !prefix.is_empty()
            && !prefix.starts_with('$')
            && !prefix.contains(['+', '#', '\0'])
            && prefix.split('/').all(|level| !level.is_empty());
        if ok {
            Ok(Topics {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(WireError::Topic(
                "prefix must be non-empty levels without wildcards or a leading '$'",
            ))
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where a sensor publishes its sketches.
    pub fn sketch(&self, sensor: &SensorId) -> String {
        format!("{}/sketch/{sensor}", self.prefix)
    }

    /// Filter for every sensor's sketches.
    pub fn sketch_filter(&self) -> String {
        format!("{}/sketch/+", self.prefix)
    }

    /// Where a sensor publishes its status (retained, with the last will).
    pub fn status(&self, sensor: &SensorId) -> String {
        format!("{}/status/{sensor}", self.prefix)
    }

    /// Filter for every sensor's status.
    pub fn status_filter(&self) -> String {
        format!("{}/status/+", self.prefix)
    }

    /// Where the salt authority announces salts.
    pub fn salt(&self) -> String {
        format!("{}/salt", self.prefix)
    }

    /// Where a sensor asks for the salt.
    pub fn salt_request(&self, sensor: &SensorId) -> String {
        format!("{}/salt/request/{sensor}", self.prefix)
    }

    /// Where a restarted authority asks agents for a salt it lost.
    pub fn salt_recover(&self) -> String {
        format!("{}/salt/recover", self.prefix)
    }

    /// Where a sensor sends back a salt the authority asked for (readable by the aggregator
    /// only, in the shipped Mosquitto ACL).
    pub fn salt_return(&self, sensor: &SensorId) -> String {
        format!("{}/salt/return/{sensor}", self.prefix)
    }

    /// Where the aggregator answers a sensor's salt request with whether it knows the sensor
    /// (readable by that sensor only, in both shipped ACLs).
    pub fn salt_answer(&self, sensor: &SensorId) -> String {
        format!("{}/salt/answer/{sensor}", self.prefix)
    }

    /// Filter for every sensor's returned salts.
    pub fn salt_return_filter(&self) -> String {
        format!("{}/salt/return/+", self.prefix)
    }

    /// Filter for every sensor's salt requests.
    pub fn salt_request_filter(&self) -> String {
        format!("{}/salt/request/+", self.prefix)
    }

    /// What `topic` carries, or `None` for a topic outside this layout. The one place that
    /// reads a topic's levels: handlers route on this, never on prefix strings.
    pub fn classify(&self, topic: &str) -> Option<TopicKind> {
        self.levels(topic).and_then(split).map(|(kind, _)| kind)
    }

    /// The sensor id named by a sketch, status or salt-request topic.
    pub fn sensor_of(&self, topic: &str) -> Result<SensorId, WireError> {
        let rest = self
            .levels(topic)
            .ok_or(WireError::Topic("not under the configured prefix"))?;
        let Some((TopicKind::Sketch | TopicKind::Status | TopicKind::SaltRequest, id)) =
            split(rest)
        else {
            return Err(WireError::Topic(
                "not a sketch, status or salt request topic",
            ));
        };
        SensorId::new(id).map_err(|_| WireError::Topic("sensor id level is not a valid sensor id"))
    }

    /// The levels of `topic` after the prefix and its `/`.
    fn levels<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
    }
}

/// The kind named by the levels after the prefix, and the rest after the kind's own levels
/// (the sensor level, unchecked; empty for `salt` and `salt/recover`).
fn split(levels: &str) -> Option<(TopicKind, &str)> {
    match levels {
        "salt" => Some((TopicKind::Salt, "")),
        "salt/recover" => Some((TopicKind::SaltRecover, "")),
        _ => SENSOR_LEVELS
            .iter()
            .find_map(|(level, kind)| levels.strip_prefix(level).map(|id| (*kind, id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_v1_layout() {
        let t = Topics::default();
        let s = SensorId::new("neude-01").expect("valid");
        assert_eq!(t.sketch(&s), "crowdflow/v1/sketch/neude-01");
        assert_eq!(t.status(&s), "crowdflow/v1/status/neude-01");
        assert_eq!(t.salt(), "crowdflow/v1/salt");
        assert_eq!(t.salt_request(&s), "crowdflow/v1/salt/request/neude-01");
        assert_eq!(t.sketch_filter(), "crowdflow/v1/sketch/+");
    }

    #[test]
    fn the_sensor_is_read_back_from_its_topics() {
        let t = Topics::new("city/cf").expect("valid");
        let s = SensorId::new("a1").expect("valid");
        for topic in [t.sketch(&s), t.status(&s), t.salt_request(&s)] {
            assert_eq!(t.sensor_of(&topic).expect("parses"), s);
        }
        for bad in [
            "city/cf/sketch/",
            "city/cf/sketch/a/b",
            "other/sketch/a1",
            "city/cf/salt",
            "city/cfx/sketch/a1",
        ] {
            assert!(t.sensor_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_topic_of_the_layout_is_classified_by_its_levels() {
        let t = Topics::new("city/cf").expect("valid");
        let s = SensorId::new("a1").expect("valid");
        for (topic, kind) in [
            (t.sketch(&s), TopicKind::Sketch),
            (t.status(&s), TopicKind::Status),
            (t.salt(), TopicKind::Salt),
            (t.salt_request(&s), TopicKind::SaltRequest),
            (t.salt_recover(), TopicKind::SaltRecover),
            (t.salt_return(&s), TopicKind::SaltReturn),
            (t.salt_answer(&s), TopicKind::SaltAnswer),
            // The sensor level is the handler's to check (and to refuse with a reason).
            ("city/cf/sketch/a/b".to_owned(), TopicKind::Sketch),
            ("city/cf/sketch/".to_owned(), TopicKind::Sketch),
        ] {
            assert_eq!(t.classify(&topic), Some(kind), "{topic}");
        }
        for other in [
            "city/cf",
            "city/cf/",
            "city/cf/salt/",
            "city/cf/salts",
            "city/cf/salt/recover/x",
            "city/cf/sketch",
            "city/cf/other/a1",
            "city/cfx/sketch/a1",
            "other/salt",
        ] {
            assert_eq!(t.classify(other), None, "{other}");
        }
    }

    #[test]
    fn prefixes_with_wildcards_are_refused() {
        for bad in ["", "a/+", "a/#", "$SYS", "a//b", "a/"] {
            assert!(Topics::new(bad).is_err(), "{bad}");
        }
    }
}
