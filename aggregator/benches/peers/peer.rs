//! The peer: PostgreSQL with postgresql-hll, its server, schema, roll-ups and queries.

use std::path::{Path, PathBuf};
use std::process::Command;

use crowdflow_aggregator::query::{self, Tile};
use jiff::Timestamp;
use tokio_postgres::{Client, NoTls};

use crate::{DATA_VERSION, KIND, Questions};

/// The peer's PostgreSQL server: started by scripts/peers.sh, stopped on drop.
pub(crate) struct PeerServer {
    pub(crate) url: String,
    dir: PathBuf,
    root: PathBuf,
}

impl PeerServer {
    pub(crate) fn start(root: &Path, dir: &Path) -> PeerServer {
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

pub(crate) async fn connect(url: &str) -> Client {
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
pub(crate) async fn peer_database(url: &str) -> Client {
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

pub(crate) async fn peer_is_loaded(peer: &Client) -> bool {
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

pub(crate) async fn peer_schema(peer: &Client) {
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
pub(crate) async fn peer_rollups(peer: &Client) {
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

pub(crate) const DISTINCT_ZONE: &str = "z7";

/// The peer's covering of `[from, to)`: the same tiles crowdflow uses (whole days, hours,
/// then minutes), as one UNION ALL over the three tables.
pub(crate) fn peer_covering(from: Timestamp, to: Timestamp, columns: &str) -> String {
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

pub(crate) async fn peer_distinct(peer: &Client, from: Timestamp, to: Timestamp) -> f64 {
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
pub(crate) async fn peer_flows(
    peer: &Client,
    q: &Questions,
    zones: &[String],
) -> Vec<(String, String, f64)> {
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

pub(crate) async fn peer_series(peer: &Client, q: &Questions) -> Vec<(String, i64, f64)> {
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
