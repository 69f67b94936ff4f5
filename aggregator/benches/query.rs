//! Query speed on a month of history: SQLite holding 30 days of minute data for 50 zones
//! (one kind, a few hundred devices per zone and minute, overlapping from minute to minute),
//! queried through the HTTP router as a planner would. Prints a table.
//!
//!   cargo bench -p crowdflow-aggregator --bench query
//!
//! The database is generated once into target/bench-data/ (a few minutes) and reused.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{TOKEN, config};
use crowdflow_aggregator::api::{AppState, router};
use crowdflow_aggregator::live::LiveBoard;
use crowdflow_aggregator::metrics::Metrics;
use crowdflow_aggregator::store::{Accepted, Batch, SqliteStore, Store};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::wire::SensorId;
use jiff::{SignedDuration, Timestamp};
use tower::ServiceExt;

const ZONES: u64 = 50;
const DAYS: i64 = 30;
const START: &str = "2026-03-01T00:00:00Z";

fn message(zone: u64, minute: i64, start: Timestamp) -> Accepted {
    let mut sketch = Sketch::new(Precision::DEFAULT);
    let first = zone * 10_000_000 + minute as u64 * 37;
    (first..first + 300).for_each(|d| sketch.insert_bytes(&d.to_le_bytes()));
    let at = start + SignedDuration::from_mins(minute);
    Accepted {
        sensor: SensorId::new(&format!("s{zone}")).expect("id"),
        zone: crowdflow_aggregator::zone::ZoneId::new(&format!("z{zone}")).expect("id"),
        kind: Kind::WifiRandom,
        window_start: at,
        window_s: 60,
        epoch: at.strftime("%Y-%m-%d").to_string().parse().expect("epoch"),
        salt_fp: "0123456789abcdef".parse().expect("fp"),
        frames: 300,
        sketch,
    }
}

async fn generate(store: &SqliteStore, start: Timestamp) {
    let minutes = DAYS * 1440;
    let began = Instant::now();
    for chunk in (0..minutes).collect::<Vec<_>>().chunks(60) {
        let accepted = chunk
            .iter()
            .flat_map(|m| (0..ZONES).map(move |z| message(z, *m, start)))
            .collect();
        store
            .merge_batch(Batch {
                accepted,
                rejects: Vec::new(),
            })
            .await
            .expect("ingest");
        if chunk[0] % 1440 == 0 {
            eprintln!(
                "generated day {} of {DAYS} ({:.0} s)",
                chunk[0] / 1440 + 1,
                began.elapsed().as_secs_f64()
            );
        }
    }
}

async fn time(app: &axum::Router, path: &str, runs: usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("request");
        let t = Instant::now();
        let response = app.clone().oneshot(request).await.expect("response");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 30)
            .await
            .expect("body");
        times.push(t.elapsed());
        bytes = body.len();
    }
    times.sort();
    (times[runs / 2], bytes)
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let db = dir.join(format!("query-{ZONES}z-{DAYS}d.db"));
    let fresh = !db.exists();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let start: Timestamp = START.parse().expect("start");
        let store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
        if fresh {
            generate(&store, start).await;
        }
        let config = config(&db, ZONES);
        let app = router(AppState::new(
            config,
            store,
            LiveBoard::default(),
            Metrics::default(),
        ));
        let day = start + SignedDuration::from_hours(24 * 20);
        let iso = |t: Timestamp| t.to_string();
        let odd = day + SignedDuration::from_mins(13 * 60 + 27);
        let zones: Vec<String> = (0..ZONES).map(|z| format!("z{z}")).collect();
        let twenty = zones[..20].join(",");
        let w1 = day + SignedDuration::from_hours(14);
        let w2 = w1 + SignedDuration::from_hours(1);
        let cases = [
            (
                "distinct, 24 h, one zone (a whole day)",
                format!(
                    "/api/v1/distinct?zone=z7&from={}&to={}",
                    iso(day),
                    iso(day + SignedDuration::from_hours(24))
                ),
                5.0,
            ),
            (
                "distinct, 24 h, one zone (13:27 to 13:27)",
                format!(
                    "/api/v1/distinct?zone=z7&from={}&to={}",
                    iso(odd),
                    iso(odd + SignedDuration::from_hours(24))
                ),
                5.0,
            ),
            (
                "series, 24 h by minute, 50 zones (JSON)",
                format!(
                    "/api/v1/series?zones={}&step=minute&from={}&to={}",
                    zones.join(","),
                    iso(day),
                    iso(day + SignedDuration::from_hours(24))
                ),
                200.0,
            ),
            (
                "flows, 20 x 20 zones, two 1 h windows",
                format!(
                    "/api/v1/flows?zones={twenty}&from1={}&to1={}&from2={}&to2={}",
                    iso(w1),
                    iso(w2),
                    iso(w2),
                    iso(w2 + SignedDuration::from_hours(1))
                ),
                500.0,
            ),
        ];
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        println!(
            "\nSQLite {} ({:.0} MiB): {ZONES} zones x {DAYS} days of minute sketches\n",
            db.display(),
            size as f64 / 1048576.0
        );
        println!("| query | median | goal | answer bytes |");
        println!("|---|---|---|---|");
        for (name, path, goal_ms) in cases {
            let (median, bytes) = time(&app, &path, 15).await;
            let ms = median.as_secs_f64() * 1000.0;
            let verdict = if ms <= goal_ms { "met" } else { "MISSED" };
            println!("| {name} | {ms:.2} ms | < {goal_ms} ms ({verdict}) | {bytes} |");
        }
    });
}
