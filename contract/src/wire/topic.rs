use super::{SensorId, WireError};

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "crowdflow/v1";

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

    /// Filter for every sensor's returned salts.
    pub fn salt_return_filter(&self) -> String {
        format!("{}/salt/return/+", self.prefix)
    }

    /// Filter for every sensor's salt requests.
    pub fn salt_request_filter(&self) -> String {
        format!("{}/salt/request/+", self.prefix)
    }

    /// The sensor id named by a sketch, status or salt-request topic.
    pub fn sensor_of(&self, topic: &str) -> Result<SensorId, WireError> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(WireError::Topic("not under the configured prefix"))?;
        let id = rest
            .strip_prefix("sketch/")
            .or_else(|| rest.strip_prefix("status/"))
            .or_else(|| rest.strip_prefix("salt/request/"))
            .ok_or(WireError::Topic(
                "not a sketch, status or salt request topic",
            ))?;
        SensorId::new(id).map_err(|_| WireError::Topic("sensor id level is not a valid sensor id"))
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
    fn prefixes_with_wildcards_are_refused() {
        for bad in ["", "a/+", "a/#", "$SYS", "a//b", "a/"] {
            assert!(Topics::new(bad).is_err(), "{bad}");
        }
    }
}
