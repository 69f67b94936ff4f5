//! Two sensors of one zone, each hearing part of a crowd, publish through the aggregator's
//! embedded broker into its SQLite store: the zone counts every device once (a device seen
//! by both sensors counts once), and neither the salt nor an address is in any file or log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use crowdflow_aggregator::store::{Resolution, SqliteStore};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::{
    assert_no_addresses, files_below, free_port, run_binary, stored, wait_for_port,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn device(i: u64) -> [u8; 6] {
    [0x06, 0x77, 0x00, 0x00, (i >> 8) as u8, i as u8]
}

/// Devices `range`, each probing twice between 1.5 s and 4.5 s.
fn probes(range: std::ops::Range<u64>) -> Vec<Probe> {
    let mut out: Vec<Probe> = range
        .flat_map(|i| {
            [0, 1_500_000].map(|offset| Probe {
                t_us: 1_500_000 + offset + (i % 50) * 30_000,
                address: device(i),
            })
        })
        .collect();
    out.sort_by_key(|p| p.t_us);
    out
}

fn aggregator_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("aggregator.toml");
    let text = format!(
        r#"[http]
listen = "127.0.0.1:{http}"
[broker]
mode = "embedded"
listen = "127.0.0.1:{port}"
username = "observer"
password = "observer-secret"
[storage]
kind = "sqlite"
path = "{db}"
[salt]
announce_every_s = 5
[counting]
window_s = 10
[[zones]]
id = "plaza"
name = "Plaza"
area_m2 = 5000.0
[[sensors]]
id = "plaza-1"
zone = "plaza"
password = "secret-1"
senses = ["wifi"]
[[sensors]]
id = "plaza-2"
zone = "plaza"
password = "secret-2"
senses = ["wifi"]
"#,
        http = free_port(),
        db = dir.join("data/crowdflow.db").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn agent_config(dir: &Path, sensor: &str, password: &str, port: u16, pcap: &Path) -> PathBuf {
    let path = dir.join(format!("{sensor}.toml"));
    let text = format!(
        "sensor_id = \"{sensor}\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nusername = \"{sensor}\"\npassword = \"{password}\"\n\
         [capture]\nsource = \"pcap\"\nsenses = [\"wifi\"]\npcap = [\"{}\"]\n[counting]\nwindow_s = 10\n[outbox]\ndir = \"{}\"\n",
        pcap.display(),
        dir.join(format!("outbox-{sensor}")).display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Watches the salt topic with the observer account and returns the salt bytes announced.
async fn observe_salt(port: u16) -> Vec<u8> {
    let mut options = MqttOptions::new("salt-observer", "127.0.0.1", port);
    options.set_credentials("observer", "observer-secret");
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe("crowdflow/v1/salt", QoS::AtMostOnce)
        .await
        .expect("subscribe");
    loop {
        if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await {
            let doc: serde_json::Value = serde_json::from_slice(&p.payload).expect("json");
            let b64 = doc["salts"][0]["salt"].as_str().expect("salt").to_owned();
            return base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
        }
    }
}

#[test]
fn a_device_heard_by_two_sensors_of_a_zone_counts_once_in_storage() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let aggregator_cfg = aggregator_config(dir.path(), port);
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    assert!(
        wait_for_port(port, Duration::from_secs(15)),
        "{}",
        String::from_utf8_lossy(&aggregator.output())
    );
    let (one, two) = (dir.path().join("one.pcap"), dir.path().join("two.pcap"));
    write_probes(&one, &probes(0..60));
    write_probes(&two, &probes(40..100));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let salt = runtime.block_on(async {
        let salt = tokio::spawn(observe_salt(port));
        let salt = tokio::time::timeout(Duration::from_secs(20), salt)
            .await
            .expect("a salt is announced")
            .expect("join");
        let mut agents = [
            run_binary(
                "crowdflow-agent",
                &agent_config(dir.path(), "plaza-1", "secret-1", port, &one),
                "agent-1",
            ),
            run_binary(
                "crowdflow-agent",
                &agent_config(dir.path(), "plaza-2", "secret-2", port, &two),
                "agent-2",
            ),
        ];

        let store = SqliteStore::open(&dir.path().join("data/crowdflow.db"), Precision::DEFAULT)
            .expect("open");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut devices = 0.0;
        let mut frames = 0;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            devices = stored::devices(&store, "plaza", Kind::WifiRandom, Resolution::Minute).await;
            frames = stored::frames(&store).await;
            if frames == 240 {
                break;
            }
        }
        for agent in &mut agents {
            agent.terminate(Duration::from_secs(5));
        }
        let logs: Vec<u8> = agents.iter().flat_map(|a| a.output()).collect();
        assert_eq!(
            frames,
            240,
            "every probe of both sensors is stored\n{}",
            String::from_utf8_lossy(&logs)
        );
        assert_eq!(devices, 100.0, "60 + 60 devices with 20 in common");
        assert_eq!(
            stored::devices(&store, "plaza", Kind::WifiRandom, Resolution::Hour).await,
            100.0,
            "the hour rollup agrees"
        );
        assert_no_addresses(
            &logs,
            &(0..100).map(device).collect::<Vec<_>>(),
            "the agents' logs",
        );
        salt
    });
    aggregator.terminate(Duration::from_secs(5));
    let logs = aggregator.output();

    // Privacy: no address and no salt (raw, hex or base64) in any file or the aggregator's log.
    let addresses: Vec<[u8; 6]> = (0..100).map(device).collect();
    let hex: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&salt);
    let forms = [
        salt.clone(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        b64.into_bytes(),
    ];
    // Everything the system wrote: the database (with its WAL), outboxes, configs; not the
    // capture files the test fed in.
    let mut outputs: Vec<_> = files_below(dir.path())
        .into_iter()
        .filter(|(p, _)| p.extension().is_none_or(|e| e != "pcap"))
        .collect();
    assert!(
        outputs
            .iter()
            .any(|(p, _)| p.ends_with("data/crowdflow.db"))
    );
    outputs.push((PathBuf::from("aggregator log"), logs));
    for (path, bytes) in outputs {
        assert_no_addresses(&bytes, &addresses, &path.display().to_string());
        for form in &forms {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                "{} contains the salt",
                path.display()
            );
        }
    }
}
