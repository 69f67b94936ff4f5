//! The agent's physical-device estimate against the simulator's true devices: the
//! three-squares hour written as pcapng (phone models with their capability elements, iOS-like
//! addresses per burst, Android-like per interval), replayed per sensor in one-minute windows
//! as `crowdflow-agent replay --window 1m` does, each window's `devices.wifi` compared with the
//! distinct Wi-Fi devices of the sensor's zone that it heard in that window.
//!
//! What holds, and is asserted: the estimate never counts a device twice (grouping by the
//! capability elements works on the simulated frames: addresses alone read 1.3 times the
//! devices here). What does not yet: a crowd of one model whose phones take a new address
//! per scan burst reads as the largest number of its addresses active at one moment, far
//! fewer than its phones (the estimator's documented limit); the figures are printed.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

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
    let mut ratios_zone = Vec::new();
    let mut ratios_all = Vec::new();
    let mut ratios_addresses = Vec::new();
    for (i, sensor) in s.sensors.iter().enumerate() {
        let path = dir.path().join(format!("{}.pcapng", sensor.id));
        let report = replay_windows(
            &[path],
            &FramePolicy::default(),
            Pace::Fast,
            Some(WindowLength::new(60).expect("1 min")),
        )
        .expect("replay");
        for w in report.windows.expect("windows") {
            let minute = w.start.as_second();
            let estimate = w.devices.wifi.estimate;
            let z = zone.get(&(i, minute)).map_or(0, HashSet::len);
            let a = all.get(&(i, minute)).map_or(0, HashSet::len);
            if z >= 10 {
                ratios_zone.push(estimate / z as f64);
            }
            if a >= 10 {
                ratios_all.push(estimate / a as f64);
                let addresses: f64 = [Kind::Wifi, Kind::WifiRandom]
                    .iter()
                    .filter_map(|k| w.distinct.get(k))
                    .map(|e| e.estimate)
                    .sum();
                ratios_addresses.push(addresses / a as f64);
            }
        }
    }
    let summary = |name: &str, r: &mut Vec<f64>| {
        r.sort_by(f64::total_cmp);
        let within = r.iter().filter(|x| (0.85..=1.15).contains(*x)).count();
        eprintln!(
            "{name}: {} windows, ratio p10 {:.2} median {:.2} p90 {:.2}, within +-15 %: {:.0} %",
            r.len(),
            r[r.len() / 10],
            r[r.len() / 2],
            r[r.len() * 9 / 10],
            100.0 * within as f64 / r.len() as f64
        );
    };
    summary("zone devices", &mut ratios_zone);
    summary("all heard devices", &mut ratios_all);
    summary(
        "addresses, against all heard devices",
        &mut ratios_addresses,
    );
    // Never above the devices heard (a lower bound), beyond the sketch's error.
    let over = ratios_all.iter().filter(|r| **r > 1.1).count();
    assert!(
        over * 100 <= ratios_all.len(),
        "{over} of {} windows count more devices than were heard",
        ratios_all.len()
    );
}
