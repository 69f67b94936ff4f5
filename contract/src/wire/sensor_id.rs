use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::WireError;

/// Longest sensor id accepted.
const MAX_LEN: usize = 64;

/// A sensor's name: 1 to 64 of `[A-Za-z0-9_-]`, so it is safe in topics, paths, SQL, logs
/// and metric labels.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SensorId(String);

impl SensorId {
    /// Validates a sensor id.
    pub fn new(id: &str) -> Result<SensorId, WireError> {
        if id.is_empty() || id.len() > MAX_LEN {
            return Err(WireError::invalid(
                "sensor_id",
                "must be 1 to 64 characters",
            ));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(WireError::invalid(
                "sensor_id",
                "may only contain A-Z, a-z, 0-9, '_' and '-'",
            ));
        }
        Ok(SensorId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SensorId({})", self.0)
    }
}

impl FromStr for SensorId {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SensorId::new(s)
    }
}

impl Serialize for SensorId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SensorId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        SensorId::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_are_accepted() {
        for ok in ["a", "utrecht-neude_01", &"x".repeat(64)] {
            assert_eq!(SensorId::new(ok).expect("valid").as_str(), ok);
        }
    }

    #[test]
    fn unsafe_ids_are_refused_naming_the_field() {
        for bad in ["", "a/b", "a+b", "#", "a b", "é", "a\0", &"x".repeat(65)] {
            let err = SensorId::new(bad).expect_err(bad);
            assert!(err.to_string().starts_with("field `sensor_id`"), "{err}");
        }
    }
}
