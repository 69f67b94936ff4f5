//! The broker goes down for several windows and the agent is restarted during the outage:
//! when the broker is back, every window arrives, each exactly once in its estimate.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crowdflow_contract::sketch::{Precision, SketchUnion};
use crowdflow_tests::authority::Authority;
use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::{
    Mosquitto, Proc, assert_no_addresses, files_below, runtime, workspace_binary,
};

/// 100 devices, each probing once, four per second from 1 s to 26 s.
const DEVICES: u64 = 100;

fn probes() -> Vec<Probe> {
    (0..DEVICES)
        .map(|i| Probe {
            t_us: 1_000_000 + i * 250_000,
            address: [0x02, 0x5e, 0x00, 0x11, (i >> 8) as u8, i as u8],
        })
        .collect()
}

fn config(dir: &Path, name: &str, port: u16, pcap: &Path) -> std::path::PathBuf {
    let path = dir.join(name);
    let salt = crowdflow_tests::key::salt_section();
    let text = format!(
        "sensor_id = \"outbox-sensor\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         {salt}[capture]\nsource = \"pcap\"\npcap = [\"{}\"]\n[counting]\nwindow_s = 10\n\
         [outbox]\ndir = \"{}\"\n",
        pcap.display(),
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn start_agent(config: &Path) -> Proc {
    let mut command = Command::new(workspace_binary("crowdflow-agent"));
    command
        .args(["run", "--config"])
        .arg(config)
        .env("CROWDFLOW_LOG", "debug");
    Proc::spawn_capturing(command, "crowdflow-agent")
}

#[test]
fn windows_closed_during_an_outage_and_an_agent_restart_all_arrive_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::start(dir.path());
    let port = broker.port;
    let traffic = dir.path().join("traffic.pcap");
    write_probes(&traffic, &probes());
    let quiet = dir.path().join("quiet.pcap");
    write_probes(&quiet, &[]);
    let first_config = config(dir.path(), "first.toml", port, &traffic);
    let second_config = config(dir.path(), "second.toml", port, &quiet);

    let runtime = runtime();
    runtime.block_on(async {
        let authority = Authority::spawn(port);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut agent = start_agent(&first_config);
        // Counting has started and the first window is through.
        assert!(
            authority
                .wait_for(Duration::from_secs(30), |s| !s.sketches.is_empty())
                .await,
            "no sketch before the outage: {}",
            String::from_utf8_lossy(&agent.output())
        );
        let before_outage = authority.frames();
        broker.proc.kill();
        // All frames are heard and their windows closed into the outbox during the outage.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let queued = queued_sketches(&dir.path().join("outbox"));
        assert!(
            queued.len() >= 2,
            "windows queued during the outage: {}",
            queued.len()
        );
        let addresses: Vec<[u8; 6]> = probes().iter().map(|p| p.address).collect();
        for (path, bytes) in &queued {
            assert_no_addresses(bytes, &addresses, &path.display().to_string());
        }
        agent.terminate(Duration::from_secs(5));
        let first_output = agent.output();
        let mut agent = start_agent(&second_config);
        tokio::time::sleep(Duration::from_secs(2)).await;
        broker = Mosquitto::start_on(dir.path(), port);
        assert!(
            authority
                .wait_for(Duration::from_secs(40), |s| s
                    .sketches
                    .iter()
                    .map(|m| m.frames)
                    .sum::<u64>()
                    >= DEVICES)
                .await,
            "frames delivered: {} of {DEVICES} ({before_outage} before the outage)\n{}",
            authority.frames(),
            String::from_utf8_lossy(&agent.output())
        );
        // Give duplicates, if any, a chance to show up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        agent.terminate(Duration::from_secs(5));

        let seen = authority.seen.lock().expect("lock");
        let mut per_window: BTreeMap<(jiff::Timestamp, &str), (u64, SketchUnion)> = BTreeMap::new();
        for m in &seen.sketches {
            assert_eq!(m.salt_fp, authority.fingerprint);
            let entry = per_window
                .entry((m.window.start(), m.kind.as_str()))
                .or_insert_with(|| (m.frames, SketchUnion::new(Precision::DEFAULT)));
            assert_eq!(entry.0, m.frames, "copies of one window must be identical");
            entry.1.add(&m.sketch);
        }
        let mut total = 0;
        for ((window, kind), (frames, union)) in &per_window {
            let devices = union.estimate().estimate.round() as u64;
            if *kind == "wifi_derandomized" {
                // The physical-device view of the window's Wi-Fi frames (no frames of its
                // own): these probes carry no capability elements, so one device per address.
                let addresses: u64 = ["wifi", "wifi_random"]
                    .iter()
                    .filter_map(|k| per_window.get(&(*window, *k)))
                    .map(|(f, _)| f)
                    .sum();
                assert_eq!((devices, *frames), (addresses, 0), "{window} {kind}");
                continue;
            }
            assert_eq!(devices, *frames, "{window} {kind}: each device probes once");
            total += frames;
        }
        assert_eq!(total, DEVICES, "every window exactly once");
        assert!(
            queued_sketches(&dir.path().join("outbox")).is_empty(),
            "the outbox is drained"
        );
        // What the device estimate learned stays beside it, for the next start.
        assert!(dir.path().join("outbox/installation.json").exists());
        let addresses: Vec<[u8; 6]> = probes().iter().map(|p| p.address).collect();
        assert_no_addresses(&seen.wire, &addresses, "an MQTT payload");
        assert_no_addresses(&first_output, &addresses, "the agent's output");
    });
    drop(broker);
}

/// The files under an agent's outbox directory but its learned installation history
/// (`installation.json`, kept across restarts): the queued sketch messages.
fn queued_sketches(outbox: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    files_below(outbox)
        .into_iter()
        .filter(|(path, _)| !path.ends_with("installation.json"))
        .collect()
}
