//! The simulator's captures are real captures: tshark and the agent's replay read them, and
//! both count exactly what the simulator says each sensor heard.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crowdflow_agent::capture::paced::replay_as_live;
use crowdflow_agent::counting::Counter;
use crowdflow_agent::counting::window::Windows;
use crowdflow_agent::frame::FramePolicy;
use crowdflow_agent::replay::{Pace, replay};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::identity::Medium;
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::{EpochSalt, SaltAnnouncement, SensorId};
use crowdflow_simulator::Frame;
use crowdflow_simulator::pcapng::PcapngWriter;
use crowdflow_simulator::{Scenario, Simulation, write_files};
use jiff::{SignedDuration, Timestamp};

fn written() -> (tempfile::TempDir, crowdflow_simulator::Written) {
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

// The agent's replay of a capture as if live (`source = "pcap"`): it waits for a salt, then
// counts every frame of the file (started at once, its first frames raced the salt).

fn probes(path: &std::path::Path, count: u8) {
    let file = File::create(path).expect("create");
    let mut writer = PcapngWriter::new(std::io::BufWriter::new(file)).expect("header");
    for i in 0..count {
        let frame = Frame {
            t_us: 1_000_000 + i64::from(i) * 10_000,
            sensor: 0,
            medium: Medium::Wifi,
            address: [0x00, 0x1b, 0x63, 0x84, 0x45, i],
            rssi: -50,
            phone: None,
            seq: u16::from(i),
            burst: u32::from(i),
            device: u32::from(i),
        };
        writer.write(&frame).expect("frame");
    }
}

fn counter() -> Arc<Mutex<Counter>> {
    let windows = Windows::new(
        WindowLength::new(60).expect("60 s"),
        Precision::DEFAULT,
        vec![Kind::Wifi, Kind::WifiRandom],
    );
    Arc::new(Mutex::new(Counter::new(
        SensorId::new("s1").expect("valid"),
        windows,
    )))
}

#[test]
fn a_replay_waits_for_the_salt_and_then_counts_every_frame() {
    let dir = tempfile::tempdir().expect("tmp");
    let pcap = dir.path().join("probes.pcapng");
    probes(&pcap, 5);
    let counter = counter();
    let replay = replay_as_live(vec![pcap], false, FramePolicy::default(), counter.clone());
    std::thread::sleep(Duration::from_millis(300));
    {
        let c = counter.lock().expect("counter");
        assert_eq!(
            c.counted(Kind::Wifi) + c.without_salt(),
            0,
            "nothing replayed yet"
        );
    }
    let now = Timestamp::now();
    let salt = EpochSalt {
        epoch: "2026-04-27".parse().expect("epoch"),
        starts: now - SignedDuration::from_hours(1),
        ends: now + SignedDuration::from_hours(1),
        salt: Salt::generate().expect("entropy"),
    };
    let announcement = SaltAnnouncement {
        authority: "agg".into(),
        issued_at: now,
        salts: vec![salt],
    };
    counter
        .lock()
        .expect("counter")
        .accept_salts(announcement, now);
    replay.join().expect("replay ends");
    let c = counter.lock().expect("counter");
    assert_eq!((c.counted(Kind::Wifi), c.without_salt()), (5, 0));
}
