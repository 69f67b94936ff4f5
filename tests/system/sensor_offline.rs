//! A sensor's uplink fails for ten windows while it keeps capturing (the cable between agent
//! and broker is pulled; the agent process runs on), through the embedded broker into SQLite
//! and through Mosquitto into PostgreSQL.
//! The zone goes stale and the stale alert is raised; when the link is back the agent's
//! outbox drains, the recovery alert follows, and the zone counts exactly the 100 devices a
//! run without the outage counts. Time is compressed: 10 s windows, so ten windows offline
//! stand for ten minutes of production's 60 s windows.

use std::time::{Duration, Instant};

use crowdflow_aggregator::store::{PostgresStore, Resolution, SqliteStore, Store};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::cable::Cable;
use crowdflow_tests::capture::write_probes;
use crowdflow_tests::gate::{self, DEVICES, WINDOW_S};
use crowdflow_tests::{
    Mosquitto, Proc, free_port, http_get, run_binary, runtime, scratch_database, stored,
    wait_for_port,
};
use serde_json::Value;

const OFFLINE: Duration = Duration::from_secs(10 * WINDOW_S);

/// The kinds of the alerts raised for the zone so far, oldest first.
fn alerts(http: u16) -> Vec<String> {
    let body = http_get(http, "/api/v1/alerts").unwrap_or_default();
    let mut kinds: Vec<String> = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["kind"].as_str().map(str::to_owned))
        .collect();
    kinds.reverse();
    kinds
}

fn wait_until(
    what: &str,
    within: Duration,
    logs: &dyn Fn() -> String,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn through_the_embedded_broker_into_sqlite() {
    let dir = tempfile::tempdir().expect("tmp");
    let mqtt = free_port();
    let db = dir.path().join("crowdflow.db");
    let store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
    offline_for_ten_windows(
        &runtime(),
        &store,
        dir.path(),
        mqtt,
        &format!(
            "[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [storage]\nkind = \"sqlite\"\npath = \"{}\"",
            db.display()
        ),
    );
}

#[test]
fn through_mosquitto_into_postgresql() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path());
    let runtime = runtime();
    let scratch = runtime.block_on(scratch_database());
    let store = runtime
        .block_on(PostgresStore::open(scratch.url(), Precision::DEFAULT))
        .expect("open");
    offline_for_ten_windows(
        &runtime,
        &store,
        dir.path(),
        broker.port,
        &format!(
            "[broker]\nmode = \"external\"\nurl = \"mqtt://127.0.0.1:{}\"\n\
             [storage]\nkind = \"postgres\"\nurl = \"{}\"",
            broker.port,
            scratch.url()
        ),
    );
}

/// The scenario against the broker on `mqtt` and `store`, which `setup` (the aggregator's
/// broker and storage sections) names.
fn offline_for_ten_windows(
    runtime: &tokio::runtime::Runtime,
    store: &impl Store,
    dir: &std::path::Path,
    mqtt: u16,
    setup: &str,
) {
    let http = free_port();
    let pcap = dir.join("crowd.pcap");
    // 100 devices, each probing once, one every 1.5 s: the capture runs 150 s, across the outage.
    write_probes(&pcap, &gate::probes([0x0e, 0x0f, 0x0f], 1_500_000));
    let aggregator_cfg = gate::aggregator_config(
        &dir.join("aggregator.toml"),
        &format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\nanonymous_role = \"viewer\"\n\
             {setup}\n[salt]\nannounce_every_s = 5"
        ),
    );
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    assert!(wait_for_port(mqtt, Duration::from_secs(15)), "broker up");
    let cable = Cable::to(mqtt);
    // The agent reaches the broker through the cable.
    let agent_cfg = gate::agent_config(dir, cable.port, &pcap);
    let mut agent = run_binary("crowdflow-agent", &agent_cfg, "crowdflow-agent");
    let logs = |agent: &Proc, aggregator: &Proc| {
        format!(
            "agent:\n{}\naggregator:\n{}",
            String::from_utf8_lossy(&agent.output()),
            String::from_utf8_lossy(&aggregator.output())
        )
    };
    let frames = || runtime.block_on(stored::frames(store));
    wait_until(
        "the first windows stored",
        Duration::from_secs(40),
        &|| logs(&agent, &aggregator),
        || frames() > 0,
    );

    cable.unplug();
    let unplugged = Instant::now();
    // What was already on its way is stored; after that nothing may arrive.
    std::thread::sleep(Duration::from_secs(2));
    let before = frames();
    wait_until(
        "a stale alert",
        Duration::from_secs(60),
        &|| logs(&agent, &aggregator),
        || alerts(http).iter().any(|k| k == "stale"),
    );
    eprintln!(
        "stale alert {:?} after the link went down",
        unplugged.elapsed()
    );
    std::thread::sleep(OFFLINE.saturating_sub(unplugged.elapsed()));
    assert_eq!(frames(), before, "nothing arrives while the link is down");
    cable.plug();
    let plugged = Instant::now();

    wait_until(
        "a recovery alert",
        Duration::from_secs(60),
        &|| logs(&agent, &aggregator),
        || alerts(http).iter().any(|k| k == "recovered"),
    );
    eprintln!(
        "recovered alert {:?} after the link came back",
        plugged.elapsed()
    );
    wait_until(
        "all 100 frames stored",
        Duration::from_secs(90),
        &|| logs(&agent, &aggregator),
        || frames() >= DEVICES,
    );
    std::thread::sleep(Duration::from_secs(2));
    let devices = runtime.block_on(stored::devices(
        store,
        "gate",
        Kind::WifiRandom,
        Resolution::Hour,
    ));
    let kinds = alerts(http);
    let detail = logs(&agent, &aggregator);
    agent.terminate(Duration::from_secs(5));
    aggregator.terminate(Duration::from_secs(5));
    assert_eq!(
        (frames(), devices),
        (DEVICES, DEVICES as f64),
        "the run without the outage stores 100 frames of 100 devices\n{detail}"
    );
    assert!(
        kinds.first().map(String::as_str) == Some("stale")
            && kinds.last().map(String::as_str) == Some("recovered"),
        "a stale alert, then a recovery: {kinds:?}"
    );
}
