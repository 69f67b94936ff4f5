use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::envelope::{check_version, parse_object, take_str};
use super::{PROTOCOL_VERSION, SensorId, WireError};
use crate::authority_key::{PublicKey, SIGNATURE_LEN, SigningKey, TrustedKeys};
use crate::epoch::EpochId;
use crate::salt::{Salt, SaltFingerprint};

/// Largest accepted salt announcement (signed, the base64 body grows it by a third).
const MAX_BYTES: usize = 4096;

/// What an announcement's signature covers besides its body: a signature made for a
/// recovery request can never pass as one for an announcement, nor the reverse.
const ANNOUNCEMENT_CONTEXT: &str = "crowdflow/v1 salt announcement";
const RECOVERY_CONTEXT: &str = "crowdflow/v1 salt recovery";

/// How far a signed, dated message's `issued_at` (a recovery request, an answer about a
/// sensor) may lie from the agent's clock: one recorded and replayed later is not believed.
const MAX_AGE: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// Most salts one announcement may carry (current and next, with room for one previous).
const MAX_SALTS: usize = 3;

/// One epoch's salt, as carried by a [`SaltAnnouncement`]. The epoch's boundaries travel
/// with it, so agents need no rotation schedule or time-zone database of their own.
#[derive(Debug)]
pub struct EpochSalt {
    /// The epoch the salt keys.
    pub epoch: EpochId,
    /// First instant of the epoch.
    pub starts: Timestamp,
    /// First instant after the epoch.
    pub ends: Timestamp,
    /// The salt itself.
    pub salt: Salt,
}

impl EpochSalt {
    /// Whether `t` falls in this epoch.
    pub fn covers(&self, t: Timestamp) -> bool {
        self.starts <= t && t < self.ends
    }
}

/// The salt authority's announcement on `{prefix}/salt`: current and, ahead of rotation, next
/// epoch salts. Sent with QoS 0 and never retained, so no broker stores it.
#[derive(Debug)]
pub struct SaltAnnouncement {
    /// Which aggregator replica is the salt authority (for multi-replica diagnosis).
    pub authority: String,
    /// When the announcement was made.
    pub issued_at: Timestamp,
    /// The salts, oldest epoch first.
    pub salts: Vec<EpochSalt>,
}

/// A borrowed [`EpochSalt`], so an authority can announce salts it keeps holding.
#[derive(Debug, Clone, Copy)]
pub struct EpochSaltRef<'a> {
    /// The epoch the salt keys.
    pub epoch: EpochId,
    /// First instant of the epoch.
    pub starts: Timestamp,
    /// First instant after the epoch.
    pub ends: Timestamp,
    /// The salt itself.
    pub salt: &'a Salt,
}

impl SaltAnnouncement {
    /// The JSON payload, in a buffer that is zeroized when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let refs: Vec<EpochSaltRef<'_>> = self
            .salts
            .iter()
            .map(|s| EpochSaltRef {
                epoch: s.epoch,
                starts: s.starts,
                ends: s.ends,
                salt: &s.salt,
            })
            .collect();
        Self::encode_refs(&self.authority, self.issued_at, &refs)
    }

    /// Encodes an announcement of borrowed salts.
    pub fn encode_refs(
        authority: &str,
        issued_at: Timestamp,
        salts: &[EpochSaltRef<'_>],
    ) -> Zeroizing<Vec<u8>> {
        let salts: Vec<Value> = salts
            .iter()
            .map(|s| {
                json!({
                    "epoch": s.epoch,
                    "starts": s.starts,
                    "ends": s.ends,
                    "salt": BASE64.encode(s.salt.key()),
                    "fp": s.salt.fingerprint(),
                })
            })
            .collect();
        let mut doc = json!({
            "v": PROTOCOL_VERSION,
            "authority": authority,
            "issued_at": issued_at,
            "salts": salts,
        });
        let bytes = Zeroizing::new(serde_json::to_vec(&doc).unwrap_or_default());
        scrub(&mut doc);
        bytes
    }

    /// The announcement of `salts` by `authority`, signed with its key: what goes out on the
    /// salt topic.
    pub fn sign_refs(
        authority: &str,
        issued_at: Timestamp,
        salts: &[EpochSaltRef<'_>],
        key: &SigningKey,
    ) -> Zeroizing<Vec<u8>> {
        let body = Self::encode_refs(authority, issued_at, salts);
        seal(ANNOUNCEMENT_CONTEXT, &body, key)
    }

    /// An announcement encoded by [`SaltAnnouncement::encode_refs`], signed with `key`.
    pub fn sign_encoded(body: &[u8], key: &SigningKey) -> Zeroizing<Vec<u8>> {
        seal(ANNOUNCEMENT_CONTEXT, body, key)
    }

    /// This announcement, signed with `key`.
    pub fn sign(&self, key: &SigningKey) -> Zeroizing<Vec<u8>> {
        seal(ANNOUNCEMENT_CONTEXT, &self.encode(), key)
    }

    /// Decodes a signed announcement: accepted only when its signature verifies under one of
    /// the `trusted` keys (returned with it), whoever published it on the broker.
    pub fn decode_signed(
        bytes: &[u8],
        trusted: &TrustedKeys,
    ) -> Result<(SaltAnnouncement, PublicKey), WireError> {
        let (body, signer) = open(bytes, ANNOUNCEMENT_CONTEXT, trusted)?;
        Ok((SaltAnnouncement::decode(&body)?, signer))
    }

    /// Decodes an unsigned announcement, checking every salt against its fingerprint. Only
    /// for an agent's `salt/return`, where the authority takes back nothing but a salt whose
    /// fingerprint it recorded itself; the salt topic takes [`SaltAnnouncement::decode_signed`].
    pub fn decode(bytes: &[u8]) -> Result<SaltAnnouncement, WireError> {
        let mut map = parse_object(bytes, MAX_BYTES)?;
        let result = decode_map(&mut map);
        scrub_map(&mut map);
        result
    }
}

fn decode_map(map: &mut Map<String, Value>) -> Result<SaltAnnouncement, WireError> {
    check_version(map)?;
    let authority = SensorId::new(take_str(map, "authority")?)
        .map_err(|_| WireError::invalid("authority", "must be 1 to 64 of A-Z a-z 0-9 _ -"))?
        .to_string();
    let issued_at: Timestamp = take_str(map, "issued_at")?
        .parse()
        .map_err(|_| WireError::invalid("issued_at", "must be an RFC 3339 instant"))?;
    let entries = match map.get_mut("salts") {
        None | Some(Value::Null) => return Err(WireError::Missing("salts")),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(WireError::invalid("salts", "must be an array")),
    };
    if entries.is_empty() || entries.len() > MAX_SALTS {
        return Err(WireError::invalid("salts", "must hold 1 to 3 salts"));
    }
    let mut salts = entries
        .iter_mut()
        .map(decode_entry)
        .collect::<Result<Vec<_>, _>>()?;
    salts.sort_by_key(|s| s.epoch);
    if salts.windows(2).any(|w| w[0].epoch == w[1].epoch) {
        return Err(WireError::invalid("salts", "names an epoch twice"));
    }
    if salts.windows(2).any(|w| w[1].starts < w[0].ends) {
        return Err(WireError::invalid("salts", "epochs overlap"));
    }
    Ok(SaltAnnouncement {
        authority,
        issued_at,
        salts,
    })
}

fn decode_entry(entry: &mut Value) -> Result<EpochSalt, WireError> {
    let Value::Object(entry) = entry else {
        return Err(WireError::invalid("salts", "entries must be objects"));
    };
    let epoch = take_str(entry, "epoch")
        .map_err(|_| WireError::Missing("salts.epoch"))?
        .parse::<EpochId>()
        .map_err(|e| WireError::invalid("salts.epoch", e))?;
    let starts = take_instant(entry, "starts", "salts.starts")?;
    let ends = take_instant(entry, "ends", "salts.ends")?;
    if ends <= starts {
        return Err(WireError::invalid("salts.ends", "must be after `starts`"));
    }
    let fp = take_str(entry, "fp")
        .map_err(|_| WireError::Missing("salts.fp"))?
        .parse::<SaltFingerprint>()
        .map_err(|e| WireError::invalid("salts.fp", e))?;
    let encoded = take_str(entry, "salt").map_err(|_| WireError::Missing("salts.salt"))?;
    let raw = Zeroizing::new(
        BASE64
            .decode(encoded)
            .map_err(|_| WireError::invalid("salts.salt", "is not valid base64"))?,
    );
    let salt = Salt::from_slice(&raw).map_err(|e| WireError::invalid("salts.salt", e))?;
    if salt.fingerprint() != fp {
        return Err(WireError::invalid(
            "salts.fp",
            "does not match the salt (corrupted or forged announcement)",
        ));
    }
    Ok(EpochSalt {
        epoch,
        starts,
        ends,
        salt,
    })
}

fn take_instant(
    entry: &Map<String, Value>,
    key: &'static str,
    field: &'static str,
) -> Result<Timestamp, WireError> {
    take_str(entry, key)
        .map_err(|_| WireError::Missing(field))?
        .parse()
        .map_err(|_| WireError::invalid(field, "must be an RFC 3339 instant"))
}

/// An authority's request for a salt it lost (a lone aggregator restarted mid-epoch; salts
/// never touch a disk, so it kept only the fingerprint). Agents holding the salt of `epoch`
/// whose fingerprint is `fp` send it back on their `salt/return` topic. The authority accepts
/// only a salt with exactly this fingerprint, which no one can forge, so a sensor cannot
/// plant a salt of its choosing. QoS 0, never retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaltRecovery {
    /// The epoch whose salt is wanted.
    pub epoch: EpochId,
    /// The fingerprint the authority recorded for it.
    pub fp: SaltFingerprint,
    /// When the authority asked: agents answer only a request this fresh
    /// (within ten minutes of their clock), so a recorded request cannot be replayed later.
    pub issued_at: Timestamp,
}

impl SaltRecovery {
    /// The JSON payload (unsigned; the topic carries [`SaltRecovery::sign`]'s form).
    pub fn encode(&self) -> Vec<u8> {
        let doc = json!({
            "v": PROTOCOL_VERSION,
            "epoch": self.epoch,
            "fp": self.fp,
            "issued_at": self.issued_at,
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// The request signed with the authority's key: what goes out on `salt/recover`.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        seal(RECOVERY_CONTEXT, &self.encode(), key).to_vec()
    }

    /// Decodes an unsigned request.
    pub fn decode(bytes: &[u8]) -> Result<SaltRecovery, WireError> {
        let map = parse_object(bytes, MAX_BYTES)?;
        check_version(&map)?;
        let epoch = take_str(&map, "epoch")?
            .parse::<EpochId>()
            .map_err(|e| WireError::invalid("epoch", e))?;
        let fp = take_str(&map, "fp")?
            .parse::<SaltFingerprint>()
            .map_err(|e| WireError::invalid("fp", e))?;
        let issued_at = take_str(&map, "issued_at")?
            .parse()
            .map_err(|_| WireError::invalid("issued_at", "must be an RFC 3339 instant"))?;
        Ok(SaltRecovery {
            epoch,
            fp,
            issued_at,
        })
    }

    /// Decodes a signed request: accepted only when one of the `trusted` keys signed it and
    /// it was issued within ten minutes of `now`.
    pub fn decode_signed(
        bytes: &[u8],
        trusted: &TrustedKeys,
        now: Timestamp,
    ) -> Result<SaltRecovery, WireError> {
        let (body, _) = open(bytes, RECOVERY_CONTEXT, trusted)?;
        let request = SaltRecovery::decode(&body)?;
        check_fresh(request.issued_at, now)?;
        Ok(request)
    }
}

/// Refuses a signed message issued more than [`MAX_AGE`] from `now`.
pub(super) fn check_fresh(issued_at: Timestamp, now: Timestamp) -> Result<(), WireError> {
    if now.duration_since(issued_at).abs() > MAX_AGE {
        return Err(WireError::invalid(
            "issued_at",
            "is more than ten minutes from this sensor's clock (a replayed message, or a clock to fix)",
        ));
    }
    Ok(())
}

/// `{"v":1,"signed":BASE64(body),"sig":BASE64(signature)}`: the body travels as it was
/// signed, so no canonical JSON is needed to check it.
pub(super) fn seal(context: &str, body: &[u8], key: &SigningKey) -> Zeroizing<Vec<u8>> {
    let signature = key.sign(context, body);
    let mut doc = json!({
        "v": PROTOCOL_VERSION,
        "signed": BASE64.encode(body),
        "sig": BASE64.encode(signature),
    });
    let bytes = Zeroizing::new(serde_json::to_vec(&doc).unwrap_or_default());
    if let Some(Value::String(s)) = doc.get_mut("signed") {
        zeroize::Zeroize::zeroize(s);
    }
    bytes
}

/// The body of a sealed message and the trusted key that signed it.
pub(super) fn open(
    bytes: &[u8],
    context: &str,
    trusted: &TrustedKeys,
) -> Result<(Zeroizing<Vec<u8>>, PublicKey), WireError> {
    let mut map = parse_object(bytes, MAX_BYTES)?;
    let result = open_map(&map, context, trusted);
    if let Some(Value::String(s)) = map.get_mut("signed") {
        zeroize::Zeroize::zeroize(s);
    }
    result
}

fn open_map(
    map: &Map<String, Value>,
    context: &str,
    trusted: &TrustedKeys,
) -> Result<(Zeroizing<Vec<u8>>, PublicKey), WireError> {
    check_version(map)?;
    let body = Zeroizing::new(
        BASE64
            .decode(take_str(map, "signed")?)
            .map_err(|_| WireError::invalid("signed", "is not valid base64"))?,
    );
    let signature = BASE64
        .decode(take_str(map, "sig")?)
        .map_err(|_| WireError::invalid("sig", "is not valid base64"))?;
    if signature.len() != SIGNATURE_LEN {
        return Err(WireError::invalid(
            "sig",
            "must be a 64-byte Ed25519 signature",
        ));
    }
    let signer = trusted
        .signer(context, &body, &signature)
        .ok_or(WireError::Untrusted(trusted.len()))?;
    Ok((body, signer))
}

/// Overwrites the salt strings of a parsed document before it is dropped.
fn scrub(doc: &mut Value) {
    if let Value::Object(map) = doc {
        scrub_map(map);
    }
}

fn scrub_map(map: &mut Map<String, Value>) {
    if let Some(Value::Array(entries)) = map.get_mut("salts") {
        for entry in entries {
            if let Some(Value::String(s)) = entry.get_mut("salt") {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement() -> SaltAnnouncement {
        SaltAnnouncement {
            authority: "aggregator-1".into(),
            issued_at: "2026-04-27T01:00:00Z".parse().expect("ts"),
            salts: vec![
                EpochSalt {
                    epoch: "2026-04-26".parse().expect("epoch"),
                    starts: "2026-04-26T02:00:00Z".parse().expect("ts"),
                    ends: "2026-04-27T02:00:00Z".parse().expect("ts"),
                    salt: Salt::generate().expect("entropy"),
                },
                EpochSalt {
                    epoch: "2026-04-27".parse().expect("epoch"),
                    starts: "2026-04-27T02:00:00Z".parse().expect("ts"),
                    ends: "2026-04-28T02:00:00Z".parse().expect("ts"),
                    salt: Salt::generate().expect("entropy"),
                },
            ],
        }
    }

    #[test]
    fn salts_survive_the_round_trip_with_their_fingerprints() {
        let a = announcement();
        let back = SaltAnnouncement::decode(&a.encode()).expect("valid");
        assert_eq!(back.authority, "aggregator-1");
        assert_eq!(back.salts.len(), 2);
        for (x, y) in a.salts.iter().zip(&back.salts) {
            assert_eq!(x.epoch, y.epoch);
            assert_eq!(x.salt.fingerprint(), y.salt.fingerprint());
        }
    }

    #[test]
    fn a_salt_that_does_not_match_its_fingerprint_is_refused() {
        let a = announcement();
        let mut doc: Value = serde_json::from_slice(&a.encode()).expect("json");
        doc["salts"][0]["fp"] = "0000000000000000".into();
        let err =
            SaltAnnouncement::decode(&serde_json::to_vec(&doc).expect("json")).expect_err("fp");
        assert!(err.to_string().contains("salts.fp"), "{err}");
    }

    #[test]
    fn malformed_announcements_name_the_field() {
        let a = announcement();
        let good: Value = serde_json::from_slice(&a.encode()).expect("json");
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|d| d["salts"] = json!([])), "salts"),
            (
                Box::new(|d| d["salts"][0]["salt"] = "AAAA".into()),
                "salts.salt",
            ),
            (
                Box::new(|d| d["salts"][0]["salt"] = "***".into()),
                "salts.salt",
            ),
            (
                Box::new(|d| d["salts"][1]["epoch"] = d["salts"][0]["epoch"].clone()),
                "salts",
            ),
            (
                Box::new(|d| d["salts"][0]["epoch"] = "soon".into()),
                "salts.epoch",
            ),
            (Box::new(|d| d["authority"] = "a b".into()), "authority"),
            (Box::new(|d| d["issued_at"] = 5.into()), "issued_at"),
            (Box::new(|d| d["v"] = 9.into()), "version 9"),
            (
                Box::new(|d| d["salts"][0]["ends"] = d["salts"][0]["starts"].clone()),
                "salts.ends",
            ),
            (
                Box::new(|d| d["salts"][1]["starts"] = "2026-04-26T12:00:00Z".into()),
                "overlap",
            ),
            (
                Box::new(|d| d["salts"][0]["starts"] = "soon".into()),
                "salts.starts",
            ),
        ];
        for (mutate, expect) in cases {
            let mut doc = good.clone();
            mutate(&mut doc);
            let err = SaltAnnouncement::decode(&serde_json::to_vec(&doc).expect("json"))
                .expect_err(expect);
            assert!(err.to_string().contains(expect), "{expect}: {err}");
        }
    }

    #[test]
    fn errors_never_contain_salt_material() {
        let a = announcement();
        let mut doc: Value = serde_json::from_slice(&a.encode()).expect("json");
        let b64 = doc["salts"][0]["salt"].as_str().expect("str").to_owned();
        doc["salts"][0]["fp"] = "0000000000000000".into();
        let err =
            SaltAnnouncement::decode(&serde_json::to_vec(&doc).expect("json")).expect_err("fp");
        assert!(!err.to_string().contains(&b64[..8]));
        assert!(!format!("{err:?}").contains(&b64[..8]));
    }

    #[test]
    fn recovery_requests_round_trip_and_name_bad_fields() {
        let salt = Salt::generate().expect("entropy");
        let request = SaltRecovery {
            epoch: "2026-04-27".parse().expect("epoch"),
            fp: salt.fingerprint(),
            issued_at: "2026-04-27T12:00:00Z".parse().expect("ts"),
        };
        let bytes = request.encode();
        assert_eq!(SaltRecovery::decode(&bytes), Ok(request));
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(
            !text.contains(&BASE64.encode(salt.key())),
            "no salt in a request"
        );
        for (bad, field) in [
            (r#"{"v":1,"fp":"00"}"#, "epoch"),
            (r#"{"v":1,"epoch":"2026-04-27","fp":"zz"}"#, "fp"),
            (r#"{"v":9,"epoch":"2026-04-27","fp":"00"}"#, "v"),
            (
                r#"{"v":1,"epoch":"2026-04-27","fp":"0000000000000000"}"#,
                "issued_at",
            ),
        ] {
            let err = SaltRecovery::decode(bad.as_bytes()).expect_err(bad);
            assert!(err.to_string().contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn signed_announcements_count_only_under_a_pinned_key() {
        let a = announcement();
        let authority = SigningKey::generate().expect("entropy");
        let intruder = SigningKey::generate().expect("entropy");
        let trusted = TrustedKeys::new(vec![authority.public_key()]);
        let (back, signer) =
            SaltAnnouncement::decode_signed(&a.sign(&authority), &trusted).expect("trusted");
        assert_eq!(signer, authority.public_key());
        assert_eq!(back.salts.len(), 2);
        let err = SaltAnnouncement::decode_signed(&a.sign(&intruder), &trusted)
            .expect_err("untrusted key");
        assert_eq!(err.reason(), "untrusted_signature");
        let err = SaltAnnouncement::decode_signed(&a.encode(), &trusted).expect_err("unsigned");
        assert!(err.to_string().contains("signed"), "{err}");
        let err = SaltAnnouncement::decode_signed(&a.sign(&authority), &TrustedKeys::default())
            .expect_err("nothing pinned");
        assert_eq!(err.reason(), "untrusted_signature");
    }

    #[test]
    fn a_signed_body_cannot_be_altered_or_passed_off_as_another_message() {
        let authority = SigningKey::generate().expect("entropy");
        let trusted = TrustedKeys::new(vec![authority.public_key()]);
        let signed = announcement().sign(&authority);
        let mut doc: Value = serde_json::from_slice(&signed).expect("json");
        let body = BASE64
            .decode(doc["signed"].as_str().expect("str"))
            .expect("b64");
        let mut body: Value = serde_json::from_slice(&body).expect("json");
        body["authority"] = "aaa-attacker".into();
        doc["signed"] = BASE64
            .encode(serde_json::to_vec(&body).expect("json"))
            .into();
        let err =
            SaltAnnouncement::decode_signed(&serde_json::to_vec(&doc).expect("json"), &trusted)
                .expect_err("altered");
        assert_eq!(err.reason(), "untrusted_signature");
        // A signed recovery request is not an announcement, though both are signed alike.
        let now: Timestamp = "2026-04-27T12:00:00Z".parse().expect("ts");
        let request = SaltRecovery {
            epoch: "2026-04-27".parse().expect("epoch"),
            fp: Salt::generate().expect("entropy").fingerprint(),
            issued_at: now,
        };
        let err = SaltAnnouncement::decode_signed(&request.sign(&authority), &trusted)
            .expect_err("wrong context");
        assert_eq!(err.reason(), "untrusted_signature");
        assert_eq!(
            SaltRecovery::decode_signed(&request.sign(&authority), &trusted, now),
            Ok(request)
        );
    }

    #[test]
    fn a_recovery_request_is_answered_only_fresh_and_from_a_pinned_key() {
        let authority = SigningKey::generate().expect("entropy");
        let trusted = TrustedKeys::new(vec![authority.public_key()]);
        let issued: Timestamp = "2026-04-27T12:00:00Z".parse().expect("ts");
        let request = SaltRecovery {
            epoch: "2026-04-27".parse().expect("epoch"),
            fp: Salt::generate().expect("entropy").fingerprint(),
            issued_at: issued,
        };
        let signed = request.sign(&authority);
        let later: Timestamp = "2026-04-27T12:11:00Z".parse().expect("ts");
        let err = SaltRecovery::decode_signed(&signed, &trusted, later).expect_err("stale");
        assert!(err.to_string().contains("issued_at"), "{err}");
        let err =
            SaltRecovery::decode_signed(&request.encode(), &trusted, issued).expect_err("unsigned");
        assert!(err.to_string().contains("signed"), "{err}");
        let intruder = SigningKey::generate().expect("entropy");
        let err = SaltRecovery::decode_signed(&request.sign(&intruder), &trusted, issued)
            .expect_err("intruder");
        assert_eq!(err.reason(), "untrusted_signature");
    }
}
