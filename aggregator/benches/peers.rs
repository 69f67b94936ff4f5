//! crowdflow's history queries against a peer on the same data, in one run: PostgreSQL with
//! the postgresql-hll extension (Debian's `postgresql-15-hll`), with minute sketches rolled up
//! into hour and day sketches and each minute's count stored beside its sketch, the way a
//! team would build crowdflow's history on PostgreSQL alone.
//!
//!   cargo bench -p crowdflow-aggregator --bench peers
//!
//! It installs what it lacks (`scripts/peers.sh install`: Debian's packages), starts a
//! PostgreSQL cluster of its own on a free port (`scripts/peers.sh start`, data kept in
//! `target/bench-data/peers-pg` for the next run) or uses `CROWDFLOW_TEST_POSTGRES`, and
//! generates the data once for both (7 days x 50 zones of minute sketches, 300 to 3,000
//! devices per zone and minute, one salt epoch per UTC day): the same 16-byte device hashes go
//! into crowdflow's sketches through its store's ingest and, as their first 8 bytes, into
//! `hll` columns (log2m 14 like crowdflow's lg_k 14). Generation takes a while the first time;
//! both databases are reused afterwards.
//!
//! crowdflow is measured through its HTTP router (what a planner's request runs: the handler,
//! `query`, the SQLite store, the JSON), the peer through its SQL from a client (rows fetched,
//! no JSON). Each answer of crowdflow's is checked against a reference computed the
//! straightforward way (every minute sketch of the range unioned, the estimate read back
//! through the wire encoding), and against the answers saved by the first run
//! (`target/bench-data/peers-answers.json`), so an optimization cannot change a number.
//!
//! Prints a markdown table and ends with one `ratio NAME VALUE` line per figure (crowdflow's
//! time over the peer's: below 1 is faster).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{TOKEN, config};
use crowdflow_aggregator::api::{AppState, router};
use crowdflow_aggregator::live::LiveBoard;
use crowdflow_aggregator::metrics::Metrics;
use crowdflow_aggregator::query::{self, Tile};
use crowdflow_aggregator::store::{Accepted, Batch, BucketQuery, Resolution, SqliteStore, Store};
use crowdflow_aggregator::zone::ZoneId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::wire::SensorId;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio_postgres::{Client, NoTls};
use tower::ServiceExt;

const ZONES: u64 = 50;
const DAYS: i64 = 7;
const START: &str = "2026-03-02T00:00:00Z";
const KIND: Kind = Kind::WifiRandom;
/// Minutes per ingest batch (x 50 zones = 500 messages, about the aggregator's batch size).
const BATCH_MINUTES: i64 = 10;
/// Bumped whenever the generated data changes, so stale databases are rebuilt.
const DATA_VERSION: i64 = 1;

/// Devices in zone `z` at minute `m` of the day: 300 at 04:00, 3,000 at 16:00 (shifted by
/// 5 minutes per zone).
fn devices_at(z: u64, minute_of_day: i64) -> u64 {
    let phase = (minute_of_day - 240 - 5 * z as i64) as f64 / 1440.0 * std::f64::consts::TAU;
    (300.0 + 2700.0 * (0.5 - 0.5 * phase.cos())).round() as u64
}

/// The device ids heard in zone `z` at minute `m`: a window sliding 50 ids a minute (devices
/// stay about n/50 minutes), zones 997 ids apart (neighbours share devices: flows).
fn device_ids(z: u64, minute_of_day: i64) -> std::ops::Range<u64> {
    let first = minute_of_day as u64 * 50 + z * 997;
    first..first + devices_at(z, minute_of_day)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A device's 16-byte hash under day `day`'s salt (a stand-in for the keyed BLAKE3 hash: as
/// uniform, and reproducible for both sides).
fn device_hash(day: i64, id: u64) -> [u8; 16] {
    let a = splitmix((day as u64) << 40 ^ id);
    let b = splitmix(a);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

fn epoch_of(day: i64) -> String {
    let t: Timestamp = START.parse().expect("start");
    (t + SignedDuration::from_hours(24 * day))
        .strftime("%Y-%m-%d")
        .to_string()
}

fn salt_fp_of(day: i64) -> String {
    format!("{:016x}", 0x00c0_ffee_0000_0000u64 + day as u64)
}

fn zone_id(z: u64) -> String {
    format!("z{z}")
}

// ---------------------------------------------------------------------------------------
// Set-up: the peer's server and both databases.

/// The peer's PostgreSQL server: started by scripts/peers.sh, stopped on drop.
struct PeerServer {
    url: String,
    dir: PathBuf,
    root: PathBuf,
}

impl PeerServer {
    fn start(root: &Path, dir: &Path) -> PeerServer {
        let script = root.join("scripts/peers.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg("install")
            .status()
            .expect("run scripts/peers.sh");
        assert!(status.success(), "scripts/peers.sh install failed");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir)
            .output()
            .expect("run scripts/peers.sh");
        assert!(
            out.status.success(),
            "scripts/peers.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("a URL")
            .trim()
            .to_owned();
        PeerServer {
            url,
            dir: dir.to_owned(),
            root: root.to_owned(),
        }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.root.join("scripts/peers.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the peer");
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("peer connection: {e}");
        }
    });
    client
}

/// Connects to the benchmark's database on the peer's server, creating it when missing.
async fn peer_database(url: &str) -> Client {
    let admin = connect(url).await;
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = 'crowdflow_peers'",
            &[],
        )
        .await
        .expect("list databases")
        .is_some();
    if !exists {
        admin
            .batch_execute("CREATE DATABASE crowdflow_peers")
            .await
            .expect("create the benchmark database");
    }
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    connect(&format!("{base}/crowdflow_peers")).await
}

async fn peer_is_loaded(peer: &Client) -> bool {
    peer.batch_execute("CREATE EXTENSION IF NOT EXISTS hll")
        .await
        .expect("the hll extension (scripts/peers.sh install)");
    let exists = peer
        .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'meta'", &[])
        .await
        .expect("tables")
        .is_some();
    if !exists {
        return false;
    }
    peer.query_opt(
        "SELECT 1 FROM meta WHERE version = $1 AND complete",
        &[&DATA_VERSION],
    )
    .await
    .expect("meta")
    .is_some()
}

async fn peer_schema(peer: &Client) {
    peer.batch_execute(
        "DROP TABLE IF EXISTS meta, minute, hour, day;
         CREATE TABLE meta (version bigint NOT NULL, complete boolean NOT NULL);
         CREATE TABLE minute (zone text NOT NULL, kind text NOT NULL, bucket bigint NOT NULL,
             epoch text NOT NULL, salt_fp text NOT NULL, devices hll NOT NULL,
             estimate double precision NOT NULL,
             PRIMARY KEY (zone, kind, bucket, epoch, salt_fp));
         CREATE TABLE hour (LIKE minute INCLUDING ALL);
         CREATE TABLE day (LIKE minute INCLUDING ALL);",
    )
    .await
    .expect("peer schema");
}

/// The peer's rollups and numbers, computed in SQL once the minutes are in.
async fn peer_rollups(peer: &Client) {
    peer.batch_execute(
        "INSERT INTO hour SELECT zone, kind, bucket / 3600 * 3600, epoch, salt_fp,
             hll_union_agg(devices), 0 FROM minute GROUP BY 1, 2, 3, 4, 5;
         UPDATE hour SET estimate = hll_cardinality(devices);
         INSERT INTO day SELECT zone, kind, bucket / 86400 * 86400, epoch, salt_fp,
             hll_union_agg(devices), 0 FROM hour GROUP BY 1, 2, 3, 4, 5;
         UPDATE day SET estimate = hll_cardinality(devices);",
    )
    .await
    .expect("peer rollups");
    // VACUUM refuses to run in the implicit transaction of a multi-statement batch.
    peer.batch_execute("VACUUM ANALYZE minute, hour, day")
        .await
        .expect("peer vacuum");
}

/// One zone-minute of generated data: the hashes, as crowdflow's message and the peer's row.
struct ZoneMinute {
    zone: u64,
    day: i64,
    at: Timestamp,
    hashes: Vec<[u8; 16]>,
}

impl ZoneMinute {
    fn new(start: Timestamp, z: u64, minute: i64) -> ZoneMinute {
        let (day, minute_of_day) = (minute.div_euclid(1440), minute.rem_euclid(1440));
        ZoneMinute {
            zone: z,
            day,
            at: start + SignedDuration::from_mins(minute),
            hashes: device_ids(z, minute_of_day)
                .map(|id| device_hash(day, id))
                .collect(),
        }
    }

    fn accepted(&self) -> Accepted {
        let mut sketch = Sketch::new(Precision::DEFAULT);
        self.hashes.iter().for_each(|h| sketch.insert_bytes(h));
        Accepted {
            sensor: SensorId::new(&format!("s{}", self.zone)).expect("id"),
            zone: ZoneId::new(&zone_id(self.zone)).expect("id"),
            kind: KIND,
            window_start: self.at,
            window_s: 60,
            epoch: epoch_of(self.day).parse().expect("epoch"),
            salt_fp: salt_fp_of(self.day).parse().expect("fp"),
            frames: self.hashes.len() as u64 * 4,
            sketch,
        }
    }

    fn hashvals(&self) -> Vec<i64> {
        self.hashes
            .iter()
            .map(|h| i64::from_le_bytes(h[..8].try_into().expect("8 bytes")))
            .collect()
    }
}

/// Generates the week into whichever side lacks it.
async fn generate(start: Timestamp, store: Option<&SqliteStore>, peer: Option<Arc<Client>>) {
    let insert = match &peer {
        Some(p) => Some(
            p.prepare(
                "INSERT INTO minute SELECT $1, $2, $3, $4, $5, s, hll_cardinality(s) FROM \
                 (SELECT hll_add_agg(h::hll_hashval, 14, 5, -1, 1) AS s FROM unnest($6::bigint[]) h) t",
            )
            .await
            .expect("prepare"),
        ),
        None => None,
    };
    let began = Instant::now();
    let minutes = DAYS * 1440;
    let mut first = 0;
    while first < minutes {
        let rows: Vec<ZoneMinute> = (first..(first + BATCH_MINUTES).min(minutes))
            .flat_map(|m| (0..ZONES).map(move |z| ZoneMinute::new(start, z, m)))
            .collect();
        let peer_load = match (&peer, &insert) {
            (Some(p), Some(stmt)) => {
                let (p, stmt) = (p.clone(), stmt.clone());
                let params: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        (
                            zone_id(r.zone),
                            r.at.as_second(),
                            epoch_of(r.day),
                            salt_fp_of(r.day),
                            r.hashvals(),
                        )
                    })
                    .collect();
                Some(tokio::spawn(async move {
                    let (p, stmt) = (&p, &stmt);
                    let inserts = params
                        .iter()
                        .map(|(zone, bucket, epoch, fp, h)| async move {
                            let kind = KIND.as_str();
                            p.execute(stmt, &[zone, &kind, bucket, epoch, fp, h]).await
                        });
                    for r in futures_util::future::join_all(inserts).await {
                        r.expect("peer insert");
                    }
                }))
            }
            _ => None,
        };
        if let Some(store) = store {
            let accepted = rows.iter().map(ZoneMinute::accepted).collect();
            store
                .merge_batch(Batch {
                    accepted,
                    rejects: Vec::new(),
                })
                .await
                .expect("crowdflow ingest");
        }
        if let Some(load) = peer_load {
            load.await.expect("peer load");
        }
        first += BATCH_MINUTES;
        if first % 1440 == 0 {
            eprintln!(
                "generated day {} of {DAYS} ({:.0} s)",
                first / 1440,
                began.elapsed().as_secs_f64()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The questions.

struct Questions {
    day: Timestamp,
    odd: Timestamp,
    w1: Timestamp,
    w2: Timestamp,
    zones: Vec<String>,
}

impl Questions {
    fn new(start: Timestamp) -> Questions {
        let day = start + SignedDuration::from_hours(24 * 3);
        let w1 = day + SignedDuration::from_hours(14);
        Questions {
            day,
            odd: day + SignedDuration::from_mins(13 * 60 + 27),
            w1,
            w2: w1 + SignedDuration::from_hours(1),
            zones: (0..ZONES).map(zone_id).collect(),
        }
    }

    fn hour(t: Timestamp, h: i64) -> Timestamp {
        t + SignedDuration::from_hours(h)
    }
}

const DISTINCT_ZONE: &str = "z7";

/// The peer's covering of `[from, to)`: the same tiles crowdflow uses (whole days, hours,
/// then minutes), as one UNION ALL over the three tables.
fn peer_covering(from: Timestamp, to: Timestamp, columns: &str) -> String {
    let parts: Vec<String> = query::tiles(from, to)
        .into_iter()
        .map(|Tile { resolution, from, to }| {
            format!(
                "SELECT {columns} FROM {} WHERE zone = ANY($1) AND kind = $2 AND bucket >= {} AND bucket < {}",
                resolution.as_str(),
                from.as_second(),
                to.as_second()
            )
        })
        .collect();
    parts.join(" UNION ALL ")
}

async fn peer_distinct(peer: &Client, from: Timestamp, to: Timestamp) -> f64 {
    let sql = format!(
        "SELECT hll_cardinality(hll_union_agg(devices)) FROM ({}) t GROUP BY epoch, salt_fp",
        peer_covering(from, to, "epoch, salt_fp, devices")
    );
    let zones = vec![DISTINCT_ZONE.to_owned()];
    peer.query(&sql, &[&zones, &KIND.as_str()])
        .await
        .expect("peer distinct")
        .iter()
        .map(|r| r.get::<_, Option<f64>>(0).unwrap_or(0.0))
        .sum()
}

/// Flows by inclusion-exclusion inside the peer: each zone's window union once, then
/// |A| + |B| - |A u B| for every pair of the same salt.
async fn peer_flows(peer: &Client, q: &Questions, zones: &[String]) -> Vec<(String, String, f64)> {
    let side = |from, to| {
        format!(
            "SELECT zone, epoch, salt_fp, u, hll_cardinality(u) AS n FROM (SELECT zone, epoch, salt_fp, hll_union_agg(devices) AS u FROM ({}) c GROUP BY zone, epoch, salt_fp) s",
            peer_covering(from, to, "zone, epoch, salt_fp, devices")
        )
    };
    let sql = format!(
        "WITH a AS ({}), b AS ({}) SELECT a.zone, b.zone, a.n + b.n - hll_cardinality(hll_union(a.u, b.u)) FROM a JOIN b ON a.epoch = b.epoch AND a.salt_fp = b.salt_fp",
        side(q.w1, q.w2),
        side(q.w2, Questions::hour(q.w2, 1))
    );
    peer.query(&sql, &[&zones, &KIND.as_str()])
        .await
        .expect("peer flows")
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get::<_, Option<f64>>(2).unwrap_or(0.0),
            )
        })
        .collect()
}

async fn peer_series(peer: &Client, q: &Questions) -> Vec<(String, i64, f64)> {
    peer.query(
        "SELECT zone, bucket, estimate FROM minute WHERE zone = ANY($1) AND kind = $2 AND bucket >= $3 AND bucket < $4 ORDER BY zone, bucket",
        &[
            &q.zones,
            &KIND.as_str(),
            &q.day.as_second(),
            &Questions::hour(q.day, 24).as_second(),
        ],
    )
    .await
    .expect("peer series")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn crowdflow_get(app: &axum::Router, path: &str) -> axum::body::Bytes {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    axum::body::to_bytes(response.into_body(), 1 << 30)
        .await
        .expect("body")
}

/// Median wall time of `runs` runs of `f`, after one warm-up run.
async fn median<F, Fut, T>(runs: usize, mut f: F) -> (Duration, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut last = f().await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        last = f().await;
        times.push(t.elapsed());
    }
    times.sort();
    (times[runs / 2], last)
}

// ---------------------------------------------------------------------------------------
// Correctness: crowdflow's answers against the straightforward computation and the first run.

/// (estimate, lower, upper) of a JSON count.
fn triple(v: &Value) -> [f64; 3] {
    ["estimate", "lower", "upper"].map(|k| v[k].as_f64().unwrap_or(f64::NAN))
}

/// The canonical estimate of every minute sketch of `[from, to)` unioned per salt, summed.
async fn reference_distinct(
    store: &SqliteStore,
    zone: &str,
    from: Timestamp,
    to: Timestamp,
) -> [f64; 3] {
    let id = ZoneId::new(zone).expect("zone");
    let minutes = store
        .zone_sketches(BucketQuery {
            zone: &id,
            kind: KIND,
            resolution: Resolution::Minute,
            from,
            to,
        })
        .await
        .expect("minutes");
    let per_salt = query::per_salt(&minutes, Precision::DEFAULT);
    let mut sum = [0.0; 3];
    for u in per_salt.values() {
        let e = Sketch::decode(&u.to_sketch().encode(), Precision::DEFAULT)
            .expect("round trip")
            .estimate();
        sum = [sum[0] + e.estimate, sum[1] + e.lower, sum[2] + e.upper];
    }
    sum
}

/// The numbers a series answer holds, by (zone, bucket start): (estimate, lower, upper) of
/// the kind, whatever the layout.
fn series_numbers(v: &Value) -> BTreeMap<(String, String), [f64; 3]> {
    let mut out = BTreeMap::new();
    for z in v["zones"].as_array().into_iter().flatten() {
        let zone = z["zone"].as_str().unwrap_or_default().to_owned();
        if let Some(points) = z["points"].as_array() {
            for p in points {
                let t = p["t"].as_str().unwrap_or_default().to_owned();
                out.insert((zone.clone(), t), triple(&p["devices"][KIND.as_str()]));
            }
        }
    }
    out
}

/// The same from a `format=columns` answer.
fn column_numbers(v: &Value) -> BTreeMap<(String, String), [f64; 3]> {
    let mut out = BTreeMap::new();
    let from: Timestamp = v["from"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("from");
    let step = v["step_s"].as_i64().expect("step_s");
    for z in v["zones"].as_array().into_iter().flatten() {
        let zone = z["zone"].as_str().unwrap_or_default().to_owned();
        let counts = &z["devices"][KIND.as_str()];
        for (i, t) in z["t"].as_array().into_iter().flatten().enumerate() {
            let at = from + SignedDuration::from_secs(t.as_i64().expect("t") * step);
            let value = |field: &str| counts[field][i].as_f64().unwrap_or(f64::NAN);
            out.insert(
                (zone.clone(), at.to_string()),
                [value("estimate"), value("lower"), value("upper")],
            );
        }
    }
    out
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

fn assert_same(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (g, w) in got.iter().zip(want) {
        assert!(
            same(*g, *w),
            "{what}: crowdflow says {got:?}, the reference {want:?}"
        );
    }
}

/// The figures a run's answers are compared on, saved by the first run.
#[derive(Default, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Answers {
    distinct_aligned: Vec<f64>,
    distinct_unaligned: Vec<f64>,
    flows: Vec<f64>,
    series: Vec<f64>,
}

fn flow_numbers(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    for row in v["matrix"].as_array().into_iter().flatten() {
        for cell in row.as_array().into_iter().flatten() {
            out.extend(triple(cell));
        }
    }
    for side in ["origin_devices", "destination_devices"] {
        for c in v[side].as_array().into_iter().flatten() {
            out.extend(triple(c));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join("bench-data");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let server = PeerServer::start(&root, &dir.join("peers-pg"));
    let db = dir.join(format!("peers-{ZONES}z-{DAYS}d-v{DATA_VERSION}.db"));
    let answers_file = dir.join(format!("peers-answers-v{DATA_VERSION}.json"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let start: Timestamp = START.parse().expect("start");
        let fresh = !db.exists();
        let store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
        let peer = Arc::new(peer_database(&server.url).await);
        let peer_fresh = !peer_is_loaded(&peer).await;
        if peer_fresh {
            peer_schema(&peer).await;
        }
        if fresh || peer_fresh {
            eprintln!(
                "generating {DAYS} days x {ZONES} zones of minute data into{}{}",
                if fresh { " crowdflow" } else { "" },
                if peer_fresh { " the peer" } else { "" }
            );
            generate(
                start,
                fresh.then_some(&store),
                peer_fresh.then(|| peer.clone()),
            )
            .await;
            if peer_fresh {
                peer_rollups(&peer).await;
                peer.execute("INSERT INTO meta VALUES ($1, true)", &[&DATA_VERSION])
                    .await
                    .expect("meta");
            }
        }
        let app = router(AppState::new(
            config(&db, ZONES),
            store.clone(),
            LiveBoard::default(),
            Metrics::default(),
        ));
        let q = Questions::new(start);
        let iso = |t: Timestamp| t.to_string();
        let twenty = q.zones[..20].to_vec();
        let distinct_path = |from: Timestamp| {
            format!(
                "/api/v1/distinct?zone={DISTINCT_ZONE}&from={}&to={}",
                iso(from),
                iso(Questions::hour(from, 24))
            )
        };
        let flows_path = format!(
            "/api/v1/flows?zones={}&from1={}&to1={}&from2={}&to2={}",
            twenty.join(","),
            iso(q.w1),
            iso(q.w2),
            iso(q.w2),
            iso(Questions::hour(q.w2, 1))
        );
        let series_path = format!(
            "/api/v1/series?zones={}&step=minute&from={}&to={}",
            q.zones.join(","),
            iso(q.day),
            iso(Questions::hour(q.day, 24))
        );
        let columns_path = format!("{series_path}&format=columns");

        // Correctness first.
        let mut answers = Answers::default();
        for (from, slot) in [(q.day, &mut answers.distinct_aligned), (q.odd, &mut answers.distinct_unaligned)] {
            let body: Value = serde_json::from_slice(&crowdflow_get(&app, &distinct_path(from)).await).expect("json");
            let got = triple(&body["devices"][KIND.as_str()]);
            let want = reference_distinct(&store, DISTINCT_ZONE, from, Questions::hour(from, 24)).await;
            assert_same("distinct", &got, &want);
            slot.extend(got);
        }
        let flows: Value = serde_json::from_slice(&crowdflow_get(&app, &flows_path).await).expect("json");
        for (i, j) in [(0usize, 0usize), (3, 4), (19, 0)] {
            let side = |zone: &str, from, to| {
                let store = store.clone();
                let zone = ZoneId::new(zone).expect("zone");
                async move {
                    query::per_salt(
                        &store.zone_sketches(BucketQuery { zone: &zone, kind: KIND, resolution: Resolution::Minute, from, to }).await.expect("minutes"),
                        Precision::DEFAULT,
                    )
                }
            };
            let a = side(&twenty[i], q.w1, q.w2).await;
            let b = side(&twenty[j], q.w2, Questions::hour(q.w2, 1)).await;
            let o = query::overlap(&a, &b);
            assert_same(
                &format!("flow {i} -> {j}"),
                &triple(&flows["matrix"][i][j]),
                &[o.estimate, o.lower, o.upper],
            );
        }
        answers.flows = flow_numbers(&flows);
        let series: Value = serde_json::from_slice(&crowdflow_get(&app, &series_path).await).expect("json");
        let numbers = series_numbers(&series);
        assert_eq!(numbers.len(), (ZONES * 1440) as usize, "series points");
        for zone in ["z0", "z49"] {
            let id = ZoneId::new(zone).expect("zone");
            for n in store
                .zone_numbers(BucketQuery { zone: &id, kind: KIND, resolution: Resolution::Minute, from: q.day, to: Questions::hour(q.day, 24) })
                .await
                .expect("numbers")
            {
                let got = numbers.get(&(zone.to_owned(), n.bucket.to_string())).expect("point");
                assert_same("series", got, &[n.devices.estimate, n.devices.lower, n.devices.upper]);
            }
        }
        answers.series = numbers.values().flatten().copied().collect();
        let columns: Value =
            serde_json::from_slice(&crowdflow_get(&app, &columns_path).await).expect("json");
        let tenth = |v: f64| (v * 10.0).round() / 10.0;
        let in_columns = column_numbers(&columns);
        assert_eq!(in_columns.len(), numbers.len(), "points in columns");
        for (key, want) in &numbers {
            assert_same("series in columns", &in_columns[key], &want.map(tenth));
        }
        match std::fs::read(&answers_file) {
            Ok(saved) => {
                let saved: Answers = serde_json::from_slice(&saved).expect("saved answers");
                assert_same("distinct aligned (first run)", &answers.distinct_aligned, &saved.distinct_aligned);
                assert_same("distinct unaligned (first run)", &answers.distinct_unaligned, &saved.distinct_unaligned);
                assert_same("flows (first run)", &answers.flows, &saved.flows);
                assert_same("series (first run)", &answers.series, &saved.series);
                eprintln!("answers equal the first run's ({})", answers_file.display());
            }
            Err(_) => {
                std::fs::write(&answers_file, serde_json::to_vec(&answers).expect("json"))
                    .expect("save answers");
                eprintln!("answers saved for later runs ({})", answers_file.display());
            }
        }
        // The peer answers the same questions (its estimator differs: same order of magnitude).
        let peer_day = peer_distinct(&peer, q.day, Questions::hour(q.day, 24)).await;
        let ours = answers.distinct_aligned[0];
        assert!(
            (peer_day - ours).abs() < 0.05 * ours,
            "the peer counts {peer_day}, crowdflow {ours}: not the same data"
        );

        // Timing.
        let mut rows: Vec<(&str, &str, Duration, Duration, String)> = Vec::new();
        for (name, label, from) in [
            ("distinct_aligned", "distinct 24 h, aligned (one zone)", q.day),
            ("distinct_unaligned", "distinct 24 h, 13:27 -> 13:27 (one zone)", q.odd),
        ] {
            let path = distinct_path(from);
            let (ours, _) = median(15, || crowdflow_get(&app, &path)).await;
            let (theirs, _) = median(15, || peer_distinct(&peer, from, Questions::hour(from, 24))).await;
            rows.push((name, label, ours, theirs, String::new()));
        }
        let (ours, _) = median(5, || crowdflow_get(&app, &flows_path)).await;
        let (theirs, cells) = median(5, || peer_flows(&peer, &q, &twenty)).await;
        assert_eq!(cells.len(), 400, "peer flow cells");
        rows.push(("flows_20x20", "flows 20 x 20 zones, two 1 h windows", ours, theirs, String::new()));
        let (theirs, points) = median(5, || peer_series(&peer, &q)).await;
        assert_eq!(points.len(), (ZONES * 1440) as usize, "peer series points");
        let per_point = |body: &axum::body::Bytes| {
            format!(
                " ({:.1} MB JSON, {:.0} B a point)",
                body.len() as f64 / 1e6,
                body.len() as f64 / points.len() as f64
            )
        };
        let (ours, body) = median(5, || crowdflow_get(&app, &series_path)).await;
        let points_row = (
            "series_24h_50z_points",
            "series 24 h x 50 zones by minute, format=json (bucket by bucket)",
            ours,
            theirs,
            per_point(&body),
        );
        let (ours, body) = median(5, || crowdflow_get(&app, &columns_path)).await;
        rows.push((
            "series_24h_50z",
            "series 24 h x 50 zones by minute, format=columns",
            ours,
            theirs,
            per_point(&body),
        ));

        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
        println!(
            "\n{ZONES} zones x {DAYS} days of minute sketches, 300-3,000 devices a zone-minute; crowdflow: SQLite {:.0} MiB; peer: PostgreSQL + postgresql-hll (log2m 14) with hour/day rollups and stored minute numbers\n",
            size(&db)
        );
        println!("| work | crowdflow | peer | ratio |");
        println!("|---|---|---|---|");
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        for (_, label, ours, theirs, note) in rows.iter().chain([&points_row]) {
            let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
            println!(
                "| {label} | {:.2} ms{note} | {:.2} ms | {ratio:.2} ({}) |",
                ms(*ours),
                ms(*theirs),
                if ratio <= 1.0 { "faster" } else { "slower" }
            );
        }
        println!("\nNot measured here yet: ingest_embedded_sqlite, ingest_mosquitto_sqlite, ingest_mosquitto_postgres.\n");
        for (name, _, ours, theirs, _) in &rows {
            println!("ratio {name} {:.4}", ours.as_secs_f64() / theirs.as_secs_f64());
        }
    });
    drop(server);
}
