//! The README's main command as a user runs it: `crowdflow-demo` with the exact
//! options the acceptance checks use. Live numbers at GET /api/v1/zones within two minutes
//! (the morning is written into history first), people within +-25 % of the simulated crowd,
//! every file under --data, no device address in any of them or in the output, and Ctrl-C
//! stops everything cleanly.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use crowdflow_aggregator::live::settled_end;
use crowdflow_demo::KONINGSDAG;
use crowdflow_simulator::{Scenario, Simulation};
use crowdflow_tests::{
    Proc, assert_no_addresses, files_below, free_port, http_get, wait_for_port, workspace_binary,
};
use jiff::Timestamp;
use serde_json::Value;

/// The README's demo command in `dir` with its data under `data`, on free ports (returned:
/// HTTP, MQTT), with `extra` options.
fn demo_command(dir: &Path, data: &Path, extra: &[&str]) -> (Command, u16, u16) {
    let (http, mqtt) = (free_port(), free_port());
    let mut command = Command::new(workspace_binary("crowdflow-demo"));
    command
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--mqtt-port", &mqtt.to_string()])
        .args(extra)
        .arg("--data")
        .arg(data)
        .current_dir(dir);
    (command, http, mqtt)
}

#[test]
fn the_demo_goes_live_mid_event_with_true_people_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("demo-data");
    let (command, http, mqtt) = demo_command(dir.path(), &data, &[]);
    let started = Instant::now();
    let mut demo = Proc::spawn_capturing(command, "demo");
    assert!(
        wait_for_port(http, Duration::from_secs(20)),
        "{}",
        String::from_utf8_lossy(&demo.output())
    );
    // A monitoring system's TCP check of the broker port: no error in the log for it.
    assert!(
        wait_for_port(mqtt, Duration::from_secs(20)),
        "the embedded broker listens"
    );
    // The morning is written and calibrated first (minutes with debug binaries); the demo
    // prints its URLs when it goes live.
    let out = wait_for_output(&demo, &format!("http://127.0.0.1:{http}/"), 600);
    let live = Instant::now();
    assert!(
        out.contains("writing the event so far into history: 100 %"),
        "the morning is written first: {out}"
    );
    assert!(out.contains("calibrating"), "and calibrated: {out}");
    let mut busiest = 0.0;
    while live.elapsed() < Duration::from_secs(60) && busiest == 0.0 {
        std::thread::sleep(Duration::from_secs(2));
        let Ok(body) = http_get(http, "/api/v1/zones") else {
            continue;
        };
        let Ok(zones) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        busiest = zones
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|z| z["total_devices"]["estimate"].as_f64())
            .fold(0.0, f64::max);
    }
    eprintln!(
        "live after {:?}, numbers {:?} later: busiest zone {busiest:.0} devices",
        live - started,
        live.elapsed()
    );
    assert!(
        busiest > 0.0,
        "no live numbers within 60 s of going live\n{}",
        String::from_utf8_lossy(&demo.output())
    );
    // The dashboard (scripts/test.sh builds it first), or the page saying how to build it.
    let index = http_get(http, "/").expect("GET /");
    assert!(
        index.contains("src=\"/assets/app-") || index.contains("npm run build"),
        "{index}"
    );
    people_follow_the_crowd(http, 1.0);

    // Ctrl-C.
    let pid = demo.child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = demo.child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = status.unwrap_or_else(|| panic!("still running 20 s after Ctrl-C"));
    assert!(
        status.success(),
        "exit {status}\n{}",
        String::from_utf8_lossy(&demo.output())
    );
    // Starting and stopping are not failures: nothing is logged as an error.
    let log = String::from_utf8_lossy(&demo.output()).into_owned();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "errors logged by a clean run:\n{}",
        errors.join("\n")
    );

    let files: Vec<_> = files_below(dir.path())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        files.iter().all(|p| p.starts_with(&data)),
        "files outside --data: {files:?}"
    );
    assert!(data.join("crowdflow.db").exists() && data.join("aggregator.toml").exists());
    // Privacy: the addresses the simulated crowd sent appear in no file and not in the output.
    let addresses = early_addresses();
    for (path, bytes) in files_below(&data) {
        assert_no_addresses(&bytes, &addresses, &path.display().to_string());
    }
    assert_no_addresses(&demo.output(), &addresses, "the demo's output");
}

/// Distinct addresses the sensors heard in the scenario's first 20 minutes (sent in the
/// morning the demo writes into history), at most 20,000.
fn early_addresses() -> Vec<[u8; 6]> {
    let scenario =
        Scenario::parse(KONINGSDAG, std::path::Path::new("koningsdag.toml")).expect("scenario");
    let until = (scenario.start + jiff::SignedDuration::from_mins(20)).as_microsecond();
    let mut sim = Simulation::new(scenario);
    let mut frames = Vec::new();
    sim.advance(until, &mut frames);
    let mut seen = std::collections::BTreeSet::new();
    for f in &frames {
        if seen.len() >= 20_000 {
            break;
        }
        seen.insert(f.address);
    }
    assert!(seen.len() > 100, "{} addresses heard", seen.len());
    seen.into_iter().collect()
}

/// Another program on the demo's MQTT port (here a plain listener standing in for a broker):
/// the demo refuses to start, names the option, and none of its simulated sensors connects
/// to that program.
#[test]
fn the_demo_refuses_a_port_another_program_holds_before_any_sensor_connects() {
    let dir = tempfile::tempdir().expect("tmp");
    let (http, mqtt) = (free_port(), free_port());
    let squatter = std::net::TcpListener::bind(("127.0.0.1", mqtt)).expect("bind");
    squatter.set_nonblocking(true).expect("nonblocking");
    let status = Command::new(workspace_binary("crowdflow-demo"))
        .args([
            "--http",
            &format!("127.0.0.1:{http}"),
            "--mqtt-port",
            &mqtt.to_string(),
            "--data",
        ])
        .arg(dir.path().join("demo-data"))
        .output()
        .expect("crowdflow-demo runs");
    assert!(
        !dir.path().join("demo-data").exists(),
        "nothing is written before the ports are checked"
    );
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{mqtt} is in use by another program"))
            && stderr.contains("--mqtt-port"),
        "{stderr}"
    );
    assert!(
        squatter.accept().is_err(),
        "a simulated sensor connected to the other program"
    );
}

/// The demo's output once it holds `needle` (or after `seconds`).
fn wait_for_output(demo: &Proc, needle: &str, seconds: u64) -> String {
    let started = Instant::now();
    loop {
        let out = String::from_utf8_lossy(&demo.output()).into_owned();
        if out.contains(needle) || started.elapsed() > Duration::from_secs(seconds) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Fast-forwarded (`--speed 10`), the demo calibrates on its compressed morning, whose
/// stored minutes hold ten simulated ones as the live minutes do: its people are as true as
/// in real time.
#[test]
fn fast_forwarded_the_demo_calibrates_on_its_own_minutes_and_keeps_people_true() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("demo-data");
    let (command, http, _) =
        demo_command(dir.path(), &data, &["--speed", "10", "--start", "11:00"]);
    let demo = Proc::spawn_capturing(command, "demo");
    let out = wait_for_output(&demo, &format!("http://127.0.0.1:{http}/"), 600);
    assert!(
        out.contains("calibrating") && !out.contains("calibration refused"),
        "calibrated at 10x: {out}"
    );
    // Two live minutes: the occupancy window (one real minute, ten simulated) fills.
    std::thread::sleep(Duration::from_secs(120));
    people_follow_the_crowd(http, 10.0);
    // Sensors writing the morning, then catching up, are behind, not silent: no zone was
    // announced stale (with 10 s windows the silence limit is 35 s; writing took longer).
    let alerts = http_get(http, "/api/v1/alerts").expect("alerts");
    assert!(!alerts.contains("\"stale\""), "false staleness: {alerts}");
}

/// Too fast for its morning, the demo refuses before it writes or binds anything, saying
/// what would do: at 60x a live minute holds an hour, which only a calibration fits.
#[test]
fn a_fast_forward_without_the_morning_to_calibrate_on_is_refused_with_what_would_do() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("demo-data");
    let (mut command, http, _) = demo_command(dir.path(), &data, &["--speed", "60"]);
    let out = command.output().expect("the demo runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    // Koningsdag from 09:00, live at 14:00 (or the real clock's minute of it: the default
    // live moment at 60x is 14:00): five hours, seven needed.
    assert!(
        text.contains("needs 420 simulated minutes")
            && text.contains("go live at 16:00 or later (--start)")
            && text.contains("--speed 42 or slower"),
        "{text}"
    );
    assert!(!data.exists(), "nothing written");
    assert!(
        !wait_for_port(http, Duration::from_millis(200)),
        "nothing bound"
    );
}

/// Each zone's live people against the simulator's true persons (the mean over the
/// simulated minutes of the occupancy window's real minutes: five at 1x), at several
/// moments of the live minutes: within +-25 % (or 10 persons, for a nearly empty zone),
/// and inside the 95 % interval in at least 90 % of the readings; their sum never above the
/// day's attendance.
fn people_follow_the_crowd(http: u16, expected_speed: f64) {
    let scenario =
        Scenario::parse(KONINGSDAG, std::path::Path::new("koningsdag.toml")).expect("scenario");
    let sim = Simulation::new(scenario);
    let attendance = sim.size().0 as f64;
    let truth: BTreeMap<(String, i64), f64> = sim
        .truth()
        .into_iter()
        .map(|r| ((r.zone, r.minute.as_second()), f64::from(r.persons)))
        .collect();
    let plan: Value =
        serde_json::from_str(&http_get(http, "/api/v1/plan").expect("plan")).expect("plan json");
    let clock = &plan["replay_clock"];
    let at = |key: &str| -> Timestamp { clock[key].as_str().expect(key).parse().expect(key) };
    let (real, shows) = (at("real"), at("shows"));
    let speed = clock["speed"].as_f64().expect("speed");
    assert_eq!(
        speed, expected_speed,
        "the demo runs at the speed asked for"
    );
    // The simulated second shown at real second `t`.
    let simulated = |t: i64| shows.as_second() + ((t - real.as_second()) as f64 * speed) as i64;
    let mut checked = 0;
    let mut misses = Vec::new();
    let mut outside = Vec::new();
    for _ in 0..4 {
        let zones: Value =
            serde_json::from_str(&http_get(http, "/api/v1/zones").expect("zones")).expect("json");
        let now = Timestamp::now().as_second();
        let mut sum = 0.0;
        for z in zones.as_array().expect("zones") {
            let id = z["id"].as_str().expect("id").to_owned();
            let window = z["window_min"].as_i64().expect("window");
            // The occupancy window's real minutes end at the settled minutes of the moment
            // the figures were computed (a reading taken as a minute turns, or on a starved
            // machine, is seconds older than the request).
            let updated: Timestamp = z["updated_at"]
                .as_str()
                .expect("updated_at")
                .parse()
                .expect("updated_at");
            let last_data = z["last_data"].as_str().and_then(|t| t.parse().ok());
            let real_minute = settled_end(updated, last_data).as_second();
            let (from, to) = (simulated(real_minute - window * 60), simulated(real_minute));
            let minutes: Vec<f64> = (from.div_euclid(60)..to.div_euclid(60))
                .map(|m| truth.get(&(id.clone(), m * 60)).copied().unwrap_or(0.0))
                .collect();
            let true_mean = minutes.iter().sum::<f64>() / minutes.len().max(1) as f64;
            let people = z["people"]["estimate"].as_f64().expect("people");
            if checked < zones.as_array().map_or(0, Vec::len) {
                eprintln!("  {id}: {people:.0} people, truly {true_mean:.0}");
            }
            sum += people;
            checked += 1;
            if (people - true_mean).abs() > (0.25 * true_mean).max(10.0) {
                misses.push(format!("{id}: {people:.0} people, truly {true_mean:.0}"));
            }
            let (lower, upper) = (
                z["people"]["lower"].as_f64().expect("lower"),
                z["people"]["upper"].as_f64().expect("upper"),
            );
            assert!(
                lower <= people && people < upper,
                "{id}: an interval, not a point: {z}"
            );
            if !(lower <= true_mean && true_mean <= upper) {
                outside.push(format!(
                    "{id}: {people:.0} ({lower:.0}-{upper:.0}) people, truly {true_mean:.0}"
                ));
            }
        }
        assert!(
            sum <= attendance,
            "zones hold {sum:.0} people, the day {attendance:.0}"
        );
        eprintln!(
            "simulated {}: zones hold {sum:.0} people",
            Timestamp::from_second(simulated(now)).expect("ts")
        );
        std::thread::sleep(Duration::from_secs(20));
    }
    assert!(
        misses.is_empty(),
        "{} of {checked} zone readings off by more than 25 %:\n{}",
        misses.len(),
        misses.join("\n")
    );
    eprintln!(
        "the 95 % interval holds the truth in {} of {checked} readings",
        checked - outside.len()
    );
    assert!(
        outside.len() * 10 <= checked,
        "the truth outside the interval in {} of {checked} readings:\n{}",
        outside.len(),
        outside.join("\n")
    );
}
