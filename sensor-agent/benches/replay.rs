//! Replay throughput and peak memory of `crowdflow-agent replay` against tshark counting
//! distinct probe-request sources, on the same generated 1M-frame radiotap capture, in one
//! run. Prints a table. `cargo bench -p crowdflow-agent --bench replay`
//! (`CROWDFLOW_BENCH_FRAMES=N` changes the size).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crowdflow_contract::identity::{Medium, hash_device, hash_devices};
use crowdflow_contract::salt::Salt;

/// Writes a radiotap pcap: 70 % probe requests from `devices` addresses (a third of them
/// randomized), 30 % beacons and data frames that must not count.
fn generate(path: &Path, frames: u64, devices: u64) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0])?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&127u32.to_le_bytes())?;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut frame = Vec::with_capacity(128);
    for i in 0..frames {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        frame.clear();
        // radiotap: version, pad, len 12, present = Flags | dBm signal, flags, pad, signal
        frame.extend_from_slice(&[
            0,
            0,
            12,
            0,
            0x22,
            0,
            0,
            0,
            0,
            0,
            (-40 - (rng % 50) as i8) as u8,
            0,
        ]);
        let device = rng % devices;
        let mut sa = (device * 0x9E37_79B9_7F4A).to_be_bytes();
        sa[2] = if device.is_multiple_of(3) { 0x02 } else { 0x00 } | (sa[2] & 0xfc);
        let kind = rng % 10;
        let fc = match kind {
            0..=6 => [0x40, 0x00], // probe request
            7 | 8 => [0x80, 0x00], // beacon
            _ => [0x08, 0x02],     // data from the AP
        };
        frame.extend_from_slice(&fc);
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&sa[2..8]);
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&((i as u16) << 4).to_le_bytes());
        // SSID (wildcard), supported rates, a vendor element: a typical probe body
        frame.extend_from_slice(&[0, 0, 1, 8, 0x82, 0x84, 0x8b, 0x96, 0x0c, 0x12, 0x18, 0x24]);
        frame.extend_from_slice(&[0xdd, 9, 0x00, 0x50, 0xf2, 0x08, 0, 0x10, 0, 0, 0]);
        let secs = 1_777_284_000 + (i / 10_000) as u32;
        out.write_all(&secs.to_le_bytes())?;
        out.write_all(&(((i % 10_000) * 100) as u32).to_le_bytes())?;
        out.write_all(&(frame.len() as u32).to_le_bytes())?;
        out.write_all(&(frame.len() as u32).to_le_bytes())?;
        out.write_all(&frame)?;
    }
    out.flush()
}

/// Peak RSS (VmHWM) of a running child, polled until it exits; MiB.
fn wait_with_peak(mut child: Child) -> (std::process::ExitStatus, f64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0.0f64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return (status, peak_kib / 1024.0);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Row {
    tool: &'static str,
    seconds: f64,
    distinct: f64,
    rss_mib: f64,
}

/// Runs of the agent per row: its replay lasts a few tenths of a second, where a busy
/// machine's scheduling moves one run by a quarter; the median of five does not move so.
/// (tshark's run lasts half a minute: one is enough.)
const AGENT_RUNS: usize = 5;

/// The agent's replay, the run of median time of [`AGENT_RUNS`]; with `window`, per window
/// with the physical-device estimate on.
fn agent(file: &Path, window: Option<&str>, one_core: bool) -> Option<Row> {
    let mut runs: Vec<Row> = (0..AGENT_RUNS)
        .map(|_| agent_once(file, window, one_core))
        .collect::<Option<_>>()?;
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Some(runs.swap_remove(AGENT_RUNS / 2))
}

/// One replay; `one_core` pins it to the first core (`taskset -c 0`; `None` without taskset).
fn agent_once(file: &Path, window: Option<&str>, one_core: bool) -> Option<Row> {
    let agent = env!("CARGO_BIN_EXE_crowdflow-agent");
    let mut command = if one_core {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", agent]);
        c
    } else {
        Command::new(agent)
    };
    let started = Instant::now();
    let child = command
        .args(["replay", "--json", "--pcap"])
        .arg(file)
        .args(window.map(|w| ["--window", w]).into_iter().flatten())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let out = child.wait_with_output().expect("agent output");
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let distinct = v["distinct"]["wifi"]["estimate"].as_f64().unwrap_or(0.0)
        + v["distinct"]["wifi_random"]["estimate"]
            .as_f64()
            .unwrap_or(0.0);
    Some(Row {
        tool: match (window.is_some(), one_core) {
            (true, false) => {
                "crowdflow-agent replay --window 60s (device estimate on), median of 5 runs"
            }
            (true, true) => "the same on one core (taskset -c 0), median of 5 runs",
            (false, _) => "crowdflow-agent replay, median of 5 runs",
        },
        seconds,
        distinct,
        rss_mib: v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
    })
}

fn tshark(file: &Path) -> Option<Row> {
    let started = Instant::now();
    let mut child = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args([
            "-Y",
            "wlan.fc.type_subtype==4",
            "-T",
            "fields",
            "-e",
            "wlan.sa",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.is_empty())
            .collect::<HashSet<String>>()
            .len()
    });
    let (status, rss_mib) = wait_with_peak(child);
    let distinct = reader.join().ok()? as f64;
    status.success().then_some(Row {
        tool: "tshark -Y probe requests, distinct wlan.sa",
        seconds: started.elapsed().as_secs_f64(),
        distinct,
        rss_mib,
    })
}

/// Keyed hashes of a device address per second on one core, one at a time
/// ([`hash_device`], the live agent's path) and sixteen to a compression ([`hash_devices`],
/// the replay's): the most a replay that hashes every frame's address could reach, whatever
/// its parsing costs.
fn hash_limits(n: u64) -> (f64, f64) {
    let salt = Salt::generate().expect("salt");
    let address = |i: u64| {
        let b = i.to_le_bytes();
        [0x02, b[0], b[1], b[2], b[3], b[4]]
    };
    let started = Instant::now();
    for i in 0..n {
        std::hint::black_box(hash_device(
            &salt,
            Medium::Wifi,
            std::hint::black_box(&address(i)),
        ));
    }
    let one = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(256);
    let mut hashes = Vec::with_capacity(256);
    for first in (0..n).step_by(256) {
        batch.clear();
        batch.extend((first..n.min(first + 256)).map(|i| (Medium::Wifi, address(i))));
        hashes.clear();
        hash_devices(&salt, std::hint::black_box(&batch), &mut hashes);
        std::hint::black_box(&hashes);
    }
    (one, n as f64 / started.elapsed().as_secs_f64())
}

fn main() {
    let frames: u64 = std::env::var("CROWDFLOW_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let file = dir.join(format!("bench-replay-{frames}.pcap"));
    if !file.exists() {
        generate(&file, frames, 50_000).expect("write capture");
    }
    let size_mb = std::fs::metadata(&file)
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);
    println!(
        "\n## Replay of {frames} radiotap frames ({size_mb:.0} MB, 50k devices, 70 % probe requests)\n"
    );
    let ours = agent(&file, None, false).expect("the agent runs");
    let windowed = agent(&file, Some("60s"), false).expect("the agent runs");
    let one_core = agent(&file, Some("60s"), true);
    let theirs = tshark(&file);
    println!("| tool | seconds | frames/s | distinct sources | peak RSS |");
    println!("|---|---|---|---|---|");
    for row in [&ours, &windowed]
        .into_iter()
        .chain(one_core.as_ref())
        .chain(theirs.as_ref())
    {
        println!(
            "| {} | {:.2} | {:.2} M | {:.0} | {:.1} MiB |",
            row.tool,
            row.seconds,
            frames as f64 / row.seconds / 1e6,
            row.distinct,
            row.rss_mib
        );
    }
    let (one, lanes) = hash_limits(frames);
    println!(
        "\nThe hash limit (keyed BLAKE3 of one address per frame, nothing else, this machine): {:.2} M/s one at a time, {:.2} M/s sixteen to a compression (SIMD lanes, as replay hashes); the replay runs at {:.0} % of the latter.",
        one / 1e6,
        lanes / 1e6,
        100.0 * frames as f64 / ours.seconds / lanes
    );
    match theirs {
        Some(t) => {
            for row in [&ours, &windowed] {
                println!(
                    "\n{} is {:.0}x faster than tshark ({:.2} M frames/s; replay reads on one \
                     thread and counts on a second, and groups the windows on every core; \
                     tshark reads on one).",
                    row.tool,
                    t.seconds / row.seconds,
                    frames as f64 / row.seconds / 1e6,
                );
            }
            if let Some(row) = &one_core {
                println!(
                    "\nOn one core, the windowed replay is {:.0}x faster than tshark ({:.2} M frames/s).",
                    t.seconds / row.seconds,
                    frames as f64 / row.seconds / 1e6,
                );
            }
        }
        None => {
            println!("\ntshark not found: install it (apt-get install tshark) for the comparison.")
        }
    }
}
