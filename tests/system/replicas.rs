//! The production topology: two aggregator replicas share one Mosquitto (shared
//! subscriptions, persistent sessions) and one PostgreSQL. The leading replica is killed
//! (SIGKILL) mid-stream; the other takes over the salt authority with the same salt and goes
//! on storing its share; the killed one comes back (and takes the running salt back from
//! the agent, which holds the one replica 2 announces). The zone counts exactly the 100
//! devices a single-replica run counts, and both replicas give the same API answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crowdflow_aggregator::store::{PostgresStore, Resolution};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::write_probes;
use crowdflow_tests::gate::{self, DEVICES};
use crowdflow_tests::{
    Mosquitto, Proc, free_port, http_get, run_binary, runtime, scratch_database, stored,
    wait_for_port,
};
use jiff::Timestamp;

/// Replica `n`'s config: its own authority id, client id and HTTP port; the same broker,
/// group and database.
fn replica_config(dir: &Path, n: u8, mqtt: u16, http: u16, db: &str) -> PathBuf {
    gate::aggregator_config(
        &dir.join(format!("aggregator-{n}.toml")),
        &format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\nanonymous_role = \"planner\"\n\
             [broker]\nmode = \"external\"\nurl = \"mqtt://127.0.0.1:{mqtt}\"\nclient_id = \"crowdflow-aggregator-{n}\"\nshared_group = \"crowdflow\"\n\
             [storage]\nkind = \"postgres\"\nurl = \"{db}\"\n\
             [salt]\nannounce_every_s = 5\nauthority_id = \"aggregator-{n}\""
        ),
    )
}

/// Sketch messages the replica on `http` has accepted (its /metrics).
fn accepted(http: u16) -> u64 {
    http_get(http, "/metrics")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("crowdflow_ingest_accepted_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The planner's questions about the run, asked of the replica on `http`.
fn answers(http: u16) -> Vec<String> {
    let hour = Timestamp::now().as_second().div_euclid(3600) * 3600;
    let at = |s: i64| Timestamp::from_second(s).expect("time");
    let (from, to) = (at(hour - 3600), at(hour + 3600));
    [
        format!("/api/v1/distinct?zone=gate&from={from}&to={to}"),
        format!("/api/v1/series?zones=gate&step=hour&from={from}&to={to}"),
        format!("/api/v1/series?zones=gate&step=minute&from={from}&to={to}"),
    ]
    .iter()
    .map(|path| http_get(http, path).unwrap_or_else(|e| panic!("{path}: {e}")))
    .collect()
}

#[test]
fn two_replicas_one_killed_mid_stream_count_what_one_counts_and_answer_alike() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path());
    let runtime = runtime();
    let scratch = runtime.block_on(scratch_database());
    let store = runtime
        .block_on(PostgresStore::open(scratch.url(), Precision::DEFAULT))
        .expect("open");
    let (http1, http2) = (free_port(), free_port());
    let config1 = replica_config(dir.path(), 1, broker.port, http1, scratch.url());
    let config2 = replica_config(dir.path(), 2, broker.port, http2, scratch.url());
    let mut replica1 = run_binary("crowdflow-aggregator", &config1, "crowdflow-aggregator");
    let mut replica2 = run_binary("crowdflow-aggregator", &config2, "crowdflow-aggregator");
    assert!(
        wait_for_port(http1, Duration::from_secs(20))
            && wait_for_port(http2, Duration::from_secs(20))
    );
    // Replicas listen 3 s for a leader; the lower id (replica 1) leads.
    std::thread::sleep(Duration::from_secs(4));
    let pcap = dir.path().join("crowd.pcap");
    // 100 devices, each probing once, one every 0.6 s from 1 s to 60 s: six windows.
    write_probes(&pcap, &gate::probes([0x0e, 0x5e, 0x02], 600_000));
    let mut agent = run_binary(
        "crowdflow-agent",
        &gate::agent_config(dir.path(), broker.port, &pcap),
        "crowdflow-agent",
    );
    let logs = |agent: &Proc, r1: &Proc, r2: &Proc| {
        format!(
            "agent:\n{}\nreplica 1:\n{}\nreplica 2:\n{}",
            String::from_utf8_lossy(&agent.output()),
            String::from_utf8_lossy(&r1.output()),
            String::from_utf8_lossy(&r2.output())
        )
    };
    let frames = || runtime.block_on(stored::frames(&store));
    let devices = || {
        runtime.block_on(stored::devices(
            &store,
            "gate",
            Kind::WifiRandom,
            Resolution::Hour,
        ))
    };
    let wait = |what: &str, within: Duration, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + within;
        while !done() {
            if std::time::Instant::now() > deadline {
                return Err(format!("{what} within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    };

    // Mid-stream: the leader dies.
    if let Err(e) = wait("the first windows stored", Duration::from_secs(40), &|| {
        frames() > 0
    }) {
        panic!("{e}\n{}", logs(&agent, &replica1, &replica2));
    }
    let before = frames();
    assert!(
        before < DEVICES,
        "killed mid-stream: {before} frames stored"
    );
    replica1.kill();
    eprintln!("replica 1 killed after {before} of {DEVICES} frames were stored");

    // Replica 2 goes on storing its share (Mosquitto keeps dealing messages to the dead
    // replica's persistent session too, and holds them there); then the killed one comes
    // back, as systemd or Kubernetes would bring it, and takes what waited for it.
    let accepted_before = accepted(http2);
    if let Err(e) = wait("replica 2 accepting on", Duration::from_secs(30), &|| {
        accepted(http2) > accepted_before
    }) {
        panic!("{e}\n{}", logs(&agent, &replica1, &replica2));
    }
    std::thread::sleep(Duration::from_secs(10));
    eprintln!(
        "with replica 1 down: replica 2 accepted {} messages; {} frames stored",
        accepted(http2) - accepted_before,
        frames()
    );
    replica1 = run_binary("crowdflow-aggregator", &config1, "crowdflow-aggregator");
    assert!(wait_for_port(http1, Duration::from_secs(20)));
    if let Err(e) = wait("every frame stored", Duration::from_secs(60), &|| {
        frames() >= DEVICES && devices() >= DEVICES as f64
    }) {
        panic!("{e}\n{}", logs(&agent, &replica1, &replica2));
    }
    // Late duplicates, if any, and the live boards' first evaluation.
    std::thread::sleep(Duration::from_secs(5));
    let (counted, stored_frames) = (devices(), frames());
    let (a1, a2) = (answers(http1), answers(http2));
    let detail = logs(&agent, &replica1, &replica2);
    agent.terminate(Duration::from_secs(5));
    replica1.terminate(Duration::from_secs(5));
    replica2.terminate(Duration::from_secs(5));
    assert_eq!(
        (stored_frames, counted),
        (DEVICES, DEVICES as f64),
        "a single replica stores 100 frames of 100 devices\n{detail}"
    );
    assert!(a1[0].contains("\"estimate\":100.0"), "{}", a1[0]);
    assert_eq!(a1, a2, "both replicas answer alike");
    drop(broker);
}
