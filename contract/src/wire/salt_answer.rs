//! The aggregator's answer to a salt request: whether it knows the sensor that asked.
//!
//! A sensor the aggregator does not know gets the salt like any other (the broker decided
//! it may read it), but every sketch it sends is rejected `unknown_sensor`. `selfcheck`
//! asks, so an installer learns that at the first step instead of from an empty dashboard.

use serde::{Deserialize, Serialize};

use super::envelope::json_error;
use super::{PROTOCOL_VERSION, SensorId, WireError};

/// Largest accepted answer.
const MAX_BYTES: usize = 1024;

/// On `{prefix}/salt/answer/{sensor_id}` (QoS 0, never retained), in reply to a salt request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaltAnswer {
    /// Protocol version.
    pub v: u32,
    /// The sensor that asked.
    pub sensor_id: SensorId,
    /// The aggregator's config lists this sensor: its sketches are accepted.
    pub known: bool,
    /// The answering aggregator's salt authority id (its `authority_id`).
    pub authority: String,
}

impl SaltAnswer {
    /// The answer to `sensor_id` from `authority`.
    pub fn new(sensor_id: SensorId, known: bool, authority: &str) -> SaltAnswer {
        SaltAnswer {
            v: PROTOCOL_VERSION,
            sensor_id,
            known,
            authority: authority.to_owned(),
        }
    }

    /// Encodes the answer (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes an answer.
    pub fn decode(bytes: &[u8]) -> Result<SaltAnswer, WireError> {
        if bytes.len() > MAX_BYTES {
            return Err(WireError::TooLarge {
                len: bytes.len(),
                max: MAX_BYTES,
            });
        }
        let answer: SaltAnswer = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
        if answer.v != PROTOCOL_VERSION {
            return Err(WireError::Version(u64::from(answer.v)));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_round_trips_and_bad_bytes_are_named() {
        let id = SensorId::new("neude-01").expect("valid");
        let a = SaltAnswer::new(id, false, "replica-a");
        assert_eq!(SaltAnswer::decode(&a.encode()).expect("decodes"), a);
        assert!(matches!(
            SaltAnswer::decode(b"{\"v\":9,\"sensor_id\":\"a\",\"known\":true,\"authority\":\"x\"}"),
            Err(WireError::Version(9))
        ));
        assert!(matches!(
            SaltAnswer::decode(&[b' '; 2000]),
            Err(WireError::TooLarge { .. })
        ));
        assert!(
            SaltAnswer::decode(
                b"{\"v\":1,\"sensor_id\":\"bad id\",\"known\":true,\"authority\":\"x\"}"
            )
            .is_err()
        );
        assert!(SaltAnswer::decode(b"not json").is_err());
    }
}
