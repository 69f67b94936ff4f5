//! A flood against the embedded broker (#14): one client sends 240 MB of 1 MB payloads, half
//! on a topic nobody subscribes to and half as garbage on a sensor's sketch topic, while the
//! sensor's own agent goes on publishing. During it the API still answers; after it every one
//! of the sensor's devices is counted, and the aggregator's memory grew by a bounded amount
//! (the broker refuses packets beyond 128 KiB and queues at most 2048 messages per session).

use std::time::{Duration, Instant};

use crowdflow_aggregator::store::SqliteStore;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::write_probes;
use crowdflow_tests::gate::{self, DEVICES};
use crowdflow_tests::{free_port, http_get, run_binary, runtime, stored, wait_for_port};
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// Resident memory of process `pid` in MB (Linux /proc).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[test]
fn a_payload_flood_leaves_memory_bounded_and_counts_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mqtt, http) = (free_port(), free_port());
    let db = dir.path().join("crowdflow.db");
    let pcap = dir.path().join("crowd.pcap");
    write_probes(&pcap, &gate::probes([0x0e, 0xf1, 0x00], 300_000));
    let config = gate::aggregator_config(
        &dir.path().join("aggregator.toml"),
        &format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\nanonymous_role = \"viewer\"\n\
             [broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [storage]\nkind = \"sqlite\"\npath = \"{}\"\n[salt]\nannounce_every_s = 5",
            db.display()
        ),
    );
    let mut aggregator = run_binary("crowdflow-aggregator", &config, "crowdflow-aggregator");
    assert!(wait_for_port(mqtt, Duration::from_secs(15)), "broker up");
    std::thread::sleep(Duration::from_secs(2));
    let before = rss_mb(aggregator.child.id());
    let agent_cfg = gate::agent_config(dir.path(), mqtt, &pcap);
    let mut agent = run_binary("crowdflow-agent", &agent_cfg, "crowdflow-agent");

    let runtime = runtime();
    let slowest = runtime.block_on(async {
        let mut options = MqttOptions::new("flooder", "127.0.0.1", mqtt);
        options
            .set_max_packet_size(2 << 20, 2 << 20)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 16);
        // The broker drops a client that sends a packet beyond its limit (twice the 64 KiB
        // envelope): the flooder reconnects and goes on.
        tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        let payload = vec![b'x'; 1 << 20];
        let mut slowest = Duration::ZERO;
        for i in 0..240 {
            let topic = if i % 2 == 0 {
                "flood/nobody-listens".to_owned()
            } else {
                "crowdflow/v1/sketch/gate-1".to_owned()
            };
            let _ = client
                .publish(topic, QoS::AtMostOnce, false, payload.clone())
                .await;
            if i % 40 == 0 {
                let asked = Instant::now();
                let answer = http_get(http, "/api/v1/health").unwrap_or_default();
                assert!(
                    answer.contains("\"broker_connected\":true"),
                    "the API answers, its broker link up, during the flood: {answer}"
                );
                slowest = slowest.max(asked.elapsed());
            }
        }
        slowest
    });
    let store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
    let frames = runtime.block_on(stored::wait_for_frames(
        &store,
        DEVICES,
        Duration::from_secs(90),
    ));
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_mb(aggregator.child.id());
    agent.terminate(Duration::from_secs(5));
    aggregator.terminate(Duration::from_secs(5));
    eprintln!(
        "aggregator RSS {before:.0} MB before, {after:.0} MB after a 240 MB flood; slowest health answer during it {slowest:?}"
    );
    assert_eq!(frames, DEVICES, "every device of the sensor is counted");
    assert!(
        after - before < 150.0,
        "memory bounded: {before:.0} -> {after:.0} MB"
    );
}
