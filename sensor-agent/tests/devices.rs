//! Physical Wi-Fi devices per window (`replay --window`) against real truths: one known phone
//! per capture (probing-patterns), the same captures merged two and three at a time, and
//! hand head counts of a university lab (brno-lab, `occupancy_15min.csv`). Figures and the
//! method's research: `sensor-agent/research/README.md`.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use crowdflow_agent::capture::file::CaptureReader;
use crowdflow_agent::frame::{FcsRule, FramePolicy};
use crowdflow_agent::replay::{Pace, ReplayReport, replay_windows};
use crowdflow_contract::window::WindowLength;

const PHONES: [&str; 8] = [
    "OppoFindX3Neo-A",
    "iPhone11-B",
    "iPhone11-F",
    "iPhone11-M",
    "iPhone12-M",
    "iPhone12Pro-C",
    "iPhone7-F",
    "iPhoneXR-A",
];

const LAB_DAYS: [&str; 3] = [
    "sc6-61_2022-10-19",
    "sc6-61_2022-11-16",
    "sc6-61_2023-02-23",
];

/// The dataset's 14 all-in-one lab computers, background by its README.
const LAB_PCS: [[u8; 3]; 2] = [[0xdc, 0xfb, 0x48], [0x40, 0xec, 0x99]];

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/captures")
        .join(rel)
}

fn phone(name: &str) -> PathBuf {
    data(&format!("probing-patterns/{name}_anonymized.pcap"))
}

/// Every record of a radiotap capture: (time ns, bytes).
fn packets(path: &Path) -> Vec<(i64, Vec<u8>)> {
    let file = File::open(path).expect("capture");
    let mut reader = CaptureReader::new(BufReader::new(file)).expect("readable");
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet().expect("whole file") {
        out.push((p.ts_ns, p.data.to_vec()));
    }
    out
}

/// Writes a radiotap pcap (microseconds).
fn write_pcap(path: &Path, packets: &[(i64, Vec<u8>)]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&127u32.to_le_bytes());
    for (ts, data) in packets {
        let us = ts / 1000;
        out.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .expect("write pcap");
}

fn windows(paths: &[PathBuf], length_s: u64) -> ReplayReport {
    windows_under(paths, length_s, FramePolicy::default())
}

/// The probing-patterns captures' anonymizer rewrote addresses without recomputing the FCS
/// (tshark with checksum checking finds every one bad): they are read as plain tshark reads
/// them, FCS ignored (`replay --ignore-fcs`).
fn phone_windows(paths: &[PathBuf], length_s: u64) -> ReplayReport {
    let policy = FramePolicy {
        fcs: FcsRule::Ignore,
        ..FramePolicy::default()
    };
    windows_under(paths, length_s, policy)
}

fn windows_under(paths: &[PathBuf], length_s: u64, policy: FramePolicy) -> ReplayReport {
    replay_windows(
        paths,
        &policy,
        Pace::Fast,
        Some(WindowLength::new(length_s).expect("length")),
    )
    .expect("salt")
}

/// The physical Wi-Fi devices of every window, rounded.
fn devices(report: &ReplayReport) -> Vec<u64> {
    report
        .windows
        .as_ref()
        .expect("windows")
        .iter()
        .map(|w| w.devices.wifi.estimate.round() as u64)
        .collect()
}

/// Captures merged as if recorded together: each shifted to start at the same aligned instant.
fn merged(names: &[&str], dir: &Path) -> PathBuf {
    const T0: i64 = 1_800_000_000 * 1_000_000_000; // aligned to 15 minutes
    let mut all = Vec::new();
    for name in names {
        let p = packets(&phone(name));
        let first = p.first().map_or(0, |x| x.0);
        all.extend(p.into_iter().map(|(t, d)| (t - first + T0, d)));
    }
    all.sort_by_key(|p| p.0);
    let path = dir.join(format!("{}.pcap", names.join("+")));
    write_pcap(&path, &all);
    path
}

#[test]
fn one_phone_reads_one_or_two_devices_in_every_window() {
    for name in PHONES {
        let d = devices(&phone_windows(&[phone(name)], 900));
        assert!(!d.is_empty(), "{name}");
        assert!(d.iter().all(|&n| (1..=2).contains(&n)), "{name}: {d:?}");
    }
}

#[test]
fn phones_merged_two_and_three_at_a_time_read_two_to_four_and_three_to_five() {
    let dir = tempfile::tempdir().expect("tmp");
    for (k, lo, hi) in [(2, 2, 4), (3, 3, 5)] {
        let mut combos = Vec::new();
        combinations(&PHONES, k, &mut Vec::new(), &mut combos);
        for combo in combos {
            let path = merged(&combo, dir.path());
            let most = devices(&phone_windows(&[path], 900)).into_iter().max();
            assert!(
                most.is_some_and(|n| (lo..=hi).contains(&n)),
                "{combo:?}: {most:?} devices, expected {lo}-{hi}"
            );
        }
    }
}

fn combinations<'a>(
    items: &[&'a str],
    k: usize,
    current: &mut Vec<&'a str>,
    out: &mut Vec<Vec<&'a str>>,
) {
    if current.len() == k {
        out.push(current.clone());
        return;
    }
    for (i, item) in items.iter().enumerate() {
        current.push(item);
        combinations(&items[i + 1..], k, current, out);
        current.pop();
    }
}

/// The IEEE CRC-32 of an 802.11 FCS.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Overwrites the contents of every SSID (0) and vendor-specific (221) element of the probe
/// requests, keeping lengths, and recomputes the FCS.
fn scramble_ssid_and_vendor_payloads(packets: &mut [(i64, Vec<u8>)]) -> usize {
    let mut changed = 0;
    for (_, p) in packets.iter_mut() {
        let rt = usize::from(u16::from_le_bytes([p[2], p[3]]));
        let fcs = p.get(8).is_some_and(|f| f & 0x10 != 0) && p[4] & 0x02 != 0;
        let end = if fcs { p.len() - 4 } else { p.len() };
        if p.get(rt) != Some(&0x40) {
            continue;
        }
        let mut i = rt + 24;
        while i + 2 <= end {
            let (id, len) = (p[i], usize::from(p[i + 1]));
            if i + 2 + len > end {
                break;
            }
            if id == 0 || id == 221 {
                for (j, b) in p[i + 2..i + 2 + len].iter_mut().enumerate() {
                    *b = b.wrapping_add(0x5a).wrapping_add(j as u8);
                }
                changed += 1;
            }
            i += 2 + len;
        }
        if fcs {
            let sum = crc32(&p[rt..end]).to_le_bytes();
            p[end..].copy_from_slice(&sum);
        }
    }
    changed
}

#[test]
fn ssid_and_vendor_element_payloads_do_not_change_the_estimate() {
    let dir = tempfile::tempdir().expect("tmp");
    for names in [
        &["iPhone11-B", "OppoFindX3Neo-A", "iPhone7-F"][..],
        &["iPhone12-M"],
    ] {
        let original = merged(names, dir.path());
        let mut p = packets(&original);
        assert!(scramble_ssid_and_vendor_payloads(&mut p) > 100, "{names:?}");
        let changed = dir.path().join("scrambled.pcap");
        write_pcap(&changed, &p);
        let (a, b) = (
            phone_windows(&[original], 900),
            phone_windows(&[changed], 900),
        );
        assert_eq!(a.frames, b.frames);
        assert_eq!(devices(&a), devices(&b), "{names:?}");
    }
}

/// (window start, people) of `occupancy_15min.csv`.
fn head_counts() -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(data("brno-lab/occupancy_15min.csv")).expect("csv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("day,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().expect("start"), f[2].parse().expect("people"))
        })
        .collect()
}

/// The lab days without the lab's own computers, replayed together as one installation.
fn lab_report(dir: &Path) -> ReplayReport {
    let paths: Vec<PathBuf> = LAB_DAYS
        .iter()
        .map(|day| {
            let mut p = packets(&data(&format!("brno-lab/{day}_anonymized.pcap")));
            p.retain(|(_, d)| {
                let rt = usize::from(u16::from_le_bytes([d[2], d[3]]));
                let sa = d.get(rt + 10..rt + 13);
                !LAB_PCS.iter().any(|pc| sa == Some(&pc[..]))
            });
            let path = dir.join(format!("{day}.pcap"));
            write_pcap(&path, &p);
            path
        })
        .collect();
    windows(&paths, 900)
}

/// The windows of `report` marked partial, by start (unix seconds).
fn partial_starts(report: &ReplayReport) -> Vec<i64> {
    let ws = report.windows.as_ref().expect("windows");
    ws.iter()
        .filter(|w| w.partial)
        .map(|w| w.start.as_second())
        .collect()
}

#[test]
fn every_file_marks_the_windows_it_begins_and_ends_in_as_partial() {
    let days: Vec<PathBuf> = LAB_DAYS
        .iter()
        .map(|day| data(&format!("brno-lab/{day}_anonymized.pcap")))
        .collect();
    let alone: Vec<i64> = days
        .iter()
        .flat_map(|d| partial_starts(&windows(std::slice::from_ref(d), 900)))
        .collect();
    let together = windows(&days, 900);
    // Each day starts and stops inside a window: two each, whether replayed alone or not.
    assert_eq!(alone.len(), 2 * days.len(), "{alone:?}");
    assert_eq!(partial_starts(&together), alone);
    // A capture paused for longer than PAUSE marks the windows its silence starts and ends in.
    let dir = tempfile::tempdir().expect("tmp");
    let mut p = packets(&days[1]);
    let pause = 3600 * 1_000_000_000;
    let cut = p.len() / 2;
    for (ts, _) in &mut p[cut..] {
        *ts += pause;
    }
    let paused = dir.path().join("paused.pcap");
    write_pcap(&paused, &p);
    let report = windows(std::slice::from_ref(&paused), 900);
    assert_eq!(
        partial_starts(&report).len(),
        4,
        "{:?}",
        partial_starts(&report)
    );
    // An hour's window holding the silence's start or end is partial too.
    let hours = windows(&[paused], 3600);
    let ws = hours.windows.as_ref().expect("windows");
    assert!(ws.iter().all(|w| w.partial), "{:?}", partial_starts(&hours));
}

#[test]
fn lab_days_read_about_one_device_per_person_and_the_empty_lab_about_none() {
    let dir = tempfile::tempdir().expect("tmp");
    let report = lab_report(dir.path());
    let gate = report.device_gate_dbm.expect("the lab has a far mode");
    assert!((-80..=-65).contains(&gate), "learned gate {gate} dBm");
    let truth = head_counts();
    let ws = report.windows.as_ref().expect("windows");
    let (mut occupied, mut within, mut empty, mut empty_over_2) = (0, 0, 0, 0);
    for w in ws {
        let start = w.start.as_second();
        let people = truth
            .iter()
            .find(|(s, _)| *s == start)
            .map(|t| t.1)
            .expect("a head count for every window with frames");
        let devices = w.devices.wifi.estimate.round();
        if people >= 5.0 {
            occupied += 1;
            within += usize::from((0.6..=1.6).contains(&(devices / people)));
        } else if people == 0.0 {
            empty += 1;
            empty_over_2 += usize::from(devices > 2.0);
        }
    }
    eprintln!(
        "gate {gate} dBm; occupied windows at 0.6-1.6 devices/person: {within} of {occupied}; \
         empty windows above 2 devices: {empty_over_2} of {empty}"
    );
    assert_eq!((occupied, empty), (15, 28));
    // Issue 15: at least 80 % of occupied windows at 0.6-1.6 devices per person
    // (measured 14 of 15).
    assert!(within * 5 >= occupied * 4, "{within} of {occupied}");
    // Empty lab at most 2 devices; one window (the quarter hour after the last people
    // left on 2022-11-16, with the capture ending 2 minutes into it) reads 3.
    assert!(
        empty_over_2 <= 1,
        "{empty_over_2} of {empty} empty windows > 2"
    );
}

#[test]
fn windows_add_up_to_the_whole_replay() {
    let day = data("brno-lab/sc6-61_2022-11-16_anonymized.pcap");
    let plain = replay_windows(
        std::slice::from_ref(&day),
        &FramePolicy::default(),
        Pace::Fast,
        None,
    )
    .expect("salt");
    let windowed = windows(&[day], 900);
    assert_eq!(plain.frames, windowed.frames);
    assert_eq!(plain.counted, windowed.counted);
    // Two replays draw two salts: the same devices, two independent estimates. Their
    // difference has 1.4 times one estimate's standard error, so requiring one inside the
    // other's 2-sigma interval failed one run in six; within 1.5 times the two half-widths
    // (4.2 sigma of the difference) it fails about once in 40,000 runs.
    for (kind, e) in &plain.distinct {
        let other = windowed.distinct[kind];
        let half_widths = (e.upper - e.lower + other.upper - other.lower) / 2.0;
        assert!(
            (e.estimate - other.estimate).abs() <= 1.5 * half_widths,
            "{kind}: {e} vs {other}"
        );
    }
    let ws = windowed.windows.as_ref().expect("windows");
    assert_eq!(ws.iter().map(|w| w.frames.total).sum::<u64>(), plain.frames);
    assert!(plain.windows.is_none() && plain.device_gate_dbm.is_none());
}

#[test]
fn replay_window_json_has_the_documented_shape() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
        .args([
            "replay",
            "--ignore-fcs",
            "--window",
            "15m",
            "--json",
            "--pcap",
        ])
        .arg(phone("iPhone11-B"))
        .output()
        .expect("agent runs");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ws = v["windows"].as_array().expect("windows");
    assert_eq!(ws.len(), 4);
    for w in ws {
        let start: jiff::Timestamp = w["start"]
            .as_str()
            .expect("start")
            .parse()
            .expect("rfc 3339");
        let end: jiff::Timestamp = w["end"].as_str().expect("end").parse().expect("rfc 3339");
        assert_eq!(start.as_second() % 900, 0, "aligned to UTC");
        assert_eq!(end.as_second() - start.as_second(), 900);
        assert!(w["frames"]["total"].as_u64().is_some());
        for kind in ["wifi", "wifi_random", "ble", "wifi_derandomized"] {
            assert!(w["distinct"][kind]["estimate"].is_f64(), "{kind}");
        }
        for medium in ["wifi", "ble"] {
            for field in ["estimate", "lower", "upper"] {
                assert!(w["devices"][medium][field].is_f64(), "{medium} {field}");
            }
        }
        assert_eq!(
            w["devices"]["wifi"]["estimate"].as_f64().map(f64::round),
            Some(1.0)
        );
    }
    // The capture starts and stops inside its first and last window; the two between are whole.
    let partial: Vec<bool> = ws.iter().map(|w| w["partial"] == true).collect();
    assert_eq!(partial, [true, false, false, true]);
    // Estimates carry two decimals at most, not the sketch's 2.000000004967054.
    for w in ws {
        for e in w["distinct"].as_object().expect("distinct").values() {
            let x = e["estimate"].as_f64().expect("estimate");
            assert_eq!((x * 100.0).round() / 100.0, x, "{x}");
        }
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
        .args(["replay", "--window", "7m", "--pcap"])
        .arg(phone("iPhone11-B"))
        .output()
        .expect("agent runs");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("divide 86400"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// `crowdflow-agent replay` with `args`, stdout and stderr captured.
fn agent_replay(args: &[&str], pcaps: &[PathBuf]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"));
    cmd.arg("replay").args(args);
    for p in pcaps {
        cmd.arg("--pcap").arg(p);
    }
    cmd.output().expect("agent runs")
}

#[test]
fn replay_refuses_ambiguous_options_and_says_what_to_give() {
    let file = phone("iPhone11-B");
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // a bare number: seconds or minutes?
    let out = agent_replay(&["--window", "15"], std::slice::from_ref(&file));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("give a unit: 15s or 15m"),
        "{}",
        stderr(&out)
    );
    // a device rule without windows would read nothing: say what it needs
    let out = agent_replay(&["--device-count", "scans"], std::slice::from_ref(&file));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--window <DURATION>"),
        "{}",
        stderr(&out)
    );
    // a gate nothing passes says so, rather than reading an empty place
    let out = agent_replay(
        &["--ignore-fcs", "--min-rssi", "0"],
        std::slice::from_ref(&file),
    );
    assert!(
        stderr(&out).contains("weaker than --min-rssi 0 dBm"),
        "{}",
        stderr(&out)
    );
    // nothing, with or without a unit
    for zero in ["0", "0s", "00m"] {
        let out = agent_replay(&["--window", zero], std::slice::from_ref(&file));
        assert!(
            stderr(&out).contains("length 0 counts nothing"),
            "{zero}: {}",
            stderr(&out)
        );
    }
    let out = agent_replay(&["--window", "0.5s"], std::slice::from_ref(&file));
    assert!(
        stderr(&out).contains("use seconds, minutes or hours"),
        "{}",
        stderr(&out)
    );
    // too large a number is too long, not "not a whole number"
    let out = agent_replay(
        &["--window", "99999999999999999999h"],
        std::slice::from_ref(&file),
    );
    assert!(stderr(&out).contains("too long"), "{}", stderr(&out));
    // a gate the config would refuse (a dropped minus sign)
    for gate in ["72", "-121", "-72.5"] {
        let out = agent_replay(&["--min-rssi", gate], std::slice::from_ref(&file));
        assert!(!out.status.success(), "{gate}");
        assert!(
            stderr(&out).contains("between -120 and 0"),
            "{gate}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn replay_says_why_nothing_counted_and_counts_a_repeated_file_once() {
    let file = phone("iPhone11-B");
    // the anonymized capture's FCS is bad in every frame: the hint names --ignore-fcs
    let out = agent_replay(&["--json"], std::slice::from_ref(&file));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad_fcs") && err.contains("--ignore-fcs"),
        "{err}"
    );
    // with --ignore-fcs there is nothing to hint at
    let once = agent_replay(&["--json", "--ignore-fcs"], std::slice::from_ref(&file));
    assert!(!String::from_utf8_lossy(&once.stderr).contains("--ignore-fcs"));
    let twice = agent_replay(&["--json", "--ignore-fcs"], &[file.clone(), file.clone()]);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("given more than once; counted once"));
    let frames = |o: &std::process::Output| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("json")["frames"].as_u64()
    };
    assert_eq!(frames(&twice), frames(&once));
    // a copy under another name too
    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("copy.pcap");
    std::fs::copy(&file, &copy).expect("copy");
    let copied = agent_replay(&["--json", "--ignore-fcs"], &[file.clone(), copy]);
    assert!(
        String::from_utf8_lossy(&copied.stderr).contains("copy.pcap: the same capture as"),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert_eq!(frames(&copied), frames(&once));
    // and its conversion to pcapng (Wireshark's editcap, installed with tshark)
    let converted = dir.path().join("converted.pcapng");
    let editcap = std::process::Command::new("editcap")
        .args(["-F", "pcapng"])
        .arg(&file)
        .arg(&converted)
        .status()
        .expect("editcap runs (scripts/test.sh installs tshark, which brings it)");
    assert!(editcap.success());
    let both = agent_replay(&["--json", "--ignore-fcs"], &[file.clone(), converted]);
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("converted.pcapng: the same capture as"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    assert_eq!(frames(&both), frames(&once));
    // while another capture is not one
    let other = phone("iPhone11-F");
    let two = agent_replay(&["--json", "--ignore-fcs"], &[file.clone(), other.clone()]);
    assert!(!String::from_utf8_lossy(&two.stderr).contains("the same capture"));
    let alone = agent_replay(&["--json", "--ignore-fcs"], &[other]);
    assert_eq!(
        frames(&two).zip(frames(&alone)).map(|(a, b)| a - b),
        frames(&once)
    );
}

#[test]
fn replay_output_to_a_closed_pipe_or_a_full_disk_ends_without_a_panic() {
    use std::process::{Command, Stdio};
    let file = phone("iPhone11-B");
    // the reader went away (`| head -0`): a quiet end
    let mut child = Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
        .args(["replay", "--ignore-fcs", "--window", "60s", "--pcap"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("agent ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
    // a full disk: an error that names standard output
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
        .args(["replay", "--ignore-fcs", "--pcap"])
        .arg(&file)
        .stdout(full)
        .output()
        .expect("agent runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.status.success());
    assert!(err.contains("standard output"), "{err}");
    // a stderr that cannot be written: no panic either (the exit status tells)
    let out = Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
        .args(["replay", "--pcap"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create("/dev/full").expect("/dev/full"))
        .output()
        .expect("agent runs");
    assert_ne!(out.status.code(), Some(101), "a panic's exit status");
}

/// A phone that pauses a few minutes between scans: the minutes between are listed as heard
/// nothing (0 frames, 0 devices), as the live agent publishes them, so a series has no holes;
/// a silence of 15 minutes or more is a pause and stays out (its edges partial).
#[test]
fn the_windows_of_a_short_silence_read_zero_devices() {
    let report = phone_windows(&[phone("iPhone11-B")], 60);
    let ws = report.windows.as_ref().expect("windows");
    for pair in ws.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "a hole after {}", pair[0].start);
    }
    let silent: Vec<_> = ws.iter().filter(|w| w.frames.total == 0).collect();
    // 12 of its 53 minutes hold no probe request (tshark: 41 minutes with frames).
    assert_eq!((ws.len(), silent.len()), (53, 12));
    assert!(silent.iter().all(|w| w.devices.wifi.estimate == 0.0
        && w.distinct.values().all(|e| e.upper == 0.0)
        && !w.partial));
    let frames: u64 = ws.iter().map(|w| w.frames.total).sum();
    assert_eq!(frames, report.frames);
    // A capture of two bursts 6 minutes apart: its first and last windows are partial (it
    // began and stopped in them), and the minutes between are silence, not holes.
    let dir = tempfile::tempdir().expect("tmp");
    let p = packets(&phone("iPhone11-B"));
    let two = dir.path().join("two.pcap");
    write_pcap(&two, &[&p[..3], &p[149..152]].concat());
    let report = phone_windows(&[two], 60);
    let ws = report.windows.as_ref().expect("windows");
    assert_eq!(
        ws.len(),
        7,
        "{:?}",
        ws.iter().map(|w| w.start).collect::<Vec<_>>()
    );
    assert!(ws[0].partial && ws[6].partial && ws[1..6].iter().all(|w| !w.partial));
    assert!(ws[1..6].iter().all(|w| w.frames.total == 0));
}

/// One capture split into two files, as `tcpdump -G` or `dumpcap -b` rotate them: the
/// windows read as the whole file's, the one holding the split included (a fresh user's
/// trial found it marked partial with the whole's devices).
#[test]
fn a_capture_split_into_files_reads_as_the_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let day = data("brno-lab/sc6-61_2022-11-16_anonymized.pcap");
    let p = packets(&day);
    let (first, second) = (
        dir.path().join("first.pcap"),
        dir.path().join("second.pcap"),
    );
    write_pcap(&first, &p[..5000]);
    write_pcap(&second, &p[5000..]);
    let whole = windows(std::slice::from_ref(&day), 900);
    let split = windows(&[first, second], 900);
    assert_eq!(partial_starts(&split), partial_starts(&whole));
    assert_eq!(devices(&split), devices(&whole));
}
