//! Golden fixtures: committed sketch bytes and envelopes with known estimates.
//!
//! - `fixtures/python_hll4_*.bin` were written by Apache DataSketches for Python
//!   (`python/make_fixtures.py`): we must read another implementation's bytes.
//! - `fixtures/envelope_*.json` were written by this crate: the v1 wire format must not
//!   drift. Regenerate deliberately with `CROWDFLOW_BLESS=1 cargo test -p crowdflow-contract
//!   --test golden` and say why in the commit.

use std::path::{Path, PathBuf};

use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::window::{Window, WindowLength};
use crowdflow_contract::wire::{DecodeRules, SensorId, SketchMessage};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(name: &str) -> Value {
    let bytes = std::fs::read(fixtures().join(name)).expect("fixture is committed");
    serde_json::from_slice(&bytes).expect("fixture is JSON")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

#[test]
fn python_made_sketches_decode_to_their_recorded_estimates() {
    let manifest = read_json("python_hll4.json");
    let entries = manifest.as_array().expect("array");
    assert_eq!(entries.len(), 4);
    for entry in entries {
        let file = entry["file"].as_str().expect("file");
        let bytes = std::fs::read(fixtures().join(file)).expect("fixture");
        let sketch = Sketch::decode(&bytes, Precision::DEFAULT).expect(file);
        let e = sketch.estimate();
        for (ours, field) in [
            (e.estimate, "estimate"),
            (e.lower, "lower"),
            (e.upper, "upper"),
        ] {
            let theirs = entry[field].as_f64().expect("number");
            assert!(
                close(ours, theirs),
                "{file} {field}: ours {ours}, python {theirs}"
            );
        }
        let distinct = entry["distinct"].as_f64().expect("distinct");
        assert!(
            e.contains(distinct),
            "{file}: {e} misses the true {distinct}"
        );
    }
}

/// The deterministic golden messages: (file, kind, distinct devices, frames).
const ENVELOPES: [(&str, Kind, u64, u64); 5] = [
    ("envelope_ble_0.json", Kind::Ble, 0, 0),
    ("envelope_ble_10.json", Kind::Ble, 10, 31),
    (
        "envelope_wifi_random_1000.json",
        Kind::WifiRandom,
        1000,
        4200,
    ),
    ("envelope_wifi_100000.json", Kind::Wifi, 100_000, 350_000),
    (
        "envelope_wifi_derandomized_25.json",
        Kind::WifiDerandomized,
        25,
        180,
    ),
];

fn golden_message(kind: Kind, distinct: u64, frames: u64) -> SketchMessage {
    let mut sketch = Sketch::new(Precision::DEFAULT);
    for i in 0..distinct {
        sketch.insert_bytes(format!("golden-{i}").as_bytes());
    }
    SketchMessage {
        sensor_id: SensorId::new("golden-sensor_01").expect("valid"),
        kind,
        window: Window::starting_at(
            "2026-04-27T10:15:00Z".parse().expect("ts"),
            WindowLength::DEFAULT,
        )
        .expect("aligned"),
        epoch: "2026-04-27".parse().expect("epoch"),
        salt_fp: "5a17f1e0c0ffee42".parse().expect("fp"),
        sketch,
        frames,
        agent_version: "crowdflow-agent 0.1.0".into(),
    }
}

fn rules() -> DecodeRules {
    DecodeRules::new(
        Precision::DEFAULT,
        "2026-04-27T10:16:30Z".parse().expect("ts"),
    )
}

#[test]
fn committed_envelopes_decode_to_their_recorded_contents() {
    if std::env::var_os("CROWDFLOW_BLESS").is_some() {
        bless();
    }
    let manifest = read_json("envelopes.json");
    for (file, kind, distinct, frames) in ENVELOPES {
        let bytes = std::fs::read(fixtures().join(file)).expect("fixture");
        let m = SketchMessage::decode(&bytes, &rules()).expect(file);
        assert_eq!(m.kind, kind, "{file}");
        assert_eq!(m.frames, frames, "{file}");
        assert_eq!(m.sensor_id.as_str(), "golden-sensor_01");
        assert_eq!(m.epoch.to_string(), "2026-04-27");
        assert_eq!(m.window.start().to_string(), "2026-04-27T10:15:00Z");
        let e = m.sketch.estimate();
        let recorded = &manifest[file];
        for (ours, field) in [
            (e.estimate, "estimate"),
            (e.lower, "lower"),
            (e.upper, "upper"),
        ] {
            let expected = recorded[field].as_f64().expect("number");
            assert!(
                close(ours, expected),
                "{file} {field}: {ours} != {expected}"
            );
        }
        assert!(e.contains(distinct as f64), "{file}: {e} misses {distinct}");
    }
}

#[test]
fn the_encoder_still_writes_the_committed_bytes() {
    for (file, kind, distinct, frames) in ENVELOPES {
        let committed = std::fs::read(fixtures().join(file)).expect("fixture");
        let fresh = golden_message(kind, distinct, frames).encode();
        assert!(
            committed == fresh,
            "{file}: the v1 wire bytes changed; if deliberate, re-bless (see module docs)"
        );
    }
}

fn bless() {
    let mut manifest = serde_json::Map::new();
    for (file, kind, distinct, frames) in ENVELOPES {
        let m = golden_message(kind, distinct, frames);
        std::fs::write(fixtures().join(file), m.encode()).expect("write fixture");
        let e = SketchMessage::decode(&m.encode(), &rules())
            .expect("own")
            .sketch
            .estimate();
        manifest.insert(file.into(), serde_json::to_value(e).expect("json"));
    }
    let text = serde_json::to_string_pretty(&manifest).expect("json") + "\n";
    std::fs::write(fixtures().join("envelopes.json"), text).expect("write manifest");
}

/// Inputs the fuzzer once crashed on: each must decode or fail cleanly, and whatever decodes
/// must survive a re-encode.
#[test]
fn fuzz_found_inputs_stay_fixed() {
    let dir = fixtures().join("fuzz");
    for entry in std::fs::read_dir(&dir).expect("fuzz fixtures") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        if let Ok(sketch) = Sketch::decode(&bytes, Precision::DEFAULT) {
            let e = sketch.estimate();
            assert!(
                e.estimate.is_finite() && e.lower <= e.upper,
                "{}: {e}",
                path.display()
            );
            let again = Sketch::decode(&sketch.encode(), Precision::DEFAULT);
            assert!(again.is_ok(), "{}: {again:?}", path.display());
        }
    }
}
