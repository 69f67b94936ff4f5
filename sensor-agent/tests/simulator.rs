//! The simulator's captures are real captures: tshark and the agent's replay read them, and
//! both count exactly what the simulator says each sensor heard.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use crowdflow_agent::frame::FramePolicy;
use crowdflow_agent::replay::{Pace, replay};
use crowdflow_agent::simulate::{Scenario, Simulation, write_files};
use crowdflow_contract::identity::Kind;

fn written() -> (tempfile::TempDir, crowdflow_agent::simulate::Written) {
    let scenario = Scenario::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/simulator/two-squares.toml"),
    )
    .expect("scenario");
    let dir = tempfile::tempdir().expect("tmp");
    let w = write_files(Simulation::new(scenario), dir.path()).expect("write");
    (dir, w)
}

#[test]
fn the_agent_counts_what_each_sensor_heard() {
    let (dir, w) = written();
    for (sensor, heard) in &w.heard {
        let report = replay(
            &[dir.path().join(format!("{sensor}.pcapng"))],
            &FramePolicy::default(),
            Pace::Fast,
        )
        .expect("replay");
        assert!(
            report.errors.is_empty() && report.skipped.is_empty(),
            "{report:?}"
        );
        let counted = |k: Kind| report.counted.get(&k).copied().unwrap_or(0);
        assert_eq!(
            counted(Kind::Wifi) + counted(Kind::WifiRandom),
            heard.wifi_frames,
            "{sensor}"
        );
        assert_eq!(counted(Kind::Ble), heard.ble_frames, "{sensor}");
        let distinct = |k: Kind| report.distinct.get(&k).map_or(0.0, |e| e.estimate.round());
        assert_eq!(
            distinct(Kind::Wifi) + distinct(Kind::WifiRandom),
            heard.wifi_addresses as f64,
            "{sensor}: below a few thousand, HLL counts are exact"
        );
        assert_eq!(distinct(Kind::Ble), heard.ble_addresses as f64, "{sensor}");
    }
    let truth = std::fs::read_to_string(dir.path().join("truth.csv")).expect("truth");
    assert!(truth.starts_with("zone,minute,persons,devices\n"));
    assert!(truth.lines().count() > 40);
}

#[test]
fn tshark_reads_the_captures_and_counts_the_same() {
    let (dir, w) = written();
    for (sensor, heard) in &w.heard {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(dir.path().join(format!("{sensor}.pcapng")))
            .args([
                "-T",
                "fields",
                "-e",
                "wlan.sa",
                "-e",
                "btle.advertising_address",
            ])
            .output()
            .expect("tshark runs (scripts/test.sh installs it: apt-get install tshark)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut frames: BTreeMap<&str, u64> = BTreeMap::new();
        let mut addresses: BTreeMap<&str, HashSet<String>> = BTreeMap::new();
        for line in text.lines() {
            let (wifi, ble) = line.split_once('\t').unwrap_or((line, ""));
            let (medium, address) = if !wifi.is_empty() {
                ("wifi", wifi)
            } else {
                ("ble", ble)
            };
            assert!(!address.is_empty(), "tshark decoded every frame: {line:?}");
            *frames.entry(medium).or_default() += 1;
            addresses
                .entry(medium)
                .or_default()
                .insert(address.to_owned());
        }
        assert_eq!(
            frames.get("wifi").copied().unwrap_or(0),
            heard.wifi_frames,
            "{sensor}"
        );
        assert_eq!(
            frames.get("ble").copied().unwrap_or(0),
            heard.ble_frames,
            "{sensor}"
        );
        assert_eq!(
            addresses.get("wifi").map_or(0, HashSet::len),
            heard.wifi_addresses,
            "{sensor}"
        );
        assert_eq!(
            addresses.get("ble").map_or(0, HashSet::len),
            heard.ble_addresses,
            "{sensor}"
        );
    }
}
