//! Replay of real captures against tshark ground truth (tests/data/captures/README.md).
//!
//! Distinct counts below 100 must be exact; larger ones must lie within the reported
//! 2-sigma bounds. Access points must never be counted, and no capture may panic the agent.

use std::path::{Path, PathBuf};
use std::process::Command;

use crowdflow_agent::frame::FramePolicy;
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

/// Exact below 100, within the bounds above.
fn assert_distinct(report: &ReplayReport, kind: Kind, truth: u64, what: &str) {
    let e = report.distinct[&kind];
    if truth < 100 {
        assert_eq!(e.estimate.round() as u64, truth, "{what} {kind}: {e}");
    } else {
        assert!(
            e.contains(truth as f64),
            "{what} {kind}: {e} misses the truth {truth}"
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

#[test]
fn wifi_captures_match_tshark_per_kind() {
    for (file, probes, distinct, local) in WIFI_TRUTH {
        let r = run(file);
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
        ("aircrack-ng/wep_64_ptw_02.cap", "not a pcap or pcapng file"),
        (
            "aircrack-ng/wpa.cap",
            "unsupported link type 119 (PRISM_HEADER)",
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
