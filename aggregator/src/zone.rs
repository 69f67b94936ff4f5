//! Zone identity: a zone is a named area whose sensors are counted together, not a sensor,
//! so its id is a type of its own. Zones exist only in the aggregator (agents and the wire
//! name sensors; the aggregator's config maps each sensor to its zone).

use std::fmt;
use std::str::FromStr;

use crowdflow_contract::wire::SensorId;
use serde::{Serialize, Serializer};

/// A zone id that breaks the rules: 1 to 64 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a zone id is 1 to 64 of A-Z a-z 0-9 _ -")]
pub struct InvalidZoneId;

/// A zone's id: 1 to 64 of `[A-Za-z0-9_-]` (the rule of sensor ids), so it is safe in paths,
/// SQL, logs and metric labels.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneId(String);

impl ZoneId {
    /// Validates a zone id.
    pub fn new(id: &str) -> Result<ZoneId, InvalidZoneId> {
        SensorId::new(id).map_err(|_| InvalidZoneId)?;
        Ok(ZoneId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ZoneId({})", self.0)
    }
}

impl FromStr for ZoneId {
    type Err = InvalidZoneId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ZoneId::new(s)
    }
}

impl Serialize for ZoneId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_follow_the_sensor_id_rule() {
        for ok in ["neude", "utrecht-neude_01", &"x".repeat(64)] {
            assert_eq!(ZoneId::new(ok).expect("valid").as_str(), ok);
        }
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert_eq!(ZoneId::new(bad), Err(InvalidZoneId), "{bad}");
        }
    }
}
