//! Replay of real captures against tshark ground truth (tests/data/captures/README.md).
//!
//! Distinct counts below 100 must be exact; larger ones must lie within the reported
//! 2-sigma bounds. Access points must never be counted, and no capture may panic the agent.

use std::path::{Path, PathBuf};
use std::process::Command;

use crowdflow_agent::frame::{FcsRule, FramePolicy};
use crowdflow_agent::replay::{Pace, ReplayReport, replay};
use crowdflow_contract::identity::Kind;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/captures")
        .join(rel)
}

fn run(rel: &str) -> ReplayReport {
    replay(&[data(rel)], &FramePolicy::default(), Pace::Fast).expect("salt")
}

/// Exact below 100, within three sigma above: the 2-sigma bounds miss the truth under 5 %
/// of salts by design, and every replay draws a new salt (one run in about 150 of this file's
/// checks failed on them).
fn assert_distinct(report: &ReplayReport, kind: Kind, truth: u64, what: &str) {
    let e = report.distinct[&kind];
    if truth < 100 {
        assert_eq!(e.estimate.round() as u64, truth, "{what} {kind}: {e}");
    } else {
        let three_sigma = 1.5 * (e.upper - e.lower) / 2.0;
        assert!(
            (e.estimate - truth as f64).abs() <= three_sigma,
            "{what} {kind}: {e} misses the truth {truth} by more than three sigma"
        );
    }
}

/// (file, probe requests, distinct sources, of which locally administered) from tshark.
const WIFI_TRUTH: [(&str, u64, u64, u64); 20] = [
    (
        "brno-lab/sc6-61_2022-10-19_anonymized.pcap",
        8375,
        2061,
        1811,
    ),
    (
        "brno-lab/sc6-61_2022-11-16_anonymized.pcap",
        10045,
        2361,
        1825,
    ),
    ("brno-lab/sc6-61_2023-02-23_anonymized.pcap", 1694, 24, 18),
    (
        "probing-patterns/OppoFindX3Neo-A_anonymized.pcap",
        1185,
        15,
        8,
    ),
    ("probing-patterns/iPhone11-B_anonymized.pcap", 782, 465, 229),
    ("probing-patterns/iPhone11-F_anonymized.pcap", 106, 47, 26),
    ("probing-patterns/iPhone11-M_anonymized.pcap", 497, 236, 117),
    ("probing-patterns/iPhone12-M_anonymized.pcap", 612, 325, 162),
    ("probing-patterns/iPhone12Pro-C_anonymized.pcap", 154, 1, 0),
    ("probing-patterns/iPhone7-F_anonymized.pcap", 638, 35, 19),
    ("probing-patterns/iPhoneXR-A_anonymized.pcap", 136, 9, 5),
    ("aircrack-ng/test1.pcap", 5, 5, 1),
    ("aircrack-ng/pmkid-not-recognized.cap", 128, 2, 1),
    ("aircrack-ng/wpa2-psk-linksys.cap", 18, 1, 0),
    ("aircrack-ng/testm1m2m3.pcap", 1, 1, 0),
    ("aircrack-ng/wpa3-psk.pcap", 1, 1, 1),
    ("aircrack-ng/3.pcap", 0, 0, 0),
    ("aircrack-ng/floatingpoint_exception.pcap", 0, 0, 0),
    ("aircrack-ng/80211ad_beacon.pcap", 0, 0, 0),
    ("wifite2/handshake_has_1234.cap", 0, 0, 0),
];

/// tshark counts frames whatever their FCS by default; the figures above are that count, so
/// they are compared under `FcsRule::Ignore`. Under the default rule the probing-patterns
/// files count nothing: their anonymizer rewrote addresses without recomputing the FCS, and
/// `tshark -o wlan.check_checksum:TRUE` finds every probe request's FCS bad.
#[test]
fn wifi_captures_match_tshark_per_kind() {
    let ignore_fcs = FramePolicy {
        fcs: FcsRule::Ignore,
        ..FramePolicy::default()
    };
    for (file, probes, distinct, local) in WIFI_TRUTH {
        let checked = run(file);
        let fcs_rewritten = file.starts_with("probing-patterns/");
        let bad_fcs = checked.skipped.get("bad_fcs").copied().unwrap_or(0);
        assert_eq!(bad_fcs, if fcs_rewritten { probes } else { 0 }, "{file}");
        let r = replay(&[data(file)], &ignore_fcs, Pace::Fast).expect("salt");
        assert!(r.errors.is_empty(), "{file}: {:?}", r.errors);
        assert_eq!(
            r.counted[&Kind::Wifi] + r.counted[&Kind::WifiRandom],
            probes,
            "{file}"
        );
        assert_eq!(r.counted[&Kind::Ble], 0, "{file}");
        assert_distinct(&r, Kind::Wifi, distinct - local, file);
        assert_distinct(&r, Kind::WifiRandom, local, file);
    }
}

/// Files are read through memory maps; a pipe (`--pcap -` or `--pcap /dev/stdin`) through a
/// buffer, where records straddle the buffer's edges: both count the same frames.
#[test]
fn a_capture_piped_through_stdin_counts_as_the_file_does() {
    use std::io::Write;
    use std::process::Stdio;
    for (file, stdin_path) in [
        ("aircrack-ng/pmkid-not-recognized.cap", "-"),
        ("probing-patterns/iPhone12-M_anonymized.pcap", "/dev/stdin"),
        ("brno-lab/sc6-61_2022-11-16_anonymized.pcap", "-"),
        (
            "field-cases/pcapng_large_name_resolution_block.pcapng",
            "/dev/stdin",
        ),
    ] {
        let bytes = std::fs::read(data(file)).expect("capture");
        let counted = |out: &[u8]| {
            let v: serde_json::Value = serde_json::from_slice(out).expect("json");
            assert!(v["frames"].as_u64() > Some(0), "{file}");
            (
                v["frames"].clone(),
                v["counted"].clone(),
                v["skipped"].clone(),
            )
        };
        let mapped = Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
            .args(["replay", "--json", "--pcap"])
            .arg(data(file))
            .output()
            .expect("agent runs");
        let mut child = Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
            .args(["replay", "--json", "--pcap", stdin_path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("agent runs");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&bytes));
        let piped = child.wait_with_output().expect("agent output");
        writer.join().expect("writer").expect("piped");
        assert!(mapped.status.success() && piped.status.success(), "{file}");
        assert_eq!(counted(&mapped.stdout), counted(&piped.stdout), "{file}");
    }
}

/// Ctrl-C during a replay at the recorded pace (a live-like feed) prints the counts of the
/// frames read so far, says it was interrupted and exits 130, as the shell reports Ctrl-C.
#[test]
fn an_interrupted_replay_reports_what_it_counted() {
    let child = agent()
        .args([
            "replay",
            "--json",
            "--recorded-speed",
            "--window",
            "1m",
            "--pcap",
        ])
        .arg(data("brno-lab/sc6-61_2022-10-19_anonymized.pcap"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agent runs");
    // The capture spans hours; two seconds in, a few frames have been read.
    std::thread::sleep(std::time::Duration::from_secs(2));
    interrupt(&child);
    let out = child.wait_with_output().expect("agent output");
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["interrupted"], true);
    let frames = v["frames"].as_u64().expect("frames");
    assert!(frames > 0 && frames < 8375, "{frames} frames");
    assert!(!v["windows"].as_array().expect("windows").is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
}

/// Ctrl-C to `child`, as a terminal sends it.
fn interrupt(child: &std::process::Child) {
    signal(child, "INT");
}

/// Sends `child` the signal named `name` (INT, TERM).
fn signal(child: &std::process::Child, name: &str) {
    let kill = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
}

/// `--pcap -` fed by a writer that stays open (a live `tcpdump -w -`): SIGTERM (as `timeout`
/// or a service manager sends it) ends the replay with what it counted, rather than waiting
/// for the writer to close, and exits 143 (128 + 15), as the shell reports it.
#[test]
fn an_interrupted_replay_of_an_idle_pipe_reports_what_it_counted() {
    use std::io::Write;
    let capture =
        std::fs::read(data("brno-lab/sc6-61_2022-10-19_anonymized.pcap")).expect("capture");
    let mut child = agent()
        .args(["replay", "--json", "--window", "15m", "--pcap", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agent runs");
    let mut writer = child.stdin.take().expect("stdin");
    writer
        .write_all(&capture)
        .expect("the agent reads the pipe");
    // The whole capture is in; the writer stays open, as a live capture would.
    std::thread::sleep(std::time::Duration::from_secs(2));
    signal(&child, "TERM");
    let out = child.wait_with_output().expect("agent output");
    drop(writer);
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["interrupted"], true);
    assert_eq!(
        v["frames"].as_u64(),
        Some(8375),
        "every frame written was counted"
    );
}

/// A capture truncated by another process while `replay` reads it through its memory map
/// ends the replay with one clear line and status 1, not a "Bus error" crash.
#[test]
fn a_capture_that_shrinks_during_a_replay_is_a_clear_error() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("growing.pcap");
    // 400 probe requests over 20 s (radiotap), about 60 bytes each: 24 KB, six pages.
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&127u32.to_le_bytes());
    for i in 0..400u32 {
        let mut frame = vec![0, 0, 8, 0, 0, 0, 0, 0, 0x40, 0, 0, 0];
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&[0x02, 0, 0, 0, (i >> 8) as u8, i as u8]);
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&[0, 0, 0, 0, 1, 4, 0x82, 0x84, 0x8b, 0x96]);
        out.extend_from_slice(&(1_777_284_000 + i / 20).to_le_bytes());
        out.extend_from_slice(&((i % 20) * 50_000).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&out))
        .expect("capture");
    let child = Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
        .args(["replay", "--recorded-speed", "--pcap"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agent runs");
    // Past the first pages after 5 s; then the file is cut to its header.
    std::thread::sleep(std::time::Duration::from_secs(5));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(24))
        .expect("truncate");
    let out = child.wait_with_output().expect("agent output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a capture file shrank while replay read it"),
        "{stderr}"
    );
}

#[test]
fn access_point_traffic_is_never_counted() {
    // 878 AP frames around 128 probe requests; a busy handshake capture with none.
    let r = run("aircrack-ng/pmkid-not-recognized.cap");
    assert_eq!(r.counted[&Kind::Wifi] + r.counted[&Kind::WifiRandom], 128);
    assert!(r.skipped["not_counted_frame_type"] > 19_000);
    let r = run("wifite2/handshake_has_1234.cap");
    assert_eq!(r.distinct[&Kind::Wifi].estimate, 0.0);
    assert_eq!(r.distinct[&Kind::WifiRandom].estimate, 0.0);
}

#[test]
fn a_capture_cut_mid_record_counts_its_frames_and_warns() {
    let r = run("wifite2/handshake_has_1234.cap");
    assert!(r.errors.is_empty());
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("truncated"), "{:?}", r.warnings);
    assert_eq!(r.skipped["capture_truncated"], 1);
}

#[test]
fn the_strongest_antenna_value_of_a_multi_namespace_radiotap_header_is_used() {
    // test1.pcap has three present words; the first (combined) signals of its probes are
    // -86, -86, -83, -77, -77 dBm. A -80 dBm threshold keeps the last two only.
    let policy = FramePolicy {
        min_rssi: Some(-80),
        ..FramePolicy::default()
    };
    let r = replay(&[data("aircrack-ng/test1.pcap")], &policy, Pace::Fast).expect("salt");
    assert_eq!(r.counted[&Kind::Wifi] + r.counted[&Kind::WifiRandom], 2);
    assert_eq!(r.skipped["below_rssi_threshold"], 3);
}

/// (file, advertising PDUs with a good CRC, distinct advertisers among them). tshark's
/// figures with `&& !_ws.malformed` added: tshark marks 1-78 frames per file malformed and
/// then never checks their CRC, so its plain "CRC ok" count includes noise; our CRC-24
/// check rejects exactly those frames.
const BLE_TRUTH: [(&str, u64, u64); 6] = [
    ("crackle/le_secure_connections.pcapng", 42, 1),
    ("hackrf-ble-boston/filtered_ble_sniff.pcap", 81, 7),
    (
        "hackrf-ble-boston/hackrf_BLE_sniff_20_channels_for_bitchat.pcap",
        1939,
        15,
    ),
    ("hackrf-ble-boston/take_2_ble_all_adv.pcap", 170, 8),
    (
        "hackrf-ble-boston/take_3_adv39_2_promising_src.pcap",
        127,
        1,
    ),
    ("hackrf-ble-boston/take_3_ble_all_adv_w_scan.pcap", 2424, 18),
];

#[test]
fn ble_captures_match_tshark_and_noise_is_dropped_by_crc() {
    for (file, adverts, distinct) in BLE_TRUTH {
        let r = run(file);
        assert!(r.errors.is_empty(), "{file}: {:?}", r.errors);
        assert_eq!(r.counted[&Kind::Ble], adverts, "{file}");
        assert_distinct(&r, Kind::Ble, distinct, file);
        assert_eq!(
            r.counted[&Kind::Wifi] + r.counted[&Kind::WifiRandom],
            0,
            "{file}"
        );
    }
    // 7-11 % of the over-the-air frames are noise.
    let r = run("hackrf-ble-boston/take_3_ble_all_adv_w_scan.pcap");
    assert_eq!(r.skipped["ble_bad_crc"], 449);
}

#[test]
fn a_ppi_capture_of_ble_is_not_misread_as_wifi() {
    let r = run("crackle/pairing_and_ltk_exchange.pcap");
    assert_eq!(r.frames, 713);
    assert_eq!(r.skipped["ppi_not_wifi"], 713);
    assert!(r.distinct.values().all(|e| e.estimate == 0.0));
}

#[test]
fn every_tcpdump_capture_is_processed_without_panic_and_counts_no_access_point() {
    let dir = data("tcpdump-tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 184);
    for path in &files {
        let r = replay(
            std::slice::from_ref(path),
            &FramePolicy::default(),
            Pace::Fast,
        )
        .expect("salt");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let wifi = r.counted[&Kind::Wifi] + r.counted[&Kind::WifiRandom];
        let expected = match name {
            "ieee802.11_exthdr.pcap" => 6,
            "ieee802.11_meshid.pcap" => 1,
            _ => 0,
        };
        assert_eq!(wifi, expected, "{name}: {:?}", r.skipped);
    }
    let both = [
        dir.join("ieee802.11_exthdr.pcap"),
        dir.join("ieee802.11_meshid.pcap"),
    ];
    let r = replay(&both, &FramePolicy::default(), Pace::Fast).expect("salt");
    assert_eq!(r.distinct[&Kind::Wifi].estimate.round(), 2.0);
}

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
}

#[test]
fn replay_json_has_the_documented_shape() {
    let out = agent()
        .args(["replay", "--json", "--pcap"])
        .arg(data("aircrack-ng/test1.pcap"))
        .arg("--pcap")
        .arg(data("crackle/le_secure_connections.pcapng"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["frames"], 192 + 303);
    assert_eq!(v["counted"]["wifi"], 4);
    assert_eq!(v["counted"]["wifi_random"], 1);
    assert_eq!(v["counted"]["ble"], 42);
    for kind in ["wifi", "wifi_random", "ble"] {
        for field in ["estimate", "lower", "upper"] {
            assert!(v["distinct"][kind][field].is_f64(), "{kind}.{field}");
        }
    }
    assert!(
        v["skipped"]["not_counted_frame_type"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert!(v["elapsed_s"].is_f64());
}

#[test]
fn unreadable_files_exit_non_zero_naming_the_problem_and_the_rest_is_still_counted() {
    let cases = [
        (
            "aircrack-ng/wep_64_ptw_02.cap",
            "not a pcap, pcapng or btsnoop file (magic bytes 4f 44 36 46 as written in the file)",
        ),
        (
            "aircrack-ng/wpa.cap",
            "unsupported link type 119 (IEEE802_11_PRISM)",
        ),
        (
            "aircrack-ng/wpaclean_crash.pcap",
            "unsupported link type 119",
        ),
        ("does-not-exist.pcap", "cannot open"),
    ];
    for (file, message) in cases {
        let out = agent()
            .args(["replay", "--json", "--pcap"])
            .arg(data(file))
            .arg("--pcap")
            .arg(data("aircrack-ng/test1.pcap"))
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1), "{file}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{file}: {stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(
            v["counted"]["wifi"], 4,
            "{file}: the good file is still counted"
        );
    }
}

#[path = "captures/kinds.rs"]
mod kinds;

use kinds::{
    BAD_FCS, FCS_AT_END, Magic, Pcapng, adv_ind, beacon, btsnoop, extended_pdu,
    hci_command_complete, hci_extended_report, hci_legacy_reports, hci_scan_enable, ll_packet,
    nordic, pcap, ppi, probe_request, radiotap, tshark_ble_ll, tshark_hci, tshark_wifi, with_fcs,
    with_wrong_fcs,
};

const SA1: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x53, 0x01];
const SA2: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x53, 0x02];
const SA3: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x03];
const SA4: [u8; 6] = [0x00, 0x1b, 0x63, 0x84, 0x45, 0xe6];

fn written(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn replay_path(path: &Path) -> ReplayReport {
    replay(&[path.to_owned()], &FramePolicy::default(), Pace::Fast).expect("salt")
}

/// `replay` counts what tshark counts: probe requests per kind and distinct sources.
fn assert_wifi_like_tshark(path: &Path, expected_probes: u64) -> ReplayReport {
    let (probes, global, local) = tshark_wifi(path);
    assert_eq!(probes, expected_probes, "tshark read {}", path.display());
    let r = replay_path(path);
    assert!(r.errors.is_empty(), "{}: {:?}", path.display(), r.errors);
    assert_eq!(
        r.counted[&Kind::Wifi] + r.counted[&Kind::WifiRandom],
        probes,
        "{}: {:?}",
        path.display(),
        r.skipped
    );
    assert_distinct(&r, Kind::Wifi, global, &path.display().to_string());
    assert_distinct(&r, Kind::WifiRandom, local, &path.display().to_string());
    r
}

fn rt_probe(sa: [u8; 6], seq: u16) -> Vec<u8> {
    radiotap(FCS_AT_END, -50, &with_fcs(&probe_request(sa, seq)))
}

#[test]
fn several_interfaces_each_keep_their_link_type_and_foreign_packets_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("dir");
    let mut ng = Pcapng::new(false);
    ng.interface(1, None); // Ethernet, as `dumpcap -i eth0 -i wlan0mon` writes
    ng.interface(127, None);
    ng.interface(189, None); // USB_LINUX
    let ethernet = [[0xffu8; 6].as_slice(), &SA4, &[0x08, 0x00], &[0x45; 46]].concat();
    ng.packet(0, 1, &ethernet); // the first packet is on the unsupported interface
    ng.packet(1, 2, &rt_probe(SA1, 1));
    ng.packet(1, 3, &radiotap(FCS_AT_END, -50, &with_fcs(&beacon(SA4))));
    ng.packet(2, 4, &[0u8; 64]);
    ng.packet(1, 5, &rt_probe(SA2, 2));
    // a second section, big-endian, whose interface 0 is 802.11 with if_fcslen 4
    ng.section(true);
    ng.interface(105, Some(4));
    ng.packet(0, 6, &with_fcs(&probe_request(SA3, 3)));
    ng.packet(0, 7, &with_fcs(&probe_request(SA1, 4)));
    let path = written(&dir, "interfaces.pcapng", &ng.bytes);
    let r = assert_wifi_like_tshark(&path, 4);
    assert_eq!(r.frames, 7);
    assert_eq!(r.skipped["unsupported_link_type"], 2);
    assert_eq!(r.skipped_link_types["1 (ETHERNET)"], 1);
    assert_eq!(r.skipped_link_types["189 (USB_LINUX)"], 1);

    // nothing readable at all: an error naming the link type by its registry name
    let mut ng = Pcapng::new(false);
    ng.interface(1, None);
    ng.packet(0, 1, &ethernet);
    let path = written(&dir, "ethernet.pcapng", &ng.bytes);
    let r = replay_path(&path);
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0].contains("unsupported link type 1 (ETHERNET)"),
        "{:?}",
        r.errors
    );
}

/// A packet's `epb_flags` FCS length (pcapng spec 4.3.1): the FCS is taken off before the
/// frame is read (its elements make the fingerprint) and checked. tshark 4.0 shows the flag
/// but dissects the FCS as part of the frame, so it counts what the agent counts where the
/// FCS is good, and also a frame whose FCS is wrong, which the agent skips as `bad_fcs` (the
/// rule for every FCS a file declares; docs/installing-a-sensor.md).
#[test]
fn a_packets_epb_flags_fcs_length_is_honoured() {
    let dir = tempfile::tempdir().expect("dir");
    for big_endian in [false, true] {
        let mut ng = Pcapng::new(big_endian);
        ng.interface(105, None); // 802.11 without if_fcslen: the packets say it
        ng.packet_with_flags(0, 1, &with_fcs(&probe_request(SA1, 1)), 4 << 5 | 1);
        ng.packet_with_flags(0, 2, &with_fcs(&probe_request(SA2, 2)), 4 << 5);
        ng.packet_with_flags(0, 4, &probe_request(SA4, 4), 1); // FCS length 0: none
        let path = written(&dir, &format!("epb-flags-{big_endian}.pcapng"), &ng.bytes);
        let good = assert_wifi_like_tshark(&path, 3);
        assert!(!good.skipped.contains_key("bad_fcs"), "{:?}", good.skipped);
        ng.packet_with_flags(0, 5, &with_wrong_fcs(&probe_request(SA3, 3)), 4 << 5);
        let path = written(
            &dir,
            &format!("epb-flags-bad-{big_endian}.pcapng"),
            &ng.bytes,
        );
        let r = replay_path(&path);
        assert_eq!(r.skipped["bad_fcs"], 1, "{:?}", r.skipped);
        assert_eq!(r.counted[&Kind::Wifi] + r.counted[&Kind::WifiRandom], 3);
    }
}

#[test]
fn every_pcapng_block_type_is_read_or_skipped_by_its_length_like_tshark() {
    let dir = tempfile::tempdir().expect("dir");
    let mut ng = Pcapng::new(false);
    ng.interface(127, None);
    ng.packet(0, 1, &rt_probe(SA1, 1));
    ng.name_resolution(300 * 1024); // larger than any packet may be
    ng.obsolete_packet(0, 2, &rt_probe(SA2, 2));
    ng.other_blocks();
    ng.simple_packet(&rt_probe(SA3, 3));
    ng.packet(0, 3, &rt_probe(SA4, 4));
    let path = written(&dir, "blocks.pcapng", &ng.bytes);
    let r = assert_wifi_like_tshark(&path, 4);
    assert_eq!(r.frames, 4);

    // the same in big-endian
    let mut ng = Pcapng::new(true);
    ng.interface(127, None);
    ng.name_resolution(100 * 1024);
    ng.obsolete_packet(0, 2, &rt_probe(SA2, 2));
    ng.other_blocks();
    ng.simple_packet(&rt_probe(SA3, 3));
    let path = written(&dir, "blocks-be.pcapng", &ng.bytes);
    assert_wifi_like_tshark(&path, 2);

    // a block whose trailing length copy disagrees is corrupt, and says where
    let mut ng = Pcapng::new(false);
    ng.interface(127, None);
    ng.packet(0, 1, &rt_probe(SA1, 1));
    let at = ng.bytes.len();
    ng.packet(0, 2, &rt_probe(SA2, 2));
    let end = ng.bytes.len();
    ng.bytes[end - 4] ^= 0x04;
    let path = written(&dir, "trailer.pcapng", &ng.bytes);
    let r = replay_path(&path);
    assert!(
        r.errors[0].contains(&format!("corrupt pcapng block at byte {at}")),
        "{:?}",
        r.errors
    );
    assert_eq!(
        r.counted[&Kind::Wifi],
        1,
        "the frame before it still counts"
    );
}

#[test]
fn pcap_magic_variants_and_the_fcs_annotation_are_read_like_tshark() {
    let dir = tempfile::tempdir().expect("dir");
    let records = [rt_probe(SA1, 1), rt_probe(SA2, 2), rt_probe(SA3, 3)];
    for magic in [Magic::Micro, Magic::Nano, Magic::Modified] {
        for big_endian in [false, true] {
            let name = format!("{magic:?}-{big_endian}.pcap");
            let path = written(&dir, &name, &pcap(magic, big_endian, 127, &records));
            assert_wifi_like_tshark(&path, 3);
        }
    }
    // LINKTYPE 105 with the F bit and an FCS length of two 16-bit words (0x24000069)
    let plain: Vec<Vec<u8>> = [SA1, SA2, SA3]
        .iter()
        .enumerate()
        .map(|(i, sa)| with_fcs(&probe_request(*sa, i as u16)))
        .collect();
    for big_endian in [false, true] {
        let file = pcap(Magic::Micro, big_endian, 0x2400_0069, &plain);
        let path = written(&dir, &format!("fcs-annotation-{big_endian}.pcap"), &file);
        assert_wifi_like_tshark(&path, 3);
    }
    // the annotation makes the agent check the FCS: a wrong one is skipped
    let mut bad = plain.clone();
    bad.push(with_wrong_fcs(&probe_request(SA4, 9)));
    let path = written(
        &dir,
        "fcs-annotation-bad.pcap",
        &pcap(Magic::Micro, false, 0x2400_0069, &bad),
    );
    let r = replay_path(&path);
    assert_eq!((r.counted[&Kind::Wifi], r.skipped["bad_fcs"]), (2, 1));

    // other formats are refused naming the format and the magic as written
    let cases: [(&[u8], &str); 4] = [
        (
            b"GMBU\0\0\0\0\0\0\0\0",
            "Microsoft Network Monitor 2 capture (magic bytes 47 4d 42 55",
        ),
        (
            b"\x1f\x8b\x08\0\0\0\0\0",
            "gzip-compressed file (magic bytes 1f 8b 08 00",
        ),
        (
            b"btsnoop\0\0\0\0\x01\0\0\x03\xeb",
            "datalink type 1003 (BCSP)",
        ),
        (
            b"hello world!",
            "not a pcap, pcapng or btsnoop file (magic bytes 68 65 6c 6c",
        ),
    ];
    for (bytes, message) in cases {
        let path = written(&dir, "other", bytes);
        let r = replay_path(&path);
        assert!(r.errors[0].contains(message), "{:?}", r.errors);
    }
}

#[test]
fn a_kept_fcs_decides_and_the_driver_flag_only_without_one() {
    let dir = tempfile::tempdir().expect("dir");
    let records = [
        rt_probe(SA1, 1),
        // flagged bad by the driver, FCS right: counts (tshark counts it too)
        radiotap(FCS_AT_END | BAD_FCS, -50, &with_fcs(&probe_request(SA2, 2))),
        // not flagged, FCS wrong: bit errors, not counted
        radiotap(FCS_AT_END, -50, &with_wrong_fcs(&probe_request(SA3, 3))),
        // flagged bad, FCS dropped by the driver: the flag is the only verdict
        radiotap(BAD_FCS, -50, &probe_request(SA4, 4)),
    ];
    let path = written(&dir, "fcs.pcap", &pcap(Magic::Micro, false, 127, &records));
    let r = assert_wifi_like_tshark(&path, 2);
    assert_eq!(r.skipped["bad_fcs"], 2);
    // --ignore-fcs counts all four, as plain tshark does
    let policy = FramePolicy {
        fcs: FcsRule::Ignore,
        ..FramePolicy::default()
    };
    let r = replay(&[path], &policy, Pace::Fast).expect("salt");
    assert_eq!(r.counted[&Kind::Wifi] + r.counted[&Kind::WifiRandom], 4);

    // the same rule behind a PPI header (802.11-Common flags)
    let records = [
        ppi(0x0001, -50, &with_fcs(&probe_request(SA1, 1))),
        ppi(0x0001 | 0x0004, -50, &with_fcs(&probe_request(SA2, 2))),
        ppi(0x0001, -50, &with_wrong_fcs(&probe_request(SA3, 3))),
        ppi(0x0000, -50, &probe_request(SA4, 4)),
    ];
    let path = written(
        &dir,
        "fcs-ppi.pcap",
        &pcap(Magic::Micro, false, 192, &records),
    );
    let r = assert_wifi_like_tshark(&path, 3);
    assert_eq!(r.skipped["bad_fcs"], 1);
}

fn assert_ble_like_tshark(path: &Path, expected: u64) -> ReplayReport {
    let (adverts, distinct) = tshark_ble_ll(path);
    assert_eq!(adverts, expected, "tshark read {}", path.display());
    let r = replay_path(path);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        r.counted[&Kind::Ble],
        adverts,
        "{}: {:?}",
        path.display(),
        r.skipped
    );
    assert_distinct(&r, Kind::Ble, distinct, &path.display().to_string());
    r
}

const ADV1: [u8; 6] = [0x16, 0x23, 0x42, 0x82, 0x43, 0x7d];
const ADV2: [u8; 6] = [0xe8, 0xdd, 0x6e, 0xe5, 0xc5, 0x78];
const ADV3: [u8; 6] = [0x01, 0x02, 0x03, 0x04, 0x05, 0xc6];
const ADV4: [u8; 6] = [0x00, 0x1b, 0x63, 0x11, 0x22, 0x33];

#[test]
fn bluetooth_5_extended_advertising_counts_its_adv_a_like_legacy_advertising() {
    let dir = tempfile::tempdir().expect("dir");
    let records = [
        adv_ind(ADV1, true, true),
        extended_pdu(7, None, false), // ADV_EXT_IND pointing to its AUX_ADV_IND
        extended_pdu(7, Some(ADV2), true), // AUX_ADV_IND with AdvA
        extended_pdu(8, Some(ADV3), false), // AUX_CONNECT_RSP
        extended_pdu(7, Some(ADV2), true), // again
        ll_packet(0x03, &[ADV1, ADV2].concat(), true), // SCAN_REQ: sent by the scanner
    ];
    let path = written(
        &dir,
        "extended.pcap",
        &pcap(Magic::Micro, false, 251, &records),
    );
    let r = assert_ble_like_tshark(&path, 4);
    assert_eq!(r.skipped["ble_not_advertising"], 2);
}

#[test]
fn nrf_sniffer_captures_match_tshark() {
    let dir = tempfile::tempdir().expect("dir");
    let records = [
        nordic(3, 0x01, 60, &adv_ind(ADV1, true, true)),
        nordic(3, 0x00, 60, &adv_ind(ADV3, true, false)), // CRC bad, flagged by the sniffer
        nordic(2, 0x01, 70, &adv_ind(ADV2, false, true)), // protocol version 2
        nordic(3, 0x21, 80, &extended_pdu(7, Some(ADV3), false)), // LE Coded PHY
        nordic(3, 0x01, 60, &extended_pdu(7, None, false)),
        nordic(3, 0x01, 60, &adv_ind(ADV1, true, true)),
        nordic(0, 0x01, 90, &adv_ind(ADV4, false, true)), // nRF Sniffer 1.x (0.9.7)
        nordic(0, 0x00, 60, &adv_ind(ADV4, false, false)), // its CRC flag
    ];
    let path = written(
        &dir,
        "nordic.pcap",
        &pcap(Magic::Micro, false, 272, &records),
    );
    let r = assert_ble_like_tshark(&path, 5);
    assert_eq!(r.skipped["ble_bad_crc"], 2);
    // the sniffer's RSSI (a magnitude) is a negative dBm: a -65 dBm threshold keeps 3
    let policy = FramePolicy {
        min_rssi: Some(-65),
        ..FramePolicy::default()
    };
    let r = replay(&[path], &policy, Pace::Fast).expect("salt");
    assert_eq!(r.counted[&Kind::Ble], 2);
    assert_eq!(r.skipped["below_rssi_threshold"], 3);
}

#[test]
fn recorded_hci_counts_what_the_live_source_counts_in_every_container() {
    let dir = tempfile::tempdir().expect("dir");
    let h4 = [
        hci_scan_enable(),
        hci_command_complete(),
        hci_legacy_reports(&[(ADV1, 0x01, -60), (ADV2, 0x00, -70)]),
        hci_extended_report(ADV3, 0x01, -75),
        hci_legacy_reports(&[(ADV1, 0x01, -61)]),
    ];
    // what the live BLE source makes of the same packets
    let mut live = Vec::new();
    for p in &h4 {
        crowdflow_agent::frame::hci::advertisers(p, &mut live);
    }
    assert_eq!(live.len(), 4);
    let with_phdr: Vec<Vec<u8>> = h4
        .iter()
        .map(|p| [&(u32::from(p[0] == 0x04)).to_be_bytes()[..], p].concat())
        .collect();
    let monitor: Vec<Vec<u8>> = h4
        .iter()
        .map(|p| [&[0, 0, 0, if p[0] == 0x04 { 3 } else { 2 }][..], &p[1..]].concat())
        .collect();
    let files = [
        ("h4.pcap", pcap(Magic::Micro, false, 187, &h4)),
        ("h4-phdr.pcap", pcap(Magic::Micro, true, 201, &with_phdr)),
        ("monitor.pcap", pcap(Magic::Micro, false, 254, &monitor)),
        ("h4.btsnoop", btsnoop(1002, &h4)),
        ("h1.btsnoop", btsnoop(1001, &h4)),
        ("btmon.btsnoop", btsnoop(2001, &h4)),
    ];
    for (name, bytes) in files {
        let path = written(&dir, name, &bytes);
        let (reports, distinct, silent) = tshark_hci(&path);
        assert_eq!((reports, distinct, silent), (4, 3, 2), "tshark read {name}");
        let r = replay_path(&path);
        assert!(r.errors.is_empty(), "{name}: {:?}", r.errors);
        assert_eq!(r.counted[&Kind::Ble], live.len() as u64, "{name}");
        assert_distinct(&r, Kind::Ble, distinct, name);
        assert_eq!(r.skipped["ble_not_advertising"], silent, "{name}");
    }
}

/// The field cases (tests/data/captures/field-cases/README.md): tshark's figures there.
#[test]
fn the_field_cases_count_like_tshark() {
    for file in [
        "pcap_linktype_with_fcs_bits.pcap",
        "pcapng_first_packet_unsupported_iface.pcapng",
        "pcapng_large_name_resolution_block.pcapng",
        "radiotap_badfcs_flag_on_good_frame.pcap",
    ] {
        let r = run(&format!("field-cases/{file}"));
        assert!(r.errors.is_empty(), "{file}: {:?}", r.errors);
        assert_eq!(
            (r.counted[&Kind::Wifi], r.counted[&Kind::WifiRandom]),
            (2, 1),
            "{file}"
        );
        assert_distinct(&r, Kind::Wifi, 2, file);
        assert_distinct(&r, Kind::WifiRandom, 1, file);
    }
}

/// A deterministic fuzz pass that runs with the tests: every seed of the capture_file fuzz
/// corpus (the field cases and one file of every kind above), with bytes flipped, cut,
/// duplicated and length fields stretched, read and decoded to the end without a panic.
#[test]
fn mutated_captures_of_every_kind_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/capture_file");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 15, "{}", seeds.len());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let policy = FramePolicy::default();
    let mut out = Vec::new();
    for seed in &seeds {
        let original = std::fs::read(seed).expect("seed");
        for _ in 0..1500 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len().max(1);
                match next() % 4 {
                    0 => bytes[at] ^= 1 << (next() % 8),
                    1 => bytes.truncate(at),
                    2 => {
                        let tail = bytes[at..].to_vec();
                        bytes.extend_from_slice(&tail);
                    }
                    _ => {
                        if let Some(b) = bytes.get_mut(at) {
                            *b = [0x00, 0xff, 0x7f, 0x80][(next() % 4) as usize];
                        }
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let Ok(mut reader) = crowdflow_agent::capture::file::CaptureReader::new(&bytes[..])
            else {
                continue;
            };
            while let Ok(Some(packet)) = reader.next_packet() {
                out.clear();
                crowdflow_agent::frame::decode_packet(&packet, &policy, true, &mut out);
                assert!(!out.is_empty());
            }
        }
    }
}

/// A pcap of a header and no packet (a capture stopped before it heard anything) is read
/// without an error but with a warning that names it: its zeros are no place heard empty.
#[test]
fn a_header_only_capture_is_named_in_a_warning() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("header-only.pcap");
    std::fs::write(&path, pcap(Magic::Micro, false, 127, &[])).expect("file");
    let out = agent()
        .args(["replay", "--json", "--pcap"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["frames"], 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("header-only.pcap: the file holds no packets"),
        "{stderr}"
    );
}
