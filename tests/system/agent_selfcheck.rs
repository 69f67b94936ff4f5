//! An installer runs `crowdflow-agent selfcheck` at each step: with broker and aggregator up
//! it confirms capture, outbox, broker, salt and that the aggregator knows the sensor; a
//! sensor id missing from the aggregator's config fails with the fix; with the broker down it
//! says so and how to fix. Against the real aggregator, on Mosquitto and on the embedded
//! broker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::{Mosquitto, free_port, gate, run_binary, wait_for_port, workspace_binary};

fn config(dir: &Path, sensor: &str, port: u16, pcap: &Path) -> PathBuf {
    config_sensing(dir, sensor, port, pcap, "[\"wifi\"]")
}

/// An agent config whose capture counts `senses` (a TOML array).
fn config_sensing(dir: &Path, sensor: &str, port: u16, pcap: &Path, senses: &str) -> PathBuf {
    let path = dir.join(format!("agent-{sensor}-{port}-{}.toml", senses.len()));
    let salt = crowdflow_tests::key::salt_section();
    let text = format!(
        "sensor_id = \"{sensor}\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         {salt}[capture]\nsource = \"pcap\"\nsenses = {senses}\npcap = [\"{}\"]\n[outbox]\ndir = \"{}\"\n",
        pcap.display(),
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn selfcheck(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(workspace_binary("crowdflow-agent"))
        .args(["selfcheck", "--timeout-s", "5", "--config"])
        .arg(config)
        .output()
        .expect("selfcheck runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn one_probe(dir: &Path) -> PathBuf {
    let pcap = dir.join("one.pcap");
    write_probes(
        &pcap,
        &[Probe {
            t_us: 0,
            address: [2, 0, 0, 0, 0, 1],
        }],
    );
    pcap
}

/// The gate's aggregator (it knows sensor gate-1 only) with `broker` as its `[broker]` body.
fn aggregator(dir: &Path, broker: &str) -> crowdflow_tests::Proc {
    let cfg = gate::aggregator_config(
        &dir.join("aggregator.toml"),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[broker]\n{broker}\n\
             [storage]\nkind = \"sqlite\"\npath = \"{}\"\n[salt]\nannounce_every_s = 5",
            dir.join("crowdflow.db").display()
        ),
    );
    let aggregator = run_binary("crowdflow-aggregator", &cfg, "aggregator");
    // It listens 3 s for a leader before it announces.
    std::thread::sleep(Duration::from_secs(4));
    aggregator
}

/// A known sensor's checks all pass; an unknown sensor gets the salt but fails the sensor
/// id check, which names the fix; its id is in the aggregator's log.
fn known_and_unknown(dir: &Path, port: u16, pcap: &Path, aggregator: &crowdflow_tests::Proc) {
    let (code, out) = selfcheck(&config(dir, "gate-1", port, pcap));
    for line in [
        "ok   config",
        "ok   capture",
        "ok   outbox",
        "ok   broker",
        "ok   salt",
        "ok   sensor ",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // The clock check depends on the machine (a sandbox may not run NTP); nothing else fails.
    let failed: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("FAIL") && !l.starts_with("FAIL clock"))
        .collect();
    assert!(failed.is_empty() && code.is_some(), "{out}");

    // The aggregator lists gate-1 as a Wi-Fi sensor: BLE sketches would all be rejected.
    let (code, out) = selfcheck(&config_sensing(
        dir,
        "gate-1",
        port,
        pcap,
        "[\"wifi\", \"ble\"]",
    ));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL sensor ")
            && out.contains("not as a ble sensor")
            && out.contains("kind_not_allowed")
            && out.contains("Add \"ble\""),
        "{out}"
    );

    let (code, out) = selfcheck(&config(dir, "gate-9", port, pcap));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("ok   salt")
            && out.contains("FAIL sensor ")
            && out.contains("does not know sensor gate-9")
            && out.contains("[[sensors]] id = \"gate-9\""),
        "{out}"
    );
    let log = String::from_utf8_lossy(&aggregator.output()).into_owned();
    assert!(
        log.contains("a sensor this aggregator does not know asked for the salt")
            && log.contains("gate-9"),
        "the aggregator's log names the unknown sensor:\n{log}"
    );
}

#[test]
fn selfcheck_confirms_a_known_sensor_names_an_unknown_one_and_a_missing_broker() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path());
    let pcap = one_probe(dir.path());
    let mut aggregator = aggregator(
        dir.path(),
        &format!(
            "mode = \"external\"\nurl = \"mqtt://127.0.0.1:{}\"",
            broker.port
        ),
    );
    known_and_unknown(dir.path(), broker.port, &pcap, &aggregator);

    // A Mosquitto without ACL lets anyone publish an answer: unsigned "known" answers for
    // the unknown sensor, ten a second, change nothing.
    let forging = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let forger = forge_answers(broker.port, "gate-9", forging.clone());
    let (code, out) = selfcheck(&config(dir.path(), "gate-9", broker.port, &pcap));
    forging.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = forger.join();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL sensor ") && out.contains("does not know sensor gate-9"),
        "a forged answer was believed:\n{out}"
    );
    aggregator.terminate(Duration::from_secs(5));

    let (code, out) = selfcheck(&config(dir.path(), "gate-1", free_port(), &pcap));
    assert_eq!(code, Some(1));
    assert!(
        out.contains("FAIL broker") && out.contains("cannot reach"),
        "{out}"
    );

    let nope = dir.path().join("nope.pcap");
    let (code, out) = selfcheck(&config(dir.path(), "gate-1", broker.port, &nope));
    assert_eq!(code, Some(1));
    assert!(
        out.contains("FAIL capture") && out.contains("nope.pcap: cannot open"),
        "{out}"
    );
}

#[test]
fn selfcheck_names_an_unknown_sensor_on_the_embedded_broker() {
    let dir = tempfile::tempdir().expect("tmp");
    let pcap = one_probe(dir.path());
    let port = free_port();
    let mut aggregator = aggregator(
        dir.path(),
        &format!("mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\""),
    );
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "embedded broker up"
    );
    known_and_unknown(dir.path(), port, &pcap, &aggregator);
    aggregator.terminate(Duration::from_secs(5));
}

/// Publishes unsigned answers saying `sensor` is known, until `on` turns false.
fn forge_answers(
    port: u16,
    sensor: &str,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let topic = format!("crowdflow/v1/salt/answer/{sensor}");
    let forged = format!(
        "{{\"v\":1,\"sensor_id\":\"{sensor}\",\"known\":true,\"authority\":\"aggregator-1\",\"issued_at\":\"{}\"}}",
        jiff::Timestamp::now()
    );
    std::thread::spawn(move || {
        let (client, mut connection) =
            rumqttc::Client::new(rumqttc::MqttOptions::new("forger", "127.0.0.1", port), 64);
        // Ends at the first error: the disconnect below, or a broker gone.
        let driver = std::thread::spawn(move || {
            for event in connection.iter() {
                if event.is_err() {
                    break;
                }
            }
        });
        while on.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = client.try_publish(
                topic.as_str(),
                rumqttc::QoS::AtMostOnce,
                false,
                forged.as_bytes().to_vec(),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = client.disconnect();
        let _ = driver.join();
    })
}
