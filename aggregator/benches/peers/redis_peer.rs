//! The second peer, where a `redis-server` is installed: Redis HyperLogLog (PFADD, PFCOUNT
//! over several keys), with the same tiles as the PostgreSQL peer (day, hour and minute keys,
//! one per salt epoch) and each minute's count stored in a hash per zone, the way a team would
//! build crowdflow's history on Redis alone. A server of its own on a free port, no
//! persistence; it holds the keys the questions read (loaded in a second; loading is not
//! timed). Redis's HLL has its own precision (14 bits, like crowdflow's) and no bounds.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crowdflow_aggregator::query::{self, Tile};
use jiff::Timestamp;

use crate::Questions;
use crate::data::{device_hash, device_ids};
use crate::ingest::free_port;

/// A `redis-server` of the benchmark's own; stopped on drop.
pub(crate) struct RedisPeer {
    child: Child,
    con: redis::Connection,
    _dir: tempfile::TempDir,
}

impl Drop for RedisPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisPeer {
    /// Starts a server, or `None` (with the reason printed) when none is installed.
    pub(crate) fn start() -> Option<RedisPeer> {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Redis: no redis-server ({e}); its column is left out");
                return None;
            }
        };
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.get_connection() {
                Ok(con) => {
                    return Some(RedisPeer {
                        child,
                        con,
                        _dir: dir,
                    });
                }
                Err(e) if Instant::now() > deadline => panic!("redis-server did not start: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Loads the keys of the questions: the tiles of both distinct ranges (one zone), of both
    /// flow windows (`flow_zones`), and the minute counts of the series (`series`: zone,
    /// bucket, estimate, the PostgreSQL peer's stored numbers).
    pub(crate) fn load(
        &mut self,
        start: Timestamp,
        q: &Questions,
        distinct_zone: u64,
        flow_zones: u64,
        series: &[(String, i64, f64)],
    ) {
        let mut keys: Vec<(u64, Tile)> = Vec::new();
        for from in [q.day, q.odd] {
            for tile in query::tiles(from, Questions::hour(from, 24)) {
                keys.push((distinct_zone, tile));
            }
        }
        for z in 0..flow_zones {
            for (from, to) in [(q.w1, q.w2), (q.w2, Questions::hour(q.w2, 1))] {
                keys.extend(query::tiles(from, to).into_iter().map(|t| (z, t)));
            }
        }
        for (z, tile) in keys {
            for (bucket, seconds) in buckets(&tile) {
                let key = bucket_key(z, bucket, seconds);
                let mut add = redis::cmd("PFADD");
                add.arg(&key);
                for id in members(start, z, bucket, seconds) {
                    add.arg(&id[..]);
                }
                add.query::<i64>(&mut self.con).expect("PFADD");
            }
        }
        let mut by_zone: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
        for (zone, bucket, estimate) in series {
            by_zone
                .entry(zone.as_str())
                .or_default()
                .push((*bucket, *estimate));
        }
        for (zone, points) in by_zone {
            let mut set = redis::cmd("HSET");
            set.arg(format!("numbers:{zone}"));
            for (bucket, estimate) in points {
                set.arg(bucket).arg(estimate);
            }
            set.query::<i64>(&mut self.con).expect("HSET");
        }
    }

    /// Distinct devices of `zone` over `[from, to)`: one PFCOUNT of its tiles per salt
    /// epoch (UTC day), summed, in one round trip.
    pub(crate) fn distinct(&mut self, zone: u64, from: Timestamp, to: Timestamp) -> f64 {
        let mut by_day: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for tile in query::tiles(from, to) {
            for (bucket, seconds) in buckets(&tile) {
                by_day
                    .entry(bucket.div_euclid(86_400))
                    .or_default()
                    .push(bucket_key(zone, bucket, seconds));
            }
        }
        let mut pipe = redis::pipe();
        for keys in by_day.values() {
            pipe.cmd("PFCOUNT").arg(keys);
        }
        let counts: Vec<i64> = pipe.query(&mut self.con).expect("PFCOUNT");
        counts.iter().map(|n| *n as f64).sum()
    }

    /// The 20 x 20 flow matrix by inclusion-exclusion: |A| + |B| - |A u B| for every pair,
    /// all counts in one round trip (both windows lie in one epoch).
    pub(crate) fn flows(&mut self, q: &Questions, zones: u64) -> Vec<f64> {
        let side = |z: u64, from: Timestamp, to: Timestamp| -> Vec<String> {
            query::tiles(from, to)
                .iter()
                .flat_map(|t| buckets(t).collect::<Vec<_>>())
                .map(|(bucket, seconds)| bucket_key(z, bucket, seconds))
                .collect()
        };
        let a: Vec<Vec<String>> = (0..zones).map(|z| side(z, q.w1, q.w2)).collect();
        let b: Vec<Vec<String>> = (0..zones)
            .map(|z| side(z, q.w2, Questions::hour(q.w2, 1)))
            .collect();
        let mut pipe = redis::pipe();
        for keys in a.iter().chain(&b) {
            pipe.cmd("PFCOUNT").arg(keys);
        }
        for x in &a {
            for y in &b {
                pipe.cmd("PFCOUNT").arg(x).arg(y);
            }
        }
        let n: Vec<i64> = pipe.query(&mut self.con).expect("PFCOUNT");
        let zones = zones as usize;
        let (singles, pairs) = n.split_at(2 * zones);
        pairs
            .iter()
            .enumerate()
            .map(|(k, both)| (singles[k / zones] + singles[zones + k % zones] - both) as f64)
            .collect()
    }

    /// The series' stored minute counts of every zone, in one round trip.
    pub(crate) fn series(&mut self, zones: &[String]) -> usize {
        let mut pipe = redis::pipe();
        for zone in zones {
            pipe.cmd("HGETALL").arg(format!("numbers:{zone}"));
        }
        let all: Vec<BTreeMap<i64, f64>> = pipe.query(&mut self.con).expect("HGETALL");
        all.iter().map(BTreeMap::len).sum()
    }
}

/// The buckets of a tile: (start in unix seconds, length in seconds).
fn buckets(tile: &Tile) -> impl Iterator<Item = (i64, i64)> {
    let seconds = tile.resolution.seconds();
    (tile.from.as_second()..tile.to.as_second())
        .step_by(seconds as usize)
        .map(move |b| (b, seconds))
}

fn bucket_key(zone: u64, bucket: i64, seconds: i64) -> String {
    format!("hll:{seconds}:z{zone}:{bucket}")
}

/// The device hashes of zone `z` heard in the bucket: the union of its minutes' devices,
/// hashed under the salt of the bucket's day, as the generated week has them.
fn members(start: Timestamp, z: u64, bucket: i64, seconds: i64) -> Vec<[u8; 16]> {
    let since = bucket - start.as_second();
    let day = since.div_euclid(86_400);
    let first_minute = since.rem_euclid(86_400) / 60;
    let mut ids: Vec<u64> = (first_minute..first_minute + seconds / 60)
        .flat_map(|m| device_ids(z, m))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(|id| device_hash(day, id)).collect()
}
