//! The agent's physical-device estimate against the simulator's true devices: the
//! three-squares hour written as pcapng (phone models with their capability elements, iOS-like
//! addresses per burst, Android-like per interval), replayed per sensor in one-minute windows
//! as `crowdflow-agent replay --window 1m` does, each window's `devices.wifi` compared with the
//! distinct Wi-Fi devices the sensor heard in that window.
//!
//! What is asserted: every sensor reads within +-15 % of its heard devices in at least 85 %
//! of its minutes, and no sensor overcounts by more than 15 % in more than 5 % of them. The
//! squares' sensors (hundreds of phones a minute, a few models each many times over) run as
//! installed by default (`capture.device_count = "auto"`: their minutes read as crowds,
//! through scans over the learned cadence; concurrency alone read a sixth). The bridge, a
//! passage a few people of each model cross, runs as its installer would set it
//! (`device_count = "scans"`): its hour's 84 recurring addresses teach that rule a cadence
//! (70 needed; `auto` needs 100 and reads the bridge by concurrency, about half its devices:
//! printed, not asserted).
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crowdflow_agent::counting::devices::DeviceRule;
use crowdflow_agent::frame::FramePolicy;
use crowdflow_agent::replay::{Pace, replay_windows};
use crowdflow_contract::identity::{Kind, Medium};
use crowdflow_contract::window::WindowLength;
use crowdflow_simulator::{Frame, Scenario, Simulation, write_files};

/// (sensor, minute start in unix seconds) -> devices heard.
type Heard = BTreeMap<(usize, i64), HashSet<u32>>;

fn scenario() -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/three-squares.toml"))
        .expect("three-squares")
}

/// Per sensor and minute: the Wi-Fi devices it heard, and those of them whose carrier was
/// in the sensor's zone then.
fn truth(s: &Scenario) -> (Heard, Heard) {
    let mut sim = Simulation::new(s.clone());
    let mut frames: Vec<Frame> = Vec::new();
    sim.advance(s.end.as_microsecond(), &mut frames);
    let (mut all, mut zone) = (Heard::new(), Heard::new());
    for f in frames.iter().filter(|f| f.medium == Medium::Wifi) {
        let minute = (f.t_us / 1_000_000).div_euclid(60) * 60;
        all.entry((f.sensor, minute)).or_default().insert(f.device);
        if sim.device_zone(f.device, f.t_us) == Some(s.sensors[f.sensor].zone) {
            zone.entry((f.sensor, minute)).or_default().insert(f.device);
        }
    }
    (all, zone)
}

#[test]
fn the_device_estimate_against_the_true_devices_per_window() {
    let s = scenario();
    let dir = tempfile::tempdir().expect("tmp");
    write_files(Simulation::new(s.clone()), dir.path()).expect("pcapng");
    let (all, zone) = truth(&s);
    // heard_minutes.csv gives a user the same truth.
    let csv = std::fs::read_to_string(dir.path().join("heard_minutes.csv")).expect("csv");
    let mut rows = 0;
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let i = s.sensors.iter().position(|x| x.id == f[0]).expect("sensor");
        let minute: jiff::Timestamp = f[1].parse().expect("minute");
        let wifi: usize = f[2].parse().expect("wifi devices");
        let expected = all.get(&(i, minute.as_second())).map_or(0, HashSet::len);
        assert_eq!(wifi, expected, "{line}");
        rows += usize::from(wifi > 0);
    }
    assert_eq!(
        rows,
        all.len(),
        "a row for every sensor-minute with Wi-Fi heard"
    );
    let mut per_sensor: Vec<(String, Vec<f64>)> = Vec::new();
    let mut bridge_by_default = Vec::new();
    let mut ratios_zone = Vec::new();
    let mut ratios_addresses = Vec::new();
    for (i, sensor) in s.sensors.iter().enumerate() {
        let path = dir.path().join(format!("{}.pcapng", sensor.id));
        let replay = |devices| {
            let policy = FramePolicy {
                devices,
                ..FramePolicy::default()
            };
            let one_minute = Some(WindowLength::new(60).expect("1 min"));
            replay_windows(std::slice::from_ref(&path), &policy, Pace::Fast, one_minute)
                .expect("replay")
        };
        let passage = sensor.id.starts_with("bridge");
        if passage {
            for w in replay(DeviceRule::Auto).windows.expect("windows") {
                let a = all.get(&(i, w.start.as_second())).map_or(0, HashSet::len);
                if a >= 10 {
                    bridge_by_default.push(w.devices.wifi.estimate / a as f64);
                }
            }
        }
        let report = replay(if passage {
            DeviceRule::Scans
        } else {
            DeviceRule::Auto
        });
        let mut ratios = Vec::new();
        for w in report.windows.expect("windows") {
            let minute = w.start.as_second();
            let estimate = w.devices.wifi.estimate;
            let z = zone.get(&(i, minute)).map_or(0, HashSet::len);
            let a = all.get(&(i, minute)).map_or(0, HashSet::len);
            if z >= 10 {
                ratios_zone.push(estimate / z as f64);
            }
            if a >= 10 {
                ratios.push(estimate / a as f64);
                let addresses: f64 = [Kind::Wifi, Kind::WifiRandom]
                    .iter()
                    .filter_map(|k| w.distinct.get(k))
                    .map(|e| e.estimate)
                    .sum();
                ratios_addresses.push(addresses / a as f64);
            }
        }
        per_sensor.push((sensor.id.to_string(), ratios));
    }
    let within = |r: &[f64]| r.iter().filter(|x| (0.85..=1.15).contains(*x)).count();
    let summary = |name: &str, r: &mut Vec<f64>| {
        r.sort_by(f64::total_cmp);
        eprintln!(
            "{name}: {} windows, ratio p10 {:.2} median {:.2} p90 {:.2}, within +-15 %: {} ({:.0} %)",
            r.len(),
            r[r.len() / 10],
            r[r.len() / 2],
            r[r.len() * 9 / 10],
            within(r),
            100.0 * within(r) as f64 / r.len() as f64
        );
    };
    let mut squares = Vec::new();
    let mut heard = Vec::new();
    for (id, ratios) in &mut per_sensor {
        summary(&format!("{id}, heard devices"), ratios);
        let over = ratios.iter().filter(|r| **r > 1.15).count();
        assert!(
            over * 20 <= ratios.len(),
            "{id}: {over} of {} windows count more than 115 % of the devices heard",
            ratios.len()
        );
        assert!(
            within(ratios) * 100 >= ratios.len() * 85,
            "{id} reads its heard devices within +-15 % in {} of {} minutes",
            within(ratios),
            ratios.len()
        );
        heard.extend_from_slice(ratios);
        if !id.starts_with("bridge") {
            squares.extend_from_slice(ratios);
        }
    }
    summary(
        "bridge-1 with device_count = \"auto\"",
        &mut bridge_by_default,
    );
    summary("squares' sensors, heard devices", &mut squares);
    summary("every sensor, heard devices", &mut heard);
    summary("every sensor, devices in its zone", &mut ratios_zone);
    summary(
        "addresses, against all heard devices",
        &mut ratios_addresses,
    );
}
