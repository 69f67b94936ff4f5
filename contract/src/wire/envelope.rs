use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{PROTOCOL_VERSION, SensorId, WireError};
use crate::epoch::{EpochId, RotationSchedule};
use crate::identity::Kind;
use crate::salt::SaltFingerprint;
use crate::sketch::{Precision, Sketch};
use crate::window::{Window, WindowLength};

/// Encoding id of the sketch bytes: Apache DataSketches HLL, HLL_4 layout, serial version 1.
pub const SKETCH_ENCODING: &str = "datasketches-hll4";

/// Default largest accepted envelope (a dense lg_k=14 sketch is ~11 KiB of base64).
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

/// Longest accepted `agent_version`.
const MAX_VERSION_LEN: usize = 64;

/// One sketch of one sensor, window and kind: what an agent publishes.
#[derive(Debug, Clone)]
pub struct SketchMessage {
    /// Who measured.
    pub sensor_id: SensorId,
    /// Which address class the sketch counts.
    pub kind: Kind,
    /// The counting window.
    pub window: Window,
    /// The salt epoch the device hashes were made under.
    pub epoch: EpochId,
    /// Fingerprint of that epoch's salt.
    pub salt_fp: SaltFingerprint,
    /// The distinct devices heard.
    pub sketch: Sketch,
    /// Frames of this kind seen in the window (counted ones, before dedup).
    pub frames: u64,
    /// The agent's version string.
    pub agent_version: String,
}

/// What a received envelope must satisfy beyond its syntax.
#[derive(Debug, Clone)]
pub struct DecodeRules {
    /// The deployment's sketch precision.
    pub precision: Precision,
    /// Largest accepted payload.
    pub max_bytes: usize,
    /// The receiver's clock.
    pub now: Timestamp,
    /// Oldest accepted window start, relative to `now` (outboxes deliver late).
    pub max_age: SignedDuration,
    /// Latest accepted window end, relative to `now` (clock skew).
    pub max_ahead: SignedDuration,
    /// When set, the epoch must be one the window overlaps under this schedule.
    pub schedule: Option<RotationSchedule>,
}

impl DecodeRules {
    /// Defaults: 64 KiB, windows up to 7 days old and ending at most 5 minutes ahead.
    pub fn new(precision: Precision, now: Timestamp) -> DecodeRules {
        DecodeRules {
            precision,
            max_bytes: DEFAULT_MAX_BYTES,
            now,
            max_age: SignedDuration::from_hours(24 * 7),
            max_ahead: SignedDuration::from_mins(5),
            schedule: None,
        }
    }
}

#[derive(Serialize)]
struct WireEnvelope<'a> {
    v: u32,
    sensor_id: &'a SensorId,
    kind: Kind,
    window_start: Timestamp,
    window_s: u32,
    epoch: EpochId,
    salt_fp: SaltFingerprint,
    sketch: WireSketch,
    frames: u64,
    agent_version: &'a str,
}

#[derive(Serialize)]
struct WireSketch {
    enc: &'static str,
    lg_k: u8,
    b64: String,
}

impl SketchMessage {
    /// The JSON envelope of protocol v1.
    pub fn encode(&self) -> Vec<u8> {
        let envelope = WireEnvelope {
            v: PROTOCOL_VERSION,
            sensor_id: &self.sensor_id,
            kind: self.kind,
            window_start: self.window.start(),
            window_s: self.window.length().seconds(),
            epoch: self.epoch,
            salt_fp: self.salt_fp,
            sketch: WireSketch {
                enc: SKETCH_ENCODING,
                lg_k: self.sketch.precision().lg_k(),
                b64: BASE64.encode(self.sketch.encode()),
            },
            frames: self.frames,
            agent_version: &self.agent_version,
        };
        // Serializing plain strings, numbers and validated newtypes cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Decodes and validates an envelope; total over all byte strings.
    pub fn decode(bytes: &[u8], rules: &DecodeRules) -> Result<SketchMessage, WireError> {
        let mut map = parse_object(bytes, rules.max_bytes)?;
        check_version(&map)?;
        let sensor_id = SensorId::new(take_str(&map, "sensor_id")?)?;
        let kind = take_str(&map, "kind")?
            .parse::<Kind>()
            .map_err(|e| WireError::invalid("kind", e))?;
        let window = take_window(&map, rules)?;
        let epoch = take_str(&map, "epoch")?
            .parse::<EpochId>()
            .map_err(|e| WireError::invalid("epoch", e))?;
        check_epoch(epoch, &window, rules)?;
        let salt_fp = take_str(&map, "salt_fp")?
            .parse::<SaltFingerprint>()
            .map_err(|e| WireError::invalid("salt_fp", e))?;
        let frames = take_frames(&map, &window)?;
        let agent_version = take_version(&map)?;
        let sketch = take_sketch(&mut map, rules.precision)?;
        Ok(SketchMessage {
            sensor_id,
            kind,
            window,
            epoch,
            salt_fp,
            sketch,
            frames,
            agent_version,
        })
    }
}

/// Parses a size-limited JSON object; shared by every v1 decoder.
pub(super) fn parse_object(
    bytes: &[u8],
    max_bytes: usize,
) -> Result<Map<String, Value>, WireError> {
    if bytes.len() > max_bytes {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(WireError::Json("the top level is not an object".into())),
        Err(e) => Err(json_error(&e)),
    }
}

/// Describes a JSON error by its category and position only, never by the offending text.
pub(super) fn json_error(e: &serde_json::Error) -> WireError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected type or value",
        Category::Eof => "unexpected end of input",
    };
    WireError::Json(format!("{what} at line {} column {}", e.line(), e.column()))
}

pub(super) fn check_version(map: &Map<String, Value>) -> Result<(), WireError> {
    let v = take_u64(map, "v")?;
    if v == u64::from(PROTOCOL_VERSION) {
        Ok(())
    } else {
        Err(WireError::Version(v))
    }
}

pub(super) fn take_str<'m>(
    map: &'m Map<String, Value>,
    field: &'static str,
) -> Result<&'m str, WireError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(WireError::Missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(WireError::invalid(field, "must be a string")),
    }
}

pub(super) fn take_u64(map: &Map<String, Value>, field: &'static str) -> Result<u64, WireError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(WireError::Missing(field)),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| WireError::invalid(field, "must be a non-negative integer")),
    }
}

fn take_window(map: &Map<String, Value>, rules: &DecodeRules) -> Result<Window, WireError> {
    let start: Timestamp = take_str(map, "window_start")?
        .parse()
        .map_err(|_| WireError::invalid("window_start", "must be an RFC 3339 instant"))?;
    let length = WindowLength::new(take_u64(map, "window_s")?)
        .map_err(|e| WireError::invalid("window_s", e))?;
    let window =
        Window::starting_at(start, length).map_err(|e| WireError::invalid("window_start", e))?;
    let oldest = rules
        .now
        .checked_sub(rules.max_age)
        .unwrap_or(Timestamp::MIN);
    let latest = rules
        .now
        .checked_add(rules.max_ahead)
        .unwrap_or(Timestamp::MAX);
    if window.start() < oldest {
        return Err(WireError::invalid(
            "window_start",
            format!(
                "window is older than the accepted {} h",
                rules.max_age.as_hours()
            ),
        ));
    }
    if window.end() > latest {
        return Err(WireError::invalid(
            "window_start",
            "window ends in the future (check the sensor's clock)",
        ));
    }
    Ok(window)
}

fn check_epoch(epoch: EpochId, window: &Window, rules: &DecodeRules) -> Result<(), WireError> {
    match &rules.schedule {
        Some(schedule) if !schedule.spans(window).iter().any(|s| s.epoch == epoch) => {
            Err(WireError::invalid(
                "epoch",
                "does not match the window under the rotation schedule",
            ))
        }
        _ => Ok(()),
    }
}

/// Most frames one sensor can report per second of window. One 802.11 channel carries at most
/// about 35,000 frames a second (the shortest frame, an ACK, holds the air for about 28 µs at
/// 54 Mb/s with its preamble and SIFS); BLE advertising on three channels adds far fewer. A
/// bound three times that keeps every real count and refuses absurd ones (2^64-1 once broke
/// the stored sums behind the admin view).
pub const MAX_FRAMES_PER_SECOND: u64 = 100_000;

fn take_frames(map: &Map<String, Value>, window: &Window) -> Result<u64, WireError> {
    let frames = take_u64(map, "frames")?;
    let most = MAX_FRAMES_PER_SECOND * u64::from(window.length().seconds());
    if frames > most {
        return Err(WireError::invalid(
            "frames",
            format!(
                "is more than {MAX_FRAMES_PER_SECOND} a second of window ({most} for this one): no radio hears that many"
            ),
        ));
    }
    Ok(frames)
}

fn take_version(map: &Map<String, Value>) -> Result<String, WireError> {
    let version = take_str(map, "agent_version")?;
    let printable = version.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if version.is_empty() || version.len() > MAX_VERSION_LEN || !printable {
        return Err(WireError::invalid(
            "agent_version",
            "must be 1 to 64 printable ASCII characters",
        ));
    }
    Ok(version.to_owned())
}

fn take_sketch(map: &mut Map<String, Value>, precision: Precision) -> Result<Sketch, WireError> {
    let sketch = match map.get("sketch") {
        None | Some(Value::Null) => return Err(WireError::Missing("sketch")),
        Some(Value::Object(sketch)) => sketch,
        Some(_) => return Err(WireError::invalid("sketch", "must be an object")),
    };
    let enc = take_str(sketch, "enc").map_err(|_| WireError::Missing("sketch.enc"))?;
    if enc != SKETCH_ENCODING {
        return Err(WireError::invalid(
            "sketch.enc",
            format!("unknown encoding (this build reads {SKETCH_ENCODING})"),
        ));
    }
    let lg_k = take_u64(sketch, "lg_k").map_err(|_| WireError::Missing("sketch.lg_k"))?;
    if lg_k != u64::from(precision.lg_k()) {
        return Err(WireError::invalid(
            "sketch.lg_k",
            format!("is {lg_k}, this deployment uses {}", precision.lg_k()),
        ));
    }
    let b64 = take_str(sketch, "b64").map_err(|_| WireError::Missing("sketch.b64"))?;
    let bytes = BASE64
        .decode(b64)
        .map_err(|_| WireError::invalid("sketch.b64", "is not valid base64"))?;
    Ok(Sketch::decode(&bytes, precision)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::SketchError;

    const NOW: &str = "2026-04-27T12:00:30Z";

    fn rules() -> DecodeRules {
        DecodeRules::new(Precision::DEFAULT, NOW.parse().expect("ts"))
    }

    fn message(n: u64) -> SketchMessage {
        let mut sketch = Sketch::new(Precision::DEFAULT);
        for i in 0..n {
            sketch.insert_bytes(&i.to_le_bytes());
        }
        SketchMessage {
            sensor_id: SensorId::new("neude-01").expect("valid"),
            kind: Kind::WifiRandom,
            window: Window::containing(
                "2026-04-27T11:59:10Z".parse().expect("ts"),
                WindowLength::DEFAULT,
            ),
            epoch: "2026-04-27".parse().expect("epoch"),
            salt_fp: "0123456789abcdef".parse().expect("fp"),
            sketch,
            frames: 4 * n,
            agent_version: "0.1.0".into(),
        }
    }

    fn decode_value(v: &Value) -> Result<SketchMessage, WireError> {
        SketchMessage::decode(&serde_json::to_vec(v).expect("json"), &rules())
    }

    fn valid_value() -> Value {
        serde_json::from_slice(&message(500).encode()).expect("json")
    }

    #[test]
    fn an_encoded_message_decodes_to_the_same_content() {
        let m = message(500);
        let back = SketchMessage::decode(&m.encode(), &rules()).expect("valid");
        assert_eq!(back.sensor_id, m.sensor_id);
        assert_eq!(back.kind, m.kind);
        assert_eq!(back.window, m.window);
        assert_eq!(back.epoch, m.epoch);
        assert_eq!(back.salt_fp, m.salt_fp);
        assert_eq!(back.frames, 2000);
        assert_eq!(back.sketch.estimate().estimate.round(), 500.0);
    }

    #[test]
    fn the_envelope_has_the_documented_fields() {
        let v = valid_value();
        let obj = v.as_object().expect("object");
        for field in [
            "v",
            "sensor_id",
            "kind",
            "window_start",
            "window_s",
            "epoch",
            "salt_fp",
            "sketch",
            "frames",
            "agent_version",
        ] {
            assert!(obj.contains_key(field), "{field}");
        }
        assert_eq!(v["window_start"], "2026-04-27T11:59:00Z");
        assert_eq!(v["sketch"]["enc"], SKETCH_ENCODING);
        assert_eq!(v["sketch"]["lg_k"], 14);
    }

    #[test]
    fn every_missing_field_is_named() {
        for field in [
            "v",
            "sensor_id",
            "kind",
            "window_start",
            "window_s",
            "epoch",
            "salt_fp",
            "sketch",
            "frames",
            "agent_version",
        ] {
            let mut v = valid_value();
            v.as_object_mut().expect("object").remove(field);
            assert_eq!(decode_value(&v).map(|_| ()), Err(WireError::Missing(field)));
        }
        for field in ["enc", "lg_k", "b64"] {
            let mut v = valid_value();
            v["sketch"].as_object_mut().expect("object").remove(field);
            let err = decode_value(&v).expect_err(field);
            assert!(
                err.to_string().contains(&format!("sketch.{field}")),
                "{err}"
            );
        }
    }

    #[test]
    fn hostile_values_get_errors_naming_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("v", 2.into(), "unsupported protocol version 2"),
            ("v", "1".into(), "field `v`"),
            ("sensor_id", "../etc".into(), "field `sensor_id`"),
            ("kind", "bluetooth".into(), "field `kind`"),
            ("window_start", "yesterday".into(), "field `window_start`"),
            (
                "window_start",
                "2026-04-27T11:59:30Z".into(),
                "field `window_start`",
            ),
            ("window_start", "2025-01-01T00:00:00Z".into(), "older than"),
            ("window_start", "2026-04-28T00:00:00Z".into(), "future"),
            ("window_s", 61.into(), "field `window_s`"),
            ("window_s", (-60).into(), "field `window_s`"),
            ("epoch", "27-04-2026".into(), "field `epoch`"),
            ("salt_fp", "xyz".into(), "field `salt_fp`"),
            ("frames", (-1).into(), "field `frames`"),
            ("frames", u64::MAX.into(), "no radio hears that many"),
            ("frames", 6_000_001.into(), "6000000 for this one"),
            ("agent_version", "a\nb".into(), "field `agent_version`"),
            ("sketch", "AAAA".into(), "field `sketch`"),
        ];
        for (field, value, expect) in cases {
            let mut v = valid_value();
            v[field] = value;
            let err = decode_value(&v).expect_err(field);
            assert!(err.to_string().contains(expect), "{field}: {err}");
        }
    }

    #[test]
    fn bad_sketches_are_refused() {
        let mut v = valid_value();
        v["sketch"]["b64"] = "not base64!".into();
        assert!(
            decode_value(&v)
                .expect_err("b64")
                .to_string()
                .contains("sketch.b64")
        );
        let mut v = valid_value();
        v["sketch"]["b64"] = BASE64.encode(b"\x02\x01\x07\x0e garbage").into();
        assert!(matches!(
            decode_value(&v),
            Err(WireError::Sketch(SketchError::Undecodable(_)))
        ));
        let mut v = valid_value();
        v["sketch"]["lg_k"] = 12.into();
        assert!(
            decode_value(&v)
                .expect_err("lg_k")
                .to_string()
                .contains("sketch.lg_k")
        );
        let mut v = valid_value();
        v["sketch"]["enc"] = "hyperloglogplus".into();
        assert!(
            decode_value(&v)
                .expect_err("enc")
                .to_string()
                .contains("sketch.enc")
        );
    }

    #[test]
    fn oversized_and_non_json_payloads_are_refused() {
        let big = vec![b' '; DEFAULT_MAX_BYTES + 1];
        assert_eq!(
            SketchMessage::decode(&big, &rules()).map(|_| ()),
            Err(WireError::TooLarge {
                len: DEFAULT_MAX_BYTES + 1,
                max: DEFAULT_MAX_BYTES
            })
        );
        for junk in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"\xff\xfe",
            b"{\"v\":1,\"v\":1}",
        ] {
            assert!(SketchMessage::decode(junk, &rules()).is_err());
        }
    }

    #[test]
    fn json_errors_never_echo_the_payload() {
        let err =
            SketchMessage::decode(b"{\"v\": 4c:5e:0c:b0:4f:f7}", &rules()).expect_err("syntax");
        let text = err.to_string();
        assert!(!text.contains("4c:5e"), "{text}");
        assert!(text.contains("line 1 column"), "{text}");
    }

    #[test]
    fn epochs_that_do_not_cover_the_window_are_refused_under_a_schedule() {
        let mut r = rules();
        r.schedule = Some(RotationSchedule::default());
        let mut m = message(10);
        assert!(SketchMessage::decode(&m.encode(), &r).is_ok());
        m.epoch = "2026-04-26".parse().expect("epoch");
        let err = SketchMessage::decode(&m.encode(), &r).expect_err("wrong epoch");
        assert_eq!(err.reason(), "bad_epoch");
    }

    #[test]
    fn reject_reasons_are_short_stable_labels() {
        let mut v = valid_value();
        v["kind"] = "x".into();
        assert_eq!(decode_value(&v).expect_err("kind").reason(), "bad_kind");
        assert_eq!(
            SketchMessage::decode(b"x", &rules())
                .expect_err("json")
                .reason(),
            "bad_json"
        );
    }
}
