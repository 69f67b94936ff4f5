//! The whole system at ten times Koningsdag: the demo's crowd with ten times the visitors
//! (640,000 people), on this machine. Prints a table.
//!
//!   cargo build --release -p crowdflow-agent -p crowdflow-aggregator
//!   cargo bench -p crowdflow-demo --bench scale
//!
//! Phase 1 (agent): the simulator writes the first 20 simulated minutes of the 10x crowd as
//! capture files; `crowdflow-agent replay` counts the busiest sensor's file as a child
//! process: frames per second and peak RSS.
//!
//! Phase 2 (system): `crowdflow-aggregator run` as a child process (embedded broker, SQLite,
//! the demo's settings) and the 13 sensors' agents in this process, fed live by the simulator
//! at 60 simulated seconds per real second for CROWDFLOW_SCALE_SECONDS (default 120):
//! sketch messages ingested per second and commit latency (from /metrics), end-to-end latency
//! from a window's end to its numbers in `/api/v1/zones` (polled every 100 ms), and peak RSS
//! of the aggregator process and of this process (13 agents plus the simulator).
//!
//! Soak: `CROWDFLOW_SCALE_SECONDS=3600` runs the system phase for an hour and prints the
//! RSS of the aggregator and of this process (agents and simulator) at the end of every real
//! minute (both should be flat after warm-up; the simulator builds each simulated day's
//! crowd anew, so this process steps at each day's start).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crowdflow_demo::{self as demo, CrowdFeed, DemoOptions, KONINGSDAG};
use crowdflow_simulator::{Scenario, Simulation, write_files};
use jiff::{SignedDuration, Timestamp};

const SCALE: u32 = 10;
const SPEED: f64 = 60.0;

fn scenario() -> Scenario {
    let mut s =
        Scenario::parse(KONINGSDAG, Path::new("koningsdag-utrecht.toml")).expect("scenario");
    for a in &mut s.arrivals {
        a.people *= SCALE;
    }
    s.name = format!("Koningsdag Utrecht x{SCALE}");
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// VmHWM of a process, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// VmRSS of a process now, MiB.
fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// A memory line of /proc/PID/status, MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// `name` of the same profile (another package's binary: cargo builds it for the workspace,
/// next to this bench's directory).
fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target dir");
    assert!(
        path.is_file(),
        "{} is missing: cargo build --release -p crowdflow-agent -p crowdflow-aggregator first",
        path.display()
    );
    path
}

/// Phase 1: (busiest sensor, frames, seconds, peak RSS MiB).
fn agent_phase(dir: &Path) -> (String, u64, f64, f64) {
    let mut s = scenario();
    s.end = s.start + SignedDuration::from_mins(20);
    let written = write_files(Simulation::new(s), dir).expect("capture files");
    let (sensor, heard) = written
        .heard
        .iter()
        .max_by_key(|(_, h)| h.wifi_frames + h.ble_frames)
        .expect("sensors");
    let file = dir.join(format!("{sensor}.pcapng"));
    let started = Instant::now();
    let mut child: Child = Command::new(binary("crowdflow-agent"))
        .args(["replay", "--json", "--pcap"])
        .arg(&file)
        .stdout(Stdio::null())
        .spawn()
        .expect("crowdflow-agent runs");
    let mut peak: f64 = 0.0;
    let status = loop {
        peak = peak.max(peak_rss_mib(child.id()));
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "replay failed");
    (
        sensor.clone(),
        heard.wifi_frames + heard.ble_frames,
        started.elapsed().as_secs_f64(),
        peak,
    )
}

/// A metric's value (summed over its label sets) in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The smallest histogram bucket bound holding `q` of the observations.
fn quantile(text: &str, name: &str, q: f64) -> f64 {
    let total = metric(text, &format!("{name}_count"));
    let bucket = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&bucket))
        .filter_map(|rest| {
            let (le, value) = rest.split_once("\"} ")?;
            Some((le.parse::<f64>().ok()?, value.parse::<f64>().ok()?))
        })
        .find(|(_, n)| *n >= q * total)
        .map_or(f64::NAN, |(le, _)| le)
}

struct System {
    seconds: f64,
    messages: f64,
    commit_p50: f64,
    commit_p99: f64,
    latencies: Vec<f64>,
    aggregator_rss: f64,
    agents_rss: f64,
    busiest: f64,
    /// The aggregator's and this process's (agents and simulator) RSS at the end of each
    /// real minute (the soak's flatness check).
    rss_by_minute: Vec<(f64, f64)>,
}

fn system_phase(dir: &Path, seconds: u64) -> System {
    let s = scenario();
    let (http, mqtt) = (free_port(), free_port());
    let options = DemoOptions {
        http: format!("127.0.0.1:{http}").parse().expect("addr"),
        mqtt_port: mqtt,
        data: dir.to_path_buf(),
        scenario: None,
        speed: SPEED,
        start: None,
    };
    std::fs::create_dir_all(dir).expect("data dir");
    let day = demo::Day {
        clock: demo::SimClock {
            sim_live_us: s.start.as_microsecond(),
            real_live: jiff::Timestamp::now(),
            speed: SPEED,
        },
        calibration: BTreeMap::new(),
        admin_token: None,
    };
    let config = dir.join("aggregator.toml");
    let mut access = demo::SensorAccess::for_scenario(&s).expect("entropy");
    std::fs::write(&config, demo::aggregator_text(&s, &options, &access, &day)).expect("config");
    // The key the aggregator will sign with (beside its config), pinned by the agents.
    let (key, _) =
        crowdflow_aggregator::salt::key_file::load_or_create(&dir.join("salt-signing.key"))
            .expect("signing key");
    access.trusted = crowdflow_contract::authority_key::TrustedKeys::new(vec![key.public_key()]);
    let mut aggregator = Command::new(binary("crowdflow-aggregator"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("crowdflow-aggregator runs");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut ears = Vec::new();
    for sensor in &s.sensors {
        let agent =
            demo::in_process_agent(&sensor.id, mqtt, dir, &access, 10).expect("agent config");
        let mut rx = stopped.clone();
        let (heard, running) = agent.start(async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        ears.push(heard);
        runtime.spawn(running);
    }
    let feed = CrowdFeed::start(s.clone(), SPEED, ears);
    let started = Instant::now();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut busiest: f64 = 0.0;
    let mut rss_by_minute = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() >= Duration::from_secs(60 * (rss_by_minute.len() as u64 + 1)) {
            rss_by_minute.push((rss_mib(aggregator.id()), rss_mib(std::process::id())));
        }
        let Some(body) = get(http, "/api/v1/zones") else {
            continue;
        };
        let Ok(serde_json::Value::Array(zones)) = serde_json::from_str(&body) else {
            continue;
        };
        let now = Timestamp::now();
        for z in zones {
            let (Some(id), Some(last)) = (z["id"].as_str(), z["last_data"].as_str()) else {
                continue;
            };
            busiest = busiest.max(z["total_devices"]["estimate"].as_f64().unwrap_or(0.0));
            if seen.get(id).is_some_and(|l| l == last) {
                continue;
            }
            let first = !seen.contains_key(id);
            seen.insert(id.to_owned(), last.to_owned());
            if let (false, Ok(end)) = (first, last.parse::<Timestamp>()) {
                latencies.push(now.duration_since(end).as_secs_f64());
            }
        }
    }
    let text = get(http, "/metrics").unwrap_or_default();
    let aggregator_rss = peak_rss_mib(aggregator.id());
    let agents_rss = peak_rss_mib(std::process::id());
    feed.stop();
    let _ = stop.send(true);
    runtime.shutdown_timeout(Duration::from_secs(5));
    let _ = Command::new("kill")
        .arg(aggregator.id().to_string())
        .status();
    let _ = aggregator.wait();
    System {
        seconds: started.elapsed().as_secs_f64(),
        messages: metric(&text, "crowdflow_ingest_accepted_total"),
        commit_p50: quantile(&text, "crowdflow_storage_commit_seconds", 0.5),
        commit_p99: quantile(&text, "crowdflow_storage_commit_seconds", 0.99),
        latencies,
        aggregator_rss,
        agents_rss,
        busiest,
        rss_by_minute,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let seconds = std::env::var("CROWDFLOW_SCALE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let dir = tempfile::tempdir().expect("tmp");
    println!(
        "scale benchmark: Koningsdag x{SCALE} ({} people)",
        scenario()
            .arrivals
            .iter()
            .map(|a| u64::from(a.people))
            .sum::<u64>()
    );
    let (sensor, frames, secs, agent_rss) = agent_phase(&dir.path().join("captures"));
    let system = system_phase(&dir.path().join("system"), seconds);
    let mut lat = system.latencies.clone();
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| agent replay, busiest sensor ({sensor}), 20 sim min | {frames} frames in {secs:.2} s = {:.0} frames/s |",
        frames as f64 / secs
    );
    println!("| agent replay peak RSS | {agent_rss:.1} MiB |");
    println!(
        "| system run | {:.0} s real = {:.0} simulated minutes, 13 agents, {SPEED}x |",
        system.seconds,
        system.seconds * SPEED / 60.0
    );
    println!(
        "| busiest zone seen | {:.0} devices in its window |",
        system.busiest
    );
    println!(
        "| sketch messages ingested | {:.0} ({:.1}/s) |",
        system.messages,
        system.messages / system.seconds
    );
    println!(
        "| commit latency p50 / p99 (bucket bound) | {:.3} s / {:.3} s |",
        system.commit_p50, system.commit_p99
    );
    println!(
        "| window end -> /api/v1/zones, {} updates | p50 {:.1} s, p90 {:.1} s, max {:.1} s |",
        lat.len(),
        pick(0.5),
        pick(0.9),
        pick(1.0)
    );
    println!(
        "| aggregator peak RSS (process) | {:.1} MiB |",
        system.aggregator_rss
    );
    println!(
        "| agents + simulator peak RSS (this process) | {:.1} MiB |",
        system.agents_rss
    );
    if system.rss_by_minute.len() > 1 {
        println!();
        println!("| real minute | aggregator RSS | agents + simulator RSS |");
        println!("|---|---|---|");
        for (minute, (aggregator, agents)) in system.rss_by_minute.iter().enumerate() {
            println!("| {} | {aggregator:.1} MiB | {agents:.1} MiB |", minute + 1);
        }
    }
}
