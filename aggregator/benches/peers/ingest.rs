//! Ingest against the bare broker, in one run: how fast sketch messages are stored through
//! each broker and store pair, over how fast that broker alone delivers the same messages to
//! one subscriber (the ceiling any subscriber of it can reach).
//!
//! - The bare rate: 8 publisher connections send `messages` sketch messages (QoS 1) while one
//!   subscriber (QoS 1, 2,000 in flight, as the aggregator's session) receives them; messages
//!   over the time from the first publish to the last received.
//! - crowdflow's rate: the aggregator service (embedded broker or an external Mosquitto;
//!   SQLite or PostgreSQL) gets the same load, valid messages under the salt it announced;
//!   messages over the time until the store holds them all (its sensor windows counted
//!   every 20 ms through a connection of its own).
//! - Latency: 4,000 messages at a steady 2,000 per second, publish to stored, p50 and p99.
//! - Each rate is the median of [`ROUNDS`] rounds, taken turn about with the rate it is
//!   compared with (bare broker and crowdflow; 10 sensors and 1,000), each on a fresh
//!   broker and store.
//!
//! Messages are the ingest benchmark's mix: 90 % sparse (20 devices), 10 % dense (5,000
//! devices, HLL mode, about 8 KB).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crowdflow_aggregator::config::AggregatorConfig;
use crowdflow_aggregator::metrics::Metrics;
use crowdflow_aggregator::store::{PostgresStore, SqliteStore, Store};
use crowdflow_aggregator::{link, service};
use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::{Salt, SaltFingerprint};
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::window::Window;
use crowdflow_contract::wire::{SaltAnnouncement, SensorId, SketchMessage};
use jiff::Timestamp;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::common::load::{Stored, rotation_in_an_hour, sketch, windows};

/// Publisher connections the sensors' messages are spread over.
const PUBLISHERS: usize = 8;
/// The steady rate of the latency phase, messages per second (the goal: p99 under
/// 100 ms at it).
const STEADY_RATE: f64 = 2000.0;
const STEADY_COUNT: usize = 4000;

/// A broker and a store, as a deployment pairs them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pair {
    EmbeddedSqlite,
    MosquittoSqlite,
    MosquittoPostgres,
}

impl Pair {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pair::EmbeddedSqlite => "ingest_embedded_sqlite",
            Pair::MosquittoSqlite => "ingest_mosquitto_sqlite",
            Pair::MosquittoPostgres => "ingest_mosquitto_postgres",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Pair::EmbeddedSqlite => "embedded broker + SQLite (the default)",
            Pair::MosquittoSqlite => "Mosquitto + SQLite",
            Pair::MosquittoPostgres => "Mosquitto + PostgreSQL",
        }
    }

    fn embedded(self) -> bool {
        self == Pair::EmbeddedSqlite
    }
}

/// Sensors and zones of one load (sensor `s{i}` in zone `z{i % zones}`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    pub(crate) sensors: usize,
    pub(crate) zones: usize,
    pub(crate) messages: usize,
}

/// One pair's figures.
#[derive(Debug)]
pub(crate) struct IngestRow {
    pub(crate) pair: Pair,
    /// crowdflow's rate, messages per second.
    pub(crate) ours: f64,
    /// The bare broker's rate to one subscriber, messages per second.
    pub(crate) broker: f64,
    /// Publish-to-stored latency at [`STEADY_RATE`], p50 and p99, milliseconds.
    pub(crate) latency: [f64; 2],
}

impl IngestRow {
    pub(crate) fn ratio(&self) -> f64 {
        self.ours / self.broker
    }
}

/// The scaling figure: the same messages from many sensors in many zones against few in one.
#[derive(Debug)]
pub(crate) struct ScaleRow {
    pub(crate) small: (Load, f64),
    pub(crate) large: (Load, f64),
}

// ---------------------------------------------------------------------------------------
// Brokers.

/// A Mosquitto of the benchmark's own on a free port (the package's service is not used),
/// configured as deploy/mosquitto is for throughput: 2,000 messages in flight per session, a
/// deep queue, no persistence (a benchmark has nothing to keep).
pub(crate) struct Mosquitto {
    child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub(crate) fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 2000\nmax_queued_messages 200000\nmax_packet_size 1048576\n"
            ),
        )
        .expect("mosquitto.conf");
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto (scripts/peers.sh install installs it)");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

// ---------------------------------------------------------------------------------------
// The load.

/// The aggregator's config for `pair` under `load`: the broker on `broker_port` (embedded:
/// it listens there), the store in `dir` (SQLite) or at `postgres`.
fn config(
    pair: Pair,
    load: Load,
    broker_port: u16,
    dir: &Path,
    postgres: Option<&str>,
) -> Arc<AggregatorConfig> {
    let broker = if pair.embedded() {
        format!("mode = \"embedded\"\nlisten = \"127.0.0.1:{broker_port}\"")
    } else {
        format!("mode = \"external\"\nurl = \"mqtt://127.0.0.1:{broker_port}\"")
    };
    let storage = match postgres {
        Some(url) => format!("kind = \"postgres\"\nurl = \"{url}\""),
        None => format!(
            "kind = \"sqlite\"\npath = \"{}\"",
            dir.join("ingest.db").display()
        ),
    };
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[broker]\n{broker}\n[storage]\n{storage}\n\
         [salt]\nannounce_every_s = 5\n{}[counting]\nwindow_s = 10\n",
        rotation_in_an_hour()
    );
    for z in 0..load.zones {
        text += &format!("[[zones]]\nid = \"z{z}\"\nname = \"Zone {z}\"\narea_m2 = 1000.0\n");
    }
    for s in 0..load.sensors {
        text += &format!(
            "[[sensors]]\nid = \"s{s}\"\nzone = \"z{}\"\n",
            s % load.zones
        );
    }
    Arc::new(
        AggregatorConfig::parse(&text, &dir.join("aggregator.toml"), None).expect("bench config"),
    )
}

/// The messages of a load: (topic, payload), each sensor's on windows of its own.
struct Messages {
    epoch: EpochId,
    fp: SaltFingerprint,
    sparse: Sketch,
    dense: Sketch,
    windows: Vec<Window>,
    sensors: usize,
}

impl Messages {
    fn new(
        schedule: &RotationSchedule,
        epoch: EpochId,
        fp: SaltFingerprint,
        sensors: usize,
        count: usize,
    ) -> Messages {
        Messages {
            epoch,
            fp,
            sparse: sketch(0, 20),
            dense: sketch(1_000_000, 5_000),
            windows: windows(
                schedule,
                epoch,
                count.div_ceil(sensors) + STEADY_COUNT.div_ceil(sensors) + 1,
            ),
            sensors,
        }
    }

    /// Message `i` (one frame each, so stored frames count stored messages); `dense` every
    /// tenth.
    fn message(&self, i: usize, with_dense: bool) -> (String, Vec<u8>) {
        let s = i % self.sensors;
        let sketch = if with_dense && i % 10 == 9 {
            &self.dense
        } else {
            &self.sparse
        };
        let payload = SketchMessage {
            sensor_id: SensorId::new(&format!("s{s}")).expect("id"),
            kind: Kind::Wifi,
            window: self.windows[i / self.sensors],
            epoch: self.epoch,
            salt_fp: self.fp,
            sketch: sketch.clone(),
            frames: 1,
            agent_version: "bench".into(),
        }
        .encode();
        (format!("crowdflow/v1/sketch/s{s}"), payload)
    }

    fn batch(&self, range: std::ops::Range<usize>, with_dense: bool) -> Vec<(String, Vec<u8>)> {
        range.map(|i| self.message(i, with_dense)).collect()
    }
}

/// Connects a client and drives its event loop in the background.
fn client(id: &str, port: u16, inflight: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(inflight)
        .set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(options, 10_000)
}

/// Sends `payloads` over [`PUBLISHERS`] connections, each sensor always over the same one.
async fn publish(port: u16, payloads: Vec<(String, Vec<u8>)>, sensors: usize) {
    let mut publishers = Vec::new();
    for k in 0..PUBLISHERS {
        let (c, mut events) = client(&format!("bench-publisher-{k}"), port, 500);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        publishers.push(c);
    }
    for (i, (topic, payload)) in payloads.into_iter().enumerate() {
        publishers[(i % sensors) % PUBLISHERS]
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }
}

/// The bare broker's delivery rate to one subscriber, messages per second.
async fn bare_rate(port: u16, messages: &Messages, count: usize) -> f64 {
    let payloads = messages.batch(0..count, true);
    let (subscriber, mut events) = client("bench-bare-subscriber", port, 2000);
    subscriber
        .subscribe("crowdflow/v1/sketch/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("bare subscriber: {e}"),
        }
    }
    let received = tokio::spawn(async move {
        let mut n = 0;
        while n < count {
            if let Ok(Event::Incoming(Packet::Publish(_))) = events.poll().await {
                n += 1;
            }
        }
        Instant::now()
    });
    let started = Instant::now();
    publish(port, payloads, messages.sensors).await;
    let done = tokio::time::timeout(Duration::from_secs(300), received)
        .await
        .expect("the bare broker delivered everything within 5 min")
        .expect("subscriber");
    count as f64 / (done - started).as_secs_f64()
}

/// The aggregator running on `store` under `config`, with the salt it announced.
async fn aggregator<S: Store>(
    config: Arc<AggregatorConfig>,
    store: S,
    port: u16,
) -> (tokio::task::JoinHandle<()>, EpochId, SaltFingerprint) {
    let (key, _) = crowdflow_aggregator::salt::key_file::load_or_create(&config.signing_key_file)
        .expect("signing key");
    let trusted = TrustedKeys::new(vec![key.public_key()]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(async move {
        let _ = service::run(config, store, async {
            let _ = stopped.await;
        })
        .await;
    });
    // Wait for the broker (embedded: the service starts it) and the first announcement.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the broker did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (listener, mut events) = client("bench-salt-listener", port, 10);
    listener
        .subscribe("crowdflow/v1/salt", QoS::AtMostOnce)
        .await
        .expect("subscribe");
    let announcement = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await
                && let Ok((a, _)) = SaltAnnouncement::decode_signed(&p.payload, &trusted)
            {
                break a;
            }
        }
    })
    .await
    .expect("a salt announcement within 30 s");
    let _ = listener.disconnect().await;
    let salt = &announcement.salts[0];
    let handle = tokio::spawn(async move {
        let _ = service.await;
        drop(stop);
    });
    (handle, salt.epoch, salt.salt.fingerprint())
}

/// crowdflow's rate (messages per second until all are stored) and its latency at the
/// steady rate, for `pair` under `load`, the broker reached on `port`.
async fn crowdflow_rate<S: Store>(
    config: Arc<AggregatorConfig>,
    service_store: S,
    stored: &Stored,
    port: u16,
    load: Load,
    measure_latency: bool,
) -> (f64, [f64; 2]) {
    let schedule = config.rotation.clone();
    let (service, epoch, fp) = aggregator(config, service_store, port).await;
    let messages = Messages::new(&schedule, epoch, fp, load.sensors, load.messages);
    let payloads = messages.batch(0..load.messages, true);
    let base = stored.count().await;
    let started = Instant::now();
    publish(port, payloads, load.sensors).await;
    all_stored(
        stored,
        &messages,
        load,
        base + load.messages as u64,
        started,
    )
    .await;
    let rate = load.messages as f64 / started.elapsed().as_secs_f64();
    let latency = if measure_latency {
        steady_latency(&messages, load.messages, port, stored).await
    } else {
        [f64::NAN; 2]
    };
    service.abort();
    (rate, latency)
}

/// Waits until the store holds `total` sensor windows, the load's last among them.
///
/// Polled every 20 ms; the whole count, which walks every row, only once the load's oldest
/// windows (its last messages, [`windows`] being newest first) are all stored, so the
/// polling takes next to nothing from the aggregator it measures.
async fn all_stored(
    stored: &Stored,
    messages: &Messages,
    load: Load,
    total: u64,
    started: Instant,
) {
    let oldest = (load.messages - 1) / load.sensors;
    let last_group = (load.messages - oldest * load.sensors) as u64;
    let oldest_start = messages.windows[oldest].start().as_second();
    let deadline = started + Duration::from_secs(600);
    loop {
        if stored.count_started_by(oldest_start).await >= last_group
            && stored.count().await >= total
        {
            return;
        }
        assert!(Instant::now() < deadline, "not all stored within 10 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publish-to-stored latency at [`STEADY_RATE`]: p50 and p99 in milliseconds.
async fn steady_latency(messages: &Messages, first: usize, port: u16, stored: &Stored) -> [f64; 2] {
    let (client, mut events) = client("bench-steady-publisher", port, 1000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    // The steady messages' windows are older than any before them: counting that index
    // range sees them, and walks a few thousand rows, not the whole table.
    let since = messages.windows[first / messages.sensors]
        .start()
        .as_second();
    let base = stored.count_started_by(since).await;
    let payloads = messages.batch(first..first + STEADY_COUNT, false);
    let mut sent = Vec::with_capacity(STEADY_COUNT);
    let mut seen: Vec<Instant> = Vec::with_capacity(STEADY_COUNT);
    let start = Instant::now();
    let mut payloads = payloads.into_iter();
    let mut next_poll = start;
    while seen.len() < STEADY_COUNT && start.elapsed() < Duration::from_secs(120) {
        let due = Duration::from_secs_f64(sent.len() as f64 / STEADY_RATE);
        if sent.len() < STEADY_COUNT && start.elapsed() >= due {
            if let Some((topic, payload)) = payloads.next() {
                sent.push(Instant::now());
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .expect("publish");
            }
            continue;
        }
        if Instant::now() >= next_poll {
            let now = stored.count_started_by(since).await.saturating_sub(base);
            let at = Instant::now();
            while (seen.len() as u64) < now {
                seen.push(at);
            }
            next_poll = at + Duration::from_millis(5);
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let mut latencies: Vec<f64> = seen
        .iter()
        .zip(&sent)
        .map(|(s, p)| s.saturating_duration_since(*p).as_secs_f64() * 1e3)
        .collect();
    assert_eq!(latencies.len(), STEADY_COUNT, "all steady messages stored");
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    [pct(0.5), pct(0.99)]
}

/// An empty database on the peers' server for this run (the aggregator's schema is made
/// by the store when it opens it; the cluster is the benchmark's own).
async fn fresh_postgres(server: &str) -> (String, String) {
    let name = format!("crowdflow_ingest_{}", std::process::id());
    let admin = crate::peer::connect(server).await;
    // Two statements: in one query string they would form a transaction, which CREATE
    // DATABASE refuses.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .expect("create the ingest database");
    }
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    (format!("{base}/{name}"), name)
}

/// Drops the round's database: the server may be the user's own (`CROWDFLOW_TEST_POSTGRES`),
/// and each round's would stay behind (17 MB each).
async fn drop_postgres(server: &str, name: &str) {
    let admin = crate::peer::connect(server).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop the ingest database");
}

/// One pair: the bare broker first, then crowdflow on a fresh broker and store.
async fn measure_pair(pair: Pair, load: Load, postgres_server: &str) -> IngestRow {
    let dir = tempfile::tempdir().expect("tmp");
    // The bare broker carries the same bytes; no salt is checked there.
    let schedule = config(pair, load, 1, dir.path(), None).rotation.clone();
    let fake = Messages::new(
        &schedule,
        schedule.epoch_at(Timestamp::now()),
        Salt::generate().expect("salt").fingerprint(),
        load.sensors,
        load.messages,
    );
    let (mut brokers, mut ours, mut latency) = (Vec::new(), Vec::new(), [f64::NAN; 2]);
    for round in 0..ROUNDS {
        // The bare broker, started as the aggregator starts it (embedded: the same settings).
        brokers.push(if pair.embedded() {
            let port = free_port();
            let config = config(pair, load, port, dir.path(), None);
            let endpoint = link::endpoint(&config, &Metrics::default(), b"bench")
                .await
                .expect("embedded broker");
            let rate = bare_rate(endpoint.port, &fake, load.messages).await;
            drop(endpoint);
            rate
        } else {
            let mosquitto = Mosquitto::start();
            bare_rate(mosquitto.port, &fake, load.messages).await
        });
        let run = tempfile::tempdir().expect("tmp");
        let (rate, l) = run_crowdflow(pair, load, run.path(), postgres_server, round == 0).await;
        ours.push(rate);
        if round == 0 {
            latency = l;
        }
    }
    IngestRow {
        pair,
        ours: median(ours),
        broker: median(brokers),
        latency,
    }
}

/// Rounds of each rate, taken turn about with the rate it is compared with; the median of
/// each is reported. One round on two cores shared by publishers, broker and aggregator
/// varied by 15 % from run to run (ratios 0.52-0.70 for the same code).
const ROUNDS: usize = 3;

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// crowdflow for `pair` on a broker and store of its own.
async fn run_crowdflow(
    pair: Pair,
    load: Load,
    dir: &Path,
    postgres_server: &str,
    latency: bool,
) -> (f64, [f64; 2]) {
    let mosquitto = (!pair.embedded()).then(Mosquitto::start);
    let port = mosquitto.as_ref().map_or_else(free_port, |m| m.port);
    if pair == Pair::MosquittoPostgres {
        let (url, name) = fresh_postgres(postgres_server).await;
        let config = config(pair, load, port, dir, Some(&url));
        let open = || PostgresStore::open(&url, Precision::DEFAULT);
        let service_store = open().await.expect("pg");
        let stored = Stored::postgres(&url).await;
        let measured = crowdflow_rate(config, service_store, &stored, port, load, latency).await;
        drop(stored);
        drop_postgres(postgres_server, &name).await;
        measured
    } else {
        let config = config(pair, load, port, dir, None);
        let db: PathBuf = dir.join("ingest.db");
        let service_store = SqliteStore::open(&db, Precision::DEFAULT).expect("sqlite");
        // Counted through a connection of its own, as an API reader would read.
        let stored = Stored::sqlite(&db);
        crowdflow_rate(config, service_store, &stored, port, load, latency).await
    }
}

/// Every pair under the load (200 sensors, 20 zones), then the scaling figure on
/// the default pair.
pub(crate) async fn measure(messages: usize, postgres_server: &str) -> (Vec<IngestRow>, ScaleRow) {
    let load = Load {
        sensors: 200,
        zones: 20,
        messages,
    };
    let mut rows = Vec::new();
    for pair in [
        Pair::EmbeddedSqlite,
        Pair::MosquittoSqlite,
        Pair::MosquittoPostgres,
    ] {
        eprintln!("ingest: {}", pair.label());
        rows.push(measure_pair(pair, load, postgres_server).await);
    }
    let loads = [(10, 1), (1000, 100)].map(|(sensors, zones)| Load {
        sensors,
        zones,
        messages,
    });
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (load, rates) in loads.iter().zip(&mut rates) {
            eprintln!("ingest: {} sensors in {} zones", load.sensors, load.zones);
            let dir = tempfile::tempdir().expect("tmp");
            let (rate, _) = run_crowdflow(
                Pair::EmbeddedSqlite,
                *load,
                dir.path(),
                postgres_server,
                false,
            )
            .await;
            rates.push(rate);
        }
    }
    let [small, large] = rates.map(median);
    let scale = ScaleRow {
        small: (loads[0], small),
        large: (loads[1], large),
    };
    (rows, scale)
}

/// The markdown table of the ingest figures.
pub(crate) fn print(rows: &[IngestRow], scale: &ScaleRow, messages: usize) {
    println!(
        "\n{messages} sketch messages from 200 sensors in 20 zones (90 % sparse, 10 % dense), 8 publisher connections; each rate the median of {ROUNDS} rounds\n"
    );
    println!(
        "| pair | crowdflow | the broker alone to one subscriber | ratio | latency at {STEADY_RATE:.0} msg/s, p50 / p99 |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} msg/s | {:.0} msg/s | {:.3} | {:.0} / {:.0} ms |",
            r.pair.label(),
            r.ours,
            r.broker,
            r.ratio(),
            r.latency[0],
            r.latency[1]
        );
    }
    let (small, large) = (&scale.small, &scale.large);
    println!(
        "\nScaling, embedded broker + SQLite: {} sensors / {} zones {:.0} msg/s, {} sensors / {} zones {:.0} msg/s ({:+.1} %)\n",
        small.0.sensors,
        small.0.zones,
        small.1,
        large.0.sensors,
        large.0.zones,
        large.1,
        (large.1 / small.1 - 1.0) * 100.0
    );
}
