//! What leaves the agent's counting path carries no capability fingerprint: real probe
//! requests of three phones (probing-patterns) go through decoding, the windows, the
//! physical-device estimate and the outbox with trace logging on; the sketch payloads (as
//! sent on MQTT and as decoded sketch bytes), the outbox files, the status message and the
//! logs are scanned for every capability element's contents, for the fingerprint digests
//! and for the addresses. So are `replay`'s outputs (human, JSON, windows, trace logs) and
//! its error for a damaged file whose length field is read from an address.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crowdflow_agent::capture::file::CaptureReader;
use crowdflow_agent::counting::Counter;
use crowdflow_agent::counting::installation;
use crowdflow_agent::counting::window::Windows;
use crowdflow_agent::frame::LinkType;
use crowdflow_agent::frame::{FcsRule, FramePolicy, capability_fingerprint, decode_sighting};
use crowdflow_agent::publish::outbox::Outbox;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::{
    DecodeRules, EpochSalt, OutboxHealth, SaltAnnouncement, SensorId, SketchMessage,
};
use jiff::{SignedDuration, Timestamp};

fn phone(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/captures/probing-patterns")
        .join(format!("{name}_anonymized.pcap"))
}

/// A log sink shared with the subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The 802.11 frame of a radiotap record, without FCS.
fn wifi_frame(record: &[u8]) -> &[u8] {
    let rt = usize::from(u16::from_le_bytes([record[2], record[3]]));
    let fcs = record[4] & 0x02 != 0 && record.get(8).is_some_and(|f| f & 0x10 != 0);
    &record[rt..record.len() - if fcs { 4 } else { 0 }]
}

/// Contents of the capability elements (4 bytes or longer: shorter strings occur by chance).
fn capability_contents(frame: &[u8], out: &mut Vec<Vec<u8>>) {
    let mut i = 24;
    while i + 2 <= frame.len() {
        let (id, len) = (frame[i], usize::from(frame[i + 1]));
        let Some(body) = frame.get(i + 2..i + 2 + len) else {
            break;
        };
        let capability =
            matches!(id, 1 | 50 | 45 | 191) || (id == 255 && body.first() == Some(&35));
        if capability && len >= 4 && !out.iter().any(|n| n == body) {
            out.push(body.to_vec());
        }
        i += 2 + len;
    }
}

fn notations(needle: &[u8]) -> Vec<Vec<u8>> {
    let hex: String = needle.iter().map(|b| format!("{b:02x}")).collect();
    let colons: Vec<String> = needle.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        needle.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        colons.join(":").into_bytes(),
        // Rust's Debug of a byte array or slice
        format!("{needle:?}").into_bytes(),
    ]
}

fn assert_absent(haystack: &[u8], needles: &[Vec<u8>], what: &str) {
    for needle in needles {
        for form in notations(needle) {
            assert!(
                !haystack.windows(form.len()).any(|w| w == form.as_slice()),
                "{what} holds capability bytes ({} bytes)",
                needle.len()
            );
        }
    }
}

#[test]
fn no_fingerprint_bytes_leave_the_agent() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let now = Timestamp::now();
    let start = now;
    let mut counter = Counter::new(
        SensorId::new("privacy-1").expect("id"),
        Windows::new(
            WindowLength::new(300).expect("length"),
            Precision::DEFAULT,
            Kind::ALL.to_vec(),
        ),
    );
    counter.accept_salts(
        SaltAnnouncement {
            authority: "test".into(),
            issued_at: now,
            salts: vec![EpochSalt {
                epoch: "2026-11-30".parse().expect("epoch"),
                starts: now - SignedDuration::from_hours(2),
                ends: now + SignedDuration::from_hours(2),
                salt: Salt::generate().expect("entropy"),
            }],
        },
        now,
    );

    let mut secrets: Vec<Vec<u8>> = Vec::new();
    // The anonymizer of these captures did not recompute the FCS: read as plain tshark does.
    let policy = FramePolicy {
        fcs: FcsRule::Ignore,
        ..FramePolicy::default()
    };
    for name in ["iPhone11-B", "OppoFindX3Neo-A", "iPhone7-F"] {
        let mut reader =
            CaptureReader::new(BufReader::new(File::open(phone(name)).expect("capture")))
                .expect("readable");
        let mut first = None;
        while let Some(p) = reader.next_packet().expect("whole file") {
            let t0 = *first.get_or_insert(p.ts_ns);
            let offset = SignedDuration::from_nanos(p.ts_ns - t0);
            if offset > SignedDuration::from_mins(25) {
                break;
            }
            let frame = wifi_frame(p.data);
            capability_contents(frame, &mut secrets);
            if let Some(fp) = capability_fingerprint(frame) {
                secrets.push(fp.digest().to_vec());
            }
            secrets.push(frame[10..16].to_vec());
            let outcome = decode_sighting(LinkType::Radiotap, p.data, &policy);
            counter.record_sighting(start + offset, &outcome);
        }
    }
    secrets.sort();
    secrets.dedup();
    assert!(secrets.len() > 100, "{} secrets", secrets.len());

    let mut messages = counter.close_due(now + SignedDuration::from_mins(31));
    messages.extend(counter.close_all());
    let devices: f64 = messages
        .iter()
        .filter(|m| m.kind == Kind::WifiDerandomized)
        .map(|m| m.sketch.estimate().estimate)
        .fold(0.0, f64::max);
    assert!(
        (3.0..=5.0).contains(&devices.round()),
        "three phones, {devices} devices in the busiest window"
    );

    let dir = tempfile::tempdir().expect("tmp");
    let mut outbox = Outbox::open(&dir.path().join("outbox"), 1 << 24).expect("outbox");
    let rules = DecodeRules::new(Precision::DEFAULT, now + SignedDuration::from_mins(31));
    for m in &messages {
        let payload = m.encode();
        assert_absent(&payload, &secrets, "an MQTT sketch payload");
        let decoded = SketchMessage::decode(&payload, &rules).expect("own message");
        assert_absent(&decoded.sketch.encode(), &secrets, "sketch bytes");
        outbox.push(&payload).expect("queued");
    }
    // The learned installation history in the outbox directory, scanned with it.
    let (gate, cadence) = counter.installation();
    let outbox_dir = dir.path().join("outbox");
    installation::save(&outbox_dir, gate, cadence, now).expect("history saved");
    assert!(outbox_dir.join(installation::FILE).exists());
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).expect("read");
        assert_absent(&bytes, &secrets, &format!("{}", entry.display()));
    }
    let status = counter.status(
        now + SignedDuration::from_mins(31),
        OutboxHealth {
            depth: outbox.depth(),
            bytes: outbox.bytes(),
            capacity_bytes: outbox.max_bytes(),
            overflowed: outbox.overflowed(),
        },
    );
    assert_absent(&status.encode(), &secrets, "the status message");
    let logged = logs.0.lock().expect("logs").clone();
    assert!(logged.len() > 1000, "trace logs were written");
    assert_absent(&logged, &secrets, "the logs");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every address and capability element of a capture's probe requests, and their digests.
fn capture_secrets(path: &Path) -> Vec<Vec<u8>> {
    let mut reader =
        CaptureReader::new(BufReader::new(File::open(path).expect("capture"))).expect("readable");
    let mut secrets = Vec::new();
    while let Some(p) = reader.next_packet().expect("whole file") {
        let frame = wifi_frame(p.data);
        capability_contents(frame, &mut secrets);
        if let Some(fp) = capability_fingerprint(frame) {
            secrets.push(fp.digest().to_vec());
        }
        secrets.push(frame[10..16].to_vec());
    }
    secrets.sort();
    secrets.dedup();
    secrets
}

#[test]
fn replay_output_and_errors_hold_no_address_or_capability_bytes() {
    let agent = |args: &[&str], pcap: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
            .arg("replay")
            .args(args)
            .arg("--pcap")
            .arg(pcap)
            .env("CROWDFLOW_LOG", "trace")
            .output()
            .expect("agent runs");
        [out.stdout, out.stderr].concat()
    };
    for name in ["iPhone11-B", "OppoFindX3Neo-A"] {
        let path = phone(name);
        let secrets = capture_secrets(&path);
        assert!(secrets.len() > 10, "{name}: {} secrets", secrets.len());
        for args in [
            &["--ignore-fcs"][..],
            &["--ignore-fcs", "--json", "--window", "60s"],
            &["--json"],
        ] {
            assert_absent(&agent(args, &path), &secrets, &format!("replay {args:?}"));
        }
    }
    // A damaged file whose next "record header" is packet data: the length field read there
    // holds four bytes of an address, and the error must not print them in any base.
    let address = [0x46u8, 0x28, 0x0b, 0x0c, 0xcb, 0xcc];
    let mut file = Vec::new();
    file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    file.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    file.extend_from_slice(&65535u32.to_le_bytes());
    file.extend_from_slice(&127u32.to_le_bytes());
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&address[..4]);
    file.extend_from_slice(&address[2..6]);
    let dir = tempfile::tempdir().expect("tmp");
    let damaged = dir.path().join("damaged.pcap");
    std::fs::write(&damaged, &file).expect("write");
    let out = agent(&["--json"], &damaged);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("corrupt pcap record"), "{text}");
    let le = u32::from_le_bytes([address[0], address[1], address[2], address[3]]);
    for number in [le.to_string(), format!("{le:x}"), format!("{le:#x}")] {
        assert!(
            !text.contains(&number),
            "the error prints address bytes: {text}"
        );
    }
    assert_absent(
        &out,
        &[address.to_vec(), address[..4].to_vec()],
        "the error",
    );
}
