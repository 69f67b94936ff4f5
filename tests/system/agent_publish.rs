//! A sensor installer's agent, replaying a capture, publishes sketches through a real
//! Mosquitto; a subscriber that plays the aggregator's salt authority decodes them and gets
//! the devices that were in the capture.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crowdflow_aggregator::broker::{BrokerSettings, EmbeddedBroker};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::{Precision, SketchUnion};
use crowdflow_contract::wire::{
    AgentStatus, DecodeRules, EpochSalt, SaltAnnouncement, SketchMessage, Topics,
};
use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::{
    Mosquitto, Proc, assert_no_addresses, files_below, free_port, http_get, runtime,
    workspace_binary,
};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const GLOBAL: u8 = 25;
const RANDOM: u8 = 15;

fn probes() -> Vec<Probe> {
    // Each device probes three times between 1.5 s and 3.5 s after the start.
    let mut out = Vec::new();
    for round in 0..3u64 {
        for i in 0..GLOBAL + RANDOM {
            let first = if i < GLOBAL { 0x00 } else { 0x02 };
            out.push(Probe {
                t_us: 1_500_000 + round * 700_000 + u64::from(i) * 10_000,
                address: [first, 0x1b, 0x63, 0x84, 0x45, i],
            });
        }
    }
    out
}

fn agent_config(dir: &Path, port: u16, pcap: &Path, metrics_port: u16) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        r#"sensor_id = "test-sensor-1"
[broker]
url = "mqtt://127.0.0.1:{port}"
{salt}[capture]
source = "pcap"
pcap = ["{pcap}"]
[counting]
window_s = 10
[outbox]
dir = "{outbox}"
[metrics]
listen = "127.0.0.1:{metrics_port}"
"#,
        pcap = pcap.display(),
        outbox = dir.join("outbox").display(),
        salt = crowdflow_tests::key::salt_section(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn announcement(salt: Salt) -> SaltAnnouncement {
    let now = Timestamp::now();
    SaltAnnouncement {
        authority: "test-authority".into(),
        issued_at: now,
        salts: vec![EpochSalt {
            epoch: "2026-11-22".parse().expect("epoch"),
            starts: now - SignedDuration::from_hours(1),
            ends: now + SignedDuration::from_hours(1),
            salt,
        }],
    }
}

#[test]
fn agent_sketches_reach_a_subscriber_through_mosquitto_with_the_right_counts() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path());
    publish_and_check(dir.path(), broker.port);
}

#[test]
fn agent_sketches_reach_a_subscriber_through_the_embedded_broker_with_the_right_counts() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let settings = BrokerSettings {
        listen: ([127, 0, 0, 1], port).into(),
        accounts: None,
        max_payload: 1 << 22,
        max_connections: 100,
        tls: None,
        dropped: crowdflow_aggregator::metrics::Metrics::default().broker_dropped,
    };
    let _broker = EmbeddedBroker::start(&settings).expect("embedded broker starts");
    publish_and_check(dir.path(), port);
}

fn publish_and_check(dir: &Path, port: u16) {
    let pcap = dir.join("probes.pcap");
    write_probes(&pcap, &probes());
    let metrics_port = free_port();
    let config = agent_config(dir, port, &pcap, metrics_port);

    let runtime = runtime();
    let (sketches, status, wire, logs, metrics) = runtime.block_on(async {
        let topics = Topics::default();
        let mut options = MqttOptions::new("test-authority", "127.0.0.1", port);
        options.set_max_packet_size(1 << 22, 1 << 22);
        let (client, mut events) = AsyncClient::new(options, 64);
        client
            .subscribe(topics.sketch_filter(), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        client
            .subscribe(topics.status_filter(), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        client
            .subscribe(topics.salt_request_filter(), QoS::AtMostOnce)
            .await
            .expect("subscribe");
        // wait for the subscriptions before the agent starts
        let mut subacks = 0;
        while subacks < 3 {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = events.poll().await {
                subacks += 1;
            }
        }
        let mut command = Command::new(workspace_binary("crowdflow-agent"));
        command
            .args(["run", "--config"])
            .arg(&config)
            .env("CROWDFLOW_LOG", "trace");
        let mut agent = Proc::spawn_capturing(command, "crowdflow-agent");
        let salt = Salt::generate().expect("entropy");
        let fp = salt.fingerprint();
        let payload = announcement(salt).sign(crowdflow_tests::key::authority_key());
        let mut sketches: Vec<SketchMessage> = Vec::new();
        let mut wire = Vec::new();
        let mut status: Option<AgentStatus> = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        while tokio::time::Instant::now() < deadline {
            let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(1), events.poll()).await
            else {
                continue;
            };
            let Event::Incoming(Packet::Publish(p)) = event else {
                continue;
            };
            wire.extend_from_slice(p.topic.as_bytes());
            wire.extend_from_slice(&p.payload);
            if p.topic == topics.salt() {
                continue; // our own announcement
            } else if p.topic.contains("/salt/request/") {
                client
                    .publish(topics.salt(), QoS::AtMostOnce, false, payload.to_vec())
                    .await
                    .expect("salt");
            } else if p.topic.contains("/status/") {
                status = AgentStatus::decode(&p.payload)
                    .ok()
                    .filter(|s| s.salt.as_ref().is_some_and(|s| s.counting))
                    .or(status);
            } else {
                let rules = DecodeRules::new(Precision::DEFAULT, Timestamp::now());
                let m = SketchMessage::decode(&p.payload, &rules)
                    .expect("the agent's envelopes decode");
                assert_eq!(m.salt_fp, fp);
                assert_eq!(m.sensor_id.as_str(), "test-sensor-1");
                sketches.push(m);
                let frames: u64 = sketches.iter().map(|m| m.frames).sum();
                if frames == u64::from(GLOBAL + RANDOM) * 3 && status.is_some() {
                    break;
                }
            }
            if status.is_some()
                && sketches.iter().map(|m| m.frames).sum::<u64>() == u64::from(GLOBAL + RANDOM) * 3
            {
                break;
            }
        }
        let metrics = http_get(metrics_port, "/metrics").expect("metrics are served");
        agent.terminate(Duration::from_secs(5));
        let logs = agent.output();
        (sketches, status, wire, logs, metrics)
    });

    let mut unions: BTreeMap<Kind, SketchUnion> = BTreeMap::new();
    for m in &sketches {
        unions
            .entry(m.kind)
            .or_insert_with(|| SketchUnion::new(Precision::DEFAULT))
            .add(&m.sketch);
    }
    let count = |k: Kind| {
        unions
            .get(&k)
            .map_or(0.0, |u| u.estimate().estimate.round())
    };
    assert_eq!(count(Kind::Wifi), f64::from(GLOBAL), "{sketches:?}");
    assert_eq!(count(Kind::WifiRandom), f64::from(RANDOM));
    assert_eq!(count(Kind::Ble), 0.0);
    let frames: u64 = sketches.iter().map(|m| m.frames).sum();
    assert_eq!(
        frames,
        u64::from(GLOBAL + RANDOM) * 3,
        "every counted frame is in a published window"
    );
    let status = status.expect("the agent published a status saying it counts");

    // Privacy: the addresses fed in appear nowhere the agent wrote to.
    let addresses: Vec<[u8; 6]> = probes().iter().map(|p| p.address).collect();
    assert!(!wire.is_empty());
    assert_no_addresses(&wire, &addresses, "an MQTT payload");
    assert_no_addresses(&logs, &addresses, "the agent's output");
    assert_no_addresses(metrics.as_bytes(), &addresses, "the agent's metrics");
    let logs = String::from_utf8_lossy(&logs);
    assert!(
        logs.contains("frame counted"),
        "trace logging was on: {logs}"
    );
    let quiet: Vec<&str> = logs.lines().filter(|l| !l.contains("frame ")).collect();
    assert!(logs.contains("window closed"), "{}", quiet.join("\n"));
    assert!(
        metrics.contains("crowdflow_agent_frames_counted_total{kind=\"wifi\"} 75"),
        "{metrics}"
    );
    assert!(
        metrics.contains("crowdflow_agent_salt_valid 1"),
        "{metrics}"
    );
    // The device estimate's learned history is kept in the outbox directory for a restart (counts
    // only: scanned for the addresses below with the outbox).
    let kept = std::fs::read(dir.join("outbox").join("installation.json"))
        .expect("the installation history is kept as windows close");
    let kept: serde_json::Value = serde_json::from_slice(&kept).expect("json");
    assert_eq!(kept["rssi_bins"].as_array().map(Vec::len), Some(256));
    for (path, bytes) in files_below(&dir.join("outbox")) {
        assert_no_addresses(&bytes, &addresses, &path.display().to_string());
    }
    assert_eq!(status.outbox.map(|o| o.overflowed), Some(0));
}
