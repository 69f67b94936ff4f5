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
//! crowdflow is measured through its HTTP API over loopback TCP on a kept-alive connection
//! (what a planner's request runs: the server, the handler, `query`, the SQLite store, the
//! JSON), the peer through its SQL from a client on one connection (rows fetched, no JSON).
//! Each answer of crowdflow's is checked against a reference computed the
//! straightforward way (every minute sketch of the range unioned, the estimate read back
//! through the wire encoding), and against the answers saved by the first run
//! (`target/bench-data/peers-answers-v{DATA_VERSION}.json`), so an optimization cannot
//! change a number.
//!
//! Where a `redis-server` is installed (Debian's `redis-server`; not installed by the
//! benchmark), Redis HyperLogLog answers the same questions as a second peer on a server of
//! its own ([`redis_peer`]): a column of the table, not a `ratio` line.
//!
//! Prints a markdown table and ends with one `ratio NAME VALUE` line per figure (crowdflow's
//! time over the PostgreSQL peer's: below 1 is faster).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
mod data;
mod ingest;
mod peer;
mod redis_peer;

use data::{generate, zone_id};
use peer::{
    DISTINCT_ZONE, PeerServer, peer_database, peer_distinct, peer_flows, peer_is_loaded,
    peer_rollups, peer_schema, peer_series,
};
use redis_peer::RedisPeer;

use axum::body::Body;
use axum::http::Request;
use common::{TOKEN, config};
use crowdflow_aggregator::api::AppState;
use crowdflow_aggregator::live::LiveBoard;
use crowdflow_aggregator::metrics::Metrics;
use crowdflow_aggregator::query;
use crowdflow_aggregator::store::{BucketQuery, Resolution, SqliteStore, Store};
use crowdflow_aggregator::zone::ZoneId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Precision, Sketch};
use hyper::client::conn::http1::SendRequest;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

const ZONES: u64 = 50;
const DAYS: i64 = 7;
const START: &str = "2026-03-02T00:00:00Z";
const KIND: Kind = Kind::WifiRandom;
/// Minutes per ingest batch (x 50 zones = 500 messages, about the aggregator's batch size).
const BATCH_MINUTES: i64 = 10;
/// Bumped whenever the generated data changes, so stale databases are rebuilt.
const DATA_VERSION: i64 = 1;

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

/// A planner's HTTP connection to the aggregator's API, kept alive across requests, as
/// the peer's client keeps its PostgreSQL connection: both sides answer over loopback TCP.
struct Api {
    addr: std::net::SocketAddr,
    sender: tokio::sync::Mutex<Option<SendRequest<Body>>>,
}

impl Api {
    /// Serves `state` as the aggregator does (its accept loop and limits) on a free port.
    async fn serve(state: AppState<SqliteStore>) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(crowdflow_aggregator::api::serve(listener, state));
        Api {
            addr,
            sender: tokio::sync::Mutex::new(None),
        }
    }

    /// A new connection (the server closes idle ones, as it should).
    async fn connect(&self) -> SendRequest<Body> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        sender
    }
}

async fn crowdflow_get(api: &Api, path: &str) -> axum::body::Bytes {
    let request = Request::get(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let mut held = api.sender.lock().await;
    let open = match held.as_mut() {
        Some(sender) => sender.ready().await.is_ok(),
        None => false,
    };
    if !open {
        *held = Some(api.connect().await);
    }
    let sender = held.as_mut().expect("connected");
    sender.ready().await.expect("connection");
    let response = sender.send_request(request).await.expect("response");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    axum::body::to_bytes(Body::new(response.into_body()), 1 << 30)
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
    let part = std::env::var("CROWDFLOW_PEERS").unwrap_or_default();
    if !["", "ingest", "queries"].contains(&part.as_str()) {
        eprintln!(
            "CROWDFLOW_PEERS={part:?}: must be \"ingest\" (the ingest part alone), \"queries\" \
             (the queries alone) or unset (both)"
        );
        std::process::exit(2);
    }
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
    let messages: usize = std::env::var("CROWDFLOW_PEERS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    // Ingest first: it needs no generated week.
    let ingest =
        (part != "queries").then(|| runtime.block_on(ingest::measure(messages, &server.url)));
    if let Some((rows, scale)) = &ingest {
        ingest::print(rows, scale, messages);
    }
    let mut ratios: Vec<(&str, f64)> = Vec::new();
    if part != "ingest" {
        ratios = runtime.block_on(queries(&server, &db, &answers_file));
    }
    if let Some((rows, _)) = &ingest {
        ratios.extend(rows.iter().map(|r| (r.pair.name(), r.ratio())));
    }
    for (name, ratio) in ratios {
        println!("ratio {name} {ratio:.4}");
    }
    drop(server);
}

/// The history questions: correctness against the reference and the first run, then the
/// timing table; the ratio of each figure.
async fn queries(server: &PeerServer, db: &Path, answers_file: &Path) -> Vec<(&'static str, f64)> {
    {
        let start: Timestamp = START.parse().expect("start");
        let fresh = !db.exists();
        let store = SqliteStore::open(db, Precision::DEFAULT).expect("open");
        let peer = Arc::new(peer_database(&server.url).await);
        let peer_fresh = !peer_is_loaded(&peer).await;
        if peer_fresh {
            peer_schema(&peer).await;
        }
        if fresh || peer_fresh {
            eprintln!(
                "generating {DAYS} days x {ZONES} zones of minute data into {}",
                match (fresh, peer_fresh) {
                    (true, true) => "crowdflow and the peer",
                    (true, false) => "crowdflow",
                    _ => "the peer",
                }
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
        let app = Api::serve(AppState::new(
            config(db, ZONES),
            store.clone(),
            LiveBoard::default(),
            Metrics::default(),
        ))
        .await;
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
        for (from, slot) in [
            (q.day, &mut answers.distinct_aligned),
            (q.odd, &mut answers.distinct_unaligned),
        ] {
            let body: Value =
                serde_json::from_slice(&crowdflow_get(&app, &distinct_path(from)).await)
                    .expect("json");
            let got = triple(&body["devices"][KIND.as_str()]);
            let want =
                reference_distinct(&store, DISTINCT_ZONE, from, Questions::hour(from, 24)).await;
            assert_same("distinct", &got, &want);
            slot.extend(got);
        }
        let flows: Value =
            serde_json::from_slice(&crowdflow_get(&app, &flows_path).await).expect("json");
        for (i, j) in [(0usize, 0usize), (3, 4), (19, 0)] {
            let side = |zone: &str, from, to| {
                let store = store.clone();
                let zone = ZoneId::new(zone).expect("zone");
                async move {
                    query::per_salt(
                        &store
                            .zone_sketches(BucketQuery {
                                zone: &zone,
                                kind: KIND,
                                resolution: Resolution::Minute,
                                from,
                                to,
                            })
                            .await
                            .expect("minutes"),
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
        let series: Value =
            serde_json::from_slice(&crowdflow_get(&app, &series_path).await).expect("json");
        let numbers = series_numbers(&series);
        assert_eq!(numbers.len(), (ZONES * 1440) as usize, "series points");
        for zone in ["z0", "z49"] {
            let id = ZoneId::new(zone).expect("zone");
            for n in store
                .zone_numbers(BucketQuery {
                    zone: &id,
                    kind: KIND,
                    resolution: Resolution::Minute,
                    from: q.day,
                    to: Questions::hour(q.day, 24),
                })
                .await
                .expect("numbers")
            {
                let got = numbers
                    .get(&(zone.to_owned(), n.bucket.to_string()))
                    .expect("point");
                assert_same(
                    "series",
                    got,
                    &[n.devices.estimate, n.devices.lower, n.devices.upper],
                );
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
        match std::fs::read(answers_file) {
            Ok(saved) => {
                let saved: Answers = serde_json::from_slice(&saved).expect("saved answers");
                assert_same(
                    "distinct aligned (first run)",
                    &answers.distinct_aligned,
                    &saved.distinct_aligned,
                );
                assert_same(
                    "distinct unaligned (first run)",
                    &answers.distinct_unaligned,
                    &saved.distinct_unaligned,
                );
                assert_same("flows (first run)", &answers.flows, &saved.flows);
                assert_same("series (first run)", &answers.series, &saved.series);
                eprintln!("answers equal the first run's ({})", answers_file.display());
            }
            Err(_) => {
                std::fs::write(answers_file, serde_json::to_vec(&answers).expect("json"))
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

        // The second peer, where Redis is installed: the same questions, its counts checked
        // against crowdflow's (Redis's estimator differs too).
        let distinct_zone: u64 = DISTINCT_ZONE[1..].parse().expect("zone number");
        let mut redis = RedisPeer::start();
        if let Some(r) = redis.as_mut() {
            r.load(start, &q, distinct_zone, 20, &peer_series(&peer, &q).await);
            for (from, ours) in [
                (q.day, answers.distinct_aligned[0]),
                (q.odd, answers.distinct_unaligned[0]),
            ] {
                let theirs = r.distinct(distinct_zone, from, Questions::hour(from, 24));
                assert!(
                    (theirs - ours).abs() < 0.05 * ours,
                    "Redis counts {theirs}, crowdflow {ours}: not the same data"
                );
            }
            assert_eq!(r.flows(&q, 20).len(), 400, "Redis flow cells");
            assert_eq!(r.series(&q.zones), (ZONES * 1440) as usize, "Redis points");
        }
        let mut redis_time = |f: &mut dyn FnMut(&mut RedisPeer)| {
            redis.as_mut().map(|r| {
                f(r);
                let mut times: Vec<Duration> = (0..15)
                    .map(|_| {
                        let t = Instant::now();
                        f(r);
                        t.elapsed()
                    })
                    .collect();
                times.sort();
                times[times.len() / 2]
            })
        };

        // Timing.
        let mut rows: Vec<(&str, &str, Duration, Duration, String)> = Vec::new();
        let mut redis_rows: Vec<Option<Duration>> = Vec::new();
        for (name, label, from) in [
            (
                "distinct_aligned",
                "distinct 24 h, aligned (one zone)",
                q.day,
            ),
            (
                "distinct_unaligned",
                "distinct 24 h, 13:27 -> 13:27 (one zone)",
                q.odd,
            ),
        ] {
            let path = distinct_path(from);
            let (ours, _) = median(15, || crowdflow_get(&app, &path)).await;
            let (theirs, _) =
                median(15, || peer_distinct(&peer, from, Questions::hour(from, 24))).await;
            rows.push((name, label, ours, theirs, String::new()));
            redis_rows.push(redis_time(&mut |r| {
                r.distinct(distinct_zone, from, Questions::hour(from, 24));
            }));
        }
        let (ours, _) = median(5, || crowdflow_get(&app, &flows_path)).await;
        let (theirs, cells) = median(5, || peer_flows(&peer, &q, &twenty)).await;
        assert_eq!(cells.len(), 400, "peer flow cells");
        rows.push((
            "flows_20x20",
            "flows 20 x 20 zones, two 1 h windows",
            ours,
            theirs,
            String::new(),
        ));
        redis_rows.push(redis_time(&mut |r| {
            r.flows(&q, 20);
        }));
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
            "series 24 h x 50 zones by minute, format=columns (estimate, lower and upper bound of every point, to 0.1 device)",
            ours,
            theirs,
            per_point(&body),
        ));
        let series_redis = redis_time(&mut |r| {
            r.series(&q.zones);
        });
        redis_rows.push(series_redis);
        redis_rows.push(series_redis);

        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
        println!(
            "\n{ZONES} zones x {DAYS} days of minute sketches, 300-3,000 devices a zone-minute; crowdflow: SQLite {:.0} MiB; peer: PostgreSQL + postgresql-hll (log2m 14) with hour/day rollups and stored minute numbers (its series: estimates only). Both are asked over loopback TCP: crowdflow's HTTP API on one kept-alive connection, the peer on one PostgreSQL connection\n",
            size(db)
        );
        println!(
            "| work | crowdflow | peer | ratio | Redis HyperLogLog (keys per tile, counts in a hash) | ratio to Redis |"
        );
        println!("|---|---|---|---|---|---|");
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let verdict = |ratio: f64| if ratio <= 1.0 { "faster" } else { "slower" };
        for ((_, label, ours, theirs, note), redis) in
            rows.iter().chain([&points_row]).zip(&redis_rows)
        {
            let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
            let (redis, to_redis) = match redis {
                Some(r) => {
                    let ratio = ours.as_secs_f64() / r.as_secs_f64();
                    (
                        format!("{:.2} ms", ms(*r)),
                        format!("{ratio:.2} ({})", verdict(ratio)),
                    )
                }
                None => ("not installed".to_owned(), "-".to_owned()),
            };
            println!(
                "| {label} | {:.2} ms{note} | {:.2} ms | {ratio:.2} ({}) | {redis} | {to_redis} |",
                ms(*ours),
                ms(*theirs),
                verdict(ratio)
            );
        }
        rows.iter()
            .map(|(name, _, ours, theirs, _)| (*name, ours.as_secs_f64() / theirs.as_secs_f64()))
            .collect()
    }
}
