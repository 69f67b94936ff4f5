//! The aggregator's answer to a salt request: whether it knows the sensor that asked.
//!
//! A sensor the aggregator does not know gets the salt like any other (the broker decided
//! it may read it), but every sketch it sends is rejected `unknown_sensor`. `selfcheck`
//! asks, so an installer learns that at the first step instead of from an empty dashboard.
//! The answer is signed with the salt authority's key, like announcements, and dated: a
//! broker that lets anyone publish cannot make a sensor believe it is known.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::envelope::json_error;
use super::salt_msg::{check_fresh, open, seal};
use super::{PROTOCOL_VERSION, SensorId, WireError};
use crate::authority_key::{PublicKey, SigningKey, TrustedKeys};
use crate::identity::Kind;

/// Largest accepted answer body (the signed envelope is bounded by the salt messages').
const MAX_BYTES: usize = 1024;
/// Domain separation of the signature: an answer cannot pass for another signed message.
const CONTEXT: &str = "crowdflow/v1 salt answer";
/// On `{prefix}/salt/answer/{sensor_id}` (QoS 0, never retained), in reply to a salt request,
/// signed ([`SaltAnswer::sign`]).
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
    /// When the aggregator answered.
    pub issued_at: Timestamp,
    /// The kinds of sketch the aggregator accepts from this sensor (its `senses`); others
    /// are rejected `kind_not_allowed`. Absent from older aggregators and when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<Kind>>,
}

impl SaltAnswer {
    /// The answer to `sensor_id` from `authority` at `now`.
    pub fn new(sensor_id: SensorId, known: bool, authority: &str, now: Timestamp) -> SaltAnswer {
        SaltAnswer {
            v: PROTOCOL_VERSION,
            sensor_id,
            known,
            authority: authority.to_owned(),
            issued_at: now,
            kinds: None,
        }
    }

    /// The same answer, saying which kinds of sketch are accepted.
    pub fn accepting(mut self, kinds: Vec<Kind>) -> SaltAnswer {
        self.kinds = Some(kinds);
        self
    }

    /// The answer signed with the authority's key: what goes out on the answer topic.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        seal(CONTEXT, &body, key).to_vec()
    }

    /// Decodes a signed answer: believed only when one of the `trusted` keys signed it and
    /// it was issued within ten minutes of `now`. Returns the key that signed it too.
    pub fn decode_signed(
        bytes: &[u8],
        trusted: &TrustedKeys,
        now: Timestamp,
    ) -> Result<(SaltAnswer, PublicKey), WireError> {
        let (body, signer) = open(bytes, CONTEXT, trusted)?;
        let answer = SaltAnswer::decode(&body)?;
        check_fresh(answer.issued_at, now)?;
        Ok((answer, signer))
    }

    /// Decodes the unsigned body of an answer.
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
    fn an_answer_counts_only_signed_by_a_pinned_key_and_fresh() {
        let key = SigningKey::generate().expect("key");
        let trusted = TrustedKeys::new(vec![key.public_key()]);
        let now = Timestamp::from_second(1_800_000_000).expect("ts");
        let id = SensorId::new("neude-01").expect("valid");
        let a = SaltAnswer::new(id, false, "replica-a", now);
        let (got, signer) = SaltAnswer::decode_signed(&a.sign(&key), &trusted, now).expect("ok");
        assert_eq!((got, signer), (a.clone(), key.public_key()));
        let with_kinds = a.clone().accepting(vec![Kind::Wifi, Kind::Ble]);
        let (got, _) =
            SaltAnswer::decode_signed(&with_kinds.sign(&key), &trusted, now).expect("ok");
        assert_eq!(got.kinds, Some(vec![Kind::Wifi, Kind::Ble]));
        // another key, an unsigned body, a stale answer: refused
        let other = SigningKey::generate().expect("key");
        assert!(matches!(
            SaltAnswer::decode_signed(&a.sign(&other), &trusted, now),
            Err(WireError::Untrusted(1))
        ));
        let unsigned = serde_json::to_vec(&a).expect("json");
        assert!(SaltAnswer::decode_signed(&unsigned, &trusted, now).is_err());
        let later = now + jiff::SignedDuration::from_mins(11);
        let stale = SaltAnswer::decode_signed(&a.sign(&key), &trusted, later).expect_err("stale");
        assert!(stale.to_string().contains("issued_at"), "{stale}");
    }

    #[test]
    fn bad_bodies_are_named() {
        assert!(matches!(
            SaltAnswer::decode(
                b"{\"v\":9,\"sensor_id\":\"a\",\"known\":true,\"authority\":\"x\",\"issued_at\":\"2026-01-01T00:00:00Z\"}"
            ),
            Err(WireError::Version(9))
        ));
        assert!(matches!(
            SaltAnswer::decode(&[b' '; 2000]),
            Err(WireError::TooLarge { .. })
        ));
        assert!(SaltAnswer::decode(
            b"{\"v\":1,\"sensor_id\":\"bad id\",\"known\":true,\"authority\":\"x\",\"issued_at\":\"2026-01-01T00:00:00Z\"}"
        )
        .is_err());
        assert!(SaltAnswer::decode(b"not json").is_err());
        // an older aggregator's answer, without kinds, still reads
        let old = SaltAnswer::decode(
            b"{\"v\":1,\"sensor_id\":\"a\",\"known\":true,\"authority\":\"x\",\"issued_at\":\"2026-01-01T00:00:00Z\"}",
        )
        .expect("old answer");
        assert_eq!(old.kinds, None);
    }
}
