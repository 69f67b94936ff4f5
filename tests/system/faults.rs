//! Faults in one run, behind a persistent Mosquitto: the aggregator is killed (SIGKILL) and
//! restarted, the agent is restarted mid-window (its capture replays, so every device is
//! heard again after the aggregator's restart), and the broker is restarted. When the dust
//! has settled the zone counts the same 100 devices a fault-free run counts: nothing lost,
//! nothing counted twice, because the restarted aggregator took the running epoch's salt back
//! from the agent instead of drawing a new one. And that salt, passed back through the broker,
//! reached no file (the broker's persistent store included), log or database row. On SQLite
//! and on PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crowdflow_aggregator::store::{PostgresStore, Resolution, SqliteStore, Store};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::write_probes;
use crowdflow_tests::gate::{self, DEVICES};
use crowdflow_tests::salt::{self, SaltWatch};
use crowdflow_tests::{
    Mosquitto, Proc, files_below, free_port, run_binary, runtime, scratch_database, stored,
};

fn persistent_mosquitto(dir: &Path, port: u16) -> Mosquitto {
    let store = dir.join("mosquitto");
    std::fs::create_dir_all(&store).expect("dir");
    for d in [dir, store.as_path()] {
        let _ = std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777));
    }
    let conf = dir.join("mosquitto-persistent.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 100000\n",
            store.display()
        ),
    )
    .expect("conf");
    Mosquitto::start_conf(&conf, port)
}

/// Distinct devices of the run: the union of its hour buckets.
async fn devices(store: &impl Store) -> f64 {
    stored::devices(store, "gate", Kind::WifiRandom, Resolution::Hour).await
}

/// What a run leaves for the privacy scan.
struct Leftovers {
    /// Every distinct salt announced on the broker during the run.
    salts: Vec<Vec<u8>>,
    /// How many salts each epoch had (the next epoch's appears six hours before rotation).
    salts_per_epoch: std::collections::BTreeMap<String, usize>,
    /// The agent's and the aggregator's output.
    logs: Vec<u8>,
}

async fn run_with_faults(store: &impl Store, dir: &Path, storage: &str) -> Leftovers {
    let port = free_port();
    let mut broker = persistent_mosquitto(dir, port);
    let watch = SaltWatch::start(port, None);
    let pcap = dir.join("crowd.pcap");
    // 100 devices, each probing once, four per second from 1 s to 26 s.
    write_probes(&pcap, &gate::probes([0x0e, 0x77, 0x01], 250_000));
    let aggregator_cfg = gate::aggregator_config(
        &dir.join("aggregator.toml"),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[broker]\nmode = \"external\"\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             [storage]\n{storage}\n[salt]\nannounce_every_s = 5"
        ),
    );
    let agent_cfg = gate::agent_config(dir, port, &pcap);
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut agent = run_binary("crowdflow-agent", &agent_cfg, "crowdflow-agent");
    let logs = |a: &Proc, b: &Proc| {
        format!(
            "agent:\n{}\naggregator:\n{}",
            String::from_utf8_lossy(&a.output()),
            String::from_utf8_lossy(&b.output())
        )
    };

    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while stored::frames(store).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing stored\n{}",
            logs(&agent, &aggregator)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 1. The aggregator is killed and restarted: it asks the agent for the running epoch's
    // salt (it kept only the fingerprint) and counting goes on under that salt.
    aggregator.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&aggregator.output()).contains("recovered from an agent") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted aggregator did not get the salt back\n{}",
            logs(&agent, &aggregator)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 2. The agent is restarted mid-window (its capture replays from the start: the same
    // devices again, under the same salt).
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.terminate(Duration::from_secs(5));
    agent = run_binary("crowdflow-agent", &agent_cfg, "crowdflow-agent");

    // 3. The broker restarts (sketches wait in its persistent store).
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.proc.terminate(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker = persistent_mosquitto(dir, port);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while devices(store).await < DEVICES as f64 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let late duplicates show up, if any.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counted = devices(store).await;
    let detail = logs(&agent, &aggregator);
    agent.terminate(Duration::from_secs(5));
    aggregator.terminate(Duration::from_secs(5));
    broker.proc.terminate(Duration::from_secs(5));
    assert_eq!(
        counted, DEVICES as f64,
        "the fault-free run counts {DEVICES} devices\n{detail}"
    );
    let mut logs = agent.output();
    logs.extend(aggregator.output());
    Leftovers {
        salts: watch.salts(),
        salts_per_epoch: watch.salts_per_epoch(),
        logs,
    }
}

/// The run had one salt, and it stayed in memory: it is in no file below `dir` (the broker's
/// persistent store, the database, configs, outboxes), no log and no database row (`dump`).
fn assert_salt_stayed_in_memory(dir: &Path, left: Leftovers, dump: Option<Vec<u8>>) {
    assert!(
        !left.salts_per_epoch.is_empty() && left.salts_per_epoch.values().all(|n| *n == 1),
        "one salt per epoch all run (the restarted aggregator took back the running epoch's, and \
         before a rotation the next one's): {:?}",
        left.salts_per_epoch
    );
    let mut outputs: Vec<_> = files_below(dir)
        .into_iter()
        .filter(|(p, _)| p.extension().is_none_or(|e| e != "pcap"))
        .collect();
    assert!(
        outputs
            .iter()
            .any(|(p, _)| p.ends_with("mosquitto/mosquitto.db")),
        "the broker saved its persistent store"
    );
    outputs.push((
        PathBuf::from("the agent's and aggregator's logs"),
        left.logs,
    ));
    if let Some(dump) = dump {
        outputs.push((PathBuf::from("the PostgreSQL rows"), dump));
    }
    for (path, bytes) in outputs {
        salt::assert_absent(&bytes, &left.salts, &path.display().to_string());
    }
}

#[test]
fn aggregator_agent_and_broker_restarts_change_no_count_on_sqlite() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("crowdflow.db");
    runtime().block_on(async {
        let store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
        let left = run_with_faults(
            &store,
            dir.path(),
            &format!("kind = \"sqlite\"\npath = \"{}\"", db.display()),
        )
        .await;
        assert_salt_stayed_in_memory(dir.path(), left, None);
    });
}

#[test]
fn aggregator_agent_and_broker_restarts_change_no_count_on_postgresql() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let scratch = rt.block_on(scratch_database());
    rt.block_on(async {
        let store = PostgresStore::open(scratch.url(), Precision::DEFAULT)
            .await
            .expect("open");
        let left = run_with_faults(
            &store,
            dir.path(),
            &format!("kind = \"postgres\"\nurl = \"{}\"", scratch.url()),
        )
        .await;
        let dump = stored::postgres_dump(scratch.url()).await;
        assert_salt_stayed_in_memory(dir.path(), left, Some(dump));
    });
}
