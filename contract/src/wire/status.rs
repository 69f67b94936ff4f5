use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::envelope::json_error;
use super::{PROTOCOL_VERSION, SensorId, WireError};
use crate::epoch::EpochId;
use crate::salt::SaltFingerprint;

/// Largest accepted status message.
const MAX_BYTES: usize = 16 * 1024;

/// Whether the agent is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Running and publishing.
    Online,
    /// Gone (the last will, or a clean shutdown).
    Offline,
}

/// The agent's salt situation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaltState {
    /// `true` when the agent holds a salt for the current epoch and is counting.
    pub counting: bool,
    /// The epoch of the salt in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<EpochId>,
    /// Its fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<SaltFingerprint>,
    /// In plain words, why the agent is not counting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The agent's store-and-forward queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxHealth {
    /// Sketches waiting to be delivered.
    pub depth: u64,
    /// Bytes they take on disk.
    pub bytes: u64,
    /// The on-disk bound in bytes.
    pub capacity_bytes: u64,
    /// Sketches dropped because the bound was reached, since start.
    pub overflowed: u64,
}

/// Heartbeat and health of one agent, on `{prefix}/status/{sensor_id}` (retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Protocol version.
    pub v: u32,
    /// Who reports.
    pub sensor_id: SensorId,
    /// Up or gone.
    pub state: AgentState,
    /// When the report was made (absent in the last will, which is composed at connect time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    /// The agent's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Frames per second over the last report interval.
    #[serde(default)]
    pub frames_per_s: f64,
    /// Frames seen since start.
    #[serde(default)]
    pub frames_total: u64,
    /// Frames skipped since start, by reason.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Outbox state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxHealth>,
    /// Salt state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<SaltState>,
    /// Capture source state in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
}

impl AgentStatus {
    /// The last-will payload: just "this sensor is gone".
    pub fn offline(sensor_id: SensorId) -> AgentStatus {
        AgentStatus {
            v: PROTOCOL_VERSION,
            sensor_id,
            state: AgentState::Offline,
            at: None,
            agent_version: None,
            frames_per_s: 0.0,
            frames_total: 0,
            drops: BTreeMap::new(),
            outbox: None,
            salt: None,
            capture: None,
        }
    }

    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a status message.
    pub fn decode(bytes: &[u8]) -> Result<AgentStatus, WireError> {
        if bytes.len() > MAX_BYTES {
            return Err(WireError::TooLarge {
                len: bytes.len(),
                max: MAX_BYTES,
            });
        }
        let status: AgentStatus = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
        if status.v != PROTOCOL_VERSION {
            return Err(WireError::Version(u64::from(status.v)));
        }
        if !status.frames_per_s.is_finite() || status.frames_per_s < 0.0 {
            return Err(WireError::invalid(
                "frames_per_s",
                "must be a non-negative number",
            ));
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_will_round_trips() {
        let s = AgentStatus::offline(SensorId::new("a").expect("valid"));
        let back = AgentStatus::decode(&s.encode()).expect("valid");
        assert_eq!(back, s);
        assert_eq!(
            String::from_utf8(s.encode()).expect("utf8"),
            r#"{"v":1,"sensor_id":"a","state":"offline","frames_per_s":0.0,"frames_total":0,"drops":{}}"#
        );
    }

    #[test]
    fn malformed_status_is_refused() {
        for bad in [
            &br#"{"v":2,"sensor_id":"a","state":"online"}"#[..],
            br#"{"v":1,"sensor_id":"a/b","state":"online"}"#,
            br#"{"v":1,"sensor_id":"a","state":"dancing"}"#,
            b"[]",
            b"",
        ] {
            assert!(AgentStatus::decode(bad).is_err());
        }
    }
}
