//! Two sensors of one zone, each hearing part of a crowd, publish through a broker (the
//! aggregator's embedded one, or Mosquitto) into its storage (SQLite or PostgreSQL): the zone
//! counts every device once (a device seen by both sensors counts once), and neither the salt
//! nor an address is in any file, log or database row.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crowdflow_aggregator::store::{PostgresStore, Resolution, SqliteStore, Store};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::salt::{self, SaltWatch};
use crowdflow_tests::{
    Mosquitto, Proc, assert_no_addresses, files_below, free_port, run_binary, runtime,
    scratch_database, stored, wait_for_port,
};

#[derive(Debug, Clone, Copy)]
enum Broker {
    Embedded,
    Mosquitto,
}

#[derive(Debug, Clone, Copy)]
enum Storage {
    Sqlite,
    Postgres,
}

#[test]
fn through_the_embedded_broker_into_sqlite() {
    a_device_heard_by_two_sensors_of_a_zone_counts_once(Broker::Embedded, Storage::Sqlite);
}

#[test]
fn through_mosquitto_into_sqlite() {
    a_device_heard_by_two_sensors_of_a_zone_counts_once(Broker::Mosquitto, Storage::Sqlite);
}

#[test]
fn through_the_embedded_broker_into_postgresql() {
    a_device_heard_by_two_sensors_of_a_zone_counts_once(Broker::Embedded, Storage::Postgres);
}

#[test]
fn through_mosquitto_into_postgresql() {
    a_device_heard_by_two_sensors_of_a_zone_counts_once(Broker::Mosquitto, Storage::Postgres);
}

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

fn aggregator_config(dir: &Path, broker: Broker, port: u16, storage: &str) -> PathBuf {
    let path = dir.join("aggregator.toml");
    let broker = match broker {
        Broker::Embedded => format!("mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\""),
        Broker::Mosquitto => format!("mode = \"external\"\nurl = \"mqtt://127.0.0.1:{port}\""),
    };
    let text = format!(
        r#"[http]
listen = "127.0.0.1:{http}"
[broker]
{broker}
username = "observer"
password = "observer-secret"
[storage]
{storage}
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
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn agent_config(dir: &Path, sensor: &str, password: &str, port: u16, pcap: &Path) -> PathBuf {
    let path = dir.join(format!("{sensor}.toml"));
    let salt = crowdflow_tests::key::salt_section();
    let text = format!(
        "sensor_id = \"{sensor}\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nusername = \"{sensor}\"\npassword = \"{password}\"\n\
         {salt}[capture]\nsource = \"pcap\"\nsenses = [\"wifi\"]\npcap = [\"{}\"]\n[counting]\nwindow_s = 10\n[outbox]\ndir = \"{}\"\n",
        pcap.display(),
        dir.join(format!("outbox-{sensor}")).display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Waits until both agents' 240 probes are stored, then checks the zone's counts.
async fn check(store: &impl Store, agents: &mut [Proc]) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut devices = 0.0;
    let mut frames = 0;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        devices = stored::devices(store, "plaza", Kind::WifiRandom, Resolution::Minute).await;
        frames = stored::frames(store).await;
        if frames == 240 {
            break;
        }
    }
    for agent in agents.iter_mut() {
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
        stored::devices(store, "plaza", Kind::WifiRandom, Resolution::Hour).await,
        100.0,
        "the hour rollup agrees"
    );
    logs
}

fn a_device_heard_by_two_sensors_of_a_zone_counts_once(broker: Broker, storage: Storage) {
    let dir = tempfile::tempdir().expect("tmp");
    let runtime = runtime();
    let mosquitto = matches!(broker, Broker::Mosquitto).then(|| Mosquitto::start(dir.path()));
    let port = mosquitto.as_ref().map_or_else(free_port, |m| m.port);
    let db_path = dir.path().join("data/crowdflow.db");
    let scratch = match storage {
        Storage::Sqlite => None,
        Storage::Postgres => Some(runtime.block_on(scratch_database())),
    };
    let storage_section = match &scratch {
        None => format!("kind = \"sqlite\"\npath = \"{}\"", db_path.display()),
        Some(db) => format!("kind = \"postgres\"\nurl = \"{}\"", db.url()),
    };
    let aggregator_cfg = aggregator_config(dir.path(), broker, port, &storage_section);
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

    let (salts, dump) = runtime.block_on(async {
        let watch = SaltWatch::start(port, Some(("observer", "observer-secret")));
        let salt = watch.first(Duration::from_secs(20)).await;
        assert!(
            salt.is_some(),
            "a salt is announced\n{}",
            String::from_utf8_lossy(&aggregator.output())
        );
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
        let (logs, dump) = match &scratch {
            None => {
                let store = SqliteStore::open(&db_path, Precision::DEFAULT).expect("open");
                (check(&store, &mut agents).await, Vec::new())
            }
            Some(db) => {
                let store = PostgresStore::open(db.url(), Precision::DEFAULT)
                    .await
                    .expect("open");
                let logs = check(&store, &mut agents).await;
                (logs, stored::postgres_dump(db.url()).await)
            }
        };
        assert_no_addresses(
            &logs,
            &(0..100).map(device).collect::<Vec<_>>(),
            "the agents' logs",
        );
        (watch.salts(), dump)
    });
    aggregator.terminate(Duration::from_secs(5));
    let logs = aggregator.output();

    // Privacy: no address and no salt (raw, hex or base64) in any file, database row or the
    // aggregator's log.
    let addresses: Vec<[u8; 6]> = (0..100).map(device).collect();
    // Everything the system wrote: the database (with its WAL), outboxes, configs; not the
    // capture files the test fed in.
    let mut outputs: Vec<_> = files_below(dir.path())
        .into_iter()
        .filter(|(p, _)| p.extension().is_none_or(|e| e != "pcap"))
        .collect();
    match storage {
        Storage::Sqlite => assert!(
            outputs
                .iter()
                .any(|(p, _)| p.ends_with("data/crowdflow.db"))
        ),
        Storage::Postgres => {
            assert!(dump.len() > 1000, "the dump holds the stored rows");
            outputs.push((PathBuf::from("PostgreSQL rows"), dump));
        }
    }
    outputs.push((PathBuf::from("aggregator log"), logs));
    for (path, bytes) in outputs {
        assert_no_addresses(&bytes, &addresses, &path.display().to_string());
        salt::assert_absent(&bytes, &salts, &path.display().to_string());
    }
}
