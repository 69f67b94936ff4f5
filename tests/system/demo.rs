//! The README's main command as a user runs it: `crowdflow-demo` with the exact
//! options the acceptance checks use. Live numbers at GET /api/v1/zones within 60 s, every
//! file under --data, and Ctrl-C stops everything cleanly.

use std::process::Command;
use std::time::{Duration, Instant};

use crowdflow_tests::{Proc, files_below, free_port, http_get, wait_for_port, workspace_binary};
use serde_json::Value;

#[test]
fn the_demo_shows_live_zones_within_a_minute_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("demo-data");
    let (http, mqtt) = (free_port(), free_port());
    let mut command = Command::new(workspace_binary("crowdflow-demo"));
    command
        .args([
            "--http",
            &format!("127.0.0.1:{http}"),
            "--mqtt-port",
            &mqtt.to_string(),
            "--data",
        ])
        .arg(&data)
        .current_dir(dir.path());
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
    let mut busiest = 0.0;
    while started.elapsed() < Duration::from_secs(60) && busiest == 0.0 {
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
    let seen_after = started.elapsed();
    eprintln!("first live numbers after {seen_after:?}: busiest zone {busiest:.0} devices");
    assert!(
        busiest > 0.0,
        "no live numbers within 60 s\n{}",
        String::from_utf8_lossy(&demo.output())
    );
    // The dashboard (scripts/test.sh builds it first), or the page saying how to build it.
    let index = http_get(http, "/").expect("GET /");
    assert!(
        index.contains("src=\"/assets/app-") || index.contains("npm run build"),
        "{index}"
    );
    let out = String::from_utf8_lossy(&demo.output()).into_owned();
    assert!(
        out.contains(&format!("http://127.0.0.1:{http}/")),
        "prints its URL: {out}"
    );

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
